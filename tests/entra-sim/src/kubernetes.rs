//! A simulated Kubernetes cluster: the API server paths a `kube` client uses for Secrets, the three
//! workload kinds and `SelfSubjectAccessReview`, following the Kubernetes API conventions, and the
//! pods behind the workloads, which are the consumers of the rotated secret.
//!
//! - **Authentication**: `Authorization: Bearer …` with a token registered by the test
//!   ([`Kubernetes::add_identity`]), or (AKS with Microsoft Entra authentication) an access token
//!   this sim's token endpoint issued to an application registered with
//!   [`Kubernetes::add_entra_identity`], or (EKS) a `k8s-aws-v1.` token signed for this cluster by
//!   an AWS principal registered with [`Kubernetes::add_aws_identity`] (see `eks.rs`). Anything
//!   else is 401; [`Kubernetes::last_refusal`] says why.
//! - **Authorization**: each identity may do everything, or only the (verb, resource) pairs it was
//!   given; a refusal is 403 with the API server's words (`User "x" cannot update resource
//!   "secrets" in API group "" in the namespace "y"`). `SelfSubjectAccessReview` answers the same
//!   rules.
//! - **Secrets**: get, create (409 AlreadyExists), replace (conditional on
//!   `metadata.resourceVersion`: 409 Conflict when it is stale; `type` is immutable: 422) and merge
//!   patch. [`Kubernetes::conflict_next_secret_writes`] has another writer change the Secret just
//!   before the product's next writes, as a real concurrent writer would.
//! - **Workloads** (`Deployment`, `StatefulSet`, `DaemonSet`): get and merge patch; a change of the
//!   pod template bumps `metadata.generation` and starts a rollout that replaces one pod per
//!   [`ROLLOUT_STEP`] of real time, each new pod reading the Secret's current value as it starts
//!   (as pods read `env`/`envFrom` only at start). [`Kubernetes::stall`] stops a rollout where it
//!   is: new pods never become ready.
//! - **Consumers**: `GET /consumers/{namespace}/{name}/health` answers 200 only while every pod of
//!   the workload holds a secret that signs in to the simulated tenant as the workload's
//!   application, so a plan that updates the Secret but restarts nothing fails its health check.
//!
//! Errors are `Status` objects (`kind: Status`, `status: Failure`, `reason`, `code`, `details`).

// A handler's early answer is the `Status` response itself, as axum handlers return it.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::lock;
use crate::server::{AppState, Shared};

/// The AKS server application, whose tokens the cluster accepts from registered Entra identities.
pub(crate) const AKS_SERVER_APP_ID: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";

/// How long a rollout takes per pod replaced.
pub const ROLLOUT_STEP: Duration = Duration::from_millis(150);

/// The three workload kinds, by their resource name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    fn of_resource(resource: &str) -> Option<Self> {
        match resource {
            "deployments" => Some(Self::Deployment),
            "statefulsets" => Some(Self::StatefulSet),
            "daemonsets" => Some(Self::DaemonSet),
            _ => None,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }
}

/// How a workload's containers read the Secret (what its pod template says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUse {
    /// `envFrom: [{secretRef: {name}}]`.
    EnvFrom,
    /// `env: [{name: AZURE_CLIENT_SECRET, valueFrom: {secretKeyRef: {name, key}}}]`.
    EnvKeyRef,
    /// A `secret` volume.
    Volume,
    /// The template does not mention the Secret (the pods still hold what the test gave them).
    NotReferenced,
}

/// A workload the test adds: its pods sign in as `client_id` with the Secret's `key`.
#[derive(Debug, Clone)]
pub struct NewWorkload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    pub replicas: u32,
    pub secret_name: String,
    pub key: String,
    pub uses: SecretUse,
    /// The application the pods sign in as.
    pub client_id: Uuid,
}

/// Who a bearer token is, and what it may do: `None` is everything.
#[derive(Debug, Clone)]
struct Identity {
    user: String,
    allowed: Option<HashSet<(String, String)>>,
}

#[derive(Debug)]
struct Pod {
    generation: i64,
    secret: Option<String>,
    ready: bool,
}

#[derive(Debug)]
struct Workload {
    kind: WorkloadKind,
    /// metadata and spec as last written (status is computed).
    object: Value,
    generation: i64,
    observed_generation: i64,
    pods: Vec<Pod>,
    replicas: u32,
    secret_name: String,
    key: String,
    client_id: Uuid,
    last_step: Instant,
    stalled: bool,
    restarts: usize,
}

