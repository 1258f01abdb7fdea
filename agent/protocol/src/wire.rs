//! The JSON bodies of the agent's API. Unknown fields are accepted (not `deny_unknown_fields`),
//! so either side can add a field before the other knows it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::keys::PublicKeys;
use crate::seal::Sealed;

/// `POST` enroll: the agent redeems its one-time code and registers its public keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct EnrollRequest {
    /// The enrollment code as typed; the server normalises it ([`crate::EnrollmentCode::parse`])
    /// and looks it up by [`crate::code_hash`].
    pub code: String,
    pub public_keys: PublicKeys,
    pub hostname: String,
    pub os: String,
    /// The agent's own version.
    pub version: String,
}

impl fmt::Debug for EnrollRequest {
    // The code is a credential until redeemed: never in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("code", &"<redacted>")
            .field("public_keys", &self.public_keys)
            .field("hostname", &self.hostname)
            .field("os", &self.os)
            .field("version", &self.version)
            .finish()
    }
}

/// The answer to [`EnrollRequest`]: who the agent now is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct EnrollResponse {
    /// The id the agent signs its requests with from now on.
    pub agent_id: String,
    /// The name the operator gave it.
    pub name: String,
}

/// The agent's periodic report of what it is and what it can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Heartbeat {
    pub version: String,
    pub os: String,
    pub hostname: String,
    pub capabilities: Capabilities,
    /// The folders the agent's host configuration lets it write under; the server refuses tasks
    /// outside them before sending.
    pub allowed_roots: Vec<String>,
}

/// What this agent can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Capabilities {
    /// The file formats it can write a secret into (e.g. `json`, `env`, `xml`).
    pub file_formats: Vec<String>,
    /// Whether it can probe and recycle IIS application pools (Windows hosts).
    pub iis: bool,
}

/// The answer to a [`Heartbeat`]: when to send the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct HeartbeatAnswer {
    pub interval_secs: u64,
}

/// One thing the server asks the agent to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Task {
    /// Unique per task; part of the sealed value's `info` ([`crate::task_info`]) and the key the
    /// report answers to, so a redelivered task is recognised.
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which the agent must not start the task.
    pub deadline: i64,
    pub work: Work,
}

/// What a [`Task`] asks, tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Work {
    /// Write a new secret value into a file.
    WriteFile {
        target_path: String,
        file_format: String,
        /// Where in the file the value goes (a key, a JSON path, an XML setting name).
        secret_key: String,
        create_if_missing: bool,
        /// Keep a copy of the file as it was before writing.
        backup: bool,
        /// The value, sealed to this agent for this task: the server never sends it in clear.
        value: Sealed,
    },
    /// Recycle an IIS application pool so it reads the new value.
    RecycleAppPool { app_pool: String },
    /// Check that a `WriteFile` to this target could succeed, without writing.
    ProbeFile { target_path: String, file_format: String, create_if_missing: bool },
    /// Check that an application pool exists and can be recycled.
    ProbeIis { app_pool: String },
}

/// The answer to the agent's long poll: the tasks ready for it (possibly none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct TaskPoll {
    pub tasks: Vec<Task>,
}

/// The agent's report of one task's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct TaskReport {
    pub task_id: String,
    pub outcome: Outcome,
    /// In words, for the operator; never the secret.
    pub message: String,
}

