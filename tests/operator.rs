//! The operator binary against the real test cluster: admission validation, one Job per matched
//! PVC per run, no duplicates across restarts, suspend and resume, retention, and not-ready reasons.
//! Each test runs its own operator process, scoped to the test's namespace.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use backup_operator::api::{BackupPolicy, RunStatus};
use chrono::{DateTime, Timelike, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use kube::{Api, ResourceExt};
use serde_json::json;
use support::TestNamespace;
use support::operator::*;

/// Waits until the policy has at least `n` Jobs (a run's Jobs are created one PVC after another).
async fn wait_jobs(ns: &TestNamespace, policy: &str, n: usize) -> Vec<Job> {
    poll(&format!("{n} Jobs of {policy}"), LIMIT, || async {
        let all = jobs(ns, policy).await;
        (all.len() >= n).then_some(all)
    })
    .await
}

#[tokio::test]
async fn the_api_server_rejects_invalid_specs() {
    let Some((_cluster, ns)) = setup("admission").await else { return };
    // Nobody loosens the CRD while this test relies on its validation.
    let _lock = crd_lock();
    let base = json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}});
    let with = |k: &str, v: serde_json::Value| {
        let mut s = base.clone();
        s[k] = v;
        s
    };
    let cases = [
        ("bad strategy", with("backupStrategy", json!("rsync"))),
        ("retention 0", with("retentionCount", json!(0))),
        ("bad concurrency policy", with("concurrencyPolicy", json!("Sometimes"))),
        ("no schedule", json!({"pvcSelector": {"matchLabels": {"app": "db"}}})),
        ("no selector", json!({"schedule": "*/1 * * * *"})),
        ("bad sha256 pin", with("plugin", json!({"sha256": "abc"}))),
        ("retention past u32", with("retentionCount", json!(4294967296u64))),
        ("retention over the maximum", with("retentionCount", json!(1001))),
        ("failed history over the maximum", with("failedJobsHistoryLimit", json!(4294967296u64))),
        ("backoff limit past i32", with("backoffLimit", json!(4294967296u64))),
        ("deadline over 30 days", with("activeDeadlineSeconds", json!(2592001))),
        ("start timeout under 10 s", with("startTimeoutSeconds", json!(1))),
        ("root as the policy's user", with("podSecurityContext", json!({"runAsUser": 0}))),
        ("bad deletion policy", with("deletionPolicy", json!("Shred"))),
    ];
    for (i, (what, spec)) in cases.into_iter().enumerate() {
        match post_raw_policy(&ns, &format!("bad-{i}"), spec).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 422, "{what}: {s:?}"),
            other => panic!("{what}: expected a 422 rejection, got {other:?}"),
        }
    }
    // Defaults come from the schema.
    let created = create_policy(&ns, "defaults", base).await.expect("valid policy");
    let spec = serde_json::to_value(&created.spec).expect("spec");
    assert_eq!(spec["backupStrategy"], "tar");
    assert_eq!(spec["retentionCount"], 7);
    assert_eq!(spec["backupImage"], "busybox:latest");
    assert_eq!(spec["backupStorageClaim"], "backup-storage");
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    assert_eq!(spec["suspend"], false);
    ns.delete().await;
}

