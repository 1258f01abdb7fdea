//! Each kind of function invoked with real AWS event JSON (kept in `tests/fixtures/`): an SQS FIFO
//! batch, an EventBridge scheduled event, an API Gateway HTTP API (v2) request behind a JWT
//! authorizer. These need no emulator: the queue and store are the embedded ones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use entra_rotator::adapters::sqlite::SqliteQueue;
use entra_rotator::config::Role;
use entra_rotator::inbound::api::{ApiAuth, ApiState, router};
use entra_rotator::inbound::batch::{EnvelopeHandler, MessageHandler};
use entra_rotator::inbound::scheduler::Timer;
use entra_rotator::messages::{Envelope, Message, default_queue_specs, queues};
use entra_rotator::ports::{Queue, QueueName, ReceivedMessage};
use entra_rotator::testing::fakes::ManualClock;
use entra_rotator::usecases::app::App;
use entra_rotator_aws::lambda::{FunctionEvent, QueueFunction, lambda_router, received_from_record, verified_caller};
use serde_json::Value;
use time::macros::datetime;
use tower::ServiceExt;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Remembers the idempotency key of every message it ran.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

struct Recording(Arc<Recorder>);

#[async_trait]
impl MessageHandler for Recording {
    fn name(&self) -> &'static str {
        "recorder"
    }
    async fn handle(&self, envelope: Envelope, _: &ReceivedMessage) -> entra_rotator::Result<()> {
        self.0.0.lock().unwrap().push(envelope.idempotency_key);
        Ok(())
    }
}

fn clock() -> ManualClock {
    ManualClock::new(datetime!(2026-12-01 09:00 UTC))
}

fn queue(clock: &ManualClock) -> Arc<SqliteQueue> {
    Arc::new(SqliteQueue::in_memory(default_queue_specs(), Arc::new(clock.clone())).unwrap())
}

#[tokio::test]
async fn an_sqs_batch_reports_only_its_failed_message_and_the_later_ones_of_that_group() {
    let clock = clock();
    let recorder = Arc::new(Recorder::default());
    let function = QueueFunction::new(
        queue(&clock),
        QueueName::new(queues::SCAN),
        Arc::new(EnvelopeHandler(Recording(recorder.clone()))),
        Arc::new(clock),
        vec![],
    );
    let response = function.call(fixture("sqs-fifo-batch.json")).await.unwrap();
    let failed: Vec<&str> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed,
        vec!["2e1424d4-f796-459a-8184-9c92662be6da", "3f5a6b7c-1d2e-4f30-8a9b-0c1d2e3f4a5b"],
        "the malformed message, and the one queued behind it in its group, which must not overtake it"
    );
    assert_eq!(*recorder.0.lock().unwrap(), vec!["timer:expiry-scan:1953600"], "the good message of the batch ran");
}

#[test]
fn an_sqs_record_becomes_the_received_message_the_handlers_know() {
    let FunctionEvent::Sqs(event) = FunctionEvent::parse(fixture("sqs-fifo-batch.json")).unwrap() else {
        panic!("not an SQS event")
    };
    let first = received_from_record(&event.records[0]).unwrap();
    assert_eq!(first.id.0, "3c1c4f3a-8e1e-4a3b-9d7c-0a8f1d2e3b4c", "our id, carried as a message attribute");
    assert_eq!(first.group.as_deref(), Some("all"));
    assert_eq!(first.receive_count, 1);
    assert_eq!(first.sent_at, datetime!(2025-12-01 09:20 UTC));
    let second = received_from_record(&event.records[1]).unwrap();
    assert_eq!(second.id.0, "2e1424d4-f796-459a-8184-9c92662be6da", "without the attribute, SQS's own id");
    assert_eq!(second.receive_count, 3);
}

