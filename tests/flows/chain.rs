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

use entra_rotator::domain::address::AddressPolicy;
use entra_rotator::domain::execution::{Cleanup, Execution, ExecutionStatus, Trigger};
use entra_rotator::domain::ids::{CredentialId, IntegrationId, KeyId, PolicyId};
use entra_rotator::domain::inventory::Credential;
use entra_rotator::domain::lifecycle::{AlertThreshold, LifecycleFacts, LifecycleState, lifecycle_state};
use entra_rotator::domain::policy::PolicySet;
use entra_rotator::domain::steps::{StepDefinition, parse_steps, parse_steps_with};
use entra_rotator::messages::{Message, queues};
use entra_rotator::ports::alerts::{Alert, AlertSink, Problem};
use entra_rotator::ports::key_ring::{SealContext, SealedValue};
use entra_rotator::ports::{AuditQuery, QueueName};
use entra_rotator::testing::fakes::RecordingSink;
use entra_rotator::testing::faults::FlakyStore;
use entra_rotator::usecases::app::{App, Directories};
use entra_rotator::usecases::intervention::{cancel, confirm_cleanup, reveal};
use entra_rotator::usecases::rotation::{RotationAccepted, request_rotation};
use entra_rotator::usecases::sync::{SyncMode, Syncer};
use entra_sim::{Fault, FaultKind, GraphLimits, Match, NewApp, PasswordSummary, Sim};
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
    /// Changes the handlers' context (sinks, policies, integrations), as a new configuration
    /// would, and hands it to the handlers (embedded: the workers; AWS: the functions).
    async fn reconfigure(&mut self, change: impl FnOnce(&mut App));

    /// Sends one `ScanRequested` for every integration, as the scan timer does.
    async fn scan(&self) {
        let m = Message::ScanRequested { integration: None }.envelope(format!("scan:{}", Uuid::new_v4()));
        self.app()
            .queue
            .send(&QueueName::new(queues::SCAN), m.to_outgoing(std::time::Duration::ZERO).unwrap())
            .await
            .unwrap();
    }

    /// Runs the chain until `queue` holds nothing visible, delayed or in flight.
    async fn run_until_idle(&self, queue: &str) {
        let q = QueueName::new(queue);
        let app = self.app();
        self.run_until(async || {
            let d = app.queue.depth(&q).await.unwrap();
            d.visible + d.delayed + d.in_flight == 0
        })
        .await;
    }

    /// The integration of the credential under rotation.
    fn integration(&self) -> IntegrationId {
        self.credential().integration.clone()
    }

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
            a_throttled_add_password_is_queued_again_after_retry_after_and_completes_without_a_dead_letter(0),
            a_rotate_message_dead_lettered_fails_its_execution_and_a_redrive_resumes_it(0),
            a_crash_between_recording_an_execution_and_queueing_it_is_resumed_by_the_sweep(0),
            a_crash_between_recording_a_retry_and_queueing_it_still_retries(2),
            a_crash_between_recording_a_failed_continue_step_and_moving_on_still_settles_it(0),
            a_crash_between_recording_a_failed_abort_step_and_failing_the_execution_still_fails_it(0),
            a_failed_rotation_is_cancelled_its_unpublished_secret_removed_and_the_credential_rotated_again(0),
            a_manual_delivery_is_read_once_and_cleanup_waits_for_the_confirmation(0),
            a_token_in_a_step_url_or_header_is_sealed_at_rest_and_still_sent(0),
            a_down_alert_sink_never_holds_back_due_rotations_and_its_dead_letter_is_alerted(0),
            one_applications_refused_cleanup_never_holds_back_another_applications(0),
            a_failed_rotation_shows_failed_and_keeps_its_expiry_alerts_and_its_own(0),
            a_removed_integration_loses_its_inventory_and_never_breaks_another_cleanup(0),
            a_disabled_integration_is_neither_alerted_nor_rotated(0),
            a_wave_of_due_rotations_runs_side_by_side_with_one_writer_per_application_and_each_step_once(0),
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
    // The sim is on loopback: the one exception these tests name.
    parse_steps_with(
        &format!(
        r#"[{{"type":"spring_actuator_refresh","order":10,"on_failure":"{spring_on_failure}","retries":1,"retry_delay":"1s",
              "config":{{"url":"{base}apps/payroll/actuator/refresh"}}}},
            {{"type":"http_health_check","order":20,"on_failure":"abort",
              "config":{{"url":"{base}apps/payroll/health","timeout":"3s","interval":"1s"}}}},
            {{"type":"webhook","order":30,"on_failure":"abort","retries":1,"retry_delay":"1s",
              "config":{{"url":"{base}hooks/ops"}}}}]"#
        ),
        &AddressPolicy::allowing_loopback(),
    )
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
pub struct LogBuffer(pub Arc<Mutex<Vec<u8>>>);

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

