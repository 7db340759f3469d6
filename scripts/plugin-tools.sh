#!/usr/bin/env bash
# Prints the path of a plugin author's tool, installing it first when missing: `wasm-tools`,
# `wit-bindgen` (CLI) and `cargo-component`, each built once from crates.io at a pinned version
# with the host's cargo and cached by version outside the repository.
#
#   scripts/plugin-tools.sh wasm-tools|wit-bindgen|cargo-component
set -euo pipefail
cache="${BACKUP_OPERATOR_CACHE:-$HOME/.cache/backup-operator}"
case "${1:-}" in
  # wasm-tools and wit-bindgen match the wit-component and wit-bindgen the plugins use.
  wasm-tools) crate=wasm-tools version=1.262.0 bin=wasm-tools ;;
  wit-bindgen) crate=wit-bindgen-cli version=0.63.0 bin=wit-bindgen ;;
  cargo-component) crate=cargo-component version=0.21.1 bin=cargo-component ;;
  *) echo "usage: $0 wasm-tools|wit-bindgen|cargo-component" >&2; exit 64 ;;
esac
root="$cache/tools/$crate-$version"
if [ ! -x "$root/bin/$bin" ]; then
  if [ -n "${BACKUP_OPERATOR_NO_INSTALL:-}" ]; then
    echo "plugin-tools: $crate $version is not installed in $root" >&2
    exit 1
  fi
  mkdir -p "$cache/tools"
  # One install at a time (tests build examples concurrently); the second finds it done.
  exec 9>"$cache/tools/.lock"
  flock 9
  if [ ! -x "$root/bin/$bin" ]; then
    echo "plugin-tools: building $crate $version (once; a few minutes)" >&2
    target="$(mktemp -d "$cache/tools/build.XXXXXX")"
    CARGO_TARGET_DIR="$target" cargo install --quiet --locked --root "$root" "$crate@$version" >&2
    rm -rf "$target"
  fi
fi
echo "$root/bin/$bin"
