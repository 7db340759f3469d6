//! The built-in tar strategy's plans, rendered by the host and run on the real test cluster: the
//! archive lands under its collision-free path with a checksum that verifies on disk, a restore
//! brings the files back, and a damaged archive is refused before the target is touched. Custom
//! plugins are read from ConfigMaps through the API, and a new version is picked up by digest.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use backup_operator::strategy::Error;
use backup_operator::runs::render::{JobContext, render_job};
use backup_operator::base::names::storage_dir;
use backup_operator::strategy::bindings::types::{ArtifactRequest, Plan, VolumeMode};
use backup_operator::strategy::builtin::BuiltinStrategy;
use backup_operator::strategy::source::PluginLocation;
use backup_operator::strategy::{RuntimeConfig, StrategyRuntime};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::conditions;
use kube::runtime::wait::Condition;
use kube::{Api, Client};
use serde_json::json;
use support::TestNamespace;
use support::requests::{backup_request, pvc};

const LIMIT: Duration = Duration::from_secs(180);

async fn claim(ns: &TestNamespace, name: &str) -> PathBuf {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}
    }))
    .expect("pvc");
    let api = ns.api::<PersistentVolumeClaim>();
    api.create(&PostParams::default(), &pvc).await.expect("create pvc");
    support::wait_condition(api.clone(), name, &format!("pvc {name} Bound"), LIMIT, |o: Option<&PersistentVolumeClaim>| {
        o.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Bound")
    })
    .await;
    let volume = api.get(name).await.expect("pvc").spec.and_then(|s| s.volume_name).expect("volume name");
    host_path(&ns.client, &volume).await
}

async fn host_path(client: &Client, pv: &str) -> PathBuf {
    let pv = Api::<PersistentVolume>::all(client.clone()).get(pv).await.expect("pv");
    PathBuf::from(pv.spec.and_then(|s| s.host_path).map(|h| h.path).expect("hostPath pv"))
}

/// Runs a Job to its end; returns whether it succeeded.
async fn run_job(ns: &TestNamespace, job: &Job) -> bool {
    let name = job.metadata.name.clone().expect("job name");
    ns.api::<Job>().create(&PostParams::default(), job).await.expect("create job");
    support::wait_condition(ns.api::<Job>(), &name, &format!("job {name} finished"), LIMIT, |o: Option<&Job>| {
        conditions::is_job_completed().matches_object(o)
            || o.and_then(|j| j.status.as_ref()?.failed).unwrap_or(0) > 0
    })
    .await;
    let job = ns.api::<Job>().get(&name).await.expect("job");
    job.status.and_then(|s| s.succeeded).unwrap_or(0) == 1
}

/// A Job of the policy db-backup: it sees the source PVC's (data-db-0's) directory of the backup
/// claim, and mounts `pvc` as data.
fn context(ns: &TestNamespace, name: &str, pvc: &str, data_writable: bool) -> JobContext {
    JobContext {
        name: name.into(),
        namespace: ns.name.clone(),
        labels: BTreeMap::from([("backup-policy".to_owned(), "db-backup".to_owned())]),
        annotations: BTreeMap::new(),
        data_claim: pvc.into(),
        storage_claim: "backup-storage".into(),
        secret_env: Vec::new(),
        ca_bundle: None,
        backup_sub_path: storage_dir(&ns.name, "db-backup", "data-db-0"),
        owner: None,
        backoff_limit: 0,
        active_deadline_seconds: Some(300),
        data_writable,
        backup_writable: !data_writable,
        node: None,
        run_as: None,
    }
}

/// Files under `root` with their contents (directories as "<dir>").
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
            if path.is_dir() {
                out.insert(rel, "<dir>".into());
                stack.push(path);
            } else {
                out.insert(rel, std::fs::read_to_string(&path).expect("read file"));
            }
        }
    }
    out
}

