//! Runs belong to the host. A run is (policy, PVC, scheduled time); the host derives one name from
//! it and uses it for every object of the run: the backup Job or VolumeSnapshot, and the prune
//! and verify Jobs that follow. Runs are observed by their labels and annotations, never by the
//! shape of a name. One file per kind of run object: [`backup_job`], [`snapshot`], [`prune_job`],
//! [`verify_job`], and [`cleanup_job`] for a policy deleted with `deletionPolicy: Delete`.

pub mod backup_job;
pub mod cleanup_job;
pub mod prune_job;
pub mod report;
pub mod snapshot;
pub mod stuck;
pub mod verify_job;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::api::{RunStatus, from_time};
use crate::error::{Error, Result};

/// Labels every child of a policy carries. `backup-policy` and `pvc` are the public contract
/// (`kubectl get jobs -l backup-policy=<policy>`); values longer than a label allows are
/// shortened with a hash, and the full names are in annotations.
pub const LABEL_POLICY: &str = "backup-policy";
pub const LABEL_PVC: &str = "pvc";
/// The owning policy's UID: how the host finds a policy's objects, whatever its name's length.
pub const LABEL_POLICY_UID: &str = "backup.example.com/policy-uid";
/// backup, prune, verify, cleanup or restore.
pub const LABEL_KIND: &str = "backup.example.com/kind";
/// The destination (spec.destinations[].name) a run writes to; absent without destinations.
pub const LABEL_DESTINATION: &str = "backup.example.com/destination";

pub const ANNOTATION_POLICY: &str = "backup.example.com/policy";
pub const ANNOTATION_PVC: &str = "backup.example.com/pvc";
/// The run an object belongs to (the backup run's name, for prune and verify Jobs too).
pub const ANNOTATION_RUN: &str = "backup.example.com/run";
pub const ANNOTATION_SCHEDULED_TIME: &str = "backup.example.com/scheduled-time";
/// The artifact as the plan named it, relative to the PVC's own directory on the storage claim.
pub const ANNOTATION_ARTIFACT: &str = "backup.example.com/artifact";
pub const ANNOTATION_VERIFICATION: &str = "backup.example.com/verification";
pub const ANNOTATION_PLUGIN: &str = "backup.example.com/plugin";
/// What the finished run reported, recorded once by the host (JSON, bounded).
pub const ANNOTATION_RESULT: &str = "backup.example.com/result";
/// The newest re-verification of the run's artifact (JSON, bounded).
pub const ANNOTATION_VERIFY_RESULT: &str = "backup.example.com/verify-result";
/// Why the host failed a run that could not start (`<reason>: <message>`).
pub const ANNOTATION_STUCK: &str = "backup.example.com/stuck";
/// `<prefix><Event>: pending`: a notification of the run's outcome not yet delivered to every
/// target. Written with the outcome, removed once every target got it (or finally failed): a
/// restarted operator sends what is still pending, with the same event id.
pub const ANNOTATION_NOTIFICATION_PENDING: &str = "notification-pending.backup.example.com/";

/// The notifications an object's annotations say are pending.
pub fn pending_notifications(annotations: &BTreeMap<String, String>) -> Vec<crate::api::NotificationEvent> {
    annotations
        .keys()
        .filter_map(|k| k.strip_prefix(ANNOTATION_NOTIFICATION_PENDING))
        .filter_map(|event| serde_json::from_value(serde_json::Value::String(event.to_owned())).ok())
        .collect()
}

/// The annotations that say `events` are pending.
pub fn pending_annotations(events: &[crate::api::NotificationEvent]) -> BTreeMap<String, String> {
    events
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok()?.as_str().map(|name| (format!("{ANNOTATION_NOTIFICATION_PENDING}{name}"), "pending".to_owned())))
        .collect()
}

/// Longest Kubernetes object name the host makes (a DNS-1123 label, as Job names need).
pub const MAX_NAME: usize = 63;

/// The kinds of object a run has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Backup,
    Prune,
    Verify,
    Cleanup,
    /// A restore's Job (owned by its BackupRestore, not by the policy).
    Restore,
}

impl RunKind {
    pub fn label(self) -> &'static str {
        match self {
            RunKind::Backup => "backup",
            RunKind::Prune => "prune",
            RunKind::Verify => "verify",
            RunKind::Cleanup => "cleanup",
            RunKind::Restore => "restore",
        }
    }
}

