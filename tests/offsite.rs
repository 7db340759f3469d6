//! Backups that leave the cluster, on the real cluster: the restic strategy writing each PVC of a
//! StatefulSet to a claim and to the S3-compatible server the harness runs (Versity Gateway),
//! incrementally and encrypted; retention per destination; a restore from S3; a destination whose server stops; and
//! the reasons for missing credentials and a wrong password. The repositories are inspected with
//! the host's own restic, as a user would.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use backup_operator::api::{BackupRestore, RunStatus};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use serde_json::json;
use sha2::{Digest, Sha256};
use support::operator::{Operator, claim, claim_dir, condition_is, create_policy, jobs, poll, post_raw_policy, setup, status, wait_policy};
use support::{TestNamespace, measured};

const MIB: usize = 1 << 20;
const PASSWORD: &str = "correct horse battery staple";
/// Long enough for several runs of a 200 MiB dataset on a busy 2-core machine.
const RUNS_LIMIT: Duration = Duration::from_secs(900);

/// The harness's S3 server, from the cluster's env file.
struct S3 {
    endpoint: String,
    bucket: String,
    access_key: String,
    secret_key: String,
    versitygw: PathBuf,
}

impl S3 {
    fn from_cluster() -> S3 {
        let get = support::cluster_env;
        S3 { endpoint: get("S3_ENDPOINT"), bucket: get("S3_BUCKET"), access_key: get("S3_ACCESS_KEY"), secret_key: get("S3_SECRET_KEY"), versitygw: get("VERSITYGW").into() }
    }
}

async fn secret(ns: &TestNamespace, name: &str, data: &[(&str, &str)]) {
    let data: BTreeMap<String, String> = data.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).expect("secret");
    ns.api::<Secret>().create(&PostParams::default(), &s).await.expect("create secret");
}

/// The host's restic against a repository, with the given password; (success, stdout + stderr).
fn restic(repo: &str, password: &str, s3: &S3, args: &[&str]) -> (bool, String) {
    let out = Command::new("restic")
        .args(["--repo", repo, "--no-cache"])
        .args(args)
        .env("RESTIC_PASSWORD", password)
        .env("AWS_ACCESS_KEY_ID", &s3.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key)
        .output()
        .expect("run restic (Debian package restic, scripts/install-deps.sh)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn snapshot_count(repo: &str, s3: &S3) -> Option<usize> {
    // Without a lock: the operator's verify Job may hold the repository's exclusive lock meanwhile.
    let (ok, out) = restic(repo, PASSWORD, s3, &["--no-lock", "snapshots", "--json"]);
    let list: Vec<serde_json::Value> = if ok { serde_json::from_str(out.lines().last()?).ok()? } else { return None };
    Some(list.len())
}

fn raw_data_bytes(repo: &str, s3: &S3) -> u64 {
    let (ok, out) = restic(repo, PASSWORD, s3, &["--no-lock", "stats", "--mode", "raw-data", "--json"]);
    assert!(ok, "restic stats: {out}");
    let stats: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or_default()).expect("stats json");
    stats["total_size"].as_u64().expect("total_size")
}

/// Deterministic incompressible bytes (xorshift64*), so that restic can neither compress nor
/// deduplicate them away.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// sha256 of every file under `root`, by relative path.
fn digests(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
                out.insert(rel, format!("{:x}", Sha256::digest(std::fs::read(&path).expect("read file"))));
            }
        }
    }
    out
}

/// Waits until a successful run of data-db-0 to the destination was scheduled after `after`;
/// returns its history entry.
async fn success_after(ns: &TestNamespace, policy: &str, destination: &str, after: Option<chrono::DateTime<chrono::Utc>>) -> backup_operator::api::BackupRun {
    poll(&format!("a successful run of {policy} to {destination} scheduled after {after:?}"), RUNS_LIMIT, || async {
        let s = status(ns, policy).await;
        s.backup_history.into_iter().find(|r| {
            r.destination.as_deref() == Some(destination)
                && r.pvc == "data-db-0"
                && r.status == RunStatus::Succeeded
                && after.is_none_or(|a| r.scheduled_time.as_ref().and_then(backup_operator::api::from_time).is_some_and(|t| t > a))
        })
    })
    .await
}