/// A step type this build knows but cannot run yet (the host agent's).
fn unsupported_step() -> Vec<StepDefinition> {
    parse_steps(
        r#"[{"type":"agent_secret_sync","order":5,"on_failure":"abort",
             "agent_id":"11111111-1111-1111-1111-111111111111",
             "config":{"target_path":"/etc/app/secrets.env","secret_key":"CLIENT_SECRET","file_format":"env"}}]"#,
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
    steps.extend(unsupported_step());
    w.set_plan(steps, false).await;
    let again = w.request().await;
    let failed = w.run_until_status(&again, ExecutionStatus::Failed).await;
    let why = failed.error.unwrap_or_default();
    assert!(why.contains("agent_secret_sync steps are not supported by this build"), "{why}");
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
    let alerted = w.app().store.marked(&[format!("alert:rotation-failed:{}", e.id)]).await.unwrap();
    assert_eq!(alerted, vec![true], "the failure was alerted at once, not left for a scan that cannot see it");

    // The tenant's policy is relaxed: the next request is a new rotation, not `already_running`.
    w.sim().faults().clear();
    let again = w.request().await;
    w.run_until_status(&again, ExecutionStatus::Completed).await;
}

/// Graph throttles `addPassword` more often than a message may be received: each refusal is handed
/// back with its `Retry-After` and the rotation re-queued with that delay as a new message, so it
/// is neither retried blind nor dead-lettered, and completes once Graph lets it.
pub async fn a_throttled_add_password_is_queued_again_after_retry_after_and_completes_without_a_dead_letter<
    W: World,
