//! The rotation chain's scenarios, written once and run on both worlds: the embedded runtime
//! (`shared/tests/rotation.rs`: SQLite, a manual clock, workers pumped by hand) and AWS
//! (`aws/tests/lambda_chain.rs`: DynamoDB, SQS and KMS on moto, real time, the Lambda glue). Each
//! world implements [`World`]; [`chain_scenarios!`] turns every scenario into one test of that
//! world, named as the sentence it checks. So the two runtimes cannot drift apart on the promises
//! of DESIGN §4 without one of them failing.
//!
//! Not a crate: each test file includes it with `#[path = "../../tests/flows/chain.rs"] mod chain;`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use entra_rotator::domain::execution::{Cleanup, Execution, ExecutionStatus, Trigger};
use entra_rotator::domain::ids::CredentialId;
use entra_rotator::domain::lifecycle::{LifecycleFacts, LifecycleState, lifecycle_state};
use entra_rotator::domain::steps::{StepDefinition, parse_steps};
use entra_rotator::messages::queues;
use entra_rotator::ports::QueueName;
use entra_rotator::ports::key_ring::{SealContext, SealedValue};
use entra_rotator::testing::faults::FlakyStore;
use entra_rotator::usecases::app::App;
use entra_rotator::usecases::intervention::{cancel, confirm_cleanup, reveal};
use entra_rotator::usecases::rotation::{RotationAccepted, request_rotation};
use entra_sim::{Fault, FaultKind, Match};
use entra_sim::{PasswordSummary, Sim};
use uuid::Uuid;

/// What a scenario needs of a world, each world doing it its own way.
pub trait World {
    /// The handlers' context: store, queue, clock, policies, key ring, as the handlers see them.
    fn app(&self) -> &App;
    /// The simulated tenant the chain talks to.
    fn sim(&self) -> &Sim;
    /// The credential under rotation: the application's one secret before the first rotation.
    fn credential(&self) -> &CredentialId;
    /// The application that credential belongs to.
    fn application(&self) -> Uuid;
    /// Runs the chain until `done` holds, and panics if it does not within the world's budget
    /// (embedded: pumps the workers, moving the manual clock on whenever they are idle; AWS: polls
    /// every queue through the Lambda glue in real time).
    async fn run_until(&self, done: impl AsyncFn() -> bool);
    /// Lets the policy's grace period pass (embedded: advances the clock; AWS: sleeps past it).
    async fn pass_grace(&self);
    /// Sends one `CleanupRequested` and runs grace cleanup until that message was handled.
    async fn cleanup(&self);
    /// Puts a [`FlakyStore`] between the handlers and the store, and hands it out.
    async fn use_flaky_store(&mut self) -> Arc<FlakyStore>;
    /// Replaces the policy's steps and how it delivers (the grace period stays the world's).
    async fn set_plan(&mut self, steps: Vec<StepDefinition>, manual_delivery: bool);
    /// Makes the next seal fail: a crash right after Graph answered `addPassword`.
    fn fail_next_seal(&self);
    /// Makes the next send to `queue` fail: a crash after the store write that precedes it.
    fn fail_next_send(&self, queue: &str);
    /// Makes the next send to `queue` whose body satisfies `when` fail, likewise.
    fn fail_next_send_where(&self, queue: &str, when: fn(&str) -> bool);
    /// Runs the chain of `e` to completion with every message delivered twice, as an at-least-once
    /// queue may (embedded: the queue sends each message a second time as it goes; AWS: every
    /// message the chain delivered is sent again once it completed, and delivered).
    async fn run_delivering_every_message_twice(&self, e: &Execution) -> Execution;
    /// The body of every message delivered so far.
    fn delivered(&self) -> Vec<String>;
    /// Everything the store holds, as text.
    async fn store_text(&self) -> String;
    /// Checks that a secret is sealed the way this world seals (embedded: the key file's key;
    /// AWS: a KMS data key).
    fn assert_sealed_here(&self, sealed: &SealedValue);

