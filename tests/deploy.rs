//! The operator as a pod, deployed with the shipped manifests (`scripts/deploy.sh`, as `make
//! deploy` runs it) from the image `scripts/build-image.sh --import` built offline: its own
//! service account and RBAC and nothing else, in-cluster config, a custom plugin mounted from a
//! ConfigMap and replaced without restarting the pod, leader election across `kill -9`, metrics;
//! and the namespaced variant with a Role only.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use backup_operator::api::{BackupPolicy, RunStatus};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::operator::*;
use support::{TestCluster, TestNamespace};

const SYSTEM: &str = "backup-operator-system";
/// The image test.sh builds and imports before the tests run.
fn image() -> String {
    std::env::var("IMG").unwrap_or_else(|_| "backup-operator:latest".into())
}

/// scripts/deploy.sh with the test cluster's kubectl; extra args for the operator go through an
/// overlay (see the callers).
fn deploy(cluster: &TestCluster, action: &str, variant: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/deploy.sh"))
        .args([action, variant])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("KUBECTL", cluster.kubectl_path())
        .env("IMG", image())
        .envs(env.iter().copied())
        .output()
        .expect("run scripts/deploy.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/deploy.sh {action} {variant}: {text}");
    text
}

/// The tenant kit (config/tenant): the `backup` ServiceAccount the operator acts as, and its Role.
fn tenant(cluster: &TestCluster, ns: &TestNamespace) {
    support::kubectl(cluster, &["apply", "-n", &ns.name, "-k", concat!(env!("CARGO_MANIFEST_DIR"), "/config/tenant")]);
}

/// Waits for a successful backup of the PVC by the policy and returns its history entry.
async fn wait_success(ns: &TestNamespace, policy: &str, pvc: &str, plugin_prefix: Option<&str>) -> backup_operator::api::BackupRun {
    poll(&format!("a successful backup of {pvc} by {policy}"), Duration::from_secs(300), || async {
        status(ns, policy).await.backup_history.into_iter().find(|r| {
            r.pvc == pvc && r.status == RunStatus::Succeeded && plugin_prefix.is_none_or(|p| r.plugin.as_deref().is_some_and(|l| l.contains(p)))
        })
    })
    .await
}

async fn leader(cluster: &TestCluster) -> Option<String> {
    Api::<Lease>::namespaced(cluster.client.clone(), SYSTEM).get_opt("backup-operator-leader").await.ok()??.spec?.holder_identity
}

/// The host PID of the operator process in the pod (pods run on this machine). A leader's
/// identity is its pod's name and a suffix of its own.
fn operator_pid(identity: &str) -> Option<i32> {
    let pod = identity.rsplit_once('-').map_or(identity, |(pod, _)| pod);
    let wanted = format!("POD_NAME={pod}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        if !String::from_utf8_lossy(&cmdline).starts_with("/usr/local/bin/backup-operator\0run") {
            return None;
        }
        let environ = std::fs::read(entry.path().join("environ")).ok()?;
        environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()).then_some(pid)
    })
}

/// Container restarts of each operator pod.
async fn restarts(pods: &Api<Pod>) -> BTreeMap<String, i32> {
    pods.list(&ListParams::default().labels("app=backup-operator"))
        .await
        .expect("pods")
        .items
        .iter()
        .map(|p| (p.name_any(), p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).map(|c| c.restart_count).unwrap_or(0)))
        .collect()
}

