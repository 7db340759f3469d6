//! Honest status, on the real test cluster with the operator binary: every policy that is not
//! backing up says why (bad selectors, storage being deleted, runs that cannot start, Pod Security
//! refusals, a spec the operator cannot read), names of any valid length work, and a run that
//! cannot start ends so that the next one does.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use backup_operator::api::{BackupPolicy, RunStatus};
use backup_operator::base::names::storage_dir;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::wait::conditions;
use kube::{Api, ResourceExt};
use serde_json::json;
use support::TestNamespace;
use support::operator::*;

fn ready_message(status: &backup_operator::api::BackupPolicyStatus) -> String {
    status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.message.clone()).unwrap_or_default()
}

async fn all_jobs(ns: &TestNamespace) -> Vec<Job> {
    ns.api::<Job>().list(&ListParams::default()).await.expect("jobs").items
}

/// Lets a scheduled minute pass (plus a few seconds for the operator to act on it).
async fn past_a_scheduled_minute() {
    let boundary = chrono::Utc::now().timestamp() / 60 * 60 + 60 + 8;
    support::wait_for("a minute boundary", LIMIT, async {
        while chrono::Utc::now().timestamp() < boundary {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn invalid_selectors_and_storage_being_deleted_say_so_and_create_nothing() {
    let Some((cluster, ns)) = setup("selectors").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    let cases = [
        ("unknown-operator", json!({"matchExpressions": [{"key": "app", "operator": "Near", "values": ["db"]}]}), "unknown operator"),
        ("space-in-value", json!({"matchLabels": {"app": "my db"}}), "\"my db\""),
        ("in-without-values", json!({"matchExpressions": [{"key": "app", "operator": "In"}]}), "needs at least one value"),
    ];
    for (name, selector, _) in &cases {
        create_policy(&ns, name, json!({"schedule": "*/1 * * * *", "pvcSelector": selector})).await.expect("policy");
    }
    // A storage claim that is being deleted (held by a finalizer, as a claim still in use is).
    claim(&ns, "going-away", json!({})).await;
    ns.api::<PersistentVolumeClaim>()
        .patch("going-away", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})))
        .await
        .expect("hold the claim");
    ns.api::<PersistentVolumeClaim>().delete("going-away", &DeleteParams::default()).await.expect("delete claim");
    create_policy(&ns, "storage-deleting", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupStorageClaim": "going-away"}))
        .await
        .expect("policy");

    let _operator = Operator::start(&cluster, &ns);
    for (name, _, problem) in &cases {
        wait_policy(&ns, name, "InvalidSelector", condition_is("Ready", "False", "InvalidSelector")).await;
        let message = ready_message(&status(&ns, name).await);
        assert!(message.contains(problem), "{name}: {message}");
        event_reasons(&cluster, &ns, name, &["InvalidSelector"]).await;
    }
    wait_policy(&ns, "storage-deleting", "BackupStorageMissing", condition_is("Ready", "False", "BackupStorageMissing")).await;
    assert!(ready_message(&status(&ns, "storage-deleting").await).contains("being deleted"));
    past_a_scheduled_minute().await;
    assert!(all_jobs(&ns).await.is_empty(), "no Job for any of them");
    // `kubectl get bp` shows READY and REASON.
    let table = support::kubectl(&cluster, &["-n", &ns.name, "get", "bp"]);
    assert!(table.lines().next().is_some_and(|h| h.contains("READY") && h.contains("REASON")), "{table}");
    assert!(table.contains("InvalidSelector") && table.contains("BackupStorageMissing"), "{table}");
    ns.api::<PersistentVolumeClaim>()
        .patch("going-away", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .expect("release the claim");
    ns.delete().await;
}

#[tokio::test]
async fn names_of_any_valid_length_work() {
    let Some((cluster, ns)) = setup("long-names").await else { return };
    let pvc = format!("data-{}", "p".repeat(195));
    let policy = format!("backup-{}", "q".repeat(246));
    assert_eq!((pvc.len(), policy.len()), (200, 253));
    claim(&ns, &pvc, json!({"app": "db"})).await;
    claim(&ns, "data-short", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    create_policy(&ns, &policy, json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    let _operator = Operator::start(&cluster, &ns);
    let jobs = poll("a Job for both PVCs", LIMIT, || async {
        let jobs = all_jobs(&ns).await;
        (jobs.len() >= 2).then_some(jobs)
    })
    .await;
    for job in &jobs {
        assert!(job.name_any().len() <= 63, "{}", job.name_any());
        assert!(job.labels()["backup-policy"].len() <= 63 && job.labels()["pvc"].len() <= 63);
        assert_eq!(job.annotations()["backup.example.com/policy"], policy, "the full name is in an annotation");
    }
    let long = jobs.iter().find(|j| j.annotations()["backup.example.com/pvc"] == pvc).expect("the long PVC's Job");
    support::wait_condition(ns.api::<Job>(), &long.name_any(), "job complete", LIMIT, conditions::is_job_completed()).await;
    poll("the long PVC's verified backup", LIMIT, || async {
        let s = status(&ns, &policy).await;
        s.backup_history.into_iter().find(|r| r.pvc == pvc && r.status == RunStatus::Succeeded && r.verified == Some(true))
    })
    .await;
    wait_policy(&ns, &policy, "Ready", condition_is("Ready", "True", "Scheduled")).await;
    let events = support::kubectl(&cluster, &["-n", &ns.name, "get", "events", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("RunStarted") && events.contains("RunSucceeded"), "events about a 253-character policy: {events}");
    let archive_dir = claim_dir(&ns, "backup-storage").await.join(storage_dir(&ns.name, &policy, &pvc));
    assert!(std::fs::read_dir(&archive_dir).expect("the PVC's directory").count() >= 2);
    ns.delete().await;
}

#[tokio::test]
async fn a_run_that_cannot_start_is_named_then_failed_and_the_next_run_starts() {
    let Some((cluster, ns)) = setup("stuck").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    create_policy(&ns, "bad-image", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}},
        "backupImage": "INVALID_image_name!", "startTimeoutSeconds": 10
    }))
    .await
    .expect("policy");
    // Once, at the next full minute: its next run is an hour away, so only the run's pod changing
    // can tell the operator that the image is bad.
    let now = chrono::Utc::now();
    let at = if chrono::Timelike::second(&now) < 45 { now + chrono::Duration::minutes(1) } else { now + chrono::Duration::minutes(2) };
    create_policy(&ns, "bad-image-once", json!({
        "schedule": format!("{} * * * *", chrono::Timelike::minute(&at)), "pvcSelector": {"matchLabels": {"app": "db"}},
        "backupImage": "INVALID_image_name!", "concurrencyPolicy": "Allow"
    }))
    .await
    .expect("policy");
    let _operator = Operator::start(&cluster, &ns);
    // Up to two minutes pass before that run starts: the wait for its cause begins with its Job.
    poll("the once run's Job", LIMIT + Duration::from_secs(120), || async {
        all_jobs(&ns).await.into_iter().find(|j| j.labels().get("backup-policy").map(String::as_str) == Some("bad-image-once"))
    })
    .await;
    wait_policy(&ns, "bad-image-once", "Ready=False ImageError, seen through the run's pod", condition_is("Ready", "False", "ImageError")).await;
    wait_policy(&ns, "bad-image", "Ready=False ImageError", condition_is("Ready", "False", "ImageError")).await;
    let first = status(&ns, "bad-image").await.backup_history.remove(0);
    assert!(first.message.contains("InvalidImageName"), "{first:?}");
    // The start timeout fails it with that cause, and under Forbid the next run still starts.
    let failed = poll("the stuck run failed", LIMIT, || async {
        status(&ns, "bad-image").await.backup_history.into_iter().find(|r| r.job_name == first.job_name && r.status == RunStatus::Failed)
    })
    .await;
    assert_eq!(failed.reason.as_deref(), Some("ImageError"), "{failed:?}");
    let next = poll("the next run", LIMIT + Duration::from_secs(60), || async {
        all_jobs(&ns).await.into_iter().find(|j| j.name_any() != first.job_name && j.labels()["backup-policy"] == "bad-image")
    })
    .await;
    assert!(next.annotations()["backup.example.com/scheduled-time"] > first.scheduled_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default());
    event_reasons(&cluster, &ns, "bad-image", &["ImageError"]).await;
    ns.delete().await;
}

#[tokio::test]
async fn a_restricted_namespace_refuses_root_backups_and_runs_them_as_the_policys_user() {
    let Some((cluster, ns)) = setup("restricted").await else { return };
    Api::<Namespace>::all(ns.client.clone())
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})))
        .await
        .expect("label namespace");
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    // The application's files belong to uid 1000, readable only by it.
    let data = claim_dir(&ns, "data-db-0").await;
    std::fs::write(data.join("table"), "rows of uid 1000\n").expect("write");
    for path in [data.join("table"), data.clone()] {
        assert!(std::process::Command::new("chown").arg("1000:1000").arg(&path).status().expect("chown").success());
    }
    std::fs::set_permissions(data.join("table"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    // The user's directory on the storage claim, as a volume with fsGroup support would give it
    // (the test cluster's hostPath volumes have none).
    let own_dir = claim_dir(&ns, "backup-storage").await.join(storage_dir(&ns.name, "as-user", "data-db-0"));
    std::fs::create_dir_all(&own_dir).expect("mkdir");
    assert!(std::process::Command::new("chown").arg("1000:1000").arg(&own_dir).status().expect("chown").success());

    let selector = json!({"matchLabels": {"app": "db"}});
    create_policy(&ns, "as-root", json!({"schedule": "*/1 * * * *", "pvcSelector": selector})).await.expect("policy");
    create_policy(&ns, "as-user", json!({
        "schedule": "*/1 * * * *", "pvcSelector": selector,
        "podSecurityContext": {"runAsUser": 1000, "runAsGroup": 1000}
    }))
    .await
    .expect("policy");
    let _operator = Operator::start(&cluster, &ns);
    wait_policy(&ns, "as-root", "Ready=False PodRejected", condition_is("Ready", "False", "PodRejected")).await;
    assert!(ready_message(&status(&ns, "as-root").await).contains("PodSecurity"), "{}", ready_message(&status(&ns, "as-root").await));
    let ok = poll("a verified backup as uid 1000", LIMIT, || async {
        status(&ns, "as-user").await.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded && r.verified == Some(true))
    })
    .await;
    let archive = claim_dir(&ns, "backup-storage").await.join(ok.artifact.expect("artifact"));
    let listing = std::process::Command::new("tar").arg("tzvf").arg(&archive).output().expect("tar");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("1000/1000") && listing.contains("./table"), "{listing}");
    ns.delete().await;
}