    /// Replaces the policy's steps. No step that publishes the secret runs yet, so the plan
    /// declares manual delivery: an operator reads the new secret once and confirms.
    async fn set_steps(&mut self, steps: Vec<StepDefinition>) {
        self.set_plan(steps, true).await;
    }

    /// What the operator of a manual delivery does once the rollout finished: reads the new secret
    /// (once: a second reading is refused), puts it where it is used, and confirms.
    async fn deliver_by_hand(&self, e: &Execution) {
        let secret = reveal(self.app(), e.id, "alice").await.unwrap();
        assert!(secret.expose().len() > 10);
        assert!(reveal(self.app(), e.id, "mallory").await.is_err(), "shown once");
        confirm_cleanup(self.app(), e.id, "alice").await.unwrap();
    }

    /// Starts a manual rotation of [`World::credential`].
    async fn request(&self) -> Execution {
        let trigger = Trigger::Manual { by: "alice".into(), reason: Some("chain scenario".into()) };
        match request_rotation(self.app(), self.credential(), trigger, false).await.unwrap() {
            RotationAccepted::Started { execution } => *execution,
            other => panic!("not started: {other:?}"),
        }
    }

    /// The execution as the store holds it now.
    async fn execution(&self, e: &Execution) -> Execution {
        self.app().store.get_execution(&e.id).await.unwrap().unwrap()
    }

    /// Runs the chain until `e` is `wanted` (or another status it will not leave by itself), and
    /// checks it is `wanted`.
    async fn run_until_status(&self, e: &Execution, wanted: ExecutionStatus) -> Execution {
        self.run_until(async || {
            let s = self.execution(e).await.status;
            s == wanted || s == ExecutionStatus::Failed || s.is_terminal()
        })
        .await;
        let now = self.execution(e).await;
        assert_eq!(now.status, wanted, "{now:?}");
        now
    }

    /// The application's passwords in the tenant.
    fn passwords(&self) -> Vec<PasswordSummary> {
        self.sim().tenant().app_passwords(self.application()).unwrap()
    }

    /// The application's passwords that carry the rotator's marker.
    fn marked(&self) -> Vec<PasswordSummary> {
        self.passwords()
            .into_iter()
            .filter(|p| p.display_name.as_deref().is_some_and(|n| n.contains("rotator:")))
            .collect()
    }

    fn key_ids(&self) -> Vec<Uuid> {
        self.passwords().iter().map(|p| p.key_id).collect()
    }

    /// The lifecycle state of the credential under rotation at `at`.
    async fn state_of_old_at(&self, at: time::OffsetDateTime) -> LifecycleState {
        let store = &self.app().store;
        let c = store.get_credential(self.credential()).await.unwrap().unwrap();
        let execs = store.list_executions(self.credential()).await.unwrap();
        lifecycle_state(&LifecycleFacts::of(&c, &execs, 30), at)
    }
}

