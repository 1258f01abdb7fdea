//! Host agents, from the server's side: an operator issues a one-time enrollment code; the agent
//! redeems it with its public keys; from then on each of its requests is signed with its key,
//! checked against the registered public key, the clock (a few minutes' skew) and the nonces seen
//! (a replay is refused); a revoked agent gets nothing. The server keeps only the code's hash and
//! the agent's public keys.

use rotator_agent_protocol::auth::{self, AuthError};
use rotator_agent_protocol::keys::PublicKeys;
use rotator_agent_protocol::wire::{EnrollRequest, EnrollResponse, Heartbeat, HeartbeatAnswer};
use rotator_agent_protocol::{EnrollmentCode, code_hash};
use time::Duration;

use crate::domain::agent::{
    AgentKeys, AgentState, Capabilities, Enrollment, EnrollmentRefusal, HEARTBEAT_INTERVAL, Revocation,
    check_enrollment,
};
use crate::domain::ids::AgentId;
use crate::ports::{AgentRecord, AuditEvent};
use crate::usecases::app::App;
use crate::{Error, Result};

/// How far an agent's clock may be from the server's.
pub const MAX_SKEW: Duration = Duration::minutes(5);

/// Names people type: `web-01`, `iis.prod.eu`.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("agent name", format!("{name:?}: use 1 to 64 letters, digits, '-', '_' or '.'")))
    }
}

async fn audit(s: &App, action: &str, actor: &str, detail: String) {
    let event = AuditEvent {
        at: s.clock.now(),
        action: action.into(),
        actor: actor.into(),
        execution: None,
        credential: None,
        detail,
    };
    if let Err(err) = s.store.append_audit(&event).await {
        tracing::error!(action, error = %err.chain(), "audit trail append failed");
    }
}

/// A new agent awaiting enrollment, and its one-time code (shown once; only its hash is kept).
pub async fn issue_enrollment(
    s: &App,
    name: &str,
    by: &str,
    valid_for: Duration,
) -> Result<(AgentRecord, EnrollmentCode)> {
    check_name(name)?;
    let now = s.clock.now();
    let agents = s.store.list_agents().await?;
    if let Some(other) = agents.iter().find(|a| a.name == name && a.state(now) != AgentState::Revoked) {
        return Err(Error::conflict(
            "agent",
            other.id,
            format!(
                "an agent named {name} exists ({}); revoke it first or choose another name",
                other.state(now).as_str()
            ),
        ));
    }
    let code = EnrollmentCode::generate().map_err(|e| Error::invalid("enrollment code", e.to_string()))?;
    let agent = AgentRecord {
        id: AgentId::from_uuid(uuid::Uuid::new_v4()),
        name: name.to_owned(),
        enrollment: Some(Enrollment {
            code_hash: code_hash(&code),
            issued_by: by.to_owned(),
            issued_at: now,
            expires_at: now + valid_for,
        }),
        keys: None,
        revoked: None,
        hostname: String::new(),
        os: String::new(),
        version: String::new(),
        capabilities: Capabilities::default(),
        allowed_roots: Vec::new(),
        last_heartbeat: None,
    };
    s.store.put_agent(&agent).await?;
    audit(
        s,
        "agent.enrollment_issued",
        by,
        format!("agent {name} ({}) may enroll until {}", agent.id, now + valid_for),
    )
    .await;
    Ok((agent, code))
}

/// Redeems a code: the agent's public keys are registered, the code is spent.
pub async fn enroll(s: &App, request: &EnrollRequest) -> Result<EnrollResponse> {
    let refused = |r: EnrollmentRefusal| Error::Refused(r.to_string());
    let code = EnrollmentCode::parse(&request.code).map_err(|_| refused(EnrollmentRefusal::UnknownOrUsed))?;
    let hash = code_hash(&code);
    let now = s.clock.now();
    let agents = s.store.list_agents().await?;
    let mut agent = agents
        .into_iter()
        .find(|a| a.keys.is_none() && a.revoked.is_none() && a.enrollment.as_ref().is_some_and(|e| e.code_hash == hash))
        .ok_or_else(|| refused(EnrollmentRefusal::UnknownOrUsed))?;
    let enrollment = agent.enrollment.clone().ok_or_else(|| refused(EnrollmentRefusal::UnknownOrUsed))?;
    check_enrollment(&enrollment, now).map_err(refused)?;
    // Spent by exactly one of two agents that race with the same code.
    if !s.store.mark_once(&format!("agent-enrollment:{hash}"), now, enrollment.expires_at).await? {
        return Err(refused(EnrollmentRefusal::UnknownOrUsed));
    }
    let keys = &request.public_keys;
    agent.keys = Some(AgentKeys {
        signing: keys.signing_base64(),
        sealing: keys.sealing_base64(),
        fingerprint: keys.fingerprint(),
        enrolled_at: now,
    });
    agent.enrollment = None;
    agent.hostname = request.hostname.clone();
    agent.os = request.os.clone();
    agent.version = request.version.clone();
    s.store.put_agent(&agent).await?;
    audit(
        s,
        "agent.enrolled",
        &format!("agent:{}", agent.name),
        format!("agent {} ({}) enrolled from {} with key {}", agent.name, agent.id, agent.hostname, keys.fingerprint()),
    )
    .await;
    Ok(EnrollResponse { agent_id: agent.id.to_string(), name: agent.name })
}

