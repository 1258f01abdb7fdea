#!/usr/bin/env bash
# Discovery against the simulated tenant, as a new user would try it: start entra-sim with a
# generated tenant, point a configuration at it, `rotator sync`, `rotator status`, change 1% of
# the tenant... then a delta sync reads only that. Leaves no process behind.
set -euo pipefail
cd "$(dirname "$0")/.."
APPS="${APPS:-2000}"
cargo build --quiet --locked -p rotator -p entra-sim
# Where cargo put them: target/ unless CARGO_TARGET_DIR (or a cargo config) says otherwise.
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug"
work="$(mktemp -d)"
trap 'kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true' EXIT

echo "== starting entra-sim with $APPS applications"
export ENTRA_SIM_CLIENT_SECRET="try-discovery-$(date +%s)"
"$bin"/entra-sim --apps "$APPS" --control > "$work/sim.json" 2> "$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 100); do [ -s "$work/sim.json" ] && break; sleep 0.1; done
read -r tenant client authority graph ca control < <(python3 -c '
import json,sys; j=json.loads(open(sys.argv[1]).readline())
print(j["tenant_id"], j["client_id"], j["authority_host"], j["graph_base_url"], j["ca_cert"], j.get("control_url",""))' "$work/sim.json")
cat > "$work/rotator.toml" <<TOML
data_dir = "data"
# The simulated tenant is on loopback, which the outbound address policy refuses unless named.
[outbound]
allow = ["127.0.0.1"]
[integrations.sim]
tenant_id = "$tenant"
client_id = "$client"
auth = "client_secret"
authority_host = "$authority"
graph_base_url = "$graph"
ca_certificate = "$ca"
TOML
export ROTATOR_SIM_CLIENT_SECRET="$ENTRA_SIM_CLIENT_SECRET"
rotator() { "$bin"/rotator --config "$work/rotator.toml" "$@"; }

echo "== rotator sync (full: the first time there is no delta link)"
rotator sync
echo "== rotator status"
rotator status
if [ -n "$control" ]; then
  echo "== 1% of the tenant changes; rotator sync again reads only that (delta)"
  python3 - "$control" "$ca" "$((APPS / 100))" <<'PY'
import json, ssl, sys, urllib.request
url, ca, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
req = urllib.request.Request(url + "/touch?count=%d" % n, method="POST")
urllib.request.urlopen(req, context=ctx).read()
PY
  rotator sync
fi
echo "== the data is in $work/data (rotator.db); the simulator stops now"
