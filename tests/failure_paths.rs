//! Failure paths a careless or hostile user finds, on the real test cluster with the operator
//! binary: a BackupRestore the operator cannot read (admitted under a looser schema) neither stops
//! the start-up nor the policies; a Job the API server refuses is a failed run with the server's
//! words; a matched PVC that is not bound is named; and a run stopped midway (its Job or its policy
//! deleted) leaves no partial file on the backup claim.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use backup_operator::api::{BackupPolicy, RunStatus};
use backup_operator::base::names::storage_dir;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::TestNamespace;
use support::operator::*;

/// Creates BackupRestores whose `scheduledTime` the strict CRD refuses (checked) by loosening the
/// CRD for a moment, as an older release's CRD would have admitted them; the strict CRD is back
/// when this returns.
async fn admit_poisoned_restores(cluster: &support::TestCluster, raw: &Api<DynamicObject>, restores: &[(&str, &str)]) {
    let _lock = crd_lock();
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/crd/backup.example.com_backuprestores.yaml")).expect("crd");
    let strict: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("crd");
    let mut loose = serde_json::to_value(&strict).expect("json");
    let time = &mut loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["source"]["properties"]["scheduledTime"];
    assert!(time.as_object_mut().expect("scheduledTime schema").remove("pattern").is_some(), "the CRD carries the time pattern");
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let apply = |crd: serde_json::Value| {
        let crds = crds.clone();
        async move {
            crds.patch("backuprestores.backup.example.com", &PatchParams::apply("backup-operator-tests").force(), &Patch::Apply(crd)).await.expect("apply crd");
        }
    };
    let object = |name: &str, time: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "backup.example.com/v1alpha1", "kind": "BackupRestore", "metadata": {"name": name},
            "spec": {"source": {"policy": "files", "pvc": "data-db-0", "scheduledTime": time}}
        }))
        .expect("object")
    };
    for (name, time) in restores {
        assert!(raw.create(&PostParams::default(), &object(name, time)).await.is_err(), "the strict CRD admits {time}");
    }
    apply(loose).await;
    for (name, time) in restores {
        poll(&format!("the loose CRD to admit {time}"), LIMIT, || async { raw.create(&PostParams::default(), &object(name, time)).await.ok() }).await;
    }
    apply(serde_json::to_value(&strict).expect("json")).await;
}

#[tokio::test]
async fn restores_the_operator_cannot_read_fail_alone_and_the_policies_run() {
    let Some((cluster, ns)) = setup("poisoned").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    let resource = ApiResource::erase::<backup_operator::api::BackupRestore>(&());
    let raw: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &resource);
    // Times the API server's `date-time` format admits and the operator's parser may not: they
    // get in only while the CRD lacks its pattern (as under an older release's CRD).
    let poisoned = [("bad-offset", "2026-12-07T17:00:00+05:99"), ("lowercase", "2026-12-07t17:00:00z"), ("long-fraction", "2026-12-07T17:00:00.1234567890123Z")];
    admit_poisoned_restores(&cluster, &raw, &poisoned).await;
    // A fresh operator: its initial list of restores holds objects it cannot read.
    let operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "files", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    let success = poll("a successful run of the policy", LIMIT, || async {
        status(&ns, "files").await.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded)
    })
    .await;
    assert!(success.verified == Some(true), "{success:?}");
    // Each poisoned restore ends with a reason: on its status when the API server takes one, in an
    // event otherwise; none of them restores anything.
    for (name, _) in poisoned {
        let reasons = poll(&format!("a reason for {name}"), LIMIT, || async {
            let o = raw.get(name).await.ok()?;
            let failed = o.data["status"]["phase"] == "Failed";
            let events = support::kubectl(&cluster, &["-n", &ns.name, "get", "events", "--field-selector", &format!("involvedObject.name={name}"), "-o", "jsonpath={.items[*].reason}"]);
            (failed || !events.trim().is_empty()).then(|| format!("{} {events}", o.data["status"]["conditions"][0]["reason"]))
        })
        .await;
        assert!(reasons.contains("InvalidSpec") || reasons.contains("BackupNotFound"), "{name}: {reasons}");
        let o = raw.get(name).await.expect("restore");
        support::measured(&format!(
            "observed: poisoned BackupRestore {name}: phase {}, reason {}, events [{}]; message: {}",
            o.data["status"]["phase"], o.data["status"]["conditions"][0]["reason"], reasons, o.data["status"]["conditions"][0]["message"]
        ));
    }
    support::measured(&format!("observed: policy beside the poisoned restores: run {} {:?}, verified {:?}", success.job_name, success.status, success.verified));
    let restore_jobs = ns.api::<Job>().list(&ListParams::default().labels("backup.example.com/kind=restore")).await.expect("jobs").items;
    assert!(restore_jobs.is_empty(), "no restore ran");
    assert!(!operator.log().contains("failed to perform initial object list"), "the restores' watch listed");
    for (name, _) in poisoned {
        raw.delete(name, &DeleteParams::default()).await.ok();
    }
    ns.delete().await;
}