#[tokio::test]
async fn every_minute_one_verified_job_per_matched_pvc_with_the_public_labels() {
    let Some((cluster, ns)) = setup("per-pvc").await else { return };
    volumes(&ns).await;
    let policy = create_policy(&ns, "db-backup", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}}))
        .await
        .expect("create policy");
    let _operator = Operator::start(&cluster, &ns);
    wait_policy(&ns, "db-backup", "Ready=True", condition_is("Ready", "True", "Scheduled")).await;
    wait_runs(&ns, "db-backup", 1).await;
    // Both PVCs' Jobs of the run (created one after the other).
    let all = wait_jobs(&ns, "db-backup", 2).await;
    let mut pvcs: Vec<String> = all.iter().map(|j| j.labels()["pvc"].clone()).collect();
    pvcs.sort();
    assert_eq!(pvcs, ["data-db-0", "data-db-1"], "one Job per matched PVC, none for cache-0");
    for job in &all {
        assert_eq!(job.labels()["backup-policy"], "db-backup");
        let owner = &job.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("BackupPolicy", policy.uid().expect("uid").as_str(), Some(true)));
        let spec = job.spec.as_ref().expect("spec");
        assert_eq!(spec.template.spec.as_ref().and_then(|p| p.restart_policy.as_deref()), Some("Never"));
    }
    // The kubectl command of the README finds them.
    let kubectl = support::kubectl(&cluster, &["-n", &ns.name, "get", "jobs", "-l", "backup-policy=db-backup", "-o", "name"]);
    assert_eq!(kubectl.lines().count(), 2, "{kubectl}");

    for job in &all {
        support::wait_condition(ns.api::<Job>(), &job.name_any(), "job complete", LIMIT, conditions::is_job_completed()).await;
    }
    wait_policy(&ns, "db-backup", "lastSuccessfulTime and history", |o: Option<&BackupPolicy>| {
        o.and_then(|p| p.status.as_ref()).is_some_and(|s| {
            s.last_successful_time.is_some() && s.backup_history.iter().filter(|r| r.status == RunStatus::Succeeded).count() >= 2
        })
    })
    .await;
    let status = ns.api::<BackupPolicy>().get("db-backup").await.expect("policy").status.expect("status");
    assert!(status.last_schedule_time.is_some() && status.next_schedule_time.is_some());
    assert_eq!(status.observed_generation, Some(1));
    let succeeded = status.backup_history.iter().find(|r| r.status == RunStatus::Succeeded).expect("a succeeded run");
    assert!(succeeded.message.contains(".tar.gz"), "the message names the verified archive: {succeeded:?}");
    ns.delete().await;
}