fn metrics(cluster: &TestCluster, ns: &str, pod: &str) -> String {
    // The pod's network is reachable from this machine (the pod bridge).
    let ip = support::kubectl(cluster, &["-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}"]);
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect((ip.trim(), 8080)).expect("connect to the metrics port");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: operator\r\n\r\n").expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

#[tokio::test]
async fn the_shipped_manifests_run_the_operator_in_the_cluster_with_a_mounted_plugin_and_leader_election() {
    let Some((cluster, ns)) = setup("deployed").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "data-db-1", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;

    // A cluster operator's plugin, mounted into the operator pod from the Deployment's ConfigMap.
    let tar = std::fs::read(support::built_plugins("plugins").join("backup_strategy_tar.wasm")).expect("tar plugin");
    let hostile = std::fs::read(support::built_plugins("tests/plugins").join("hostile_plugin.wasm")).expect("hostile plugin");
    let system_cm = |bytes: &[u8]| json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "backup-operator-plugins", "namespace": SYSTEM},
        "binaryData": {"strategy.wasm": k8s_openapi::ByteString(bytes.to_vec())}
    });
    let _lock = crd_lock();
    // A namespace left terminating by an earlier run is waited out.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client.clone());
    support::wait_condition(namespaces.clone(), SYSTEM, "no terminating operator namespace", LIMIT, |o: Option<&k8s_openapi::api::core::v1::Namespace>| {
        o.is_none_or(|n| n.metadata.deletion_timestamp.is_none())
    })
    .await;
    if namespaces.get_opt(SYSTEM).await.expect("get namespace").is_none() {
        support::kubectl(&cluster, &["create", "namespace", SYSTEM]);
    }
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), SYSTEM);
    cms.patch("backup-operator-plugins", &PatchParams::apply("backup-operator-tests").force(), &Patch::Apply(system_cm(&tar))).await.expect("plugin configmap");
    // The shipped config/default (CRDs, ClusterRole, Deployment) as `make deploy` applies it. The
    // test cluster runs other tests at the same time, each with its own operator: this one is
    // told to watch only the test's namespace (`WATCH_NAMESPACE`, an environment variable on the
    // Deployment), so that it leaves theirs alone; its permissions are the shipped ClusterRole's.
    let started = Instant::now();
    deploy(&cluster, "apply", "default", &[("WATCH_NAMESPACE", &ns.name)]);
    drop(_lock);
    // The shipped manifests act for a namespace's policies as its `backup` ServiceAccount.
    tenant(&cluster, &ns);
    support::measured(&format!("deploy: make deploy to a ready operator pod in {:.1} s", started.elapsed().as_secs_f64()));

    create_policy(&ns, "in-cluster", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    create_policy(&ns, "mounted", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupStrategy": "custom",
        "plugin": {"file": "strategy.wasm"}
    }))
    .await
    .expect("policy");
    let built_in = wait_success(&ns, "in-cluster", "data-db-0", None).await;
    assert_eq!(built_in.verified, Some(true), "{built_in:?}");
    let first = wait_success(&ns, "mounted", "data-db-0", None).await;
    let first_plugin = first.plugin.clone().expect("plugin label");

    // A new version in the ConfigMap: the kubelet refreshes the mounted file, the operator (polling
    // its plugin directory) picks it up, and the next runs use it, with no restart.
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), SYSTEM);
    let before = restarts(&pods).await;
    let swapped = Instant::now();
    cms.patch("backup-operator-plugins", &PatchParams::apply("backup-operator-tests").force(), &Patch::Apply(system_cm(&hostile))).await.expect("new plugin version");
    ns.api::<BackupPolicy>()
        .patch("mounted", &PatchParams::default(), &Patch::Merge(json!({"spec": {"plugin": {"config": {"attack": "fail-one"}}}})))
        .await
        .expect("config for the new version");
    let new = poll("a run planned by the new plugin version", Duration::from_secs(300), || async {
        status(&ns, "mounted").await.backup_history.into_iter().find(|r| r.plugin.as_ref().is_some_and(|p| p != &first_plugin && p.starts_with("plugin-dir/strategy.wasm@")))
    })
    .await;
    // Compiled in the child within the pod's memory limit (512 MiB: the child gets 384 MiB).
    assert!(!new.reason.as_deref().is_some_and(|r| r.starts_with("PluginCompile")), "{new:?}");
    support::measured(&format!(
        "deploy: new plugin version in the ConfigMap -> first run planned with it after {:.0} s (kubelet refresh + the next scheduled minute); plugin {} -> {}",
        swapped.elapsed().as_secs_f64(),
        first_plugin,
        new.plugin.clone().unwrap_or_default()
    ));
    let after = restarts(&pods).await;
    assert_eq!(before, after, "the operator pod was not restarted");

    // Metrics from the pod.
    let pod = before.keys().next().cloned().expect("operator pod");
    let text = metrics(&cluster, SYSTEM, &pod);
    let series = format!("backup_operator_last_successful_backup_timestamp_seconds{{namespace=\"{}\",policy=\"in-cluster\",pvc=\"data-db-0\",destination=\"\"}}", ns.name);
    assert!(text.contains(&series), "{series} in\n{text}");
    assert!(text.contains("backup_operator_runs_total{") && text.contains("backup_operator_plugin_calls_total{"), "{text}");

    // Two replicas: one leads; kill -9 the leader and the other takes over.
    support::kubectl(&cluster, &["-n", SYSTEM, "scale", "deployment/backup-operator", "--replicas=2"]);
    support::kubectl(&cluster, &["-n", SYSTEM, "rollout", "status", "deployment/backup-operator", "--timeout=180s"]);
    let old = poll("a leader", Duration::from_secs(60), || leader(&cluster)).await;
    let pid = poll("the leader's process", Duration::from_secs(30), || async { operator_pid(&old) }).await;
    let killed = Instant::now();
    let killed_at = chrono::Utc::now();
    // SAFETY: a plain kill(2) of a process of the test cluster's pod.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill -9 {pid}");
    let new_leader = poll("another leader", Duration::from_secs(120), || async { leader(&cluster).await.filter(|l| l != &old) }).await;
    let handover = killed.elapsed();
    support::measured(&format!(
        "deploy: leader {old} killed with SIGKILL -> {new_leader} holds the lease after {:.1} s (lease {} s + {} s grace)",
        handover.as_secs_f64(),
        backup_operator::platform::leader::LEASE_SECONDS,
        backup_operator::platform::leader::GRACE_SECONDS
    ));
    // Runs go on under the new leader, none twice and none lost.
    poll("a run scheduled after the handover", Duration::from_secs(180), || async {
        let newest = jobs(&ns, "in-cluster").await.iter().filter_map(|j| j.annotations().get("backup.example.com/scheduled-time").and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())).max()?;
        (newest > killed_at + chrono::Duration::seconds(backup_operator::platform::leader::LEASE_SECONDS as i64)).then_some(())
    })
    .await;
    let all = jobs(&ns, "in-cluster").await;
    let per_run = runs(&all);
    assert!(per_run.values().all(|n| *n == 1), "one Job per run and PVC: {per_run:?}");
    let times: BTreeSet<chrono::DateTime<chrono::FixedOffset>> = per_run.keys().filter_map(|(t, _)| chrono::DateTime::parse_from_rfc3339(t).ok()).collect();
    let (first_t, last_t) = (times.first().copied().expect("runs"), times.last().copied().expect("runs"));
    let expected = (last_t - first_t).num_minutes() as usize + 1;
    // Retention (7) may have pruned the oldest; within what is kept, no minute is missing.
    assert_eq!(times.len(), expected, "a scheduled minute is missing: {times:?}");
    for (t, _) in per_run.keys() {
        assert_eq!(per_run.keys().filter(|(u, _)| u == t).count(), 2, "both PVCs at {t}");
    }

    let _lock = crd_lock();
    deploy(&cluster, "delete", "default", &[("WATCH_NAMESPACE", &ns.name)]);
    drop(_lock);
    ns.delete().await;
}

