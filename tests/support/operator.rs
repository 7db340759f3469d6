//! Helpers for tests that run the operator binary against the test cluster: the operator as a
//! child process, namespaces with claims, policies, and waiting on their status.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use backup_operator::api::BackupPolicy;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{Condition, conditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{TestCluster, TestNamespace};

pub const LIMIT: Duration = Duration::from_secs(150);

/// The operator as a child process, logging to a file; killed (SIGKILL) on drop, and when the test
/// is failing the tail of its log is printed.
pub struct Operator(Child, PathBuf);

impl Operator {
    pub fn start(cluster: &TestCluster, ns: &TestNamespace) -> Operator {
        Operator::start_with(cluster, ns, &[])
    }

    pub fn start_with(cluster: &TestCluster, ns: &TestNamespace, extra: &[&str]) -> Operator {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log_path = std::env::temp_dir().join(format!("backup-operator-test-{}-{n}.log", ns.name));
        let log = std::fs::File::create(&log_path).expect("operator log file");
        // One compile cache for every test operator (a debug build compiles slowly, and dozens of
        // operators start at once), and a compile deadline for that build on a busy machine.
        let cache = std::env::temp_dir().join("backup-operator-test-plugin-cache");
        let child = Command::new(env!("CARGO_BIN_EXE_backup-operator"))
            .args(["run", "--namespace", &ns.name])
            .arg("--plugin-cache-dir")
            .arg(&cache)
            .args(["--plugin-compile-timeout-ms", "300000"])
            // Dozens of operators run at once: each serves its metrics on a loopback port of its own.
            .args(["--metrics-bind-address", "127.0.0.1:0"])
            .args(extra)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("RUST_LOG", std::env::var("BACKUP_OPERATOR_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start backup-operator");
        Operator(child, log_path)
    }

    /// What the operator has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }

    pub fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.1).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- tail of the operator's log {}", self.1.display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        } else {
            let _ = std::fs::remove_file(&self.1);
        }
    }
}

/// The operator watching every namespace, as the cluster-wide install does, under an identity (a
/// ServiceAccount of `home`) that reads everywhere, ConfigMaps and Secrets excepted (so that it
/// compiles no other test's plugin), and writes only in the namespaces it is given (the namespaced
/// install's Role there): it cannot act on the other tests' objects meanwhile. One reconcile at a
/// time unless `args` say otherwise, since it reconciles every test's policies too (and is refused
/// every write there). Killed on drop, its cluster-wide role removed.
pub struct AllNamespacesOperator {
    child: Child,
    log: tempfile::NamedTempFile,
    _kubeconfig: tempfile::NamedTempFile,
    /// The ClusterRole and ClusterRoleBinding's name.
    reader: String,
    kubectl: (PathBuf, PathBuf),
    /// "system:serviceaccount:<home>:watcher".
    pub identity: String,
}

