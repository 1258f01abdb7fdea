//! The step runner port: runs one rollout step of one execution. Each step type of DESIGN §5 has its
//! runner under `adapters::steps`; a failure says in words (never a secret) whether retrying helps.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::domain::ids::{AppObjectId, ClientId, CredentialId, ExecutionId, KeyId};
use crate::domain::secret::SecretValue;
use crate::domain::steps::{StepDefinition, StepKind};

/// What a step may know of the rotation. The new secret is here for the steps that publish it;
/// the steps of this build never send it anywhere.
pub struct StepContext<'a> {
    pub execution: ExecutionId,
    pub step_index: u32,
    pub credential: &'a CredentialId,
    pub app: AppObjectId,
    pub client_id: ClientId,
    pub new_key_id: KeyId,
    pub new_secret_end: Option<OffsetDateTime>,
    pub secret: &'a SecretValue,
    pub now: OffsetDateTime,
    /// Which attempt of the step this is (1 first); a redelivery of one attempt has its number.
    pub attempt: u32,
}

/// Why a step failed, in words (never a secret), and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub message: String,
    pub retryable: bool,
    /// The step failed, but what it delivered stayed where a consumer may read it (one vault of
    /// two written, a stored secret that could not be put back): the new secret may be in use, so
    /// it must not be removed from Entra.
    pub left_in_place: bool,
}

impl StepFailure {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true, left_in_place: false }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false, left_in_place: false }
    }
    /// As it is, saying that the new secret stayed where a consumer may read it.
    #[must_use]
    pub fn left_in_place(mut self) -> Self {
        self.left_in_place = true;
        self
    }
}

/// What a probe may know: the credential being rotated (its integration is the default identity).
#[derive(Debug, Clone, Copy)]
pub struct ProbeContext<'a> {
    pub credential: &'a CredentialId,
}

/// How a probe of a step's target came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    Ok,
    /// Something may go wrong at rollout time, or the probe could not tell (the target did not
    /// answer): not a reason to refuse the rotation.
    Warning,
    /// Only a person can tell.
    ManualReview,
    /// The rollout would fail: the rotation is refused before any secret is created.
    Failed,
}

/// One answer of a probe: what was probed (`Key Vault portal-kv`), how it came out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub target: String,
    pub outcome: ProbeOutcome,
    pub reason: String,
}

#[async_trait]
pub trait StepRunner: Send + Sync {
    /// Whether this runner can run steps of `kind`; preflight refuses a plan with a step it cannot.
    fn supports(&self, kind: StepKind) -> bool;
    /// Whether steps of `kind` have a probe ([`StepRunner::probe`]); preflight reports the others
    /// as "reached at rollout time".
    fn probes(&self, _kind: StepKind) -> bool {
        false
    }
    /// Asks the step's targets what the rollout will need (reachable, allowed, configured),
    /// changing nothing. Empty for a step type without a probe.
    async fn probe(&self, _step: &StepDefinition, _ctx: &ProbeContext<'_>) -> Vec<Probe> {
        Vec::new()
    }
    async fn run(&self, step: &StepDefinition, ctx: &StepContext<'_>) -> Result<(), StepFailure>;
}