>(
    w: &mut W,
) {
    with_rollout(w, "abort").await;
    let throttled = FaultKind::TooManyRequests { retry_after: Some(std::time::Duration::from_secs(1)) };
    w.sim().faults().push(Fault::new(Match::path("addPassword"), throttled).times(6));
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let adds: Vec<u16> =
        w.sim().requests().iter().filter(|r| r.path.contains("addPassword")).map(|r| r.status).collect();
    assert_eq!(adds, vec![429, 429, 429, 429, 429, 429, 200], "one request per delivery, none while told to wait");
    let rotate_q = QueueName::new(queues::ROTATE);
    assert!(w.app().queue.dead_letters(&rotate_q, 10).await.unwrap().is_empty(), "never dead-lettered");
    assert!(done.new_key_id.is_some() && done.error.is_none(), "{done:?}");
    assert_eq!(w.sim().tenant().app_passwords(w.application()).unwrap().len(), 2, "one new secret beside the old");
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

/// An alert webhook that refuses every alert, as one whose URL was revoked does (404: not worth
/// retrying for long, so the queue dead-letters it after its receives).
struct DownSink;

#[async_trait::async_trait]
impl AlertSink for DownSink {
    fn name(&self) -> &str {
        "down"
    }
    async fn send(&self, _: &[Alert]) -> entra_rotator::Result<()> {
        Err(entra_rotator::Error::Directory {
            service: "alert webhook",
            status: 404,
            code: "hooks.example.com".into(),
            message: "the webhook refused the alerts (404 Not Found)".into(),
            transient: false,
            retry_after: None,
        })
    }
}

fn alerts_of(sink: &RecordingSink) -> Vec<Alert> {
    sink.0.lock().unwrap().clone()
}

/// The world's policy, rotating automatically.
fn auto_rotating(policies: &PolicySet) -> Arc<PolicySet> {
    let mut policy = policies.get(&PolicyId::parse("default").unwrap()).unwrap().clone();
    policy.auto_rotate = true;
    Arc::new(PolicySet::new(vec![(policy, vec![])]))
}

/// Alerts to `recording` only.
fn recording_only(app: &mut App, recording: &Arc<RecordingSink>) {
    let sinks: Vec<Arc<dyn AlertSink>> = vec![recording.clone()];
    app.sinks = Arc::new(sinks);
}

pub async fn a_down_alert_sink_never_holds_back_due_rotations_and_its_dead_letter_is_alerted<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    let recording = Arc::new(RecordingSink::default());
    let sinks: Vec<Arc<dyn AlertSink>> = vec![Arc::new(DownSink), recording.clone()];
    w.reconfigure(|app| {
        app.sinks = Arc::new(sinks);
        app.policies = auto_rotating(&app.policies);
    })
    .await;
    w.scan().await;
    let app = w.app().clone();
    let credential = w.credential().clone();
    w.run_until(async || {
        let runs = app.store.list_executions(&credential).await.unwrap();
        runs.first().is_some_and(|e| e.status == ExecutionStatus::Completed)
    })
    .await;
    let scan_q = QueueName::new(queues::SCAN);
    let about_mine = credential.to_string();
    w.run_until(async || {
        app.queue.dead_letters(&scan_q, 100).await.unwrap().iter().any(|d| d.body.contains(&about_mine))
    })
    .await;
    // The tenant's other applications have alerts of their own; each is its own dead letter.
    let dead = app.queue.dead_letters(&scan_q, 100).await.unwrap();
    let bodies: Vec<serde_json::Value> = dead.iter().map(|d| serde_json::from_str(&d.body).unwrap()).collect();
    assert!(
        bodies.iter().all(|b| b["type"] == "AlertRequested" && b["sink"] == "down"),
        "only the down sink's: {dead:?}"
    );
    let mine = bodies.iter().position(|b| b["alert"]["credential"] == credential.to_string());
    let mine = mine.expect("the dead letter says which alert");
    assert!(dead[mine].last_error.as_deref().unwrap_or_default().contains("404"), "and why: {dead:?}");
    let sent = alerts_of(&recording);
    assert!(
        sent.iter().any(|a| a.credential == credential && a.threshold == Some(AlertThreshold::DaysBefore(30))),
        "the sink that works got the alert: {sent:?}"
    );

    // The next scan says a dead letter is waiting, to the sinks that work.
    w.scan().await;
    w.run_until(async || {
        alerts_of(&recording).iter().any(|a| {
            a.credential == credential
                && matches!(&a.problem, Some(Problem::DeadLetter { queue, .. }) if queue == queues::SCAN)
        })
    })
    .await;
    w.run_until_idle(queues::SCAN).await;
    // The down sink's own alerts keep dying (the first scan's may still be on their way there), but
    // none of them is about a dead letter: those go only to the sinks that did not fail.
    for d in app.queue.dead_letters(&scan_q, 100).await.unwrap() {
        let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
        assert!(body["alert"]["problem"].is_null(), "no dead letter about a dead letter: {d:?}");
    }
}

