//! Restores on the real test cluster with the operator binary: the specification's PostgreSQL
//! StatefulSet (`postgres:15`, built from Debian's PostgreSQL 15 by the cluster harness) is backed
//! up, loses its table, and gets it back from a `BackupRestore`, into its own PVC and into a new
//! one that a second PostgreSQL starts on; refusals (a target in use, an unverified backup, a
//! missing policy or PVC, a strategy without restore, a corrupted archive) leave the target as it
//! was; and the specification's manual test (suspend, resume, retention 3) runs verbatim.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backup_operator::api::{BackupPolicy, BackupRestore, RestorePhase, RunStatus};
use backup_operator::base::names::storage_dir;
use chrono::{Timelike, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use serde_json::json;
use support::operator::*;
use support::{TestCluster, TestNamespace};

/// A guard against hanging, not a timing assertion.
const RESTORE_LIMIT: Duration = Duration::from_secs(300);
const QUICK_START: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/samples/postgres.yaml");

/// kubectl in the test namespace: stdout, or the error output.
fn kubectl_ns(cluster: &TestCluster, ns: &TestNamespace, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(cluster.kubectl_path())
        .args(["-n", &ns.name])
        .args(args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("kubectl output");
    if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).into_owned()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

fn apply(cluster: &TestCluster, ns: &TestNamespace, yaml: &str) {
    kubectl_ns(cluster, ns, &["apply", "-f", "-"], Some(yaml)).expect("kubectl apply");
}

/// One SQL statement through `psql` in the pod, as `kubectl exec` runs it.
fn psql(cluster: &TestCluster, ns: &TestNamespace, pod: &str, sql: &str) -> Result<String, String> {
    kubectl_ns(cluster, ns, &["exec", pod, "--", "psql", "-U", "postgres", "-tAc", sql], None).map(|s| s.trim().to_owned())
}

async fn wait_postgres(cluster: &TestCluster, ns: &TestNamespace, pod: &str) {
    support::wait_condition(ns.api::<Pod>(), pod, "postgres pod running", LIMIT, conditions::is_pod_running()).await;
    poll("postgres accepting queries", LIMIT, || async { psql(cluster, ns, pod, "select 1").ok().filter(|s| s == "1") }).await;
}

/// Scales the StatefulSet and waits for its pod to be gone (0) or serving (1).
async fn scale(cluster: &TestCluster, ns: &TestNamespace, sts: &str, replicas: u32) {
    kubectl_ns(cluster, ns, &["scale", &format!("statefulset/{sts}"), &format!("--replicas={replicas}")], None).expect("scale");
    let pod = format!("{sts}-0");
    if replicas == 0 {
        support::wait_condition(ns.api::<Pod>(), &pod, "pod gone", LIMIT, |o: Option<&Pod>| o.is_none()).await;
    } else {
        wait_postgres(cluster, ns, &pod).await;
    }
}

/// The newest successful, verified backup of the PVC in the policy's status.
async fn wait_verified_backup(ns: &TestNamespace, policy: &str, pvc: &str, after: chrono::DateTime<Utc>) -> backup_operator::api::BackupRun {
    poll(&format!("a verified backup of {pvc} by {policy}"), LIMIT + Duration::from_secs(60), || async {
        status(ns, policy).await.backup_history.into_iter().find(|r| {
            r.pvc == pvc
                && r.status == RunStatus::Succeeded
                && r.verified == Some(true)
                && r.scheduled_time.as_ref().and_then(backup_operator::api::from_time).is_some_and(|t| t >= after)
        })
    })
    .await
}

async fn wait_restore(ns: &TestNamespace, name: &str) -> BackupRestore {
    poll(&format!("restore {name} finished"), RESTORE_LIMIT, || async {
        let r = ns.api::<BackupRestore>().get(name).await.ok()?;
        r.status.as_ref()?.phase.filter(|p| p.finished())?;
        Some(r)
    })
    .await
}

fn restore_reason(r: &BackupRestore) -> (Option<RestorePhase>, String, String) {
    let status = r.status.clone().unwrap_or_default();
    let condition = status.conditions.iter().find(|c| c.type_ == "Restored");
    (status.phase, condition.map(|c| c.reason.clone()).unwrap_or_default(), condition.map(|c| c.message.clone()).unwrap_or_default())
}

async fn create_restore(ns: &TestNamespace, name: &str, spec: serde_json::Value) {
    let restore: BackupRestore = serde_json::from_value(json!({
        "apiVersion": "backup.example.com/v1alpha1", "kind": "BackupRestore", "metadata": {"name": name}, "spec": spec
    }))
    .expect("restore");
    ns.api::<BackupRestore>().create(&PostParams::default(), &restore).await.expect("create restore");
}

async fn suspend(ns: &TestNamespace, policy: &str, suspend: bool) {
    ns.api::<BackupPolicy>().patch(policy, &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": suspend}}))).await.expect("suspend");
}

const ROWS: &str = "create table orders(id int primary key, item text); insert into orders select g, 'item ' || g from generate_series(1, 1000) g";

/// The Quick Start StatefulSet with 1,000 rows, and a verified backup of them taken while the
/// database runs, with a `CHECKPOINT` pre hook in its pod (spec.hooks) flushing everything to
/// the data files first. The policy is suspended afterwards, so that this backup stays the newest.
async fn database_with_backup(prefix: &str) -> Option<(TestCluster, TestNamespace, Operator, backup_operator::api::BackupRun)> {
    let (cluster, ns) = setup(prefix).await?;
    kubectl_ns(&cluster, &ns, &["apply", "-f", QUICK_START], None).expect("apply the Quick Start manifests");
    enable_hooks(&cluster, &ns);
    wait_postgres(&cluster, &ns, "postgres-0").await;
    psql(&cluster, &ns, "postgres-0", ROWS).expect("create rows");
    assert_eq!(psql(&cluster, &ns, "postgres-0", "select count(*) from orders").as_deref(), Ok("1000"));
    let operator = Operator::start(&cluster, &ns);
    let since = Utc::now();
    create_policy(&ns, "db-backup", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "postgres"}}, "backupStrategy": "tar", "retentionCount": 3,
        "hooks": {"pre": {"command": ["psql", "-U", "postgres", "-c", "CHECKPOINT"], "container": "postgres"}}
    }))
    .await
    .expect("policy");
    let backup = wait_verified_backup(&ns, "db-backup", "data-postgres-0", since).await;
    assert!(backup.message.contains("pre hook ok in") && backup.message.contains("(pod postgres-0)"), "the CHECKPOINT hook ran: {}", backup.message);
    suspend(&ns, "db-backup", true).await;
    wait_policy(&ns, "db-backup", "suspended", condition_is("Suspended", "True", "Suspended")).await;
    // A run that started before the suspension finishes first.
    poll("no active backup runs", LIMIT, || async {
        let active = jobs(&ns, "db-backup").await.iter().any(|j| j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0);
        (!active).then_some(())
    })
    .await;
    // That run, when it succeeded, is the newest verified backup now (restores take the newest):
    // it ran the same CHECKPOINT hook.
    let newest = status(&ns, "db-backup")
        .await
        .backup_history
        .into_iter()
        .filter(|r| r.pvc == "data-postgres-0" && r.status == RunStatus::Succeeded && r.verified == Some(true))
        .max_by_key(|r| r.scheduled_time.as_ref().map(|t| t.0.as_second()))
        .unwrap_or(backup);
    Some((cluster, ns, operator, newest))
}

