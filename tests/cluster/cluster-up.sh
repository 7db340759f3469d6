#!/usr/bin/env bash
# Brings up a single-node Kubernetes on loopback: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd + runc and a kubelet. Ends with one Ready node, a default StorageClass
# and the images busybox:latest and pause imported. A failed start tears down what it started.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

[ "$(id -u)" -eq 0 ] || die "the test cluster runs a kubelet and containerd: run as root"
if [ -f "$CLUSTER_DIR/env" ] && "$here/cluster-status.sh" >/dev/null 2>&1; then
  log "already up: export KUBECONFIG=$KUBECONFIG_PATH"
  exit 0
fi
# Leftovers of a crashed run would hold ports and mounts: clear them first.
"$here/cluster-down.sh" >/dev/null 2>&1 || true

started_at=$(date +%s)
"$here/../../scripts/install-deps.sh"
"$here/build-binaries.sh" all
mapfile -t image_tars < <("$here/build-images.sh")

on_failure() {
  local rc=$?
  log "start failed (exit $rc); last lines of each log in $LOG_DIR:"
  for f in "$LOG_DIR"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
  "$here/cluster-down.sh" >&2 || true
  exit "$rc"
}
trap on_failure ERR

mkdir -p "$LOG_DIR" "$PID_DIR" "$CLUSTER_DIR/pki"
cat /proc/sys/net/ipv4/ip_forward > "$CLUSTER_DIR/ip_forward.orig"

# --- ports: free ones, chosen now ------------------------------------------------------------
used_ports=" "
free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 20000 ))
    case "$used_ports" in *" $p "*) continue ;; esac
    if [ -z "$(ss -Htan "( sport = :$p )")" ]; then used_ports+="$p "; echo "$p"; return; fi
  done
}
ETCD_PORT=$(free_port); used_ports+="$ETCD_PORT "
ETCD_PEER_PORT=$(free_port); used_ports+="$ETCD_PEER_PORT "
APISERVER_PORT=$(free_port); used_ports+="$APISERVER_PORT "
KUBELET_PORT=$(free_port); used_ports+="$KUBELET_PORT "
S3_PORT=$(free_port); used_ports+="$S3_PORT "
NODE_NAME="backup-node"
POD_CIDR="10.88.0.0/24"
POD_GATEWAY="10.88.0.1"
SERVICE_CIDR="10.0.0.0/24"
# The `kubernetes` Service's ClusterIP: the first address of SERVICE_CIDR.
API_SERVICE_IP="10.0.0.1"
BRIDGE="bkop0"
cat > "$CLUSTER_DIR/env" <<EOF_ENV
ETCD_PORT=$ETCD_PORT
APISERVER_PORT=$APISERVER_PORT
KUBELET_PORT=$KUBELET_PORT
NODE_NAME=$NODE_NAME
BRIDGE=$BRIDGE
KUBECONFIG=$KUBECONFIG_PATH
EOF_ENV

# --- certificates ------------------------------------------------------------------------------
pki="$CLUSTER_DIR/pki"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 30 \
  -subj "/CN=backup-operator-test-ca" 2>/dev/null
# cert NAME SUBJECT [SAN]: a key pair signed by the CA.
cert() {
  local name="$1" subj="$2" san="${3:-}"
  openssl req -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "$subj" 2>/dev/null
  local ext="$pki/$name.ext"
  if [ -n "$san" ]; then
    printf 'extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$san" > "$ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' > "$ext"
  fi
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/$name.crt" -days 30 -extfile "$ext" 2>/dev/null
}
cert apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
cert admin "/O=system:masters/CN=admin"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "IP:127.0.0.1,DNS:localhost,DNS:$NODE_NAME"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

kubeconfig() {
  local file="$1" user="$2"
  cat > "$file" <<EOF_KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $pki/$user.crt
    client-key: $pki/$user.key
contexts:
- name: local
  context: {cluster: local, user: $user}
current-context: local
EOF_KC
}
kubeconfig "$KUBECONFIG_PATH" admin
ln -sf "$KUBE_BIN/kubectl" "$CLUSTER_DIR/kubectl"
kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" controller-manager
kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" scheduler
kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" kubelet

