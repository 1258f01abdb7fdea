//! Published Kubernetes API objects, as the documentation shows them, read by the product's own
//! types and judged by its rollout rules: a Secret, a Deployment mid-rollout and complete (the
//! "Deployments" concept page's `nginx-deployment`), a StatefulSet and a DaemonSet mid-update, and
//! the `Status` a conflicting update gets (API conventions, "Concurrency Control and
//! Consistency").

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

use super::rollout::{RolloutState, judge_rollout, reads_secret};

/// `kubectl get secret db-user-pass -o json` from the "Managing Secrets using kubectl" task.
fn published_secret() -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "data": {"password": "UyFCXCpkJHpEc2I9", "username": "YWRtaW4="},
        "kind": "Secret",
        "metadata": {
            "creationTimestamp": "2022-06-28T17:44:13Z",
            "name": "db-user-pass",
            "namespace": "default",
            "resourceVersion": "12708504",
            "uid": "91becd59-78fa-4c85-823f-6d44436242ac"
        },
        "type": "Opaque"
    })
}

/// The concept page's Deployment, with `status` as `kubectl get deployment nginx-deployment -o
/// yaml` shows it during `kubectl set image` (1 of 3 replicas updated) and after.
fn nginx_deployment(status: serde_json::Value, generation: i64) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx-deployment", "namespace": "default", "generation": generation,
                     "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{
                    "name": "nginx", "image": "nginx:1.16.1", "ports": [{"containerPort": 80}],
                    "envFrom": [{"secretRef": {"name": "db-user-pass"}}]
                }]}
            }
        },
        "status": status
    })
}

#[test]
fn a_published_secret_is_read_with_its_type_and_metadata() {
    let secret: Secret = serde_json::from_value(published_secret()).unwrap();
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(secret.metadata.resource_version.as_deref(), Some("12708504"));
    assert_eq!(secret.data.unwrap()["username"].0, b"admin");
}

#[test]
fn a_deployment_mid_rollout_is_progressing_and_complete_once_every_replica_is_updated_and_available() {
    let mid = nginx_deployment(
        json!({
            "observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "readyReplicas": 3,
            "availableReplicas": 3, "unavailableReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                 "message": "ReplicaSet \"nginx-deployment-1564180365\" is progressing."}
            ]
        }),
        2,
    );
    assert_eq!(
        judge_rollout(&mid).unwrap(),
        RolloutState::Progressing("1 of 3 new replicas have been updated".to_owned())
    );
    let unobserved = nginx_deployment(
        json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3,
                                             "availableReplicas": 3}),
        2,
    );
    assert!(matches!(judge_rollout(&unobserved).unwrap(), RolloutState::Progressing(s) if s.contains("observed")));
    let complete = nginx_deployment(
        json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
            "availableReplicas": 3,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": "ReplicaSet \"nginx-deployment-1564180365\" has successfully progressed."}
            ]
        }),
        2,
    );
    assert_eq!(judge_rollout(&complete).unwrap(), RolloutState::Complete);
}

#[test]
fn a_deployment_past_its_progress_deadline_has_failed_with_the_condition_in_words() {
    // The "Failed Deployment" section of the concept page.
    let stuck = nginx_deployment(
        json!({
            "observedGeneration": 3, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": "ReplicaSet \"nginx-deployment-4262182780\" has timed out progressing."},
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                 "message": "pods \"nginx-deployment-4262182780-\" is forbidden: exceeded quota"}
            ]
        }),
        3,
    );
    let RolloutState::Failed(why) = judge_rollout(&stuck).unwrap() else { panic!("not failed") };
    assert!(why.contains("ProgressDeadlineExceeded") && why.contains("timed out progressing"), "{why}");
}

#[test]
fn statefulsets_and_daemonsets_are_judged_as_kubectl_does() {
    let sts = |current: &str| {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "web", "generation": 2},
               "spec": {"replicas": 3, "serviceName": "nginx", "selector": {"matchLabels": {"app": "nginx"}},
                        "updateStrategy": {"type": "RollingUpdate"},
                        "template": {"spec": {"containers": [{"name": "nginx"}]}}},
               "status": {"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1,
                          "currentRevision": current, "updateRevision": "web-6c5b4f5d7"}})
    };
    assert!(matches!(judge_rollout(&sts("web-7b7f9c8d6")).unwrap(), RolloutState::Progressing(_)));
    assert_eq!(judge_rollout(&sts("web-6c5b4f5d7")).unwrap(), RolloutState::Complete);
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "fluentd", "generation": 2},
                    "spec": {"selector": {"matchLabels": {"name": "fluentd"}}, "updateStrategy": {"type": "OnDelete"},
                             "template": {"spec": {"containers": [{"name": "fluentd"}]}}},
                    "status": {"observedGeneration": 2, "currentNumberScheduled": 2, "desiredNumberScheduled": 2,
                               "numberMisscheduled": 0, "numberReady": 2}});
    assert!(matches!(judge_rollout(&ds).unwrap(), RolloutState::Failed(s) if s.contains("OnDelete")));
}

#[test]
fn a_template_reads_a_secret_through_env_from_env_or_a_volume() {
    let d: Deployment = serde_json::from_value(nginx_deployment(json!({}), 1)).unwrap();
    let template = d.spec.unwrap().template;
    assert!(reads_secret(&template, "db-user-pass"));
    assert!(!reads_secret(&template, "another"));
    let by_volume: k8s_openapi::api::core::v1::PodTemplateSpec = serde_json::from_value(json!({
        "spec": {"containers": [{"name": "c"}],
                 "volumes": [{"name": "v", "projected": {"sources": [{"secret": {"name": "db-user-pass"}}]}}]}
    }))
    .unwrap();
    assert!(reads_secret(&by_volume, "db-user-pass"));
}

#[tokio::test]
async fn a_published_conflict_status_is_a_retryable_failure_in_words() {
    // The API conventions' answer to an update with a stale resourceVersion.
    let status: kube::core::Status = serde_json::from_value(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Operation cannot be fulfilled on secrets \"db-user-pass\": the object has been modified; please apply your changes to the latest version and try again",
        "reason": "Conflict", "details": {"name": "db-user-pass", "kind": "secrets"}, "code": 409
    }))
    .unwrap();
    let cluster = super::access::Cluster::for_tests();
    let failure = cluster.failure(&kube::Error::Api(Box::new(status)), "update", "Secret default/db-user-pass");
    assert!(failure.retryable);
    assert!(failure.message.contains("409 Conflict") && failure.message.contains("object has been modified"));
    let forbidden: kube::core::Status = serde_json::from_value(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "secrets \"db-user-pass\" is forbidden: User \"system:serviceaccount:rotator:default\" cannot update resource \"secrets\" in API group \"\" in the namespace \"default\"",
        "reason": "Forbidden", "details": {"name": "db-user-pass", "kind": "secrets"}, "code": 403
    }))
    .unwrap();
    let failure = cluster.failure(&kube::Error::Api(Box::new(forbidden)), "update", "Secret default/db-user-pass");
    assert!(!failure.retryable);
    assert!(failure.message.contains("cannot update resource \"secrets\""), "{}", failure.message);
}
