//! Broken and hostile plugins in a running operator, on the real test cluster: components made to
//! be slow to compile are refused or compiled apart while a built-in tar policy keeps its schedule,
//! plugin source mistakes are named, plan-time failures stay on the policy, and a run whose pod can
//! never be scheduled is failed so the next one starts.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use backup_operator::api::RunStatus;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use support::operator::*;

fn hostile_plugin() -> Vec<u8> {
    let dir = support::built_plugins("tests/plugins");
    std::fs::read(dir.join("hostile_plugin.wasm")).expect("hostile plugin built")
}

#[tokio::test]
async fn slow_to_compile_plugins_do_not_delay_a_built_in_policy() {
    let Some((cluster, ns)) = setup("slow-compile").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    // Four components made to be expensive: refused by their shape, or compiled in the child
    // process within its limits, each a different digest.
    let components = [
        support::components::component(1, 100_000, 64),
        support::components::component(1, 2_000_000, 64),
        support::components::component(7, 4096, 26_000),
        support::components::component(6, 4095, 26_000),
    ];
    let selector = json!({"matchLabels": {"app": "db"}});
    for (i, bytes) in components.iter().enumerate() {
        assert!(bytes.len() < 1024 * 1024);
        plugin_configmap(&ns, &format!("slow-{i}"), bytes).await;
        create_policy(&ns, &format!("slow-{i}"), json!({
            "schedule": "*/1 * * * *", "pvcSelector": selector, "backupStrategy": "custom",
            "plugin": {"configMapRef": {"name": format!("slow-{i}"), "key": "plugin.wasm"}}
        }))
        .await
        .expect("policy");
    }
    create_policy(&ns, "control", json!({"schedule": "*/1 * * * *", "pvcSelector": selector})).await.expect("policy");
    let _operator = Operator::start(&cluster, &ns);
    for i in 0..components.len() {
        wait_policy(&ns, &format!("slow-{i}"), "Ready=False", |o: Option<&backup_operator::api::BackupPolicy>| {
            o.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "False" && c.reason.starts_with("Plugin")))
        })
        .await;
    }
    // Two runs of the control policy, read from the Jobs' own timestamps.
    let jobs = poll("two runs of the control policy", LIMIT + Duration::from_secs(60), || async {
        let jobs = ns.api::<Job>().list(&ListParams::default().labels("backup-policy=control")).await.expect("jobs").items;
        (jobs.len() >= 2).then_some(jobs)
    })
    .await;
    let lags: Vec<i64> = jobs
        .iter()
        .filter_map(|j| {
            let scheduled = chrono::DateTime::parse_from_rfc3339(j.annotations().get("backup.example.com/scheduled-time")?).ok()?;
            Some(j.metadata.creation_timestamp.as_ref()?.0.as_millisecond() - scheduled.timestamp_millis())
        })
        .collect();
    support::measured(&format!("control policy: scheduled minute -> Job created (ms) while 4 slow plugins load: {lags:?}"));
    assert!(jobs.iter().all(|j| j.labels()["backup-policy"] == "control"), "no Job for a slow plugin");
    for i in 0..components.len() {
        let s = status(&ns, &format!("slow-{i}")).await;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
        support::measured(&format!("slow-{i}: {} {}", ready.reason, ready.message.chars().take(160).collect::<String>()));
    }
    ns.delete().await;
}

#[tokio::test]
async fn plugin_source_mistakes_are_named_and_plan_failures_stay() {
    let Some((cluster, ns)) = setup("plugin-mistakes").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "data-db-1", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    let text = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "as-text"}, "data": {"plugin.wasm": "oops"}});
    ns.api::<ConfigMap>().patch("as-text", &PatchParams::apply("backup-operator-tests").force(), &Patch::Apply(text)).await.expect("configmap");
    plugin_configmap(&ns, "hostile", &hostile_plugin()).await;
    let selector = json!({"matchLabels": {"app": "db"}});
    let custom = |cm: &str, config: serde_json::Value| json!({
        "schedule": "*/1 * * * *", "pvcSelector": selector, "backupStrategy": "custom", "startTimeoutSeconds": 10,
        "plugin": {"configMapRef": {"name": cm, "key": "plugin.wasm"}, "config": config}
    });
    create_policy(&ns, "missing", custom("no-such-configmap", json!({}))).await.expect("policy");
    create_policy(&ns, "under-data", custom("as-text", json!({}))).await.expect("policy");
    create_policy(&ns, "trapping", custom("hostile", json!({"attack": "trap"}))).await.expect("policy");
    create_policy(&ns, "greedy", custom("hostile", json!({"attack": "greedy"}))).await.expect("policy");
    let _operator = Operator::start(&cluster, &ns);

    wait_policy(&ns, "missing", "PluginNotFound", condition_is("Ready", "False", "PluginNotFound")).await;
    wait_policy(&ns, "under-data", "PluginNotFound", condition_is("Ready", "False", "PluginNotFound")).await;
    let message = status(&ns, "under-data").await.conditions.into_iter().find(|c| c.type_ == "Ready").map(|c| c.message).unwrap_or_default();
    assert!(message.contains("binaryData"), "the fix is in the message: {message}");
    // A plugin that traps at plan time: Failed runs, and Ready=False stays over the next runs.
    wait_policy(&ns, "trapping", "PluginFailed", condition_is("Ready", "False", "PluginFailed")).await;
    let first = status(&ns, "trapping").await.last_schedule_time.expect("the failed run is recorded");
    poll("another scheduled run of the trapping policy", LIMIT, || async {
        let s = status(&ns, "trapping").await;
        (s.last_schedule_time.as_ref().map(|t| t.0) > Some(first.0)).then_some(())
    })
    .await;
    let s = status(&ns, "trapping").await;
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "PluginFailed"), "it stays until a run plans");
    assert!(s.backup_history.iter().filter(|r| r.status == RunStatus::Failed && r.not_started).count() >= 2, "{:?}", s.backup_history);
    assert!(ns.api::<Job>().list(&ListParams::default().labels("backup-policy=trapping")).await.expect("jobs").items.is_empty());

    // A pod that fits no node: named Unschedulable, failed after the start timeout, and the
    // next run still starts (Forbid).
    wait_policy(&ns, "greedy", "Unschedulable", condition_is("Ready", "False", "Unschedulable")).await;
    let failed = poll("the unschedulable run failed", LIMIT, || async {
        status(&ns, "greedy").await.backup_history.into_iter().find(|r| r.status == RunStatus::Failed && r.reason.as_deref() == Some("Unschedulable"))
    })
    .await;
    poll("the next run of the greedy policy", LIMIT + Duration::from_secs(60), || async {
        let jobs = ns.api::<Job>().list(&ListParams::default().labels("backup-policy=greedy")).await.expect("jobs").items;
        jobs.into_iter().find(|j| j.name_any() != failed.job_name)
    })
    .await;
    event_reasons(&cluster, &ns, "missing", &["PluginNotFound"]).await;
    ns.delete().await;
}