fn seconds(run: &backup_operator::api::BackupRun) -> f64 {
    let at = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| t.as_ref().and_then(backup_operator::api::from_time);
    match (at(&run.start_time), at(&run.completion_time)) {
        (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
        _ => f64::NAN,
    }
}

#[tokio::test]
async fn restic_backs_up_to_a_claim_and_s3_incrementally_keeps_two_and_restores_from_s3() {
    let Some((cluster, ns)) = setup("offsite").await else { return };
    let s3 = S3::from_cluster();
    statefulset(&ns).await;
    claim(&ns, "backup-storage", json!({})).await;
    secret(&ns, "s3-credentials", &[("AWS_ACCESS_KEY_ID", &s3.access_key), ("AWS_SECRET_ACCESS_KEY", &s3.secret_key)]).await;
    secret(&ns, "restic-password", &[("password", PASSWORD)]).await;
    // 200 MiB of incompressible data in 20 files.
    let data = claim_dir(&ns, "data-db-0").await;
    for i in 0..20 {
        std::fs::create_dir_all(data.join("tables")).expect("mkdir");
        std::fs::write(data.join(format!("tables/t{i:02}.dat")), noise(i + 1, 10 * MIB)).expect("write dataset");
    }
    let _operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "db", json!({
        "schedule": "*/1 * * * *",
        "pvcSelector": {"matchLabels": {"app": "db"}},
        "backupStrategy": "restic",
        "retentionCount": 2,
        "verify": {"schedule": "*/2 * * * *"},
        "restic": {"passwordSecret": {"name": "restic-password", "key": "password"}},
        "destinations": [
            {"name": "local", "claim": {"name": "backup-storage"}},
            {"name": "offsite", "s3": {"endpoint": s3.endpoint, "bucket": s3.bucket, "prefix": ns.name, "credentialsSecret": "s3-credentials"}},
        ],
    }))
    .await
    .expect("create policy");
    // The tar strategy on the same data in the same run, for comparison (then removed).
    create_policy(&ns, "db-tar", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}}))
        .await
        .expect("create tar policy");
    let s3_repo = format!("s3:{}/{}/{}/{}/db/data-db-0", s3.endpoint, s3.bucket, ns.name, ns.name);
    let storage = claim_dir(&ns, "backup-storage").await;
    let claim_repo = storage.join(format!("{}/db/data-db-0/repo", ns.name)).to_string_lossy().into_owned();
    // Every PVC of the StatefulSet has a repository at each destination.
    let repos: Vec<String> = ["data-db-0", "data-db-1"]
        .iter()
        .flat_map(|pvc| {
            [format!("s3:{}/{}/{}/{}/db/{pvc}", s3.endpoint, s3.bucket, ns.name, ns.name), storage.join(format!("{}/db/{pvc}/repo", ns.name)).to_string_lossy().into_owned()]
        })
        .collect();

    // The first backup reaches both destinations.
    let first_offsite = success_after(&ns, "db", "offsite", None).await;
    let first_local = success_after(&ns, "db", "local", None).await;
    // The status says which plugin the policy uses.
    let plugin = status(&ns, "db").await.plugin.expect("status.plugin");
    assert_eq!((plugin.source.as_str(), plugin.name.as_str(), plugin.sha256.len()), ("restic", "restic", 64), "{plugin:?}");
    let first_bytes = raw_data_bytes(&s3_repo, &s3);
    let added_first = first_offsite.size_bytes.expect("bytes added by the first backup");
    assert!(added_first >= 200 * MIB as u64 * 9 / 10, "the first backup stores the whole dataset: {added_first}");
    let first_tar = poll("the tar policy's first backup", RUNS_LIMIT, || async {
        status(&ns, "db-tar").await.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded && r.pvc == "data-db-0")
    })
    .await;
    ns.api::<backup_operator::api::BackupPolicy>().delete("db-tar", &Default::default()).await.expect("delete the tar policy");
    measured(&format!(
        "200 MiB, first backup, same run, concurrently: restic to S3 {:.1} s, restic to a claim {:.1} s, tar.gz to a claim {:.1} s ({} bytes)",
        seconds(&first_offsite),
        seconds(&first_local),
        seconds(&first_tar),
        first_tar.size_bytes.unwrap_or_default()
    ));

    // The repository is encrypted: without the password it cannot be read.
    let (ok, out) = restic(&s3_repo, "not the password", &s3, &["snapshots"]);
    assert!(!ok && out.contains("wrong password"), "{out}");
    let (ok, out) = restic(&claim_repo, "not the password", &s3, &["snapshots"]);
    assert!(!ok && out.contains("wrong password"), "{out}");

    // Change 1 % of the data (2 MiB in the middle of one file): the next backup adds little.
    let changed_at = chrono::Utc::now();
    let file = data.join("tables/t07.dat");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[4 * MIB..6 * MIB].copy_from_slice(&noise(99, 2 * MIB));
    std::fs::write(&file, bytes).expect("rewrite 1 %");
    let second = success_after(&ns, "db", "offsite", Some(changed_at)).await;
    let added = raw_data_bytes(&s3_repo, &s3) - first_bytes;
    measured(&format!(
        "restic incremental: 1 % of 200 MiB changed; the repository grew by {added} bytes ({:.2} % of the first backup's {first_bytes}); the run reported {} bytes added",
        added as f64 * 100.0 / first_bytes as f64,
        second.size_bytes.unwrap_or_default()
    ));
    assert!(added * 10 < first_bytes, "an incremental backup adds under 10 %: {added} of {first_bytes}");

    // After 5 runs with retentionCount 2, each repository holds exactly 2 snapshots.
    let started = status(&ns, "db").await.backup_history.iter().filter_map(|r| r.scheduled_time.as_ref().and_then(backup_operator::api::from_time)).min().expect("a run");
    poll("5 runs with both destinations' repositories pruned to 2 snapshots", RUNS_LIMIT, || async {
        let s = status(&ns, "db").await;
        let last = s.last_schedule_time.as_ref().and_then(backup_operator::api::from_time)?;
        let done = (last - started).num_minutes() >= 4 && s.backup_history.iter().filter(|r| r.status == RunStatus::Running || r.status == RunStatus::Pending).count() == 0;
        // The status counts a pruned run until its Job is deleted, just after the prune.
        let counted = s.destinations.len() == 2 && s.destinations.iter().all(|d| d.backups == 4);
        (done && counted && repos.iter().all(|repo| snapshot_count(repo, &s3) == Some(2))).then_some(())
    })
    .await;
    let s = status(&ns, "db").await;
    for d in &s.destinations {
        assert!(d.backups == 4 && d.last_successful_time.is_some() && d.message.is_empty(), "2 PVCs × 2 kept: {d:?}");
    }
    // spec.verify re-reads the newest backup of each PVC at each destination in full.
    poll("a re-verified backup at each destination", RUNS_LIMIT, || async {
        let s = status(&ns, "db").await;
        ["local", "offsite"]
            .iter()
            .all(|d| s.backup_history.iter().any(|r| r.destination.as_deref() == Some(*d) && r.last_verify_time.is_some() && r.verified == Some(true)))
            .then_some(())
    })
    .await;

    // A restore from the S3 destination into a new claim reproduces the data byte for byte.
    let restore: BackupRestore = serde_json::from_value(json!({
        "apiVersion": "backup.example.com/v1alpha1", "kind": "BackupRestore", "metadata": {"name": "from-offsite"},
        "spec": {"source": {"policy": "db", "pvc": "data-db-0", "destination": "offsite"}, "target": {"newClaim": {"name": "restored"}}}
    }))
    .expect("restore");
    let began = Instant::now();
    ns.api::<BackupRestore>().create(&PostParams::default(), &restore).await.expect("create restore");
    let done = poll("the restore from S3 finishes", RUNS_LIMIT, || async {
        let r = ns.api::<BackupRestore>().get("from-offsite").await.ok()?;
        let phase = r.status.as_ref()?.phase?;
        phase.finished().then_some(r)
    })
    .await;
    let restore_status = done.status.expect("status");
    assert_eq!(restore_status.phase, Some(backup_operator::api::RestorePhase::Succeeded), "{restore_status:?}");
    assert_eq!(restore_status.backup.as_ref().and_then(|b| b.destination.as_deref()), Some("offsite"));
    measured(&format!("restic restore of 200 MiB from S3 into a new claim: {:.1} s from BackupRestore to Succeeded", began.elapsed().as_secs_f64()));
    let restored = claim_dir(&ns, "restored").await;
    assert_eq!(digests(&restored), digests(&data), "the restored files match the source byte for byte");
    ns.delete().await;
}