/// Expands to one `#[tokio::test]` per scenario, each building its world with `$make(replication
/// delay)` (an async function or a closure returning a future).
macro_rules! chain_scenarios {
    ($make:expr) => {
        $crate::chain::chain_scenarios!(@each $make;
            a_rotation_creates_the_new_secret_first_and_removes_the_old_one_only_after_grace(2),
            a_healthy_rollout_runs_each_step_once_in_order(0),
            a_crash_right_after_add_password_leaves_no_untracked_secret(0),
            a_crash_after_storing_but_before_the_first_step_is_sent_resumes_without_a_second_secret(0),
            every_message_delivered_twice_has_its_effect_once(0),
            an_abort_step_failing_lands_in_the_dead_letter_queue_and_a_redrive_after_the_fix_completes(0),
            a_continue_step_failing_needs_attention_and_cleanup_waits_for_confirmation(0),
            the_new_secret_appears_in_no_log_message_dead_letter_store_item_or_webhook(0),
            a_crash_after_a_step_took_effect_but_before_it_was_recorded_repeats_it_under_the_same_webhook_id(0),
            a_crash_after_the_old_secret_was_removed_but_before_it_was_recorded_completes_on_the_next_run(0),
            a_plan_that_delivers_to_nobody_or_cannot_run_fails_before_any_secret_and_frees_the_credential(0),
            a_permanent_refusal_by_graph_fails_the_rotation_at_once_with_its_reason(0),
            a_rotate_message_dead_lettered_fails_its_execution_and_a_redrive_resumes_it(0),
            a_crash_between_recording_an_execution_and_queueing_it_is_resumed_by_the_sweep(0),
            a_crash_between_recording_a_retry_and_queueing_it_still_retries(2),
            a_crash_between_recording_a_failed_continue_step_and_moving_on_still_settles_it(0),
            a_crash_between_recording_a_failed_abort_step_and_failing_the_execution_still_fails_it(0),
            a_failed_rotation_is_cancelled_its_unpublished_secret_removed_and_the_credential_rotated_again(0),
            a_manual_delivery_is_read_once_and_cleanup_waits_for_the_confirmation(0),
        );
    };
    (@each $make:expr; $( $name:ident ( $replication_delay_secs:literal ) ),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let mut world = ($make)(::std::time::Duration::from_secs($replication_delay_secs)).await;
                $crate::chain::$name(&mut world).await;
            }
        )*
    };
}
pub(crate) use chain_scenarios;

/// The rollout of these scenarios: a Spring refresh, a health check and a signed webhook, all at
/// the simulated tenant's target endpoints.
pub fn rollout_steps(sim: &Sim, spring_on_failure: &str) -> Vec<StepDefinition> {
    let base = sim.target_url("/");
    parse_steps(&format!(
        r#"[{{"type":"spring_actuator_refresh","order":10,"on_failure":"{spring_on_failure}","retries":1,"retry_delay":"1s",
              "config":{{"url":"{base}apps/payroll/actuator/refresh"}}}},
            {{"type":"http_health_check","order":20,"on_failure":"abort",
              "config":{{"url":"{base}apps/payroll/health","timeout":"3s","interval":"1s"}}}},
            {{"type":"webhook","order":30,"on_failure":"abort","retries":1,"retry_delay":"1s",
              "config":{{"url":"{base}hooks/ops"}}}}]"#
    ))
    .unwrap()
    .steps
}

async fn with_rollout<W: World>(w: &mut W, spring_on_failure: &str) {
    let steps = rollout_steps(w.sim(), spring_on_failure);
    w.set_steps(steps).await;
}

fn is_done(cleanup: &Cleanup) -> bool {
    matches!(cleanup, Cleanup::Done { .. })
}

pub async fn a_rotation_creates_the_new_secret_first_and_removes_the_old_one_only_after_grace<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let t = w.sim().targets();
    assert_eq!(t.spring_refreshes("payroll"), 1, "each step once");
    assert_eq!(t.webhooks("ops").len(), 1);
    let records = w.app().store.list_step_records(&e.id).await.unwrap();
    let kinds: Vec<_> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, vec!["verify", "spring_actuator_refresh", "http_health_check", "webhook", "finalize"]);
    assert!(records[0].attempts > 1, "the 2 s replication delay outlasted one verify attempt: {:?}", records[0]);
    let new_key = done.new_key_id.unwrap().as_uuid();
    let keys = w.key_ids();
    assert!(keys.contains(&new_key) && keys.contains(&w.credential().key_id.as_uuid()), "both valid during grace");
    let grace_until = done.grace_until.unwrap();
    // AWS's grace period is seconds of real time: the state is read within it, however slow the machine.
    let within_grace = w.app().clock.now().min(grace_until - time::Duration::milliseconds(1));
    assert_eq!(w.state_of_old_at(within_grace).await, LifecycleState::GracePeriod);

    w.cleanup().await;
    assert!(!is_done(&w.execution(&e).await.cleanup), "a manual delivery waits for its operator");
    w.deliver_by_hand(&done).await;
    // On a slow machine AWS's grace period may be over already; the promise is checked only within it.
    if w.app().clock.now() < grace_until {
        assert_eq!(w.passwords().len(), 2, "not before the grace period ends");
    }
    w.pass_grace().await;
    w.cleanup().await;
    assert_eq!(w.key_ids(), vec![new_key], "only the old key id went");
    assert_eq!(w.state_of_old_at(w.app().clock.now()).await, LifecycleState::CleanedUp);
    assert!(is_done(&w.execution(&e).await.cleanup));
    assert_eq!(w.app().store.get_sealed(&done.secret_record()).await.unwrap(), None, "the sealed copy is gone");
}

