//! What carrying out a decision sends to the API server, against the in-memory fake
//! ([`crate::platform::fake_api`]): the real decision of a plain-data observation, the real
//! built-in plugin's plans, the real rendering; only the server is a stand-in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use kube::Resource;

use super::apply;
use crate::api::{BackupPolicy, RunStatus};
use crate::base::names::{FIELD_MANAGER, child_name, run_name};
use crate::context::Context;
use crate::platform::fake_api;
use crate::policy::decide::{Finalize, PruneStep, decide};
use crate::policy::observe::Observation;
use crate::policy::observed::{Observed, ObservedDestination, ObservedPvc};
use crate::policy::target::Target;
use crate::runs::observed::ObservedRun;
use crate::strategy::{RuntimeConfig, StrategyRuntime};

const NS: &str = "team";
const JOBS: &str = "/apis/batch/v1/namespaces/team/jobs";
const POLICY: &str = "/apis/backup.example.com/v1alpha1/namespaces/team/backuppolicies/db";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

fn policy(extra: serde_json::Value) -> BackupPolicy {
    let mut spec = serde_json::json!({"schedule": "*/5 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "retentionCount": 1});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "backup.example.com/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "db", "namespace": NS, "uid": "policy-uid", "creationTimestamp": "2026-11-29T00:00:00Z", "generation": 1},
        "spec": spec
    }))
    .expect("policy")
}

fn observed(policy: &BackupPolicy, now: &str) -> Observed {
    Observed {
        now: t(now),
        unbound: Vec::new(),
        namespace: NS.into(),
        policy: "db".into(),
        spec: policy.spec.clone(),
        created: t("2026-11-29T00:00:00Z"),
        last_schedule_time: None,
        last_verify_time: None,
        resumed_at: None,
        pvcs: vec![ObservedPvc { name: "data-db-0".into(), ..ObservedPvc::default() }],
        destinations: vec![ObservedDestination::default()],
        runs: Vec::new(),
        prunes: Vec::new(),
        verifies: Vec::new(),
        cleanup: None,
        deleting: false,
        has_finalizer: false,
        held: BTreeSet::new(),
        restoring: BTreeMap::new(),
        cause_reportable_at: None,
    }
}

/// A recorded, successful backup of data-db-0 scheduled at `at`.
fn succeeded(at: &str) -> ObservedRun {
    let name = run_name("db", "data-db-0", t(at));
    ObservedRun {
        artifact: Some(format!("{name}.tar.gz")),
        name,
        pvc: "data-db-0".into(),
        scheduled: Some(t(at)),
        status: RunStatus::Succeeded,
        start: Some(t(at)),
        completion: Some(t(at) + chrono::Duration::seconds(5)),
        recorded: true,
        verifies: true,
        listed: true,
        ..ObservedRun::default()
    }
}

fn context(client: kube::Client) -> Context {
    let metrics = Arc::new(crate::telemetry::metrics::Metrics::new());
    let runtime = StrategyRuntime::new(RuntimeConfig { metrics: metrics.clone(), ..RuntimeConfig::default() }).expect("runtime");
    Context::new(client, runtime, None, Some(NS.into()), false, true, 4, metrics)
}

/// Decides on `observed` and carries the decision out against a fresh fake server.
async fn carry_out(policy: &BackupPolicy, observed: Observed) -> (crate::policy::decide::Decision, super::Outcome, Arc<Mutex<fake_api::State>>) {
    let (client, state) = fake_api::client();
    fake_api::insert(&state, POLICY, serde_json::to_value(policy).expect("json"));
    let ctx = context(client.clone());
    let target = Target {
        policy,
        ctx: &ctx,
        tenant: client,
        ns: NS.into(),
        name: "db".into(),
        uid: "policy-uid".into(),
        reference: policy.object_ref(&()),
        events: Mutex::default(),
    };
    let decision = decide(&observed);
    let pvc = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "data-db-0", "namespace": NS, "labels": {"app": "db"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound"}
    }))
    .expect("pvc");
    let outcome = apply(&target, &Observation { observed, pvcs: vec![pvc] }, &decision).await;
    (decision, outcome, state)
}