/// A StatefulSet of 2 whose pods keep their PVCs (data-db-0, data-db-1, labelled app=db) mounted.
async fn statefulset(ns: &TestNamespace) {
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db", "replicas": 2, "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "db", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "echo \"rows of $HOSTNAME\" > /data/table.txt && exec sleep 3600"],
                        "readinessProbe": {"exec": {"command": ["test", "-f", "/data/table.txt"]}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                    }]
                }
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "256Mi"}}}}]
        }
    }))
    .expect("statefulset");
    ns.api::<StatefulSet>().create(&PostParams::default(), &sts).await.expect("create statefulset");
    support::wait_condition(ns.api::<StatefulSet>(), "db", "statefulset db with 2 ready replicas", RUNS_LIMIT, |o: Option<&StatefulSet>| {
        o.and_then(|s| s.status.as_ref()?.ready_replicas) == Some(2)
    })
    .await;
}

/// A free port on the test bridge's address, for a server of this test's own.
fn free_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0)).expect("bind").local_addr().expect("addr").port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_stopped_s3_server_fails_only_its_destination_and_credentials_problems_have_reasons() {
    let Some((cluster, ns)) = setup("offsite-fail").await else { return };
    let shared = S3::from_cluster();
    // A server of this test's own, so that stopping it stops no other test.
    let host = shared.endpoint.trim_start_matches("http://").rsplit_once(':').map(|(h, _)| h.to_owned()).expect("endpoint host");
    let port = free_port(&host);
    let root = std::env::temp_dir().join(format!("backup-operator-test-s3-{}", ns.name));
    std::fs::create_dir_all(&root).expect("s3 root");
    let server = Server(
        Command::new(&shared.versitygw)
            .args(["--port", &format!("{host}:{port}"), "posix"])
            .arg(&root)
            .env("ROOT_ACCESS_KEY", "ownkey")
            .env("ROOT_SECRET_KEY", "ownsecret123")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start versitygw"),
    );
    let endpoint = format!("http://{host}:{port}");
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    std::fs::write(claim_dir(&ns, "data-db-0").await.join("rows"), b"1\n2\n3\n").expect("data");
    secret(&ns, "own-s3", &[("AWS_ACCESS_KEY_ID", "ownkey"), ("AWS_SECRET_ACCESS_KEY", "ownsecret123")]).await;
    secret(&ns, "shared-s3", &[("AWS_ACCESS_KEY_ID", &shared.access_key), ("AWS_SECRET_ACCESS_KEY", &shared.secret_key)]).await;
    secret(&ns, "restic-password", &[("password", PASSWORD)]).await;

    // The API server refuses malformed destinations.
    let base = json!({"schedule": "*/1 * * * *", "pvcSelector": {}, "backupStrategy": "restic"});
    let with = |destinations: serde_json::Value| {
        let mut spec = base.clone();
        spec["destinations"] = destinations;
        spec
    };
    let s3_dest = |endpoint: &str, bucket: &str| json!({"endpoint": endpoint, "bucket": bucket, "credentialsSecret": "own-s3"});
    let cases = [
        ("both kinds", with(json!([{"name": "x", "claim": {"name": "backup-storage"}, "s3": s3_dest("http://a:1", "bucket")}])), "exactly one of claim and s3"),
        ("neither kind", with(json!([{"name": "x"}])), "exactly one of claim and s3"),
        ("bucket name", with(json!([{"name": "x", "s3": s3_dest("http://a:1", "Bad_Bucket")}])), "bucket"),
        ("endpoint scheme", with(json!([{"name": "x", "s3": s3_dest("ftp://a:1", "bucket")}])), "endpoint"),
        ("duplicate names", with(json!([{"name": "x", "claim": {"name": "a"}}, {"name": "x", "claim": {"name": "b"}}])), "Duplicate value"),
    ];
    for (what, spec, wanted) in cases {
        let err = post_raw_policy(&ns, "malformed", spec).await.expect_err(what);
        assert!(err.to_string().contains(wanted), "{what}: {err}");
    }

    let _operator = Operator::start(&cluster, &ns);
    let restic_spec = |destinations: serde_json::Value| {
        json!({
            "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupStrategy": "restic",
            "restic": {"passwordSecret": {"name": "restic-password", "key": "password"}}, "destinations": destinations,
        })
    };
    create_policy(&ns, "split", restic_spec(json!([
        {"name": "local", "claim": {"name": "backup-storage"}},
        {"name": "remote", "s3": {"endpoint": endpoint, "bucket": "own", "credentialsSecret": "own-s3"}},
    ])))
    .await
    .expect("split policy");
    // A missing credentials Secret: a reason, and no Job.
    create_policy(&ns, "nocreds", restic_spec(json!([{"name": "remote", "s3": {"endpoint": endpoint, "bucket": "own", "credentialsSecret": "absent"}}])))
        .await
        .expect("nocreds policy");
    // A repository made with another password.
    let wrong_repo = format!("s3:{}/{}/{}/{}/wrongpw/data-db-0", shared.endpoint, shared.bucket, ns.name, ns.name);
    let (ok, out) = restic(&wrong_repo, "another password", &shared, &["init"]);
    assert!(ok, "init a repository with another password: {out}");
    create_policy(&ns, "wrongpw", restic_spec(json!([{"name": "shared", "s3": {"endpoint": shared.endpoint, "bucket": shared.bucket, "prefix": ns.name, "credentialsSecret": "shared-s3"}}])))
        .await
        .expect("wrongpw policy");

    wait_policy(&ns, "nocreds", "nocreds: DestinationCredentialsMissing", condition_is("Ready", "False", "DestinationCredentialsMissing")).await;
    let message = status(&ns, "nocreds").await.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains("\"absent\""), "{message}");

    let failed = poll("wrongpw's run fails", RUNS_LIMIT, || async {
        status(&ns, "wrongpw").await.backup_history.into_iter().find(|r| r.status == RunStatus::Failed)
    })
    .await;
    assert!(failed.message.contains("wrong password"), "{failed:?}");

    let first_remote = success_after(&ns, "split", "remote", None).await;
    success_after(&ns, "split", "local", None).await;
    let stopped_at = chrono::Utc::now();
    drop(server);
    // The next run: the remote destination fails with what happened, the local one succeeds.
    let remote_failed = poll("a run to the stopped server fails", RUNS_LIMIT, || async {
        status(&ns, "split").await.backup_history.into_iter().find(|r| {
            r.destination.as_deref() == Some("remote")
                && r.status == RunStatus::Failed
                && r.scheduled_time.as_ref().and_then(backup_operator::api::from_time).is_some_and(|t| t > stopped_at)
        })
    })
    .await;
    assert!(remote_failed.message.contains("does not answer") && remote_failed.message.contains("connection refused"), "{remote_failed:?}");
    assert_eq!(remote_failed.reason.as_deref(), Some("DestinationUnreachable"), "{remote_failed:?}");
    // The same scheduled run succeeded at the claim.
    let local = poll("the same run to the claim succeeds", RUNS_LIMIT, || async {
        status(&ns, "split").await.backup_history.into_iter().find(|r| {
            r.destination.as_deref() == Some("local") && r.scheduled_time == remote_failed.scheduled_time && r.status != RunStatus::Pending && r.status != RunStatus::Running
        })
    })
    .await;
    assert_eq!(local.status, RunStatus::Succeeded, "{local:?}");
    wait_policy(&ns, "split", "split: Ready=False DestinationUnreachable", condition_is("Ready", "False", "DestinationUnreachable")).await;
    let s = status(&ns, "split").await;
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert!(ready.message.contains("data-db-0 to remote") && !ready.message.contains("data-db-0 to local"), "{}", ready.message);
    let remote = s.destinations.iter().find(|d| d.name == "remote").expect("remote status");
    assert!(remote.message.contains("does not answer") && remote.last_successful_time.is_some(), "{remote:?}");
    assert!(first_remote.verified == Some(true));

    assert!(jobs(&ns, "nocreds").await.is_empty(), "no Job for a destination without credentials");
    let _ = std::fs::remove_dir_all(&root);
    ns.delete().await;
}