pub async fn a_healthy_rollout_runs_each_step_once_in_order<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let t = w.sim().targets();
    assert_eq!(t.spring_refreshes("payroll"), 1);
    assert!(t.health_requests("payroll") >= 1);
    let hooks = t.webhooks("ops");
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].body["type"], "entra-rotator.secret.rotated");
    assert_eq!(hooks[0].body["new_key_id"], done.new_key_id.unwrap().to_string());
    let records = w.app().store.list_step_records(&e.id).await.unwrap();
    let names: Vec<_> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(names, vec!["verify", "spring_actuator_refresh", "http_health_check", "webhook", "finalize"]);
    assert!(done.summary.unwrap().contains("3 of 3 rollout steps succeeded"));
}

pub async fn a_crash_right_after_add_password_leaves_no_untracked_secret<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    w.fail_next_seal();
    // The first attempt creates a secret and "crashes" before storing it.
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let marked = w.marked();
    assert_eq!(marked.len(), 1, "the secret of the crashed attempt was removed: {marked:?}");
    assert_eq!(marked[0].key_id, done.new_key_id.unwrap().as_uuid(), "the one left is the recorded one");
    let audit = w.app().store.list_audit(&Default::default()).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "orphan.removed"), "{audit:?}");
}

pub async fn a_crash_after_storing_but_before_the_first_step_is_sent_resumes_without_a_second_secret<W: World>(
    w: &mut W,
) {
    with_rollout(w, "abort").await;
    w.fail_next_send(queues::STEP);
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let marked = w.marked();
    assert_eq!(marked.len(), 1, "one new secret, not two: {marked:?}");
    assert_eq!(marked[0].key_id, done.new_key_id.unwrap().as_uuid());
    assert_eq!(w.sim().targets().spring_refreshes("payroll"), 1, "the rollout ran once");
}

pub async fn every_message_delivered_twice_has_its_effect_once<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    let e = w.request().await;
    let done = w.run_delivering_every_message_twice(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    assert_eq!(w.marked().len(), 1, "one addPassword");
    assert_eq!(w.passwords().len(), 2, "no second addPassword, no early removal");
    assert_eq!(w.sim().targets().spring_refreshes("payroll"), 1, "no second Spring refresh");
    assert_eq!(w.sim().targets().webhooks("ops").len(), 1, "no second webhook");
    assert_eq!(w.execution(&e).await.status, ExecutionStatus::Completed);
    w.deliver_by_hand(&done).await;
    w.pass_grace().await;
    w.cleanup().await;
    w.cleanup().await;
    assert_eq!(w.key_ids(), vec![done.new_key_id.unwrap().as_uuid()], "one removal, of the old secret");
}

