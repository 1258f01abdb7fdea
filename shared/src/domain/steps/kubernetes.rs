//! `kubernetes_secret`: publishes the new secret into a key of a Kubernetes Secret, then optionally
//! rollout-restarts workloads that read it and waits for their rollouts.
//!
//! How the rotator reaches the cluster is part of the step, because one deployment of the rotator
//! serves many clusters: a kubeconfig file (and context), the in-cluster service account, and how it
//! signs in — the kubeconfig's own user, the integration's Entra identity for AKS, or the rotator's
//! own AWS identity (the function's role) for EKS.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::issues::{Notes, unknown_field_message, wrong_type};
use super::read::{Need, Obj, check_nothing_more};
use super::{Phase, StepConfig, StepKind, StepType, TypeConfig};
use crate::domain::duration::Span;
use crate::domain::ids::IntegrationId;

/// How long the restarted workloads' rollouts may take when the step says nothing (`kubectl
/// rollout status` waits for ever). A step runs within one run-step invocation, so at most
/// [`super::MAX_STEP_TIMEOUT`]; a slower rollout is waited for again on the step's retries.
pub const DEFAULT_ROLLOUT_TIMEOUT: Span = Span::from_secs(3 * 60);

/// The annotations the rotator writes on the Secret (the execution and the new key id) and on each
/// restarted workload's pod template (the execution): a redelivered step finds its own work by them.
pub const KUBERNETES_EXECUTION_ANNOTATION: &str = "entra-rotator.io/execution";
pub const KUBERNETES_KEY_ID_ANNOTATION: &str = "entra-rotator.io/key-id";
/// The pod-template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

pub(super) const TYPE: StepType = StepType {
    kind: StepKind::KubernetesSecret,
    name: "kubernetes_secret",
    // Still a publish when it restarts workloads: its restart reloads right after its own publish.
    phase: Phase::Publish,
    takes_agent: false,
    config_fields: &[
        "namespace",
        "secret_name",
        "key",
        "context",
        "restart",
        "kubeconfig",
        "in_cluster",
        "auth",
        "identity",
        "cluster_name",
        "region",
        "create_if_missing",
        "rollout_timeout",
    ],
    env_field: None,
    read: |o, _agent, n| read(o, n).map(StepConfig::KubernetesSecret),
};

/// `kubernetes_secret`: sets `namespace/secret_name/key`, then optionally rollout-restarts workloads
/// of the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubernetesSecretConfig {
    /// A DNS-1123 label.
    pub namespace: String,
    /// A DNS-1123 subdomain.
    pub secret_name: String,
    /// A Secret data key: letters, digits, `-`, `_` and `.`.
    pub key: String,
    /// The kubeconfig context (cluster) to use, when not the kubeconfig's current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    pub restart: Vec<WorkloadRef>,
    /// The kubeconfig file (a relative path is resolved against the configuration's folder when
    /// the configuration is loaded); when absent (and not `in_cluster`), the one `kubectl` would
    /// use (`$KUBECONFIG`, then `~/.kube/config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// Reach the API server as the pod's own service account (the rotator runs in the cluster).
    pub in_cluster: bool,
    /// Who the rotator is to the API server.
    #[serde(flatten)]
    pub auth: ClusterAuth,
    /// Create the Secret (type `Opaque`) when it does not exist; otherwise a missing Secret fails the
    /// step (and preflight).
    pub create_if_missing: bool,
    /// How long the restarted workloads' rollouts may take, all together.
    pub rollout_timeout: Span,
}