#[tokio::test]
async fn tar_streams_archives_to_s3_prunes_them_and_restores_from_there() {
    let Some((cluster, ns)) = setup("offsite-tar").await else { return };
    let s3 = S3::from_cluster();
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    secret(&ns, "s3-credentials", &[("AWS_ACCESS_KEY_ID", &s3.access_key), ("AWS_SECRET_ACCESS_KEY", &s3.secret_key)]).await;
    let data = claim_dir(&ns, "data-db-0").await;
    std::fs::create_dir_all(data.join("base")).expect("mkdir");
    for i in 0..3 {
        std::fs::write(data.join(format!("base/f{i}")), noise(100 + i, 2 * MIB)).expect("write data");
    }
    let _operator = Operator::start(&cluster, &ns);
    // No storage claim at all: the bucket is the only destination.
    create_policy(&ns, "db", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "retentionCount": 1,
        "destinations": [{"name": "offsite", "s3": {"endpoint": s3.endpoint, "bucket": s3.bucket, "prefix": ns.name, "credentialsSecret": "s3-credentials"}}],
    }))
    .await
    .expect("create policy");
    // The harness's server keeps each object as a file under its root: what is in the bucket.
    let objects = support::cluster_dir().join("s3").join(&s3.bucket).join(&ns.name).join(&ns.name).join("db/data-db-0");
    let first = success_after(&ns, "db", "offsite", None).await;
    let artifact = first.artifact.clone().expect("artifact");
    let name = artifact.rsplit('/').next().expect("file name").to_owned();
    let stored = std::fs::read(objects.join(&name)).expect("the archive is in the bucket");
    assert_eq!(Some(format!("{:x}", Sha256::digest(&stored))), first.sha256, "the recorded sha256 is the stored object's");
    assert_eq!(first.size_bytes, Some(stored.len() as u64));
    assert!(objects.join(format!("{name}.sha256")).exists(), "its checksum object is beside it");
    assert_eq!(first.verified, Some(true));

    // retentionCount 1: the next success prunes the first archive from the bucket.
    success_after(&ns, "db", "offsite", first.scheduled_time.as_ref().and_then(backup_operator::api::from_time)).await;
    poll("the first archive pruned from the bucket", RUNS_LIMIT, || async { (!objects.join(&name).exists() && !objects.join(format!("{name}.sha256")).exists()).then_some(()) }).await;

    let restore: BackupRestore = serde_json::from_value(json!({
        "apiVersion": "backup.example.com/v1alpha1", "kind": "BackupRestore", "metadata": {"name": "from-s3"},
        "spec": {"source": {"policy": "db", "pvc": "data-db-0"}, "target": {"newClaim": {"name": "restored"}}}
    }))
    .expect("restore");
    ns.api::<BackupRestore>().create(&PostParams::default(), &restore).await.expect("create restore");
    let done = poll("the restore from S3 finishes", RUNS_LIMIT, || async {
        let r = ns.api::<BackupRestore>().get("from-s3").await.ok()?;
        r.status.as_ref()?.phase?.finished().then_some(r)
    })
    .await;
    let phase = done.status.as_ref().and_then(|s| s.phase);
    assert_eq!(phase, Some(backup_operator::api::RestorePhase::Succeeded), "{:?}", done.status);
    assert_eq!(digests(&claim_dir(&ns, "restored").await), digests(&data), "restored byte for byte");
    ns.delete().await;
}

