//! Runs belong to the host, on the real test cluster with the operator binary: a plugin failing
//! for one PVC does not stop the others, a run's Job sees only its own directory of the storage
//! claim, retention frees the storage but never the newest success, verification finds a
//! corrupted archive, and `deletionPolicy: Delete` leaves nothing of the policy behind.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use backup_operator::api::{BackupPolicy, RunStatus};
use backup_operator::base::names::storage_dir;
use chrono::{Timelike, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::wait::conditions;
use kube::ResourceExt;
use serde_json::json;
use support::operator::*;

/// Long enough for several scheduled runs; a guard against hanging, not a timing assertion.
const RUNS_LIMIT: Duration = Duration::from_secs(900);

fn hostile_plugin() -> Vec<u8> {
    let dir = support::built_plugins("tests/plugins");
    std::fs::read(dir.join("hostile_plugin.wasm")).expect("hostile plugin built")
}

/// Files in a PVC's backup directory on the storage claim, by name.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    names.sort();
    names
}

fn archives(dir: &Path) -> Vec<String> {
    listing(dir).into_iter().filter(|n| n.ends_with(".tar.gz")).collect()
}

fn history(status: &backup_operator::api::BackupPolicyStatus, pvc: &str) -> Vec<backup_operator::api::BackupRun> {
    status.backup_history.iter().filter(|r| r.pvc == pvc).cloned().collect()
}

#[tokio::test]
async fn a_plugin_failing_for_one_of_three_pvcs_leaves_the_others_their_jobs_and_records_the_failure() {
    let Some((cluster, ns)) = setup("per-pvc-outcome").await else { return };
    for pvc in ["data-db-0", "data-db-1", "data-db-2"] {
        claim(&ns, pvc, json!({"app": "db"})).await;
    }
    claim(&ns, "backup-storage", json!({})).await;
    // data-db-0 is in use by a running pod: its Job must run on that pod's node.
    mount_pod(&ns, "db-0", "data-db-0").await;
    plugin_configmap(&ns, "hostile", &hostile_plugin()).await;
    create_policy(&ns, "fail-one", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupStrategy": "custom",
        "plugin": {"configMapRef": {"name": "hostile", "key": "plugin.wasm"}, "config": {"attack": "fail-one"}}
    }))
    .await
    .expect("policy");
    let _operator = Operator::start(&cluster, &ns);

    let status = poll("a run with a recorded failure", LIMIT, || async {
        let s = status(&ns, "fail-one").await;
        (s.last_schedule_time.is_some() && s.backup_history.iter().any(|r| r.pvc == "data-db-1")).then_some(s)
    })
    .await;
    let failed = history(&status, "data-db-1").remove(0);
    assert_eq!((failed.status, failed.reason.as_deref(), failed.not_started), (RunStatus::Failed, Some("PluginFailed"), true), "{failed:?}");
    assert!(failed.message.contains("refusing data-db-1 on purpose") && failed.message.contains("sha256"), "plugin, digest and reason: {failed:?}");
    assert!(failed.plugin.as_deref().is_some_and(|p| p.starts_with("configmap/")), "{failed:?}");

    // The other two PVCs have their Jobs for that very run, named by the host.
    let scheduled = failed.scheduled_time.clone().expect("scheduled time");
    let jobs = ns.api::<Job>().list(&ListParams::default().labels("backup-policy=fail-one")).await.expect("jobs").items;
    let mut covered: Vec<String> = jobs
        .iter()
        .filter(|j| j.annotations().get("backup.example.com/scheduled-time").map(String::as_str) == Some(&scheduled.0.to_string()))
        .map(|j| j.labels()["pvc"].clone())
        .collect();
    covered.sort();
    assert_eq!(covered, ["data-db-0", "data-db-2"], "{:?}", jobs.iter().map(ResourceExt::name_any).collect::<Vec<_>>());
    for job in &jobs {
        assert_eq!(job.annotations()["backup.example.com/run"], job.name_any(), "every object of a run carries its name");
    }
    // A ReadWriteOnce claim in use: the Job goes where the claim is attached.
    let node = ns.api::<Pod>().get("db-0").await.expect("pod").spec.and_then(|s| s.node_name).expect("node");
    let db0 = jobs.iter().find(|j| j.labels()["pvc"] == "data-db-0").expect("data-db-0 job");
    let affinity = serde_json::to_value(db0.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|p| p.affinity.clone())).expect("json");
    assert_eq!(affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchFields"][0]["values"][0], node.as_str());
    let db2 = jobs.iter().find(|j| j.labels()["pvc"] == "data-db-2").expect("data-db-2 job");
    assert!(db2.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|p| p.affinity.clone()).is_none(), "an unused claim runs anywhere");

    // The failure stays on the policy and went out as a Warning event.
    wait_policy(&ns, "fail-one", "Ready=False PluginFailed", condition_is("Ready", "False", "PluginFailed")).await;
    event_reasons(&cluster, &ns, "fail-one", &["PluginFailed", "RunStarted"]).await;
    ns.delete().await;
}

