#!/usr/bin/env bash
# Builds the OCI image tarballs the test cluster needs, from Debian's packages, into the cache:
#   busybox:latest               busybox-static with every applet linked, plus passwd/group files
#   registry.k8s.io/pause:3.10   a static pod-sandbox binary built from images/pause.c
#   postgres:15                  Debian's PostgreSQL 15 server and client with their shared libraries,
#                                busybox, and an entrypoint with the official image's contract
#                                (images/postgres-entrypoint.sh)
#   restic/restic:<version>      Debian's restic binary (the version the package has; a Go binary
#                                that loads only libc) with busybox and CA certificates; the
#                                entrypoint is restic, as upstream's
#   rclone/rclone:<version>      Debian's rclone binary, likewise (the tar strategy's S3 uploads)
# No registry is reachable here, so cluster-up imports these with `ctr images import`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
. "$here/oci.sh"

IMAGE_DIR="$CACHE_DIR/images"
busybox_version="$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null)" || die "busybox-static is not installed"
pause_digest="$(sha256sum "$here/images/pause.c" | cut -c1-12)"
BUSYBOX_TAR="$IMAGE_DIR/busybox-${busybox_version//[:~+]/_}.oci.tar"
PAUSE_TAR="$IMAGE_DIR/pause-3.10-$pause_digest.oci.tar"
postgres_version="$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null)" || die "postgresql-15 is not installed (scripts/install-deps.sh)"
postgres_digest="$(cat "$here/images/postgres-entrypoint.sh" "$here/images/runas.c" | sha256sum | cut -c1-12)"
POSTGRES_TAR="$IMAGE_DIR/postgres-${postgres_version//[:~+]/_}-$postgres_digest.oci.tar"

upstream_version() { local v="${1#*:}"; echo "${v%%[-+]*}"; }
restic_version="$(dpkg-query -W -f='${Version}' restic 2>/dev/null)" || die "restic is not installed (scripts/install-deps.sh)"
# The upstream tag: the Debian version without its epoch and revision (0.14.0-1+b5 -> 0.14.0).
rclone_version="$(dpkg-query -W -f='${Version}' rclone 2>/dev/null)" || die "rclone is not installed (scripts/install-deps.sh)"
restic_tag="$(upstream_version "$restic_version")"
rclone_tag="$(upstream_version "$rclone_version")"
RESTIC_TAR="$IMAGE_DIR/restic-${restic_version//[:~+]/_}-${busybox_version//[:~+]/_}.oci.tar"
RCLONE_TAR="$IMAGE_DIR/rclone-${rclone_version//[:~+]/_}-${busybox_version//[:~+]/_}.oci.tar"

# install_busybox ROOT: busybox-static with every applet linked, in ROOT/bin.
install_busybox() {
  cp /bin/busybox "$1/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$1/bin/$applet"
  done
}

# build_tool_image NAME BINARY TAR: a binary (and the libraries it loads) as the entrypoint, busybox
# for scripts, CA certificates for HTTPS endpoints, and a nobody user.
build_tool_image() {
  local name="$1" binary="$2" tar="$3" root
  [ -f "$tar" ] && return
  log "building $name from Debian's $(basename "$binary")"
  root="$(mktemp -d)"
  mkdir -p "$root/bin" "$root/usr/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/root" "$root/home"
  chmod 1777 "$root/tmp"
  install_busybox "$root"
  cp "$binary" "$root/usr/bin/"
  local lib
  for lib in $(ldd "$binary" | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  OCI_ENTRYPOINT="[\"/usr/bin/$(basename "$binary")\"]" oci_image "$name" "$root" "$tar" --help
  rm -rf "$root"
  log "$name: $(du -m "$tar" | cut -f1) MiB"
}

build_busybox() {
  [ -f "$BUSYBOX_TAR" ] && return
  log "building busybox:latest from busybox-static $busybox_version"
  local root; root="$(mktemp -d)"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/home"
  chmod 1777 "$root/tmp"
  install_busybox "$root"
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

# The server and client of Debian's postgresql-15 with the shared libraries they load (JIT left
# out: it would add LLVM), busybox for the entrypoint, and a postgres user (999, as upstream).
build_postgres() {
  [ -f "$POSTGRES_TAR" ] && return
  log "building postgres:15 from postgresql-15 $postgres_version"
  local started root lib
  started=$(date +%s)
  root="$(mktemp -d)"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/var/lib/postgresql/data" "$root/var/run/postgresql" "$root/usr/local/bin"
  chmod 1777 "$root/tmp"
  install_busybox "$root"
  mkdir -p "$root/usr/lib/postgresql/15" "$root/usr/share/postgresql" "$root/usr/share"
  cp -a /usr/lib/postgresql/15/bin "$root/usr/lib/postgresql/15/"
  mkdir -p "$root/usr/lib/postgresql/15/lib"
  find /usr/lib/postgresql/15/lib -maxdepth 1 -type f ! -name 'llvmjit*' -exec cp -a {} "$root/usr/lib/postgresql/15/lib/" \;
  cp -a /usr/share/postgresql/15 "$root/usr/share/postgresql/"
  cp -a /usr/share/zoneinfo "$root/usr/share/"
  # Every shared library the binaries and modules load, at the same path.
  find "$root/usr/lib/postgresql/15" -type f \( -perm -u+x -o -name '*.so' \) -print0 \
    | xargs -0 ldd 2>/dev/null | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}' | sort -u > "$root/.libs"
  while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done < "$root/.libs"
  rm "$root/.libs"
  mkdir -p "$root/lib64"
  cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
  gcc -static -O2 -o "$root/usr/local/bin/runas" "$here/images/runas.c"
  strip "$root/usr/local/bin/runas"
  install -m 0755 "$here/images/postgres-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
  printf 'root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\npostgres:x:999:\nnogroup:x:65534:\n' > "$root/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"
  OCI_ENTRYPOINT='["docker-entrypoint.sh"]' OCI_ENV='"PGDATA=/var/lib/postgresql/data"' \
    OCI_PATH=/usr/local/sbin:/usr/local/bin:/usr/lib/postgresql/15/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    oci_image docker.io/library/postgres:15 "$root" "$POSTGRES_TAR" postgres
  rm -rf "$root"
  log "postgres:15: $(du -m "$POSTGRES_TAR" | cut -f1) MiB, built in $(( $(date +%s) - started )) s"
}

build_busybox
build_pause
build_postgres
build_tool_image "docker.io/restic/restic:$restic_tag" /usr/bin/restic "$RESTIC_TAR"
build_tool_image "docker.io/rclone/rclone:$rclone_tag" /usr/bin/rclone "$RCLONE_TAR"
printf '%s\n' "$BUSYBOX_TAR" "$PAUSE_TAR" "$POSTGRES_TAR" "$RESTIC_TAR" "$RCLONE_TAR"