#[tokio::test]
async fn a_dropped_table_comes_back_from_a_backup_restored_into_the_original_pvc() {
    let Some((cluster, ns, _operator, backup)) = database_with_backup("restore-pg").await else { return };
    psql(&cluster, &ns, "postgres-0", "drop table orders").expect("drop table");
    assert!(psql(&cluster, &ns, "postgres-0", "select count(*) from orders").is_err(), "the table is gone");

    // Restoring under a running database is refused, naming the pod.
    create_restore(&ns, "too-early", json!({"source": {"policy": "db-backup", "pvc": "data-postgres-0"}})).await;
    let (phase, reason, message) = restore_reason(&wait_restore(&ns, "too-early").await);
    assert_eq!((phase, reason.as_str()), (Some(RestorePhase::Failed), "TargetInUse"), "{message}");
    assert!(message.contains("postgres-0"), "{message}");

    scale(&cluster, &ns, "postgres", 0).await;
    // The README's commands.
    let started = Instant::now();
    apply(&cluster, &ns, "apiVersion: backup.example.com/v1alpha1\nkind: BackupRestore\nmetadata:\n  name: restore-db\nspec:\n  source:\n    policy: db-backup\n    pvc: data-postgres-0\n");
    kubectl_ns(&cluster, &ns, &["wait", "--for=jsonpath={.status.phase}=Succeeded", "br/restore-db", "--timeout=300s"], None).expect("restore succeeded");
    let took = started.elapsed();
    let listed = kubectl_ns(&cluster, &ns, &["get", "br"], None).expect("kubectl get br");
    assert!(listed.contains("PHASE") && listed.contains("restore-db") && listed.contains("Succeeded") && listed.contains(&backup.job_name), "{listed}");
    let restore = ns.api::<BackupRestore>().get("restore-db").await.expect("restore");
    let used = restore.status.clone().and_then(|s| s.backup).expect("the backup used");
    assert_eq!((used.run_name.as_str(), used.sha256.as_ref(), used.verified), (backup.job_name.as_str(), backup.sha256.as_ref(), true));
    support::measured(&format!(
        "restore: BackupRestore applied -> Succeeded in {:.1} s (PostgreSQL data directory, archive of {} bytes)",
        took.as_secs_f64(),
        backup.size_bytes.unwrap_or_default()
    ));

    scale(&cluster, &ns, "postgres", 1).await;
    assert_eq!(psql(&cluster, &ns, "postgres-0", "select count(*) from orders").as_deref(), Ok("1000"), "the rows are back");
    assert_eq!(psql(&cluster, &ns, "postgres-0", "select item from orders where id = 500").as_deref(), Ok("item 500"));
    ns.delete().await;
}