#[tokio::test]
async fn a_job_the_api_server_refuses_is_a_failed_run_with_the_servers_words() {
    let Some((cluster, ns)) = setup("quota").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    let quota: ResourceQuota = serde_json::from_value(json!({"metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}})).expect("quota");
    ns.api::<ResourceQuota>().create(&PostParams::default(), &quota).await.expect("quota");
    let _operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "refused", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    wait_policy(&ns, "refused", "Ready=False JobRefused", condition_is("Ready", "False", "JobRefused")).await;
    let s = status(&ns, "refused").await;
    let (_, message) = ready(&s);
    assert!(message.contains("exceeded quota") && message.contains("data-db-0"), "{message}");
    let entry = s.backup_history.iter().find(|r| r.pvc == "data-db-0").expect("a history entry");
    support::measured(&format!("observed: ResourceQuota count/jobs.batch=0: Ready=False {}: {message}", ready(&s).0));
    assert_eq!((entry.status, entry.reason.as_deref()), (RunStatus::Failed, Some("JobRefused")), "{entry:?}");
    assert!(s.last_schedule_time.is_some(), "the refused run counts as the scheduled time's run");
    event_reasons(&cluster, &ns, "refused", &["JobRefused"]).await;
    // The next run tries again, and with the quota gone it runs.
    ns.api::<ResourceQuota>().delete("no-jobs", &DeleteParams::default()).await.expect("delete quota");
    let ok = poll("a run after the quota is gone", LIMIT, || async {
        status(&ns, "refused").await.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded)
    })
    .await;
    assert!(ok.scheduled_time > entry.scheduled_time, "{ok:?}");
    // A recorded run's pods are deleted, so nothing of the operator's holds the backup claim:
    // deleting it completes (no Job is created against a claim being deleted).
    pods_gone(&ns, &ok.job_name).await;
    ns.api::<PersistentVolumeClaim>().delete("backup-storage", &DeleteParams::default()).await.expect("delete the backup claim");
    support::wait_condition(ns.api::<PersistentVolumeClaim>(), "backup-storage", "the backup claim gone", LIMIT, |o: Option<&PersistentVolumeClaim>| o.is_none()).await;
    ns.delete().await;
}

#[tokio::test]
async fn a_matched_pvc_that_is_not_bound_is_named_on_the_status() {
    let Some((cluster, ns)) = setup("unbound").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    let pending: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data-db-1", "labels": {"app": "db"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "no-such-class", "resources": {"requests": {"storage": "16Mi"}}}
    }))
    .expect("pvc");
    ns.api::<PersistentVolumeClaim>().create(&PostParams::default(), &pending).await.expect("pending pvc");
    let _operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "db", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    let message = poll("the pending PVC named", LIMIT, || async {
        let (_, message) = ready(&status(&ns, "db").await);
        message.contains("data-db-1 (Pending)").then_some(message)
    })
    .await;
    assert!(message.contains("1 PVC(s) scheduled") && message.contains("not backed up until bound"), "{message}");
    support::measured(&format!("observed: a matched PVC that is Pending: Ready={}: {message}", ready(&status(&ns, "db").await).0));
    let _ = cluster;
    ns.delete().await;
}

/// The `.partial` files on the policy's directory of the backup claim.
fn partial_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".partial")).collect()).unwrap_or_default()
}

/// Waits for a run of `policy` to be writing its archive; returns the run's Job.
async fn writing(ns: &TestNamespace, policy: &str, dir: &std::path::Path) -> String {
    poll(&format!("a run of {policy} writing its archive"), LIMIT + Duration::from_secs(60), || async {
        if partial_files(dir).is_empty() {
            return None;
        }
        let running = jobs(ns, policy).await.into_iter().find(|j| j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0)?;
        Some(running.name_any())
    })
    .await
}