/// 32-bit FNV-1a: stable across releases, which a std hasher is not.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// `head-suffix`, with `head` cut and a hash of `full` added so the result fits `max`.
fn fit(head: &str, suffix: &str, full: &str, max: usize) -> String {
    let joined = if suffix.is_empty() { head.to_owned() } else { format!("{head}-{suffix}") };
    if joined.len() <= max {
        return joined;
    }
    let tail = if suffix.is_empty() { format!("-{:08x}", fnv1a(full)) } else { format!("-{:08x}-{suffix}", fnv1a(full)) };
    let cut: String = head.chars().take(max.saturating_sub(tail.len())).collect();
    format!("{}{tail}", cut.trim_end_matches(['-', '.', '_']))
}

/// The run's name: `<policy>-<pvc>-<unix minutes of the scheduled time>`, shortened with a hash to
/// fit 63 characters. The same run always gets the same name, so a second create (after a restart,
/// a crash, a repeated reconcile) is a no-op.
pub fn run_name(policy: &str, pvc: &str, scheduled: DateTime<Utc>) -> String {
    let minutes = scheduled.timestamp().div_euclid(60);
    fit(&format!("{policy}-{pvc}"), &minutes.to_string(), &format!("{policy}/{pvc}"), MAX_NAME)
}

/// The run's name for one destination: `<policy>-<pvc>-<destination>-<minutes>`; the unnamed
/// destination of a policy without spec.destinations keeps [`run_name`].
pub fn run_name_to(policy: &str, pvc: &str, destination: &str, scheduled: DateTime<Utc>) -> String {
    if destination.is_empty() {
        return run_name(policy, pvc, scheduled);
    }
    let minutes = scheduled.timestamp().div_euclid(60);
    fit(&format!("{policy}-{pvc}-{destination}"), &minutes.to_string(), &format!("{policy}/{pvc}/{destination}"), MAX_NAME)
}

/// The name of an object that belongs to `run` (its prune or verify Job), within 63 characters.
pub fn child_name(run: &str, suffix: &str) -> String {
    fit(run, suffix, &format!("{run}/{suffix}"), MAX_NAME)
}

/// A label value for a name: itself when it fits 63 characters, else shortened with a hash.
pub fn label_value(name: &str) -> String {
    fit(name, "", name, 63)
}

/// The directory of one PVC's backups on the storage claim; the only part of the claim a run's
/// Jobs see (mounted as a sub-path, created on first use).
pub fn storage_dir(namespace: &str, policy: &str, pvc: &str) -> String {
    format!("{namespace}/{policy}/{pvc}")
}

/// The labels of every object of a run. Only backups (Jobs and VolumeSnapshots) carry the public
/// `backup-policy` and `pvc`: the specification counts a policy's Jobs by them, so prune, verify
/// and cleanup Jobs are found by the operator's own labels only.
pub fn labels(policy: &str, policy_uid: &str, pvc: Option<&str>, kind: RunKind) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_POLICY_UID.to_owned(), policy_uid.to_owned()),
        (LABEL_KIND.to_owned(), kind.label().to_owned()),
    ]);
    let public = match kind {
        RunKind::Backup => true,
        RunKind::Prune | RunKind::Verify | RunKind::Cleanup | RunKind::Restore => false,
    };
    if public {
        labels.insert(LABEL_POLICY.to_owned(), label_value(policy));
        if let Some(pvc) = pvc {
            labels.insert(LABEL_PVC.to_owned(), label_value(pvc));
        }
    }
    labels
}

/// [`labels`], plus the destination's name when it has one.
pub fn labels_to(policy: &str, policy_uid: &str, pvc: Option<&str>, destination: &str, kind: RunKind) -> BTreeMap<String, String> {
    let mut labels = labels(policy, policy_uid, pvc, kind);
    if !destination.is_empty() {
        labels.insert(LABEL_DESTINATION.to_owned(), destination.to_owned());
    }
    labels
}

/// The destination an object's labels name ("" for none).
pub fn destination_of(labels: &BTreeMap<String, String>) -> String {
    labels.get(LABEL_DESTINATION).cloned().unwrap_or_default()
}

/// A label query for every object of kind `kind` of the policy with this UID.
pub fn selector(policy_uid: &str, kind: RunKind) -> String {
    format!("{LABEL_POLICY_UID}={policy_uid},{LABEL_KIND}={}", kind.label())
}