#[tokio::test]
async fn a_policy_the_operator_cannot_read_gets_its_own_status_and_the_others_keep_running() {
    let Some((cluster, ns)) = setup("unreadable").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    {
        // A copy of the CRD without the bounds lets a number in that the operator cannot hold.
        let _lock = crd_lock();
        let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/crd/backup.example.com_backuppolicies.yaml")).expect("crd");
        let strict: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("crd");
        let mut loose = serde_json::to_value(&strict).expect("json");
        let props = &mut loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["retentionCount"];
        props.as_object_mut().expect("retentionCount schema").remove("maximum");
        let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
        let apply = |crd: serde_json::Value| {
            let crds = crds.clone();
            async move {
                crds.patch("backuppolicies.backup.example.com", &PatchParams::apply("backup-operator-tests").force(), &Patch::Apply(crd)).await.expect("apply crd");
            }
        };
        apply(loose).await;
        let created = poll("the loose CRD to admit the object", LIMIT, || async {
            post_raw_policy(&ns, "too-big", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "retentionCount": 4294967296u64}))
                .await
                .ok()
        })
        .await;
        assert_eq!(created.data["spec"]["retentionCount"], 4294967296u64);
        apply(serde_json::to_value(&strict).expect("json")).await;
    }
    create_policy(&ns, "fine", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    // A fresh operator: its initial list holds the object it cannot read.
    let _operator = Operator::start(&cluster, &ns);
    let resource = kube::api::ApiResource::erase::<BackupPolicy>(&());
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &resource);
    let bad = poll("InvalidSpec on the unreadable policy", LIMIT, || async {
        let o = raw.get("too-big").await.expect("get");
        let conditions = o.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.into_iter().find(|c| c["type"] == "Ready" && c["reason"] == "InvalidSpec")
    })
    .await;
    assert!(bad["message"].as_str().unwrap_or_default().contains("retentionCount") || bad["message"].as_str().unwrap_or_default().contains("number"), "{bad}");
    // The other policy keeps its schedule.
    let jobs = poll("a run of the other policy", LIMIT, || async {
        let jobs = all_jobs(&ns).await;
        (!jobs.is_empty()).then_some(jobs)
    })
    .await;
    assert!(jobs.iter().all(|j| j.labels()["backup-policy"] == "fine"));
    event_reasons(&cluster, &ns, "too-big", &["InvalidSpec"]).await;
    ns.api::<BackupPolicy>().delete("too-big", &DeleteParams::default()).await.ok();
    ns.delete().await;
}