impl AllNamespacesOperator {
    pub fn start(cluster: &TestCluster, home: &TestNamespace, writes_in: &[&str], args: &[&str]) -> AllNamespacesOperator {
        super::kubectl(cluster, &["-n", &home.name, "create", "serviceaccount", "watcher"]);
        let reader = format!("backup-operator-reader-{}", home.name);
        // (As a manifest: `kubectl create clusterrole` refuses resources the cluster does not
        // serve, and the VolumeSnapshot API may not be installed.)
        let reader_role = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {reader}\nrules:\n  - apiGroups: [\"backup.example.com\"]\n    resources: [\"backuppolicies\", \"backuprestores\"]\n    verbs: [\"get\", \"list\", \"watch\"]\n  - apiGroups: [\"batch\"]\n    resources: [\"jobs\"]\n    verbs: [\"get\", \"list\", \"watch\"]\n  - apiGroups: [\"\"]\n    resources: [\"pods\", \"persistentvolumeclaims\", \"events\"]\n    verbs: [\"get\", \"list\", \"watch\"]\n  - apiGroups: [\"snapshot.storage.k8s.io\"]\n    resources: [\"volumesnapshots\"]\n    verbs: [\"get\", \"list\", \"watch\"]\n"
        );
        let reader_file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(reader_file.path(), reader_role).expect("write clusterrole");
        super::kubectl(cluster, &["apply", "-f", &reader_file.path().to_string_lossy()]);
        super::kubectl(cluster, &["create", "clusterrolebinding", &reader, &format!("--clusterrole={reader}"), &format!("--serviceaccount={}:watcher", home.name)]);
        let rbac = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/namespaced/rbac.yaml")).expect("rbac");
        let role = rbac.split("\n---\n").find(|d| d.contains("kind: Role\n")).expect("the namespaced Role");
        let role_file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(role_file.path(), role).expect("write role");
        for ns in writes_in {
            super::kubectl(cluster, &["-n", ns, "apply", "-f", &role_file.path().to_string_lossy()]);
            super::kubectl(cluster, &["-n", ns, "create", "rolebinding", "watcher", "--role=backup-operator", &format!("--serviceaccount={}:watcher", home.name)]);
        }
        let token = super::kubectl(cluster, &["-n", &home.name, "create", "token", "watcher", "--duration=1h"]);
        let mut config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&cluster.kubeconfig).expect("kubeconfig")).expect("yaml");
        config["users"][0]["user"] = serde_yaml::from_str(&format!("token: {}", token.trim())).expect("user");
        let kubeconfig = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(kubeconfig.path(), serde_yaml::to_string(&config).expect("yaml")).expect("write kubeconfig");
        let log = tempfile::NamedTempFile::new().expect("log");
        // The test operators' shared compile cache: the built-ins are compiled once for all.
        let cache = std::env::temp_dir().join("backup-operator-test-plugin-cache");
        let child = Command::new(env!("CARGO_BIN_EXE_backup-operator"))
            .args(["run", "--metrics-bind-address", "127.0.0.1:0", "--plugin-compile-timeout-ms", "300000"])
            .args(if args.contains(&"--reconcile-concurrency") { &[][..] } else { &["--reconcile-concurrency", "1"][..] })
            .arg("--plugin-cache-dir")
            .arg(&cache)
            .args(args)
            .env("KUBECONFIG", kubeconfig.path())
            .env("RUST_LOG", std::env::var("BACKUP_OPERATOR_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("start an all-namespaces operator");
        AllNamespacesOperator {
            child,
            log,
            _kubeconfig: kubeconfig,
            reader,
            kubectl: (cluster.kubectl_path(), cluster.kubeconfig.clone()),
            identity: format!("system:serviceaccount:{}:watcher", home.name),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for AllNamespacesOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // For diagnosis: `BACKUP_OPERATOR_KEEP_LOG=dir` keeps the whole log.
        if let Ok(dir) = std::env::var("BACKUP_OPERATOR_KEEP_LOG") {
            let _ = std::fs::copy(self.log.path(), std::path::Path::new(&dir).join(format!("{}.log", self.reader)));
        }
        if std::thread::panicking() {
            let text = self.log();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- tail of the all-namespaces operator's log");
            for line in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{line}");
            }
        }
        let (kubectl, kubeconfig) = &self.kubectl;
        for kind in ["clusterrolebinding", "clusterrole"] {
            let _ = Command::new(kubectl).args(["delete", "--ignore-not-found", kind, &self.reader]).env("KUBECONFIG", kubeconfig).output();
        }
    }
}


/// Serializes changes of the cluster-wide CRD across test binaries (a test that loosens it, a test
/// that relies on its validation, and every test that installs it).
pub fn crd_lock() -> std::fs::File {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("backup-operator-tests-crd.lock"))
        .expect("crd lock file");
    file.lock().expect("crd lock");
    file
}

/// Installs (or updates) the BackupPolicy and BackupRestore CRDs from config/crd/.
pub async fn install_crd(cluster: &TestCluster) {
    let _lock = crd_lock();
    for file in ["backup.example.com_backuppolicies.yaml", "backup.example.com_backuprestores.yaml"] {
        let yaml = std::fs::read_to_string(format!("{}/config/crd/{file}", env!("CARGO_MANIFEST_DIR"))).expect("crd yaml");
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("crd");
        let api: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
        api.patch(&crd.name_any(), &PatchParams::apply("backup-operator-tests").force(), &Patch::Apply(&crd)).await.expect("apply crd");
        super::wait_condition(api, &crd.name_any(), "CRD established", LIMIT, conditions::is_crd_established()).await;
    }
}

pub async fn setup(prefix: &str) -> Option<(TestCluster, TestNamespace)> {
    let cluster = super::cluster().await?;
    install_crd(&cluster).await;
    let ns = cluster.namespace(prefix).await;
    Some((cluster, ns))
}

pub async fn claim(ns: &TestNamespace, name: &str, labels: serde_json::Value) {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}
    }))
    .expect("pvc");
    let api = ns.api::<PersistentVolumeClaim>();
    api.create(&PostParams::default(), &pvc).await.expect("create pvc");
    super::wait_condition(api, name, &format!("pvc {name} Bound"), LIMIT, |o: Option<&PersistentVolumeClaim>| {
        o.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Bound")
    })
    .await;
}

/// Two PVCs of a database, one unrelated PVC, and the backup storage claim.
pub async fn volumes(ns: &TestNamespace) {
    claim(ns, "data-db-0", json!({"app": "db"})).await;
    claim(ns, "data-db-1", json!({"app": "db"})).await;
    claim(ns, "cache-0", json!({"app": "cache"})).await;
    claim(ns, "backup-storage", json!({})).await;
}

pub async fn create_policy(ns: &TestNamespace, name: &str, spec: serde_json::Value) -> Result<BackupPolicy, kube::Error> {
    let policy: BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "backup.example.com/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("policy");
    ns.api::<BackupPolicy>().create(&PostParams::default(), &policy).await
}

/// Posts a policy as raw JSON, bypassing client-side typing, to see what the API server says.
pub async fn post_raw_policy(ns: &TestNamespace, name: &str, spec: serde_json::Value) -> Result<DynamicObject, kube::Error> {
    let resource = ApiResource::erase::<BackupPolicy>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &resource);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "backup.example.com/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("object");
    api.create(&PostParams::default(), &obj).await
}

