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

# One binary from a Go module at a version, into BIN (cached: built only when missing).
#   build_go_tool NAME VERSION MODULE PACKAGE BIN
build_go_tool() {
  local name="$1" version="$2" module="$3" package="$4" bin="$5"
  if [ -x "$bin/$name" ]; then log "$name $version: cached in $bin"; return; fi
  log "building $name $version from $module"
  local work; work="$(mktemp -d "$CACHE_DIR/$name-build.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  printf 'module backup-operator.test/%s-build\n\ngo %s\n\nrequire %s %s\n' \
    "$name" "$(go env GOVERSION | sed 's/^go//')" "$module" "$version" > "$work/go.mod"
  mkdir -p "$work/out"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "-s -w" -o "$work/out/$name" "$package")
  mkdir -p "$BIN_DIR"
  rm -rf "$bin" && mv "$work/out" "$bin"
  log "$name $version built into $bin"
}

build_etcd() { build_go_tool etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3 "$ETCD_BIN"; }
# Versity Gateway: an S3 API over a POSIX directory, the off-site destination of the tests.
build_versitygw() { build_go_tool versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_BIN"; }
# Helm, for the chart's tests (tests/helm.rs).
build_helm() { build_go_tool helm "$HELM_VERSION" helm.sh/helm/v4 helm.sh/helm/v4/cmd/helm "$HELM_BIN"; }
# promtool (Prometheus's rule tester), for the alert rules' tests (tests/alerts.rs).
build_promtool() { build_go_tool promtool "$PROMETHEUS_VERSION" github.com/prometheus/prometheus github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_BIN"; }

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
