//! The Helm chart (`charts/backup-operator`) on the bundled cluster, with a real `helm` built from
//! its Go module by the harness: install (the operator in its own namespace, watching it, with a
//! Role only, so that it never meets the other tests' cluster-wide install), a backup, an upgrade
//! that changes a value (the setting holds, the rollout loses and duplicates no run), and an
//! uninstall that leaves the policy and its backups in place. Also: the chart's CRDs and RBAC
//! rules are the kustomize manifests' own.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use backup_operator::api::{BackupPolicy, RunStatus};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use support::operator::{claim, claim_dir, create_policy, poll, setup, status};
use support::{TestCluster, TestNamespace};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/backup-operator");

fn helm(cluster: &TestCluster, args: &[&str]) -> String {
    let out = Command::new(support::cluster_env("HELM")).args(args).env("KUBECONFIG", &cluster.kubeconfig).output().expect("run helm");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "helm {args:?}: {text}");
    text
}

fn args_of(deployment: &Deployment) -> Vec<String> {
    deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|s| s.containers.first()).and_then(|c| c.args.clone()).unwrap_or_default()
}

/// The scheduled minutes of the policy's runs so far.
async fn minutes(ns: &TestNamespace) -> BTreeSet<i64> {
    status(ns, "db")
        .await
        .backup_history
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .filter_map(|r| r.scheduled_time.as_ref().map(|t| t.0.as_second() / 60))
        .collect()
}

#[tokio::test]
async fn the_chart_installs_upgrades_with_a_changed_value_and_uninstalls_leaving_the_backups() {
    let Some((cluster, ns)) = setup("helm").await else { return };
    support::kubectl(&cluster, &["apply", "-n", &ns.name, "-k", concat!(env!("CARGO_MANIFEST_DIR"), "/config/tenant")]);
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    create_policy(&ns, "db", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "retentionCount": 10})).await.expect("policy");

    let started = Instant::now();
    // The image as the chart names it by default (its appVersion): test.sh built and imported it.
    helm(&cluster, &["install", "op", CHART, "-n", &ns.name, "--set", &format!("watchNamespace={}", ns.name), "--wait", "--timeout", "180s"]);
    let installed = started.elapsed();
    let first = poll("a successful backup by the chart's operator", Duration::from_secs(240), || async {
        let m = minutes(&ns).await;
        (!m.is_empty()).then_some(m)
    })
    .await;

    // An upgrade with a changed value: it reaches the operator's arguments and stays there.
    let started = Instant::now();
    helm(&cluster, &["upgrade", "op", CHART, "-n", &ns.name, "--reuse-values", "--set", "notifications.allowHosts={alerts.example.com}", "--wait", "--timeout", "180s"]);
    let upgraded = started.elapsed();
    let deployment: Deployment = ns.api::<Deployment>().get("backup-operator").await.expect("deployment");
    let args = args_of(&deployment);
    assert!(args.contains(&"--notification-allow-host=alerts.example.com".to_owned()), "{args:?}");
    assert!(args.contains(&format!("--namespace={}", ns.name)), "the earlier value holds through --reuse-values: {args:?}");

    // Across the rollout no minute is lost: every minute from the first backup to two minutes
    // after the upgrade has its run (a minute that fell into the handover starts late, not never).
    let since = *first.iter().next().expect("first minute");
    let until = chrono::Utc::now().timestamp() / 60 + 2;
    let all = poll("runs for every minute across the upgrade", Duration::from_secs(300), || async {
        let m = minutes(&ns).await;
        (since..=until).all(|minute| m.contains(&minute)).then_some(m)
    })
    .await;
    let jobs = support::kubectl(&cluster, &["-n", &ns.name, "get", "jobs", "-l", "backup-policy=db", "-o", "name"]);
    let names: Vec<&str> = jobs.lines().collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(names.len(), unique.len(), "no run twice: {names:?}");

    // Uninstall: the operator goes; the policy, its Jobs and its archives stay.
    helm(&cluster, &["uninstall", "op", "-n", &ns.name, "--wait", "--timeout", "120s"]);
    assert!(ns.api::<Deployment>().get_opt("backup-operator").await.expect("get").is_none(), "the Deployment went");
    let policy: Option<BackupPolicy> = ns.api::<BackupPolicy>().get_opt("db").await.expect("get policy");
    assert!(policy.is_some(), "the policy stays");
    let dir = claim_dir(&ns, "backup-storage").await.join(&ns.name).join("db").join("data-db-0");
    let archives = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert!(archives > 0, "the backups stay in {}", dir.display());
    support::measured(&format!(
        "helm chart: install --wait {:.1} s, upgrade with a changed value --wait {:.1} s; runs for minutes {since}..={until} all present ({} runs), {archives} archives left after uninstall",
        installed.as_secs_f64(),
        upgraded.as_secs_f64(),
        all.len()
    ));
    ns.delete().await;
}

/// The chart's CRDs are config/crd's, and its RBAC rules config/rbac's: one source of truth.
#[test]
fn the_chart_carries_the_kustomize_manifests_crds_and_rules() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for file in ["backup.example.com_backuppolicies.yaml", "backup.example.com_backuprestores.yaml"] {
        let chart = std::fs::read_to_string(root.join("charts/backup-operator/crds").join(file)).expect("chart crd");
        let config = std::fs::read_to_string(root.join("config/crd").join(file)).expect("crd");
        assert!(chart == config, "charts/backup-operator/crds/{file} differs from config/crd: run `make crd`");
    }
    // The rules, as (apiGroups, resources, verbs) lines, ignoring comments and the template's
    // conditionals (the namespaces rule is cluster-wide only).
    let rules = |text: &str| -> BTreeSet<String> {
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.starts_with("{{")).collect();
        lines
            .windows(3)
            .filter(|w| w[0].starts_with("- apiGroups:") && w[1].starts_with("resources:") && w[2].starts_with("verbs:"))
            .map(|w| w.join(" "))
            .collect()
    };
    let config = std::fs::read_to_string(root.join("config/rbac/role.yaml")).expect("role")
        + &std::fs::read_to_string(root.join("config/rbac/leader_election.yaml")).expect("leader election");
    let chart = std::fs::read_to_string(root.join("charts/backup-operator/templates/rbac.yaml")).expect("chart rbac");
    assert_eq!(rules(&chart), rules(&config), "charts/backup-operator/templates/rbac.yaml grants what config/rbac does");
    assert!(rules(&config).len() > 10);
}
