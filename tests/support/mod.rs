//! Test support for integration tests that need the local test cluster (`make cluster-up`).
//!
//! A test calls [`cluster`]: it returns `None` (after printing a loud SKIPPED line) when no cluster
//! is up, unless `BACKUP_OPERATOR_REQUIRE_CLUSTER=1` — which `.ci/run` sets — turns that into a
//! failure, so CI never skips silently.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

pub mod components;
pub mod operator;
pub mod requests;
pub mod webhook;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

const DEFAULT_CLUSTER_DIR: &str = "/var/tmp/backup-operator-cluster";

pub struct TestCluster {
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub log_dir: PathBuf,
}

pub fn cluster_dir() -> PathBuf {
    std::env::var_os("BACKUP_OPERATOR_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CLUSTER_DIR))
}

/// A value of the cluster's env file (`cluster-up.sh` writes the S3 server's address and keys, and
/// the paths of the harness's tools such as HELM and PROMTOOL).
pub fn cluster_env(key: &str) -> String {
    let env = std::fs::read_to_string(cluster_dir().join("env")).expect("cluster env file");
    env.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{key} in the cluster's env file: run tests/cluster/cluster-up.sh"))
}

/// The test cluster's client, or `None` when it is not up and not required.
pub async fn cluster() -> Option<TestCluster> {
    let dir = cluster_dir();
    let kubeconfig = dir.join("kubeconfig");
    let required = std::env::var("BACKUP_OPERATOR_REQUIRE_CLUSTER").is_ok_and(|v| v == "1");
    if !kubeconfig.exists() {
        let msg = format!(
            "the test cluster is not up ({} is missing): run `make cluster-up`",
            kubeconfig.display()
        );
        if required {
            panic!("BACKUP_OPERATOR_REQUIRE_CLUSTER=1 but {msg}");
        }
        eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
        return None;
    }
    let kc = Kubeconfig::read_from(&kubeconfig).expect("read test cluster kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("load test cluster kubeconfig");
    let client = Client::try_from(config).expect("build kube client");
    Some(TestCluster { client, kubeconfig, log_dir: dir.join("logs") })
}

impl TestCluster {
    /// The kubectl built for the test cluster.
    pub fn kubectl_path(&self) -> PathBuf {
        cluster_dir().join("kubectl")
    }

    /// Creates a namespace with a unique name starting with `prefix`.
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after epoch")
            .as_nanos()
            % 1_000_000_000;
        let name = format!("{prefix}-{suffix}");
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}
        }))
        .expect("namespace object");
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        // Pods need the namespace's default ServiceAccount, created asynchronously.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.client.clone(), &name);
        wait_for(
            "default service account",
            Duration::from_secs(60),
            await_condition(sa, "default", |o: Option<&_>| o.is_some()),
        )
        .await
        .expect("watch default service account");
        TestNamespace { name, client: self.client.clone(), log_dir: self.log_dir.clone() }
    }
}

/// A namespace for one test. On a panic, prints the tail of every cluster component log; on
/// success the test calls [`TestNamespace::delete`].
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
    log_dir: PathBuf,
}

impl TestNamespace {
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    pub async fn delete(self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test namespace {} kept for inspection", self.name);
            print_log_tails(&self.log_dir, 30);
        }
    }
}

pub fn print_log_tails(log_dir: &Path, lines: usize) {
    let Ok(entries) = std::fs::read_dir(log_dir) else {
        eprintln!("no cluster logs in {}", log_dir.display());
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        eprintln!("--- tail of {}", path.display());
        for line in &all[all.len().saturating_sub(lines)..] {
            eprintln!("{line}");
        }
    }
}

/// Awaits `fut`, failing the test with `what` if it does not finish within `limit`. The limit is a
/// guard against hanging forever, not a timing assertion.
pub async fn wait_for<F: Future>(what: &str, limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("gave up waiting for {what} after {limit:?}"),
    }
}

/// Waits until `cond` holds for the named object. A watch that ends with an error (a CRD
/// re-applied by another test expires every watch on its objects) is started again.
pub async fn wait_condition<K>(api: Api<K>, name: &str, what: &str, limit: Duration, cond: impl Condition<K>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    wait_for(what, limit, async {
        loop {
            match await_condition(api.clone(), name, |o: Option<&K>| cond.matches_object(o)).await {
                Ok(_) => return,
                Err(e) => {
                    eprintln!("watching for {what}: {e}; watching again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    })
    .await;
}

/// Builds a workspace of test plugins with `scripts/build-plugins.sh` (once per test binary) and
/// returns the directory holding its `.wasm` components.
pub fn built_plugins(workspace: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, dir)) = built.iter().find(|(w, _)| w == workspace) {
        return dir.clone();
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(repo.join("scripts/build-plugins.sh"))
        .arg(repo.join(workspace))
        .output()
        .expect("run scripts/build-plugins.sh");
    assert!(output.status.success(), "building {workspace} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    built.push((workspace.to_owned(), dir.clone()));
    dir
}

/// Runs the test cluster's kubectl; returns stdout, failing the test on an error.
pub fn kubectl(cluster: &TestCluster, args: &[&str]) -> String {
    let out = std::process::Command::new(cluster.kubectl_path())
        .args(args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .expect("run kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Records a measured figure (a duration, a size) for the run's summary: printed, and appended to
/// the file named by `BACKUP_OPERATOR_MEASUREMENTS` when set (`scripts/test.sh` prints it at the
/// end, since the test harness captures the output of passing tests).
pub fn measured(line: &str) {
    eprintln!("measured: {line}");
    if let Some(path) = std::env::var_os("BACKUP_OPERATOR_MEASUREMENTS") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}