/// Waits until no pod of the Job is left.
async fn pods_gone(ns: &TestNamespace, job: &str) {
    poll(&format!("the pods of {job} gone"), LIMIT, || async {
        let pods = ns.api::<Pod>().list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"))).await.ok()?;
        pods.items.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_run_stopped_midway_leaves_no_partial_file() {
    let Some((cluster, ns)) = setup("leftovers").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    // Incompressible data, so that gzip takes a while.
    let data = claim_dir(&ns, "data-db-0").await;
    let mut random = std::fs::File::open("/dev/urandom").expect("urandom");
    let mut file = std::fs::File::create(data.join("big")).expect("create");
    std::io::copy(&mut std::io::Read::take(&mut random, 300 << 20), &mut file).expect("write 300 MiB");
    drop(file);
    let _operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "slow", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    let dir = claim_dir(&ns, "backup-storage").await.join(storage_dir(&ns.name, "slow", "data-db-0"));

    // The run's Job deleted midway: its pod stops and removes what it wrote.
    let job = writing(&ns, "slow", &dir).await;
    support::kubectl(&cluster, &["-n", &ns.name, "delete", "job", &job, "--wait=false"]);
    pods_gone(&ns, &job).await;
    assert_eq!(partial_files(&dir), Vec::<String>::new(), "after the Job {job} was deleted");

    // The policy deleted midway: its Jobs go with it, and so do their partial files.
    let job = writing(&ns, "slow", &dir).await;
    ns.api::<BackupPolicy>().delete("slow", &DeleteParams::default()).await.expect("delete policy");
    pods_gone(&ns, &job).await;
    assert_eq!(partial_files(&dir), Vec::<String>::new(), "after the policy was deleted");
    support::measured("observed: a Job deleted mid-run and a policy deleted mid-run: no .partial file left on the backup claim");
    ns.delete().await;
}

/// The same with the operator watching every namespace, as the cluster-wide install does: a
/// BackupRestore it cannot read in one namespace, a policy in another that runs on time. The
/// operator's identity here may read every namespace (the watches are cluster-wide; ConfigMaps
/// excepted, so that it compiles no other test's plugin) but write only in the test's two, so that
/// it cannot act on the other tests' objects meanwhile.
#[tokio::test]
async fn an_all_namespaces_operator_starts_past_a_restore_it_cannot_read_in_another_namespace() {
    let Some((cluster, poisoned)) = setup("poison-all").await else { return };
    let policies = cluster.namespace("policy-all").await;
    claim(&policies, "data-db-0", json!({"app": "db"})).await;
    claim(&policies, "backup-storage", json!({})).await;
    let resource = ApiResource::erase::<backup_operator::api::BackupRestore>(&());
    let raw: Api<DynamicObject> = Api::namespaced_with(poisoned.client.clone(), &poisoned.name, &resource);
    admit_poisoned_restores(&cluster, &raw, &[("bad-offset", "2026-12-07T17:00:00+05:99")]).await;
    let operator = support::operator::AllNamespacesOperator::start(&cluster, &poisoned, &[&poisoned.name, &policies.name], &[]);
    let sa = operator.identity.clone();
    create_policy(&policies, "files", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    let success = poll("a successful run in the other namespace", LIMIT + Duration::from_secs(60), || async {
        status(&policies, "files").await.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded)
    })
    .await;
    let events = poll("the poisoned restore's InvalidSpec event", LIMIT, || async {
        let reasons = support::kubectl(&cluster, &["-n", &poisoned.name, "get", "events", "--field-selector", "involvedObject.name=bad-offset", "-o", "jsonpath={.items[*].reason}"]);
        reasons.contains("InvalidSpec").then_some(reasons)
    })
    .await;
    let text = operator.log();
    drop(operator);
    // (Its ConfigMap watch is refused on purpose; the restores' list is what must not fail.)
    let restores_list_failed = text.lines().any(|l| l.contains("initial object list") && (l.contains("time zone offset") || l.contains("backuprestores")));
    assert!(!restores_list_failed, "{}", text.lines().rev().take(20).collect::<Vec<_>>().join("\n"));
    support::measured(&format!("observed: an all-namespaces operator ({sa}) beside a BackupRestore with +05:99 in {}: run {} {:?} in {}; the restore's events [{events}]", poisoned.name, success.job_name, success.status, policies.name));
    raw.delete("bad-offset", &DeleteParams::default()).await.ok();
    policies.delete().await;
    poisoned.delete().await;
}
