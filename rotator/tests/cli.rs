//! The `rotator` command as a user runs it: real process, real files, exit codes and output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use entra_rotator::adapters::sqlite::LocalData;
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::messages::{Message, queues};
use entra_rotator::ports::{AuditQuery, Queue, QueueName, Store};

const SECRET: &str = "Zq8~integration-secret-value";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rotator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rotator"))
        .args(args)
        .env("ROTATOR_CONTOSO_CLIENT_SECRET", SECRET)
        .env_remove("ROTATOR_CONFIG")
        .env_remove("ROTATOR_DATA_DIR")
        .output()
        .expect("rotator runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A config in a fresh temporary folder, with its data directory there too.
fn temp_config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rotator.toml");
    std::fs::write(
        &path,
        r#"
[integrations.contoso]
tenant_id = "aaaaaaaa-0000-0000-0000-000000000001"
client_id = "bbbbbbbb-0000-0000-0000-000000000002"
auth = "client_secret"
"#,
    )
    .unwrap();
    (dir, path)
}

#[test]
fn steps_check_prints_the_seed_example_as_an_ordered_plan() {
    let file = repo().join("examples/steps/iis-app.json");
    let out = rotator(&["steps", "check", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let sync = stdout.find("agent_secret_sync").expect("sync step listed");
    let recycle = stdout.find("iis_recycle").expect("recycle step listed");
    assert!(sync < recycle, "publish before reload:\n{stdout}");
    assert!(stdout.contains("DefaultAppPool"), "{stdout}");
}

#[test]
fn steps_check_shows_the_eks_example_signing_in_as_the_rotators_own_role() {
    let file = repo().join("examples/steps/orders-eks.json");
    let out = rotator(&["--json", "steps", "check", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let config = &plan["steps"][0]["config"];
    assert_eq!(config["auth"], "eks", "{stdout}");
    assert_eq!(config["cluster_name"], "orders-prod");
    assert_eq!(config["region"], "eu-west-1");
}

#[test]
fn steps_check_json_is_the_normalised_plan() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("legacy.json");
    std::fs::write(
        &file,
        r#"[{"type":"iis_recycle","order":20,"on_failure":"continue","agent_id":"11111111-1111-1111-1111-111111111111","config":{"site_name":"Legacy"}},
            {"type":"agent_secret_sync","order":10,"on_failure":"abort","agent_id":"11111111-1111-1111-1111-111111111111",
             "config":{"target_path":"/etc/app/app.env","secret_key":"CLIENT_SECRET","file_format":"env"}}]"#,
    )
    .unwrap();
    let out = rotator(&["--json", "steps", "check", file.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["steps"][0]["type"], "agent_secret_sync", "sorted by order");
    assert_eq!(v["steps"][1]["config"]["app_pool"], "Legacy", "site_name normalised");
    assert!(v["steps"][1]["config"].get("site_name").is_none());
}

#[test]
fn steps_check_names_the_step_and_field_of_a_typo_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.json");
    std::fs::write(
        &file,
        r#"[{"type":"agent_secret_sync","order":10,"on_failure":"abort","agent_id":"11111111-1111-1111-1111-111111111111",
             "config":{"targt_path":"C:\\app\\appsettings.json","secret_key":"Entra:ClientSecret","file_format":"json"}}]"#,
    )
    .unwrap();
    let out = rotator(&["steps", "check", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("step #1"), "{stdout}{stderr}");
    assert!(stderr.contains("targt_path"), "{stderr}");
    assert!(stderr.contains("target_path"), "suggests the right name: {stderr}");
    let json = rotator(&["--json", "steps", "check", file.to_str().unwrap()]);
    assert!(!json.status.success());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["valid"], false);
}