# start NAME CMD...: runs a component in its own session, logging to $LOG_DIR/NAME.log.
start() {
  local name="$1"; shift
  setsid "$@" > "$LOG_DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$PID_DIR/$name.pid"
}
# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds; fails with the component logs.
wait_for() {
  local what="$1" limit="$2"; shift 2
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    for pidfile in "$PID_DIR"/*.pid; do
      kill -0 "$(cat "$pidfile")" 2>/dev/null || { log "$(basename "$pidfile" .pid) exited"; return 1; }
    done
    [ "$(date +%s)" -lt "$deadline" ] || { log "timed out after ${limit}s waiting for $what"; return 1; }
    sleep 0.5
  done
  log "$what: ok"
}
KUBECTL=("$KUBE_BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH")

# --- control plane -----------------------------------------------------------------------------
start etcd "$ETCD_BIN/etcd" --name default --data-dir "$CLUSTER_DIR/etcd" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn

start kube-apiserver "$KUBE_BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
  --endpoint-reconciler-type none \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --kubelet-preferred-address-types InternalIP \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --profiling=false --v 1
wait_for "kube-apiserver /readyz" 120 "${KUBECTL[@]}" get --raw /readyz

start kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
  --kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
  --use-service-account-credentials \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --enable-hostpath-provisioner \
  --profiling=false --v 1
start kube-scheduler "$KUBE_BIN/kube-scheduler" \
  --kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --profiling=false --v 1

# --- node: containerd, CNI, kubelet --------------------------------------------------------------
mkdir -p "$CLUSTER_DIR/cni/net.d" "$CLUSTER_DIR/containerd"
cat > "$CLUSTER_DIR/cni/net.d/10-bridge.conflist" <<EOF_CNI
{
  "cniVersion": "0.4.0",
  "name": "backup-test",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]],
              "routes": [{"dst": "$POD_CIDR"}, {"dst": "$SERVICE_CIDR"}], "dataDir": "$CLUSTER_DIR/cni/ipam"}},
    {"type": "loopback"}
  ]
}
EOF_CNI
cat > "$CLUSTER_DIR/containerd/config.toml" <<EOF_CTRD
version = 2
root = "$CLUSTER_DIR/containerd/root"
state = "$CLUSTER_DIR/containerd/state"
[grpc]
  address = "$CLUSTER_DIR/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  netns_mounts_under = "$CLUSTER_DIR/netns"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CLUSTER_DIR/cni/net.d"
EOF_CTRD
start containerd containerd --config "$CLUSTER_DIR/containerd/config.toml"
CTR=(ctr --address "$CLUSTER_DIR/containerd.sock" -n k8s.io)
wait_for "containerd" 60 "${CTR[@]}" version
for tar in "${image_tars[@]}"; do "${CTR[@]}" images import --no-unpack=false "$tar" >/dev/null; done
log "images: $("${CTR[@]}" images ls -q | grep -v '^sha256:' | tr '\n' ' ')"

mkdir -p "$CLUSTER_DIR/kubelet" "$CLUSTER_DIR/pod-logs"
# Pods get a resolver on their own loopback, so that no DNS query leaves the machine.
echo "nameserver 127.0.0.1" > "$CLUSTER_DIR/resolv.conf"
cat > "$CLUSTER_DIR/kubelet-config.yaml" <<EOF_KUBELET
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzPort: 0
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CLUSTER_DIR/containerd.sock
podLogsDir: $CLUSTER_DIR/pod-logs
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: $CLUSTER_DIR/resolv.conf
registerNode: true
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
EOF_KUBELET
# Pods reach the API server the in-cluster way, at the `kubernetes` Service (10.0.0.1:443, a
# name in its certificate), with no kube-proxy: the bridge is created here with its gateway
# address, and one DNAT rule sends that address to the API server on loopback (route_localnet lets
# the bridge carry loopback-bound traffic). Nothing else is forwarded; cluster-down removes both.
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
  ip addr add "$POD_GATEWAY/${POD_CIDR#*/}" dev "$BRIDGE"
