//! The built-in tar, snapshot and restic strategies, built from plugins/ by build.rs and embedded in the
//! operator, exercised through the real wasmtime host.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use backup_operator::strategy::Error;
use backup_operator::strategy::bindings::types::{
    Action, ArtifactRequest, EnvSource, Plan, VolumeMode, Verification,
};
use backup_operator::strategy::builtin::BuiltinStrategy;
use backup_operator::strategy::{Plugin, RuntimeConfig, StrategyRuntime};
use support::requests::{backup_request, policy, pvc, s3_destination};

async fn load(runtime: &StrategyRuntime, builtin: BuiltinStrategy) -> Arc<Plugin> {
    runtime.load(builtin.name(), Arc::from(builtin.wasm()), None).await.expect("built-in plugin loads")
}

fn runtime() -> StrategyRuntime {
    StrategyRuntime::new(RuntimeConfig::default()).expect("runtime")
}

fn env(plan: &Plan, name: &str) -> String {
    let Plan::Job(job) = plan else { panic!("expected a job plan, got {plan:?}") };
    job.env
        .iter()
        .find(|e| e.name == name)
        .map(|e| match &e.source {
            EnvSource::Value(v) => v.clone(),
            EnvSource::Secret(_) => panic!("secret env"),
        })
        .unwrap_or_else(|| panic!("no env {name}"))
}

#[tokio::test]
async fn builtins_describe_themselves() {
    let rt = runtime();
    let tar = load(&rt, BuiltinStrategy::Tar).await;
    assert_eq!(tar.description.name, "tar");
    assert_eq!(tar.description.actions, vec![Action::Backup, Action::Restore, Action::Prune, Action::Verify]);
    assert!(tar.description.config_schema.contains("compression"));
    let snap = load(&rt, BuiltinStrategy::Snapshot).await;
    assert_eq!(snap.description.name, "snapshot");
    assert_eq!(snap.description.actions, vec![Action::Backup]);
    assert_eq!(tar.id.digest.len(), 64);
    assert_ne!(tar.id.digest, snap.id.digest);
}

