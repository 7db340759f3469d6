# Shared settings for the test cluster scripts. Sourced, never run.
# Versions are the cache keys: change one and only that artefact is rebuilt.
KUBE_VERSION="${KUBE_VERSION:-v1.35.4}"
KUBE_STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
HELM_VERSION="${HELM_VERSION:-v4.3.2}"
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"

# Everything slow and reusable lives outside the repository.
CACHE_DIR="${BACKUP_OPERATOR_CACHE:-$HOME/.cache/backup-operator}"
BIN_DIR="$CACHE_DIR/bin"
KUBE_BIN="$BIN_DIR/kubernetes-$KUBE_VERSION"
ETCD_BIN="$BIN_DIR/etcd-$ETCD_VERSION"
VERSITYGW_BIN="$BIN_DIR/versitygw-$VERSITYGW_VERSION"
HELM_BIN="$BIN_DIR/helm-$HELM_VERSION"
PROMTOOL_BIN="$BIN_DIR/promtool-$PROMETHEUS_VERSION"
export GOMODCACHE="${GOMODCACHE_OVERRIDE:-$CACHE_DIR/go/mod}"
export GOCACHE="${GOCACHE_OVERRIDE:-$CACHE_DIR/go/build}"
export GOFLAGS="-buildvcs=false"
export GOTOOLCHAIN=local

# Runtime state of the cluster: one directory, removed by cluster-down.
CLUSTER_DIR="${BACKUP_OPERATOR_CLUSTER_DIR:-/var/tmp/backup-operator-cluster}"
LOG_DIR="$CLUSTER_DIR/logs"
PID_DIR="$CLUSTER_DIR/pids"
KUBECONFIG_PATH="$CLUSTER_DIR/kubeconfig"

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
