//! The plugin author kit: the template strategy, written with `backup-strategy-sdk` (sdk/) and
//! built by the project's script, loads in the operator's sandbox, plans what the host accepts, and
//! backs up a PVC on the real cluster from a ConfigMap.

mod support;

use std::sync::Arc;

use backup_operator::api::RunStatus;
use backup_operator::strategy::bindings::types::Plan;
use backup_operator::strategy::{RuntimeConfig, StrategyRuntime};
use serde_json::json;
use support::operator::{Operator, claim, claim_dir, create_policy, plugin_configmap, poll, setup, status};
use support::requests::backup_request;

fn template() -> Vec<u8> {
    std::fs::read(support::built_plugins("sdk").join("backup_strategy_template.wasm")).expect("template built")
}

#[tokio::test]
async fn the_template_loads_and_plans_what_the_host_accepts() {
    let runtime = StrategyRuntime::new(RuntimeConfig::default()).expect("runtime");
    let bytes = template();
    support::measured(&format!("sdk template component: {} bytes", bytes.len()));
    let plugin = runtime.load("template", Arc::from(bytes), None).await.expect("the template loads");
    assert_eq!(plugin.description.name, "template-copy");
    let plan = runtime.plan_backup(plugin.clone(), None, backup_request(r#"{"skipSuffixes": [".tmp"]}"#)).await.expect("an accepted plan");
    let Plan::Job(job) = plan else { panic!("a job plan") };
    assert_eq!(job.artifact_location, "db-backup-data-db-0-29401260");
    let err = runtime.validate_config(plugin, None, r#"{"colour": 1}"#.into()).await.expect_err("unknown field");
    assert!(err.to_string().contains("colour"), "{err}");
}

#[tokio::test]
async fn the_template_backs_up_a_pvc_from_a_configmap() {
    let Some((cluster, ns)) = setup("sdk-template").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    let data = claim_dir(&ns, "data-db-0").await;
    std::fs::create_dir_all(data.join("sub")).expect("mkdir");
    std::fs::write(data.join("sub/rows"), b"1\n2\n").expect("data");
    std::fs::write(data.join("scratch.tmp"), b"skip me").expect("data");
    plugin_configmap(&ns, "copy-strategy", &template()).await;
    let _operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "db", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupStrategy": "custom",
        "plugin": {"configMapRef": {"name": "copy-strategy", "key": "plugin.wasm"}, "config": {"skipSuffixes": [".tmp"]}}
    }))
    .await
    .expect("policy");
    let run = poll("the template's first backup", support::operator::LIMIT * 2, || async {
        status(&ns, "db").await.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded)
    })
    .await;
    assert_eq!(run.verified, Some(true), "{run:?}");
    let copy = claim_dir(&ns, "backup-storage").await.join(format!("{}/db/data-db-0/{}", ns.name, run.job_name));
    assert_eq!(std::fs::read(copy.join("sub/rows")).expect("copied file"), b"1\n2\n");
    assert!(!copy.join("scratch.tmp").exists(), "the config reached the plan");
    ns.delete().await;
}
