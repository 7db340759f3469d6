//! `make bench-scale`: the operator's API work at scale, on the local test cluster (a benchmark,
//! not a test). With the node cordoned, so that the runs' pods stay Pending and only the API work
//! is measured, it creates N pre-bound PVCs and then either N policies with one PVC each or one
//! policy with N PVCs, all due at the same minute, runs the release operator, and reports:
//! the time from the scheduled minute until all N Jobs exist, p50/p99 of (Job seen - minute), the
//! same N Jobs (copies of the operator's) created by a plain client (serially and 32 at a time), the operator's API requests per
//! Job (its own request counter), and the operator's RSS idle and at its peak and CPU time while
//! idle. `SCALE_N` (default "100,1000") and `SCALE_IDLE_SECONDS` (default 60) tune it; `SCALE_OPERATOR_ARGS`
//! adds flags to the operator's command line (for example `--reconcile-concurrency 32`);
//! `SCALE_SHAPES` picks the rounds (default "many,one"); `SCALE_OPERATOR_LOG` names a file for the operator's log (suffixed with the round's namespace), at `SCALE_OPERATOR_RUST_LOG` (default `warn`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

const NODE: &str = "backup-node";

fn cluster_dir() -> std::path::PathBuf {
    std::env::var_os("BACKUP_OPERATOR_CLUSTER_DIR").map_or_else(|| "/var/tmp/backup-operator-cluster".into(), Into::into)
}

async fn client() -> Result<Client, Error> {
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster_dir().join("kubeconfig"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The operator's own request counter (`backup_operator_kubernetes_requests_total`), per verb and
/// resource (the series as `{verb=...,resource=...}`), and its reconcile counts (as the whole
/// series name, shown but not counted as requests).
async fn operator_requests(port: u16) -> Result<BTreeMap<String, f64>, Error> {
    let text = http_get(port, "/metrics").await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("backup_operator_kubernetes_requests_total{") || l.starts_with("backup_operator_reconcile_duration_seconds_count{"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.trim_start_matches("backup_operator_kubernetes_requests_total").to_owned(), value.parse::<f64>().ok()?))
        })
        .collect())
}

/// A plain HTTP/1.0 GET on loopback.
async fn http_get(port: u16, path: &str) -> Result<String, Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// RSS and peak RSS (KiB), and CPU seconds, of a process.
fn usage(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, rest)| rest.split(' ').collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of /proc/pid/stat (11 and 12 after the command).
    let cpu = (ticks(11) + ticks(12)) as f64 / 100.0;
    (kib("VmRSS:"), kib("VmHWM:"), cpu)
}

fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.flatten().filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))).count())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn namespace(client: &Client, name: &str) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        api.delete(name, &DeleteParams::default()).await?;
        while api.get_opt(name).await?.is_some() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}}))?).await?;
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), name);
    while sa.get_opt("default").await?.is_none() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// N PVs bound in advance to N claims `data-<i>` (labelled `index=<i>`, `app=bench`), and the
/// storage claim, 32 requests at a time.
async fn volumes(client: &Client, ns: &str, n: usize) -> Result<(), Error> {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    remove_volumes(client, ns).await?;
    let names: Vec<String> = (0..n).map(|i| format!("data-{i}")).chain(["backup-storage".to_owned()]).collect();
    futures::stream::iter(names.iter().enumerate())
        .map(|(i, claim)| {
            let (pvs, pvcs) = (pvs.clone(), pvcs.clone());
            async move {
                let pv_name = format!("{ns}-{claim}");
                let pv: PersistentVolume = serde_json::from_value(json!({
                    "metadata": {"name": pv_name, "labels": {"bench-scale": ns}},
                    "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                             "hostPath": {"path": format!("/tmp/hostpath_pv/bench/{pv_name}")},
                             "claimRef": {"namespace": ns, "name": claim}}
                }))?;
                pvs.create(&PostParams::default(), &pv).await?;
                let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
                    "metadata": {"name": claim, "labels": {"app": "bench", "index": i.to_string()}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv_name,
                             "resources": {"requests": {"storage": "1Mi"}}}
                }))?;
                pvcs.create(&PostParams::default(), &pvc).await?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    loop {
        let bound = pvcs.list(&ListParams::default()).await?.items.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")).count();
        if bound == n + 1 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The PVs of an earlier round of this namespace, deleted and gone.
async fn remove_volumes(client: &Client, ns: &str) -> Result<(), Error> {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let selector = ListParams::default().labels(&format!("bench-scale={ns}"));
    pvs.delete_collection(&DeleteParams::default(), &selector).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pvs.list_metadata(&selector).await?.items.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("the PVs of {ns} are still there after 120 s").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

fn policy(name: &str, selector: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "backup.example.com/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": name},
           "spec": {"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": selector}, "startTimeoutSeconds": 3600}})
}