#[tokio::test]
async fn every_field_is_explained() {
    let Some((cluster, ns)) = setup("explain").await else { return };
    // The API server publishes a CRD's schema asynchronously, and another test may be re-applying
    // the CRD: hold the CRD still, and ask until it is published.
    let _lock = crd_lock();
    let explain = |args: &[&str]| {
        let out = std::process::Command::new(cluster.kubectl_path()).args(args).env("KUBECONFIG", &cluster.kubeconfig).output().expect("kubectl");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let text = poll("kubectl explain", LIMIT, || async { explain(&["explain", "backuppolicy.spec", "--recursive"]) }).await;
    for field in ["schedule", "pvcSelector", "retentionCount", "deletionPolicy", "verify", "startTimeoutSeconds", "podSecurityContext", "plugin"] {
        assert!(text.contains(field), "{field} missing from kubectl explain");
    }
    let described = poll("kubectl explain of a field", LIMIT, || async { explain(&["explain", "backuppolicy.spec.backupStrategy"]) }).await;
    assert!(described.contains("VolumeSnapshot"), "{described}");
    ns.delete().await;
}

/// A kubeconfig like the test cluster's, with another server or another user.
fn kubeconfig_variant(cluster: &support::TestCluster, edit: impl FnOnce(&mut serde_yaml::Value)) -> tempfile::NamedTempFile {
    let mut config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&cluster.kubeconfig).expect("kubeconfig")).expect("yaml");
    edit(&mut config);
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), serde_yaml::to_string(&config).expect("yaml")).expect("write kubeconfig");
    file
}