pub async fn one_applications_refused_cleanup_never_holds_back_another_applications<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    let recording = Arc::new(RecordingSink::default());
    w.reconfigure(|app| recording_only(app, &recording)).await;
    // A second application, B, with one secret of its own, rotated beside the world's (A).
    let integration = w.integration();
    let b = w.sim().tenant().add_app(NewApp::named("Billing API"));
    let b_old = w.sim().tenant().add_password_to(b.object_id, w.sim().now() + time::Duration::days(10)).unwrap();
    let app = w.app().clone();
    Syncer {
        directory: app.directory(&integration).unwrap().as_ref(),
        store: app.store.as_ref(),
        clock: app.clock.as_ref(),
        progress: &|_| {},
    }
    .sync(&integration, SyncMode::Full)
    .await
    .unwrap();
    let b_credential = app
        .store
        .list_credentials(Some(&integration))
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id.key_id.as_uuid() == b_old.key_id)
        .unwrap()
        .id;
    let a_run = w.request().await;
    let trigger = Trigger::Manual { by: "alice".into(), reason: None };
    let RotationAccepted::Started { execution: b_run } =
        request_rotation(&app, &b_credential, trigger, false).await.unwrap()
    else {
        panic!("B's rotation did not start")
    };
    let a_done = w.run_until_status(&a_run, ExecutionStatus::Completed).await;
    let b_done = w.run_until_status(&b_run, ExecutionStatus::Completed).await;
    w.deliver_by_hand(&a_done).await;
    w.deliver_by_hand(&b_done).await;

    // A's removePassword is refused from now on.
    let refused = Match::path(format!("{}/removePassword", w.application())).method("POST");
    w.sim().faults().push(Fault::new(refused, FaultKind::Forbidden).times(1000));
    w.pass_grace().await;
    for _ in 0..2 {
        w.cleanup().await;
        w.run_until_idle(queues::CLEANUP).await;
    }
    let b_keys: Vec<Uuid> = w.sim().tenant().app_passwords(b.object_id).unwrap().iter().map(|p| p.key_id).collect();
    assert_eq!(b_keys, vec![b_done.new_key_id.unwrap().as_uuid()], "B's old secret went after its grace period");
    assert!(w.key_ids().contains(&w.credential().key_id.as_uuid()), "A's stays: Graph refused it");
    assert!(!is_done(&w.execution(&a_run).await.cleanup), "A's cleanup is still to do, on the next tick");
    let audit = app
        .store
        .list_audit(&AuditQuery { execution: Some(a_run.id), limit: 100, ..Default::default() })
        .await
        .unwrap();
    let failed = audit.iter().find(|a| a.action == "cleanup.failed").expect("A's failure is recorded against A");
    assert!(failed.detail.contains("403"), "{failed:?}");
    let dead = app.queue.dead_letters(&QueueName::new(queues::CLEANUP), 10).await.unwrap();
    assert!(dead.is_empty(), "a refused cleanup is no dead letter per tick: {dead:?}");
    let a_failed =
        |a: &Alert| matches!(&a.problem, Some(Problem::CleanupFailed { execution, .. }) if *execution == a_run.id);
    w.run_until(async || alerts_of(&recording).iter().any(a_failed)).await;
    w.run_until_idle(queues::SCAN).await;
    assert_eq!(alerts_of(&recording).iter().filter(|a| a_failed(a)).count(), 1, "alerted once, not once per run");
}

pub async fn a_failed_rotation_shows_failed_and_keeps_its_expiry_alerts_and_its_own<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    let recording = Arc::new(RecordingSink::default());
    w.reconfigure(|app| recording_only(app, &recording)).await;
    w.sim().targets().set_webhook_failures("ops", 1000, 503);
    let e = w.request().await;
    let app = w.app().clone();
    let step_q = QueueName::new(queues::STEP);
    w.run_until(async || !app.queue.dead_letters(&step_q, 10).await.unwrap().is_empty()).await;
    assert_eq!(w.execution(&e).await.status, ExecutionStatus::Failed);
    assert_eq!(w.state_of_old_at(app.clock.now()).await, LifecycleState::RotationFailed, "failed, not Rotating");

    let mine = |a: &&Alert| a.credential == *w.credential();
    w.scan().await;
    w.run_until(async || alerts_of(&recording).iter().filter(mine).count() >= 3).await;
    w.scan().await;
    w.run_until_idle(queues::SCAN).await;
    let sent = alerts_of(&recording);
    assert_eq!(sent.iter().filter(mine).count(), 3, "each once, though scanned twice: {sent:#?}");
    assert!(
        sent.iter().filter(mine).any(|a| a.problem.is_none() && a.threshold == Some(AlertThreshold::DaysBefore(30))),
        "its expiry alert: {sent:#?}"
    );
    let failed = sent
        .iter()
        .filter(mine)
        .find(|a| matches!(&a.problem, Some(Problem::RotationFailed { execution, .. }) if *execution == e.id));
    let failed = failed.expect("its rotation-failed alert");
    assert!(failed.summary().contains("failed"), "{}", failed.summary());
    assert!(
        sent.iter()
            .filter(mine)
            .any(|a| matches!(&a.problem, Some(Problem::DeadLetter { queue, .. }) if queue == queues::STEP)),
        "its dead letter waiting: {sent:#?}"
    );
}