pub async fn an_abort_step_failing_lands_in_the_dead_letter_queue_and_a_redrive_after_the_fix_completes<W: World>(
    w: &mut W,
) {
    with_rollout(w, "abort").await;
    w.sim().targets().set_webhook_failures("ops", 1000, 503);
    let e = w.request().await;
    let step_q = QueueName::new(queues::STEP);
    let queue = w.app().queue.clone();
    w.run_until(async || !queue.dead_letters(&step_q, 10).await.unwrap().is_empty()).await;
    let failed = w.execution(&e).await;
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    let old_key = w.credential().key_id.as_uuid();
    assert!(w.key_ids().contains(&old_key), "the old secret stays valid");
    let dead = queue.dead_letters(&step_q, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let body: serde_json::Value = serde_json::from_str(&dead[0].body).unwrap();
    assert_eq!(body["type"], "StepRequested");
    assert_eq!(body["execution"], e.id.to_string());
    assert_eq!(body["credential"], w.credential().to_string());
    assert_eq!(body["app"], w.application().to_string());
    assert_eq!(body["step"], 3);
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("Webhook") && error.contains("503"), "the dead letter says why: {error}");

    // The receiver is fixed; the operator redrives.
    w.sim().targets().set_webhook_failures("ops", 0, 200);
    assert_eq!(queue.redrive(&step_q, None).await.unwrap(), 1);
    w.run_until_status(&e, ExecutionStatus::Completed).await;
    assert_eq!(w.sim().targets().spring_refreshes("payroll"), 1, "the steps before it did not run again");
}

pub async fn a_continue_step_failing_needs_attention_and_cleanup_waits_for_confirmation<W: World>(w: &mut W) {
    with_rollout(w, "continue").await;
    w.sim().targets().set_spring_failures("payroll", 1000, 500);
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::NeedsAttention).await;
    assert!(done.needs_attention);
    assert_eq!(w.sim().targets().webhooks("ops").len(), 1, "the chain went on");
    w.pass_grace().await;
    w.cleanup().await;
    w.cleanup().await;
    assert_eq!(w.passwords().len(), 2, "never removed without an operator, though the grace period is over");
    w.deliver_by_hand(&done).await;
    w.cleanup().await;
    assert_eq!(w.key_ids(), vec![done.new_key_id.unwrap().as_uuid()], "the old secret went, the new one stays");
}

/// Collects everything written to it: the log of a scenario.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub async fn the_new_secret_appears_in_no_log_message_dead_letter_store_item_or_webhook<W: World>(w: &mut W) {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber =
        tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    with_rollout(w, "abort").await;
    // One failure on the way, so a retry and its log lines are part of what is searched.
    w.sim().targets().set_webhook_failures("ops", 1, 503);
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let sealed = w.app().store.get_sealed(&done.secret_record()).await.unwrap().unwrap();
    w.assert_sealed_here(&sealed.sealed);
    let context = SealContext::new(done.secret_record(), "new_client_secret");
    let secret = w.app().keys.unseal(&sealed.sealed, &context).await.unwrap();
    let secret = secret.expose().to_owned();
    assert!(secret.len() > 10);

    let store = w.store_text().await;
    assert!(store.contains(&done.secret_record()), "the store was searched and holds the sealed record");
    let mut haystacks: Vec<(String, String)> = vec![("store".into(), store)];
    haystacks.push(("logs".into(), String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned()));
    for body in w.delivered() {
        haystacks.push(("queue message".into(), body));
    }
    for q in queues::ALL {
        for d in w.app().queue.dead_letters(&QueueName::new(q), 100).await.unwrap() {
            haystacks.push(("dead letter".into(), format!("{d:?}")));
        }
    }
    for (name, hooks) in w.sim().targets().all_webhooks() {
        for h in hooks {
            haystacks.push((format!("webhook {name}"), h.raw_body.clone()));
        }
    }
    for a in w.app().store.list_audit(&Default::default()).await.unwrap() {
        haystacks.push(("audit".into(), format!("{a:?}")));
    }
    haystacks.push(("execution".into(), serde_json::to_string(&done).unwrap()));
    for (what, text) in &haystacks {
        assert!(!text.contains(&secret), "the new secret appeared in a {what}");
    }
    assert!(haystacks.iter().any(|(w, t)| w == "logs" && !t.is_empty()), "the logs were searched");
    assert!(haystacks.iter().any(|(w, _)| w == "queue message") && haystacks.len() > 5);
}

