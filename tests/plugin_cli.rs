//! `backup-operator plugin`: a plugin author's loop without a cluster (describe, validate, plan a
//! sample request, sha256), with the exit codes that tell a refused plan from a failing plugin;
//! and the Job it prints is one the API server accepts (a server-side dry run on the test cluster).

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn operator(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_backup-operator")).args(args).output().expect("run backup-operator");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn tar_wasm() -> PathBuf {
    support::built_plugins("plugins").join("backup_strategy_tar.wasm")
}

fn hostile_wasm() -> PathBuf {
    support::built_plugins("tests/plugins").join("hostile_plugin.wasm")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write request");
    path.to_string_lossy().into_owned()
}

#[test]
fn describe_validate_and_sha256() {
    let wasm = tar_wasm();
    let wasm = wasm.to_str().expect("path");
    let (code, out, err) = operator(&["plugin", "sha256", wasm]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("{:x}", Sha256::digest(std::fs::read(wasm).expect("read"))));

    let (code, out, err) = operator(&["plugin", "describe", wasm]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("name: tar") && out.contains("actions: [backup, restore, prune, verify]") && out.contains("contract: backup:strategy@0.3.0"), "{out}");

    assert_eq!(operator(&["plugin", "validate", wasm, "--config", r#"{"compression":"none"}"#]).0, 0);
    let (code, _, err) = operator(&["plugin", "validate", wasm, "--config", r#"{"compression":"zstd"}"#]);
    assert_eq!(code, 3, "an invalid config is the plugin's answer: {err}");
    assert!(err.contains("PluginInvalid") && err.contains("compression"), "{err}");

    let (code, _, err) = operator(&["plugin", "describe", "/nonexistent.wasm"]);
    assert_eq!(code, 1, "{err}");
    let junk = std::env::temp_dir().join(format!("not-a-plugin-{}.wasm", std::process::id()));
    std::fs::write(&junk, b"not wasm").expect("write");
    let (code, _, err) = operator(&["plugin", "describe", junk.to_str().expect("path")]);
    assert_eq!(code, 3, "{err}");
    let _ = std::fs::remove_file(junk);
}

#[test]
fn plan_prints_the_verdict_and_exit_codes_tell_refusals_from_failures() {
    let dir = tempdir();
    let hostile = hostile_wasm();
    let hostile = hostile.to_str().expect("path");
    let attack = |name: &str| write(&dir, &format!("{name}.yaml"), &format!("spec: {{plugin: {{config: {{attack: {name}}}}}}}\n"));

    let (code, out, err) = operator(&["plugin", "plan", hostile, "--request", &attack("privileged")]);
    assert_eq!(code, 2, "a refused plan: {out}{err}");
    assert!(err.contains("verdict: refused (PlanRefused): privileged containers are not allowed") && err.contains("privileged: true"), "the plan and why: {err}");

    let (code, _, err) = operator(&["plugin", "plan", hostile, "--request", &attack("trap")]);
    assert_eq!(code, 3, "a failing plugin: {err}");
    assert!(err.contains("PluginFailed") && err.contains("trapped"), "{err}");

    let (code, _, err) = operator(&["plugin", "plan", hostile, "--request", &write(&dir, "bad.yaml", "colour: red\n")]);
    assert_eq!(code, 1, "a bad request file: {err}");
    assert!(err.contains("colour"), "{err}");

    // An S3 destination: the tar plan streams with rclone and the host adds the credentials.
    let request = write(
        &dir,
        "s3.yaml",
        "spec: {backupStrategy: tar, destinations: [{name: offsite, s3: {endpoint: 'https://s3.example', bucket: backups, credentialsSecret: creds}}]}\n",
    );
    let (code, out, err) = operator(&["plugin", "plan", tar_wasm().to_str().expect("path"), "--request", &request]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("verdict: accepted") && out.contains("rclone/rclone:1.60.1") && out.contains("name: AWS_SECRET_ACCESS_KEY"), "{out}");
    assert!(out.contains("backup.example.com/destination: offsite"), "{out}");
}

#[tokio::test]
async fn the_printed_job_passes_a_server_side_dry_run() {
    let Some(cluster) = support::cluster().await else { return };
    let ns = cluster.namespace("plugin-cli").await;
    let dir = tempdir();
    let request = write(&dir, "sample.yaml", &format!("namespace: {}\npolicy: db-backup\nspec: {{backupStrategy: tar}}\npvc: {{name: data-db-0}}\n", ns.name));
    let (code, out, err) = operator(&["plugin", "plan", tar_wasm().to_str().expect("path"), "--request", &request]);
    assert_eq!(code, 0, "{err}");
    let manifest = write(&dir, "job.yaml", &out);
    let applied = support::kubectl(&cluster, &["apply", "--dry-run=server", "-f", &manifest, "-o", "name"]);
    assert_eq!(applied.trim(), "job.batch/db-backup-data-db-0-29453760", "{out}");
    ns.delete().await;
}

fn tempdir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("backup-operator-plugin-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