/// A restic repository on a claim is mounted read-only for a restore, where restic cannot write
/// the lock it takes even to list snapshots: the restore reads it without one.
#[tokio::test]
async fn a_restic_backup_on_a_claim_restores_into_a_new_claim() {
    let Some((cluster, ns)) = setup("restic-claim").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    secret(&ns, "restic-password", &[("password", PASSWORD)]).await;
    let data = claim_dir(&ns, "data-db-0").await;
    std::fs::create_dir_all(data.join("base")).expect("mkdir");
    for i in 0..3 {
        std::fs::write(data.join(format!("base/f{i}")), noise(300 + i, MIB)).expect("write data");
    }
    let _operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "db", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupStrategy": "restic",
        "restic": {"passwordSecret": {"name": "restic-password", "key": "password"}},
    }))
    .await
    .expect("create policy");
    let backup = poll("a verified restic backup on the claim", RUNS_LIMIT, || async {
        status(&ns, "db").await.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded && r.verified == Some(true))
    })
    .await;
    let restore: BackupRestore = serde_json::from_value(json!({
        "apiVersion": "backup.example.com/v1alpha1", "kind": "BackupRestore", "metadata": {"name": "from-claim"},
        "spec": {"source": {"policy": "db", "pvc": "data-db-0", "runName": backup.job_name}, "target": {"newClaim": {"name": "restored"}}}
    }))
    .expect("restore");
    ns.api::<BackupRestore>().create(&PostParams::default(), &restore).await.expect("create restore");
    let done = poll("the restore from the claim finishes", RUNS_LIMIT, || async {
        let r = ns.api::<BackupRestore>().get("from-claim").await.ok()?;
        r.status.as_ref()?.phase?.finished().then_some(r)
    })
    .await;
    assert_eq!(done.status.as_ref().and_then(|s| s.phase), Some(backup_operator::api::RestorePhase::Succeeded), "{:?}", done.status);
    assert_eq!(digests(&claim_dir(&ns, "restored").await), digests(&data), "restored byte for byte");
    let condition = done.status.as_ref().and_then(|s| s.conditions.first().cloned()).map(|c| format!("{}: {}", c.reason, c.message)).unwrap_or_default();
    measured(&format!("observed: restic restore from a claim: Succeeded ({condition})"));
    ns.delete().await;
}

