//! The example strategies in other languages (plugins/examples/): each is built by its own script
//! with the toolchain it documents, loads in the operator's sandbox, plans what the host accepts,
//! and backs up a PVC on the real cluster from a ConfigMap.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use backup_operator::strategy::Error;
use backup_operator::api::RunStatus;
use backup_operator::strategy::bindings::types::{DestinationKind, Plan};
use backup_operator::strategy::{RuntimeConfig, StrategyRuntime};
use serde_json::json;
use support::operator::{Operator, claim, claim_dir, create_policy, plugin_configmap, poll, setup, status};
use support::requests::{artifact_request, backup_request, s3_destination};

/// The C example, built by plugins/examples/c-tar/build.sh (clang, wasi-libc, `wit-bindgen c`,
/// `wasm-tools component new`).
fn c_tar() -> Vec<u8> {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let path = BUILT.get_or_init(|| {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let output = std::process::Command::new(repo.join("plugins/examples/c-tar/build.sh")).output().expect("run build.sh");
        assert!(output.status.success(), "building the C example failed:\n{}", String::from_utf8_lossy(&output.stderr));
        std::path::PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    });
    std::fs::read(path).expect("the C example's component")
}

#[tokio::test]
async fn the_c_example_loads_and_plans_what_the_host_accepts() {
    let runtime = StrategyRuntime::new(RuntimeConfig::default()).expect("runtime");
    let bytes = c_tar();
    support::measured(&format!("C example component (c-tar): {} bytes", bytes.len()));
    let plugin = runtime.load("c-tar", Arc::from(bytes), None).await.expect("the C example loads");
    assert_eq!(plugin.description.name, "c-tar");
    assert_eq!(plugin.description.actions.len(), 4);

    let Plan::Job(job) = runtime.plan_backup(plugin.clone(), None, backup_request("{}")).await.expect("an accepted plan") else {
        panic!("a job plan")
    };
    assert_eq!(job.artifact_location, "db-backup-data-db-0-29401260.tar");
    assert!(job.mounts.iter().any(|m| m.volume == "data" && m.read_only), "{job:?}");
    let Plan::Job(restore) = runtime
        .plan_restore(plugin.clone(), None, artifact_request("{}", "db-backup-data-db-0-29401260.tar"))
        .await
        .expect("restore plan")
    else {
        panic!("a job plan")
    };
    assert!(restore.mounts.iter().any(|m| m.volume == "data" && !m.read_only), "a restore writes the data volume");

    let err = runtime.validate_config(plugin.clone(), None, r#"{"level": 9}"#.into()).await.expect_err("takes no config");
    assert!(matches!(err, Error::PluginConfigInvalid { .. }), "{err}");
    let mut to_s3 = backup_request("{}");
    to_s3.policy.destination = s3_destination();
    assert!(matches!(to_s3.policy.destination.kind, DestinationKind::S3(_)));
    let err = runtime.plan_backup(plugin.clone(), None, to_s3).await.expect_err("claims only");
    assert!(matches!(err, Error::UnsupportedDestination { .. }), "{err}");
    let err = runtime.plan_prune(plugin, None, artifact_request("{}", "../other.tar")).await.expect_err("not its artifact");
    assert!(matches!(err, Error::PluginPlanFailed { .. }), "{err}");
}

#[tokio::test]
async fn the_c_example_backs_up_a_pvc_from_a_configmap() {
    let Some((cluster, ns)) = setup("c-example").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    let data = claim_dir(&ns, "data-db-0").await;
    std::fs::create_dir_all(data.join("sub")).expect("mkdir");
    std::fs::write(data.join("sub/rows"), b"1\n2\n").expect("data");
    plugin_configmap(&ns, "c-tar", &c_tar()).await;
    let _operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "db", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupStrategy": "custom",
        "plugin": {"configMapRef": {"name": "c-tar", "key": "plugin.wasm"}}
    }))
    .await
    .expect("policy");
    let run = poll("the C example's first backup", support::operator::LIMIT * 2, || async {
        status(&ns, "db").await.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded)
    })
    .await;
    assert_eq!(run.verified, Some(true), "{run:?}");
    assert_eq!(status(&ns, "db").await.plugin.map(|p| p.name), Some("c-tar".to_owned()));
    let dir = claim_dir(&ns, "backup-storage").await.join(format!("{}/db/data-db-0", ns.name));
    let archive = dir.join(format!("{}.tar", run.job_name));
    let listing = std::process::Command::new("tar").arg("-tf").arg(&archive).output().expect("tar");
    assert!(listing.status.success(), "{}: {}", archive.display(), String::from_utf8_lossy(&listing.stderr));
    assert!(String::from_utf8_lossy(&listing.stdout).lines().any(|l| l == "./sub/rows"), "{}", String::from_utf8_lossy(&listing.stdout));
    let sums = std::fs::read_to_string(dir.join(format!("{}.tar.sha256", run.job_name))).expect("sha256 file");
    assert!(sums.ends_with(&format!("  {}.tar\n", run.job_name)), "{sums}");
    ns.delete().await;
}
