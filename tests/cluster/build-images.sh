#!/usr/bin/env bash
# Builds the OCI image tarballs the test cluster needs, from Debian's packages, into the cache:
#   busybox:latest               busybox-static with every applet linked, plus passwd/group files
#   registry.k8s.io/pause:3.10   a static pod-sandbox binary built from images/pause.c
# No registry is reachable here, so cluster-up imports these with `ctr images import`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

IMAGE_DIR="$CACHE_DIR/images"
busybox_version="$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null)" || die "busybox-static is not installed"
pause_digest="$(sha256sum "$here/images/pause.c" | cut -c1-12)"
BUSYBOX_TAR="$IMAGE_DIR/busybox-${busybox_version//[:~+]/_}.oci.tar"
PAUSE_TAR="$IMAGE_DIR/pause-3.10-$pause_digest.oci.tar"

# oci_image NAME ROOTFS_DIR OUTPUT CMD...: writes a single-layer OCI image layout tarball.
oci_image() {
  local name="$1" rootfs="$2" out="$3"; shift 3
  local work; work="$(mktemp -d)"
  mkdir -p "$work/blobs/sha256"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$work/layer.tar" .
  local layer_digest layer_size
  layer_digest="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
  layer_size="$(stat -c %s "$work/layer.tar")"
  mv "$work/layer.tar" "$work/blobs/sha256/$layer_digest"
  local cmd_json; cmd_json="$(printf '"%s",' "$@")"; cmd_json="[${cmd_json%,}]"
  printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"backup-operator tests/cluster/build-images.sh"}]}' \
    "$cmd_json" "$layer_digest" > "$work/config.json"
  local config_digest config_size
  config_digest="$(sha256sum "$work/config.json" | cut -d' ' -f1)"
  config_size="$(stat -c %s "$work/config.json")"
  mv "$work/config.json" "$work/blobs/sha256/$config_digest"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" > "$work/manifest.json"
  local manifest_digest manifest_size
  manifest_digest="$(sha256sum "$work/manifest.json" | cut -d' ' -f1)"
  manifest_size="$(stat -c %s "$work/manifest.json")"
  mv "$work/manifest.json" "$work/blobs/sha256/$manifest_digest"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "$manifest_size" "$name" "${name##*:}" > "$work/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$work/oci-layout"
  mkdir -p "$(dirname "$out")"
  tar --sort=name --mtime=@0 --owner=0 --group=0 -C "$work" -cf "$out.tmp" oci-layout index.json blobs
  mv "$out.tmp" "$out"
  rm -rf "$work"
}

build_busybox() {
  [ -f "$BUSYBOX_TAR" ] && return
  log "building busybox:latest from busybox-static $busybox_version"
  local root; root="$(mktemp -d)"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/home"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  oci_image docker.io/library/busybox:latest "$root" "$BUSYBOX_TAR" sh
  rm -rf "$root"
}

build_pause() {
  [ -f "$PAUSE_TAR" ] && return
  log "building registry.k8s.io/pause:3.10 from images/pause.c"
  local root; root="$(mktemp -d)"
  gcc -static -O2 -o "$root/pause" "$here/images/pause.c"
  strip "$root/pause"
  oci_image registry.k8s.io/pause:3.10 "$root" "$PAUSE_TAR" /pause
  rm -rf "$root"
}

build_busybox
build_pause
printf '%s\n%s\n' "$BUSYBOX_TAR" "$PAUSE_TAR"
