#!/usr/bin/env bash
# Exits 0 when every component cluster-up started is alive, /readyz is ok and the node is Ready.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

[ -f "$CLUSTER_DIR/env" ] || { echo "cluster: down (no $CLUSTER_DIR/env)"; exit 1; }
ok=0
for name in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet; do
  pidfile="$PID_DIR/$name.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    printf '%-24s running (pid %s)\n' "$name" "$(cat "$pidfile")"
  else
    printf '%-24s NOT RUNNING\n' "$name"; ok=1
  fi
done
kubectl=("$KUBE_BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH")
printf '%-24s %s\n' "/readyz" "$("${kubectl[@]}" get --raw /readyz 2>&1 || true)"
"${kubectl[@]}" get --raw /readyz >/dev/null 2>&1 || ok=1
"${kubectl[@]}" get nodes 2>&1
"${kubectl[@]}" wait --for=condition=Ready node --all --timeout=1s >/dev/null 2>&1 || ok=1
echo "KUBECONFIG=$KUBECONFIG_PATH"
echo "logs: $LOG_DIR"
exit $ok