#[tokio::test]
async fn killing_and_restarting_the_operator_never_duplicates_a_run() {
    let Some((cluster, ns)) = setup("restart").await else { return };
    volumes(&ns).await;
    create_policy(&ns, "db-backup", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "concurrencyPolicy": "Allow"}))
        .await
        .expect("create policy");
    let first = Operator::start(&cluster, &ns);
    // Kill it the moment the first Job of a run appears: possibly between the two creates and
    // before the status update.
    support::wait_for("the first Job", LIMIT, async {
        while jobs(&ns, "db-backup").await.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    first.kill();
    // Two operators at once, both seeing the same tick and the same missing Jobs.
    let second = Operator::start(&cluster, &ns);
    let third = Operator::start(&cluster, &ns);
    let all = wait_runs(&ns, "db-backup", 2).await;
    // Let the slower operator finish whatever it would do for this tick.
    wait_policy(&ns, "db-backup", "status of the second run", |o: Option<&BackupPolicy>| {
        o.and_then(|p| p.status.as_ref()).is_some_and(|s| s.backup_history.len() >= 4)
    })
    .await;
    drop(all);
    let all = jobs(&ns, "db-backup").await;
    for ((at, pvc), count) in runs(&all) {
        assert_eq!(count, 1, "run {at} of {pvc} has {count} Jobs");
    }
    let per_run: BTreeMap<String, usize> = runs(&all).into_keys().fold(BTreeMap::new(), |mut m, (at, _)| {
        *m.entry(at).or_insert(0) += 1;
        m
    });
    // The run the first operator was creating is completed by the next ones, when one of them
    // was up before the next scheduled time; otherwise only the newest missed time runs (as a
    // CronJob does), and the interrupted one keeps the Job it had.
    let started = |log: String| {
        log.lines().find(|l| l.contains("backup-operator starting")).and_then(|l| l.split_whitespace().next().and_then(|t| t.parse::<DateTime<Utc>>().ok()))
    };
    let up = [started(second.log()), started(third.log())].into_iter().flatten().min().expect("a restarted operator started");
    let mut ticks = per_run.iter();
    let (interrupted, covered) = ticks.next().expect("a run");
    let next_tick = interrupted.parse::<DateTime<Utc>>().expect("scheduled time") + chrono::Duration::minutes(1);
    if up < next_tick {
        assert_eq!(*covered, 2, "run {interrupted} was interrupted and an operator was up at {up}, before the next one: {per_run:?}");
    }
    assert!(ticks.all(|(_, n)| *n == 2), "every later run covers both PVCs once: {per_run:?}");
    ns.delete().await;
}

#[tokio::test]
async fn suspended_policies_do_not_run_and_resuming_does_not_replay() {
    let Some((cluster, ns)) = setup("suspend").await else { return };
    volumes(&ns).await;
    create_policy(&ns, "db-backup", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "suspend": true}))
        .await
        .expect("create policy");
    let _operator = Operator::start(&cluster, &ns);
    wait_policy(&ns, "db-backup", "Suspended=True", condition_is("Suspended", "True", "Suspended")).await;
    // Let a scheduled time pass while suspended.
    let suspended_at = Utc::now();
    let boundary = suspended_at.with_second(0).and_then(|t| t.with_nanosecond(0)).expect("minute") + chrono::Duration::minutes(1);
    support::wait_for("a minute boundary", LIMIT, async {
        while Utc::now() < boundary + chrono::Duration::seconds(3) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(jobs(&ns, "db-backup").await.is_empty(), "no runs while suspended");

    ns.api::<BackupPolicy>()
        .patch("db-backup", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": false}})))
        .await
        .expect("resume");
    wait_policy(&ns, "db-backup", "Suspended=False", condition_is("Suspended", "False", "Active")).await;
    assert!(jobs(&ns, "db-backup").await.is_empty(), "resuming does not replay the suspended run at {boundary}");
    let all = wait_runs(&ns, "db-backup", 1).await;
    for job in &all {
        let at: DateTime<Utc> = job.annotations()["backup.example.com/scheduled-time"].parse().expect("time");
        assert!(at > boundary, "the first run after resuming is a new tick ({at}), not the suspended one ({boundary})");
    }
    ns.delete().await;
}

/// A finished Job of the policy, as an earlier run would have left it.
async fn past_run(ns: &TestNamespace, policy: &BackupPolicy, name: &str, minutes_ago: i64, succeed: bool) {
    let at = (Utc::now() - chrono::Duration::minutes(minutes_ago)).with_second(0).expect("time");
    let job: Job = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {"backup-policy": "db-backup", "pvc": "data-db-0",
                       "backup.example.com/policy-uid": policy.uid().expect("uid"), "backup.example.com/kind": "backup"},
            "annotations": {"backup.example.com/scheduled-time": at.to_rfc3339()},
            "ownerReferences": [{
                "apiVersion": "backup.example.com/v1alpha1", "kind": "BackupPolicy",
                "name": "db-backup", "uid": policy.uid().expect("uid"), "controller": true
            }]
        },
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "run", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent",
                            "command": [if succeed { "true" } else { "false" }]}]
        }}}
    }))
    .expect("job");
    ns.api::<Job>().create(&PostParams::default(), &job).await.expect("create past run");
    support::wait_condition(ns.api::<Job>(), name, "past run finished", LIMIT, |o: Option<&Job>| {
        o.and_then(|j| j.status.as_ref()).is_some_and(|s| s.succeeded.unwrap_or(0) + s.failed.unwrap_or(0) > 0
            && s.conditions.iter().flatten().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"))
    })
    .await;
}

