//! The names of things in the table: the attributes, each record's partition and sort key, the
//! indexes, and times as text that sorts in time order (the layout is in the module documentation).

use entra_rotator::domain::ids::{CredentialId, ExecutionId, IntegrationId, OwnerKind};
use entra_rotator::ports::AlertKey;
use time::OffsetDateTime;

pub(super) const PK: &str = "pk";
pub(super) const SK: &str = "sk";
pub(super) const GSI1: &str = "gsi1";
pub(super) const GSI1_PK: &str = "gsi1pk";
pub(super) const GSI1_SK: &str = "gsi1sk";
pub(super) const GSI2: &str = "gsi2";
pub(super) const GSI2_PK: &str = "gsi2pk";
pub(super) const GSI2_SK: &str = "gsi2sk";
pub(super) const DOC: &str = "doc";
pub(super) const VERSION: &str = "version";
pub(super) const TTL_ATTRIBUTE: &str = "expires_at";

pub(super) const INTEGRATIONS: &str = "INTEGRATIONS";
pub(super) const AGENTS: &str = "AGENTS";
pub(super) const OPEN: &str = "OPEN";
pub(super) const AUDIT_ALL: &str = "AUDIT";
pub(super) const EXEC_SK: &str = "EXEC";
pub(super) const STEP_PREFIX: &str = "STEP#";

pub(super) fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Milliseconds as fixed-width text, so that text order is time order. Times before 1970 (which
/// no record has) would sort as 1970.
pub(super) fn time_key(t: OffsetDateTime) -> String {
    format!("{:015}", millis(t).max(0))
}

fn owner_kind_text(kind: OwnerKind) -> &'static str {
    match kind {
        OwnerKind::Application => "app",
        OwnerKind::ServicePrincipal => "sp",
    }
}

pub(super) fn owner_pk(integration: &IntegrationId, kind: OwnerKind) -> String {
    match kind {
        OwnerKind::Application => format!("APP#{integration}"),
        OwnerKind::ServicePrincipal => format!("SP#{integration}"),
    }
}

pub(super) fn credential_pk(integration: &IntegrationId) -> String {
    format!("CRED#{integration}")
}

/// The start of every credential id of one owner, for `begins_with`.
pub(super) fn owner_credentials_prefix(integration: &IntegrationId, kind: OwnerKind, owner: uuid::Uuid) -> String {
    format!("{integration}/{}/{}/", owner_kind_text(kind), owner.hyphenated())
}

pub(super) fn execution_pk(id: &ExecutionId) -> String {
    format!("EXEC#{id}")
}

pub(super) fn claim_pk(credential: &CredentialId) -> String {
    format!("CLAIM#{credential}")
}

pub(super) const CLAIM_SK: &str = "CLAIM";

pub(super) fn alert_pk(credential: &CredentialId) -> String {
    format!("ALERT#{credential}")
}

pub(super) fn alert_key(key: &AlertKey) -> (String, String) {
    (alert_pk(&key.credential), format!("{}#{}", key.end.unix_timestamp(), key.threshold.key()))
}

/// A key marked once, until it is forgotten (`expires_at`).
pub(super) fn once_key(key: &str) -> (String, String) {
    (format!("ONCE#{key}"), "ONCE".to_owned())
}

pub(super) fn mark_key(key: &str) -> (String, String) {
    (format!("MARK#{key}"), "MARK".to_owned())
}

pub(super) fn sealed_key(record_id: &str) -> (String, String) {
    (format!("SEALED#{record_id}"), "SEALED".to_owned())
}

pub(super) fn sealed_by_execution(id: &ExecutionId) -> String {
    format!("EXEC_SEALED#{id}")
}

pub(super) fn sync_key(integration: &IntegrationId) -> (String, String) {
    (format!("SYNC#{integration}"), "SYNC".to_owned())
}

/// A credential's entry in the due index (`gsi2`): its integration's partition, sorted by moment.
pub(super) fn due_pk(integration: &IntegrationId) -> String {
    format!("DUE#{integration}")
}

pub(super) fn due_sk(due: OffsetDateTime, id: &CredentialId) -> String {
    format!("{}#{id}", time_key(due))
}

/// The moment a due index sort key starts with.
pub(super) fn due_of_sk(sk: &str) -> Option<OffsetDateTime> {
    let ms: i64 = sk.get(..15)?.parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// The scan's fingerprint of what the stored moments were computed from.
pub(super) fn scan_key() -> (String, String) {
    ("SCAN".to_owned(), "FINGERPRINT".to_owned())
}

/// The one item that says which layout the table's items follow.
pub(super) fn schema_key() -> (String, String) {
    ("SCHEMA".to_owned(), "SCHEMA".to_owned())
}

/// The table's global secondary indexes.
#[derive(Clone, Copy)]
pub(super) enum Index {
    /// Executions by credential; sealed records by execution.
    Gsi1,
    /// Open executions.
    Gsi2,
}