#[tokio::test]
async fn a_due_run_is_one_job_applied_with_the_public_labels_and_the_owner() {
    let policy = policy(serde_json::json!({}));
    let (decision, outcome, state) = carry_out(&policy, observed(&policy, "2026-11-29T00:05:02Z")).await;
    let run = run_name("db", "data-db-0", t("2026-11-29T00:05:00Z"));
    assert_eq!(decision.create.len(), 1, "{decision:?}");
    assert!(outcome.transient.is_none(), "{:?} {:?}", outcome.transient, outcome.runs);
    assert_eq!(fake_api::calls(&state), vec![format!("PATCH {JOBS}/{run}")], "one request: the Job, applied with the operator's field manager");
    let request = state.lock().expect("state").requests.iter().find(|r| r.path.ends_with(&run)).cloned().expect("request");
    assert!(request.query.contains(&format!("fieldManager={FIELD_MANAGER}")), "{}", request.query);
    let job = request.body;
    assert_eq!(job.pointer("/metadata/labels/backup-policy").and_then(|v| v.as_str()), Some("db"), "{job}");
    assert_eq!(job.pointer("/metadata/labels/pvc").and_then(|v| v.as_str()), Some("data-db-0"), "{job}");
    assert_eq!(job.pointer("/metadata/ownerReferences/0/uid").and_then(|v| v.as_str()), Some("policy-uid"), "{job}");
    assert_eq!(job.pointer("/spec/template/spec/containers/0/image").and_then(|v| v.as_str()), Some("busybox:latest"), "{job}");
    assert!(outcome.runs.iter().any(|r| r.name == run && r.status == RunStatus::Pending), "{:?}", outcome.runs);
    assert!(outcome.transient.is_none(), "{:?}", outcome.transient);
}

#[tokio::test]
async fn retention_starts_a_prune_job_per_dropped_backup_and_deletes_nothing_yet() {
    let policy = policy(serde_json::json!({}));
    let mut o = observed(&policy, "2026-11-29T00:12:00Z");
    o.last_schedule_time = Some(t("2026-11-29T00:10:00Z"));
    o.runs = vec![succeeded("2026-11-29T00:00:00Z"), succeeded("2026-11-29T00:05:00Z"), succeeded("2026-11-29T00:10:00Z")];
    let (decision, _, state) = carry_out(&policy, o).await;
    let dropped: Vec<&str> = decision.prune.iter().filter_map(|s| if let PruneStep::Start { run, .. } = s { Some(run.as_str()) } else { None }).collect();
    assert_eq!(dropped.len(), 2, "{decision:?}");
    let calls = fake_api::calls(&state);
    for run in dropped {
        let prune = child_name(run, "prune");
        assert!(calls.contains(&format!("PATCH {JOBS}/{prune}")), "{prune} in {calls:?}");
        let job = fake_api::body(&state, "PATCH", &format!("{JOBS}/{prune}")).expect("prune job");
        assert_eq!(job.pointer("/metadata/labels/backup.example.com~1kind").and_then(|v| v.as_str()), Some("prune"), "{job}");
        assert!(job.pointer("/metadata/labels/backup-policy").is_none(), "a prune Job is not listed as a backup: {job}");
    }
    assert!(!calls.iter().any(|c| c.starts_with("DELETE")), "the backups stay until their prune succeeds: {calls:?}");
}

#[tokio::test]
async fn a_deleted_policy_that_retains_its_backups_only_loses_its_finalizer() {
    let policy = policy(serde_json::json!({"deletionPolicy": "Retain"}));
    let mut o = observed(&policy, "2026-11-29T00:12:00Z");
    o.deleting = true;
    o.has_finalizer = true;
    o.runs = vec![succeeded("2026-11-29T00:10:00Z")];
    let (decision, _, state) = carry_out(&policy, o).await;
    assert_eq!(decision.finalize, Some(Finalize::RemoveFinalizer), "{decision:?}");
    let calls = fake_api::calls(&state);
    assert_eq!(calls, vec![format!("PATCH {POLICY}")], "no Job, no delete: only the finalizer goes");
    let patch = fake_api::body(&state, "PATCH", POLICY).expect("patch");
    let finalizers = patch.pointer("/metadata/finalizers").cloned().unwrap_or_default();
    assert!(!finalizers.to_string().contains("prune-artifacts"), "{patch}");
}

#[tokio::test]
async fn a_deleted_policy_that_deletes_its_backups_prunes_each_before_letting_go() {
    let policy = policy(serde_json::json!({"deletionPolicy": "Delete"}));
    let mut o = observed(&policy, "2026-11-29T00:12:00Z");
    o.deleting = true;
    o.has_finalizer = true;
    o.runs = vec![succeeded("2026-11-29T00:05:00Z"), succeeded("2026-11-29T00:10:00Z")];
    let (decision, _, state) = carry_out(&policy, o).await;
    assert_eq!(decision.finalize, Some(Finalize::Wait), "{decision:?}");
    let calls = fake_api::calls(&state);
    let prunes = calls.iter().filter(|c| c.starts_with("PATCH") && c.ends_with("-prune")).count();
    assert_eq!(prunes, 2, "{calls:?}");
    assert!(!calls.contains(&format!("PATCH {POLICY}")), "the finalizer stays while artifacts are pruned: {calls:?}");
}
