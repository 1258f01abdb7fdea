//! Host agents as the server knows them: enrolled once with a one-time code, known from then on by
//! their public keys (the server keeps no agent credential), seen through their heartbeats, and
//! revoked by an operator. Pure: the time and the codes come in as values.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// How long an enrollment code is good for when the operator does not say.
pub const ENROLLMENT_VALID_FOR: Duration = Duration::hours(1);

/// How often an agent is asked to heartbeat; one that missed three is offline.
pub const HEARTBEAT_INTERVAL: Duration = Duration::seconds(30);
pub const OFFLINE_AFTER: Duration = Duration::seconds(90);

/// A code issued by `rotator agents enroll`: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// SHA-256 of the normalised code, hex.
    pub code_hash: String,
    pub issued_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// The agent's public keys, as it registered them at enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentKeys {
    /// Ed25519, base64url: verifies the agent's requests.
    pub signing: String,
    /// X25519 (HPKE), base64url: what secrets are sealed to.
    pub sealing: String,
    /// A short digest of both, for operators to compare with `rotator-agent status`.
    pub fingerprint: String,
    #[serde(with = "time::serde::rfc3339")]
    pub enrolled_at: OffsetDateTime,
}

/// Who revoked an agent, and when: from then on it gets nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What an agent can do, as its last heartbeat said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The `file_format`s its writer handles (`json`, `yaml`, `env`, `xml`, …).
    #[serde(default)]
    pub file_formats: Vec<String>,
    /// IIS's management tools are there (Windows).
    #[serde(default)]
    pub iis: bool,
}

/// Where an agent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// A code was issued; no agent has used it yet.
    AwaitingEnrollment {
        expired: bool,
    },
    /// Enrolled, heartbeating within [`OFFLINE_AFTER`].
    Online,
    /// Enrolled, but not heard from within [`OFFLINE_AFTER`] (or never since enrolling).
    Offline,
    Revoked,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingEnrollment { expired: false } => "awaiting enrollment",
            Self::AwaitingEnrollment { expired: true } => "enrollment code expired",
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Revoked => "revoked",
        }
    }
}

/// Why an enrollment code is not accepted; the same words for a code never issued and one that
/// was used, so a guesser learns nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentRefusal {
    UnknownOrUsed,
    Expired,
}

impl std::fmt::Display for EnrollmentRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::UnknownOrUsed => "the enrollment code is not valid (unknown, or already used)",
            Self::Expired => "the enrollment code has expired: issue a new one with `rotator agents enroll NAME`",
        })
    }
}

/// Whether `enrollment` accepts a code at `now` (its hash already matched).
pub fn check_enrollment(enrollment: &Enrollment, now: OffsetDateTime) -> Result<(), EnrollmentRefusal> {
    if now >= enrollment.expires_at { Err(EnrollmentRefusal::Expired) } else { Ok(()) }
}

/// An agent's state at `now`, from what is recorded of it.
pub fn state(
    enrollment: Option<&Enrollment>,
    keys: Option<&AgentKeys>,
    revoked: Option<&Revocation>,
    last_heartbeat: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> AgentState {
    if revoked.is_some() {
        return AgentState::Revoked;
    }
    if keys.is_none() {
        let expired = enrollment.is_none_or(|e| check_enrollment(e, now).is_err());
        return AgentState::AwaitingEnrollment { expired };
    }
    match last_heartbeat {
        Some(at) if now - at <= OFFLINE_AFTER => AgentState::Online,
        _ => AgentState::Offline,
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-02 14:00 UTC);

    fn enrollment(expires_at: OffsetDateTime) -> Enrollment {
        Enrollment { code_hash: "ab".into(), issued_by: "alice".into(), issued_at: NOW, expires_at }
    }

    fn keys() -> AgentKeys {
        AgentKeys { signing: "s".into(), sealing: "x".into(), fingerprint: "f".into(), enrolled_at: NOW }
    }

    #[test]
    fn a_code_is_good_until_it_expires() {
        let e = enrollment(NOW + ENROLLMENT_VALID_FOR);
        assert_eq!(check_enrollment(&e, NOW), Ok(()));
        assert_eq!(check_enrollment(&e, NOW + ENROLLMENT_VALID_FOR), Err(EnrollmentRefusal::Expired));
    }

    #[test]
    fn the_state_follows_enrollment_heartbeats_and_revocation() {
        let e = enrollment(NOW + Duration::minutes(5));
        assert_eq!(state(Some(&e), None, None, None, NOW), AgentState::AwaitingEnrollment { expired: false });
        assert_eq!(
            state(Some(&e), None, None, None, NOW + Duration::hours(1)),
            AgentState::AwaitingEnrollment { expired: true }
        );
        let k = keys();
        assert_eq!(state(None, Some(&k), None, None, NOW), AgentState::Offline, "never heard from");
        assert_eq!(state(None, Some(&k), None, Some(NOW - Duration::seconds(30)), NOW), AgentState::Online);
        assert_eq!(state(None, Some(&k), None, Some(NOW - Duration::seconds(91)), NOW), AgentState::Offline);
        let r = Revocation { by: "bob".into(), at: NOW };
        assert_eq!(state(None, Some(&k), Some(&r), Some(NOW), NOW), AgentState::Revoked);
    }
}