#[tokio::test]
async fn a_scheduled_event_puts_the_timers_message_on_the_queue_once_per_period() {
    let clock = clock();
    let q = queue(&clock);
    let timer = Timer {
        name: "expiry-scan".into(),
        every: Duration::from_secs(900),
        message: Message::ScanRequested { integration: None },
    };
    let function = QueueFunction::new(
        q.clone(),
        QueueName::new(queues::SCAN),
        Arc::new(EnvelopeHandler(Recording(Arc::new(Recorder::default())))),
        Arc::new(clock.clone()),
        vec![timer],
    );
    let scan = QueueName::new(queues::SCAN);
    assert_eq!(function.call(fixture("eventbridge-scheduled.json")).await.unwrap(), serde_json::json!({}));
    // EventBridge delivers at least once: the same period's event again changes nothing.
    function.call(fixture("eventbridge-scheduled.json")).await.unwrap();
    assert_eq!(q.depth(&scan).await.unwrap().visible, 1);
    clock.advance(Duration::from_secs(900));
    function.call(fixture("eventbridge-scheduled.json")).await.unwrap();
    assert_eq!(q.depth(&scan).await.unwrap().visible, 2, "the next period is new work");
    let got = q.receive(&scan, 1, None).await.unwrap();
    assert!(matches!(Envelope::parse(&got[0].body).unwrap().message, Message::ScanRequested { integration: None }));
}

#[tokio::test]
async fn an_event_that_is_neither_sqs_nor_eventbridge_fails_the_invocation() {
    let clock = clock();
    let function = QueueFunction::new(
        queue(&clock),
        QueueName::new(queues::SCAN),
        Arc::new(EnvelopeHandler(Recording(Arc::new(Recorder::default())))),
        Arc::new(clock),
        vec![],
    );
    let e = function.call(serde_json::json!({ "hello": "world" })).await.unwrap_err();
    assert!(matches!(e, entra_rotator::Error::Invalid { .. }), "{e}");
}

fn api() -> axum::Router {
    let clock = clock();
    let services = App::test_at(clock.clone()).with_queue(queue(&clock));
    lambda_router(router(ApiState { services, auth: ApiAuth::Verified, workers: None }))
}

async fn serve(event: Value) -> (u16, Value) {
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = api().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_api_gateway_request_is_served_with_the_app_roles_of_its_verified_token() {
    let (status, body) = serve(fixture("apigw-v2-dashboard.json")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("counts").is_some(), "the dashboard: {body}");
}

#[tokio::test]
async fn a_verified_token_without_the_routes_role_is_forbidden_and_no_verified_caller_is_unauthorized() {
    let mut event = fixture("apigw-v2-dashboard.json");
    event["requestContext"]["authorizer"]["jwt"]["claims"]["roles"] = Value::String("[entra:rotate]".into());
    let (status, body) = serve(event).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("entra:read"));

    // Without the authorizer's claims the bearer header alone counts for nothing.
    let mut event = fixture("apigw-v2-dashboard.json");
    event["requestContext"].as_object_mut().unwrap().remove("authorizer");
    let (status, _) = serve(event).await;
    assert_eq!(status, 401);
}

