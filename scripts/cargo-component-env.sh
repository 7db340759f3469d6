#!/usr/bin/env bash
# Prints the environment in which `cargo component build --release` works offline with Debian's
# rustc-web (the toolchain the project installs) instead of rustup:
#
#   eval "$(scripts/cargo-component-env.sh)"
#   cd my-plugins && cargo component build --release
#
# cargo-component needs a rustc whose sysroot has the wasm32-wasip1 target, and rustup to add it
# otherwise. Debian ships no prebuilt std for wasm32, so this makes a sysroot of links in the cache:
# Debian's sysroot, its LLVM 22 lld as rust-lld, and Debian's wasi-libc as the target's
# self-contained C library. `std` is then built from rust-web-src (-Zbuild-std), and cargo
# component adapts the wasm32-wasip1 module to a WASI p2 component with its preview 1 adapter.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${BACKUP_OPERATOR_CACHE:-$HOME/.cache/backup-operator}"
if ! /usr/bin/rustc --version 2>/dev/null | grep -q '^rustc 1\.9[6-9]' || [ ! -x /usr/lib/llvm-22/bin/lld ] || [ ! -f /usr/lib/wasm32-wasi/libc.a ]; then
  "$repo/scripts/install-deps.sh" >&2
fi
cargo_component="$("$repo/scripts/plugin-tools.sh" cargo-component)"
env_dir="$cache/cargo-component-env/$(/usr/bin/rustc --version | tr -c 'a-zA-Z0-9.\n' '-')"
sysroot="$env_dir/sysroot"
if [ ! -x "$env_dir/bin/rustc" ]; then
  tmp="$(mktemp -d "$cache/cargo-component-env.XXXXXX")"
  rustlib="$tmp/sysroot/lib/rustlib"
  host="$(/usr/bin/rustc -vV | sed -n 's/^host: //p')"
  mkdir -p "$rustlib/$host/bin" "$rustlib/wasm32-wasip1/lib/self-contained" "$tmp/bin"
  ln -s /usr/lib/rustlib/src "$rustlib/src"
  ln -s "/usr/lib/rustlib/$host/lib" "$rustlib/$host/lib"
  for tool in /usr/lib/rustlib/"$host"/bin/*; do ln -s "$tool" "$rustlib/$host/bin/"; done
  ln -s /usr/lib/llvm-22/bin/lld "$rustlib/$host/bin/rust-lld"
  for f in /usr/lib/wasm32-wasi/*; do ln -s "$f" "$rustlib/wasm32-wasip1/lib/self-contained/"; done
  printf '#!/bin/sh\nexec /usr/bin/rustc --sysroot "%s" "$@"\n' "$sysroot" > "$tmp/bin/rustc"
  chmod +x "$tmp/bin/rustc"
  ln -s /usr/bin/cargo "$tmp/bin/cargo"
  # The sysroot path is written into the wrapper: build aside, then move into place.
  sed -i "s|$tmp/sysroot|$sysroot|" "$tmp/bin/rustc"
  mkdir -p "$(dirname "$env_dir")"
  rm -rf "$env_dir"
  mv "$tmp" "$env_dir"
fi
ln -sf "$cargo_component" "$env_dir/bin/cargo-component"
cat <<ENV
export PATH="$env_dir/bin:\$PATH"
export RUSTC="$env_dir/bin/rustc"
export CARGO="$env_dir/bin/cargo"
export RUSTC_BOOTSTRAP=1
export CARGO_UNSTABLE_BUILD_STD=std,panic_abort
export CARGO_BUILD_TARGET=wasm32-wasip1
unset RUSTUP_TOOLCHAIN RUSTFLAGS CARGO_TARGET_DIR
ENV
