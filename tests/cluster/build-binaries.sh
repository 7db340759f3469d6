#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl, etcd and the
# S3-compatible server (Versity Gateway, Apache-2.0) from the published Go modules into the cache,
# keyed by version. Does nothing when they are already there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

kube_tools=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

have_all() {
  local t
  for t in "${kube_tools[@]}"; do [ -x "$KUBE_BIN/$t" ] || return 1; done
  return 0
}

build_kubernetes() {
  if have_all; then log "kubernetes $KUBE_VERSION: cached in $KUBE_BIN"; return; fi
  log "building kubernetes $KUBE_VERSION from k8s.io/kubernetes (cold: tens of minutes on 2 cores)"
  local work; work="$(mktemp -d "$CACHE_DIR/kube-build.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  # k8s.io/kubernetes replaces its staging modules with local paths, which a dependent module cannot
  # use: map each of them to the published module of the matching version instead.
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBE_VERSION"
  {
    echo "module backup-operator.test/kube-build"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//')"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    grep -E '^[[:space:]]*k8s\.io/[^ ]+ => \./staging/' "$gomod" \
      | awk -v v="$KUBE_STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } > "$work/go.mod"
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  local targets=()
  for t in "${kube_tools[@]}"; do targets+=("k8s.io/kubernetes/cmd/$t"); done
  mkdir -p "$work/out"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "$ldflags" -o "$work/out/" "${targets[@]}")
  mkdir -p "$BIN_DIR"
  rm -rf "$KUBE_BIN.tmp" && mv "$work/out" "$KUBE_BIN.tmp" && rm -rf "$KUBE_BIN" && mv "$KUBE_BIN.tmp" "$KUBE_BIN"
  log "kubernetes $KUBE_VERSION built into $KUBE_BIN"
}

build_etcd() {
  if [ -x "$ETCD_BIN/etcd" ]; then log "etcd $ETCD_VERSION: cached in $ETCD_BIN"; return; fi
  log "building etcd $ETCD_VERSION from go.etcd.io/etcd/server/v3"
  local work; work="$(mktemp -d "$CACHE_DIR/etcd-build.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  printf 'module backup-operator.test/etcd-build\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$(go env GOVERSION | sed 's/^go//')" "$ETCD_VERSION" > "$work/go.mod"
  mkdir -p "$work/out"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "-s -w" -o "$work/out/etcd" go.etcd.io/etcd/server/v3)
  mkdir -p "$BIN_DIR"
  rm -rf "$ETCD_BIN" && mv "$work/out" "$ETCD_BIN"
  log "etcd $ETCD_VERSION built into $ETCD_BIN"
}

# Versity Gateway: an S3 API over a POSIX directory, the off-site destination of the tests.
build_versitygw() {
  if [ -x "$VERSITYGW_BIN/versitygw" ]; then log "versitygw $VERSITYGW_VERSION: cached in $VERSITYGW_BIN"; return; fi
  log "building versitygw $VERSITYGW_VERSION from github.com/versity/versitygw"
  local work; work="$(mktemp -d "$CACHE_DIR/versitygw-build.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  printf 'module backup-operator.test/versitygw-build\n\ngo %s\n\nrequire github.com/versity/versitygw %s\n' \
    "$(go env GOVERSION | sed 's/^go//')" "$VERSITYGW_VERSION" > "$work/go.mod"
  mkdir -p "$work/out"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "-s -w" -o "$work/out/versitygw" github.com/versity/versitygw/cmd/versitygw)
  mkdir -p "$BIN_DIR"
  rm -rf "$VERSITYGW_BIN" && mv "$work/out" "$VERSITYGW_BIN"
  log "versitygw $VERSITYGW_VERSION built into $VERSITYGW_BIN"
}

# Helm, for the chart's tests (tests/helm.rs).
build_helm() {
  if [ -x "$HELM_BIN/helm" ]; then log "helm $HELM_VERSION: cached in $HELM_BIN"; return; fi
  log "building helm $HELM_VERSION from helm.sh/helm/v4"
  local work; work="$(mktemp -d "$CACHE_DIR/helm-build.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  printf 'module backup-operator.test/helm-build\n\ngo %s\n\nrequire helm.sh/helm/v4 %s\n' \
    "$(go env GOVERSION | sed 's/^go//')" "$HELM_VERSION" > "$work/go.mod"
  mkdir -p "$work/out"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "-s -w" -o "$work/out/helm" helm.sh/helm/v4/cmd/helm)
  mkdir -p "$BIN_DIR"
  rm -rf "$HELM_BIN" && mv "$work/out" "$HELM_BIN"
  log "helm $HELM_VERSION built into $HELM_BIN"
}

# promtool (Prometheus's rule tester), for the alert rules' tests (tests/alerts.rs).
build_promtool() {
  if [ -x "$PROMTOOL_BIN/promtool" ]; then log "promtool $PROMETHEUS_VERSION: cached in $PROMTOOL_BIN"; return; fi
  log "building promtool $PROMETHEUS_VERSION from github.com/prometheus/prometheus"
  local work; work="$(mktemp -d "$CACHE_DIR/promtool-build.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  printf 'module backup-operator.test/promtool-build\n\ngo %s\n\nrequire github.com/prometheus/prometheus %s\n' \
    "$(go env GOVERSION | sed 's/^go//')" "$PROMETHEUS_VERSION" > "$work/go.mod"
  mkdir -p "$work/out"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "-s -w" -o "$work/out/promtool" github.com/prometheus/prometheus/cmd/promtool)
  mkdir -p "$BIN_DIR"
  rm -rf "$PROMTOOL_BIN" && mv "$work/out" "$PROMTOOL_BIN"
  log "promtool $PROMETHEUS_VERSION built into $PROMTOOL_BIN"
}

mkdir -p "$CACHE_DIR"
command -v go >/dev/null || die "go is required to build the cluster binaries"
case "${1:-all}" in
  etcd) build_etcd ;;
  kubernetes) build_kubernetes ;;
  versitygw) build_versitygw ;;
  helm) build_helm ;;
  promtool) build_promtool ;;
  all) build_etcd; build_kubernetes; build_versitygw; build_helm; build_promtool ;;
  *) die "usage: $0 [all|etcd|kubernetes|versitygw|helm|promtool]" ;;
esac
