#!/usr/bin/env bash
# make demo: the product notes' manual runbook ("Rotate the API client secret": new client secret,
# new Key Vault version, restart the App Service, /health, delete the old secret) done by
# entra-rotator end to end, on the embedded default (one process, one local database file),
# against the simulated tenant, its Key Vault, Resource Manager and web app. Every stage says what
# it shows and which runbook step it replaces. Then the same rotation for a Kubernetes Deployment
# that reads the secret through envFrom: the Secret, a rollout restart, the pods on the new secret.
# It ends by itself and leaves no process behind.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -t 1 ]; then bold=$'\033[1m'; dim=$'\033[2m'; off=$'\033[0m'; else bold=""; dim=""; off=""; fi
stage() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
note() { printf '%s%s%s\n' "$dim" "$*" "$off"; }

stage "Building rotator and entra-sim (the simulated tenant)"
cargo build --quiet --locked -p rotator -p entra-sim
# Where cargo put them: target/ unless CARGO_TARGET_DIR (or a cargo config) says otherwise.
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug"
work="$(mktemp -d "${TMPDIR:-/tmp}/entra-rotator-demo.XXXXXX")"
sim_pid=""; serve_pid=""
# Stops a process: SIGTERM (rotator serve finishes the batches in hand), then SIGKILL after 10 s.
stop() {
  local pid="$1"
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
finish() { stop "$serve_pid"; stop "$sim_pid"; }
trap finish EXIT

rand() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
export ENTRA_SIM_CLIENT_SECRET="$(rand)"          # the integration's own secret, shared with the simulator
export ROTATOR_DEMO_CLIENT_SECRET="$ENTRA_SIM_CLIENT_SECRET"
export ENTRA_SIM_WEBHOOK_KEY="whsec_$(python3 -c 'import base64,secrets; print(base64.b64encode(secrets.token_bytes(24)).decode())')"
export DEMO_WEBHOOK_KEY="$ENTRA_SIM_WEBHOOK_KEY"  # signs the webhook step; the receiver verifies it
api_token="$(rand)"
api_hash="$(printf %s "$api_token" | python3 -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"

stage "Starting entra-sim: Entra, Microsoft Graph, Key Vault, Resource Manager and the web app, over HTTPS"
"$bin"/entra-sim --apps 200 --seed 7 --replication-delay 3s --control --azure-demo --kubernetes-demo > "$work/sim.json" 2> "$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 100); do [ -s "$work/sim.json" ] && break; sleep 0.1; done
read -r tenant client authority graph ca targets control < <(python3 -c '
import json,sys; j=json.loads(open(sys.argv[1]).readline())
print(j["tenant_id"], j["client_id"], j["authority_host"], j["graph_base_url"], j["ca_cert"], j["targets_base"], j["control_url"])' "$work/sim.json")
read -r vault arm subscription group site setting health app_client app_object key_id < <(python3 -c '
import json,sys; a=json.loads(open(sys.argv[1]).readline())["azure"]
print(a["key_vault_url"], a["resource_manager_url"], a["subscription_id"], a["resource_group"], a["site"],
      a["setting_key"], a["health_url"], a["app_client_id"], a["app_object_id"], a["key_id"])' "$work/sim.json")
credential="demo/app/$app_object/$key_id"
# The Kubernetes scenario: a kubeconfig for the simulated cluster, beside the configuration (a
# relative kubeconfig is resolved against the configuration's folder), and the Deployment's names.
mkdir -p "$work/kube"
read -r k8s_ns k8s_secret k8s_key k8s_workload k8s_health orders_client orders_object orders_key < <(python3 -c '
import json,sys; k=json.loads(open(sys.argv[1]).readline())["kubernetes"]
open(sys.argv[2], "w").write(k["kubeconfig"])
print(k["namespace"], k["secret_name"], k["key"], k["workload"], k["health_url"], k["app_client_id"], k["app_object_id"], k["key_id"])' \
  "$work/sim.json" "$work/kube/sim-cluster.yaml")
chmod 600 "$work/kube/sim-cluster.yaml"
orders_credential="demo/app/$orders_object/$orders_key"
note "tenant $tenant with 200 generated applications; new secrets take 3 s to replicate"
note "the runbook's app registration \"App Store for Intune - API\" (client id $app_client): its secret is the"
note "Key Vault secret $setting in $vault, which the App Service $site reads through an"
note "@Microsoft.KeyVault(SecretUri=...) app setting, resolved only when the app starts"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$work/rotator.toml" <<TOML
# The demo configuration: a grace period of seconds instead of 30 days.
data_dir = "data"
listen = "127.0.0.1:$port"
ca_certificate = "$ca"

# The simulated tenant and its targets are on loopback, which the outbound address policy refuses
# unless named here.
[outbound]
allow = ["127.0.0.1"]

[schedules]
sync = "1h"
expiry_scan = "1h"
grace_cleanup = "3s"

[integrations.demo]
display_name = "Simulated tenant"
tenant_id = "$tenant"
client_id = "$client"
auth = "client_secret"
authority_host = "$authority"
graph_base_url = "$graph"
resource_manager_url = "$arm"
ca_certificate = "$ca"

# The runbook's application: its secret lives in Key Vault and an App Service reads it.
[policies.portal]
auto_rotate = false
grace_period = "12s"
applications = ["$app_client"]

[[policies.portal.steps]]
type = "azure_key_vault"
order = 10
on_failure = "abort"
config = { vault_url = "$vault", secret_name = "$setting", tags = { runbook = "rotate-api-client-secret" } }

[[policies.portal.steps]]
type = "azure_app_service_restart"
order = 20
on_failure = "abort"
config = { subscription_id = "$subscription", resource_group = "$group", app_name = "$site", app_setting = "$setting", timeout = "1m" }

[[policies.portal.steps]]
type = "http_health_check"
order = 30
on_failure = "abort"
config = { url = "$health", timeout = "30s", interval = "1s" }

[[policies.portal.steps]]
type = "webhook"
order = 40
on_failure = "continue"
config = { url = "${targets}hooks/rotations", signing_secret_env = "DEMO_WEBHOOK_KEY" }

# The orders API runs on Kubernetes: its pods read the secret from a Secret through envFrom, and
# take a new value only when they restart.
[policies.orders]
auto_rotate = false
grace_period = "12s"
applications = ["$orders_client"]

[[policies.orders.steps]]
type = "kubernetes_secret"
order = 10
on_failure = "abort"
config = { kubeconfig = "kube/sim-cluster.yaml", context = "sim-cluster", namespace = "$k8s_ns", secret_name = "$k8s_secret", key = "$k8s_key", restart = [{ kind = "Deployment", name = "$k8s_workload" }], rollout_timeout = "1m" }

[[policies.orders.steps]]
type = "http_health_check"
order = 20
on_failure = "abort"
config = { url = "$k8s_health", timeout = "30s", interval = "1s" }

# Everything else: watched and alerted on; rotated only on request, delivered by hand.
[policies.default]
auto_rotate = false
delivery = "manual"

[[http.tokens]]
name = "demo-operator"
sha256 = "$api_hash"
roles = ["entra:read", "entra:rotate", "entra:write"]
TOML
rotator() { "$bin"/rotator --config "$work/rotator.toml" "$@"; }
api() { # METHOD PATH [JSON]
  python3 - "$1" "http://127.0.0.1:$port$2" "${3:-}" "$api_token" <<'PY'
import json, sys, urllib.request, urllib.error
method, url, body, token = sys.argv[1:5]
req = urllib.request.Request(url, method=method, data=body.encode() if body else None,
                             headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
PY
}

stage "Starting rotator serve: every handler, the timers and the HTTP API in one process"
# Started directly (not through the function above), so that $! is the rotator process itself.
"$bin"/rotator --config "$work/rotator.toml" serve > "$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz')" 2>/dev/null && break
  sleep 0.2
done
note "listening on http://127.0.0.1:$port; log in $work/serve.log"

stage "Sync: the timer fires at start; applications and credentials are read from Graph"
for _ in $(seq 1 100); do
  total="$(rotator --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["dashboard"]["counts"]["total"])')"
  [ "$total" -gt 0 ] && break
  sleep 0.3
done
rotator status

stage "Dry run first: preflight asks Entra, the vault and the App Service, and changes nothing"
note "the runbook's 'Plan ahead': can the identity add a password, write the vault, restart the app?"
rotator rotate "$credential" --dry-run | tee "$work/dry-run.txt"
site_view() { # what the simulated App Service runs on now
  python3 - "$control" "$ca" "$site" <<'PY'
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = json.load(urllib.request.urlopen(sys.argv[1].rstrip("/") + "/azure/site?name=" + sys.argv[3], context=ctx))
print("  App Service %s: %s, started %s time(s), restarted %s, Key Vault reference %s at version %s" % (
    sys.argv[3], s["state"], s["starts"], s["restarts"], s["reference_status"], (s.get("resolved_version") or "-")[:8]))
PY
}
health_now() {
  python3 - "$health" "$ca" <<'PY'
import ssl, sys, urllib.request, urllib.error
ctx = ssl.create_default_context(cafile=sys.argv[2])
try:
    r = urllib.request.urlopen(sys.argv[1], context=ctx); print("  GET /health:", r.status, r.read().decode()[:120])
except urllib.error.HTTPError as e:
    print("  GET /health:", e.code, e.read().decode()[:120])
PY
}
# The portal's current secret was created when the simulator started: it signs in once it has
# replicated (3 s), as a new Entra secret does.
for _ in $(seq 1 50); do health_now | grep -q "GET /health: 200" && break; sleep 0.2; done
note "before: the portal runs on its current secret, resolved from Key Vault when it started"
site_view
health_now

stage "Runbook 'Issue a new client secret': a rotation over HTTP, POST /v1/credentials/{id}/rotate"
encoded="$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$credential")"
answer="$(api POST "/v1/credentials/$encoded/rotate" '{"reason":"make demo"}')"
echo "$answer"
execution="$(echo "$answer" | python3 -c 'import json,sys; l=sys.stdin.read(); print(json.loads(l.split(" ",1)[1])["execution_id"])')"
note "202 Accepted: the execution was recorded before Graph was called; the old secret stays in place"

stage "Runbook 'Update the Key Vault secret', 'Restart the App Service', 'Verify': the rollout, step by step"
note "verify signs in with the new secret (it replicates in 3 s); a new Key Vault version; refresh of the"
note "app's Key Vault references and a restart; /health must answer 200; a signed webhook says it is done"
for _ in $(seq 1 150); do
  status="$(api GET "/v1/executions/$execution" | python3 -c 'import json,sys; l=sys.stdin.read(); print(json.loads(l.split(" ",1)[1])["status"])')"
  case "$status" in completed|needs_attention|failed|cancelled) break ;; esac
  sleep 0.4
done
api GET "/v1/executions/$execution" | python3 -c '
import json,sys
l=sys.stdin.read(); e=json.loads(l.split(" ",1)[1])
print("status:", e["status"], "|", e.get("summary") or e.get("error"))
for s in e.get("steps", []):
    print("  %-60s %-10s attempts %s" % (s["name"][:60], s["outcome"], s["attempts"]))'
note "the vault's versions of $setting (values are never shown; the rotator's tags say who wrote what):"
python3 - "$control" "$ca" "$setting" <<'PY'
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
url = sys.argv[1].rstrip("/") + "/azure/secret?vault=portal-kv&name=" + sys.argv[3]
for v in json.load(urllib.request.urlopen(url, context=ctx))["versions"]:
    t = v.get("tags") or {}
    who = "entra-rotator, execution %s, key id %s" % (t.get("entra-rotator-execution", "?")[:8], t.get("entra-rotator-key-id", "?")[:8]) \
        if t.get("entra-rotator-managed") else "the deploy template"
    print("  version %s, created %s, by %s" % (v["version"][:8], v["created"], who))
PY
note "the App Service now runs on the new Key Vault version, and its /health signs in with it:"
site_view
health_now
note "the webhook receiver got (and verified) the event; it never holds the secret:"
python3 - "$control" "$ca" <<'PY'
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
t = json.load(urllib.request.urlopen(sys.argv[1].rstrip("/") + "/targets", context=ctx))
for name, hook in (t.get("hooks") or {}).items():
    for d in hook.get("deliveries", []):
        print("  webhook %s: %s, signature verified: %s" % (name, (d.get("body") or {}).get("type"), d.get("verified")))
PY

stage "The execution history of the credential"
rotator history "$credential"

stage "Runbook 'Delete the old secret': both stay valid for a 12 s grace period, then grace-cleanup removes it"
cleanup_of() { # CREDENTIAL [LABEL]: waits for grace cleanup of its latest rotation, then prints it
  for _ in $(seq 1 120); do
    done_="$(rotator --json history "$1" | python3 -c '
import json,sys; h=json.load(sys.stdin); e=h["executions"][0]["execution"]
print("yes" if e["cleanup"]["state"]=="done" else "no")')"
    [ "$done_" = yes ] && break
    sleep 0.5
  done
  rotator --json history "$1" | python3 -c '
import json,sys; h=json.load(sys.stdin); e=h["executions"][0]["execution"]
print(sys.argv[1] + "cleanup:", e["cleanup"])' "${2:-}"
}
cleanup_of "$credential"
rotator status
note "the app is still healthy, now on the new secret alone:"
health_now

stage "Kubernetes: the orders API's Deployment reads the secret from a Secret through envFrom"
workload_view() { # the simulated Deployment: restarts, and whether each pod's secret signs in
  python3 - "$control" "$ca" "$k8s_ns" "$k8s_workload" <<'PY'
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
url = sys.argv[1].rstrip("/") + "/kubernetes/workload?namespace=%s&name=%s" % (sys.argv[3], sys.argv[4])
w = json.load(urllib.request.urlopen(url, context=ctx))
pods = ", ".join("gen %s %s" % (p["generation"], "signs in" if p["signs_in"] else "CANNOT sign in") for p in w["pods"])
print("  %s %s/%s: restarted %s time(s); pods: %s" % (w["kind"], w["namespace"], w["name"], w["restarts"], pods))
PY
}
note "updating a Secret restarts nothing: pods keep the value they started with, so the step also"
note "restarts the Deployment (as kubectl rollout restart does) and waits for the rollout"
workload_view
note "dry run: the cluster, what the rotator may do there (SelfSubjectAccessReview), the Secret, the workload:"
rotator rotate "$orders_credential" --dry-run
rotator rotate "$orders_credential" --reason "make demo (Kubernetes)" --wait
note "the Secret holds the new value (its other keys kept); every pod restarted onto it and signs in with it:"
workload_view
cleanup_of "$orders_credential" "after the 12 s grace period, "
note "the old secret is gone from Entra; the pods, on the new one, still sign in:"
workload_view

stage "Done"
note "The data file is $work/data/rotator.db (store and queues), the sealing key $work/data/keys.json."
note "Stopping rotator serve and the simulator."
