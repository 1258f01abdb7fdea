//! Executions: one rotation of one credential, with a record per step.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Span;
use super::steps::{OnFailure, StepDefinition};
use crate::domain::ids::{AppObjectId, CredentialId, ExecutionId, KeyId, PolicyId};

/// Who or what started a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// expiry-scan found the credential due.
    Automatic { reason: String },
    /// An operator asked, over HTTP or the command line.
    Manual { by: String, reason: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Recorded, the new secret not created yet.
    Pending,
    /// The new secret exists; steps are running.
    Running,
    /// It could not go on: preflight refused it, Graph refused the new secret, an `abort` step
    /// failed after its retries, or its message was dead-lettered. The old secret stays valid.
    /// While it holds a new secret it keeps the claim on the credential (a redrive resumes where
    /// it stopped; `cancel` frees it); one that never created a secret frees it at once.
    Failed,
    /// Every step ran; at least one `continue` step failed. Never reported healthy; grace cleanup
    /// waits for an operator.
    NeedsAttention,
    /// Every step succeeded.
    Completed,
    /// Abandoned: by an operator (`cancel`), or because its credential or application left the
    /// tenant.
    Cancelled,
}

impl ExecutionStatus {
    /// Terminal executions never run again (a failed one may, after a redrive).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::NeedsAttention | Self::Cancelled)
    }
    /// Whether the rollout finished and the old credential is superseded.
    pub fn is_finalized(self) -> bool {
        matches!(self, Self::Completed | Self::NeedsAttention)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Failed => "failed",
            Self::NeedsAttention => "needs_attention",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

/// What happened in one step of an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub execution: ExecutionId,
    /// Position in the execution's plan: 0 is `verify`, the last is `finalize`.
    pub index: u32,
    /// Human-readable, e.g. "Write secret to Key Vault kv-prod/app-secret".
    pub name: String,
    /// The step type (`verify`, `azure_key_vault`, …, `finalize`).
    pub kind: String,
    pub attempts: u32,
    pub outcome: StepOutcome,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// When its last attempt started or recorded its outcome: the recovery sweep's sign of life.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub attempted_at: Option<OffsetDateTime>,
    /// The last error, in words; never a secret.
    pub error: Option<String>,
    /// An attempt failed but left the new secret where a consumer may read it (the step's
    /// `StepFailure::left_in_place`): cancel keeps the new secret. It stays set through later
    /// failed attempts (one that cannot read the place cannot tell it is gone) until one succeeds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub left_in_place: bool,
}

/// One step of an execution's plan, fixed when the execution is created so that a policy edited
/// mid-rotation does not change a rollout under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// `verify`, a step type such as `webhook`, or `finalize`.
    pub kind: String,
    pub name: String,
    pub on_failure: OnFailure,
    /// Tries of this step before `on_failure` applies.
    pub attempts: u32,
    pub retry_delay: Span,
    /// The rollout step's definition; `None` for `verify` and `finalize`.
    pub definition: Option<StepDefinition>,
}

pub const VERIFY: &str = "verify";
pub const FINALIZE: &str = "finalize";

/// The plan of a rotation: verify the new secret, the policy's steps in order, finalize.
pub fn plan(steps: &[StepDefinition]) -> Vec<PlannedStep> {
    let mut plan = vec![PlannedStep {
        kind: VERIFY.into(),
        name: "Verify the new secret signs in".into(),
        on_failure: OnFailure::Abort,
        attempts: 1,
        retry_delay: Span::from_secs(2),
        definition: None,
    }];
    let mut sorted: Vec<&StepDefinition> = steps.iter().collect();
    sorted.sort_by_key(|s| s.order);
    plan.extend(sorted.into_iter().map(|s| PlannedStep {
        kind: s.kind().as_str().into(),
        name: s.display_name(),
        on_failure: s.on_failure,
        attempts: s.retries + 1,
        retry_delay: s.retry_delay,
        definition: Some(s.clone()),
    }));
    plan.push(PlannedStep {
        kind: FINALIZE.into(),
        name: "Finalize: the old secret enters its grace period".into(),
        on_failure: OnFailure::Abort,
        attempts: 3,
        retry_delay: Span::from_secs(5),
        definition: None,
    });
    plan
}

