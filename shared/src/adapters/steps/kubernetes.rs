//! The `kubernetes_secret` runner, with the `kube` client: sets one key of a Secret to the new
//! value, then restarts the named workloads as `kubectl rollout restart` does and waits for their
//! rollouts as `kubectl rollout status` judges them.
//!
//! - **The Secret**: read, the key set (every other key, the type, labels and annotations kept),
//!   annotated with the execution and the new key id, and replaced conditionally on the
//!   `resourceVersion` just read; a 409 conflict (someone else wrote in between) is read again and
//!   retried. A Secret that already holds this execution's value (a redelivered step, a crash after
//!   the write and before it was recorded) is not written again. A missing Secret is created
//!   (`Opaque`) only when the step says `create_if_missing`.
//! - **The restart**: a merge patch of the pod template's `kubectl.kubernetes.io/restartedAt`
//!   annotation, with the execution beside it; a workload whose template already names this
//!   execution is not restarted again. Then every rollout is waited for within `rollout_timeout`;
//!   one that does not complete is a failure (retryable: a redrive after the cluster recovers
//!   waits again) naming the workload's state and condition.
//! - **Access** (see `access`): a kubeconfig and context, the in-cluster service account, or an
//!   AKS server token from the integration's Entra identity.
//!
//! A failure is in words, never with the Secret's content: a Kubernetes `Status` gives its code,
//! reason and message, which never carry data values.

mod access;
pub(super) mod eks;
mod rollout;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;
use zeroize::Zeroize;

pub use self::access::AKS_SERVER_SCOPE;
pub use self::eks::{AwsSigning, EKS_CLUSTER_HEADER, EKS_TOKEN_PREFIX};
pub use self::rollout::{RolloutState, judge_rollout};
use super::Azure;
use crate::domain::steps::{
    KUBERNETES_EXECUTION_ANNOTATION, KUBERNETES_KEY_ID_ANNOTATION, KubernetesSecretConfig, RESTARTED_AT_ANNOTATION,
    WorkloadKind, WorkloadRef,
};
use crate::ports::step_runner::{Probe, ProbeContext, ProbeOutcome, StepContext, StepFailure};

/// The field manager the rotator's writes are recorded under.
pub const FIELD_MANAGER: &str = "entra-rotator";
/// Attempts at the Secret's conditional update when others keep writing it (409 Conflict).
const CONFLICT_ATTEMPTS: u32 = 5;
/// The first pause between two reads of a rollout's status; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(5);

pub(super) async fn run(azure: &Azure, cfg: &KubernetesSecretConfig, ctx: &StepContext<'_>) -> Result<(), StepFailure> {
    let cluster = access::connect(azure, cfg, ctx.credential).await?;
    let execution = ctx.execution.to_string();
    publish(&cluster, cfg, ctx, &execution).await?;
    if cfg.restart.is_empty() {
        return Ok(());
    }
    // The Secret holds the new value from here on: every pod that starts reads it.
    let restarted_at = ctx.now.format(&Rfc3339).unwrap_or_default();
    for workload in &cfg.restart {
        restart(&cluster, cfg, workload, &execution, &restarted_at).await.map_err(StepFailure::left_in_place)?;
    }
    wait_for_rollouts(&cluster, cfg).await.map_err(StepFailure::left_in_place)
}

