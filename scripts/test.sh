#!/usr/bin/env bash
# Runs every test. Brings the local cluster up first when none is configured; integration tests
# then fail (rather than skip) if it is not reachable.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
. tests/cluster/lib.sh
scripts/install-deps.sh
tests/cluster/cluster-up.sh
export BACKUP_OPERATOR_REQUIRE_CLUSTER=1
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# The built-in planners' own unit tests, natively (their components are tested through the host).
cargo test --locked --manifest-path plugins/Cargo.toml --target "$(rustc -vV | sed -n 's/^host: //p')" 2>&1 | tee -a "$log"
# Integration tests mostly wait on the cluster, so run more of them than there are cores.
cargo test --locked "$@" -- --test-threads=6 2>&1 | tee -a "$log"
# One closing line for all the test binaries above.
awk '/^test result:/ {p += $4; f += $6} END {printf "%d passed, %d failed\n", p, f}' "$log"