pub async fn a_removed_integration_loses_its_inventory_and_never_breaks_another_cleanup<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    let app = w.app().clone();
    // What a since-removed integration left in the store: a credential and a due cleanup.
    let mut retired = Credential::test_password(app.clock.now() + time::Duration::days(10));
    retired.id.integration = IntegrationId::parse("retired").unwrap();
    app.store.put_credential(&retired).await.unwrap();
    let mut old_run = Execution::new(
        retired.id.clone(),
        retired.app.unwrap(),
        PolicyId::parse("default").unwrap(),
        Trigger::Manual { by: "alice".into(), reason: None },
        vec![],
        app.clock.now(),
    );
    old_run.status = ExecutionStatus::Completed;
    old_run.new_key_id = Some(KeyId::from_uuid(Uuid::new_v4()));
    old_run.grace_until = Some(app.clock.now());
    app.store.create_execution(&old_run).await.unwrap();

    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    w.deliver_by_hand(&done).await;
    w.pass_grace().await;
    w.cleanup().await;
    w.run_until_idle(queues::CLEANUP).await;
    assert_eq!(w.key_ids(), vec![done.new_key_id.unwrap().as_uuid()], "the configured integration's cleanup ran");
    assert!(app.store.get_credential(&retired.id).await.unwrap().is_none(), "the removed integration's inventory went");
    assert!(app.store.get_execution(&old_run.id).await.unwrap().is_some(), "its history stays");
    let audit = app.store.list_audit(&Default::default()).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "integration.removed" && a.detail.contains("retired")), "{audit:?}");
    assert!(app.queue.dead_letters(&QueueName::new(queues::CLEANUP), 10).await.unwrap().is_empty());
}

pub async fn a_disabled_integration_is_neither_alerted_nor_rotated<W: World>(w: &mut W) {
    with_rollout(w, "abort").await;
    let recording = Arc::new(RecordingSink::default());
    let integration = w.integration();
    w.reconfigure(|app| {
        recording_only(app, &recording);
        app.policies = auto_rotating(&app.policies);
        app.disabled = Arc::new([integration.clone()].into());
        app.directories = Arc::new(Directories::new());
    })
    .await;
    w.scan().await;
    w.run_until_idle(queues::SCAN).await;
    assert!(alerts_of(&recording).is_empty(), "no alerts: {:?}", alerts_of(&recording));
    let app = w.app().clone();
    assert!(app.store.list_executions(w.credential()).await.unwrap().is_empty(), "no automatic rotation");
    let trigger = Trigger::Manual { by: "alice".into(), reason: None };
    let refused = request_rotation(&app, w.credential(), trigger, false).await.unwrap_err();
    assert!(refused.to_string().contains("disabled"), "a clear reason: {refused}");
    w.cleanup().await;
    w.run_until_idle(queues::CLEANUP).await;
    assert!(app.store.get_credential(w.credential()).await.unwrap().is_some(), "its inventory stays");
    assert_eq!(w.passwords().len(), 1, "nothing changed in the tenant");
}

pub async fn a_token_in_a_step_url_or_header_is_sealed_at_rest_and_still_sent<W: World>(w: &mut W) {
    let base = w.sim().target_url("/");
    let steps = parse_steps_with(
        &format!(
            r#"[{{"type":"webhook","order":30,"on_failure":"abort",
                  "config":{{"url":"{base}hooks/ops?token=hook-token-4711","headers":{{"X-Api-Key":"header-key-0815"}}}}}}]"#
        ),
        &AddressPolicy::allowing_loopback(),
    )
    .unwrap()
    .steps;
    w.set_steps(steps).await;
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    assert!(done.plan_sealed, "{done:?}");
    assert_eq!(w.sim().targets().webhooks("ops").len(), 1, "sent with the real URL");
    let store = w.store_text().await;
    assert!(store.contains(&done.plan_record()), "the store was searched and holds the sealed plan");
    for token in ["hook-token-4711", "header-key-0815"] {
        assert!(!store.contains(token), "{token} is in the store in clear");
        assert!(!serde_json::to_string(&done).unwrap().contains(token));
    }
}