pub async fn a_crash_after_a_step_took_effect_but_before_it_was_recorded_repeats_it_under_the_same_webhook_id<
    W: World,
>(
    w: &mut W,
) {
    with_rollout(w, "abort").await;
    let flaky = w.use_flaky_store().await;
    flaky.fail("put_step_record", 1, |r| r.contains("kind: \"webhook\"") && r.contains("outcome: Succeeded"));
    let e = w.request().await;
    w.run_until_status(&e, ExecutionStatus::Completed).await;
    let hooks = w.sim().targets().webhooks("ops");
    assert_eq!(hooks.len(), 2, "delivered again after the crash");
    assert_eq!(hooks[0].id, hooks[1].id, "under the same webhook-id, so the receiver can drop the repeat");
    assert_eq!(w.sim().targets().spring_refreshes("payroll"), 1, "the recorded steps did not run again");
}

pub async fn a_crash_after_the_old_secret_was_removed_but_before_it_was_recorded_completes_on_the_next_run<W: World>(
    w: &mut W,
) {
    with_rollout(w, "abort").await;
    let flaky = w.use_flaky_store().await;
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    w.deliver_by_hand(&done).await;
    flaky.fail("put_credential", 1, |cred| cred.contains("removed_at: Some"));
    w.pass_grace().await;
    w.cleanup().await;
    assert_eq!(w.passwords().len(), 1, "removed in the tenant");
    assert!(!is_done(&w.execution(&e).await.cleanup), "but not recorded");
    // The failed cleanup message comes back after its visibility timeout and finishes the job.
    w.run_until(async || is_done(&w.execution(&e).await.cleanup)).await;
    assert_eq!(w.state_of_old_at(w.app().clock.now()).await, LifecycleState::CleanedUp);
    let old = w.app().store.get_credential(w.credential()).await.unwrap().unwrap();
    assert!(old.removed_at.is_some(), "recorded as cleaned up");
    assert_eq!(w.key_ids(), vec![done.new_key_id.unwrap().as_uuid()], "the new secret is untouched");
}

fn key_vault_step() -> Vec<StepDefinition> {
    parse_steps(
        r#"[{"type":"azure_key_vault","order":5,"on_failure":"abort",
             "config":{"vault_url":"https://kv-payroll.vault.azure.net","secret_name":"AzureAdClientSecret"}}]"#,
    )
    .unwrap()
    .steps
}

async fn only_execution<W: World>(w: &W) -> Execution {
    let all = w.app().store.list_executions(w.credential()).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

pub async fn a_plan_that_delivers_to_nobody_or_cannot_run_fails_before_any_secret_and_frees_the_credential<W: World>(
    w: &mut W,
) {
    // Webhook, Spring refresh and health check carry no secret: a rollout of them delivers it to nobody.
    let steps = rollout_steps(w.sim(), "abort");
    w.set_plan(steps, false).await;
    let e = w.request().await;
    let failed = w.run_until_status(&e, ExecutionStatus::Failed).await;
    let why = failed.error.clone().unwrap_or_default();
    assert!(why.contains("preflight failed") && why.contains("publishes the new secret"), "{why}");
    assert!(w.marked().is_empty(), "no secret was created in Entra");
    assert_eq!(w.sim().targets().spring_refreshes("payroll"), 0, "no step ran");
    assert!(!failed.holds_claim(), "a rotation that made no secret holds nothing");

    // A step this build cannot run is refused the same way, before Entra, and the credential is free
    // for that new request with the new plan.
    let mut steps = rollout_steps(w.sim(), "abort");
    steps.extend(key_vault_step());
    w.set_plan(steps, false).await;
    let again = w.request().await;
    let failed = w.run_until_status(&again, ExecutionStatus::Failed).await;
    let why = failed.error.unwrap_or_default();
    assert!(why.contains("azure_key_vault steps are not supported by this build"), "{why}");
    assert!(w.marked().is_empty());
    assert_eq!(w.passwords().len(), 1, "the old secret alone, untouched");
}

pub async fn a_permanent_refusal_by_graph_fails_the_rotation_at_once_with_its_reason<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    w.sim().faults().push(Fault::new(Match::path("addPassword"), FaultKind::lifetime_policy()).times(100));
    let e = w.request().await;
    let failed = w.run_until_status(&e, ExecutionStatus::Failed).await;
    let why = failed.error.clone().unwrap_or_default();
    assert!(why.contains("CredentialInvalidLifetimeAsPerAppPolicy") && why.contains("secret_lifetime"), "{why}");
    let adds = w.sim().requests().iter().filter(|r| r.path.contains("addPassword")).count();
    assert_eq!(adds, 1, "refused for good: asked once, not five times blind");
    let rotate_q = QueueName::new(queues::ROTATE);
    assert!(w.app().queue.dead_letters(&rotate_q, 10).await.unwrap().is_empty(), "settled, not dead-lettered");
    assert!(w.marked().is_empty());

    // The tenant's policy is relaxed: the next request is a new rotation, not `already_running`.
    w.sim().faults().clear();
    let again = w.request().await;
    w.run_until_status(&again, ExecutionStatus::Completed).await;
}

