//! The whole exchange through the public API only, playing both sides: what the agent and the
//! server each need is exported.

use rotator_agent_protocol::wire::{EnrollRequest, Outcome, Task, TaskPoll, TaskReport, Work};
use rotator_agent_protocol::{AgentKeys, EnrollmentCode, auth, code_hash, open, seal, task_info};

const NOW: i64 = 1_800_000_000;
const SKEW: i64 = 300;

#[test]
fn an_agent_enrolls_polls_and_opens_its_secret() {
    // Operator: the server makes a code and keeps only its hash.
    let code = EnrollmentCode::generate().expect("code");
    let stored_hash = code_hash(&code);

    // Agent: keys, then the enroll body with the code as the operator typed it.
    let keys = AgentKeys::generate().expect("keys");
    let typed = code.grouped().to_lowercase();
    let body = serde_json::to_vec(&EnrollRequest {
        code: typed,
        public_keys: keys.public().clone(),
        hostname: "web-1".into(),
        os: "linux".into(),
        version: "0.1.0".into(),
    })
    .expect("json");

    // Server: finds the enrollment by the hash and stores the public keys.
    let request: EnrollRequest = serde_json::from_slice(&body).expect("parse");
    let presented = EnrollmentCode::parse(&request.code).expect("code parses");
    assert_eq!(code_hash(&presented), stored_hash);
    let registered = request.public_keys;
    assert_eq!(registered.fingerprint(), keys.public().fingerprint());

    // Agent: a signed long poll.
    let path = "/agent/v1/tasks?wait=30";
    let signed = auth::sign(&keys, "agent-1", "GET", path, b"", NOW).expect("sign");

    // Server: checks the request, then answers with a sealed task.
    let claimed = auth::parse_headers(|name| signed.get(name).map(str::to_owned)).expect("headers");
    let verified = auth::verify(&claimed, &registered, "GET", path, b"", NOW + 2, SKEW).expect("verify");
    assert_eq!(verified.remember_until, NOW + SKEW);
    let value = seal(&registered, &task_info(&verified.agent_id, "task-9"), b"new-client-secret").expect("seal");
    let poll = serde_json::to_string(&TaskPoll {
        tasks: vec![Task {
            id: "task-9".into(),
            created_at: NOW,
            deadline: NOW + 600,
            work: Work::WriteFile {
                target_path: "/etc/app/appsettings.json".into(),
                file_format: "json".into(),
                secret_key: "AzureAd:ClientSecret".into(),
                create_if_missing: false,
                backup: true,
                value,
            },
        }],
    })
    .expect("json");
    assert!(!poll.contains("new-client-secret"));

    // Agent: opens the value and reports.
    let poll: TaskPoll = serde_json::from_str(&poll).expect("parse");
    let task = &poll.tasks[0];
    let Work::WriteFile { value, .. } = &task.work else { panic!("a write task") };
    let secret = open(&keys, &task_info("agent-1", &task.id), value).expect("open");
    assert_eq!(secret.as_slice(), b"new-client-secret");
    let report =
        TaskReport { task_id: task.id.clone(), outcome: Outcome::Done { changed: true }, message: "written".into() };
    assert!(serde_json::to_string(&report).expect("json").contains("\"status\":\"done\""));
}