#[tokio::test]
async fn a_backup_restored_into_a_new_pvc_starts_a_second_database() {
    let Some((cluster, ns, _operator, backup)) = database_with_backup("restore-copy").await else { return };
    // The copy's claim is named as a StatefulSet `postgres-copy` with a `data` template names it,
    // so the second StatefulSet adopts the restored PVC.
    create_restore(&ns, "copy", json!({
        "source": {"policy": "db-backup", "pvc": "data-postgres-0", "runName": backup.job_name},
        "target": {"newClaim": {"name": "data-postgres-copy-0", "labels": {"app": "postgres-copy"}}}
    }))
    .await;
    let (phase, reason, message) = restore_reason(&wait_restore(&ns, "copy").await);
    assert_eq!((phase, reason.as_str()), (Some(RestorePhase::Succeeded), "Succeeded"), "{message}");
    let claim = ns.api::<PersistentVolumeClaim>().get("data-postgres-copy-0").await.expect("new claim");
    assert!(claim.owner_references().is_empty(), "deleting the restore must not delete the restored data");
    assert_eq!(claim.labels().get("app").map(String::as_str), Some("postgres-copy"));

    let manifest = std::fs::read_to_string(QUICK_START).expect("manifest");
    let statefulset = manifest.split("\n---\n").find(|d| d.contains("kind: StatefulSet")).expect("statefulset");
    let copy = statefulset.replace("name: postgres\n", "name: postgres-copy\n").replace("app: postgres\n", "app: postgres-copy\n").replace("serviceName: postgres", "serviceName: postgres-copy");
    apply(&cluster, &ns, &copy);
    wait_postgres(&cluster, &ns, "postgres-copy-0").await;
    assert_eq!(psql(&cluster, &ns, "postgres-copy-0", "select count(*) from orders").as_deref(), Ok("1000"), "the copy has the rows");
    // Two databases now: a write to the copy does not reach the original.
    psql(&cluster, &ns, "postgres-copy-0", "delete from orders").expect("delete in the copy");
    assert_eq!(psql(&cluster, &ns, "postgres-0", "select count(*) from orders").as_deref(), Ok("1000"));
    // Deleting the restore keeps the PVC.
    ns.api::<BackupRestore>().delete("copy", &DeleteParams::default()).await.expect("delete restore");
    support::wait_condition(ns.api::<BackupRestore>(), "copy", "restore deleted", LIMIT, |o: Option<&BackupRestore>| o.is_none()).await;
    assert!(ns.api::<PersistentVolumeClaim>().get_opt("data-postgres-copy-0").await.expect("get").is_some());
    ns.delete().await;
}

