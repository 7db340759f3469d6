#!/usr/bin/env bash
# Builds a workspace of WebAssembly strategy plugins (default: plugins/) into components, offline:
# Debian's rustc-web toolchain (1.96) with -Zbuild-std for wasm32-unknown-unknown, linked by
# wasm-component-ld so that each cdylib comes out as a component.
#
#   scripts/build-plugins.sh [WORKSPACE_DIR [OUT_DIR]]
#
# Prints OUT_DIR. The cargo target directory lives in the cache outside the repository.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
workspace="$(cd "${1:-$repo/plugins}" && pwd)"
cache="${BACKUP_OPERATOR_CACHE:-$HOME/.cache/backup-operator}"
# plugins/ -> plugins, tests/plugins -> tests-plugins: one output and target directory each.
key="$(realpath --relative-to="$repo" "$workspace")"
case "$key" in ../*) key="external-$(basename "$workspace")" ;; esac
key="$(echo "$key" | tr '/' '-')"
out="${2:-$cache/plugins/$key}"

rustc=/usr/bin/rustc
cargo=/usr/bin/cargo
linker=/usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/wasm-component-ld
if [ ! -x "$linker" ] || ! "$rustc" --version 2>/dev/null | grep -q '^rustc 1\.9[6-9]'; then
  if [ -n "${BACKUP_OPERATOR_NO_INSTALL:-}" ]; then
    echo "build-plugins: the WebAssembly toolchain (Debian rustc-web 1.96+, wasm-component-ld) is missing: run scripts/install-deps.sh (as root) first" >&2
    exit 1
  fi
  "$repo/scripts/install-deps.sh" >&2
fi
[ -x "$linker" ] || { echo "build-plugins: $linker missing after installing rustc-web" >&2; exit 1; }

# Keyed by toolchain so that a compiler upgrade never mixes artefacts.
toolchain="$("$rustc" --version | tr -c 'a-zA-Z0-9.\n' '-')"
target_dir="$cache/wasm-target/$toolchain/$key"
mkdir -p "$out" "$target_dir"

# A clean environment: variables inherited from an outer cargo or rustup (CARGO_*, RUSTUP_*,
# RUSTFLAGS) would point this build at the host's toolchain.
# Run from the workspace so that its .cargo/config.toml applies.
cd "$workspace"
env -i PATH=/usr/bin:/bin HOME="$HOME" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" \
  RUSTC_BOOTSTRAP=1 RUSTC="$rustc" \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$linker" \
  CARGO_TARGET_DIR="$target_dir" \
  "$cargo" build --manifest-path "$workspace/Cargo.toml" --release $([ -f "$workspace/Cargo.lock" ] && echo --locked) \
    --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort >&2

# Test binaries run concurrently and read these files while another build may be writing them:
# replace each one atomically (write aside, rename), and only when it changed.
for wasm in "$target_dir"/wasm32-unknown-unknown/release/*.wasm; do
  dest="$out/$(basename "$wasm")"
  cmp -s "$wasm" "$dest" && continue
  cp "$wasm" "$dest.tmp.$$"
  mv -f "$dest.tmp.$$" "$dest"
done
echo "$out"
