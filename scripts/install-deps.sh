#!/usr/bin/env bash
# Installs the Debian packages the project needs: the test cluster's node runtime and the offline
# WebAssembly toolchain. Idempotent: does nothing when every package is already installed.
set -euo pipefail
packages=(
  # test cluster node: container runtime, CNI plugins (/usr/lib/cni), the busybox image's contents
  containerd runc containernetworking-plugins busybox-static iproute2 openssl gcc libc6-dev
  # the test cluster's postgres:15 image (server, client and their shared libraries)
  postgresql-15 postgresql-client-15
  # the restic/restic and rclone/rclone images (Go binaries that load only libc) for off-site
  # backups; the tests also inspect what they wrote with them
  restic rclone
  # WebAssembly guests: rustc/cargo 1.96 with std sources for -Zbuild-std, wasm-component-ld, lld
  rustc-web cargo-web rust-web-src rust-web-llvm lld-22
  # the C plugin example: clang for wasm32 with wasi-libc and its compiler-rt builtins
  clang-22 wasi-libc libclang-rt-22-dev-wasm32
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
