// A build script reports a failure by panicking: expect is its error message.
#![allow(clippy::expect_used)]

//! Builds the built-in strategy plugins (plugins/) into WebAssembly components with the project's
//! offline toolchain script, and places them in OUT_DIR for `include_bytes!`. Built `.wasm` files
//! are never committed.
use std::path::PathBuf;
use std::process::Command;

const BUILTINS: [&str; 3] = ["backup_strategy_tar", "backup_strategy_snapshot", "backup_strategy_restic"];

fn main() {
    println!("cargo:rerun-if-changed=plugins");
    println!("cargo:rerun-if-changed=sdk/backup-strategy-sdk");
    println!("cargo:rerun-if-changed=wit");
    println!("cargo:rerun-if-changed=scripts/build-plugins.sh");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // `cargo build` never changes the machine: the script fails with the command to run instead
    // of installing the toolchain.
    let output = Command::new(manifest.join("scripts/build-plugins.sh"))
        .arg(manifest.join("plugins"))
        .env("BACKUP_OPERATOR_NO_INSTALL", "1")
        .output()
        .expect("run scripts/build-plugins.sh");
    if !output.status.success() {
        panic!(
            "building the built-in plugins failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let built = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    for name in BUILTINS {
        let from = built.join(format!("{name}.wasm"));
        std::fs::copy(&from, out.join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}
