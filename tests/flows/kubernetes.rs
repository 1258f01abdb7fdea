//! The `kubernetes_secret` step's scenarios, on both worlds of `chain.rs` (the embedded runtime in
//! `shared/tests/rotation.rs`, AWS on moto in `aws/tests/lambda_chain.rs`): the product's `kube`
//! client against the simulated API server over HTTPS, and the simulated pods behind it, which
//! take the Secret's value only when they (re)start and whose health endpoint answers 200 only
//! while that value signs in to the simulated tenant.
//!
//! Not a crate: each test file includes it after `chain.rs`, with
//! `#[path = "../../tests/flows/kubernetes.rs"] mod kubernetes;`.

use std::path::PathBuf;

use entra_rotator::domain::address::AddressPolicy;
use entra_rotator::domain::execution::{Cleanup, ExecutionStatus};
use entra_rotator::domain::steps::{StepDefinition, parse_steps_with};
use entra_rotator::messages::queues;
use entra_rotator::ports::QueueName;
use entra_rotator::ports::key_ring::SealContext;
use entra_sim::{NewWorkload, SecretUse, Sim, WorkloadKind};
use uuid::Uuid;

use crate::chain::World;

const NS: &str = "payroll";
const SECRET: &str = "payroll-api-entra";
const KEY: &str = "AZURE_CLIENT_SECRET";
const APP: &str = "api";
/// The rotator's bearer token at the simulated API server.
const TOKEN: &str = "rotator-service-account-token";

/// Expands to one `#[tokio::test]` per scenario, each building its world with `$make(replication
/// delay)`, as `chain_scenarios!` does.
macro_rules! kubernetes_scenarios {
    ($make:expr) => {
        $crate::kubernetes::kubernetes_scenarios!(@each $make;
            a_kubernetes_rollout_brings_the_pods_onto_the_new_secret_and_the_old_one_goes_after_grace,
            a_plan_that_updates_the_secret_without_restarting_fails_its_health_check,
            a_conflicting_write_to_the_secret_is_read_again_and_retried,
            a_redelivered_kubernetes_step_neither_rewrites_the_secret_nor_restarts_again,
            a_crash_after_the_secret_update_before_it_was_recorded_neither_rewrites_nor_restarts,
            a_stalled_rollout_fails_its_abort_step_into_the_dead_letter_queue_and_a_redrive_after_recovery_completes,
            a_forbidden_identity_is_refused_by_preflight_with_the_verb_and_resource_named,
            an_aks_cluster_is_reached_with_the_integrations_entra_identity,
            an_eks_cluster_is_reached_with_a_token_signed_by_the_rotators_own_aws_role,
            a_missing_secret_is_created_only_when_the_step_says_so,
        );
    };
    (@each $make:expr; $( $name:ident ),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let mut world = ($make)(::std::time::Duration::ZERO).await;
                $crate::kubernetes::$name(&mut world).await;
            }
        )*
    };
}
pub(crate) use kubernetes_scenarios;

/// A kubeconfig file for the simulated cluster, removed when dropped.
struct KubeconfigFile(PathBuf);

impl KubeconfigFile {
    fn new(sim: &Sim, token: Option<&str>) -> Self {
        let path = std::env::temp_dir().join(format!("entra-rotator-kubeconfig-{}.yaml", Uuid::new_v4()));
        std::fs::write(&path, sim.kubeconfig("sim-cluster", token)).unwrap();
        Self(path)
    }
}

