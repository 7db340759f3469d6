//! Runs belong to the host. A run is (policy, PVC, scheduled time); the host derives one name from
//! it and uses it for every object of the run: the backup Job or VolumeSnapshot, and the prune
//! and verify Jobs that follow. Runs are observed by their labels and annotations, never by the
//! shape of a name. One file per kind of run object: [`backup_job`], [`snapshot`], [`prune_job`],
//! [`verify_job`], and [`cleanup_job`] for a policy deleted with `deletionPolicy: Delete`.

pub mod backup_job;
pub mod cause;
pub mod cleanup_job;
pub mod destination;
pub mod holds;
pub mod observed;
pub mod prune_job;
pub mod render;
pub mod report;
pub mod request;
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
use crate::base::names::{
    ANNOTATION_NOTIFICATION_PENDING, ANNOTATION_PLUGIN, ANNOTATION_POLICY, ANNOTATION_PVC, ANNOTATION_RUN, ANNOTATION_STUCK, LABEL_KIND, LABEL_POLICY, LABEL_PVC,
    RunKind, label_value, labels_to, storage_dir,
};
use crate::error::{Error, Result};

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
            message: crate::base::text::bound(&format!("{reason}: {}", c.message.clone().unwrap_or_default()), report::MAX_MESSAGE_BYTES),
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

/// A pod (not one of the operator's own) that mounts the claim: a running one, or with
/// `or_starting` also one that is about to run (Pending, Unknown).
pub fn pod_mounting<'a>(pods: &'a [Pod], claim: &str, or_starting: bool) -> Option<&'a Pod> {
    pods.iter()
        .filter(|p| !p.labels().contains_key(LABEL_KIND))
        .filter(|p| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Running") => true,
            Some("Succeeded" | "Failed") => false,
            _ => or_starting,
        })
        .find(|p| {
            p.spec.as_ref().is_some_and(|s| {
                s.volumes.iter().flatten().any(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == claim))
            })
        })
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
pub fn observe_aux(job: &Job, pods: &[Pod]) -> crate::runs::observed::ObservedAux {
    let state = job_state(job);
    let finished = matches!(state.status, RunStatus::Succeeded | RunStatus::Failed);
    let termination = if finished { pod_termination(pods, &job.name_any()) } else { None };
    let mut message = state.message;
    if state.status == RunStatus::Failed
        && let Some((log, how)) = &termination
    {
        message = crate::base::text::bound(&cause::first("", &format!("{message}; {how}: {log}")), report::MAX_MESSAGE_BYTES);
    }
    crate::runs::observed::ObservedAux {
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
    pub access: &'a crate::runs::destination::Access,
    pub owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    pub run_as: Option<crate::api::RunAs>,
}

/// Prune and verify Jobs: one try, a short deadline, the same confined directory as the run.
const CHILD_DEADLINE_SECONDS: i64 = 600;

pub fn render_child(c: &RunChild<'_>, plan: &crate::strategy::bindings::types::JobPlan) -> Job {
    let ctx = crate::runs::render::JobContext {
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
    crate::runs::render::render_job(&ctx, plan)
}

/// Creates (or leaves as it is) a Job, by server-side apply with the operator's field manager.
pub async fn apply_job(client: &Client, namespace: &str, job: &Job) -> Result<()> {
    applied_job(client, namespace, job).await.map(|_| ())
}

/// [`apply_job`], returning the Job as the API server now has it.
pub async fn applied_job(client: &Client, namespace: &str, job: &Job) -> Result<Job> {
    let name = job.metadata.name.clone().unwrap_or_default();
    Api::<Job>::namespaced(client.clone(), namespace)
        .patch(&name, &PatchParams::apply(crate::base::names::FIELD_MANAGER), &Patch::Apply(job))
        .await
        .map_err(|e| Error::creating(format!("Job {name}"), e))
}

/// Fails a Job that cannot start: records why, and lowers its deadline to the time it has already
/// had, so the Job controller ends it (reason DeadlineExceeded) and the next run may start.
pub async fn fail_stuck_job(client: &Client, namespace: &str, name: &str, cause: &str, elapsed_seconds: i64) -> Result<()> {
    let patch = serde_json::json!({
        "metadata": {"annotations": {ANNOTATION_STUCK: crate::base::text::bound(cause, report::MAX_MESSAGE_BYTES)}},
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
    use crate::base::names::ANNOTATION_RESULT;


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
}
