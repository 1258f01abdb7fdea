//! The StepRunner contract: what every step runner keeps, whatever it talks to. A step whose target
//! answers succeeds; a passing failure (5xx, 429, no connection) is retryable; a refusal for good
//! (4xx) is not, so the chain stops at once instead of spending its retries; and no failure's words
//! carry the new secret or the target's URL (where a token may sit).
//!
//! A runner's test binds it to its simulated endpoint through a [`StepRunnerFixture`] and runs
//! [`crate::step_runner_contract_tests!`]; adding a step type means adding one such binding.

use std::sync::Arc;

use async_trait::async_trait;
use time::macros::datetime;

use crate::domain::ids::{AppObjectId, ClientId, CredentialId, ExecutionId, KeyId};
use crate::domain::secret::SecretValue;
use crate::domain::steps::StepDefinition;
use crate::ports::step_runner::{StepContext, StepFailure, StepRunner};

/// The secret every contract step carries; no failure text may contain it.
pub const SECRET: &str = "Qx8~contract-new-secret.Zk";

/// How the fixture's endpoint answers the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// As a healthy target does.
    Healthy,
    /// A passing failure: 503 for every request of this step.
    Unavailable,
    /// A refusal for good: 403 (or the type's own permanent refusal).
    Refused,
    /// Nothing listens at the step's address.
    Unreachable,
}

/// A runner and its simulated endpoint.
#[async_trait]
pub trait StepRunnerFixture: Send + Sync {
    fn runner(&self) -> Arc<dyn StepRunner>;
    /// A step of the runner's type, against an endpoint that answers as `answer` says.
    async fn step(&self, answer: Answer) -> StepDefinition;
    /// Strings that must not appear in a failure's words (the endpoint's URL, a token).
    fn private_words(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether a refusal ([`Answer::Refused`]) is final for this type. A health check says no: it
    /// waits for health, and any wrong answer may still turn right before its timeout.
    fn refusal_is_final(&self) -> bool {
        true
    }
}

fn credential() -> CredentialId {
    CredentialId::parse("contoso/app/11111111-1111-1111-1111-111111111111/22222222-2222-2222-2222-222222222222")
        .unwrap()
}

async fn run(f: &dyn StepRunnerFixture, answer: Answer) -> Result<(), StepFailure> {
    let step = f.step(answer).await;
    let runner = f.runner();
    assert!(runner.supports(step.kind()), "the runner supports the type of its own fixture's step");
    let secret = SecretValue::new(SECRET);
    let credential = credential();
    let ctx = StepContext {
        execution: ExecutionId::new(),
        step_index: 1,
        credential: &credential,
        app: AppObjectId::parse("11111111-1111-1111-1111-111111111111").unwrap(),
        client_id: ClientId::parse("33333333-3333-3333-3333-333333333333").unwrap(),
        new_key_id: KeyId::parse("44444444-4444-4444-4444-444444444444").unwrap(),
        new_secret_end: Some(datetime!(2027-06-01 00:00 UTC)),
        secret: &secret,
        now: datetime!(2026-12-01 12:00 UTC),
        attempt: 1,
    };
    runner.run(&step, &ctx).await
}

fn keeps_its_words_clean(f: &dyn StepRunnerFixture, failure: &StepFailure) {
    assert!(!failure.message.is_empty(), "a failure says what went wrong");
    assert!(!failure.message.contains(SECRET), "the secret appears in {:?}", failure.message);
    for word in f.private_words() {
        assert!(!failure.message.contains(&word), "{word:?} appears in {:?}", failure.message);
    }
}

pub async fn a_step_whose_target_answers_succeeds(f: &dyn StepRunnerFixture) {
    if let Err(e) = run(f, Answer::Healthy).await {
        panic!("expected success, got {e:?}");
    }
}

pub async fn an_unavailable_target_is_a_retryable_failure(f: &dyn StepRunnerFixture) {
    let failure = run(f, Answer::Unavailable).await.expect_err("an unavailable target fails the step");
    assert!(failure.retryable, "{failure:?}");
    keeps_its_words_clean(f, &failure);
}

pub async fn a_refusal_for_good_is_a_permanent_failure(f: &dyn StepRunnerFixture) {
    let failure = run(f, Answer::Refused).await.expect_err("a refusing target fails the step");
    assert_eq!(failure.retryable, !f.refusal_is_final(), "{failure:?}");
    keeps_its_words_clean(f, &failure);
}

pub async fn an_unreachable_target_is_a_retryable_failure(f: &dyn StepRunnerFixture) {
    let failure = run(f, Answer::Unreachable).await.expect_err("an unreachable target fails the step");
    assert!(failure.retryable, "{failure:?}");
    keeps_its_words_clean(f, &failure);
}

/// The StepRunner contract as tests: `step_runner_contract_tests!(async { fixture });`
#[macro_export]
macro_rules! step_runner_contract_tests {
    ($make:expr) => {
        $crate::step_runner_contract_tests!(@cases $make;
            a_step_whose_target_answers_succeeds,
            an_unavailable_target_is_a_retryable_failure,
            a_refusal_for_good_is_a_permanent_failure,
            an_unreachable_target_is_a_retryable_failure,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let fixture = $make.await;
                $crate::testing::contract::step_runner::$case(&fixture).await;
            }
        )*
    };
}