pub async fn a_rotate_message_dead_lettered_fails_its_execution_and_a_redrive_resumes_it<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    // Graph is down for longer than every delivery of the rotate message.
    w.sim().faults().push(Fault::new(Match::path("addPassword"), FaultKind::ServerError(503)).times(10_000));
    let e = w.request().await;
    let rotate_q = QueueName::new(queues::ROTATE);
    let queue = w.app().queue.clone();
    w.run_until(async || !queue.dead_letters(&rotate_q, 10).await.unwrap().is_empty()).await;
    let failed = w.execution(&e).await;
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    let why = failed.error.clone().unwrap_or_default();
    assert!(why.contains("dead-lettered") && why.contains("503"), "{why}");
    assert!(w.marked().is_empty());

    w.sim().faults().clear();
    assert_eq!(queue.redrive(&rotate_q, None).await.unwrap(), 1);
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    assert_eq!(done.error, None);
    assert_eq!(w.marked().len(), 1);
}

pub async fn a_crash_between_recording_an_execution_and_queueing_it_is_resumed_by_the_sweep<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    w.fail_next_send(queues::ROTATE);
    let trigger = Trigger::Manual { by: "alice".into(), reason: None };
    assert!(request_rotation(w.app(), w.credential(), trigger, false).await.is_err(), "the send failed");
    let e = only_execution(w).await;
    assert_eq!(e.status, ExecutionStatus::Pending, "recorded, with no message");
    w.pass_grace().await;
    w.cleanup().await;
    w.run_until_status(&e, ExecutionStatus::Completed).await;
    let audit = w.app().store.list_audit(&Default::default()).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "rotation.resumed"), "{audit:?}");
    assert_eq!(w.marked().len(), 1, "one new secret");
}

pub async fn a_crash_between_recording_a_retry_and_queueing_it_still_retries<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    // The 2 s replication delay makes verify retry; the first retry's message is lost.
    w.fail_next_send_where(queues::STEP, |body| body.contains("\"step\":0") && body.contains("\"attempt\":2"));
    let e = w.request().await;
    w.run_until_status(&e, ExecutionStatus::Completed).await;
    let records = w.app().store.list_step_records(&e.id).await.unwrap();
    assert!(records[0].attempts >= 2, "{:?}", records[0]);
}

pub async fn a_crash_between_recording_a_failed_continue_step_and_moving_on_still_settles_it<W: World>(w: &mut W) {
    // The failure is recorded, then the crash comes before the execution is told.
    with_rollout(w, "continue").await;
    w.sim().targets().set_spring_failures("payroll", 1000, 500);
    let flaky = w.use_flaky_store().await;
    flaky.fail("update_execution", 1, |e| e.contains("needs_attention: true"));
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::NeedsAttention).await;
    assert!(done.needs_attention);
    assert_eq!(w.sim().targets().webhooks("ops").len(), 1, "the chain went on after the crash");
}