struct Figures {
    all_jobs: f64,
    p50: f64,
    p99: f64,
    requests_per_job: f64,
    rss_idle_mib: f64,
    rss_peak_mib: f64,
    rss_after_mib: f64,
    sockets_peak: usize,
    idle_cpu: f64,
    /// Operator CPU seconds from the policies' settling until all Jobs exist.
    run_cpu: f64,
    idle_seconds: u64,
}

/// One round: `policies` policies over N PVCs, due at the next minute, with the operator running.
async fn round(client: &Client, operator: &std::path::Path, ns: &str, n: usize, one_policy: bool, idle: u64) -> Result<Figures, Error> {
    namespace(client, ns).await?;
    volumes(client, ns, n).await?;
    let policies: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &kube::api::ApiResource::erase::<backup_operator::api::BackupPolicy>(&()));
    let port = free_port()?;
    let mut child = std::process::Command::new(operator)
        .args(["run", "--namespace", ns, "--metrics-bind-address", &format!("127.0.0.1:{port}")])
        .args(std::env::var("SCALE_OPERATOR_ARGS").unwrap_or_default().split_whitespace())
        .env("KUBECONFIG", cluster_dir().join("kubeconfig"))
        .env("NO_COLOR", "1")
        .env("RUST_LOG", std::env::var("SCALE_OPERATOR_RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(match std::env::var_os("SCALE_OPERATOR_LOG") {
            Some(path) => std::process::Stdio::from(std::fs::File::create(format!("{}.{ns}", path.to_string_lossy()))?),
            None => std::process::Stdio::null(),
        })
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id();
    // Idle with nothing to do: memory and CPU.
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let (_, _, cpu_before) = usage(pid);
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let (rss_idle, _, cpu_after) = usage(pid);
    // Policies created at least 15 s before a minute, so that all are due at that minute.
    while Utc::now().second() > 30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let created = if one_policy { vec![policy("all", json!({"app": "bench"}))] } else { (0..n).map(|i| policy(&format!("p-{i}"), json!({"index": i.to_string()}))).collect() };
    futures::stream::iter(created)
        .map(|p| {
            let policies = policies.clone();
            async move { policies.create(&PostParams::default(), &serde_json::from_value(p)?).await.map(|_| ()).map_err(Error::from) }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let now = Utc::now();
    let minute = now.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(now) + chrono::Duration::minutes(1);
    // The policies' first status writes (at creation) are not the run's: wait for them before
    // counting, as long as the minute is not close.
    while Utc::now() < minute - chrono::Duration::seconds(3) {
        let listed = policies.list(&ListParams::default()).await?;
        if listed.items.iter().all(|p| p.data.pointer("/status/nextScheduleTime").is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let requests_before = operator_requests(port).await?;
    let cpu_at_minute = usage(pid).2;
    // Every Job as it is seen, against the minute.
    let seen: Arc<Mutex<BTreeMap<String, f64>>> = Arc::default();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let watch = {
        let seen = seen.clone();
        tokio::spawn(watcher(jobs.clone(), watcher::Config::default().labels("backup.example.com/kind=backup")).applied_objects().for_each(move |job| {
            let seen = seen.clone();
            async move {
                if let Ok(job) = job {
                    let lag = (Utc::now() - minute).num_milliseconds() as f64 / 1000.0;
                    if let Ok(mut s) = seen.lock() {
                        s.entry(job.name_any()).or_insert(lag);
                    }
                }
            }
        }))
    };
    let (mut peak_rss, mut peak_sockets) = (0, 0);
    loop {
        let (_, hwm, _) = usage(pid);
        peak_rss = peak_rss.max(hwm);
        peak_sockets = peak_sockets.max(sockets(pid));
        if seen.lock().map(|s| s.len()).unwrap_or(0) >= n {
            break;
        }
        if Utc::now() > minute + chrono::Duration::minutes(5) {
            return Err(format!("only {} of {n} Jobs after 5 minutes", seen.lock().map(|s| s.len()).unwrap_or(0)).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu_run = usage(pid).2 - cpu_at_minute;
    // The reconciles that follow the Jobs' creation count too: wait for them to settle.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let requests_after = operator_requests(port).await?;
    let mut requests = 0.0;
    for (series, after) in &requests_after {
        let delta = after - requests_before.get(series).copied().unwrap_or(0.0);
        if delta > 0.0 {
            eprintln!("bench-scale {ns}: {delta:>6} {series}");
            if series.starts_with('{') {
                requests += delta;
            }
        }
    }
    let (rss_after, hwm, _) = usage(pid);
    watch.abort();
    let _ = child.kill();
    let _ = child.wait();
    let mut lags: Vec<f64> = seen.lock().map(|s| s.values().copied().collect()).unwrap_or_default();
    lags.sort_by(f64::total_cmp);
    Ok(Figures {
        all_jobs: lags.last().copied().unwrap_or(f64::NAN),
        p50: percentile(&lags, 0.5),
        p99: percentile(&lags, 0.99),
        requests_per_job: requests / n as f64,
        rss_idle_mib: rss_idle as f64 / 1024.0,
        rss_peak_mib: peak_rss.max(hwm) as f64 / 1024.0,
        rss_after_mib: rss_after as f64 / 1024.0,
        sockets_peak: peak_sockets,
        idle_cpu: cpu_after - cpu_before,
        run_cpu: cpu_run,
        idle_seconds: idle,
    })
}

/// The same N Jobs created by a plain client, `concurrency` at a time: seconds. The Jobs are copies
/// of the operator's (the same spec, labels, annotations and owner references, only renamed, and
/// without what the API server fills in), applied the same way.
async fn plain_client(client: &Client, ns: &str, n: usize, concurrency: usize) -> Result<f64, Error> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let operators = jobs.list(&ListParams::default().labels("backup.example.com/kind=backup")).await?.items;
    if operators.len() < n {
        return Err(format!("{} of the operator's {n} Jobs to copy", operators.len()).into());
    }
    let copies: Vec<Job> = operators.iter().take(n).enumerate().map(|(i, job)| copy_of(job, format!("plain-{concurrency}-{i}"))).collect();
    let started = Instant::now();
    futures::stream::iter(copies)
        .map(|job| {
            let jobs = jobs.clone();
            async move { jobs.patch(&job.name_any(), &PatchParams::apply("bench-scale"), &Patch::Apply(&job)).await.map(|_| ()).map_err(Error::from) }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(started.elapsed().as_secs_f64())
}

/// A Job as its creator sent it, renamed: without the fields the API server and the Job
/// controller fill in.
fn copy_of(job: &Job, name: String) -> Job {
    let generated = ["batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name", "controller-uid", "job-name"];
    let mut spec = job.spec.clone().unwrap_or_default();
    spec.selector = None;
    spec.manual_selector = None;
    if let Some(labels) = spec.template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.retain(|k, _| !generated.contains(&k.as_str()));
    }
    Job {
        metadata: kube::api::ObjectMeta {
            name: Some(name),
            labels: job.metadata.labels.clone(),
            annotations: job.metadata.annotations.clone(),
            owner_references: job.metadata.owner_references.clone(),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The CRDs, from the Rust types, applied and established.
async fn install_crds(client: &Client) -> Result<(), Error> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for yaml in [backup_operator::api::crd_yaml()?, backup_operator::api::restore_crd_yaml()?] {
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml)?;
        crds.patch(&crd.name_any(), &PatchParams::apply("bench-scale").force(), &Patch::Apply(&crd)).await?;
        let established = || async {
            let crd = crds.get(&crd.name_any()).await.ok()?;
            crd.status?.conditions?.into_iter().find(|c| c.type_ == "Established" && c.status == "True")
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while established().await.is_none() {
            if Instant::now() > deadline {
                return Err(format!("CRD {} not established after 60 s", crd.name_any()).into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = client().await?;
    let operator = std::env::current_exe()?.parent().and_then(|d| d.parent()).map(|d| d.join("backup-operator")).ok_or("no operator binary")?;
    let sizes: Vec<usize> = std::env::var("SCALE_N").unwrap_or_else(|_| "100,1000".into()).split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let idle: u64 = std::env::var("SCALE_IDLE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let nodes: Api<Node> = Api::all(client.clone());
    let cordon = |on: bool| {
        let nodes = nodes.clone();
        async move { nodes.patch(NODE, &PatchParams::default(), &Patch::Merge(json!({"spec": {"unschedulable": on}}))).await }
    };
    install_crds(&client).await?;
    cordon(true).await?;
    let mut rows = Vec::new();
    for &n in &sizes {
        let shapes = std::env::var("SCALE_SHAPES").unwrap_or_else(|_| "many,one".into());
        for one_policy in [false, true].into_iter().filter(|&one| shapes.split(',').any(|s| s.trim() == if one { "one" } else { "many" })) {
            let ns = format!("bench-scale-{n}-{}", if one_policy { "one" } else { "many" });
            eprintln!("bench-scale: {ns} ...");
            let figures = round(&client, &operator, &ns, n, one_policy, idle).await;
            let serial = plain_client(&client, &ns, n, 1).await;
            let parallel = plain_client(&client, &ns, n, 32).await;
            let _ = Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::default()).await;
            let selector = ListParams::default().labels(&format!("bench-scale={ns}"));
            let _ = Api::<PersistentVolume>::all(client.clone()).delete_collection(&DeleteParams::default(), &selector).await;
            match (figures, serial, parallel) {
                (Ok(f), Ok(serial), Ok(parallel)) => rows.push((n, one_policy, f, serial, parallel)),
                (f, s, p) => eprintln!("bench-scale {ns}: {:?} {:?} {:?}", f.err(), s.err(), p.err()),
            }
        }
    }
    cordon(false).await?;
    println!("| N | policies | minute -> all Jobs | lag p50 / p99 | rate vs 32-way client | plain client serial / 32-way | API requests per Job | RSS idle / peak / after | sockets peak | CPU until all Jobs | CPU idle |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (n, one_policy, f, serial, parallel) in rows {
        let policies = if one_policy { "1 (N PVCs)".to_owned() } else { format!("{n} (1 PVC each)") };
        println!(
            "| {n} | {policies} | {:.1} s | {:.1} / {:.1} s | {:.2} | {serial:.1} / {parallel:.1} s | {:.1} | {:.0} / {:.0} / {:.0} MiB | {} | {:.1} s | {:.2} s in {} s |",
            f.all_jobs,
            f.p50,
            f.p99,
            parallel / f.all_jobs.max(0.001),
            f.requests_per_job,
            f.rss_idle_mib,
            f.rss_peak_mib,
            f.rss_after_mib,
            f.sockets_peak,
            f.run_cpu,
            f.idle_cpu,
            f.idle_seconds
        );
    }
    Ok(())
}