#[tokio::test]
async fn retention_keeps_the_newest_successes_and_the_last_good_backup() {
    let Some((cluster, ns)) = setup("retention").await else { return };
    volumes(&ns).await;
    // A yearly schedule: no new run during the test, only retention and status.
    let policy = create_policy(&ns, "db-backup", json!({
        "schedule": "0 0 1 1 *", "pvcSelector": {"matchLabels": {"app": "db"}},
        "retentionCount": 2, "failedJobsHistoryLimit": 1
    }))
    .await
    .expect("create policy");
    for (name, minutes_ago, succeed) in [("ok-5", 5, true), ("ok-4", 4, true), ("ok-3", 3, true), ("fail-2", 2, false), ("fail-1", 1, false)] {
        past_run(&ns, &policy, name, minutes_ago, succeed).await;
    }
    let _operator = Operator::start(&cluster, &ns);
    // Kept: the 2 newest successes and the newest failure; listed (`kubectl get jobs -l
    // backup-policy=db-backup`): the newest retentionCount of them.
    let uid = policy.metadata.uid.clone().expect("uid");
    support::wait_for("retention", LIMIT, async {
        loop {
            let all = ns.api::<Job>().list(&ListParams::default().labels(&format!("backup.example.com/policy-uid={uid}"))).await.expect("jobs").items;
            let mut kept: Vec<String> = all.iter().map(ResourceExt::name_any).collect();
            kept.sort();
            let mut listed: Vec<String> = jobs(&ns, "db-backup").await.iter().map(ResourceExt::name_any).collect();
            listed.sort();
            if kept == ["fail-1", "ok-3", "ok-4"] && listed == ["fail-1", "ok-3"] {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    wait_policy(&ns, "db-backup", "Ready=False BackupFailed", condition_is("Ready", "False", "BackupFailed")).await;
    let status = ns.api::<BackupPolicy>().get("db-backup").await.expect("policy").status.expect("status");
    assert!(status.last_successful_time.is_some(), "the last good backup is still known");
    assert_eq!(status.backup_history.first().map(|r| (r.job_name.as_str(), r.status)), Some(("fail-1", RunStatus::Failed)));
    ns.delete().await;
}

#[tokio::test]
async fn bad_schedules_time_zones_and_missing_storage_are_not_ready_and_create_nothing() {
    let Some((cluster, ns)) = setup("not-ready").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    let selector = json!({"matchLabels": {"app": "db"}});
    create_policy(&ns, "bad-cron", json!({"schedule": "61 * * * *", "pvcSelector": selector})).await.expect("policy");
    create_policy(&ns, "bad-zone", json!({"schedule": "*/1 * * * *", "timeZone": "Mars/Olympus_Mons", "pvcSelector": selector})).await.expect("policy");
    create_policy(&ns, "no-storage", json!({"schedule": "*/1 * * * *", "pvcSelector": selector})).await.expect("policy");
    create_policy(&ns, "no-pvcs", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "nothing"}}, "backupStorageClaim": "data-db-0"}))
        .await
        .expect("policy");
    let _operator = Operator::start(&cluster, &ns);
    wait_policy(&ns, "bad-cron", "InvalidSchedule", condition_is("Ready", "False", "InvalidSchedule")).await;
    wait_policy(&ns, "bad-zone", "InvalidTimeZone", condition_is("Ready", "False", "InvalidTimeZone")).await;
    wait_policy(&ns, "no-storage", "BackupStorageMissing", condition_is("Ready", "False", "BackupStorageMissing")).await;
    wait_policy(&ns, "no-pvcs", "NoMatchingPVCs", condition_is("Ready", "False", "NoMatchingPVCs")).await;
    let message = ns.api::<BackupPolicy>().get("bad-cron").await.expect("policy").status.expect("status").conditions
        .into_iter().find(|c| c.type_ == "Ready").map(|c| c.message).unwrap_or_default();
    assert!(message.contains("61"), "the message says what is wrong: {message}");
    // Past a scheduled time, still nothing was created for any of them.
    let boundary = Utc::now().with_second(0).expect("minute") + chrono::Duration::minutes(1);
    support::wait_for("a minute boundary", LIMIT, async {
        while Utc::now() < boundary + chrono::Duration::seconds(5) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    let all = ns.api::<Job>().list(&ListParams::default()).await.expect("jobs").items;
    assert!(all.is_empty(), "no Jobs: {:?}", all.iter().map(ResourceExt::name_any).collect::<Vec<_>>());
    // Creating the missing claim makes the policy ready without touching it.
    claim(&ns, "backup-storage", json!({})).await;
    wait_policy(&ns, "no-storage", "Ready after the claim appears", condition_is("Ready", "True", "Scheduled")).await;
    ns.delete().await;
}

#[tokio::test]
async fn custom_plugins_from_configmaps_run_and_bad_ones_show_on_the_policy() {
    let Some((cluster, ns)) = setup("custom").await else { return };
    volumes(&ns).await;
    plugin_configmap(&ns, "my-strategy", backup_operator::strategy::builtin::BuiltinStrategy::Tar.wasm()).await;
    plugin_configmap(&ns, "broken-strategy", b"\0asm but not really a component").await;
    let selector = json!({"matchLabels": {"app": "db"}});
    create_policy(&ns, "custom", json!({
        "schedule": "*/1 * * * *", "pvcSelector": selector, "backupStrategy": "custom",
        "plugin": {"configMapRef": {"name": "my-strategy", "key": "plugin.wasm"}, "config": {"compression": "none"}}
    }))
    .await
    .expect("policy");
    create_policy(&ns, "broken", json!({
        "schedule": "*/1 * * * *", "pvcSelector": selector, "backupStrategy": "custom",
        "plugin": {"configMapRef": {"name": "broken-strategy", "key": "plugin.wasm"}}
    }))
    .await
    .expect("policy");
    create_policy(&ns, "bad-config", json!({
        "schedule": "*/1 * * * *", "pvcSelector": selector,
        "plugin": {"config": {"compression": "zstd"}}
    }))
    .await
    .expect("policy");
    // A plugin the cluster operator mounted into the operator's --plugin-dir.
    let plugin_dir = tempfile::tempdir().expect("plugin dir");
    std::fs::write(plugin_dir.path().join("mounted.wasm"), backup_operator::strategy::builtin::BuiltinStrategy::Tar.wasm()).expect("write plugin");
    create_policy(&ns, "from-dir", json!({
        "schedule": "*/1 * * * *", "pvcSelector": selector, "backupStrategy": "custom",
        "plugin": {"file": "mounted.wasm"}
    }))
    .await
    .expect("policy");
    let dir = plugin_dir.path().to_string_lossy().into_owned();
    let _operator = Operator::start_with(&cluster, &ns, &["--plugin-dir", &dir]);

    wait_policy(&ns, "broken", "PluginInvalid", condition_is("Ready", "False", "PluginInvalid")).await;
    wait_policy(&ns, "bad-config", "PluginInvalid for a bad config", condition_is("Ready", "False", "PluginInvalid")).await;
    let message = ns.api::<BackupPolicy>().get("bad-config").await.expect("policy").status.expect("status").conditions
        .into_iter().find(|c| c.type_ == "Ready").map(|c| c.message).unwrap_or_default();
    assert!(message.contains("compression") && message.contains("tar"), "the plugin's own message, with its name: {message}");
    let events = support::kubectl(&cluster, &["-n", &ns.name, "get", "events", "--field-selector", "involvedObject.name=broken", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("PluginInvalid"), "a Warning event names the failure: {events:?}");

    wait_runs(&ns, "custom", 1).await;
    let all = wait_jobs(&ns, "custom", 2).await;
    assert_eq!(all.len(), 2);
    for job in &all {
        assert!(job.annotations()["backup.example.com/plugin"].starts_with("configmap/"), "{:?}", job.annotations());
        assert!(job.annotations()["backup.example.com/artifact"].ends_with(".tar"), "the plugin's config reached it");
    }
    // The status names the custom plugin: where it came from, what it calls itself, its digest.
    let plugin = support::operator::poll("custom's status.plugin", Duration::from_secs(60), || async {
        ns.api::<BackupPolicy>().get("custom").await.ok()?.status?.plugin
    })
    .await;
    assert!(plugin.source.starts_with("configmap/") && plugin.name == "tar" && plugin.sha256.len() == 64, "{plugin:?}");
    let from_dir = wait_runs(&ns, "from-dir", 1).await;
    assert!(from_dir.iter().all(|j| j.annotations()["backup.example.com/plugin"].starts_with("plugin-dir/mounted.wasm@")));
    assert!(jobs(&ns, "broken").await.is_empty() && jobs(&ns, "bad-config").await.is_empty());
    // A config the plugin rejected is not planned again (no failed run each minute) until the
    // policy or the plugin changes: the status says why once.
    let bad = ns.api::<BackupPolicy>().get("bad-config").await.expect("policy").status.expect("status");
    assert!(bad.backup_history.is_empty(), "nothing planned with a rejected config: {:?}", bad.backup_history);
    ns.delete().await;
}

#[tokio::test]
async fn snapshot_policies_create_volume_snapshots_or_say_the_api_is_missing() {
    let Some((cluster, ns)) = setup("snapshot").await else { return };
    volumes(&ns).await;
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let crd_name = "volumesnapshots.snapshot.storage.k8s.io";
    if crds.get_opt(crd_name).await.expect("get crd").is_some() {
        crds.delete(crd_name, &Default::default()).await.expect("delete leftover crd");
        support::wait_condition(crds.clone(), crd_name, "leftover CRD gone", LIMIT, |o: Option<&CustomResourceDefinition>| o.is_none()).await;
    }
    // Two policies of the same strategy on the same PVCs: the host names each one's snapshots after
    // its own runs, so neither can take over or delete the other's.
    for name in ["snap", "snap-twin"] {
        create_policy(&ns, name, json!({
            "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}},
            "backupStrategy": "snapshot", "plugin": {"config": {"snapshotClass": "csi-hostpath-snapclass"}}
        }))
        .await
        .expect("policy");
    }
    let _operator = Operator::start(&cluster, &ns);
    wait_policy(&ns, "snap", "SnapshotAPIMissing at the first run", condition_is("Ready", "False", "SnapshotAPIMissing")).await;
    assert!(jobs(&ns, "snap").await.is_empty(), "no Jobs for a snapshot policy");

    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/volumesnapshot-crd.yaml")).expect("fixture");
    let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("crd");
    crds.patch(crd_name, &PatchParams::apply("backup-operator-tests").force(), &Patch::Apply(&crd)).await.expect("install crd");
    support::wait_condition(crds.clone(), crd_name, "VolumeSnapshot CRD established", LIMIT, conditions::is_crd_established()).await;

    let resource = backup_operator::runs::snapshot::resource();
    let snapshots: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &resource);
    let made = support::wait_for("VolumeSnapshots for both PVCs", LIMIT, async {
        loop {
            let list = snapshots.list(&ListParams::default().labels("backup-policy=snap")).await.expect("list").items;
            if list.len() >= 2 {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    let twins = poll("the twin policy's VolumeSnapshots", LIMIT, || async {
        let list = snapshots.list(&ListParams::default().labels("backup-policy=snap-twin")).await.expect("list").items;
        (list.len() >= 2).then_some(list)
    })
    .await;
    let policies = ns.api::<BackupPolicy>();
    let (snap_uid, twin_uid) = (policies.get("snap").await.expect("snap").uid(), policies.get("snap-twin").await.expect("twin").uid());
    for (list, uid) in [(&made, &snap_uid), (&twins, &twin_uid)] {
        for s in list {
            assert_eq!(s.owner_references().len(), 1, "one owner: {:?}", s.owner_references());
            assert_eq!(Some(&s.owner_references()[0].uid), uid.as_ref());
            assert_eq!(s.annotations()["backup.example.com/run"], s.name_any(), "named after its run");
        }
    }
    assert!(made.iter().all(|a| twins.iter().all(|b| a.name_any() != b.name_any())));
    let mut sources: Vec<String> = made.iter().map(|s| s.data["spec"]["source"]["persistentVolumeClaimName"].as_str().unwrap_or("").to_owned()).collect();
    sources.sort();
    assert_eq!(sources, ["data-db-0", "data-db-1"]);
    for s in &made {
        assert_eq!(s.data["spec"]["volumeSnapshotClassName"], "csi-hostpath-snapclass");
        assert_eq!(s.owner_references()[0].kind, "BackupPolicy");
        // What the CSI snapshotter does when the snapshot is cut.
        snapshots
            .patch_status(&s.name_any(), &PatchParams::default(), &Patch::Merge(json!({"status": {"readyToUse": true, "creationTime": Utc::now().to_rfc3339()}})))
            .await
            .expect("mark ready");
    }
    wait_policy(&ns, "snap", "snapshots succeeded", |o: Option<&BackupPolicy>| {
        o.and_then(|p| p.status.as_ref()).is_some_and(|s| {
            s.last_successful_time.is_some() && s.backup_history.iter().filter(|r| r.status == RunStatus::Succeeded).count() >= 2
        })
    })
    .await;
    wait_policy(&ns, "snap", "Ready", condition_is("Ready", "True", "Scheduled")).await;
    // Deleting the twin takes its snapshots and leaves this policy's alone.
    policies.delete("snap-twin", &Default::default()).await.expect("delete twin");
    poll("the twin's snapshots garbage-collected", LIMIT, || async {
        snapshots.list(&ListParams::default().labels("backup-policy=snap-twin")).await.expect("list").items.is_empty().then_some(())
    })
    .await;
    for s in &made {
        assert!(snapshots.get_opt(&s.name_any()).await.expect("get").is_some(), "{} survives", s.name_any());
    }
    crds.delete(crd_name, &Default::default()).await.expect("remove crd");
    ns.delete().await;
}