/// A wave: many secrets come due together (a tenant onboarded with its secrets expiring this
/// month). One scan starts them all; they proceed side by side across applications and one at a
/// time within each — Graph's pace is on and refuses (409) a write that overlaps another on the
/// same application, and counts the most writers one application ever had — and each step of each
/// rotation runs once.
pub async fn a_wave_of_due_rotations_runs_side_by_side_with_one_writer_per_application_and_each_step_once<W: World>(
    w: &mut W,
) {
    const APPS: usize = 12;
    const SECRETS_PER_APP: usize = 2;
    with_rollout(w, "abort").await;
    let tenant = w.sim().tenant();
    let end = w.sim().now() + time::Duration::days(10);
    for i in 0..APPS {
        let app = tenant.add_app(NewApp::named(format!("Wave API {i}")));
        for _ in 0..SECRETS_PER_APP {
            tenant.add_password_to(app.object_id, end).unwrap();
        }
    }
    let integration = w.integration();
    let app = w.app().clone();
    Syncer {
        directory: app.directory(&integration).unwrap().as_ref(),
        store: app.store.as_ref(),
        clock: app.clock.as_ref(),
        progress: &|_| {},
    }
    .sync(&integration, SyncMode::Full)
    .await
    .unwrap();
    w.reconfigure(|app| app.policies = auto_rotating(&app.policies)).await;
    let app = w.app().clone();
    let policy = app.policies.get(&PolicyId::parse("default").unwrap()).unwrap().clone();
    let now = app.clock.now();
    let due: Vec<CredentialId> = app
        .store
        .list_credentials(Some(&integration))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| policy.rotation_due(c, now))
        .map(|c| c.id)
        .collect();
    assert!(due.len() > APPS * SECRETS_PER_APP, "the wave and the world's own secret: {}", due.len());
    w.sim().set_graph_limits(Some(GraphLimits::documented().with_latency(std::time::Duration::from_millis(5))));

    w.scan().await;
    let app = w.app().clone();
    let settled = async || {
        for c in &due {
            let runs = app.store.list_executions(c).await.unwrap();
            if !runs.iter().any(|e| e.status == ExecutionStatus::Failed || e.status.is_finalized()) {
                return false;
            }
        }
        true
    };
    w.run_until(settled).await;

    let mut new_keys = std::collections::BTreeSet::new();
    for c in &due {
        let runs = app.store.list_executions(c).await.unwrap();
        assert_eq!(runs.len(), 1, "one rotation per due secret: {runs:?}");
        let e = &runs[0];
        assert_eq!(e.status, ExecutionStatus::Completed, "{e:?}");
        for r in app.store.list_step_records(&e.id).await.unwrap() {
            assert_eq!(r.attempts, 1, "each step once: {r:?}");
        }
        new_keys.insert(e.new_key_id.unwrap().to_string());
    }
    let pace = w.sim().graph_pace();
    assert_eq!(pace.max_concurrent_writers, 1, "never two writers on one application: {pace:?}");
    assert_eq!((pace.concurrency_refusals, pace.throttled), (0, 0), "{pace:?}");
    assert_eq!(pace.writes, due.len() as u64, "one addPassword per rotation: {pace:?}");
    let t = w.sim().targets();
    assert_eq!(t.spring_refreshes("payroll"), due.len(), "each refresh once");
    let hooks = t.webhooks("ops");
    let announced: std::collections::BTreeSet<String> =
        hooks.iter().map(|h| h.body["new_key_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(hooks.len(), due.len(), "each webhook once");
    assert_eq!(announced, new_keys, "one per new secret");
    for a in tenant.apps().iter().filter(|a| a.display_name.starts_with("Wave API")) {
        assert_eq!(a.passwords, SECRETS_PER_APP * 2, "each old secret beside its one new one: {a:?}");
    }
}