#[tokio::test]
async fn a_custom_plugin_job_cannot_reach_another_policys_backups() {
    let Some((cluster, ns)) = setup("confined").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    std::fs::write(claim_dir(&ns, "data-db-0").await.join("table"), "rows\n").expect("write data");
    create_policy(&ns, "victim", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    let _operator = Operator::start(&cluster, &ns);
    let storage = claim_dir(&ns, "backup-storage").await;
    let victim_dir = storage.join(storage_dir(&ns.name, "victim", "data-db-0"));
    poll("the victim's first archive", LIMIT, || async { (!archives(&victim_dir).is_empty()).then_some(()) }).await;
    // Something outside every policy's directory too.
    std::fs::write(storage.join("unrelated.tar.gz"), "keep me\n").expect("write");
    let before = listing(&victim_dir);

    plugin_configmap(&ns, "hostile", &hostile_plugin()).await;
    create_policy(&ns, "attacker", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupStrategy": "custom",
        "plugin": {"configMapRef": {"name": "hostile", "key": "plugin.wasm"}, "config": {"attack": "escape"}}
    }))
    .await
    .expect("policy");
    let attack = poll("the attacker's Job", LIMIT, || async {
        let jobs = ns.api::<Job>().list(&ListParams::default().labels("backup-policy=attacker")).await.expect("jobs").items;
        jobs.into_iter().next()
    })
    .await;
    support::wait_condition(ns.api::<Job>(), &attack.name_any(), "attacker's Job finished", LIMIT, conditions::is_job_completed()).await;
    let mounts = attack.spec.and_then(|s| s.template.spec).map(|p| p.containers[0].volume_mounts.clone().unwrap_or_default()).unwrap_or_default();
    let backup_mount = mounts.iter().find(|m| m.name == "backup").expect("backup mount");
    assert_eq!(backup_mount.sub_path.as_deref(), Some(storage_dir(&ns.name, "attacker", "data-db-0").as_str()));

    let after = listing(&victim_dir);
    assert!(after.len() >= before.len() && before.iter().all(|f| after.contains(f)), "the victim's backups are intact: {before:?} -> {after:?}");
    for name in before.iter().filter(|n| n.ends_with(".sha256")) {
        let check = std::process::Command::new("sha256sum").args(["-c", name]).current_dir(&victim_dir).output().expect("sha256sum");
        assert!(check.status.success(), "{name} still verifies");
    }
    assert_eq!(std::fs::read_to_string(storage.join("unrelated.tar.gz")).expect("unrelated file"), "keep me\n");
    ns.delete().await;
}