/// Parses an RFC 3339 annotation value.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// The state of any of the host's Jobs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobState {
    pub status: RunStatus,
    pub reason: Option<String>,
    pub message: String,
    pub start: Option<DateTime<Utc>>,
    pub completion: Option<DateTime<Utc>>,
}

pub fn job_state(job: &Job) -> JobState {
    let status = job.status.clone().unwrap_or_default();
    let conditions = status.conditions.clone().unwrap_or_default();
    let has = |type_: &str| conditions.iter().find(|c| c.type_ == type_ && c.status == "True");
    let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| t.as_ref().and_then(from_time);
    // A run starts when its Job is created: known in the status write that records the Job, where
    // the Job controller's own startTime (seconds later under load) would cost another write.
    let start = time(&job.metadata.creation_timestamp).or_else(|| time(&status.start_time));
    if has("Complete").is_some() {
        return JobState { status: RunStatus::Succeeded, reason: None, message: String::new(), start, completion: time(&status.completion_time) };
    }
    if let Some(c) = has("Failed") {
        let reason = c.reason.clone().unwrap_or_else(|| "Failed".into());
        return JobState {
            status: RunStatus::Failed,
            message: report::bound(&format!("{reason}: {}", c.message.clone().unwrap_or_default()), report::MAX_MESSAGE_BYTES),
            reason: Some(reason),
            start,
            completion: time(&c.last_transition_time),
        };
    }
    // Running means a pod runs (is ready), not merely exists: `active` counts pending pods too,
    // and a run whose pod waits for a node is still Pending.
    let running = status.active.unwrap_or(0) > 0 && status.ready.unwrap_or(0) > 0;
    JobState { status: if running { RunStatus::Running } else { RunStatus::Pending }, start, ..JobState::default() }
}

/// The label the Job controller puts on a Job's pods.
pub const LABEL_JOB_NAME: &str = "batch.kubernetes.io/job-name";

/// The pods of a Job among `pods`.
pub fn pods_of_job<'a>(pods: &'a [Pod], job: &str) -> Vec<&'a Pod> {
    pods.iter().filter(|p| p.labels().get(LABEL_JOB_NAME).map(String::as_str) == Some(job)).collect()
}

/// Deletes a finished Job's pods once what they said is recorded: a completed pod keeps the claims
/// it mounted in use (a backup claim being deleted stays Terminating while one references it).
/// Pods already going are left alone; one gone meanwhile is no failure.
pub async fn delete_pods_of_job(client: &Client, namespace: &str, pods: &[Pod], job: &str) -> Result<()> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    for pod in pods_of_job(pods, job).into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        match api.delete(&pod.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The termination message of the Job's newest finished pod, and for a failed container a short
/// description of how it ended (reason, exit code).
pub fn pod_termination<'a>(pods: &'a [Pod], job: &str) -> Option<(&'a str, String)> {
    pods_of_job(pods, job)
        .into_iter()
        .filter_map(|p| {
            let status = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
            let t = status.state.as_ref()?.terminated.as_ref()?;
            let how = format!("{} (exit code {})", t.reason.clone().unwrap_or_default(), t.exit_code);
            Some((t.finished_at.as_ref().and_then(from_time), t.message.as_deref().unwrap_or(""), how))
        })
        .max_by_key(|(at, _, _)| *at)
        .map(|(_, message, how)| (message, how))
}

/// A prune, verify or cleanup Job as observed, with what its pod reported once it finished.
pub fn observe_aux(job: &Job, pods: &[Pod]) -> crate::decide::ObservedAux {
    let state = job_state(job);
    let finished = matches!(state.status, RunStatus::Succeeded | RunStatus::Failed);
    let termination = if finished { pod_termination(pods, &job.name_any()) } else { None };
    let mut message = state.message;
    if state.status == RunStatus::Failed
        && let Some((log, how)) = &termination
    {
        message = report::bound(&format!("{message}; {how}: {log}"), report::MAX_MESSAGE_BYTES);
    }
    crate::decide::ObservedAux {
        name: job.name_any(),
        run: job.annotations().get(ANNOTATION_RUN).cloned().unwrap_or_default(),
        status: state.status,
        message,
        report: termination.and_then(|(m, _)| report::parse(m)),
        start: state.start,
        completion: state.completion,
    }
}

