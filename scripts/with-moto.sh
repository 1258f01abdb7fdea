#!/usr/bin/env bash
# Runs a command with the moto server (the local AWS emulator, from PyPI) listening on loopback, its
# address in ROTATOR_TEST_AWS_ENDPOINT, and stops the server afterwards. Installs moto into a
# virtual environment under target/ the first time. `make test` runs the test suite this way.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ROTATOR_PY_VENV:-target/py}"
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "installing the moto server into $venv (once)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==5.2.1"
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p target
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > target/moto.log 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null; wait "$moto_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null && break
  kill -0 "$moto_pid" 2>/dev/null || { echo "the moto server did not start; see target/moto.log" >&2; exit 1; }
  sleep 0.2
done
export ROTATOR_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
echo "moto server on $ROTATOR_TEST_AWS_ENDPOINT" >&2
"$@"
