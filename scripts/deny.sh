#!/usr/bin/env bash
# Licences and duplicate versions of every dependency (deny.toml), run by `make lint`.
# cargo-deny is installed once with a pinned version and reused after. Only the `licenses` and
# `bans` checks run, with --offline: the advisory database is never fetched. `cargo metadata`
# (which cargo-deny reads) wants the sources of every platform's crates, so `cargo fetch` brings
# the ones a Linux build has not already downloaded; once they are there it needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
VERSION=0.20.2

if [[ "$("$CARGO" deny --version 2>/dev/null)" != "cargo-deny $VERSION" ]]; then
    echo "deny: installing cargo-deny $VERSION (once)"
    "$CARGO" install --locked cargo-deny --version "$VERSION"
fi

"$CARGO" fetch --locked --quiet
echo "deny: cargo deny check licenses bans"
"$CARGO" deny --offline check licenses bans
