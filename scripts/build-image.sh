#!/usr/bin/env bash
# Builds the operator's OCI image offline: the release binary (the built-in plugins are embedded in
# it), the shared libraries it loads, CA certificates, and a non-root user; no shell, no base
# image, no registry, no container engine.
#
#   scripts/build-image.sh [--import] [--save FILE]
#
# IMG names the image (default backup-operator:latest; imported also as backup-operator:<crate version>). The image is cached by the binary's digest
# under ~/.cache/backup-operator/images/; --import loads it into the local test cluster's
# containerd, --save copies the OCI archive to FILE (for `ctr images import` or `docker load`
# elsewhere). Prints the archive's path.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/cluster/lib.sh
. tests/cluster/oci.sh

img="${IMG:-backup-operator:latest}"
import=false
save=""
while [ $# -gt 0 ]; do
  case "$1" in
    --import) import=true ;;
    --save) save="$2"; shift ;;
    *) die "unknown argument $1 (--import, --save FILE)" ;;
  esac
  shift
done
# The name as containerd and the kubelet spell it.
if [[ "$img" != */* ]]; then
  name="docker.io/library/$img"
else
  case "${img%%/*}" in
    *.*|*:*|localhost) name="$img" ;;
    *) name="docker.io/$img" ;;
  esac
fi
[[ "${name##*/}" == *:* ]] || name="$name:latest"

started=$(date +%s)
cargo build --locked --release --bin backup-operator >&2
target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/release/backup-operator"
key="$(sha256sum "$bin" | cut -c1-12)-$(printf '%s' "$name" | sha256sum | cut -c1-8)"
out="$CACHE_DIR/images/backup-operator-$key.oci.tar"
if [ ! -f "$out" ]; then
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  install -D -m 0755 "$bin" "$root/usr/local/bin/backup-operator"
  strip "$root/usr/local/bin/backup-operator"
  # The dynamic loader and every library the binary loads, at the same paths.
  ldd "$bin" | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}' | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  mkdir -p "$root/lib64" "$root/etc/ssl/certs" "$root/tmp"
  cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
  chmod 1777 "$root/tmp"
  # In-cluster TLS uses the service account's CA; these are for anything else (an API server
  # behind a public certificate, through a kubeconfig).
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  OCI_ENTRYPOINT='["/usr/local/bin/backup-operator"]' OCI_USER=65534:65534 \
    oci_image "$name" "$root" "$out" run
fi
# Every operator build is a new tarball: keep this one and the 2 newest others, not one per commit.
{ ls -t "$CACHE_DIR"/images/backup-operator-*.oci.tar 2>/dev/null | grep -vxF "$out" | tail -n +3 | xargs -r rm -f; } || true
size_mib=$(( $(stat -c %s "$out") / 1048576 ))
log "image $name: $out ($size_mib MiB, $(( $(date +%s) - started )) s including the release build)"
if $import; then
  [ -S "$CLUSTER_DIR/containerd.sock" ] || die "the test cluster is not up (make cluster-up)"
  ctr --address "$CLUSTER_DIR/containerd.sock" -n k8s.io images import --no-unpack=false "$out" >/dev/null
  # The same image under the crate's version too (backup-operator:0.2.0 beside :latest).
  version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
  ctr --address "$CLUSTER_DIR/containerd.sock" -n k8s.io images tag --force "$name" "${name%:*}:$version" >/dev/null
  log "imported $name (and ${name%:*}:$version) into the test cluster"
fi
if [ -n "$save" ]; then
  cp "$out" "$save"
  log "saved to $save"
fi
echo "$out"