/// Sets the key (creating the Secret when it is missing and the step allows it), unless this
/// execution's value is already there.
async fn publish(
    cluster: &access::Cluster,
    cfg: &KubernetesSecretConfig,
    ctx: &StepContext<'_>,
    execution: &str,
) -> Result<(), StepFailure> {
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), &cfg.namespace);
    let what = format!("Secret {}/{}", cfg.namespace, cfg.secret_name);
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    let own = |annotations: &mut BTreeMap<String, String>| {
        annotations.insert(KUBERNETES_EXECUTION_ANNOTATION.to_owned(), execution.to_owned());
        annotations.insert(KUBERNETES_KEY_ID_ANNOTATION.to_owned(), ctx.new_key_id.to_string());
    };
    for attempt in 1..=CONFLICT_ATTEMPTS {
        let found = api.get_opt(&cfg.secret_name).await.map_err(|e| cluster.failure(&e, "read", &what))?;
        let Some(mut secret) = found else {
            if !cfg.create_if_missing {
                return Err(StepFailure::permanent(format!(
                    "{what} does not exist; create it, or set create_if_missing on the step"
                )));
            }
            let mut annotations = BTreeMap::new();
            own(&mut annotations);
            let mut new = Secret {
                metadata: ObjectMeta {
                    name: Some(cfg.secret_name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    annotations: Some(annotations),
                    ..Default::default()
                },
                type_: Some("Opaque".to_owned()),
                data: Some(BTreeMap::from([(cfg.key.clone(), ByteString(ctx.secret.expose().as_bytes().to_vec()))])),
                ..Default::default()
            };
            let created = api.create(&params, &new).await;
            wipe(&mut new);
            match created {
                Ok(mut answer) => {
                    wipe(&mut answer);
                    tracing::info!(namespace = cfg.namespace, secret = cfg.secret_name, "created the Secret");
                    return Ok(());
                }
                // Created by someone else meanwhile: read it and set the key.
                Err(e) if status_of(&e) == Some(409) => continue,
                Err(e) => return Err(cluster.failure(&e, "create", &what)),
            }
        };
        let annotations = secret.metadata.annotations.get_or_insert_with(BTreeMap::new);
        let ours = annotations.get(KUBERNETES_EXECUTION_ANNOTATION).is_some_and(|e| e == execution);
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        let holds = data.get(&cfg.key).is_some_and(|v| v.0 == ctx.secret.expose().as_bytes());
        if ours && holds {
            wipe(&mut secret);
            tracing::info!(
                namespace = cfg.namespace,
                secret = cfg.secret_name,
                "the Secret already holds this execution's value; not writing it again"
            );
            return Ok(());
        }
        if let Some(mut old) = data.insert(cfg.key.clone(), ByteString(ctx.secret.expose().as_bytes().to_vec())) {
            old.0.zeroize();
        }
        own(secret.metadata.annotations.get_or_insert_with(BTreeMap::new));
        // The resourceVersion just read makes the replace conditional: a write in between is a 409.
        let replaced = api.replace(&cfg.secret_name, &params, &secret).await;
        wipe(&mut secret);
        match replaced {
            Ok(mut answer) => {
                wipe(&mut answer);
                tracing::info!(
                    namespace = cfg.namespace,
                    secret = cfg.secret_name,
                    key = cfg.key,
                    "updated the Secret"
                );
                return Ok(());
            }
            Err(e) if status_of(&e) == Some(409) && attempt < CONFLICT_ATTEMPTS => {
                tracing::info!(
                    namespace = cfg.namespace,
                    secret = cfg.secret_name,
                    attempt,
                    "the Secret changed since it was read (409 Conflict); reading it again"
                );
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(e) => return Err(cluster.failure(&e, "update", &what)),
        }
    }
    Err(StepFailure::retryable(format!("{what} kept changing while it was being updated (409 Conflict)")))
}

/// Empties the values of a Secret the step is done with: they were copies of secrets.
fn wipe(secret: &mut Secret) {
    for value in secret.data.iter_mut().flat_map(|d| d.values_mut()) {
        value.0.zeroize();
    }
}

/// `kubectl rollout restart`: the pod template's `restartedAt` annotation, once per execution.
async fn restart(
    cluster: &access::Cluster,
    cfg: &KubernetesSecretConfig,
    workload: &WorkloadRef,
    execution: &str,
    restarted_at: &str,
) -> Result<(), StepFailure> {
    let what = format!("{} {}/{}", workload.kind.as_str(), cfg.namespace, workload.name);
    let template = pod_template(cluster, cfg, workload).await?;
    let annotations = template.and_then(|t| t.metadata).and_then(|m| m.annotations).unwrap_or_default();
    if annotations.get(KUBERNETES_EXECUTION_ANNOTATION).is_some_and(|e| e == execution) {
        tracing::info!(workload = what, "already restarted for this execution; waiting for its rollout");
        return Ok(());
    }
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT_ANNOTATION: restarted_at,
        KUBERNETES_EXECUTION_ANNOTATION: execution,
    }}}}});
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    let patched = match workload.kind {
        WorkloadKind::Deployment => patch_one::<Deployment>(cluster, cfg, workload, &params, &patch).await.map(drop),
        WorkloadKind::StatefulSet => patch_one::<StatefulSet>(cluster, cfg, workload, &params, &patch).await.map(drop),
        WorkloadKind::DaemonSet => patch_one::<DaemonSet>(cluster, cfg, workload, &params, &patch).await.map(drop),
    };
    patched.map_err(|e| cluster.failure(&e, "patch", &what))?;
    tracing::info!(workload = what, "restarted (rollout restart)");
    Ok(())
}

/// The workload's pod template; a permanent failure when the workload does not exist.
async fn pod_template(
    cluster: &access::Cluster,
    cfg: &KubernetesSecretConfig,
    workload: &WorkloadRef,
) -> Result<Option<PodTemplateSpec>, StepFailure> {
    match workload.kind {
        WorkloadKind::Deployment => {
            template_of::<Deployment>(cluster, cfg, workload, |d| d.spec.map(|s| s.template)).await
        }
        WorkloadKind::StatefulSet => {
            template_of::<StatefulSet>(cluster, cfg, workload, |d| d.spec.map(|s| s.template)).await
        }
        WorkloadKind::DaemonSet => {
            template_of::<DaemonSet>(cluster, cfg, workload, |d| d.spec.map(|s| s.template)).await
        }
    }
}