/// The one reading of a manually delivered secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revealed {
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Where grace cleanup stands for the old credential of a finalized execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Cleanup {
    /// Not finalized yet, or the grace period is running.
    NotDue,
    /// The rollout needs attention: cleanup waits until an operator confirms.
    AwaitingConfirmation,
    /// An operator confirmed that the old credential may go.
    Confirmed { by: String },
    /// The old credential was removed (or was already gone).
    Done {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
}

/// One rotation of one credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub id: ExecutionId,
    /// The credential being rotated away from.
    pub credential: CredentialId,
    pub app: AppObjectId,
    pub policy: PolicyId,
    pub trigger: Trigger,
    pub status: ExecutionStatus,
    /// The key id of the secret this execution created, once Graph answered.
    pub new_key_id: Option<KeyId>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub new_secret_end: Option<OffsetDateTime>,
    /// The step that runs next (or ran last, once finished).
    pub current_step: u32,
    pub step_count: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Until when the old credential stays valid; set by `finalize`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub grace_until: Option<OffsetDateTime>,
    pub cleanup: Cleanup,
    /// A one-line rollout summary, e.g. "5 of 5 steps succeeded".
    pub summary: Option<String>,
    /// The steps, fixed at creation.
    #[serde(default)]
    pub plan: Vec<PlannedStep>,
    /// A `continue` step failed: never reported as a healthy rollout.
    #[serde(default)]
    pub needs_attention: bool,
    /// The last error, in words; never a secret.
    pub error: Option<String>,
    /// The policy declares manual delivery: no step publishes the secret, an operator reads it once
    /// (`rotator reveal`) and grace cleanup waits for `rotator confirm`.
    #[serde(default)]
    pub manual_delivery: bool,
    /// `plan` is redacted (step URL queries and header values hidden); the plan as written is
    /// sealed in the record [`Execution::plan_record`].
    #[serde(default)]
    pub plan_sealed: bool,
    /// When (and by whom) the new secret was read, for a manual delivery; it is read only once.
    #[serde(default)]
    pub revealed: Option<Revealed>,
    /// Bumped on every write; writes are conditional on it so two writers cannot both win.
    pub version: u64,
}

impl Execution {
    pub fn new(
        credential: CredentialId,
        app: AppObjectId,
        policy: PolicyId,
        trigger: Trigger,
        plan: Vec<PlannedStep>,
        now: OffsetDateTime,
    ) -> Self {
        let step_count = u32::try_from(plan.len()).unwrap_or(u32::MAX);
        Self {
            id: ExecutionId::new(),
            credential,
            app,
            policy,
            trigger,
            status: ExecutionStatus::Pending,
            new_key_id: None,
            new_secret_end: None,
            current_step: 0,
            step_count,
            created_at: now,
            updated_at: now,
            finished_at: None,
            grace_until: None,
            cleanup: Cleanup::NotDue,
            summary: None,
            plan,
            needs_attention: false,
            error: None,
            manual_delivery: false,
            plan_sealed: false,
            revealed: None,
            version: 0,
        }
    }

    /// The record id of the sealed new secret.
    pub fn secret_record(&self) -> String {
        format!("{}/new-secret", self.id)
    }

    /// The record id of the sealed plan, when the plan holds values kept secret.
    pub fn plan_record(&self) -> String {
        format!("{}/plan", self.id)
    }

    /// How long it ran, once finished.
    pub fn duration(&self) -> Option<time::Duration> {
        self.finished_at.map(|f| f - self.created_at)
    }

    /// Whether it holds the claim on its credential (at most one execution does): while pending or
    /// running, and while failed with a new secret in Entra that a redrive or a cancel must settle.
    /// Both stores keep the claim by this.
    pub fn holds_claim(&self) -> bool {
        match self.status {
            ExecutionStatus::Pending | ExecutionStatus::Running => true,
            ExecutionStatus::Failed => self.new_key_id.is_some(),
            _ => false,
        }
    }

    /// Whether the scheduler's sweeps still need it: it holds its claim, or it is finalized with
    /// its cleanup not done. Both stores index executions by this.
    pub fn is_open(&self) -> bool {
        self.holds_claim() || (self.status.is_finalized() && !matches!(self.cleanup, Cleanup::Done { .. }))
    }

    /// It cannot go on: failed with `reason`, the old secret untouched.
    pub fn fail(&mut self, reason: impl Into<String>, now: OffsetDateTime) {
        self.status = ExecutionStatus::Failed;
        self.error = Some(reason.into());
        self.updated_at = now;
        self.finished_at = Some(now);
    }

    /// The credential it rotates left the tenant: the execution is cancelled (its target is gone).
    /// Terminal executions keep their history as it is.
    pub fn cancel_for_removed_credential(&mut self, now: OffsetDateTime) {
        if !self.holds_claim() {
            return;
        }
        self.status = ExecutionStatus::Cancelled;
        self.error = Some(CREDENTIAL_REMOVED.into());
        self.updated_at = now;
        self.finished_at = Some(now);
        self.version += 1;
    }
}

/// The error an execution is cancelled with when its credential leaves the tenant.
pub const CREDENTIAL_REMOVED: &str = "the credential was removed from the tenant";