impl Drop for KubeconfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The cluster as a platform team has it: the Secret (with a key the rotator must not touch, labels
/// and annotations) and a two-replica Deployment reading it through `envFrom`, its pods signing in
/// as the rotated application. The rotator's identity may do everything unless told otherwise.
fn cluster<W: World>(w: &W, allowed: Option<&[(&str, &str)]>) -> KubeconfigFile {
    let k8s = w.sim().kubernetes();
    k8s.add_identity(TOKEN, "system:serviceaccount:rotator:entra-rotator", allowed);
    k8s.put_secret(NS, SECRET, &[(KEY, "the-secret-the-pods-start-with"), ("AZURE_TENANT_ID", "contoso")]);
    let client_id = w.sim().tenant().app(w.application()).unwrap().app_id;
    k8s.add_workload(NewWorkload {
        kind: WorkloadKind::Deployment,
        namespace: NS.into(),
        name: APP.into(),
        replicas: 2,
        secret_name: SECRET.into(),
        key: KEY.into(),
        uses: SecretUse::EnvFrom,
        client_id,
    });
    KubeconfigFile::new(w.sim(), Some(TOKEN))
}

/// The plan: the Kubernetes step (`extra` config fields added), then the consumer's health check.
fn plan(sim: &Sim, kubeconfig: &KubeconfigFile, extra: &str, on_failure: &str, retries: u32) -> Vec<StepDefinition> {
    let base = sim.target_url("/");
    let path = serde_json::to_string(&kubeconfig.0.display().to_string()).unwrap();
    parse_steps_with(
        &format!(
            r#"[{{"type":"kubernetes_secret","order":10,"on_failure":"{on_failure}","retries":{retries},"retry_delay":"1s",
                  "config":{{"namespace":"{NS}","secret_name":"{SECRET}","key":"{KEY}","kubeconfig":{path},
                             "context":"sim-cluster","rollout_timeout":"20s"{extra}}}}},
                {{"type":"http_health_check","order":20,"on_failure":"abort","retries":0,
                  "config":{{"url":"{base}consumers/{NS}/{APP}/health","timeout":"3s","interval":"1s"}}}}]"#
        ),
        &AddressPolicy::allowing_loopback(),
    )
    .unwrap()
    .steps
}

const RESTART: &str = r#","restart":[{"kind":"Deployment","name":"api"}]"#;

fn restarts<W: World>(w: &W) -> usize {
    w.sim().kubernetes().restarts(WorkloadKind::Deployment, NS, APP)
}

/// The new secret, as the execution sealed it.
async fn new_secret<W: World>(w: &W, e: &entra_rotator::domain::execution::Execution) -> String {
    let sealed = w.app().store.get_sealed(&e.secret_record()).await.unwrap().unwrap();
    let context = SealContext::new(e.secret_record(), "new_client_secret");
    w.app().keys.unseal(&sealed.sealed, &context).await.unwrap().expose().to_owned()
}

pub async fn a_kubernetes_rollout_brings_the_pods_onto_the_new_secret_and_the_old_one_goes_after_grace<W: World>(
    w: &mut W,
) {
    // Everything logged, down to the kube client's and the HTTP stack's trace lines.
    let logs = crate::chain::LogBuffer::default();
    let writer = logs.clone();
    let subscriber =
        tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let kubeconfig = cluster(w, None);
    w.set_plan(plan(w.sim(), &kubeconfig, RESTART, "abort", 0), false).await;
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let secret = new_secret(w, &done).await;

    let k8s = w.sim().kubernetes();
    assert_eq!(k8s.secret_value(NS, SECRET, KEY).as_deref(), Some(secret.as_str()), "the key holds the new secret");
    assert_eq!(k8s.secret_value(NS, SECRET, "AZURE_TENANT_ID").as_deref(), Some("contoso"), "other keys are kept");
    let stored = k8s.secret(NS, SECRET).unwrap();
    assert_eq!(stored["type"], "Opaque");
    assert_eq!(stored["metadata"]["labels"]["app"], SECRET, "labels are kept");
    assert_eq!(stored["metadata"]["annotations"]["owner"], "platform-team", "annotations are kept");
    assert_eq!(stored["metadata"]["annotations"]["entra-rotator.io/execution"], e.id.to_string());
    assert_eq!(stored["metadata"]["annotations"]["entra-rotator.io/key-id"], done.new_key_id.unwrap().to_string());
    assert_eq!(k8s.secret_writes(NS, SECRET), 1);
    assert_eq!(restarts(w), 1, "restarted once");
    let pods = k8s.pod_secrets(WorkloadKind::Deployment, NS, APP);
    assert_eq!(pods, vec![Some(secret.clone()); 2], "every pod holds the new secret");
    assert!(k8s.access_reviews() > 0, "preflight asked the API server what the identity may do");

    // The secret travelled only to the API server.
    let mut haystacks = vec![w.store_text().await];
    haystacks.extend(w.delivered());
    for q in queues::ALL {
        for d in w.app().queue.dead_letters(&QueueName::new(q), 100).await.unwrap() {
            haystacks.push(format!("{d:?}"));
        }
    }
    for r in w.app().store.list_step_records(&e.id).await.unwrap() {
        haystacks.push(format!("{r:?}"));
    }
    for a in w.app().store.list_audit(&Default::default()).await.unwrap() {
        haystacks.push(format!("{a:?}"));
    }
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    // (Which lines reach a thread's subscriber depends on what other tests of the process already
    // registered, so only that something was logged is asserted.)
    assert!(!logged.is_empty(), "the logs were searched");
    haystacks.push(logged);
    assert!(haystacks.iter().all(|h| !h.contains(&secret)), "the new secret appeared outside the Secret");

    w.pass_grace().await;
    w.cleanup().await;
    assert_eq!(w.key_ids(), vec![done.new_key_id.unwrap().as_uuid()], "the old secret went after grace");
    assert!(matches!(w.execution(&e).await.cleanup, Cleanup::Done { .. }));
    let health = reqwest_health(w.sim()).await;
    assert_eq!(health, 200, "the pods still sign in with the new secret");
}