/// Who the rotator is to the API server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "auth", rename_all = "snake_case")]
pub enum ClusterAuth {
    /// The kubeconfig's user (a token, a client certificate) or the in-cluster service account.
    Kubeconfig,
    /// AKS with Microsoft Entra authentication, as `kubelogin` does it: a token for the AKS server
    /// application from an integration's Entra identity (`identity`, else the rotated credential's
    /// own integration) replaces the kubeconfig's user. The kubeconfig gives the server and its CA.
    Aks {
        #[serde(skip_serializing_if = "Option::is_none")]
        identity: Option<IntegrationId>,
    },
    /// EKS, as `aws eks get-token` does it: a presigned STS `GetCallerIdentity` URL carrying the
    /// `x-k8s-aws-id: <cluster_name>` header, signed with the rotator's own AWS credentials (the
    /// Lambda function's role, or the default chain on one machine), replaces the kubeconfig's
    /// user. The cluster maps that role to a Kubernetes user (an access entry). The kubeconfig gives
    /// the server and its CA.
    Eks {
        cluster_name: String,
        /// The STS region; when absent, the rotator's own (`AWS_REGION`).
        #[serde(skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthChoice {
    Kubeconfig,
    Aks,
    Eks,
}

impl ClusterAuth {
    const CHOICES: &[(&str, AuthChoice)] =
        &[("kubeconfig", AuthChoice::Kubeconfig), ("aks", AuthChoice::Aks), ("eks", AuthChoice::Eks)];
}

/// A workload restarted (`kubectl rollout restart`) after the Secret changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    /// A DNS-1123 subdomain.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    const CHOICES: &[(&str, WorkloadKind)] = &[
        ("Deployment", WorkloadKind::Deployment),
        ("StatefulSet", WorkloadKind::StatefulSet),
        ("DaemonSet", WorkloadKind::DaemonSet),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }
}

impl TypeConfig for KubernetesSecretConfig {
    fn describe(&self) -> String {
        let mut s = format!("Kubernetes Secret {}/{} key {}", self.namespace, self.secret_name, self.key);
        if let Some(context) = &self.context {
            s.push_str(&format!(" in {context}"));
        } else if self.in_cluster {
            s.push_str(" in this cluster");
        }
        if !self.restart.is_empty() {
            let workloads: Vec<String> =
                self.restart.iter().map(|w| format!("{}/{}", w.kind.as_str(), w.name)).collect();
            s.push_str(&format!(", then restart {}", workloads.join(", ")));
        }
        s
    }

    fn identities(&self) -> Vec<(&'static str, &IntegrationId)> {
        match &self.auth {
            ClusterAuth::Aks { identity: Some(i) } => vec![("config.identity", i)],
            _ => Vec::new(),
        }
    }
}