fi
ip link set "$BRIDGE" up
sysctl -qw "net.ipv4.conf.$BRIDGE.route_localnet=1"
iptables -t nat -N BKOP-SERVICES 2>/dev/null || iptables -t nat -F BKOP-SERVICES
iptables -t nat -A BKOP-SERVICES -d "$API_SERVICE_IP/32" -p tcp --dport 443 -j DNAT --to-destination "127.0.0.1:$APISERVER_PORT"
iptables -t nat -C PREROUTING -i "$BRIDGE" -j BKOP-SERVICES 2>/dev/null || iptables -t nat -A PREROUTING -i "$BRIDGE" -j BKOP-SERVICES
# --- S3-compatible object storage ----------------------------------------------------------------
# Versity Gateway over a directory, on the bridge's gateway address: pods reach it directly, and so
# does this host. One bucket, `backups`, and random root credentials, both in $CLUSTER_DIR/env for
# the tests (which start their own instance from VERSITYGW when they need to stop one).
S3_ENDPOINT="http://$POD_GATEWAY:$S3_PORT"
S3_ACCESS_KEY="test$(openssl rand -hex 8)"
S3_SECRET_KEY="$(openssl rand -hex 20)"
mkdir -p "$CLUSTER_DIR/s3"
ROOT_ACCESS_KEY="$S3_ACCESS_KEY" ROOT_SECRET_KEY="$S3_SECRET_KEY" \
  start s3 "$VERSITYGW_BIN/versitygw" --port "$POD_GATEWAY:$S3_PORT" posix "$CLUSTER_DIR/s3"
s3_bucket() { curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT "$S3_ENDPOINT/$1"; }
wait_for "S3 server (versitygw) at $S3_ENDPOINT" 60 s3_bucket backups
cat >> "$CLUSTER_DIR/env" <<EOF_S3
S3_ENDPOINT=$S3_ENDPOINT
S3_BUCKET=backups
S3_ACCESS_KEY=$S3_ACCESS_KEY
S3_SECRET_KEY=$S3_SECRET_KEY
VERSITYGW=$VERSITYGW_BIN/versitygw
HELM=$HELM_BIN/helm
PROMTOOL=$PROMTOOL_BIN/promtool
EOF_S3
start kubelet "$KUBE_BIN/kubelet" --config "$CLUSTER_DIR/kubelet-config.yaml" \
  --kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" --root-dir "$CLUSTER_DIR/kubelet" \
  --hostname-override "$NODE_NAME" --node-ip 127.0.0.1 --v 1
wait_for "node $NODE_NAME registered" 120 "${KUBECTL[@]}" get node "$NODE_NAME"
# The kubelet refuses a loopback node IP ("nodeIP can't be loopback address") and then reports no
# address at all, and any other address would send the API server's kubelet traffic (logs, exec)
# off loopback. Its status updates leave addresses alone after that refusal, so set the one the
# API server should use, where the kubelet listens.
"${KUBECTL[@]}" patch node "$NODE_NAME" --subresource=status --type=merge \
  -p '{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}]}}' >/dev/null
wait_for "node $NODE_NAME Ready" 120 "${KUBECTL[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s

# --- cluster defaults ----------------------------------------------------------------------------
"${KUBECTL[@]}" apply -f - >/dev/null <<'EOF_SC'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF_SC
# Pods can only be created once the namespace's default ServiceAccount exists.
wait_for "default service account" 60 "${KUBECTL[@]}" -n default get serviceaccount default

trap - ERR
log "up in $(( $(date +%s) - started_at ))s; export KUBECONFIG=$KUBECONFIG_PATH"