#[tokio::test]
async fn tar_plans_a_verified_archive_per_run_inside_the_pvc_directory() {
    let rt = runtime();
    let tar = load(&rt, BuiltinStrategy::Tar).await;
    let plan = rt.plan_backup(tar.clone(), None, backup_request("{}")).await.expect("plan");
    let Plan::Job(job) = &plan else { panic!("tar plans a job: {plan:?}") };
    assert_eq!(job.image, "busybox:latest");
    assert_eq!(job.artifact_location, "20261129t010000z.tar.gz", "relative to the run's own directory");
    assert_eq!(job.verification, Verification::Sha256File("20261129t010000z.tar.gz.sha256".into()));
    let data = job.mounts.iter().find(|m| m.volume == "data").expect("data mount");
    assert!(data.read_only, "data is read-only for a backup");
    assert_eq!(job.command[..2], ["/bin/sh".to_string(), "-c".to_string()]);
    assert!(job.command[2].contains("sha256sum -c"), "the job verifies its checksum");
    assert!(job.command[2].contains("mv \"$partial\" \"$final\""), "written under a temporary name, then renamed");
    assert!(job.command[2].contains("/dev/termination-log"), "the job reports size and digest");
    assert_eq!(env(&plan, "TAR_COMPRESS"), "z");

    // Another run: another file.
    let mut other = backup_request("{}");
    other.policy.scheduled_stamp = "20261129t010100z".into();
    let Plan::Job(other_job) = rt.plan_backup(tar.clone(), None, other).await.expect("plan") else { panic!() };
    assert_eq!(other_job.artifact_location, "20261129t010100z.tar.gz");

    let uncompressed = rt.plan_backup(tar.clone(), None, backup_request(r#"{"compression":"none","exclude":["lost+found"]}"#)).await.expect("plan");
    assert_eq!(env(&uncompressed, "TAR_COMPRESS"), "");
    assert_eq!(env(&uncompressed, "BACKUP_EXCLUDES"), "lost+found");
}

#[tokio::test]
async fn tar_refuses_block_volumes_and_bad_config_through_the_contract() {
    let rt = runtime();
    let tar = load(&rt, BuiltinStrategy::Tar).await;
    let mut block = backup_request("{}");
    block.pvc = pvc("raw", VolumeMode::Block);
    let err = rt.plan_backup(tar.clone(), None, block).await.unwrap_err();
    assert!(matches!(&err, Error::PluginPlanFailed { message, .. } if message.contains("block volume")), "{err}");

    let err = rt.validate_config(tar.clone(), None, r#"{"compression":"zstd"}"#.into()).await.unwrap_err();
    assert!(matches!(&err, Error::PluginConfigInvalid { message, .. } if message.contains("compression")), "{err}");
    assert!(err.to_string().contains("plugin \"tar\""), "errors name the plugin: {err}");
    rt.validate_config(tar.clone(), None, r#"{"exclude":["cache/*"]}"#.into()).await.expect("valid config");
}

#[tokio::test]
async fn tar_plans_restore_prune_and_verify_of_plain_artifact_names_only() {
    let rt = runtime();
    let tar = load(&rt, BuiltinStrategy::Tar).await;
    let request = |artifact: &str| ArtifactRequest {
        policy: policy("{}"),
        pvc: pvc("data-db-0", VolumeMode::Filesystem),
        artifact: artifact.into(),
    };
    let artifact = "20261129t010000z.tar.gz";
    let Plan::Job(restore) = rt.plan_restore(tar.clone(), None, request(artifact)).await.expect("restore plan") else { panic!() };
    assert!(restore.mounts.iter().any(|m| m.volume == "data" && !m.read_only), "restore writes into data");
    let script = &restore.command[2];
    let verify = script.find("sha256sum -c").expect("restore verifies");
    let extract = script.find("tar -x").expect("restore extracts");
    assert!(verify < extract, "the checksum is verified before anything is extracted");

    let Plan::Job(prune) = rt.plan_prune(tar.clone(), None, request(artifact)).await.expect("prune plan") else { panic!() };
    assert!(prune.mounts.iter().all(|m| m.volume == "backup"), "prune touches only the backup volume");

    let Plan::Job(verify) = rt.plan_verify(tar.clone(), None, request(artifact)).await.expect("verify plan") else { panic!() };
    assert!(verify.mounts.iter().all(|m| m.volume == "backup" && m.read_only), "verify only reads the backup volume");
    assert!(verify.command[2].contains("sha256sum -c") && verify.command[2].contains("report false"), "a damaged artifact is reported");

    for bad in ["../data-db-1/x.tar.gz", "prod/other/data-db-0/x.tar.gz"] {
        let err = rt.plan_prune(tar.clone(), None, request(bad)).await.unwrap_err();
        assert!(matches!(err, Error::PluginPlanFailed { .. }), "{err}");
    }
}

#[tokio::test]
async fn snapshot_plans_a_volume_snapshot_with_the_configured_class() {
    let rt = runtime();
    let snap = load(&rt, BuiltinStrategy::Snapshot).await;
    let plan = rt.plan_backup(snap.clone(), None, backup_request(r#"{"snapshotClass":"csi-hostpath-snapclass"}"#)).await.expect("plan");
    let Plan::VolumeSnapshot(s) = plan else { panic!("snapshot plans a VolumeSnapshot: {plan:?}") };
    assert_eq!(s.snapshot_class.as_deref(), Some("csi-hostpath-snapclass"));
    assert!(s.labels.is_empty(), "the host names and labels the snapshot: {:?}", s.labels);

    let Plan::VolumeSnapshot(default_class) = rt.plan_backup(snap.clone(), None, backup_request("")).await.expect("plan") else { panic!() };
    assert_eq!(default_class.snapshot_class, None);

    let err = rt.validate_config(snap.clone(), None, r#"{"snapshotClass":"Bad Class"}"#.into()).await.unwrap_err();
    assert!(matches!(err, Error::PluginConfigInvalid { .. }), "{err}");

    let unsupported = rt
        .plan_restore(snap.clone(), None, ArtifactRequest { policy: policy(""), pvc: pvc("data-db-0", VolumeMode::Filesystem), artifact: "db-backup-data-db-0-29401260".into() })
        .await
        .unwrap_err();
    assert!(matches!(unsupported, Error::PluginUnsupported { action: "restore", .. }), "{unsupported}");
}

#[tokio::test]
async fn compiled_plugins_are_cached_on_disk_and_reused_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || RuntimeConfig { cache_dir: Some(dir.path().to_path_buf()), ..RuntimeConfig::default() };
    let first = StrategyRuntime::new(config()).expect("runtime");
    let tar = load(&first, BuiltinStrategy::Tar).await;
    let cached: Vec<_> = std::fs::read_dir(dir.path()).expect("cache dir").filter_map(|e| e.ok()).collect();
    assert_eq!(cached.len(), 1, "one precompiled artefact");
    let name = cached[0].file_name().to_string_lossy().into_owned();
    assert!(name.starts_with(&tar.id.digest) && name.ends_with(".cwasm"), "{name}");

    // A new runtime (a restarted operator) loads the artefact and plans the same.
    let second = StrategyRuntime::new(config()).expect("runtime");
    let again = load(&second, BuiltinStrategy::Tar).await;
    let a = first.plan_backup(tar, None, backup_request("{}")).await.expect("plan");
    let b = second.plan_backup(again, None, backup_request("{}")).await.expect("plan");
    assert_eq!(a, b);

    // A damaged artefact is discarded and recompiled, not trusted.
    std::fs::write(cached[0].path(), b"garbage").expect("corrupt");
    let third = StrategyRuntime::new(config()).expect("runtime");
    load(&third, BuiltinStrategy::Tar).await;
    assert!(std::fs::read(cached[0].path()).expect("re-cached").len() > 1000);
}

#[tokio::test]
async fn bytes_of_a_version_seen_before_are_not_hashed_again() {
    let rt = runtime();
    let tar = BuiltinStrategy::Tar.wasm();
    let first = rt.load_versioned("ns", "configmap/ns/p[plugin.wasm]", "rv-1", Arc::from(tar), None).await.expect("load");
    // Same source and version: the digest comes from the record, not from hashing the bytes
    // (shown here by handing other bytes under the same version).
    let again = rt.load_versioned("ns", "configmap/ns/p[plugin.wasm]", "rv-1", Arc::from(BuiltinStrategy::Snapshot.wasm()), None).await.expect("load");
    assert_eq!(again.id.digest, first.id.digest);
    // A new version is hashed.
    let next = rt.load_versioned("ns", "configmap/ns/p[plugin.wasm]", "rv-2", Arc::from(BuiltinStrategy::Snapshot.wasm()), None).await.expect("load");
    assert_ne!(next.id.digest, first.id.digest);
    assert_eq!(next.description.name, "snapshot");
}

#[tokio::test]
async fn restic_plans_one_repository_per_pvc_and_destination_with_the_password_from_the_host() {
    let rt = runtime();
    let restic = load(&rt, BuiltinStrategy::Restic).await;
    assert_eq!(restic.description.name, "restic");
    assert_eq!(restic.description.actions, vec![Action::Backup, Action::Restore, Action::Prune, Action::Verify]);

    // Without a password the plan fails, naming the spec field.
    let err = rt.plan_backup(restic.clone(), None, backup_request("{}")).await.expect_err("no password");
    assert!(err.to_string().contains("spec.restic.passwordSecret"), "{err}");

    let mut on_claim = backup_request("{}");
    on_claim.policy.repository_password_env = Some("BACKUP_REPOSITORY_PASSWORD".into());
    let plan = rt.plan_backup(restic.clone(), None, on_claim.clone()).await.expect("plan to a claim");
    assert_eq!(env(&plan, "REPO"), "/backup/repo");
    assert_eq!(env(&plan, "PASSWORD_VAR"), "BACKUP_REPOSITORY_PASSWORD");
    let Plan::Job(job) = &plan else { panic!("a job") };
    assert_eq!(job.image, "restic/restic:0.14.0", "busybox has no restic");
    assert_eq!(job.artifact_location, on_claim.policy.run_name, "the run's tag finds its snapshot");
    assert!(matches!(&job.verification, Verification::CheckedByJob(how) if how.contains("restic check")));
    assert!(job.mounts.iter().any(|m| m.volume == "backup"));

    let mut to_s3 = on_claim.clone();
    to_s3.policy.destination = s3_destination();
    let plan = rt.plan_backup(restic.clone(), None, to_s3.clone()).await.expect("plan to S3");
    assert_eq!(env(&plan, "REPO"), "s3:http://s3.example:9000/backups/team/prod/db-backup/data-db-0");
    assert_eq!((env(&plan, "REGION"), env(&plan, "ACCESS_KEY_VAR")), ("eu-west-1".to_owned(), "AWS_ACCESS_KEY_ID".to_owned()));
    let Plan::Job(job) = &plan else { panic!("a job") };
    assert!(!job.mounts.iter().any(|m| m.volume == "backup"), "object storage has no backup volume");
    let request = ArtifactRequest { policy: to_s3.policy.clone(), pvc: to_s3.pvc.clone(), artifact: to_s3.policy.run_name.clone() };
    rt.plan_restore(restic.clone(), None, request.clone()).await.expect("restore");
    rt.plan_prune(restic.clone(), None, request.clone()).await.expect("prune");
    rt.plan_verify(restic.clone(), None, request).await.expect("verify");

    // The tar strategy streams to object storage with rclone, and never mounts a backup volume there.
    let tar = load(&rt, BuiltinStrategy::Tar).await;
    let plan = rt.plan_backup(tar, None, to_s3).await.expect("tar to S3");
    assert_eq!(env(&plan, "REMOTE"), "dest:backups/team/prod/db-backup/data-db-0");
    let Plan::Job(job) = &plan else { panic!("a job") };
    assert_eq!(job.image, "rclone/rclone:1.60.1");
    assert!(!job.mounts.iter().any(|m| m.volume == "backup"));
}

/// The host counts into the metrics it is given (the process's in the operator; this test's own
/// here): a compile, then a load from memory, then a call.
#[tokio::test]
async fn loads_and_calls_are_counted_in_the_metrics_the_host_was_given() {
    let metrics = Arc::new(backup_operator::telemetry::metrics::Metrics::new());
    let runtime = StrategyRuntime::new(RuntimeConfig { metrics: metrics.clone(), ..RuntimeConfig::default() }).expect("runtime");
    let plugin = load(&runtime, BuiltinStrategy::Tar).await;
    load(&runtime, BuiltinStrategy::Tar).await;
    runtime.plan_backup(plugin, None, backup_request("{}")).await.expect("plan");
    let text = metrics.encode();
    for line in [
        r#"backup_operator_plugin_loads_total{outcome="compiled"} 1"#,
        r#"backup_operator_plugin_loads_total{outcome="memory"} 1"#,
        r#"backup_operator_plugin_calls_total{plugin="tar",outcome="ok"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    // Another host's metrics are its own.
    assert!(!backup_operator::telemetry::metrics::Metrics::new().encode().contains("outcome=\"compiled\"} 1"));
}