/// The cluster's state, behind the sim's shared state.
#[derive(Debug, Default)]
pub(crate) struct ClusterState {
    secrets: BTreeMap<(String, String), Value>,
    workloads: BTreeMap<(WorkloadKind, String, String), Workload>,
    resource_version: u64,
    tokens: HashMap<String, Identity>,
    entra: HashMap<Uuid, Identity>,
    /// The EKS cluster's name, when it is one, and what STS and its access entries know.
    eks_cluster: Option<String>,
    aws_principals: BTreeMap<String, crate::eks::AwsPrincipal>,
    aws_users: HashMap<String, Identity>,
    last_refusal: Option<String>,
    pending_conflicts: u32,
    secret_writes: BTreeMap<(String, String), usize>,
    reviews: usize,
}

impl ClusterState {
    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        let secret = self.secrets.get(&(namespace.to_owned(), name.to_owned()))?;
        let encoded = secret.get("data")?.get(key)?.as_str()?;
        String::from_utf8(STANDARD.decode(encoded).ok()?).ok()
    }

    /// Moves every rollout on by the real time passed.
    fn progress(&mut self) {
        let now = Instant::now();
        let keys: Vec<_> = self.workloads.keys().cloned().collect();
        for key in keys {
            while let Some(w) = self.workloads.get_mut(&key) {
                // The controller sees a spec change at once; replacing pods takes time.
                w.observed_generation = w.generation;
                if w.stalled || now.duration_since(w.last_step) < ROLLOUT_STEP {
                    break;
                }
                let (namespace, secret_name, secret_key) = (key.1.clone(), w.secret_name.clone(), w.key.clone());
                let value = self.secret_value(&namespace, &secret_name, &secret_key);
                let Some(w) = self.workloads.get_mut(&key) else { break };
                w.last_step += ROLLOUT_STEP;
                let Some(old) = w.pods.iter().position(|p| p.generation < w.generation) else {
                    w.last_step = now;
                    break;
                };
                w.pods.remove(old);
                w.pods.push(Pod { generation: w.generation, secret: value, ready: true });
            }
        }
    }
}

/// A handle on the simulated cluster ([`crate::Sim::kubernetes`]).
#[derive(Clone)]
pub struct Kubernetes {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kubernetes")
    }
}