#[test]
fn app_roles_are_read_from_either_text_form_of_an_array_claim() {
    let claims = |roles: &str| {
        [("preferred_username", "alice@contoso.com"), ("roles", roles)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<std::collections::HashMap<_, _>>()
    };
    let c = verified_caller(&claims("[entra:read entra:write]")).unwrap();
    assert_eq!(c.roles, vec![Role::Read, Role::Write]);
    assert_eq!(c.name, "jwt:alice@contoso.com");
    let c = verified_caller(&claims(r#"["entra:rotate","Other.Role"]"#)).unwrap();
    assert_eq!(c.roles, vec![Role::Rotate], "roles this product does not know are ignored");
    assert!(verified_caller(&claims("")).unwrap().roles.is_empty());
    assert!(verified_caller(&Default::default()).is_none(), "no name claim, no caller");
}

fn deployment_env(pairs: &[(&str, String)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn offline_sdk() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build()
}

fn settings() -> entra_rotator_aws::AwsSettings {
    entra_rotator_aws::AwsSettings {
        table: "entra-rotator-store".into(),
        kms_key: "alias/entra-rotator".into(),
        queue_prefix: "entra-rotator-".into(),
        endpoint: None,
    }
}

#[test]
fn a_cold_start_wires_each_function_from_the_configuration_without_calling_aws() {
    use entra_rotator_aws::lambda::Deployment;
    let config = format!("{}/../examples/rotator.toml", env!("CARGO_MANIFEST_DIR"));
    let env =
        deployment_env(&[("ROTATOR_CONFIG", config), ("ROTATOR_CONTOSO_CLIENT_SECRET", "not-a-real-secret".into())]);
    // No endpoint can be reached from here: building must not need one.
    let d = Deployment::build(&env, settings(), &offline_sdk()).unwrap();
    assert!(!d.config.integrations.is_empty());
    let handler = Arc::new(EnvelopeHandler(Recording(Arc::new(Recorder::default()))));
    for q in queues::ALL {
        let _ = d.queue_function(q, handler.clone());
    }
    let _router = d.http_router();
}

#[test]
fn a_cold_start_without_its_configuration_fails_at_once_naming_what_is_missing() {
    use entra_rotator_aws::lambda::Deployment;
    let Err(e) = Deployment::build(&deployment_env(&[]), settings(), &offline_sdk()) else {
        panic!("built without a configuration")
    };
    assert!(e.to_string().contains("ROTATOR_CONFIG"), "{e}");
    let env = deployment_env(&[("ROTATOR_CONFIG", "/nonexistent/rotator.toml".into())]);
    let Err(e) = Deployment::build(&env, settings(), &offline_sdk()) else { panic!("built from a missing file") };
    assert!(e.to_string().contains("/nonexistent/rotator.toml"), "{e}");
}

#[tokio::test]
async fn a_cold_start_signs_in_to_entra_by_federation_as_the_functions_own_role() {
    use entra_rotator::ports::directory::Cursor;
    use entra_rotator_aws::lambda::Deployment;
    let sim = entra_sim::Sim::start(entra_sim::SimOptions { apps: 2, ..Default::default() }).await.expect("the sim");
    let role = "arn:aws:sts::123456789012:assumed-role/entra-rotator-sync/sync";
    let federation = sim.federation();
    federation.add_aws_role("ASIASYNCFUNCTIONROLE", "role-secret", Some("session"), role);
    let management = uuid::Uuid::parse_str(&sim.management_client_id()).expect("a GUID");
    federation.add_federated_credential(
        management,
        &federation.aws_issuer(),
        role,
        entra_sim::ENTRA_TOKEN_EXCHANGE_AUDIENCE,
    );
    // The deployment's configuration: no Entra secret anywhere, the STS stand-in by its address.
    let dir = tempfile::tempdir().expect("a folder");
    let config = dir.path().join("rotator.toml");
    std::fs::write(
        &config,
        format!(
            "[outbound]\nallow = [\"127.0.0.1\"]\n\n[integrations.contoso]\ntenant_id = \"{}\"\nclient_id = \"{}\"\n\
             auth = \"aws_federation\"\nsts_endpoint_url = \"{}\"\nauthority_host = \"{}\"\ngraph_base_url = \"{}\"\n\
             ca_certificate = \"{}\"\n",
            sim.tenant_id(),
            sim.management_client_id(),
            federation.sts_endpoint(),
            sim.authority_host(),
            sim.graph_base_url(),
            sim.ca_path().display()
        ),
    )
    .expect("written");
    // The function's SDK configuration, as the Lambda runtime gives it: its role's keys, its region.
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new(
                "ASIASYNCFUNCTIONROLE",
                "role-secret",
                Some("session".into()),
                None,
                "role",
            ),
        ))
        .build();
    let env = deployment_env(&[("ROTATOR_CONFIG", config.display().to_string())]);
    let d = Deployment::build(&env, settings(), &sdk).expect("built with no Entra secret");
    let integration = entra_rotator::domain::ids::IntegrationId::parse("contoso").expect("an id");
    let directory = d.services.directory(&integration).expect("the integration's directory");

    let page = directory.applications(Cursor::Full).await.expect("signed in by federation");

    assert_eq!(page.items.len(), 2);
    assert_eq!(federation.tokens_issued(), 1, "one STS web identity token, asked as the function's role");
}