#[test]
fn config_check_accepts_the_example_and_never_prints_the_secret() {
    let file = repo().join("examples/rotator.toml");
    for json in [false, true] {
        let mut args = vec!["config", "check", file.to_str().unwrap()];
        if json {
            args.insert(0, "--json");
        }
        let out = rotator(&args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("contoso"), "{stdout}");
        assert!(stdout.contains("ROTATOR_CONTOSO_CLIENT_SECRET"), "says where the secret comes from: {stdout}");
        assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "secret printed");
    }
}

#[test]
fn config_check_names_an_unknown_key_and_fails() {
    let (_dir, path) = temp_config();
    let mut text_ = std::fs::read_to_string(&path).unwrap();
    text_.push_str("\n[policies.default]\nauto_rotat = true\n");
    std::fs::write(&path, text_).unwrap();
    let out = rotator(&["config", "check", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("auto_rotat") && stderr.contains("[policies.default]"), "{stdout}{stderr}");
}

#[test]
fn config_check_refuses_a_step_type_this_build_cannot_run() {
    let (_dir, path) = temp_config();
    let mut text_ = std::fs::read_to_string(&path).unwrap();
    text_.push_str(&format!(
        "\n[policies.iis]\nsteps_file = \"{}\"\n",
        repo().join("examples/steps/iis-app.json").display()
    ));
    std::fs::write(&path, &text_).unwrap();
    let out = rotator(&["config", "check", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("agent_secret_sync steps are not supported by this build"), "{stderr}");
    assert!(stderr.contains("iis_recycle steps are not supported by this build"), "{stderr}");
    assert!(stderr.contains("policies.iis"), "{stderr}");
}

#[test]
fn config_check_warns_of_a_policy_that_delivers_the_secret_to_nobody() {
    let (_dir, path) = temp_config();
    let mut text_ = std::fs::read_to_string(&path).unwrap();
    text_.push_str(
        "\n[policies.default]\n[[policies.default.steps]]\ntype = \"webhook\"\norder = 10\nconfig = { url = \"https://hooks.example.com/x\" }\n",
    );
    std::fs::write(&path, &text_).unwrap();
    let out = rotator(&["config", "check", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "a warning, not an error: {stdout}{stderr}");
    assert!(stdout.contains("warning: policy default has no step that publishes the new secret"), "{stdout}");
    let out = rotator(&["--json", "config", "check", path.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["policies"][0]["delivery"], "steps");
    assert!(json["policies"][0]["warnings"][0].as_str().unwrap().contains("delivery = \"manual\""));

    std::fs::write(&path, text_.replace("[policies.default]\n", "[policies.default]\ndelivery = \"manual\"\n"))
        .unwrap();
    let out = rotator(&["config", "check", path.to_str().unwrap()]);
    let (stdout, _) = text(&out);
    assert!(out.status.success() && !stdout.contains("warning:"), "{stdout}");
    assert!(stdout.contains("manual delivery"), "{stdout}");
}

#[test]
fn status_says_plainly_when_there_is_no_data_yet() {
    let (_dir, path) = temp_config();
    let out = rotator(&["--config", path.to_str().unwrap(), "status"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("No data yet"), "{stdout}");
}

#[tokio::test]
async fn dead_letters_can_be_listed_shown_and_redriven() {
    let (dir, path) = temp_config();
    let db = dir.path().join("data/rotator.db");
    let data = LocalData::open(&db, Arc::new(SystemClock)).unwrap();
    let q = QueueName::new(queues::CLEANUP);
    let env = Message::CleanupRequested { integration: None }.envelope("poison-1");
    data.queue.send(&q, env.to_outgoing(Duration::ZERO).unwrap()).await.unwrap();
    // Received and failed as often as the queue allows, with no visibility wait.
    for _ in 0..5 {
        let got = data.queue.receive(&q, 1, Some(Duration::ZERO)).await.unwrap();
        data.queue
            .record_failure(&q, &got[0].receipt, "grace-cleanup: Graph answered 403 Authorization_RequestDenied")
            .await
            .unwrap();
    }
    assert!(data.queue.receive(&q, 1, None).await.unwrap().is_empty());
    let config = path.to_str().unwrap();

    let out = rotator(&["--config", config, "dlq", "list"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("grace-cleanup") && stdout.contains("CleanupRequested"), "{stdout}");
    assert!(stdout.contains("Authorization_RequestDenied"), "the last error in words: {stdout}");

    let list = rotator(&["--config", config, "--json", "dlq", "list", "--queue", "grace-cleanup"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = v["dead_letters"][0]["id"].as_str().unwrap().to_owned();

    let show = rotator(&["--config", config, "dlq", "show", &id]);
    let (stdout, _) = text(&show);
    assert!(show.status.success());
    assert!(stdout.contains(&id) && stdout.contains("receives     5"), "{stdout}");

    let bad = rotator(&["--config", config, "dlq", "list", "--queue", "nope"]);
    assert!(!bad.status.success());

    let redrive = rotator(&["--config", config, "dlq", "redrive", "--queue", "grace-cleanup"]);
    let (stdout, stderr) = text(&redrive);
    assert!(redrive.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1 message(s)"), "{stdout}");
    let back = data.queue.receive(&q, 1, None).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].receive_count, 1);
    // Audited as the HTTP API's redrive is, with who asked.
    let audit = data.store.list_audit(&AuditQuery { limit: 10, ..Default::default() }).await.unwrap();
    let redriven =
        audit.iter().find(|a| a.action == "dead_letters.redriven").expect("the redrive is in the audit trail");
    assert!(redriven.actor.starts_with("cli:"), "{redriven:?}");
    assert!(redriven.detail.contains("1 message(s)"), "{redriven:?}");
}

#[test]
fn history_refuses_a_malformed_credential_id() {
    let (_dir, path) = temp_config();
    let out = rotator(&["--config", path.to_str().unwrap(), "history", "not-a-credential"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("credential id"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn serve_answers_health_creates_an_owner_only_key_file_and_stops_on_ctrl_c() {
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;

    let (dir, path) = temp_config();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_rotator"))
        .args(["--config", path.to_str().unwrap(), "serve"])
        .env("ROTATOR_CONTOSO_CLIENT_SECRET", SECRET)
        .env("ROTATOR_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut body = String::new();
    for _ in 0..200 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
            s.read_to_string(&mut body).unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let key_file = dir.path().join("data/keys.json");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);

    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("stopped") || stdout.contains("stopped"), "{stdout}{stderr}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "secret in the log");
}

#[tokio::test]
async fn status_and_history_show_what_the_store_holds() {
    use entra_rotator::domain::execution::{Execution, ExecutionStatus, StepOutcome, StepRecord, Trigger};
    use entra_rotator::domain::ids::PolicyId;
    use entra_rotator::domain::inventory::Credential;
    use entra_rotator::ports::{Clock, Store};

    let (dir, path) = temp_config();
    let data = LocalData::open(&dir.path().join("data/rotator.db"), Arc::new(SystemClock)).unwrap();
    let now = SystemClock.now();
    let soon = Credential::test_password(now + time::Duration::days(5));
    let later = Credential::test_password(now + time::Duration::days(200));
    let gone = Credential::test_password(now - time::Duration::days(2));
    for c in [&soon, &later, &gone] {
        data.store.put_credential(c).await.unwrap();
    }
    let mut e = Execution::new(
        soon.id.clone(),
        soon.app.unwrap(),
        PolicyId::parse("default").unwrap(),
        Trigger::Manual { by: "alice".into(), reason: Some("expiring".into()) },
        vec![],
        now,
    );
    e.status = ExecutionStatus::Running;
    data.store.create_execution(&e).await.unwrap();
    data.store
        .put_step_record(&StepRecord {
            execution: e.id,
            index: 0,
            name: "Verify the new secret signs in".into(),
            kind: "verify".into(),
            attempts: 2,
            outcome: StepOutcome::Succeeded,
            started_at: Some(now),
            ended_at: Some(now),
            attempted_at: None,
            error: None,
            left_in_place: false,
        })
        .await
        .unwrap();
    let config = path.to_str().unwrap();

    let out = rotator(&["--config", config, "--json", "status"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counts = &v["dashboard"]["counts"];
    assert_eq!(counts["total"], 3);
    assert_eq!(counts["rotating"], 1);
    assert_eq!(counts["active"], 1);
    assert_eq!(counts["expired"], 1);
    assert_eq!(counts["expiring_within_7_days"], 1);
    let table = rotator(&["--config", config, "status"]);
    let (stdout, _) = text(&table);
    assert!(stdout.contains("Rotating") && stdout.contains(&gone.id.to_string()), "{stdout}");

    let out = rotator(&["--config", config, "history", &soon.id.to_string()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(&e.id.to_string()) && stdout.contains("manual by alice: expiring"), "{stdout}");
    assert!(stdout.contains("Verify the new secret signs in"), "{stdout}");
}

#[test]
fn keys_rotate_adds_an_active_key_and_keeps_the_old_ones() {
    let (dir, path) = temp_config();
    let config = path.to_str().unwrap();
    let none = rotator(&["--config", config, "keys", "list"]);
    assert!(text(&none).0.contains("No key file yet"));
    for expected in [1, 2] {
        let out = rotator(&["--config", config, "--json", "keys", "rotate"]);
        assert!(out.status.success(), "{:?}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["keys"].as_array().unwrap().len(), expected);
        assert_eq!(v["active"], v["added"]);
    }
    let key_file = std::fs::read_to_string(dir.path().join("data/keys.json")).unwrap();
    let listed = rotator(&["--config", config, "keys", "list"]);
    let (stdout, _) = text(&listed);
    assert!(stdout.contains("k2  (active)") && stdout.contains("k1"), "{stdout}");
    // Key material stays in the file.
    let v: serde_json::Value = serde_json::from_str(&key_file).unwrap();
    for (_, material) in v["keys"].as_object().unwrap() {
        assert!(!stdout.contains(material.as_str().unwrap()));
    }
}

#[test]
fn config_check_json_shows_step_query_values_and_header_values_redacted() {
    let (_dir, path) = temp_config();
    let mut text_ = std::fs::read_to_string(&path).unwrap();
    text_.push_str(
        "\n[[policies.default.steps]]\ntype = \"webhook\"\norder = 10\n\
         config = { url = \"https://hooks.example.com/x?token=hook-token-123\", headers = { X-Api-Key = \"header-secret-456\" } }\n",
    );
    std::fs::write(&path, text_).unwrap();
    let out = rotator(&["--json", "config", "check", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("token=redacted"), "{stdout}");
    assert!(!stdout.contains("hook-token-123") && !stdout.contains("header-secret-456"), "{stdout}");
}

#[test]
fn an_agent_is_issued_a_code_listed_awaiting_enrollment_and_revoked() {
    let (_dir, config) = temp_config();
    let config = config.to_str().unwrap();
    let out = rotator(&["--config", config, "agents", "enroll", "web-01", "--expires-in", "30m"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("rotator-agent enroll --server"), "{stdout}");
    let code = stdout.lines().map(str::trim).find(|l| l.len() == 23 && l.matches('-').count() == 3).expect("the code");

    let out = rotator(&["--config", config, "--json", "agents", "list"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let agent = &listed["agents"][0];
    assert_eq!(agent["name"], "web-01");
    assert_eq!(agent["state"], "awaiting enrollment");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(code), "the code is shown once, when issued");

    let again = rotator(&["--config", config, "agents", "enroll", "web-01"]);
    assert!(!again.status.success(), "the name is taken");
    let id = agent["id"].as_str().unwrap();
    let out = rotator(&["--config", config, "agents", "revoke", id]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = rotator(&["--config", config, "agents", "list"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("revoked") && stdout.contains("web-01"), "{stdout}");
}