#[tokio::test]
async fn tar_backup_verifies_on_disk_and_restores_only_from_a_sound_archive() {
    let Some(cluster) = support::cluster().await else { return };
    let ns = cluster.namespace("tar").await;
    let data_dir = claim(&ns, "data-db-0").await;
    let backup_dir = claim(&ns, "backup-storage").await;
    let restore_dir = claim(&ns, "restored").await;

    // Data as an application leaves it: nested, and a file only its owner (uid 1000) may read.
    std::fs::create_dir_all(data_dir.join("tables")).expect("mkdir");
    std::fs::write(data_dir.join("tables/users.csv"), "id,name\n1,ada\n").expect("write");
    std::fs::write(data_dir.join("wal.log"), "commit 1\n").expect("write");
    std::fs::write(data_dir.join("secret.key"), "k3y\n").expect("write");
    let chown = Command::new("chown").args(["1000:1000"]).arg(data_dir.join("secret.key")).status().expect("chown");
    assert!(chown.success());
    std::fs::set_permissions(data_dir.join("secret.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let original = tree(&data_dir);

    let runtime = StrategyRuntime::new(RuntimeConfig::default()).expect("runtime");
    let tar = runtime.load("tar", Arc::from(BuiltinStrategy::Tar.wasm()), None).await.expect("load tar");
    let mut request = backup_request("{}");
    request.policy.namespace = ns.name.clone();
    let plan = runtime.plan_backup(tar.clone(), None, request.clone()).await.expect("plan");
    let Plan::Job(backup) = plan else { panic!("tar plans a job") };
    assert!(run_job(&ns, &render_job(&context(&ns, "backup-1", "data-db-0", false), &backup)).await, "backup job succeeded");

    // The archive and its checksum are on disk where the plan said, inside the PVC's own
    // directory, and nothing partial is left.
    let artifact_dir = backup_dir.join(storage_dir(&ns.name, "db-backup", "data-db-0"));
    let artifact = artifact_dir.join(&backup.artifact_location);
    let artifact_dir = artifact_dir.as_path();
    let mut names: Vec<String> = std::fs::read_dir(artifact_dir).expect("ls").map(|e| e.expect("e").file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["20261129t010000z.tar.gz", "20261129t010000z.tar.gz.sha256"]);
    let check = Command::new("sha256sum").args(["-c", "20261129t010000z.tar.gz.sha256"]).current_dir(artifact_dir).output().expect("sha256sum");
    assert!(check.status.success(), "checksum verifies on disk: {}", String::from_utf8_lossy(&check.stdout));
    let listing = Command::new("tar").arg("tzf").arg(&artifact).output().expect("tar");
    let mut listed: Vec<String> = String::from_utf8_lossy(&listing.stdout).lines().map(str::to_owned).collect();
    listed.sort();
    assert_eq!(listed, ["./", "./secret.key", "./tables/", "./tables/users.csv", "./wal.log"]);

    // Restore into an empty claim brings back every file, the owner-only one included.
    let restore_request = ArtifactRequest { policy: request.policy.clone(), pvc: pvc("restored", VolumeMode::Filesystem), artifact: backup.artifact_location.clone() };
    let Plan::Job(restore) = runtime.plan_restore(tar.clone(), None, restore_request.clone()).await.expect("restore plan") else { panic!() };
    assert!(run_job(&ns, &render_job(&context(&ns, "restore-1", "restored", true), &restore)).await, "restore job succeeded");
    assert_eq!(tree(&restore_dir), original, "restored tree equals the original");

    // A damaged archive is refused before anything in the target changes.
    let mut bytes = std::fs::read(&artifact).expect("read archive");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&artifact, bytes).expect("damage archive");
    std::fs::write(restore_dir.join("wal.log"), "commit 2 (newer than the backup)\n").expect("write");
    let before = tree(&restore_dir);
    assert!(!run_job(&ns, &render_job(&context(&ns, "restore-2", "restored", true), &restore)).await, "restore of a damaged archive fails");
    assert_eq!(tree(&restore_dir), before, "the target is untouched");

    ns.delete().await;
}

#[tokio::test]
async fn custom_plugins_come_from_configmaps_and_new_versions_are_picked_up() {
    let Some(cluster) = support::cluster().await else { return };
    let ns = cluster.namespace("plugin-cm").await;
    let runtime = StrategyRuntime::new(RuntimeConfig::default()).expect("runtime");
    let location = PluginLocation::ConfigMap { namespace: ns.name.clone(), name: "my-strategy".into(), key: "plugin.wasm".into() };

    let missing = location.fetch(&ns.client).await.unwrap_err();
    assert!(matches!(&missing, Error::PluginNotFound(m) if m.contains("kubectl") && m.contains("create configmap")), "{missing}");
    assert_eq!(missing.reason(), "PluginNotFound");

    // The plugin as text under data (a common slip) is named, with the fix.
    let text = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "my-strategy"}, "data": {"plugin.wasm": "not binary"}});
    ns.api::<ConfigMap>().patch("my-strategy", &PatchParams::apply("backup-operator-test").force(), &Patch::Apply(text)).await.expect("apply");
    let under_data = location.fetch(&ns.client).await.unwrap_err();
    assert!(matches!(&under_data, Error::PluginNotFound(m) if m.contains("under data") && m.contains("binaryData")), "{under_data}");
    ns.api::<ConfigMap>().delete("my-strategy", &Default::default()).await.expect("delete");

    let put = |bytes: &[u8]| {
        let cm = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "my-strategy"},
            "binaryData": {"plugin.wasm": ByteString(bytes.to_vec())}
        });
        let api = ns.api::<ConfigMap>();
        async move {
            api.patch("my-strategy", &PatchParams::apply("backup-operator-test").force(), &Patch::Apply(cm)).await.expect("apply configmap");
        }
    };
    put(BuiltinStrategy::Snapshot.wasm()).await;
    let bytes = location.fetch(&ns.client).await.expect("fetch");
    let first = runtime.load(&location.display_name(), bytes, None).await.expect("load v1");
    assert_eq!(first.description.name, "snapshot");
    let plan = runtime.plan_backup(first.clone(), None, backup_request("{}")).await.expect("plan v1");
    assert!(matches!(plan, Plan::VolumeSnapshot(_)));

    // A new version in the same ConfigMap: fetched again, a new digest, a new plugin.
    put(BuiltinStrategy::Tar.wasm()).await;
    let bytes = location.fetch(&ns.client).await.expect("fetch v2");
    let second = runtime.load(&location.display_name(), bytes.clone(), Some(&first.id.digest)).await.unwrap_err();
    assert!(matches!(second, Error::PluginDigestMismatch { .. }), "a pin to the old digest refuses the new bytes: {second}");
    let second = runtime.load(&location.display_name(), bytes, None).await.expect("load v2");
    assert_ne!(second.id.digest, first.id.digest);
    assert_eq!(second.description.name, "tar");
    assert!(matches!(runtime.plan_backup(second, None, backup_request("{}")).await.expect("plan v2"), Plan::Job(_)));

    ns.delete().await;
}
