# Writes OCI image layouts without a container engine or a registry. Sourced, never run.

# oci_image NAME ROOTFS_DIR OUTPUT CMD...: writes a single-layer OCI image layout tarball.
# OCI_ENTRYPOINT (a JSON array), OCI_USER (uid:gid), OCI_PATH and OCI_ENV (extra JSON strings,
# comma-separated) extend the config.
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
  local entrypoint=""
  [ -n "${OCI_ENTRYPOINT:-}" ] && entrypoint="\"Entrypoint\":$OCI_ENTRYPOINT,"
  [ -n "${OCI_USER:-}" ] && entrypoint="$entrypoint\"User\":\"$OCI_USER\","
  printf '{"architecture":"amd64","os":"linux","config":{%s"Env":["PATH=%s"%s],"Cmd":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"backup-operator tests/cluster/build-images.sh"}]}' \
    "$entrypoint" "${OCI_PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}" "${OCI_ENV:+,$OCI_ENV}" "$cmd_json" "$layer_digest" > "$work/config.json"
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