/// Pruning with credentials the S3 server refuses: rclone answers "doesn't exist" for those too,
/// but the prune decides "already gone" only from a listing that worked, so the prune fails, the
/// run's record stays, and its objects are still in the bucket.
#[tokio::test]
async fn an_s3_prune_with_wrong_credentials_fails_and_keeps_the_record_and_the_objects() {
    let Some((cluster, ns)) = setup("prune-creds").await else { return };
    let s3 = S3::from_cluster();
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    std::fs::write(claim_dir(&ns, "data-db-0").await.join("rows"), b"1\n2\n3\n").expect("data");
    secret(&ns, "s3-credentials", &[("AWS_ACCESS_KEY_ID", &s3.access_key), ("AWS_SECRET_ACCESS_KEY", &s3.secret_key)]).await;
    let _operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "db", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "retentionCount": 2,
        "destinations": [{"name": "offsite", "s3": {"endpoint": s3.endpoint, "bucket": s3.bucket, "prefix": ns.name, "credentialsSecret": "s3-credentials"}}],
    }))
    .await
    .expect("create policy");
    let first = success_after(&ns, "db", "offsite", None).await;
    success_after(&ns, "db", "offsite", first.scheduled_time.as_ref().and_then(backup_operator::api::from_time)).await;
    // Wrong credentials, no more runs, and retention down to one: the older archive is due.
    let wrong = json!({"stringData": {"AWS_SECRET_ACCESS_KEY": "not-the-secret-key"}});
    ns.api::<Secret>().patch("s3-credentials", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(wrong)).await.expect("break the credentials");
    let spec = json!({"spec": {"suspend": true, "retentionCount": 1}});
    ns.api::<backup_operator::api::BackupPolicy>().patch("db", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(spec)).await.expect("retention 1");
    support::operator::event_reasons(&cluster, &ns, "db", &["PruneFailed"]).await;
    let message = poll("PruneFailed on the status", RUNS_LIMIT, || async {
        let s = status(&ns, "db").await;
        s.conditions.into_iter().find(|c| c.type_ == "Ready" && c.reason == "PruneFailed").map(|c| c.message)
    })
    .await;
    assert!(message.contains(&first.job_name) && message.contains("failed"), "{message}");
    // rclone's own words say "doesn't exist" for refused credentials too: the cause comes first.
    assert!(message.contains("the S3 server refused the credentials") || message.contains("the S3 server does not know the access key"), "{message}");
    measured(&format!("observed: S3 prune with wrong credentials: Ready=False PruneFailed: {message}"));
    let s = status(&ns, "db").await;
    assert!(s.backup_history.iter().any(|r| r.job_name == first.job_name), "the run's record stays");
    let objects = support::cluster_dir().join("s3").join(&s3.bucket).join(&ns.name).join(&ns.name).join("db/data-db-0");
    let name = first.artifact.clone().expect("artifact").rsplit('/').next().expect("file").to_owned();
    assert!(objects.join(&name).exists() && objects.join(format!("{name}.sha256")).exists(), "the objects are still in the bucket");
    ns.delete().await;
}

