//! The backup Job of a run: observed as a run, rendered from a checked plan, recorded once when
//! it finishes (its report and an event), and deleted by retention after its artifact is pruned.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Client, ResourceExt};

use super::report;
use super::job_state;
use crate::base::names::{ANNOTATION_ARTIFACT, ANNOTATION_PLUGIN, ANNOTATION_POLICY, ANNOTATION_PVC, ANNOTATION_RESULT, ANNOTATION_RUN, ANNOTATION_SCHEDULED_TIME, ANNOTATION_STUCK, ANNOTATION_VERIFICATION, ANNOTATION_VERIFY_RESULT, LABEL_PVC, RunKind, parse_time};
use crate::api::RunStatus;
use crate::runs::observed::{ObservedRun, RunObject, VerifyRecord};
use crate::error::Result;
use crate::runs::render::{JobContext, render_job};
use crate::strategy::bindings::types::JobPlan;

/// A backup Job as a run. Pure.
pub fn observe(job: &Job) -> Option<ObservedRun> {
    let annotations = job.annotations();
    let pvc = annotations.get(ANNOTATION_PVC).or_else(|| job.labels().get(LABEL_PVC))?.clone();
    let mut state = job_state(job);
    // A run the host failed because it could not start: its cause, not DeadlineExceeded.
    if state.status == RunStatus::Failed
        && let Some((reason, message)) = annotations.get(ANNOTATION_STUCK).and_then(|s| s.split_once(": "))
    {
        state.reason = Some(reason.to_owned());
        state.message = crate::base::text::bound(&format!("{reason}: {message}"), report::MAX_MESSAGE_BYTES);
    }
    let recorded = annotations.get(ANNOTATION_RESULT);
    let report = recorded.and_then(|r| report::from_annotation(r));
    // A failed run's record keeps what its pod said (the pod may be gone by now), and why.
    if state.status == RunStatus::Failed
        && let Some(said) = report.as_ref().map(|r| r.message.as_str()).filter(|m| !m.is_empty())
    {
        state.message = said.to_owned();
    }
    if state.status == RunStatus::Failed
        && let Some(reason) = report.as_ref().and_then(|r| r.reason.clone())
    {
        state.reason = Some(reason);
    }
    Some(ObservedRun {
        name: job.name_any(),
        object: RunObject::Job,
        pvc,
        destination: crate::base::names::destination_of(job.labels()),
        scheduled: annotations.get(ANNOTATION_SCHEDULED_TIME).and_then(|s| parse_time(s)),
        status: state.status,
        start: state.start,
        completion: state.completion,
        reason: state.reason,
        message: state.message,
        plugin: annotations.get(ANNOTATION_PLUGIN).cloned(),
        artifact: annotations.get(ANNOTATION_ARTIFACT).filter(|a| !a.is_empty()).cloned(),
        report,
        recorded: recorded.is_some(),
        verifies: annotations.get(ANNOTATION_VERIFICATION).is_some_and(|v| v != "none"),
        verify: annotations.get(ANNOTATION_VERIFY_RESULT).and_then(|v| verify_record_from_annotation(v)),
        stuck: None,
        hooks: annotations.get(crate::hooks::ANNOTATION).and_then(|h| serde_json::from_str(h).ok()),
        listed: job.labels().contains_key(crate::base::names::LABEL_POLICY),
        pending_notifications: super::pending_notifications(annotations),
    })
}