async fn reqwest_health(sim: &Sim) -> u16 {
    let client = reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = sim.target_url(&format!("/consumers/{NS}/{APP}/health"));
    client.get(url).send().await.unwrap().status().as_u16()
}

pub async fn a_plan_that_updates_the_secret_without_restarting_fails_its_health_check<W: World>(w: &mut W) {
    let kubeconfig = cluster(w, None);
    w.set_plan(plan(w.sim(), &kubeconfig, "", "abort", 0), false).await;
    let e = w.request().await;
    let failed = w.run_until_status(&e, ExecutionStatus::Failed).await;
    let why = failed.error.unwrap_or_default();
    assert!(why.contains("503") || why.to_lowercase().contains("health"), "{why}");
    assert_eq!(w.sim().kubernetes().secret_writes(NS, SECRET), 1, "the Secret was updated");
    assert_eq!(restarts(w), 0);
    assert!(w.key_ids().contains(&w.credential().key_id.as_uuid()), "the old secret stays");
}

pub async fn a_conflicting_write_to_the_secret_is_read_again_and_retried<W: World>(w: &mut W) {
    let kubeconfig = cluster(w, None);
    w.sim().kubernetes().conflict_next_secret_writes(2);
    w.set_plan(plan(w.sim(), &kubeconfig, RESTART, "abort", 0), false).await;
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let k8s = w.sim().kubernetes();
    assert_eq!(k8s.secret_value(NS, SECRET, KEY), Some(new_secret(w, &done).await));
    let stored = k8s.secret(NS, SECRET).unwrap();
    assert!(stored["metadata"]["annotations"]["other-writer"].is_string(), "the other writer's change is kept");
    let puts = w.sim().requests().iter().filter(|r| r.method == "PUT" && r.path.ends_with(SECRET)).count();
    assert_eq!(puts, 3, "two 409s, then the write");
}

