#!/usr/bin/env bash
# Builds the six Lambda functions for infra/template.yaml (`make build-lambdas`):
#   target/lambda/<bin>/bootstrap      the function (cargo lambda, release, provided.al2023)
#   target/lambda/<bin>/rotator.toml   the deployer's configuration ($LAMBDA_CONFIG), and the step
#                                      files it names, at the same relative paths
#
#   LAMBDA_CONFIG=path/to/rotator.toml   the configuration to ship (default: examples/rotator.toml,
#                                        an example only, with a warning)
#   LAMBDA_ARCH=arm64|x86_64             the architecture (default: arm64 when this machine can
#                                        build it, else x86_64, said loudly); deploy with the same
#                                        LambdaArchitecture parameter
#
# cargo-lambda and zig (its cross linker) come from PyPI into target/py-lambda, pinned, once.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/py-lambda
PINS=(cargo-lambda==1.9.2 ziglang==0.17.1)
BINS=(sync expiry-scan rotate run-step grace-cleanup http-api)
CARGO=${CARGO:-cargo}

say() { printf 'build-lambdas: %s\n' "$*"; }
warn() { printf 'build-lambdas: WARNING: %s\n' "$*" >&2; }
die() { printf 'build-lambdas: %s\n' "$*" >&2; exit 1; }

# --- the configuration, checked before a long build ----------------------------------------------
config=${LAMBDA_CONFIG:-examples/rotator.toml}
[[ -f "$config" ]] || die "LAMBDA_CONFIG=$config: no such file"
if [[ -z "${LAMBDA_CONFIG:-}" ]]; then
    warn "LAMBDA_CONFIG is not set: packaging examples/rotator.toml, an EXAMPLE (the simulated tenant's ids)."
    warn "Set LAMBDA_CONFIG=/path/to/your/rotator.toml for a real deployment."
fi
if grep -Eq '^[[:space:]]*auth[[:space:]]*=[[:space:]]*"client_secret"' "$config"; then
    warn "$config signs in with a stored client secret (auth = \"client_secret\"): deprecated on AWS."
    warn "Prefer auth = \"aws_federation\" (README, \"Deploying to AWS\", 1b): no Entra secret in the stack."
    if ! grep -Eq '^[[:space:]]*client_secret_env[[:space:]]*=[[:space:]]*"ENTRA_CLIENT_SECRET"' "$config"; then
        warn "It has no client_secret_env = \"ENTRA_CLIENT_SECRET\": the stack passes the client secret"
        warn "as ENTRA_CLIENT_SECRET only, so that integration will not find it."
    fi
fi