/// The enrolled, not revoked agent that signed this request, once: a replayed request (the same
/// nonce within the skew window) is refused. `header` reads one request header.
pub async fn authenticate(
    s: &App,
    header: impl Fn(&str) -> Option<String>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<AgentRecord> {
    let words = |e: AuthError| Error::Refused(format!("agent request: {e}"));
    let claimed = auth::parse_headers(header).map_err(words)?;
    let unknown = || Error::Refused("agent request: no such enrolled agent".into());
    let id = AgentId::parse(&claimed.agent_id).map_err(|_| unknown())?;
    let agent = s.store.get_agent(&id).await?.ok_or_else(unknown)?;
    if let Some(r) = &agent.revoked {
        return Err(Error::Refused(format!("agent {} was revoked by {} at {}", agent.name, r.by, r.at)));
    }
    let keys = agent.keys.as_ref().ok_or_else(unknown)?;
    let public = PublicKeys::parse(&keys.signing, &keys.sealing)
        .map_err(|_| Error::Refused("agent request: the agent's registered keys are not valid".into()))?;
    let now = s.clock.now();
    let verified =
        auth::verify(&claimed, &public, method, path_and_query, body, now.unix_timestamp(), MAX_SKEW.whole_seconds())
            .map_err(words)?;
    let forget_at = time::OffsetDateTime::from_unix_timestamp(verified.remember_until).unwrap_or(now + MAX_SKEW * 2);
    if !s.store.mark_once(&format!("agent-nonce:{}:{}", agent.id, verified.nonce), now, forget_at).await? {
        return Err(Error::Refused("agent request: replayed (its nonce was seen already)".into()));
    }
    Ok(agent)
}

/// Records what the agent says of itself; answers when to send the next.
pub async fn heartbeat(s: &App, mut agent: AgentRecord, beat: &Heartbeat) -> Result<HeartbeatAnswer> {
    agent.version = beat.version.clone();
    agent.os = beat.os.clone();
    agent.hostname = beat.hostname.clone();
    agent.capabilities =
        Capabilities { file_formats: beat.capabilities.file_formats.clone(), iis: beat.capabilities.iis };
    agent.allowed_roots = beat.allowed_roots.clone();
    agent.last_heartbeat = Some(s.clock.now());
    s.store.put_agent(&agent).await?;
    Ok(HeartbeatAnswer { interval_secs: HEARTBEAT_INTERVAL.whole_seconds().unsigned_abs() })
}

/// From now on the agent gets nothing; revoking twice is harmless.
pub async fn revoke(s: &App, id: AgentId, by: &str) -> Result<AgentRecord> {
    let mut agent = s.store.get_agent(&id).await?.ok_or_else(|| Error::not_found("agent", id))?;
    if agent.revoked.is_some() {
        return Ok(agent);
    }
    agent.revoked = Some(Revocation { by: by.to_owned(), at: s.clock.now() });
    agent.enrollment = None;
    s.store.put_agent(&agent).await?;
    audit(s, "agent.revoked", by, format!("agent {} ({}) revoked", agent.name, agent.id)).await;
    Ok(agent)
}

/// An agent as operators see it: its state now, and the steps that name it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentView {
    pub id: AgentId,
    pub name: String,
    pub state: &'static str,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_heartbeat: Option<time::OffsetDateTime>,
    pub hostname: String,
    pub os: String,
    pub version: String,
    pub capabilities: Capabilities,
    pub allowed_roots: Vec<String>,
    /// Of its public keys, for comparing with what the host shows.
    pub fingerprint: Option<String>,
    /// `policy/step order: step name` of every step that runs on it.
    pub used_by: Vec<String>,
}

/// Every agent, by name, with the steps of the configured policies that use it.
pub async fn list(s: &App) -> Result<Vec<AgentView>> {
    let now = s.clock.now();
    let mut agents = s.store.list_agents().await?;
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(agents
        .into_iter()
        .map(|a| {
            let used_by = s
                .policies
                .all()
                .iter()
                .flat_map(|p| p.steps.iter().map(move |st| (p, st)))
                .filter(
                    |(_, st)| matches!(st.agent(), Some(crate::domain::steps::AgentTarget::Agent(id)) if *id == a.id),
                )
                .map(|(p, st)| format!("{}/{}: {}", p.id, st.order, st.display_name()))
                .collect();
            AgentView {
                id: a.id,
                state: a.state(now).as_str(),
                name: a.name,
                last_heartbeat: a.last_heartbeat,
                hostname: a.hostname,
                os: a.os,
                version: a.version,
                capabilities: a.capabilities,
                allowed_roots: a.allowed_roots,
                fingerprint: a.keys.map(|k| k.fingerprint),
                used_by,
            }
        })
        .collect())
}
