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
use entra_rotator::domain::ids::CredentialId;
use entra_rotator::domain::lifecycle::{LifecycleFacts, LifecycleState, lifecycle_state};
use entra_rotator::domain::steps::{StepDefinition, parse_steps_with};
use entra_rotator::messages::queues;
use entra_rotator::ports::QueueName;
use entra_rotator::ports::key_ring::{SealContext, SealedValue};
use entra_rotator::testing::faults::FlakyStore;
use entra_rotator::usecases::app::App;
use entra_rotator::usecases::rotation::{RotationAccepted, confirm_cleanup, request_rotation};
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
    /// Replaces the policy's steps (the grace period stays the world's).
    async fn set_steps(&mut self, steps: Vec<StepDefinition>);
    /// Makes the next seal fail: a crash right after Graph answered `addPassword`.
    fn fail_next_seal(&self);
    /// Makes the next send to `queue` fail: a crash after the store write that precedes it.
    fn fail_next_send(&self, queue: &str);
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
    confirm_cleanup(w.app(), e.id, "alice").await.unwrap();
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