/// For finished runs the host has not recorded yet: what their pod reported, and for a failed
/// run how its container ended (the last log lines, when it wrote no report).
pub fn attach_pod_reports(runs: &mut [ObservedRun], pods: &[Pod]) {
    for run in runs.iter_mut().filter(|r| r.object == RunObject::Job && !r.recorded) {
        let Some((message, how)) = super::pod_termination(pods, &run.name) else { continue };
        match run.status {
            RunStatus::Succeeded => run.report = report::parse(message),
            RunStatus::Failed => {
                // A script that knows why it failed says so in a report; otherwise its last words.
                let said = report::parse(message).filter(|r| r.reason.is_some());
                let text = said.as_ref().map_or(message, |r| r.message.as_str());
                let detail = if text.trim().is_empty() { how } else { format!("{how}: {text}") };
                // A known cause (refused credentials, a full disk) first, in the user's words.
                run.message = crate::base::text::bound(&super::cause::first(&run.destination, &format!("{}; {detail}", run.message)), report::MAX_MESSAGE_BYTES);
                if let Some(reason) = said.and_then(|r| r.reason) {
                    run.reason = Some(reason.clone());
                    run.report = Some(report::Report { reason: Some(reason), ..report::Report::default() });
                }
            }
            RunStatus::Pending | RunStatus::Running => {}
        }
    }
}

/// The host's side of a backup Job.
pub struct BackupJob<'a> {
    pub namespace: &'a str,
    pub policy: &'a str,
    pub policy_uid: &'a str,
    pub run: &'a str,
    pub pvc: &'a str,
    pub scheduled_time: &'a str,
    pub plugin: &'a str,
    pub access: &'a crate::runs::destination::Access,
    pub owner: Option<OwnerReference>,
    pub backoff_limit: i32,
    pub active_deadline_seconds: Option<i64>,
    pub node: Option<String>,
    pub run_as: Option<crate::api::RunAs>,
}

pub fn render(b: &BackupJob<'_>, plan: &JobPlan) -> Job {
    let ctx = JobContext {
        name: b.run.to_owned(),
        namespace: b.namespace.to_owned(),
        labels: crate::base::names::labels_to(b.policy, b.policy_uid, Some(b.pvc), &b.access.destination, RunKind::Backup),
        annotations: BTreeMap::from([
            (ANNOTATION_RUN.to_owned(), b.run.to_owned()),
            (ANNOTATION_POLICY.to_owned(), b.policy.to_owned()),
            (ANNOTATION_PVC.to_owned(), b.pvc.to_owned()),
            (ANNOTATION_SCHEDULED_TIME.to_owned(), b.scheduled_time.to_owned()),
            (ANNOTATION_PLUGIN.to_owned(), b.plugin.to_owned()),
        ]),
        data_claim: b.pvc.to_owned(),
        storage_claim: b.access.storage_claim.clone(),
        secret_env: b.access.env.clone(),
        ca_bundle: b.access.ca_bundle.clone(),
        backup_sub_path: crate::base::names::storage_dir(b.namespace, b.policy, b.pvc),
        owner: b.owner.clone(),
        backoff_limit: b.backoff_limit,
        active_deadline_seconds: b.active_deadline_seconds,
        data_writable: false,
        backup_writable: true,
        node: b.node.clone(),
        run_as: b.run_as.clone(),
    };
    render_job(&ctx, plan)
}

/// Records a finished run once: its report (bounded) on the Job, and the notifications of it
/// still to be delivered (`run.pending_notifications`).
pub async fn record(client: &Client, namespace: &str, run: &ObservedRun) -> Result<()> {
    let mut recorded = run.report.clone().unwrap_or_default();
    if run.status == RunStatus::Failed {
        recorded.message = crate::base::text::bound(&run.message, report::MAX_MESSAGE_BYTES);
    }
    let mut annotations = super::pending_annotations(&run.pending_notifications);
    annotations.insert(ANNOTATION_RESULT.to_owned(), report::to_annotation(&recorded));
    super::annotate_job(client, namespace, &run.name, &annotations).await
}

/// Records what the run's hooks did on its Job.
pub async fn record_hooks(client: &Client, namespace: &str, run: &str, hooks: &crate::hooks::HookRecord) -> Result<()> {
    super::annotate_job(client, namespace, run, &BTreeMap::from([(crate::hooks::ANNOTATION.to_owned(), hooks.to_annotation())])).await
}

