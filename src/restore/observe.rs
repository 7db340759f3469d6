//! Observe: what the cluster says about one restore (its policy's backups of the source PVC, the
//! target PVC and who mounts it, the restore Job), as plain data for [`super::decide`].

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::{Api, ResourceExt};

use super::decide::{Candidate, ObservedTarget, RestoreObserved};
use super::{ANNOTATION_RESTORED_BY, render};
use crate::api::{BackupPolicy, BackupRestore, BackupStrategyKind, from_time};
use crate::context::Context;
use crate::runs::observed::ObservedRun;
use crate::error::Result;
use crate::runs::{self, backup_job, snapshot};
use crate::base::names::{LABEL_KIND, RunKind};
use crate::strategy::bindings::types::PvcInfo;

pub struct Observation {
    pub data: RestoreObserved,
    pub policy: Option<BackupPolicy>,
    pub source_pvc: Option<PersistentVolumeClaim>,
    pub target_pvc: Option<PersistentVolumeClaim>,
    /// The UID of the restore whose lock the target carries.
    pub lock_holder: Option<String>,
}

impl Observation {
    /// The target PVC as the planner sees it.
    pub fn target_info(&self) -> PvcInfo {
        match &self.target_pvc {
            Some(pvc) => crate::runs::request::pvc_info(pvc),
            None => PvcInfo {
                name: self.data.target.name.clone(),
                namespace: self.policy.as_ref().and_then(|p| p.namespace()).unwrap_or_default(),
                labels: Vec::new(),
                storage_class: None,
                capacity_bytes: None,
                access_modes: Vec::new(),
                volume_mode: crate::strategy::bindings::types::VolumeMode::Filesystem,
                node_name: None,
            },
        }
    }
}

/// A policy run as a restore candidate, with the policy's own view of whether it is verified.
pub fn candidate(namespace: &str, policy: &str, run: &ObservedRun) -> Candidate {
    let entry = crate::runs::observed::history_entry(namespace, policy, run);
    Candidate {
        run: run.name.clone(),
        destination: run.destination.clone(),
        object: run.object,
        scheduled: run.scheduled,
        status: run.status,
        verified: entry.verified,
        message: entry.message,
        artifact: run.artifact.clone(),
        artifact_path: entry.artifact,
        sha256: entry.sha256,
    }
}

pub async fn observe(restore: &BackupRestore, ctx: &Context, now: DateTime<Utc>) -> Result<Observation> {
    let ns = restore.namespace().unwrap_or_default();
    let spec = &restore.spec;
    let status = restore.status.clone().unwrap_or_default();
    let caches = ctx.caches().await?;
    let policy = Api::<BackupPolicy>::namespaced(ctx.client.clone(), &ns).get_opt(&spec.source.policy).await?;
    let pods = caches.pods_in(&ns);

    let mut candidates = Vec::new();
    if let Some(policy) = &policy {
        let uid = policy.uid().unwrap_or_default();
        let jobs = caches.jobs_of_policy(&ns, &uid);
        let mut found: Vec<ObservedRun> = jobs
            .iter()
            .filter(|j| j.labels().get(LABEL_KIND).map(String::as_str) == Some(RunKind::Backup.label()))
            .filter(|j| j.owner_references().iter().any(|o| o.uid == uid))
            .filter_map(backup_job::observe)
            .collect();
        backup_job::attach_pod_reports(&mut found, &pods);
        match caches.snapshots_of(&ns, &uid) {
            Some(snapshots) => found.extend(snapshots.iter().filter(|s| s.owner_references().iter().any(|o| o.uid == uid)).filter_map(snapshot::observe_one)),
            None if policy.spec.backup_strategy == BackupStrategyKind::Snapshot => found.extend(snapshot::observe(&ctx.client, &ns, &uid).await?),
            None => {}
        }
        candidates = found
            .iter()
            .filter(|r| r.pvc == spec.source.pvc)
            .filter(|r| spec.source.destination.as_ref().is_none_or(|d| &r.destination == d))
            .map(|r| candidate(&ns, &policy.name_any(), r))
            .collect();
    }
    let source_pvc = caches.pvc(&ns, &spec.source.pvc).map(|p| (*p).clone());
    let target_name = spec.target_name();
    let target_pvc = caches.pvc(&ns, &target_name).map(|p| (*p).clone());
    let uid = restore.uid().unwrap_or_default();
    let lock_holder = target_pvc.as_ref().and_then(|p| p.annotations().get(super::ANNOTATION_RESTORE_LOCK).cloned());
    // The lock of a restore that is gone or finished (its release failed, the operator stopped)
    // is free to take.
    let busy_with = lock_holder.as_ref().filter(|holder| **holder != uid).and_then(|holder| {
        caches
            .restores_in(&ns)
            .into_iter()
            .find(|r| r.uid().as_deref() == Some(holder.as_str()) && !r.status.as_ref().and_then(|s| s.phase).is_some_and(crate::api::RestorePhase::finished))
            .map(|r| r.name_any())
    });
    let target = ObservedTarget {
        name: target_name.clone(),
        create: spec.target.new_claim.is_some(),
        exists: target_pvc.is_some(),
        ours: target_pvc.as_ref().is_some_and(|p| p.annotations().get(ANNOTATION_RESTORED_BY) == Some(&uid)),
        bound: target_pvc.as_ref().and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Bound"),
        in_use_by: crate::runs::pod_mounting(&pods, &target_name, true).map(|p| p.name_any()),
        busy_with,
    };
    let job = caches.job(&ns, &render::job_name(restore));
    let job = job.filter(|j| j.labels().get(super::LABEL_RESTORE_UID) == Some(&uid)).map(|j| runs::observe_aux(&j, &pods));
    let job_stuck = job
        .as_ref()
        .filter(|j| matches!(j.status, crate::api::RunStatus::Pending | crate::api::RunStatus::Running))
        .and_then(|j| crate::runs::stuck::cause(&j.name, &pods, &[]));
    let data = RestoreObserved {
        now,
        spec: spec.clone(),
        phase: status.phase,
        started: status.start_time.as_ref().and_then(from_time),
        chosen: status.backup.clone(),
        policy_exists: policy.as_ref().is_some_and(|p| p.metadata.deletion_timestamp.is_none() || status.backup.is_some()),
        candidates,
        source_pvc_exists: source_pvc.is_some(),
        target,
        job,
        job_stuck,
        start_timeout_seconds: policy.as_ref().map_or(600, |p| p.spec.start_timeout_seconds),
    };
    Ok(Observation { data, policy, source_pvc, target_pvc, lock_holder })
}