pub async fn a_redelivered_kubernetes_step_neither_rewrites_the_secret_nor_restarts_again<W: World>(w: &mut W) {
    let kubeconfig = cluster(w, None);
    w.set_plan(plan(w.sim(), &kubeconfig, RESTART, "abort", 0), false).await;
    let e = w.request().await;
    let done = w.run_delivering_every_message_twice(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    assert_eq!(w.sim().kubernetes().secret_writes(NS, SECRET), 1, "written once");
    assert_eq!(restarts(w), 1, "restarted once");
}

pub async fn a_crash_after_the_secret_update_before_it_was_recorded_neither_rewrites_nor_restarts<W: World>(w: &mut W) {
    let kubeconfig = cluster(w, None);
    w.set_plan(plan(w.sim(), &kubeconfig, RESTART, "abort", 0), false).await;
    let flaky = w.use_flaky_store().await;
    flaky.fail("put_step_record", 1, |r| r.contains("kind: \"kubernetes_secret\"") && r.contains("outcome: Succeeded"));
    let e = w.request().await;
    w.run_until_status(&e, ExecutionStatus::Completed).await;
    let gets = w.sim().requests().iter().filter(|r| r.method == "GET" && r.path.ends_with(SECRET)).count();
    assert!(gets >= 2, "the step ran again after the crash ({gets} reads of the Secret)");
    assert_eq!(w.sim().kubernetes().secret_writes(NS, SECRET), 1, "the second run found its value there");
    assert_eq!(restarts(w), 1, "and its restart done");
}

pub async fn a_stalled_rollout_fails_its_abort_step_into_the_dead_letter_queue_and_a_redrive_after_recovery_completes<
    W: World,
>(
    w: &mut W,
) {
    let kubeconfig = cluster(w, None);
    let k8s = w.sim().kubernetes();
    k8s.stall(WorkloadKind::Deployment, NS, APP, true);
    let mut steps = plan(w.sim(), &kubeconfig, RESTART, "abort", 0);
    // A short wait: the rollout is stalled.
    if let entra_rotator::domain::steps::StepConfig::KubernetesSecret(c) = &mut steps[0].config {
        c.rollout_timeout = entra_rotator::domain::Span::from_secs(2);
    }
    w.set_plan(steps, false).await;
    let e = w.request().await;
    let step_q = QueueName::new(queues::STEP);
    let queue = w.app().queue.clone();
    w.run_until(async || !queue.dead_letters(&step_q, 10).await.unwrap().is_empty()).await;
    let failed = w.execution(&e).await;
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    let dead = queue.dead_letters(&step_q, 10).await.unwrap();
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("Deployment payroll/api") && error.contains("did not complete"), "{error}");
    assert!(w.key_ids().contains(&w.credential().key_id.as_uuid()), "the old secret stays valid");

    k8s.stall(WorkloadKind::Deployment, NS, APP, false);
    assert_eq!(queue.redrive(&step_q, None).await.unwrap(), 1);
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    assert_eq!(restarts(w), 1, "the redrive waited for the same restart");
    assert_eq!(k8s.secret_writes(NS, SECRET), 1);
    let pods = k8s.pod_secrets(WorkloadKind::Deployment, NS, APP);
    assert_eq!(pods, vec![Some(new_secret(w, &done).await); 2]);
}

pub async fn a_forbidden_identity_is_refused_by_preflight_with_the_verb_and_resource_named<W: World>(w: &mut W) {
    let kubeconfig = cluster(w, Some(&[("get", "secrets"), ("get", "deployments"), ("patch", "deployments")]));
    w.set_plan(plan(w.sim(), &kubeconfig, RESTART, "abort", 0), false).await;
    let e = w.request().await;
    let failed = w.run_until_status(&e, ExecutionStatus::Failed).await;
    let why = failed.error.unwrap_or_default();
    assert!(why.contains("preflight failed") && why.contains("may not update secrets"), "{why}");
    assert!(w.marked().is_empty(), "no secret was created in Entra");
    assert_eq!(w.sim().kubernetes().secret_writes(NS, SECRET), 0);
    assert!(w.sim().kubernetes().access_reviews() > 0, "the API server reviewed the rights");
}