/// Records a re-verification of the run's artifact on its Job, and the notifications of it still
/// to be delivered.
pub async fn record_verification(client: &Client, namespace: &str, run: &str, record: &VerifyRecord, pending: &[crate::api::NotificationEvent]) -> Result<()> {
    let value = serde_json::json!({
        "time": record.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "verified": record.verified,
        "message": crate::base::text::bound(&record.message, report::MAX_MESSAGE_BYTES),
    })
    .to_string();
    let mut annotations = super::pending_annotations(pending);
    annotations.insert(ANNOTATION_VERIFY_RESULT.to_owned(), value);
    super::annotate_job(client, namespace, run, &annotations).await
}

fn verify_record_from_annotation(s: &str) -> Option<VerifyRecord> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    Some(VerifyRecord {
        time: parse_time(v.get("time")?.as_str()?)?,
        verified: v.get("verified")?.as_bool()?,
        message: crate::base::text::bound(v.get("message").and_then(|m| m.as_str()).unwrap_or(""), report::MAX_MESSAGE_BYTES),
    })
}

pub async fn delete(client: &Client, namespace: &str, run: &str) -> Result<()> {
    super::delete_job(client, namespace, run).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(annotations: serde_json::Value, status: serde_json::Value) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p-data-0-1", "labels": {"pvc": "data-0"}, "annotations": annotations},
            "status": status
        }))
        .expect("job")
    }

    #[test]
    fn a_job_is_observed_from_its_annotations_and_conditions() {
        let done = job(
            serde_json::json!({
                ANNOTATION_SCHEDULED_TIME: "2026-11-29T01:00:00Z", ANNOTATION_ARTIFACT: "x.tar.gz",
                ANNOTATION_VERIFICATION: "sha256-file:x.tar.gz.sha256", ANNOTATION_PLUGIN: "tar@0123",
                ANNOTATION_RESULT: format!(r#"{{"sizeBytes":10,"sha256":"{}","verified":true}}"#, "b".repeat(64)),
                ANNOTATION_VERIFY_RESULT: r#"{"time":"2026-11-29T02:00:00Z","verified":false,"message":"sha256 does not match"}"#,
            }),
            serde_json::json!({"conditions": [{"type": "Complete", "status": "True"}], "completionTime": "2026-11-29T01:00:09Z"}),
        );
        let run = observe(&done).expect("run");
        assert_eq!((run.status, run.pvc.as_str(), run.artifact.as_deref()), (RunStatus::Succeeded, "data-0", Some("x.tar.gz")));
        assert!(run.recorded && run.verifies);
        assert_eq!(run.report.and_then(|r| r.size_bytes), Some(10));
        assert!(run.verify.is_some_and(|v| !v.verified));

        let failed = job(
            serde_json::json!({ANNOTATION_PVC: "a-very-long-pvc-name", ANNOTATION_VERIFICATION: "none"}),
            serde_json::json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
        );
        let run = observe(&failed).expect("run");
        assert_eq!((run.status, run.reason.as_deref()), (RunStatus::Failed, Some("BackoffLimitExceeded")));
        assert_eq!(run.pvc, "a-very-long-pvc-name", "the full name comes from the annotation");
        assert!(!run.recorded && !run.verifies);
    }

    #[test]
    fn unrecorded_runs_take_their_pods_report() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p-data-0-1-abcde", "labels": {"batch.kubernetes.io/job-name": "p-data-0-1"}},
            "status": {"containerStatuses": [{"name": "backup", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                    "message": format!(r#"{{"sizeBytes":2048,"sha256":"{}","verified":true}}"#, "c".repeat(64))}}}]}
        }))
        .expect("pod");
        let mut runs = vec![ObservedRun { name: "p-data-0-1".into(), status: RunStatus::Succeeded, ..ObservedRun::default() }];
        attach_pod_reports(&mut runs, &[pod]);
        assert_eq!(runs[0].report.as_ref().and_then(|r| r.size_bytes), Some(2048));
    }
}