/// sha256 of every file under a directory, by relative path.
fn digests(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                let rel = path.strip_prefix(dir).expect("under dir").to_string_lossy().into_owned();
                out.insert(rel, format!("{:x}", sha2_digest(&bytes)));
            }
        }
    }
    out
}

fn sha2_digest(bytes: &[u8]) -> impl std::fmt::LowerHex {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
}

#[tokio::test]
async fn refused_and_failed_restores_leave_the_target_as_it_was() {
    let Some((cluster, ns)) = setup("restore-refused").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    let data = claim_dir(&ns, "data-db-0").await;
    std::fs::write(data.join("table.txt"), "rows at backup time\n").expect("write data");
    let hostile = std::fs::read(support::built_plugins("tests/plugins").join("hostile_plugin.wasm")).expect("hostile plugin");
    plugin_configmap(&ns, "hostile", &hostile).await;
    let _operator = Operator::start(&cluster, &ns);
    let since = Utc::now();
    create_policy(&ns, "files", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    // A custom strategy whose Jobs verify nothing and which plans no restores.
    create_policy(&ns, "unverified", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupStrategy": "custom",
        "plugin": {"configMapRef": {"name": "hostile", "key": "plugin.wasm"}, "config": {"attack": "fail-one"}}
    }))
    .await
    .expect("policy");
    let good = wait_verified_backup(&ns, "files", "data-db-0", since).await;
    poll("an unverified backup", LIMIT, || async {
        status(&ns, "unverified").await.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded && r.verified == Some(false))
    })
    .await;

    // The application writes on after the backup, and keeps the claim mounted.
    std::fs::write(data.join("table.txt"), "rows written after the backup\n").expect("write data");
    mount_pod(&ns, "db-0", "data-db-0").await;
    let before = digests(&data);

    let cases = [
        ("in-use", json!({"source": {"policy": "files", "pvc": "data-db-0"}}), "TargetInUse", "db-0"),
        ("no-policy", json!({"source": {"policy": "nope", "pvc": "data-db-0"}}), "BackupNotFound", "nope"),
        ("no-pvc", json!({"source": {"policy": "files", "pvc": "data-db-9"}}), "BackupNotFound", "data-db-9"),
        ("no-run", json!({"source": {"policy": "files", "pvc": "data-db-0", "runName": "files-data-db-0-1"}}), "BackupNotFound", &good.job_name),
        ("unverified", json!({"source": {"policy": "unverified", "pvc": "data-db-0"}, "allowInUse": true}), "BackupNotVerified", "allowUnverified"),
        ("no-restore-plan", json!({"source": {"policy": "unverified", "pvc": "data-db-0"}, "allowInUse": true, "allowUnverified": true}), "PluginFailed", "does not support restore"),
    ];
    for (name, spec, _, _) in &cases {
        create_restore(&ns, name, spec.clone()).await;
    }
    for (name, _, want_reason, want_text) in &cases {
        let (phase, reason, message) = restore_reason(&wait_restore(&ns, name).await);
        assert_eq!((phase, reason.as_str()), (Some(RestorePhase::Failed), *want_reason), "{name}: {message}");
        assert!(message.contains(want_text), "{name}: {message}");
        event_reasons(&cluster, &ns, name, &[*want_reason]).await;
    }
    assert_eq!(digests(&data), before, "no refused restore touched the target");
    let restore_jobs = ns.api::<Job>().list(&ListParams::default().labels("backup.example.com/kind=restore")).await.expect("jobs").items;
    assert!(restore_jobs.is_empty(), "refusals start no Job: {:?}", restore_jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>());

    // A corrupted archive: the restore Job checks it before touching the target, and fails.
    ns.api::<Pod>().delete("db-0", &DeleteParams::default().grace_period(0)).await.expect("stop the app");
    support::wait_condition(ns.api::<Pod>(), "db-0", "app gone", LIMIT, |o: Option<&Pod>| o.is_none()).await;
    let storage = claim_dir(&ns, "backup-storage").await.join(storage_dir(&ns.name, "files", "data-db-0"));
    let artifact = good.artifact.clone().expect("artifact");
    let file = storage.join(Path::new(&artifact).file_name().expect("file name"));
    let mut bytes = std::fs::read(&file).expect("archive");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, &bytes).expect("corrupt the archive");
    let archive_digest = digests(&storage);
    create_restore(&ns, "corrupted", json!({"source": {"policy": "files", "pvc": "data-db-0", "runName": good.job_name}})).await;
    let (phase, reason, message) = restore_reason(&wait_restore(&ns, "corrupted").await);
    assert_eq!((phase, reason.as_str()), (Some(RestorePhase::Failed), "RestoreFailed"), "{message}");
    assert!(message.contains("sha256") && message.contains("not touched"), "{message}");
    assert_eq!(digests(&data), before, "the failed restore left the target's files unchanged");
    let after: BTreeMap<String, String> = digests(&storage).into_iter().filter(|(k, _)| archive_digest.contains_key(k)).collect();
    assert_eq!(after, archive_digest, "a restore never changes a backup");
    ns.delete().await;
}