/// A Job the host starts for an existing run (prune or verify), from a checked plan.
pub struct RunChild<'a> {
    pub kind: RunKind,
    pub name: &'a str,
    pub namespace: &'a str,
    pub policy: &'a str,
    pub policy_uid: &'a str,
    pub run: &'a str,
    pub pvc: &'a str,
    pub plugin: &'a str,
    pub access: &'a crate::destination::Access,
    pub owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    pub run_as: Option<crate::api::RunAs>,
}

/// Prune and verify Jobs: one try, a short deadline, the same confined directory as the run.
const CHILD_DEADLINE_SECONDS: i64 = 600;

pub fn render_child(c: &RunChild<'_>, plan: &crate::strategy::bindings::types::JobPlan) -> Job {
    let ctx = crate::render::JobContext {
        name: c.name.to_owned(),
        namespace: c.namespace.to_owned(),
        labels: labels_to(c.policy, c.policy_uid, Some(c.pvc), &c.access.destination, c.kind),
        annotations: BTreeMap::from([
            (ANNOTATION_RUN.to_owned(), c.run.to_owned()),
            (ANNOTATION_POLICY.to_owned(), c.policy.to_owned()),
            (ANNOTATION_PVC.to_owned(), c.pvc.to_owned()),
            (ANNOTATION_PLUGIN.to_owned(), c.plugin.to_owned()),
        ]),
        data_claim: c.pvc.to_owned(),
        storage_claim: c.access.storage_claim.clone(),
        secret_env: c.access.env.clone(),
        ca_bundle: c.access.ca_bundle.clone(),
        backup_sub_path: storage_dir(c.namespace, c.policy, c.pvc),
        owner: c.owner.clone(),
        backoff_limit: 0,
        active_deadline_seconds: Some(CHILD_DEADLINE_SECONDS),
        data_writable: false,
        backup_writable: true,
        node: None,
        run_as: c.run_as.clone(),
    };
    crate::render::render_job(&ctx, plan)
}

/// Creates (or leaves as it is) a Job, by server-side apply with the operator's field manager.
pub async fn apply_job(client: &Client, namespace: &str, job: &Job) -> Result<()> {
    applied_job(client, namespace, job).await.map(|_| ())
}

/// [`apply_job`], returning the Job as the API server now has it.
pub async fn applied_job(client: &Client, namespace: &str, job: &Job) -> Result<Job> {
    let name = job.metadata.name.clone().unwrap_or_default();
    Api::<Job>::namespaced(client.clone(), namespace)
        .patch(&name, &PatchParams::apply(crate::controller::FIELD_MANAGER), &Patch::Apply(job))
        .await
        .map_err(|e| Error::creating(format!("Job {name}"), e))
}

