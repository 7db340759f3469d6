//! The plugin author kit: the template strategy, written with `backup-strategy-sdk` (sdk/), built
//! by the project's script and by `cargo component` (a WASI p2 component), loads in the operator's
//! sandbox, plans what the host accepts, and backs up a PVC on the real cluster from a ConfigMap.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

/// The template as a plugin author outside this repository builds it: the SDK workspace copied to a
/// directory of its own, `cargo component build --release` in the environment of
/// scripts/cargo-component-env.sh. The copy and its target directory stay in the cache, so that
/// the next run rebuilds only the two crates.
fn template_by_cargo_component() -> Vec<u8> {
    static BUILT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            let cache = std::env::var("BACKUP_OPERATOR_CACHE")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|_| std::path::PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/backup-operator"));
            let base = cache.join("wasm-target/cargo-component-template");
            let (copy, target) = (base.join("my-plugins"), base.join("target"));
            let _ = std::fs::remove_dir_all(&copy);
            std::fs::create_dir_all(&copy).expect("mkdir");
            let status = std::process::Command::new("cp").arg("-r").arg(repo.join("sdk/.")).arg(&copy).status().expect("cp");
            assert!(status.success());
            let _ = std::fs::remove_dir_all(copy.join("target"));
            let script = format!(
                "set -e; eval \"$({}/scripts/cargo-component-env.sh)\"; export CARGO_TARGET_DIR={}; cargo component build --release --locked -p backup-strategy-template",
                repo.display(),
                target.display()
            );
            let started = std::time::Instant::now();
            let output = std::process::Command::new("bash").arg("-c").arg(&script).current_dir(&copy).output().expect("bash");
            assert!(output.status.success(), "cargo component build failed:\n{}", String::from_utf8_lossy(&output.stderr));
            support::measured(&format!("cargo component build --release of the template: {:.1} s", started.elapsed().as_secs_f64()));
            std::fs::read(target.join("wasm32-wasip1/release/backup_strategy_template.wasm")).expect("the component")
        })
        .clone()
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
async fn the_template_built_by_cargo_component_imports_wasi_and_plans_the_same() {
    let runtime = StrategyRuntime::new(RuntimeConfig::default()).expect("runtime");
    let bytes = template_by_cargo_component();
    support::measured(&format!("sdk template component by cargo component: {} bytes", bytes.len()));
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::new(&engine, &bytes).expect("a component");
    let imports: Vec<String> = component.component_type().imports(&engine).map(|(name, _)| name.to_owned()).collect();
    assert!(imports.iter().any(|i| i.starts_with("wasi:cli/environment@")), "the preview 1 adapter imports WASI p2: {imports:?}");
    let plugin = runtime.load("template", Arc::from(bytes), None).await.expect("the template loads");
    let by_script = runtime.load("template-by-script", Arc::from(template()), None).await.expect("the template loads");
    let request = backup_request(r#"{"skipSuffixes": [".tmp"]}"#);
    let plan = runtime.plan_backup(plugin, None, request.clone()).await.expect("an accepted plan");
    let same = runtime.plan_backup(by_script, None, request).await.expect("an accepted plan");
    assert_eq!(format!("{plan:?}"), format!("{same:?}"), "both builds plan alike");
}

/// The walkthrough's `backup-operator plugin plan` step on the `cargo component` build, with the
/// template's sample request: the plan is accepted, and the Job printed is one the API server takes.
#[tokio::test]
async fn plugin_plan_of_the_template_with_its_sample_request_prints_a_job_the_api_server_accepts() {
    let Some(cluster) = support::cluster().await else { return };
    let ns = cluster.namespace("template-plan").await;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("backup-operator-template-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let wasm = dir.join("backup_strategy_template.wasm");
    std::fs::write(&wasm, template_by_cargo_component()).expect("write the component");
    let sample = std::fs::read_to_string(repo.join("sdk/template/sample-request.yaml")).expect("the sample request");
    assert!(sample.contains("\nnamespace: prod\n"), "{sample}");
    let request = dir.join("request.yaml");
    std::fs::write(&request, sample.replace("\nnamespace: prod\n", &format!("\nnamespace: {}\n", ns.name))).expect("write the request");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_backup-operator"))
        .args(["plugin", "plan"])
        .arg(&wasm)
        .arg("--request")
        .arg(&request)
        .output()
        .expect("run backup-operator");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "exit {:?}: {stderr}\n{stdout}", out.status.code());
    assert!(stdout.contains("verdict: accepted"), "{stdout}");
    assert!(stdout.contains(".tmp"), "the sample's config reached the plan: {stdout}");
    let manifest = dir.join("job.yaml");
    std::fs::write(&manifest, stdout.as_bytes()).expect("write the Job");
    let applied = support::kubectl(&cluster, &["apply", "--dry-run=server", "-f", &manifest.to_string_lossy(), "-o", "name"]);
    // 2026-11-29T01:00:00Z is minute 29,931,900 since the epoch.
    assert_eq!(applied.trim(), "job.batch/db-copy-data-db-0-29931900", "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
    ns.delete().await;
}

#[tokio::test]
async fn the_template_backs_up_a_pvc_from_a_configmap() {
    let Some((cluster, ns)) = setup("sdk-template").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    // An empty PVC too, as a newcomer's first one often is.
    claim(&ns, "data-db-1", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    let data = claim_dir(&ns, "data-db-0").await;
    std::fs::create_dir_all(data.join("sub")).expect("mkdir");
    std::fs::write(data.join("sub/rows"), b"1\n2\n").expect("data");
    std::fs::write(data.join("scratch.tmp"), b"skip me").expect("data");
    // The `cargo component` build: a WASI-importing component, as most authors will have.
    plugin_configmap(&ns, "copy-strategy", &template_by_cargo_component()).await;
    let _operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "db", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupStrategy": "custom",
        "plugin": {"configMapRef": {"name": "copy-strategy", "key": "plugin.wasm"}, "config": {"skipSuffixes": [".tmp"]}}
    }))
    .await
    .expect("policy");
    let run = poll("the template's first backup of data-db-0", support::operator::LIMIT * 2, || async {
        status(&ns, "db").await.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded && r.pvc == "data-db-0")
    })
    .await;
    let empty = poll("the template's first backup of the empty data-db-1", support::operator::LIMIT * 2, || async {
        let history = status(&ns, "db").await.backup_history;
        if let Some(failed) = history.iter().find(|r| r.pvc == "data-db-1" && r.status == RunStatus::Failed) {
            panic!("the empty PVC's backup failed: {failed:?}");
        }
        history.into_iter().find(|r| r.status == RunStatus::Succeeded && r.pvc == "data-db-1")
    })
    .await;
    assert_eq!(empty.verified, Some(true), "{empty:?}");
    assert_eq!(run.verified, Some(true), "{run:?}");
    let copy = claim_dir(&ns, "backup-storage").await.join(format!("{}/db/data-db-0/{}", ns.name, run.job_name));
    assert_eq!(std::fs::read(copy.join("sub/rows")).expect("copied file"), b"1\n2\n");
    assert!(!copy.join("scratch.tmp").exists(), "the config reached the plan");
    ns.delete().await;
}