/// Successful backup Jobs of the policy, by name.
async fn successful_jobs(ns: &TestNamespace, policy: &str) -> Vec<String> {
    let mut names: Vec<String> = jobs(ns, policy)
        .await
        .into_iter()
        .filter(|j| j.labels().get("backup.example.com/kind").map(String::as_str) == Some("backup"))
        .filter(|j| j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0)
        .map(|j| j.name_any())
        .collect();
    names.sort();
    names
}

/// The specification's manual test, verbatim: the Quick Start StatefulSet, a `test-backup` policy,
/// a Job appears, the status shows it, suspending stops new Jobs, and after resuming exactly three
/// successful backups of the PVC remain, as Jobs and as archives.
#[tokio::test]
async fn the_specifications_manual_test_suspend_resume_and_retention_of_three() {
    let Some((cluster, ns)) = setup("quick-start").await else { return };
    kubectl_ns(&cluster, &ns, &["apply", "-f", QUICK_START], None).expect("apply the Quick Start manifests");
    wait_postgres(&cluster, &ns, "postgres-0").await;
    let _operator = Operator::start(&cluster, &ns);
    apply(&cluster, &ns, "apiVersion: backup.example.com/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: test-backup\nspec:\n  schedule: \"*/1 * * * *\"\n  pvcSelector:\n    matchLabels:\n      app: postgres\n  backupStrategy: tar\n  retentionCount: 3\n");

    // kubectl get jobs -l backup-policy=test-backup
    let first = poll("a Job with backup-policy=test-backup", LIMIT, || async {
        let out = kubectl_ns(&cluster, &ns, &["get", "jobs", "-l", "backup-policy=test-backup", "-o", "name"], None).ok()?;
        out.lines().next().map(|l| l.trim_start_matches("job.batch/").to_owned())
    })
    .await;
    // kubectl describe backuppolicy test-backup
    poll("the run in the status", LIMIT, || async {
        let described = kubectl_ns(&cluster, &ns, &["describe", "backuppolicy", "test-backup"], None).ok()?;
        (described.contains(&first) && described.contains("Succeeded") && described.contains("Last Successful Time")).then_some(())
    })
    .await;

    // suspend: true stops new Jobs over the following minutes.
    kubectl_ns(&cluster, &ns, &["patch", "backuppolicy", "test-backup", "--type=merge", "-p", r#"{"spec":{"suspend":true}}"#], None).expect("suspend");
    wait_policy(&ns, "test-backup", "suspended", condition_is("Suspended", "True", "Suspended")).await;
    poll("no active backup runs", LIMIT, || async {
        let active = jobs(&ns, "test-backup").await.iter().any(|j| j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0);
        (!active).then_some(())
    })
    .await;
    let at_suspend = jobs(&ns, "test-backup").await.len();
    // Two scheduled minutes pass while suspended (watching the clock: what is tested is that
    // nothing happens at those times).
    let now = Utc::now();
    let until = now.with_second(5).unwrap_or(now) + chrono::Duration::minutes(2);
    while Utc::now() < until {
        assert_eq!(jobs(&ns, "test-backup").await.len(), at_suspend, "a Job was created while suspended");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // Resume; several minutes later exactly three successful backups remain.
    kubectl_ns(&cluster, &ns, &["patch", "backuppolicy", "test-backup", "--type=merge", "-p", r#"{"spec":{"suspend":false}}"#], None).expect("resume");
    let resumed = Utc::now();
    // "should see only 3 most recent jobs", at whatever moment one looks: sampled every second
    // from minute 3 to minute 5 after resuming; more than 3 only within 2 s of a Job's creation.
    let sampler = {
        let (kubeconfig, kubectl, namespace, client) = (cluster.kubeconfig.clone(), cluster.kubectl_path(), ns.name.clone(), ns.client.clone());
        tokio::spawn(async move {
            let (from, until) = (resumed + chrono::Duration::minutes(3), resumed + chrono::Duration::minutes(5));
            while Utc::now() < from {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let (mut samples, mut over) = (0usize, Vec::new());
            while Utc::now() < until {
                let at = Utc::now();
                let out = std::process::Command::new(&kubectl)
                    .args(["-n", &namespace, "get", "jobs", "-l", "backup-policy=test-backup", "--no-headers"])
                    .env("KUBECONFIG", &kubeconfig)
                    .output()
                    .expect("kubectl get jobs");
                let listed = String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count();
                samples += 1;
                if listed > 3 {
                    // Every backup Job of the policy, listed or not, for its creation time
                    // (whole seconds: a Job created at :00.9 shows :00).
                    let all = kube::Api::<Job>::namespaced(client.clone(), &namespace).list(&ListParams::default().labels("backup.example.com/kind=backup")).await.expect("jobs").items;
                    let newest = all.iter().filter_map(|j| j.metadata.creation_timestamp.as_ref().and_then(backup_operator::api::from_time)).filter(|t| *t <= at).max();
                    let young = newest.is_some_and(|t| (at - t).num_milliseconds() < 3000);
                    if !young {
                        over.push(format!("{listed} Jobs listed at {at}, newest created {newest:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (samples, over)
        })
    };
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let storage = claim_dir(&ns, "backup-storage").await.join(storage_dir(&ns.name, "test-backup", "data-postgres-0"));
    let remaining = poll("three newer backups, and retention down to three", Duration::from_secs(600), || {
        let (ns, storage, seen) = (&ns, &storage, &seen);
        async move {
            let succeeded = successful_jobs(ns, "test-backup").await;
            let seen = { let mut s = seen.lock().expect("seen"); s.extend(succeeded.iter().cloned()); s.len() };
            let newer = status(ns, "test-backup").await.backup_history.iter().filter(|r| {
                r.status == RunStatus::Succeeded && r.scheduled_time.as_ref().and_then(backup_operator::api::from_time).is_some_and(|t| t > resumed)
            }).count();
            let archives: Vec<String> = std::fs::read_dir(storage).ok()?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".tar.gz")).collect();
            (newer >= 3 && seen > 3 && succeeded.len() == 3 && archives.len() == 3).then_some((succeeded, archives))
        }
    })
    .await;
    assert!(!remaining.0.contains(&first), "the oldest backup was pruned");
    let (samples, over) = sampler.await.expect("sampler");
    assert!(samples >= 60, "sampled {samples} times");
    assert!(over.is_empty(), "more than retentionCount Jobs listed outside the 2 s after a creation: {over:?}");
    support::measured(&format!("quick start: kubectl get jobs -l backup-policy=test-backup sampled {samples} times in minutes 3-5: never more than 3 Jobs outside the 2 s after a creation"));
    let made = seen.lock().map(|s| s.len()).unwrap_or_default();
    support::measured(&format!("quick start: {made} successful backups made, {} kept (Jobs {:?})", remaining.0.len(), remaining.0));
    ns.delete().await;
}

/// Two restores of one backup into one PVC, created at the same moment: one takes the claim's lock
/// and restores; the other fails with TargetBusy before any Job of its own, and the target holds
/// exactly the backup's files. The lock is released afterwards, and no work directory is left.
#[tokio::test]
async fn two_restores_into_one_pvc_one_restores_and_the_other_never_touches_it() {
    let Some((cluster, ns)) = setup("restore-twice").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    let data = claim_dir(&ns, "data-db-0").await;
    std::fs::create_dir_all(data.join("base")).expect("mkdir");
    for i in 0..5 {
        std::fs::write(data.join(format!("base/table-{i}")), format!("rows of table {i}\n").repeat(20_000)).expect("write data");
    }
    let at_backup = digests(&data);
    let _operator = Operator::start(&cluster, &ns);
    let since = Utc::now();
    create_policy(&ns, "files", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    let backup = wait_verified_backup(&ns, "files", "data-db-0", since).await;
    suspend(&ns, "files", true).await;
    wait_policy(&ns, "files", "suspended", condition_is("Suspended", "True", "Suspended")).await;
    poll("no active backup runs", LIMIT, || async {
        let active = jobs(&ns, "files").await.iter().any(|j| j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0);
        (!active).then_some(())
    })
    .await;
    // Written after the backup: a restore removes it.
    std::fs::write(data.join("written-later"), "after the backup\n").expect("write data");

    let spec = json!({"source": {"policy": "files", "pvc": "data-db-0", "runName": backup.job_name}});
    futures::join!(create_restore(&ns, "first", spec.clone()), create_restore(&ns, "second", spec));
    let results = [restore_reason(&wait_restore(&ns, "first").await), restore_reason(&wait_restore(&ns, "second").await)];
    let succeeded: Vec<_> = results.iter().filter(|(p, _, _)| *p == Some(RestorePhase::Succeeded)).collect();
    let busy: Vec<_> = results.iter().filter(|(p, r, _)| *p == Some(RestorePhase::Failed) && r == "TargetBusy").collect();
    assert_eq!((succeeded.len(), busy.len()), (1, 1), "{results:?}");
    assert!(busy[0].2.contains("did not touch"), "{}", busy[0].2);
    support::measured(&format!("observed: two restores into one PVC: {:?} {} / {:?} {}: {}", succeeded[0].0, succeeded[0].1, busy[0].0, busy[0].1, busy[0].2));
    let restore_jobs = ns.api::<Job>().list(&ListParams::default().labels("backup.example.com/kind=restore")).await.expect("jobs").items;
    assert_eq!(restore_jobs.len(), 1, "one restore Job: {:?}", restore_jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>());
    assert_eq!(digests(&data), at_backup, "the target holds the backup's files, whole");
    let leftovers: Vec<String> = std::fs::read_dir(&data).expect("read").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".backup-restore")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    poll("the lock released", LIMIT, || async {
        let pvc = ns.api::<PersistentVolumeClaim>().get("data-db-0").await.ok()?;
        (!pvc.annotations().contains_key("backup.example.com/restore-lock")).then_some(())
    })
    .await;
    event_reasons(&cluster, &ns, if results[0].0 == Some(RestorePhase::Failed) { "first" } else { "second" }, &["TargetBusy"]).await;
    ns.delete().await;
}