pub async fn an_aks_cluster_is_reached_with_the_integrations_entra_identity<W: World>(w: &mut W) {
    let _plain = cluster(w, Some(&[]));
    // An AKS kubeconfig: the server and its CA; the sign-in is the rotator's.
    let kubeconfig = KubeconfigFile::new(w.sim(), None);
    let management = Uuid::parse_str(&w.sim().management_client_id()).unwrap();
    w.sim().kubernetes().add_entra_identity(management, "rotator@contoso");
    w.set_plan(plan(w.sim(), &kubeconfig, &format!("{RESTART},\"auth\":\"aks\""), "abort", 0), false).await;
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    assert_eq!(w.sim().kubernetes().secret_value(NS, SECRET, KEY), Some(new_secret(w, &done).await));
    assert_eq!(restarts(w), 1);
}

pub async fn an_eks_cluster_is_reached_with_a_token_signed_by_the_rotators_own_aws_role<W: World>(w: &mut W) {
    let _plain = cluster(w, Some(&[]));
    // An EKS kubeconfig: the server and its CA (its `aws eks get-token` user is the rotator's).
    let kubeconfig = KubeconfigFile::new(w.sim(), None);
    let k8s = w.sim().kubernetes();
    k8s.eks_cluster("orders-prod");
    let role = crate::azure::RUN_STEP_ROLE;
    k8s.add_aws_identity(
        role.access_key_id,
        role.secret_access_key,
        Some(role.session_token),
        role.arn,
        "rotator",
        None,
    );

    // A step that names another cluster: the token is signed for it, so this cluster refuses it
    // (preflight, before anything is created in Entra).
    w.set_plan(
        plan(
            w.sim(),
            &kubeconfig,
            &format!("{RESTART},\"auth\":\"eks\",\"cluster_name\":\"orders-staging\""),
            "abort",
            0,
        ),
        false,
    )
    .await;
    let e = w.request().await;
    let failed = w.run_until_status(&e, ExecutionStatus::Failed).await;
    let why = failed.error.unwrap_or_default();
    assert!(why.contains("preflight failed") && why.contains("did not accept") && why.contains("EKS"), "{why}");
    let refusal = k8s.last_refusal().unwrap_or_default();
    assert!(refusal.contains("signature does not match"), "{refusal}");
    assert!(w.marked().is_empty(), "no secret was created in Entra");

    w.set_plan(
        plan(w.sim(), &kubeconfig, &format!("{RESTART},\"auth\":\"eks\",\"cluster_name\":\"orders-prod\""), "abort", 0),
        false,
    )
    .await;
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    assert_eq!(k8s.secret_value(NS, SECRET, KEY), Some(new_secret(w, &done).await));
    assert_eq!(restarts(w), 1);
    assert!(
        k8s.pod_secrets(WorkloadKind::Deployment, NS, APP).iter().all(|p| p.is_some()),
        "the pods restarted onto a secret"
    );
}

pub async fn a_missing_secret_is_created_only_when_the_step_says_so<W: World>(w: &mut W) {
    let kubeconfig = cluster(w, None);
    let steps = parse_steps_with(
        &format!(
            r#"[{{"type":"kubernetes_secret","order":10,"on_failure":"abort",
                  "config":{{"namespace":"{NS}","secret_name":"brand-new","key":"{KEY}","kubeconfig":{}}}}}]"#,
            serde_json::to_string(&kubeconfig.0.display().to_string()).unwrap()
        ),
        &AddressPolicy::allowing_loopback(),
    )
    .unwrap()
    .steps;
    w.set_plan(steps.clone(), false).await;
    let e = w.request().await;
    let failed = w.run_until_status(&e, ExecutionStatus::Failed).await;
    let why = failed.error.unwrap_or_default();
    assert!(why.contains("preflight failed") && why.contains("does not exist"), "{why}");
    assert!(w.marked().is_empty());

    let mut create = steps;
    if let entra_rotator::domain::steps::StepConfig::KubernetesSecret(c) = &mut create[0].config {
        c.create_if_missing = true;
    }
    w.set_plan(create, false).await;
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let k8s = w.sim().kubernetes();
    assert_eq!(k8s.secret_value(NS, "brand-new", KEY), Some(new_secret(w, &done).await));
    assert_eq!(k8s.secret(NS, "brand-new").unwrap()["type"], "Opaque");
}
