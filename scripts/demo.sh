#!/usr/bin/env bash
# The operator doing its job end to end on the bundled local cluster: brings the cluster up,
# installs the CRD, creates the sample StatefulSet, a backup-storage claim and a BackupPolicy that
# runs every minute, runs the operator, and shows the first backup Job and the policy's status.
# With KUBECONFIG already set to another cluster, that cluster is used instead.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/cluster/lib.sh
started=$(date +%s)
if [ -z "${KUBECONFIG:-}" ] || [ "$KUBECONFIG" = "$KUBECONFIG_PATH" ]; then
  tests/cluster/cluster-up.sh
  export KUBECONFIG="$KUBECONFIG_PATH"
fi
scripts/install-deps.sh
cargo build --locked --bin backup-operator
kubectl="$KUBE_BIN/kubectl"
command -v kubectl >/dev/null && [ ! -x "$kubectl" ] && kubectl="$(command -v kubectl)"
ns="${DEMO_NAMESPACE:-backup-demo}"
"$kubectl" apply -k config/crd
"$kubectl" wait --for=condition=Established crd/backuppolicies.backup.example.com --timeout=60s
"$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply -f -
"$kubectl" -n "$ns" apply -f config/samples/statefulset.yaml
"$kubectl" -n "$ns" apply -f config/samples/backup_v1alpha1_backuppolicy.yaml

target="${CARGO_TARGET_DIR:-target}"
log="$(mktemp /tmp/backup-operator-demo.XXXXXX.log)"
"$target/debug/backup-operator" run > "$log" 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null; wait $operator 2>/dev/null || true' EXIT
echo "operator running (pid $operator), log: $log"

echo "waiting for the first backup Job (the schedule fires at the top of the minute)..."
until [ -n "$("$kubectl" -n "$ns" get jobs -l backup-policy=db-backup -o name 2>/dev/null)" ]; do
  kill -0 "$operator" 2>/dev/null || { echo "the operator exited:"; cat "$log"; exit 1; }
  sleep 1
done
echo "first Job after $(( $(date +%s) - started ))s"
"$kubectl" -n "$ns" wait --for=condition=Complete job -l backup-policy=db-backup --timeout=120s
echo
echo "\$ kubectl -n $ns get jobs -l backup-policy=db-backup"
"$kubectl" -n "$ns" get jobs -l backup-policy=db-backup
echo
echo "\$ kubectl -n $ns get bp"
"$kubectl" -n "$ns" get bp
sleep 2
echo
echo "\$ kubectl -n $ns get bp db-backup -o jsonpath='{.status}'"
"$kubectl" -n "$ns" get bp db-backup -o jsonpath='{.status}' | python3 -m json.tool
echo
echo "demo done in $(( $(date +%s) - started ))s; the cluster stays up (make cluster-down stops it)"