fn read(o: &Obj<'_>, n: &mut Notes) -> Option<KubernetesSecretConfig> {
    let namespace = o.text(n, "namespace", Need::Required, check_dns_label);
    let secret_name = o.text(n, "secret_name", Need::Required, check_dns_subdomain);
    let key = o.text(n, "key", Need::Required, check_secret_data_key);
    let context = o.text(n, "context", Need::Optional, check_nothing_more);
    let mut restart = Vec::new();
    if let Some(items) = o.array(n, "restart") {
        for (i, item) in items.iter().enumerate() {
            let at = format!("{}[{i}]", o.path("restart"));
            let Value::Object(map) = item else {
                n.error(at, wrong_type("an object {\"kind\": \"Deployment\", \"name\": …}", item));
                continue;
            };
            let w = Obj::new(map, format!("{at}."));
            for key in map.keys().filter(|k| !["kind", "name"].contains(&k.as_str())) {
                n.error(w.path(key), unknown_field_message(key, &["kind", "name"], None));
            }
            let kind = w.one_of(n, "kind", Need::Required, WorkloadKind::CHOICES);
            let name = w.text(n, "name", Need::Required, check_dns_subdomain);
            if let (Some(kind), Some(name)) = (kind, name) {
                let workload = WorkloadRef { kind, name };
                if restart.contains(&workload) {
                    n.error(at, format!("{}/{} is listed twice", kind.as_str(), workload.name));
                } else {
                    restart.push(workload);
                }
            }
        }
    }
    let kubeconfig = o.text(n, "kubeconfig", Need::Optional, check_kubeconfig_path);
    let in_cluster = o.bool(n, "in_cluster", Need::Optional).unwrap_or(false);
    if in_cluster {
        for field in ["kubeconfig", "context"].into_iter().filter(|f| o.get(f).is_some()) {
            n.error(o.path(field), "given with in_cluster: the in-cluster service account needs no kubeconfig");
        }
    }
    let choice = o.one_of(n, "auth", Need::Optional, ClusterAuth::CHOICES).unwrap_or(AuthChoice::Kubeconfig);
    let identity = o
        .text(n, "identity", Need::Optional, super::key_vault::check_identity)
        .and_then(|s| IntegrationId::parse(&s).ok());
    if choice != AuthChoice::Aks && o.get("identity").is_some() {
        n.error(o.path("identity"), "given without \"auth\": \"aks\": only AKS sign-in uses an Entra identity");
    }
    let eks = choice == AuthChoice::Eks;
    let cluster_name =
        o.text(n, "cluster_name", if eks { Need::Required } else { Need::Optional }, check_eks_cluster_name);
    let region = o.text(n, "region", Need::Optional, check_aws_region);
    if !eks {
        for field in ["cluster_name", "region"].into_iter().filter(|f| o.get(f).is_some()) {
            n.error(o.path(field), "given without \"auth\": \"eks\": only EKS sign-in names its cluster and region");
        }
    }
    if choice != AuthChoice::Kubeconfig && in_cluster {
        n.error(
            o.path("auth"),
            "AKS and EKS sign-in need the cluster's kubeconfig (its server and CA), not in_cluster",
        );
    }
    let auth = match choice {
        AuthChoice::Kubeconfig => Some(ClusterAuth::Kubeconfig),
        AuthChoice::Aks => Some(ClusterAuth::Aks { identity }),
        AuthChoice::Eks => cluster_name.map(|cluster_name| ClusterAuth::Eks { cluster_name, region }),
    };
    let create_if_missing = o.bool(n, "create_if_missing", Need::Optional).unwrap_or(false);
    let rollout_timeout = o.positive_span(n, "rollout_timeout").unwrap_or(DEFAULT_ROLLOUT_TIMEOUT);
    Some(KubernetesSecretConfig {
        namespace: namespace?,
        secret_name: secret_name?,
        key: key?,
        context,
        restart,
        kubeconfig,
        in_cluster,
        auth: auth?,
        create_if_missing,
        rollout_timeout,
    })
}

/// An EKS cluster name: 1 to 100 letters, digits, `-` and `_`, starting with a letter or digit (what
/// `CreateCluster` accepts). It is signed into the token, so the cluster can refuse a token made for
/// another one.
fn check_eks_cluster_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = (1..=100).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_');
    if ok { Ok(()) } else { Err("must be an EKS cluster name: letters, digits, - and _, at most 100".to_owned()) }
}

/// An AWS region code, such as `eu-west-1`, `us-gov-west-1` or `cn-north-1`.
fn check_aws_region(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('-').collect();
    let ok = parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts[0].len() == 2
        && parts.last().is_some_and(|p| p.bytes().all(|c| c.is_ascii_digit()));
    if ok { Ok(()) } else { Err("must be an AWS region code, such as eu-west-1".to_owned()) }
}

/// A kubeconfig file: a path, absolute or relative to the configuration's folder.
fn check_kubeconfig_path(s: &str) -> Result<(), String> {
    if s.trim().is_empty() || s.chars().any(char::is_control) {
        Err("must be the path of a kubeconfig file".to_owned())
    } else {
        Ok(())
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A Kubernetes namespace: a DNS-1123 label.
fn check_dns_label(s: &str) -> Result<(), String> {
    if s.len() <= 63 && is_dns_label(s) {
        Ok(())
    } else {
        Err("must be a DNS-1123 label: at most 63 lower-case letters, digits and '-', starting and ending with a \
             letter or digit"
            .to_owned())
    }
}

/// A Kubernetes object name: a DNS-1123 subdomain.
fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.len() <= 253 && s.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err("must be a DNS-1123 subdomain: at most 253 lower-case letters, digits, '-' and '.', each part \
             starting and ending with a letter or digit"
            .to_owned())
    }
}

/// A key of a Secret's `data`.
fn check_secret_data_key(s: &str) -> Result<(), String> {
    let ok = s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err("Secret keys are at most 253 letters, digits, '-', '_' and '.'".to_owned()) }
}

#[cfg(test)]
mod tests {
    use crate::domain::steps::test_support::*;

