//! Whether a workload's rollout is complete, judged as `kubectl rollout status` judges it (its
//! `DeploymentStatusViewer`, `StatefulSetStatusViewer`, `DaemonSetStatusViewer`), and whether a pod
//! template reads a Secret at all. Pure functions of the objects the API server answered.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;

/// How a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutState {
    Complete,
    /// Still going, in kubectl's words.
    Progressing(String),
    /// Will not complete by waiting (a Deployment past its progress deadline, a workload whose
    /// update strategy never replaces pods).
    Failed(String),
}

/// The state of a workload of any of the three kinds, from its JSON (as the API server answers it).
///
/// # Errors
///
/// When the object is not a Deployment, StatefulSet or DaemonSet.
pub fn judge_rollout(object: &serde_json::Value) -> Result<RolloutState, String> {
    let kind = object.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
    let parse = |e: serde_json::Error| format!("not a {kind}: {e}");
    match kind {
        "Deployment" => Ok(deployment(&serde_json::from_value(object.clone()).map_err(parse)?)),
        "StatefulSet" => Ok(stateful_set(&serde_json::from_value(object.clone()).map_err(parse)?)),
        "DaemonSet" => Ok(daemon_set(&serde_json::from_value(object.clone()).map_err(parse)?)),
        other => Err(format!("{other:?} is not a workload kind the step restarts")),
    }
}

pub(super) fn deployment(d: &Deployment) -> RolloutState {
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.clone().unwrap_or_default();
    if generation > status.observed_generation.unwrap_or(0) {
        return RolloutState::Progressing("waiting for the deployment's spec update to be observed".to_owned());
    }
    let conditions = status.conditions.unwrap_or_default();
    let progressing = conditions.iter().find(|c| c.type_ == "Progressing");
    if let Some(c) = progressing.filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
        return RolloutState::Failed(format!(
            "it exceeded its progress deadline (Progressing={} ProgressDeadlineExceeded: {})",
            c.status,
            c.message.as_deref().unwrap_or_default()
        ));
    }
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let condition = conditions
        .iter()
        .find(|c| c.status == "False")
        .map(|c| {
            format!(
                " ({}=False {}: {})",
                c.type_,
                c.reason.as_deref().unwrap_or_default(),
                c.message.as_deref().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    if updated < wanted {
        RolloutState::Progressing(format!("{updated} of {wanted} new replicas have been updated{condition}"))
    } else if replicas > updated {
        RolloutState::Progressing(format!("{} old replicas are pending termination{condition}", replicas - updated))
    } else if available < updated {
        RolloutState::Progressing(format!("{available} of {updated} updated replicas are available{condition}"))
    } else {
        RolloutState::Complete
    }
}

pub(super) fn stateful_set(s: &StatefulSet) -> RolloutState {
    let spec = s.spec.clone().unwrap_or_default();
    if spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()).is_some_and(|t| t != "RollingUpdate") {
        return RolloutState::Failed(
            "its update strategy is OnDelete: a restart replaces no pod until they are deleted".to_owned(),
        );
    }
    let status = s.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0);
    if observed == 0 || s.metadata.generation.unwrap_or(0) > observed {
        return RolloutState::Progressing("waiting for the statefulset's spec update to be observed".to_owned());
    }
    let wanted = spec.replicas.unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < wanted {
        return RolloutState::Progressing(format!("{ready} of {wanted} pods are ready"));
    }
    let partition = spec.update_strategy.and_then(|u| u.rolling_update).and_then(|r| r.partition).unwrap_or(0).max(0);
    if partition > 0 {
        let updated = status.updated_replicas.unwrap_or(0);
        if updated < wanted - partition {
            return RolloutState::Progressing(format!(
                "{updated} of {} pods above the partition have been updated",
                wanted - partition
            ));
        }
        return RolloutState::Complete;
    }
    if status.update_revision != status.current_revision {
        return RolloutState::Progressing(format!(
            "{} pods at revision {}",
            status.updated_replicas.unwrap_or(0),
            status.update_revision.unwrap_or_default()
        ));
    }
    RolloutState::Complete
}

pub(super) fn daemon_set(d: &DaemonSet) -> RolloutState {
    let spec = d.spec.clone().unwrap_or_default();
    if spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()).is_some_and(|t| t != "RollingUpdate") {
        return RolloutState::Failed(
            "its update strategy is OnDelete: a restart replaces no pod until they are deleted".to_owned(),
        );
    }
    let status = d.status.clone().unwrap_or_default();
    if d.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return RolloutState::Progressing("waiting for the daemon set's spec update to be observed".to_owned());
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    if updated < desired {
        RolloutState::Progressing(format!("{updated} of {desired} new pods have been updated"))
    } else if available < desired {
        RolloutState::Progressing(format!("{available} of {desired} updated pods are available"))
    } else {
        RolloutState::Complete
    }
}

/// Whether a container (or init container) of the template reads Secret `name`, through `env`
/// (`secretKeyRef`), `envFrom` (`secretRef`) or a volume (a `secret` or `projected` one).
pub(super) fn reads_secret(template: &PodTemplateSpec, name: &str) -> bool {
    let Some(spec) = &template.spec else { return false };
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    let by_env = containers.clone().any(|c| {
        c.env
            .iter()
            .flatten()
            .any(|e| e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).is_some_and(|r| r.name == name))
            || c.env_from.iter().flatten().any(|e| e.secret_ref.as_ref().is_some_and(|r| r.name == name))
    });
    let by_volume = spec.volumes.iter().flatten().any(|v| {
        v.secret.as_ref().is_some_and(|s| s.secret_name.as_deref() == Some(name))
            || v.projected
                .as_ref()
                .is_some_and(|p| p.sources.iter().flatten().any(|s| s.secret.as_ref().is_some_and(|s| s.name == name)))
    });
    by_env || by_volume
}