pub async fn jobs(ns: &TestNamespace, policy: &str) -> Vec<Job> {
    ns.api::<Job>().list(&ListParams::default().labels(&format!("backup-policy={policy}"))).await.expect("list jobs").items
}

/// Jobs per (scheduled time, PVC).
pub fn runs(jobs: &[Job]) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for job in jobs {
        let at = job.annotations().get("backup.example.com/scheduled-time").cloned().unwrap_or_default();
        let pvc = job.labels().get("pvc").cloned().unwrap_or_default();
        *out.entry((at, pvc)).or_insert(0) += 1;
    }
    out
}

pub async fn wait_policy(ns: &TestNamespace, name: &str, what: &str, cond: impl Condition<BackupPolicy>) {
    super::wait_condition(ns.api::<BackupPolicy>(), name, what, LIMIT, cond).await;
}

pub fn condition_is(type_: &'static str, status: &'static str, reason: &'static str) -> impl Condition<BackupPolicy> {
    move |o: Option<&BackupPolicy>| {
        o.and_then(|p| p.status.as_ref())
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == type_ && c.status == status && c.reason == reason))
    }
}

/// Waits (by polling the API, not by sleeping a fixed time) until the policy has Jobs for at
/// least `n` distinct scheduled times.
pub async fn wait_runs(ns: &TestNamespace, policy: &str, n: usize) -> Vec<Job> {
    super::wait_for(&format!("{n} runs of {policy}"), LIMIT + Duration::from_secs(60 * n as u64), async {
        loop {
            let all = jobs(ns, policy).await;
            let times: std::collections::BTreeSet<_> = runs(&all).into_keys().map(|(t, _)| t).collect();
            if times.len() >= n {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
}

pub async fn plugin_configmap(ns: &TestNamespace, name: &str, bytes: &[u8]) {
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
        "binaryData": {"plugin.wasm": k8s_openapi::ByteString(bytes.to_vec())}
    });
    ns.api::<k8s_openapi::api::core::v1::ConfigMap>()
        .patch(name, &PatchParams::apply("backup-operator-tests").force(), &Patch::Apply(cm))
        .await
        .expect("apply plugin configmap");
}


/// The directory of the claim's hostPath volume on this machine (the test cluster's provisioner).
pub async fn claim_dir(ns: &TestNamespace, claim: &str) -> PathBuf {
    let pvc = ns.api::<PersistentVolumeClaim>().get(claim).await.expect("pvc");
    let volume = pvc.spec.and_then(|s| s.volume_name).expect("bound pvc");
    let pv = Api::<PersistentVolume>::all(ns.client.clone()).get(&volume).await.expect("pv");
    PathBuf::from(pv.spec.and_then(|s| s.host_path).map(|h| h.path).expect("hostPath pv"))
}

/// Polls `f` every half second until it returns `Some`, failing the test after `limit`.
pub async fn poll<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    super::wait_for(what, limit, async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
}

/// The Ready condition's reason and message.
pub fn ready(status: &backup_operator::api::BackupPolicyStatus) -> (String, String) {
    status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| (c.reason.clone(), c.message.clone())).unwrap_or_default()
}

/// The policy's status, now.
pub async fn status(ns: &TestNamespace, name: &str) -> backup_operator::api::BackupPolicyStatus {
    ns.api::<BackupPolicy>().get(name).await.expect("policy").status.unwrap_or_default()
}

/// Reasons of the events about an object, once they include each of `wanted` (the operator
/// publishes events in the background, just after the status that goes with them).
pub async fn event_reasons(cluster: &TestCluster, ns: &TestNamespace, object: &str, wanted: &[&str]) -> String {
    poll(&format!("events {wanted:?} about {object}"), Duration::from_secs(60), || async {
        let reasons = super::kubectl(cluster, &["-n", &ns.name, "get", "events", "--field-selector", &format!("involvedObject.name={object}"), "-o", "jsonpath={.items[*].reason}"]);
        wanted.iter().all(|w| reasons.split_whitespace().any(|r| r == *w)).then_some(reasons)
    })
    .await
}

/// Lets policies in the namespace run hooks while the operator acts with its own rights (a
/// cluster admin's label; with --tenant-impersonation, RBAC decides instead).
pub fn enable_hooks(cluster: &TestCluster, ns: &TestNamespace) {
    super::kubectl(cluster, &["label", "namespace", &ns.name, "backup.example.com/hooks=enabled", "--overwrite"]);
}

/// A pod that keeps a claim mounted, as an application would.
pub async fn mount_pod(ns: &TestNamespace, name: &str, claim: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "app", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent",
                            "command": ["sleep", "3600"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
            "terminationGracePeriodSeconds": 0
        }
    }))
    .expect("pod");
    ns.api::<Pod>().create(&PostParams::default(), &pod).await.expect("create pod");
    super::wait_condition(ns.api::<Pod>(), name, "pod running", LIMIT, conditions::is_pod_running()).await;
}