# The step files the configuration names (steps_file = "..."), relative to the configuration's folder.
mapfile -t steps < <(python3 - "$config" <<'PY'
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: read the keys by pattern
    tomllib = None
path = sys.argv[1]
if tomllib:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    for policy in (doc.get("policies") or {}).values():
        if isinstance(policy, dict) and isinstance(policy.get("steps_file"), str):
            print(policy["steps_file"])
else:
    import re
    for m in re.finditer(r'^\s*steps_file\s*=\s*"([^"]+)"', open(path, encoding="utf-8").read(), re.M):
        print(m.group(1))
PY
)
config_dir=$(dirname "$config")
for step in "${steps[@]}"; do
    [[ "$step" == /* ]] && { warn "steps_file $step is absolute: it will not exist in the Lambda package; make it relative"; continue; }
    [[ -f "$config_dir/$step" ]] || die "steps_file $step (named by $config) not found at $config_dir/$step"
done

# The kubeconfig files kubernetes_secret steps name (inline or in a steps file), relative to the
# configuration's folder as the rotator resolves them. They give the clusters' servers and CAs;
# the sign-in is the function's own (AKS: the integration's Entra identity; EKS: its role).
mapfile -t kubeconfigs < <(python3 - "$config" <<'PY2'
import json, os, sys
try:
    import tomllib
except ModuleNotFoundError:
    sys.exit(0)  # Python < 3.11: the steps files are still packaged; kubeconfigs are checked by the rotator
path = sys.argv[1]
with open(path, "rb") as f:
    doc = tomllib.load(f)
found = set()
for policy in (doc.get("policies") or {}).values():
    if not isinstance(policy, dict):
        continue
    steps = policy.get("steps") or []
    if isinstance(policy.get("steps_file"), str) and not os.path.isabs(policy["steps_file"]):
        try:
            with open(os.path.join(os.path.dirname(path), policy["steps_file"]), encoding="utf-8") as f:
                steps = json.load(f)
        except (OSError, ValueError):
            steps = []
    for step in steps if isinstance(steps, list) else []:
        config = step.get("config") if isinstance(step, dict) else None
        if isinstance(config, dict) and isinstance(config.get("kubeconfig"), str):
            found.add(config["kubeconfig"])
for k in sorted(found):
    print(k)
PY2
)
for kube in "${kubeconfigs[@]}"; do
    [[ "$kube" == /* ]] && { warn "kubeconfig $kube is absolute: it will not exist in the Lambda package; make it relative to $config"; continue; }
    [[ -f "$config_dir/$kube" ]] || die "kubeconfig $kube (named by a step of $config) not found at $config_dir/$kube"
    if grep -Eq '^[[:space:]]*(token|client-key-data|client-key|password):' "$config_dir/$kube"; then
        warn "kubeconfig $kube holds a credential: it is packaged as it is; prefer \"auth\": \"aks\" or \"eks\" and a kubeconfig with only the server and its CA"
    fi
done

# --- the tools ---------------------------------------------------------------------------------------
for bin in "${BINS[@]}"; do
    [[ -f "functions/$bin/Cargo.toml" ]] || die "functions/$bin/Cargo.toml is missing: the workspace has no $bin function yet"
done
if [[ ! -x "$VENV/bin/cargo-lambda" || "$(cat "$VENV/.pins" 2>/dev/null)" != "${PINS[*]}" ]]; then
    say "installing ${PINS[*]} into $VENV (once)"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
    echo "${PINS[*]}" > "$VENV/.pins"
fi
export PATH="$PWD/$VENV/bin:$PATH"

# --- the architecture ----------------------------------------------------------------------------
has_target() { rustup target list --installed 2>/dev/null | grep -qx "$1"; }
add_target() { has_target "$1" || rustup target add "$1" >&2; }
arch=${LAMBDA_ARCH:-}
case "$arch" in
    arm64)
        add_target aarch64-unknown-linux-gnu || die "LAMBDA_ARCH=arm64, but the aarch64-unknown-linux-gnu standard library cannot be installed here (rustup target add failed)"
        ;;
    x86_64) ;;
    "")
        if add_target aarch64-unknown-linux-gnu; then
            arch=arm64
        else
            arch=x86_64
            warn "arm64 cannot be built on this machine (rustup target add aarch64-unknown-linux-gnu failed)."
            warn "Building x86_64 instead: deploy with --parameter-overrides LambdaArchitecture=x86_64."
        fi
        ;;
    *) die "LAMBDA_ARCH=$arch: use arm64 or x86_64" ;;
esac
case "$arch" in
    arm64) arch_flag=--arm64 ;;
    x86_64) arch_flag=--x86-64 ;;
esac

# --- the build -----------------------------------------------------------------------------------------
bin_flags=()
for bin in "${BINS[@]}"; do bin_flags+=(--bin "$bin"); done
say "cargo lambda build --release $arch_flag (${BINS[*]}); several minutes on 2 cores"
# The packages always land in target/lambda (the template's CodeUri), even with CARGO_TARGET_DIR set.
"$CARGO" lambda build --release --locked "$arch_flag" --lambda-dir target/lambda "${bin_flags[@]}"

# --- the configuration beside each bootstrap -----------------------------------------------------
for bin in "${BINS[@]}"; do
    dir="target/lambda/$bin"
    [[ -x "$dir/bootstrap" ]] || die "$dir/bootstrap was not built"
    find "$dir" -mindepth 1 -maxdepth 1 ! -name bootstrap -exec rm -rf {} +   # an earlier configuration's files
    cp "$config" "$dir/rotator.toml"
    for step in "${steps[@]}"; do
        [[ "$step" != /* ]] || continue
        mkdir -p "$dir/$(dirname "$step")"
        cp "$config_dir/$step" "$dir/$step"
    done
    for kube in "${kubeconfigs[@]}"; do
        [[ "$kube" != /* ]] || continue
        mkdir -p "$dir/$(dirname "$kube")"
        cp "$config_dir/$kube" "$dir/$kube"
    done
done
echo "$arch" > target/lambda/ARCHITECTURE

say "packages ($arch, configuration from $config):"
for bin in "${BINS[@]}"; do
    dir="target/lambda/$bin"
    printf '  %-28s bootstrap %6s   folder %6s\n' "$dir/" \
        "$(du -h "$dir/bootstrap" | cut -f1)" "$(du -sh "$dir" | cut -f1)"
done
if [[ "$arch" == x86_64 ]]; then
    say "deploy with: sam deploy --template-file infra/template.yaml --parameter-overrides LambdaArchitecture=x86_64 ..."
else
    say "deploy with: sam deploy --template-file infra/template.yaml --guided (see the section Deploying to AWS in README.md)"
fi
