#!/usr/bin/env bash
# Stops every process cluster-up started (by PID), the containers they ran, unmounts what they
# mounted, removes the pod bridge and the cluster's state. Safe to run when nothing is up.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

[ -d "$CLUSTER_DIR" ] || exit 0
# shellcheck disable=SC1091
[ -f "$CLUSTER_DIR/env" ] && . "$CLUSTER_DIR/env"

# stop NAME: SIGTERM, then SIGKILL after 10 s, to the process recorded in NAME.pid.
stop() {
  local pidfile="$PID_DIR/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
}

stop kubelet
stop s3
stop kube-scheduler
stop kube-controller-manager
# Containers outlive containerd in their shims: kill them through containerd while it is still up.
sock="$CLUSTER_DIR/containerd.sock"
if [ -S "$sock" ]; then
  ctr=(ctr --address "$sock" -n k8s.io)
  for task in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
    "${ctr[@]}" tasks kill -s SIGKILL "$task" >/dev/null 2>&1
  done
  for task in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
    "${ctr[@]}" tasks delete -f "$task" >/dev/null 2>&1
  done
fi
stop containerd
# Shims started for this cluster carry its containerd address on their command line.
for pid in $(pgrep -f "containerd-shim.*-address $sock" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
stop kube-apiserver
stop etcd

# Unmount, deepest first, everything mounted under the cluster directory (volumes, rootfs, netns).
for _ in 1 2 3; do
  mounts=$(awk -v d="$CLUSTER_DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
  [ -n "$mounts" ] || break
  for m in $mounts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
done
[ -n "${BRIDGE:-}" ] && ip link del "$BRIDGE" 2>/dev/null
# The API server's Service address for pods (see cluster-up).
if iptables -t nat -S BKOP-SERVICES >/dev/null 2>&1; then
  iptables -t nat -D PREROUTING -i "${BRIDGE:-bkop0}" -j BKOP-SERVICES 2>/dev/null
  iptables -t nat -F BKOP-SERVICES
  iptables -t nat -X BKOP-SERVICES
fi
# Pod veths are gone with their namespaces; restore forwarding if the bridge plugin changed it.
[ -f "$CLUSTER_DIR/ip_forward.orig" ] && cat "$CLUSTER_DIR/ip_forward.orig" > /proc/sys/net/ipv4/ip_forward
# Pod cgroups the kubelet created.
for c in /sys/fs/cgroup/*/kubepods; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
done
# Volumes of the hostPath provisioner (kube-controller-manager) live in a fixed place.
rm -rf /tmp/hostpath_pv
rm -rf "$CLUSTER_DIR"
echo "cluster down" >&2
