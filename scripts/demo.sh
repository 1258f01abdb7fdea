#!/usr/bin/env bash
# make demo: one client secret rotated end to end, on the embedded default (one process, one local
# database file), against the simulated tenant. Every stage says what it shows. It ends by itself
# and leaves no process behind.
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

stage "Starting entra-sim: Entra token endpoint, Microsoft Graph, and the apps' endpoints, over HTTPS"
"$bin"/entra-sim --apps 200 --seed 7 --replication-delay 3s --control > "$work/sim.json" 2> "$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 100); do [ -s "$work/sim.json" ] && break; sleep 0.1; done
read -r tenant client authority graph ca targets control < <(python3 -c '
import json,sys; j=json.loads(open(sys.argv[1]).readline())
print(j["tenant_id"], j["client_id"], j["authority_host"], j["graph_base_url"], j["ca_cert"], j["targets_base"], j["control_url"])' "$work/sim.json")
note "tenant $tenant with 200 generated applications; new secrets take 3 s to replicate"

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
ca_certificate = "$ca"

[policies.default]
auto_rotate = false
grace_period = "12s"
# None of the steps below carries the secret to its consumers (Key Vault, Kubernetes and the host
# agent are not in this build yet), so the policy says so: an operator reads the new secret once
# and confirms before the old one may go. Without this line preflight refuses the rotation.
delivery = "manual"

[[policies.default.steps]]
type = "spring_actuator_refresh"
order = 10
on_failure = "abort"
config = { url = "${targets}apps/payroll/actuator/refresh" }

[[policies.default.steps]]
type = "http_health_check"
order = 20
on_failure = "abort"
config = { url = "${targets}apps/payroll/health", timeout = "30s", interval = "1s" }

[[policies.default.steps]]
type = "webhook"
order = 30
on_failure = "continue"
config = { url = "${targets}hooks/rotations", signing_secret_env = "DEMO_WEBHOOK_KEY" }

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

stage "Dry run first: preflight checks authentication, room for a password, step order and targets"
note "the most urgent application secrets, first one that passes preflight:"
credential=""
for c in $(rotator --json status | python3 -c '
import json,sys
for u in json.load(sys.stdin)["dashboard"]["most_urgent"]:
    if u["kind"] == "password" and "/app/" in u["credential"]:
        print(u["credential"])'); do
  if rotator rotate "$c" --dry-run > "$work/dry-run.txt"; then credential="$c"; break; fi
done
[ -n "$credential" ] || { echo "no credential passed preflight"; exit 1; }
cat "$work/dry-run.txt"

stage "A manual rotation over HTTP: POST /v1/credentials/{id}/rotate"
encoded="$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$credential")"
answer="$(api POST "/v1/credentials/$encoded/rotate" '{"reason":"make demo"}')"
echo "$answer"
execution="$(echo "$answer" | python3 -c 'import json,sys; l=sys.stdin.read(); print(json.loads(l.split(" ",1)[1])["execution_id"])')"
note "202 Accepted: the execution was recorded before Graph was called"

stage "The rollout: verify the new secret (it replicates in 3 s), refresh Spring, health check, signed webhook"
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
note "the webhook receiver got (and verified) the event; it never holds the secret:"
python3 - "$control" "$ca" <<'PY'
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
t = json.load(urllib.request.urlopen(sys.argv[1].rstrip("/") + "/targets", context=ctx))
for name, hook in (t.get("hooks") or {}).items():
    for d in hook.get("deliveries", []):
        print("  webhook %s: %s, signature verified: %s" % (name, (d.get("body") or {}).get("type"), d.get("verified")))
for name, app in (t.get("apps") or {}).items():
    print("  app %s: %s Spring refresh(es), %s health request(s)" % (name, app.get("spring_refreshes"), app.get("health_requests")))
PY

stage "The execution history of the credential"
rotator history "$credential"

stage "Manual delivery: the operator reads the new secret once, puts it in place, and confirms"
api POST "/v1/executions/$execution/reveal" | python3 -c '
import json,sys
l=sys.stdin.read(); code, body = l.split(" ",1); j=json.loads(body)
s=j["secret"]
print(code, "the new secret:", s[:4] + "…", "(%d characters; shown here masked, the response holds it whole, once)" % len(s))'
note "a second reading is refused, and the reading is in the audit trail:"
api POST "/v1/executions/$execution/reveal" | cut -c1-160
api POST "/v1/executions/$execution/confirm" | python3 -c '
import json,sys
l=sys.stdin.read(); code, body = l.split(" ",1); e=json.loads(body)
print(code, "confirmed; cleanup:", e["cleanup"])'

stage "Grace period: both secrets stay valid for 12 s, then grace-cleanup removes the old one"
for _ in $(seq 1 120); do
  done_="$(rotator --json history "$credential" | python3 -c '
import json,sys; h=json.load(sys.stdin); e=h["executions"][0]["execution"]
print("yes" if e["cleanup"]["state"]=="done" else "no")')"
  [ "$done_" = yes ] && break
  sleep 0.5
done
rotator --json history "$credential" | python3 -c '
import json,sys; h=json.load(sys.stdin); e=h["executions"][0]["execution"]
print("cleanup:", e["cleanup"])'
rotator status

stage "Done"
note "The data file is $work/data/rotator.db (store and queues), the sealing key $work/data/keys.json."
note "Stopping rotator serve and the simulator."
