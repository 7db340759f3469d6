#!/usr/bin/env bash
# Builds the C example strategy into a component, offline:
#   1. `wit-bindgen c` generates the bindings from the operator's WIT (wit/),
#   2. clang compiles them and strategy.c for wasm32 against Debian's wasi-libc,
#   3. `wasm-tools component new` makes the core module a component (it imports no WASI, so no
#      adapter is needed).
#
#   plugins/examples/c-tar/build.sh [OUT_DIR]     prints the component's path
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cache="${BACKUP_OPERATOR_CACHE:-$HOME/.cache/backup-operator}"
out="${1:-$cache/plugins/examples-c-tar}"
clang=/usr/bin/clang-22
if [ ! -x "$clang" ] || [ ! -f /usr/lib/wasm32-wasi/libc.a ]; then
  if [ -n "${BACKUP_OPERATOR_NO_INSTALL:-}" ]; then
    echo "c-tar: clang-22 and wasi-libc are missing: run scripts/install-deps.sh (as root) first" >&2
    exit 1
  fi
  "$repo/scripts/install-deps.sh" >&2
fi
wit_bindgen="$("$repo/scripts/plugin-tools.sh" wit-bindgen)"
wasm_tools="$("$repo/scripts/plugin-tools.sh" wasm-tools)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$wit_bindgen" c "$repo/wit" --world backup-strategy --out-dir "$work" >/dev/null
"$clang" --target=wasm32-wasi -Wno-deprecated -Wall -Wextra -Werror -Os -mexec-model=reactor \
  -isystem /usr/include/wasm32-wasi -L/usr/lib/wasm32-wasi -I"$work" \
  -o "$work/core.wasm" "$here/strategy.c" "$work/backup_strategy.c" "$work/backup_strategy_component_type.o"
"$wasm_tools" component new "$work/core.wasm" -o "$work/c_tar_plugin.wasm"
"$wasm_tools" strip "$work/c_tar_plugin.wasm" -o "$work/stripped.wasm"
mkdir -p "$out"
# Replaced atomically: tests read it concurrently.
cp "$work/stripped.wasm" "$out/c_tar_plugin.wasm.tmp.$$"
mv -f "$out/c_tar_plugin.wasm.tmp.$$" "$out/c_tar_plugin.wasm"
echo "$out/c_tar_plugin.wasm"