fn operator_with(kubeconfig: &std::path::Path, namespace: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_backup-operator"))
        .args(["run", "--namespace", namespace, "--metrics-bind-address", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start backup-operator")
}

#[tokio::test]
async fn start_up_waits_for_the_api_server_and_names_a_missing_permission() {
    let Some((cluster, ns)) = setup("start-up").await else { return };
    // Nothing listens on this port: the operator keeps waiting and says why, it does not exit.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let unreachable = kubeconfig_variant(&cluster, |c| {
        c["clusters"][0]["cluster"]["server"] = serde_yaml::Value::from(format!("https://127.0.0.1:{port}"));
    });
    let mut waiting = operator_with(unreachable.path(), &ns.name);
    let mut stdout = waiting.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while !seen.contains("waiting for the API server") {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });
    let seen = support::wait_for("the waiting message", LIMIT, tokio::task::spawn_blocking(move || reader.join())).await.expect("join").expect("reader");
    assert!(seen.contains("waiting for the API server") && seen.contains("not reachable"), "{seen}");
    assert!(waiting.try_wait().expect("status").is_none(), "still running, still waiting");
    let _ = waiting.kill();
    let _ = waiting.wait();

    // A service account with no RBAC at all: the operator exits with what it may not do.
    support::kubectl(&cluster, &["-n", &ns.name, "create", "serviceaccount", "nobody"]);
    let token = support::kubectl(&cluster, &["-n", &ns.name, "create", "token", "nobody"]);
    let forbidden = kubeconfig_variant(&cluster, |c| {
        c["users"][0]["user"] = serde_yaml::from_str(&format!("token: {}", token.trim())).expect("user");
    });
    let denied = operator_with(forbidden.path(), &ns.name);
    let out = support::wait_for("the operator to exit", LIMIT, tokio::task::spawn_blocking(move || denied.wait_with_output())).await.expect("join").expect("output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("not allowed to") && text.contains("config/rbac"), "{text}");
    ns.delete().await;
}
