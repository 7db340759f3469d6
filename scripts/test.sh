#!/usr/bin/env bash
# Runs every test. Brings the local cluster up first when none is configured; integration tests
# then fail (rather than skip) if it is not reachable. The test binaries are built once and then run
# at the same time, each in its own namespaces: they mostly wait on the cluster and the clock.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
. tests/cluster/lib.sh
scripts/install-deps.sh
tests/cluster/cluster-up.sh
# The operator's image, for the tests that deploy it as a pod (tests/deploy.rs).
scripts/build-image.sh --import > /dev/null
export BACKUP_OPERATOR_REQUIRE_CLUSTER=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export BACKUP_OPERATOR_MEASUREMENTS="$work/measurements"
# The built-in planners' own unit tests, natively (their components are tested through the host).
cargo test --locked --manifest-path plugins/Cargo.toml --target "$(rustc -vV | sed -n 's/^host: //p')" 2>&1 | tee "$work/plugins.log"
# The plugin SDK and its template, natively too (a planner's unit tests need no WebAssembly).
cargo test --locked --manifest-path sdk/Cargo.toml --target "$(rustc -vV | sed -n 's/^host: //p')" 2>&1 | tee -a "$work/plugins.log"
# Lints as code ([lints] in each Cargo.toml): clippy with warnings as errors, for the operator,
# the plugins and the SDK. A finding fails the run at the end; the tests still run.
host="$(rustc -vV | sed -n 's/^host: //p')"
lints=ok
cargo clippy --locked --all-targets -- -D warnings || lints=failed
cargo clippy --locked --manifest-path plugins/Cargo.toml --target "$host" --all-targets -- -D warnings || lints=failed
cargo clippy --locked --manifest-path sdk/Cargo.toml --target "$host" --all-targets -- -D warnings || lints=failed
cargo test --locked --no-run --message-format=json-render-diagnostics "$@" > "$work/build.json"
python3 - "$work/build.json" > "$work/binaries" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["target"]["name"], m["executable"])
PY
# Each build of the tests leaves about 8 GB of executables in the cached target directory: keep
# only this build's. (A full disk makes the kubelet delete images, the pause image among them.)
python3 - "$work/build.json" <<'PY'
import json, os, re, sys
keep, dirs = set(), set()
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact":
        for path in [m.get("executable")] + m.get("filenames", []):
            if path:
                keep.add(os.path.realpath(path))
        # Only the directories of test, bench and bin executables: a build script's own executable
        # (build/<crate>-<hash>/build_script_build-<hash>) is reported under another name, and
        # removing it makes the next build rerun every build script and rebuild the whole tree.
        if m.get("executable"):
            dirs.add(os.path.dirname(os.path.realpath(m["executable"])))
for d in dirs:
    for f in os.listdir(d):
        p = os.path.join(d, f)
        if re.fullmatch(r"[A-Za-z0-9_]+-[0-9a-f]{16}", f) and os.path.isfile(p) and os.access(p, os.X_OK) and p not in keep:
            os.remove(p)
PY
pids=()
while read -r name exe; do
  # Integration tests mostly wait on the cluster, so each runs more tests than there are cores.
  "$exe" --test-threads=6 > "$work/test-$name.log" 2>&1 &
  pids+=("$!:$name")
done < "$work/binaries"
failed=0
for entry in "${pids[@]}"; do
  wait "${entry%%:*}" || { failed=1; echo "test binary ${entry#*:} failed" >&2; }
done
for log in "$work"/test-*.log; do
  echo "=== ${log##*/test-}"
  cat "$log"
done
if [ -s "$work/measurements" ]; then
  echo "=== measured by the tests"
  cat "$work/measurements"
fi
# One closing line for all the test binaries above.
cat "$work/plugins.log" "$work"/test-*.log | awk '/^test result:/ {p += $4; f += $6} END {printf "%d passed, %d failed\n", p, f}'
echo "clippy (operator, plugins, SDK): $lints"
[ "$lints" = ok ] || failed=1
exit "$failed"