async fn template_of<K>(
    cluster: &access::Cluster,
    cfg: &KubernetesSecretConfig,
    workload: &WorkloadRef,
    template: impl FnOnce(K) -> Option<PodTemplateSpec>,
) -> Result<Option<PodTemplateSpec>, StepFailure>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(cluster.client.clone(), &cfg.namespace);
    let what = format!("{} {}/{}", workload.kind.as_str(), cfg.namespace, workload.name);
    match api.get_opt(&workload.name).await {
        Ok(Some(object)) => Ok(template(object)),
        Ok(None) => Err(StepFailure::permanent(format!("{what} does not exist: check the step's restart list"))),
        Err(e) => Err(cluster.failure(&e, "read", &what)),
    }
}

async fn patch_one<K>(
    cluster: &access::Cluster,
    cfg: &KubernetesSecretConfig,
    workload: &WorkloadRef,
    params: &PatchParams,
    patch: &serde_json::Value,
) -> kube::Result<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(cluster.client.clone(), &cfg.namespace);
    api.patch(&workload.name, params, &Patch::Merge(patch)).await
}

/// Reads every restarted workload until all rollouts are complete, one fails for good (a
/// Deployment past its progress deadline), or `rollout_timeout` passes.
async fn wait_for_rollouts(cluster: &access::Cluster, cfg: &KubernetesSecretConfig) -> Result<(), StepFailure> {
    let deadline = Instant::now() + cfg.rollout_timeout.as_duration();
    let mut pending: Vec<&WorkloadRef> = cfg.restart.iter().collect();
    let mut pause = FIRST_POLL;
    loop {
        let mut still = Vec::new();
        let mut last_state = String::new();
        for workload in pending {
            let what = format!("{} {}/{}", workload.kind.as_str(), cfg.namespace, workload.name);
            match state_of(cluster, cfg, workload).await? {
                RolloutState::Complete => tracing::info!(workload = what, "rollout complete"),
                RolloutState::Failed(why) => {
                    return Err(StepFailure::retryable(format!("the rollout of {what} failed: {why}")));
                }
                RolloutState::Progressing(why) => {
                    if last_state.is_empty() {
                        last_state = format!("{what}: {why}");
                    }
                    still.push(workload);
                }
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if Instant::now() + pause > deadline {
            return Err(StepFailure::retryable(format!(
                "the rollout did not complete within {}: {last_state}",
                cfg.rollout_timeout
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
        pending = still;
    }
}

async fn state_of(
    cluster: &access::Cluster,
    cfg: &KubernetesSecretConfig,
    workload: &WorkloadRef,
) -> Result<RolloutState, StepFailure> {
    let what = format!("{} {}/{}", workload.kind.as_str(), cfg.namespace, workload.name);
    let read = |e: kube::Error| cluster.failure(&e, "read", &what);
    let client = cluster.client.clone();
    let ns = cfg.namespace.as_str();
    Ok(match workload.kind {
        WorkloadKind::Deployment => {
            rollout::deployment(&Api::<Deployment>::namespaced(client, ns).get(&workload.name).await.map_err(read)?)
        }
        WorkloadKind::StatefulSet => {
            rollout::stateful_set(&Api::<StatefulSet>::namespaced(client, ns).get(&workload.name).await.map_err(read)?)
        }
        WorkloadKind::DaemonSet => {
            rollout::daemon_set(&Api::<DaemonSet>::namespaced(client, ns).get(&workload.name).await.map_err(read)?)
        }
    })
}

/// The API server's status code, when it answered with a `Status`.
fn status_of(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The cluster is reachable; the identity may do what the step will do (`SelfSubjectAccessReview`);
/// the Secret exists or will be created; each workload exists and reads the Secret. Nothing changes.
pub(super) async fn probe(azure: &Azure, cfg: &KubernetesSecretConfig, ctx: &ProbeContext<'_>) -> Vec<Probe> {
    let secret_target = format!("Kubernetes Secret {}/{}", cfg.namespace, cfg.secret_name);
    let cluster = match access::connect(azure, cfg, ctx.credential).await {
        Ok(c) => c,
        Err(f) => {
            let outcome = if f.retryable { ProbeOutcome::Warning } else { ProbeOutcome::Failed };
            return vec![Probe { target: secret_target, outcome, reason: f.message }];
        }
    };
    let mut probes = Vec::new();
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &cfg.namespace);
    let exists = match secrets.get_opt(&cfg.secret_name).await {
        Ok(found) => {
            let exists = found.is_some();
            if let Some(mut s) = found {
                wipe(&mut s);
            }
            Some(exists)
        }
        Err(e) => {
            let f = cluster.failure(&e, "read", &format!("Secret {}/{}", cfg.namespace, cfg.secret_name));
            let outcome = if f.retryable { ProbeOutcome::Warning } else { ProbeOutcome::Failed };
            probes.push(Probe { target: secret_target.clone(), outcome, reason: f.message });
            None
        }
    };
    match exists {
        Some(true) => probes.push(Probe {
            target: secret_target.clone(),
            outcome: ProbeOutcome::Ok,
            reason: format!("the cluster is reachable and the Secret exists ({})", cluster.who),
        }),
        Some(false) if cfg.create_if_missing => probes.push(Probe {
            target: secret_target.clone(),
            outcome: ProbeOutcome::Ok,
            reason: "the Secret does not exist yet: the step will create it (create_if_missing)".to_owned(),
        }),
        Some(false) => probes.push(Probe {
            target: secret_target.clone(),
            outcome: ProbeOutcome::Failed,
            reason: "the Secret does not exist; create it, or set create_if_missing on the step".to_owned(),
        }),
        None => {}
    }

    // What the step will ask of the API server, each checked by a SelfSubjectAccessReview.
    let mut rights =
        vec![("get", "", "secrets", cfg.secret_name.clone()), ("update", "", "secrets", cfg.secret_name.clone())];
    if cfg.create_if_missing && exists != Some(true) {
        rights.push(("create", "", "secrets", String::new()));
    }
    for w in &cfg.restart {
        rights.push(("get", "apps", resource_of(w.kind), w.name.clone()));
        rights.push(("patch", "apps", resource_of(w.kind), w.name.clone()));
    }
    let mut denied = Vec::new();
    let mut unknown = Vec::new();
    for (verb, group, resource, name) in &rights {
        match access_review(&cluster, &cfg.namespace, verb, group, resource, name).await {
            Ok(true) => {}
            Ok(false) => denied
                .push(format!("{verb} {resource}{}", if name.is_empty() { String::new() } else { format!(" {name}") })),
            Err(why) => {
                unknown.push(why);
                break;
            }
        }
    }
    let rbac_target = format!("Kubernetes RBAC in namespace {}", cfg.namespace);
    probes.push(if !denied.is_empty() {
        Probe {
            target: rbac_target,
            outcome: ProbeOutcome::Failed,
            reason: format!("{} may not {} in namespace {}", cluster.who, denied.join(", "), cfg.namespace),
        }
    } else if let Some(why) = unknown.first() {
        Probe {
            target: rbac_target,
            outcome: ProbeOutcome::ManualReview,
            reason: format!("the API server did not review the identity's rights ({why}): check {} may get and update the Secret and patch the workloads", cluster.who),
        }
    } else {
        Probe {
            target: rbac_target,
            outcome: ProbeOutcome::Ok,
            reason: format!("{} may {}", cluster.who, rights.iter().map(|(v, _, r, _)| format!("{v} {r}")).collect::<Vec<_>>().join(", ")),
        }
    });

    for w in &cfg.restart {
        let target = format!("Kubernetes {} {}/{}", w.kind.as_str(), cfg.namespace, w.name);
        let template = pod_template(&cluster, cfg, w).await;
        probes.push(match template {
            Ok(t) if t.as_ref().is_some_and(|t| rollout::reads_secret(t, &cfg.secret_name)) => Probe {
                target,
                outcome: ProbeOutcome::Ok,
                reason: format!("exists and its pods read Secret {}", cfg.secret_name),
            },
            Ok(_) => Probe {
                target,
                outcome: ProbeOutcome::Warning,
                reason: format!(
                    "exists, but none of its containers reads Secret {} (env, envFrom or a volume): a restart will not bring it the new secret",
                    cfg.secret_name
                ),
            },
            Err(f) => Probe { target, outcome: if f.retryable { ProbeOutcome::Warning } else { ProbeOutcome::Failed }, reason: f.message },
        });
    }
    probes
}

fn resource_of(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment => "deployments",
        WorkloadKind::StatefulSet => "statefulsets",
        WorkloadKind::DaemonSet => "daemonsets",
    }
}

/// Whether the identity may `verb` the resource, as the API server judges it.
async fn access_review(
    cluster: &access::Cluster,
    namespace: &str,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
) -> Result<bool, String> {
    let api: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_owned()),
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                name: (!name.is_empty()).then(|| name.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &review).await {
        Ok(answer) => Ok(answer.status.is_some_and(|s| s.allowed)),
        Err(e) => Err(cluster.failure(&e, "review the rights of", "the identity").message),
    }
}

#[cfg(test)]
mod tests;