pub async fn a_crash_between_recording_a_failed_abort_step_and_failing_the_execution_still_fails_it<W: World>(
    w: &mut W,
) {
    with_rollout(w, "abort").await;
    w.sim().targets().set_webhook_failures("ops", 1000, 503);
    let flaky = w.use_flaky_store().await;
    flaky.fail("update_execution", 1, |e| e.contains("status: Failed"));
    let e = w.request().await;
    let failed = w.run_until_status(&e, ExecutionStatus::Failed).await;
    assert!(failed.error.unwrap_or_default().contains("503"), "failed with its reason, not `running` for ever");
}

pub async fn a_failed_rotation_is_cancelled_its_unpublished_secret_removed_and_the_credential_rotated_again<
    W: World,
>(
    w: &mut W,
) {
    with_rollout(w, "abort").await;
    w.sim().targets().set_webhook_failures("ops", 1000, 503);
    let e = w.request().await;
    let failed = w.run_until_status(&e, ExecutionStatus::Failed).await;
    let new_key = failed.new_key_id.unwrap().as_uuid();
    assert!(failed.holds_claim(), "a failed rotation with a new secret holds its credential until settled");
    let trigger = Trigger::Manual { by: "alice".into(), reason: None };
    let RotationAccepted::AlreadyRunning { .. } =
        request_rotation(w.app(), w.credential(), trigger.clone(), false).await.unwrap()
    else {
        panic!("a second rotation while the failed one holds the credential");
    };

    let cancelled = cancel(w.app(), e.id, "alice").await.unwrap();
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert!(!w.key_ids().contains(&new_key), "nothing published it: the new secret went");
    assert!(w.key_ids().contains(&w.credential().key_id.as_uuid()), "the old one stays");
    assert_eq!(w.app().store.get_sealed(&e.secret_record()).await.unwrap(), None);
    let audit = w.app().store.list_audit(&Default::default()).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "rotation.cancelled" && a.actor == "alice"), "{audit:?}");
    assert!(cancel(w.app(), e.id, "alice").await.is_ok(), "cancelling twice is harmless");

    w.sim().targets().set_webhook_failures("ops", 0, 200);
    let again = w.request().await;
    w.run_until_status(&again, ExecutionStatus::Completed).await;
    assert!(cancel(w.app(), again.id, "alice").await.is_err(), "a healthy rotation is not cancelled");
}

pub async fn a_manual_delivery_is_read_once_and_cleanup_waits_for_the_confirmation<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    assert!(done.manual_delivery && matches!(done.cleanup, Cleanup::AwaitingConfirmation), "{done:?}");
    assert!(done.summary.clone().unwrap_or_default().contains("delivered by hand"));
    assert!(confirm_cleanup(w.app(), e.id, "alice").await.is_err(), "not before someone read the secret");
    w.pass_grace().await;
    w.cleanup().await;
    assert_eq!(w.passwords().len(), 2, "the old secret waits for the operator");
    let secret = reveal(w.app(), e.id, "alice").await.unwrap();
    let sealed = w.app().store.get_sealed(&done.secret_record()).await.unwrap().unwrap();
    let context = SealContext::new(done.secret_record(), "new_client_secret");
    assert_eq!(secret.expose(), w.app().keys.unseal(&sealed.sealed, &context).await.unwrap().expose());
    assert!(reveal(w.app(), e.id, "alice").await.is_err(), "shown once");
    assert!(cancel(w.app(), e.id, "alice").await.is_err(), "read by an operator: it may be in use");
    let audit = w.app().store.list_audit(&Default::default()).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "secret.revealed" && a.actor == "alice"));
    confirm_cleanup(w.app(), e.id, "alice").await.unwrap();
    w.cleanup().await;
    assert_eq!(w.key_ids(), vec![done.new_key_id.unwrap().as_uuid()]);
}