impl Kubernetes {
    fn state(&self) -> std::sync::MutexGuard<'_, ClusterState> {
        lock(&self.shared.kubernetes)
    }

    /// Lets `token` in as `user`, allowed everything (`allowed: None`) or only those (verb,
    /// resource) pairs, such as `("update", "secrets")`.
    pub fn add_identity(&self, token: &str, user: &str, allowed: Option<&[(&str, &str)]>) {
        let identity = Identity { user: user.to_owned(), allowed: allowed.map(to_rules) };
        self.state().tokens.insert(token.to_owned(), identity);
    }

    /// Lets in the access tokens this sim's token endpoint issues to `client_id` (AKS with
    /// Microsoft Entra authentication), as `user`, allowed everything.
    pub fn add_entra_identity(&self, client_id: Uuid, user: &str) {
        self.state().entra.insert(client_id, Identity { user: user.to_owned(), allowed: None });
    }

    /// Makes this an EKS cluster named `name`: it accepts EKS tokens signed for that name.
    pub fn eks_cluster(&self, name: &str) {
        self.state().eks_cluster = Some(name.to_owned());
    }

    /// An AWS principal (its access key, as STS knows it, and its role ARN) and the access entry
    /// that maps the role to `user`, allowed as in [`Kubernetes::add_identity`].
    pub fn add_aws_identity(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
        arn: &str,
        user: &str,
        allowed: Option<&[(&str, &str)]>,
    ) {
        let mut state = self.state();
        let principal = crate::eks::AwsPrincipal {
            secret_access_key: secret_access_key.to_owned(),
            session_token: session_token.map(str::to_owned),
            arn: arn.to_owned(),
        };
        state.aws_principals.insert(access_key_id.to_owned(), principal);
        state.aws_users.insert(arn.to_owned(), Identity { user: user.to_owned(), allowed: allowed.map(to_rules) });
    }

    /// Why the last refused bearer token was refused (the API server answers only 401).
    pub fn last_refusal(&self) -> Option<String> {
        self.state().last_refusal.clone()
    }

    /// Creates (or replaces) an `Opaque` Secret with these string values.
    pub fn put_secret(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let mut state = self.state();
        let version = state.next_version();
        let data: serde_json::Map<String, Value> =
            data.iter().map(|(k, v)| ((*k).to_owned(), Value::String(STANDARD.encode(v)))).collect();
        let object = json!({
            "kind": "Secret", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": version,
                         "uid": Uuid::new_v4().to_string(), "labels": {"app": name},
                         "annotations": {"owner": "platform-team"}},
            "type": "Opaque",
            "data": data,
        });
        state.secrets.insert((namespace.to_owned(), name.to_owned()), object);
    }

    /// The Secret as stored (data base64-encoded), if it exists.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        self.state().secrets.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }

    /// One key of the Secret, decoded.
    pub fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        self.state().secret_value(namespace, name, key)
    }

    /// How many times the product wrote the Secret (create, replace, patch).
    pub fn secret_writes(&self, namespace: &str, name: &str) -> usize {
        self.state().secret_writes.get(&(namespace.to_owned(), name.to_owned())).copied().unwrap_or(0)
    }

    /// Another writer changes the Secret just before each of the product's next `n` writes, so
    /// they carry a stale `resourceVersion` and get 409 Conflict.
    pub fn conflict_next_secret_writes(&self, n: u32) {
        self.state().pending_conflicts = n;
    }

    /// Adds a workload whose pods have started already, reading the Secret as it is now.
    pub fn add_workload(&self, w: NewWorkload) {
        let mut state = self.state();
        let value = state.secret_value(&w.namespace, &w.secret_name, &w.key);
        let container = container(&w);
        let mut pod_spec = json!({"containers": [container]});
        if w.uses == SecretUse::Volume {
            pod_spec["volumes"] = json!([{"name": "entra", "secret": {"secretName": w.secret_name}}]);
        }
        let mut spec = json!({
            "replicas": w.replicas,
            "selector": {"matchLabels": {"app": w.name}},
            "template": {"metadata": {"labels": {"app": w.name}}, "spec": pod_spec},
        });
        match w.kind {
            WorkloadKind::Deployment => {
                spec["strategy"] =
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
                spec["progressDeadlineSeconds"] = json!(600);
            }
            WorkloadKind::StatefulSet => {
                spec["serviceName"] = json!(w.name);
                spec["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}});
            }
            WorkloadKind::DaemonSet => {
                if let Some(s) = spec.as_object_mut() {
                    s.remove("replicas");
                }
                spec["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}});
            }
        }
        let version = state.next_version();
        let object = json!({
            "kind": w.kind.kind(), "apiVersion": "apps/v1",
            "metadata": {"name": w.name, "namespace": w.namespace, "resourceVersion": version,
                         "uid": Uuid::new_v4().to_string(), "generation": 1, "labels": {"app": w.name}},
            "spec": spec,
        });
        let pods = (0..w.replicas).map(|_| Pod { generation: 1, secret: value.clone(), ready: true }).collect();
        state.workloads.insert(
            (w.kind, w.namespace.clone(), w.name.clone()),
            Workload {
                kind: w.kind,
                object,
                generation: 1,
                observed_generation: 1,
                pods,
                replicas: w.replicas,
                secret_name: w.secret_name,
                key: w.key,
                client_id: w.client_id,
                last_step: Instant::now(),
                stalled: false,
                restarts: 0,
            },
        );
    }

    /// Stops (or resumes) the workload's rollouts: while stalled, no pod is replaced.
    pub fn stall(&self, kind: WorkloadKind, namespace: &str, name: &str, stalled: bool) {
        let mut state = self.state();
        state.progress();
        if let Some(w) = state.workloads.get_mut(&(kind, namespace.to_owned(), name.to_owned())) {
            w.stalled = stalled;
            w.last_step = Instant::now();
        }
    }

    /// How many times the pod template was changed (rollout restarts).
    pub fn restarts(&self, kind: WorkloadKind, namespace: &str, name: &str) -> usize {
        self.state().workloads.get(&(kind, namespace.to_owned(), name.to_owned())).map_or(0, |w| w.restarts)
    }

    /// A workload as its operator would look at it (the control API's
    /// `GET /_sim/kubernetes/workload`): its restarts, and per pod its template generation, whether
    /// it is ready and whether the secret it holds signs in. Never the secret. `None` if there is
    /// no such workload.
    pub(crate) fn workload_view(&self, namespace: &str, name: &str) -> Option<Value> {
        let (kind, client_id, restarts, pods) = {
            let mut state = self.state();
            state.progress();
            let w = state
                .workloads
                .values()
                .find(|w| w.object["metadata"]["namespace"] == namespace && w.object["metadata"]["name"] == name)?;
            let pods: Vec<(i64, bool, Option<String>)> =
                w.pods.iter().map(|p| (p.generation, p.ready, p.secret.clone())).collect();
            (w.kind, w.client_id, w.restarts, pods)
        };
        let pods: Vec<Value> = pods
            .into_iter()
            .map(|(generation, ready, secret)| {
                let signs_in =
                    secret.as_deref().is_some_and(|s| crate::token::check_secret(&self.shared, client_id, s).is_ok());
                json!({"generation": generation, "ready": ready, "signs_in": signs_in})
            })
            .collect();
        Some(json!({"kind": kind.kind(), "namespace": namespace, "name": name, "restarts": restarts, "pods": pods}))
    }

    /// The demo's cluster (`entra-sim --kubernetes-demo`): the application "Orders API" with a
    /// secret, the Secret `orders/orders-api-entra` holding it, and a three-replica Deployment
    /// `orders-api` reading it through `envFrom`, as `examples/kubernetes/orders-api.yaml` has it.
    /// The rotator's bearer token may do everything. Returns what the demo needs, as JSON,
    /// `kubeconfig` being the text of a kubeconfig for `sim`.
    pub fn orders_demo(&self, sim: &crate::Sim) -> Value {
        let tenant = crate::TenantHandle { shared: self.shared.clone() };
        let app = tenant.add_app(crate::NewApp::named("Orders API").with_service_principal());
        let end = self.shared.clock.now() + time::Duration::days(150);
        let password = tenant.add_password_to(app.object_id, end).ok();
        let (namespace, secret_name, key, workload) =
            ("orders", "orders-api-entra", "AZURE_CLIENT_SECRET", "orders-api");
        let token = format!("demo-{}", Uuid::new_v4());
        self.add_identity(&token, "system:serviceaccount:entra-rotator:entra-rotator", None);
        let client_id = app.app_id.to_string();
        let current = password.as_ref().map(|p| p.secret_text.clone()).unwrap_or_default();
        self.put_secret(namespace, secret_name, &[(key, current.as_str()), ("AZURE_CLIENT_ID", client_id.as_str())]);
        self.add_workload(NewWorkload {
            kind: WorkloadKind::Deployment,
            namespace: namespace.into(),
            name: workload.into(),
            replicas: 3,
            secret_name: secret_name.into(),
            key: key.into(),
            uses: SecretUse::EnvFrom,
            client_id: app.app_id,
        });
        json!({
            "kubeconfig": sim.kubeconfig("sim-cluster", Some(&token)),
            "context": "sim-cluster",
            "namespace": namespace,
            "secret_name": secret_name,
            "key": key,
            "workload": workload,
            "health_url": sim.target_url(&format!("consumers/{namespace}/{workload}/health")).as_str(),
            "app_client_id": client_id,
            "app_object_id": app.object_id.to_string(),
            "key_id": password.map(|p| p.key_id.to_string()).unwrap_or_default(),
        })
    }

    /// The secrets the workload's pods hold now.
    pub fn pod_secrets(&self, kind: WorkloadKind, namespace: &str, name: &str) -> Vec<Option<String>> {
        let mut state = self.state();
        state.progress();
        state
            .workloads
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .map(|w| w.pods.iter().map(|p| p.secret.clone()).collect())
            .unwrap_or_default()
    }

    /// How many `SelfSubjectAccessReview`s were answered.
    pub fn access_reviews(&self) -> usize {
        self.state().reviews
    }
}

fn to_rules(allowed: &[(&str, &str)]) -> HashSet<(String, String)> {
    allowed.iter().map(|(v, r)| ((*v).to_owned(), (*r).to_owned())).collect()
}

fn container(w: &NewWorkload) -> Value {
    let mut c = json!({"name": "app", "image": "registry.example/app:1.0",
                       "env": [{"name": "AZURE_CLIENT_ID", "value": w.client_id.to_string()}]});
    match w.uses {
        SecretUse::EnvFrom => c["envFrom"] = json!([{"secretRef": {"name": w.secret_name}}]),
        SecretUse::EnvKeyRef => {
            if let Some(env) = c["env"].as_array_mut() {
                env.push(json!({"name": "AZURE_CLIENT_SECRET",
                                "valueFrom": {"secretKeyRef": {"name": w.secret_name, "key": w.key}}}));
            }
        }
        SecretUse::Volume => {
            c["volumeMounts"] = json!([{"name": "entra", "mountPath": "/var/run/entra", "readOnly": true}])
        }
        SecretUse::NotReferenced => {}
    }
    c
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/namespaces/{namespace}/secrets", post(create_secret))
        .route("/api/v1/namespaces/{namespace}/secrets/{name}", get(get_secret).put(replace_secret).patch(patch_secret))
        .route("/apis/apps/v1/namespaces/{namespace}/{resource}/{name}", get(get_workload).patch(patch_workload))
        .route("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", post(access_review))
        .route("/consumers/{namespace}/{name}/health", get(consumer_health))
}

/// A `Status` object, the API server's answer to every failure.
pub(crate) fn status_response(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": message, "reason": reason, "code": code});
    if let Some(details) = details {
        body["details"] = details;
    }
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A fault from the fault queue, in the API server's shape.
pub(crate) fn fault_status(code: u16) -> Response {
    let reason = match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        504 => "Timeout",
        _ => "InternalError",
    };
    status_response(code, reason, &format!("the server answered {code} (injected)"), None)
}

fn not_found(resource: &str, name: &str) -> Response {
    status_response(
        404,
        "NotFound",
        &format!("{resource} \"{name}\" not found"),
        Some(json!({"name": name, "kind": resource})),
    )
}

/// The identity of the request, checked for `verb` on `resource` in `namespace`.
fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<Identity, Response> {
    let identity = authenticate(shared, headers)?;
    if allowed(&identity, verb, resource) {
        return Ok(identity);
    }
    let object = if name.is_empty() { resource.to_owned() } else { format!("{resource} \"{name}\"") };
    Err(status_response(
        403,
        "Forbidden",
        &format!(
            "{object} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" in the namespace \"{namespace}\"",
            identity.user
        ),
        Some(json!({"name": name, "group": group, "kind": resource})),
    ))
}

fn allowed(identity: &Identity, verb: &str, resource: &str) -> bool {
    identity.allowed.as_ref().is_none_or(|rules| rules.contains(&(verb.to_owned(), resource.to_owned())))
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Identity, Response> {
    let unauthorized = || status_response(401, "Unauthorized", "Unauthorized", None);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    if let Some(identity) = lock(&shared.kubernetes).tokens.get(token) {
        return Ok(identity.clone());
    }
    if token.starts_with(crate::eks::TOKEN_PREFIX) {
        let mut state = lock(&shared.kubernetes);
        let verified = match &state.eks_cluster {
            None => Err("this cluster is not an EKS cluster".to_owned()),
            Some(cluster) => crate::eks::verify(token, cluster, &state.aws_principals, crate::clock::wall_clock_now())
                .and_then(|arn| state.aws_users.get(&arn).cloned().ok_or(format!("no access entry for {arn}"))),
        };
        return verified.map_err(|why| {
            state.last_refusal = Some(why);
            unauthorized()
        });
    }
    // Only a token for the AKS server application: a Graph token is not for this audience.
    let client_id = lock(&shared.tokens)
        .get(token)
        .filter(|t| t.expires > Instant::now() && t.audience == crate::server::Audience::AksServer)
        .map(|t| t.client_id);
    client_id.and_then(|id| lock(&shared.kubernetes).entra.get(&id).cloned()).ok_or_else(unauthorized)
}

fn json_body(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body)
        .map_err(|e| status_response(400, "BadRequest", &format!("the request body is not JSON: {e}"), None))
}

fn ok_json(status: StatusCode, value: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

async fn get_secret(
    State(shared): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, "get", "", "secrets", &ns, &name) {
        return r;
    }
    match lock(&shared.kubernetes).secrets.get(&(ns, name.clone())) {
        Some(secret) => ok_json(StatusCode::OK, secret),
        None => not_found("secrets", &name),
    }
}

async fn create_secret(
    State(shared): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut secret = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let name = secret["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    if let Err(r) = authorize(&shared, &headers, "create", "", "secrets", &ns, "") {
        return r;
    }
    let mut state = lock(&shared.kubernetes);
    let key = (ns.clone(), name.clone());
    if state.secrets.contains_key(&key) {
        return status_response(
            409,
            "AlreadyExists",
            &format!("secrets \"{name}\" already exists"),
            Some(json!({"name": name, "kind": "secrets"})),
        );
    }
    let version = state.next_version();
    secret["metadata"]["namespace"] = json!(ns);
    secret["metadata"]["resourceVersion"] = json!(version);
    secret["metadata"]["uid"] = json!(Uuid::new_v4().to_string());
    if secret.get("type").is_none() {
        secret["type"] = json!("Opaque");
    }
    state.secrets.insert(key.clone(), secret.clone());
    *state.secret_writes.entry(key).or_default() += 1;
    ok_json(StatusCode::CREATED, &secret)
}

async fn replace_secret(
    State(shared): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut secret = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = authorize(&shared, &headers, "update", "", "secrets", &ns, &name) {
        return r;
    }
    let mut state = lock(&shared.kubernetes);
    let key = (ns.clone(), name.clone());
    if state.pending_conflicts > 0 && state.secrets.contains_key(&key) {
        // Another writer got there first.
        state.pending_conflicts -= 1;
        let version = state.next_version();
        if let Some(current) = state.secrets.get_mut(&key) {
            current["metadata"]["resourceVersion"] = json!(version);
            current["metadata"]["annotations"]["other-writer"] = json!(version);
        }
    }
    let Some(current) = state.secrets.get(&key) else {
        return not_found("secrets", &name);
    };
    let conflict = || {
        status_response(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on secrets \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some(json!({"name": name, "kind": "secrets"})),
        )
    };
    if let Some(rv) = secret["metadata"]["resourceVersion"].as_str()
        && Some(rv) != current["metadata"]["resourceVersion"].as_str()
    {
        return conflict();
    }
    if secret.get("type").is_some() && secret["type"] != current["type"] {
        return status_response(
            422,
            "Invalid",
            &format!(
                "Secret \"{name}\" is invalid: type: Invalid value: \"{}\": field is immutable",
                secret["type"].as_str().unwrap_or_default()
            ),
            Some(json!({"name": name, "kind": "Secret"})),
        );
    }
    secret["type"] = current["type"].clone();
    secret["metadata"]["uid"] = current["metadata"]["uid"].clone();
    let version = state.next_version();
    secret["metadata"]["resourceVersion"] = json!(version);
    state.secrets.insert(key.clone(), secret.clone());
    *state.secret_writes.entry(key).or_default() += 1;
    ok_json(StatusCode::OK, &secret)
}

async fn patch_secret(
    State(shared): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let patch = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = authorize(&shared, &headers, "patch", "", "secrets", &ns, &name) {
        return r;
    }
    let mut state = lock(&shared.kubernetes);
    let key = (ns, name.clone());
    let version = state.next_version();
    let Some(current) = state.secrets.get_mut(&key) else {
        return not_found("secrets", &name);
    };
    merge(current, &patch);
    current["metadata"]["resourceVersion"] = json!(version);
    let answer = current.clone();
    *state.secret_writes.entry(key).or_default() += 1;
    ok_json(StatusCode::OK, &answer)
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (k, v) in fields {
                if v.is_null() {
                    if let Some(t) = target.as_object_mut() {
                        t.remove(k);
                    }
                } else {
                    merge(&mut target[k], v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn workload_json(w: &Workload) -> Value {
    let mut object = w.object.clone();
    object["metadata"]["generation"] = json!(w.generation);
    let updated = w.pods.iter().filter(|p| p.generation == w.generation).count() as u32;
    let ready = w.pods.iter().filter(|p| p.ready).count() as u32;
    let replicas = w.replicas;
    let old = replicas - updated.min(replicas);
    object["status"] = match w.kind {
        WorkloadKind::Deployment => {
            let done = updated == replicas;
            json!({
                "observedGeneration": w.observed_generation,
                "replicas": replicas + u32::from(!done && w.observed_generation == w.generation && old > 0 && updated > 0),
                "updatedReplicas": updated,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": replicas - ready.min(replicas),
                "conditions": [
                    {"type": "Available", "status": if ready >= replicas { "True" } else { "False" },
                     "reason": if ready >= replicas { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                     "message": if ready >= replicas { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." }},
                    {"type": "Progressing", "status": "True",
                     "reason": if done { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                     "message": format!("ReplicaSet \"{}-{}\" {}", w.object["metadata"]["name"].as_str().unwrap_or_default(), w.generation,
                                        if done { "has successfully progressed." } else { "is progressing." })}
                ]
            })
        }
        WorkloadKind::StatefulSet => {
            let name = w.object["metadata"]["name"].as_str().unwrap_or_default();
            let update_revision = format!("{name}-{}", w.generation);
            let current_revision =
                if updated == replicas { update_revision.clone() } else { format!("{name}-{}", w.generation - 1) };
            json!({
                "observedGeneration": w.observed_generation,
                "replicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "currentReplicas": if updated == replicas { replicas } else { old },
                "updatedReplicas": updated,
                "currentRevision": current_revision,
                "updateRevision": update_revision,
            })
        }
        WorkloadKind::DaemonSet => json!({
            "observedGeneration": w.observed_generation,
            "currentNumberScheduled": replicas,
            "desiredNumberScheduled": replicas,
            "numberMisscheduled": 0,
            "numberReady": ready,
            "numberAvailable": ready,
            "updatedNumberScheduled": updated,
        }),
    };
    object
}

async fn get_workload(
    State(shared): State<AppState>,
    Path((ns, resource, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(kind) = WorkloadKind::of_resource(&resource) else {
        return not_found(&resource, &name);
    };
    if let Err(r) = authorize(&shared, &headers, "get", "apps", &resource, &ns, &name) {
        return r;
    }
    let mut state = lock(&shared.kubernetes);
    state.progress();
    match state.workloads.get(&(kind, ns, name.clone())) {
        Some(w) => ok_json(StatusCode::OK, &workload_json(w)),
        None => not_found(&format!("{resource}.apps"), &name),
    }
}

async fn patch_workload(
    State(shared): State<AppState>,
    Path((ns, resource, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(kind) = WorkloadKind::of_resource(&resource) else {
        return not_found(&resource, &name);
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !matches!(content_type, "application/merge-patch+json" | "application/strategic-merge-patch+json") {
        return status_response(
            415,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
            ),
            None,
        );
    }
    let patch = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = authorize(&shared, &headers, "patch", "apps", &resource, &ns, &name) {
        return r;
    }
    let mut state = lock(&shared.kubernetes);
    state.progress();
    let version = state.next_version();
    let Some(w) = state.workloads.get_mut(&(kind, ns, name.clone())) else {
        return not_found(&format!("{resource}.apps"), &name);
    };
    let before = w.object["spec"]["template"].clone();
    merge(&mut w.object, &patch);
    w.object["metadata"]["resourceVersion"] = json!(version);
    if w.object["spec"]["template"] != before {
        w.generation += 1;
        w.restarts += 1;
        w.last_step = Instant::now();
    }
    ok_json(StatusCode::OK, &workload_json(w))
}

async fn access_review(State(shared): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let identity = match authenticate(&shared, &headers) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut review = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let attributes = &review["spec"]["resourceAttributes"];
    let verb = attributes["verb"].as_str().unwrap_or_default();
    let resource = attributes["resource"].as_str().unwrap_or_default();
    let yes = allowed(&identity, verb, resource);
    lock(&shared.kubernetes).reviews += 1;
    review["status"] = if yes {
        json!({"allowed": true, "reason": format!("RBAC: allowed for User \"{}\"", identity.user)})
    } else {
        json!({"allowed": false})
    };
    ok_json(StatusCode::CREATED, &review)
}

async fn consumer_health(State(shared): State<AppState>, Path((ns, name)): Path<(String, String)>) -> Response {
    let held: Option<(Uuid, Vec<Option<String>>)> = {
        let mut state = lock(&shared.kubernetes);
        state.progress();
        state
            .workloads
            .iter()
            .find(|((_, n, w), _)| *n == ns && *w == name)
            .map(|(_, w)| (w.client_id, w.pods.iter().map(|p| p.secret.clone()).collect()))
    };
    let Some((client_id, secrets)) = held else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"status": "UNKNOWN"}))).into_response();
    };
    let failing = secrets
        .iter()
        .filter(|s| s.as_deref().is_none_or(|s| crate::token::check_secret(&shared, client_id, s).is_err()))
        .count();
    if failing == 0 {
        (StatusCode::OK, axum::Json(json!({"status": "UP", "pods": secrets.len()}))).into_response()
    } else {
        let body = json!({"status": "DOWN", "reason": format!("{failing} of {} pods cannot sign in", secrets.len())});
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    }
}