    #[test]
    fn kubernetes_names_and_workloads_are_checked() {
        let json = r#"[{"type": "kubernetes_secret", "order": 1, "config": {"namespace": "Payroll", "secret_name": "-bad",
            "key": "a/b", "restart": [{"kind": "Deployment", "name": "api"}, {"kind": "CronJob", "name": "x"},
            {"kind": "Deployment", "name": "api"}, {"kind": "DaemonSet", "nmae": "y"}]}}]"#;
        let e = errors(json);
        assert!(issue(&e, "config.namespace").message.contains("DNS-1123 label"));
        assert!(issue(&e, "config.secret_name").message.contains("DNS-1123 subdomain"));
        assert!(issue(&e, "config.key").message.contains("Secret keys"));
        assert!(
            issue(&e, "config.restart[1].kind").message.contains("expected one of Deployment, StatefulSet, DaemonSet")
        );
        assert!(issue(&e, "config.restart[2]").message.contains("listed twice"));
        assert!(issue(&e, "config.restart[3].nmae").message.contains("did you mean `name`?"));
        assert_eq!(issue(&e, "config.restart[3].name").message, "missing");
    }

    #[test]
    fn cluster_access_is_one_way_and_aks_names_its_identity() {
        let json = r#"[{"type": "kubernetes_secret", "order": 1, "config": {"namespace": "payroll",
            "secret_name": "api", "key": "k", "in_cluster": true, "kubeconfig": "/k", "auth": "aks",
            "identity": "contoso", "rollout_timeout": "0s"}}]"#;
        let e = errors(json);
        assert!(issue(&e, "config.kubeconfig").message.contains("in_cluster"));
        assert!(issue(&e, "config.auth").message.contains("not in_cluster"));
        assert!(issue(&e, "config.rollout_timeout").message.contains("longer than 0s"));
        let e = errors(
            r#"[{"type": "kubernetes_secret", "order": 1, "config": {"namespace": "payroll",
            "secret_name": "api", "key": "k", "identity": "contoso", "auth": "eksx"}}]"#,
        );
        assert!(issue(&e, "config.identity").message.contains("auth"));
        assert!(issue(&e, "config.auth").message.contains("expected one of kubeconfig, aks, eks"));
    }

    #[test]
    fn eks_sign_in_names_a_valid_cluster_and_region() {
        let e = errors(
            r#"[{"type": "kubernetes_secret", "order": 1, "config": {"namespace": "payroll",
            "secret_name": "api", "key": "k", "auth": "eks", "region": "Europe"}}]"#,
        );
        assert_eq!(issue(&e, "config.cluster_name").message, "missing");
        assert!(issue(&e, "config.region").message.contains("region code"));
        let e = errors(
            r#"[{"type": "kubernetes_secret", "order": 1, "config": {"namespace": "payroll",
            "secret_name": "api", "key": "k", "auth": "eks", "cluster_name": "-orders", "in_cluster": true}}]"#,
        );
        assert!(issue(&e, "config.cluster_name").message.contains("EKS cluster name"));
        assert!(issue(&e, "config.auth").message.contains("not in_cluster"));
        let e = errors(
            r#"[{"type": "kubernetes_secret", "order": 1, "config": {"namespace": "payroll",
            "secret_name": "api", "key": "k", "cluster_name": "orders"}}]"#,
        );
        assert!(issue(&e, "config.cluster_name").message.contains("\"eks\""));
        let plan = crate::domain::steps::parse_steps_with(
            r#"[{"type": "kubernetes_secret", "order": 1, "config": {"namespace": "payroll", "kubeconfig": "/k",
            "secret_name": "api", "key": "k", "auth": "eks", "cluster_name": "orders_prod-1", "region": "us-gov-west-1"}}]"#,
            &crate::domain::address::AddressPolicy::allowing_loopback(),
        )
        .unwrap();
        let crate::domain::steps::StepConfig::KubernetesSecret(c) = &plan.steps[0].config else { panic!() };
        assert_eq!(
            c.auth,
            super::ClusterAuth::Eks { cluster_name: "orders_prod-1".into(), region: Some("us-gov-west-1".into()) }
        );
    }
}