/// An S3 endpoint that accepts connections and never answers: the run fails within rclone's
/// bounded timeouts with the reason DestinationUnreachable, on the run and on the policy.
#[tokio::test]
async fn an_s3_destination_that_does_not_answer_fails_the_run_as_destination_unreachable() {
    let Some((cluster, ns)) = setup("s3-silent").await else { return };
    let shared = S3::from_cluster();
    let host = shared.endpoint.trim_start_matches("http://").rsplit_once(':').map(|(h, _)| h.to_owned()).expect("endpoint host");
    // Accepts and holds every connection, says nothing; stops with the test.
    let listener = std::net::TcpListener::bind((host.as_str(), 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    std::fs::write(claim_dir(&ns, "data-db-0").await.join("rows"), b"1\n2\n3\n").expect("data");
    secret(&ns, "s3-credentials", &[("AWS_ACCESS_KEY_ID", "key"), ("AWS_SECRET_ACCESS_KEY", "secret123")]).await;
    let _operator = Operator::start(&cluster, &ns);
    let created = Instant::now();
    create_policy(&ns, "db", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}},
        "destinations": [{"name": "silent", "s3": {"endpoint": format!("http://{host}:{port}"), "bucket": "backups", "credentialsSecret": "s3-credentials"}}],
    }))
    .await
    .expect("create policy");
    let failed = poll("the run to the silent endpoint fails", RUNS_LIMIT, || async {
        status(&ns, "db").await.backup_history.into_iter().find(|r| r.status == RunStatus::Failed)
    })
    .await;
    assert_eq!(failed.reason.as_deref(), Some("DestinationUnreachable"), "{failed:?}");
    assert!(failed.message.contains("does not answer"), "{failed:?}");
    wait_policy(&ns, "db", "Ready=False DestinationUnreachable", condition_is("Ready", "False", "DestinationUnreachable")).await;
    measured(&format!("observed: an S3 endpoint that never answers: run {:?} {:?}: {}", failed.status, failed.reason, failed.message));
    measured(&format!(
        "an S3 endpoint that never answers: policy created -> run failed as DestinationUnreachable after {:.0} s (run took {:.0} s)",
        created.elapsed().as_secs_f64(),
        seconds(&failed)
    ));
    ns.delete().await;
}