#[tokio::test]
async fn retention_frees_archives_and_never_prunes_the_newest_success() {
    let Some((cluster, ns)) = setup("prune").await else { return };
    for pvc in ["data-db-0", "data-db-1"] {
        claim(&ns, pvc, json!({"app": "db"})).await;
        std::fs::write(claim_dir(&ns, pvc).await.join("table"), format!("rows of {pvc}\n")).expect("write data");
    }
    claim(&ns, "backup-storage", json!({})).await;
    create_policy(&ns, "keep-two", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "retentionCount": 2, "backoffLimit": 0
    }))
    .await
    .expect("policy");
    let _operator = Operator::start(&cluster, &ns);
    let storage = claim_dir(&ns, "backup-storage").await;
    let dirs: Vec<_> = ["data-db-0", "data-db-1"].iter().map(|p| storage.join(storage_dir(&ns.name, "keep-two", p))).collect();

    // Watch the runs go by until 5 runs of each PVC have succeeded.
    let mut succeeded: BTreeSet<String> = BTreeSet::new();
    let started = Instant::now();
    while succeeded.len() < 10 || !dirs.iter().all(|d| archives(d).len() == 2) {
        assert!(started.elapsed() < RUNS_LIMIT, "gave up waiting for 5 runs; seen {succeeded:?}");
        for job in ns.api::<Job>().list(&ListParams::default().labels("backup-policy=keep-two,backup.example.com/kind=backup")).await.expect("jobs").items {
            if job.status.as_ref().and_then(|s| s.completion_time.as_ref()).is_some() {
                succeeded.insert(job.name_any());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A settled moment (between a prune finishing and the next run): what the history lists is what
    // is on disk, 2 archives and their checksums per PVC.
    let recorded = poll("history and disk agree", RUNS_LIMIT, || async {
        let s = status(&ns, "keep-two").await;
        let consistent = ["data-db-0", "data-db-1"].iter().zip(&dirs).all(|(pvc, dir)| {
            let mut listed: Vec<String> = history(&s, pvc)
                .iter()
                .filter(|r| r.status == RunStatus::Succeeded && r.sha256.is_some())
                .filter_map(|r| r.artifact.as_ref().and_then(|a| a.rsplit('/').next().map(str::to_owned)))
                .collect();
            listed.sort();
            listed.len() == 2 && listed == archives(dir) && listing(dir).len() == 4
        });
        consistent.then_some(s)
    })
    .await;
    let lags: Vec<i64> = recorded
        .backup_history
        .iter()
        .filter_map(|r| Some(r.completion_time.as_ref()?.0.as_second() - r.scheduled_time.as_ref()?.0.as_second()))
        .collect();
    for run in recorded.backup_history.iter().filter(|r| r.status == RunStatus::Succeeded) {
        let artifact = run.artifact.clone().expect("artifact");
        let on_disk = storage.join(&artifact);
        let bytes = std::fs::metadata(&on_disk).map(|m| m.len()).unwrap_or(0);
        let sum = std::fs::read_to_string(format!("{}.sha256", on_disk.display())).unwrap_or_default();
        assert_eq!(run.size_bytes, Some(bytes), "{run:?}");
        assert!(sum.starts_with(run.sha256.as_deref().unwrap_or("-")), "{run:?} vs {sum}");
        assert_eq!(run.verified, Some(true));
    }
    let newest: BTreeMap<String, String> = ["data-db-0", "data-db-1"]
        .iter()
        .map(|p| (p.to_string(), history(&recorded, p).into_iter().find(|r| r.status == RunStatus::Succeeded).and_then(|r| r.artifact).expect("newest success")))
        .collect();
    support::measured(&format!("scheduled minute -> verified history entry (s, per run): {lags:?}"));

    // Now every run fails (busybox tar has no -X): three failures later the newest success is kept.
    ns.api::<BackupPolicy>()
        .patch("keep-two", &PatchParams::default(), &Patch::Merge(json!({"spec": {"plugin": {"config": {"exclude": ["cache"]}}}})))
        .await
        .expect("break the backups");
    let mut failures: BTreeSet<String> = BTreeSet::new();
    let started = Instant::now();
    while failures.len() < 6 {
        assert!(started.elapsed() < RUNS_LIMIT, "gave up waiting for 3 failed runs; seen {failures:?}");
        for job in ns.api::<Job>().list(&ListParams::default().labels("backup-policy=keep-two,backup.example.com/kind=backup")).await.expect("jobs").items {
            if job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Failed" && c.status == "True")) {
                failures.insert(job.name_any());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_policy(&ns, "keep-two", "Ready=False BackupFailed", condition_is("Ready", "False", "BackupFailed")).await;
    assert!(status(&ns, "keep-two").await.last_successful_time.is_some());
    for (pvc, artifact) in &newest {
        assert!(storage.join(artifact).exists(), "the newest success of {pvc} is never pruned: {artifact}");
        let dir = storage.join(storage_dir(&ns.name, "keep-two", pvc));
        assert_eq!(archives(&dir).len(), 2, "{:?}", listing(&dir));
    }
    event_reasons(&cluster, &ns, "keep-two", &["Pruned", "RunSucceeded", "RunFailed"]).await;
    let notes = support::kubectl(&cluster, &["-n", &ns.name, "get", "events", "--field-selector", "reason=Pruned", "-o", "jsonpath={range .items[*]}{.message}{.note}{\"\\n\"}{end}"]);
    let pruned: Vec<&str> = notes.lines().filter_map(|l| l.rsplit(", ").next()?.strip_suffix(" s)")).collect();
    support::measured(&format!("prune Job durations from the Pruned events (s): {pruned:?}"));
    ns.delete().await;
}

#[tokio::test]
async fn a_corrupted_archive_is_reported_by_the_next_verification() {
    let Some((cluster, ns)) = setup("verify").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    std::fs::write(claim_dir(&ns, "data-db-0").await.join("table"), "x".repeat(10_000)).expect("write data");
    // One backup (at the next full minute), verified every minute.
    let now = Utc::now();
    let at = if now.second() < 45 { now + chrono::Duration::minutes(1) } else { now + chrono::Duration::minutes(2) };
    create_policy(&ns, "checked", json!({
        "schedule": format!("{} * * * *", at.minute()), "pvcSelector": {"matchLabels": {"app": "db"}},
        "verify": {"schedule": "*/1 * * * *", "newest": 1}
    }))
    .await
    .expect("policy");
    let _operator = Operator::start(&cluster, &ns);
    let good = poll("a backup re-verified as good", RUNS_LIMIT, || async {
        let s = status(&ns, "checked").await;
        s.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded && r.last_verify_time.is_some() && r.verified == Some(true))
    })
    .await;
    let archive = claim_dir(&ns, "backup-storage").await.join(good.artifact.clone().expect("artifact"));
    let mut bytes = std::fs::read(&archive).expect("archive");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&archive, bytes).expect("corrupt the archive");

    wait_policy(&ns, "checked", "Ready=False BackupCorrupted", condition_is("Ready", "False", "BackupCorrupted")).await;
    let status = status(&ns, "checked").await;
    let entry = status.backup_history.iter().find(|r| r.job_name == good.job_name).expect("entry");
    assert_eq!(entry.verified, Some(false), "{entry:?}");
    assert!(entry.message.contains("sha256"), "the reason is on the entry: {entry:?}");
    event_reasons(&cluster, &ns, "checked", &["BackupCorrupted"]).await;
    let describe = support::kubectl(&cluster, &["-n", &ns.name, "describe", "bp", "checked"]);
    support::measured(&format!("kubectl describe bp for a corrupted archive:\n{describe}"));
    assert!(describe.contains("BackupCorrupted"), "{describe}");
    ns.delete().await;
}

#[tokio::test]
async fn deletion_policy_delete_removes_every_archive_and_retain_keeps_them() {
    let Some((cluster, ns)) = setup("deletion").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    std::fs::write(claim_dir(&ns, "data-db-0").await.join("table"), "rows\n").expect("write data");
    let selector = json!({"matchLabels": {"app": "db"}});
    create_policy(&ns, "gone", json!({"schedule": "*/1 * * * *", "pvcSelector": selector, "deletionPolicy": "Delete"})).await.expect("policy");
    create_policy(&ns, "kept", json!({"schedule": "*/1 * * * *", "pvcSelector": selector})).await.expect("policy");
    let _operator = Operator::start(&cluster, &ns);
    let storage = claim_dir(&ns, "backup-storage").await;
    let gone = storage.join(&ns.name).join("gone");
    let kept = storage.join(storage_dir(&ns.name, "kept", "data-db-0"));
    poll("an archive of each policy", LIMIT, || async {
        (!archives(&gone.join("data-db-0")).is_empty() && !archives(&kept).is_empty()).then_some(())
    })
    .await;
    let policies = ns.api::<BackupPolicy>();
    assert!(policies.get("gone").await.expect("policy").finalizers().iter().any(|f| f == "backup.example.com/prune-artifacts"));
    policies.delete("gone", &DeleteParams::default()).await.expect("delete");
    policies.delete("kept", &DeleteParams::default()).await.expect("delete");
    for name in ["gone", "kept"] {
        support::wait_condition(policies.clone(), name, &format!("policy {name} gone"), RUNS_LIMIT, |o: Option<&BackupPolicy>| o.is_none()).await;
    }
    assert!(!gone.exists(), "deletionPolicy Delete leaves no directory of the policy: {:?}", listing(&gone));
    assert!(!archives(&kept).is_empty(), "Retain (the default) keeps the archives: {:?}", listing(&kept));
    ns.delete().await;
}