/// How a task ended, tagged by `"status"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Done; `changed` is false when the file already held the value (a redelivered task).
    Done { changed: bool },
    /// Failed; `retryable` says whether sending the task again could succeed.
    Failed { retryable: bool },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentKeys, seal, task_info};

    const SECRET: &str = "s3cr3t~Value.Of-The-Client";

    fn write_task(keys: &AgentKeys) -> Task {
        let value = seal(keys.public(), &task_info("agent-1", "task-1"), SECRET.as_bytes()).expect("seal");
        Task {
            id: "task-1".into(),
            created_at: 1_800_000_000,
            deadline: 1_800_000_600,
            work: Work::WriteFile {
                target_path: "/etc/app/secrets.json".into(),
                file_format: "json".into(),
                secret_key: "ClientSecret".into(),
                create_if_missing: false,
                backup: true,
                value,
            },
        }
    }

    #[test]
    fn a_write_task_carries_no_plaintext() {
        let keys = AgentKeys::generate().expect("keys");
        let task = write_task(&keys);
        let json = serde_json::to_string(&TaskPoll { tasks: vec![task] }).expect("json");
        assert!(!json.contains(SECRET));
        assert!(!json.contains("Client\""));
        assert!(json.contains(r#""type":"write_file""#));
    }

    #[test]
    fn a_task_round_trips_and_still_opens() {
        let keys = AgentKeys::generate().expect("keys");
        let task = write_task(&keys);
        let json = serde_json::to_string(&task).expect("json");
        let back: Task = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, task);
        let Work::WriteFile { value, .. } = &back.work else {
            panic!("not a write task");
        };
        let opened = crate::open(&keys, &task_info("agent-1", &back.id), value).expect("open");
        assert_eq!(opened.as_slice(), SECRET.as_bytes());
    }

    #[test]
    fn every_kind_of_work_round_trips() {
        for work in [
            Work::RecycleAppPool { app_pool: "DefaultAppPool".into() },
            Work::ProbeFile {
                target_path: "C:\\app\\web.config".into(),
                file_format: "xml".into(),
                create_if_missing: true,
            },
            Work::ProbeIis { app_pool: "Api".into() },
        ] {
            let json = serde_json::to_string(&work).expect("json");
            assert_eq!(serde_json::from_str::<Work>(&json).expect("parse"), work);
        }
    }

    #[test]
    fn the_other_bodies_round_trip() {
        let keys = AgentKeys::generate().expect("keys");
        let enroll = EnrollRequest {
            code: "0123A-BCDEF-GHJKM-NPQRS".into(),
            public_keys: keys.public().clone(),
            hostname: "web-1".into(),
            os: "linux".into(),
            version: "0.1.0".into(),
        };
        let json = serde_json::to_string(&enroll).expect("json");
        assert!(json.contains(r#""public_keys":{"signing":"#));
        assert_eq!(serde_json::from_str::<EnrollRequest>(&json).expect("parse"), enroll);
        assert!(!format!("{enroll:?}").contains("BCDEF"));

        let heartbeat = Heartbeat {
            version: "0.1.0".into(),
            os: "windows".into(),
            hostname: "iis-1".into(),
            capabilities: Capabilities { file_formats: vec!["json".into(), "xml".into()], iis: true },
            allowed_roots: vec!["C:\\inetpub".into()],
        };
        let json = serde_json::to_string(&heartbeat).expect("json");
        assert_eq!(serde_json::from_str::<Heartbeat>(&json).expect("parse"), heartbeat);

        let report = TaskReport {
            task_id: "task-1".into(),
            outcome: Outcome::Failed { retryable: true },
            message: "the file is locked".into(),
        };
        let json = serde_json::to_string(&report).expect("json");
        assert!(json.contains(r#""outcome":{"status":"failed","retryable":true}"#));
        assert_eq!(serde_json::from_str::<TaskReport>(&json).expect("parse"), report);
    }

    #[test]
    fn unknown_fields_from_a_newer_side_are_ignored() {
        let answer: HeartbeatAnswer = serde_json::from_str(r#"{"interval_secs":60,"jitter_secs":5}"#).expect("parse");
        assert_eq!(answer.interval_secs, 60);
        let outcome: Outcome = serde_json::from_str(r#"{"status":"done","changed":false,"took_ms":3}"#).expect("parse");
        assert_eq!(outcome, Outcome::Done { changed: false });
    }

    #[test]
    fn an_enroll_request_with_bad_keys_does_not_parse() {
        let json = r#"{"code":"x","public_keys":{"signing":"AAAA","sealing":"AAAA"},"hostname":"h","os":"linux","version":"1"}"#;
        let err = serde_json::from_str::<EnrollRequest>(json).expect_err("bad keys");
        assert!(err.to_string().contains("signing key is 3 bytes long"));
    }
}
