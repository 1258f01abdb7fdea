#!/usr/bin/env bash
# make bench, second part: builds in release the baseline (bench/minimal-lambda) and each Lambda
# function crate present under functions/ (a missing one is skipped, named), then measures each one's
# package size, start-up time and memory up to its first poll of a local fake Lambda Runtime API,
# against the baseline. Arguments go to lambda-startup (e.g. --runs 3, --json, --env KEY=VALUE).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}

functions=(sync expiry-scan rotate run-step grace-cleanup http-api)
packages=()
present=()
for function in "${functions[@]}"; do
    manifest="functions/$function/Cargo.toml"
    if [[ ! -f $manifest ]]; then
        echo "lambda-startup: no $manifest yet, $function skipped" >&2
        continue
    fi
    # The first `name =` of a manifest is its package's.
    package=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)
    packages+=(-p "$package")
    present+=("$function")
done

# Three builds, so no crate's features leak into another's binaries (cargo unifies the features of the
# packages built together): the baseline alone, the functions together (as build-lambdas does), and
# lambda-startup by `cargo run`.
"$CARGO" build --release --locked -p bench-minimal-lambda
if ((${#packages[@]})); then
    "$CARGO" build --release --locked "${packages[@]}"
fi
exec "$CARGO" run --quiet --release --locked -p rotator-bench --bin lambda-startup -- "$@" minimal-lambda "${present[@]}"