/// Fails a Job that cannot start: records why, and lowers its deadline to the time it has already
/// had, so the Job controller ends it (reason DeadlineExceeded) and the next run may start.
pub async fn fail_stuck_job(client: &Client, namespace: &str, name: &str, cause: &str, elapsed_seconds: i64) -> Result<()> {
    let patch = serde_json::json!({
        "metadata": {"annotations": {ANNOTATION_STUCK: report::bound(cause, report::MAX_MESSAGE_BYTES)}},
        "spec": {"activeDeadlineSeconds": elapsed_seconds.max(1)},
    });
    match Api::<Job>::namespaced(client.clone(), namespace).patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Puts a backup Job of `policy` and `pvc` into the public listing (`backup-policy`, `pvc`) or
/// takes it out; its other labels, by which the operator finds it, stay. A Job that is gone has
/// nothing to change.
pub async fn set_listed(client: &Client, namespace: &str, job: &str, policy: &str, pvc: &str, listed: bool) -> Result<()> {
    let value = |v: &str| if listed { serde_json::json!(label_value(v)) } else { serde_json::Value::Null };
    let patch = serde_json::json!({"metadata": {"labels": {LABEL_POLICY: value(policy), LABEL_PVC: value(pvc)}}});
    match Api::<Job>::namespaced(client.clone(), namespace).patch(job, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sets annotations on one of the host's Jobs (a merge patch: other fields stay as applied).
pub async fn annotate_job(client: &Client, namespace: &str, name: &str, annotations: &BTreeMap<String, String>) -> Result<()> {
    let patch = serde_json::json!({"metadata": {"annotations": annotations}});
    match Api::<Job>::namespaced(client.clone(), namespace).patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes one of the host's Jobs and its pods; gone already is fine.
pub async fn delete_job(client: &Client, namespace: &str, name: &str) -> Result<()> {
    match Api::<Job>::namespaced(client.clone(), namespace).delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn pending_notifications_round_trip_through_annotations() {
        use crate::api::NotificationEvent::{Corrupted, Failed, Succeeded};
        let mut annotations = pending_annotations(&[Succeeded, Corrupted]);
        assert_eq!(annotations.get("notification-pending.backup.example.com/Succeeded").map(String::as_str), Some("pending"));
        annotations.insert("notification-pending.backup.example.com/NoSuchEvent".into(), "pending".into());
        annotations.insert(ANNOTATION_RESULT.into(), "{}".into());
        assert_eq!(pending_notifications(&annotations), vec![Corrupted, Succeeded]);
        assert_eq!(pending_notifications(&pending_annotations(&[Failed])), vec![Failed]);
        assert!(pending_notifications(&BTreeMap::new()).is_empty());
    }

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn a_job_runs_when_its_pod_does() {
        let job = |status: serde_json::Value| -> Job {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "r", "creationTimestamp": "2026-11-29T00:01:00Z"}, "status": status})).expect("job")
        };
        let cases = [
            ("just created", serde_json::json!({}), RunStatus::Pending),
            ("pod waiting for a node", serde_json::json!({"active": 1, "ready": 0}), RunStatus::Pending),
            ("pod running", serde_json::json!({"active": 1, "ready": 1}), RunStatus::Running),
            ("complete", serde_json::json!({"conditions": [{"type": "Complete", "status": "True"}]}), RunStatus::Succeeded),
            ("failed", serde_json::json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}), RunStatus::Failed),
        ];
        for (what, status, want) in cases {
            assert_eq!(job_state(&job(status)).status, want, "{what}");
        }
    }

    #[test]
    fn run_names_are_deterministic_and_fit() {
        let at = t("2026-11-29T01:00:00Z");
        assert_eq!(run_name("db-backup", "data-db-0", at), format!("db-backup-data-db-0-{}", at.timestamp() / 60));
        assert_eq!(run_name("db-backup", "data-db-0", at), run_name("db-backup", "data-db-0", at + chrono::Duration::seconds(30)));
        assert_ne!(run_name("db-backup", "data-db-0", at), run_name("db-backup", "data-db-0", at + chrono::Duration::minutes(1)));
        let long_policy = "p".repeat(250);
        let a = run_name(&long_policy, "data-db-0", at);
        let b = run_name(&long_policy, "data-db-1", at);
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b, "shortened names keep PVCs apart");
        assert!(a.ends_with(&(at.timestamp() / 60).to_string()));
    }

    #[test]
    fn child_names_and_label_values_fit() {
        let run = run_name(&"p".repeat(60), "data-db-0", t("2026-11-29T01:00:00Z"));
        let prune = child_name(&run, "prune");
        assert!(prune.len() <= 63 && prune.ends_with("-prune"), "{prune}");
        assert_ne!(child_name(&run, "verify-1"), child_name(&run, "verify-2"));
        assert_eq!(child_name("short", "prune"), "short-prune");
        assert_eq!(label_value("db-backup"), "db-backup");
        let long = label_value(&"x".repeat(200));
        assert!(long.len() <= 63, "{long}");
        assert_ne!(long, label_value(&"x".repeat(201)));
    }

    #[test]
    fn labels_carry_the_public_contract_and_the_owner() {
        let l = labels("db-backup", "uid-1", Some("data-db-0"), RunKind::Backup);
        assert_eq!(l[LABEL_POLICY], "db-backup");
        assert_eq!(l[LABEL_PVC], "data-db-0");
        assert_eq!(l[LABEL_POLICY_UID], "uid-1");
        assert_eq!(l[LABEL_KIND], "backup");
        // The specification counts a policy's Jobs by `backup-policy`: only backups carry it.
        for kind in [RunKind::Prune, RunKind::Verify, RunKind::Cleanup] {
            let l = labels("db-backup", "uid-1", Some("data-db-0"), kind);
            assert!(!l.contains_key(LABEL_POLICY) && !l.contains_key(LABEL_PVC), "{kind:?}: {l:?}");
            assert_eq!((l[LABEL_POLICY_UID].as_str(), l[LABEL_KIND].as_str()), ("uid-1", kind.label()));
        }
        assert_eq!(selector("uid-1", RunKind::Backup), "backup.example.com/policy-uid=uid-1,backup.example.com/kind=backup");
    }
}