#[tokio::test]
async fn the_namespaced_install_backs_up_its_own_namespace_with_a_role_only() {
    let Some((cluster, ns)) = setup("namespaced").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    // A cluster's own setting, in the ConfigMap the manifests read but never apply.
    support::kubectl(&cluster, &["-n", &ns.name, "create", "configmap", "backup-operator-config", "--from-literal=BACKUP_OPERATOR_NOTIFICATION_ALLOW_HOST=alerts.example.com"]);
    deploy(&cluster, "apply", "namespaced", &[("NAMESPACE", &ns.name)]);
    tenant(&cluster, &ns);
    let bindings = support::kubectl(&cluster, &["get", "clusterrolebindings", "-o", "jsonpath={.items[*].subjects[*].namespace}"]);
    assert!(!bindings.split_whitespace().any(|n| n == ns.name), "no cluster-wide binding for the namespaced install");
    create_policy(&ns, "local", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    let run = wait_success(&ns, "local", "data-db-0", None).await;
    assert_eq!(run.verified, Some(true));
    let logs = support::kubectl(&cluster, &["-n", &ns.name, "logs", "deployment/backup-operator"]);
    assert!(!logs.contains("forbidden"), "{logs}");
    assert!(logs.contains("BACKUP_OPERATOR_NOTIFICATION_ALLOW_HOST=alerts.example.com"), "the operator runs with the ConfigMap's setting: {logs}");
    // Deploying again (as `make deploy-namespaced` does after an image change) leaves it in place.
    deploy(&cluster, "apply", "namespaced", &[("NAMESPACE", &ns.name)]);
    let kept = support::kubectl(&cluster, &["-n", &ns.name, "get", "configmap", "backup-operator-config", "-o", "jsonpath={.data.BACKUP_OPERATOR_NOTIFICATION_ALLOW_HOST}"]);
    assert_eq!(kept, "alerts.example.com", "make deploy kept the cluster's setting");
    deploy(&cluster, "delete", "namespaced", &[("NAMESPACE", &ns.name)]);
    ns.delete().await;
}
