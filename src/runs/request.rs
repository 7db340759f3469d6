//! The policy and the PVC as a plan request shows them to a strategy plugin (WIT records).

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;

use crate::api::BackupPolicy;
use crate::runs::destination::{self, Destination};
use crate::strategy::bindings::types::{AccessMode, KeyValue, PolicyInfo, PvcInfo, VolumeMode};
use crate::strategy::resolve;

/// The policy as a planner sees it, for one run (or a restore) of one PVC to one destination.
pub fn policy_info(policy: &BackupPolicy, run: &str, scheduled: Option<DateTime<Utc>>, pvc: &str, destination: &Destination) -> PolicyInfo {
    let scheduled = scheduled.unwrap_or_else(Utc::now);
    let namespace = policy.namespace().unwrap_or_default();
    PolicyInfo {
        name: policy.name_any(),
        scheduled_time: scheduled.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        scheduled_stamp: scheduled.format("%Y%m%dt%H%M%Sz").to_string(),
        run_name: run.to_owned(),
        backup_image: policy.spec.backup_image.clone(),
        destination: destination::for_plan(destination, &namespace, &policy.name_any(), pvc),
        repository_password_env: policy.spec.restic.as_ref().map(|_| crate::base::names::REPOSITORY_PASSWORD_ENV.to_owned()),
        retention_count: policy.spec.retention_count,
        config: resolve::config(policy),
        namespace,
    }
}

/// A PVC as the planner sees it.
pub fn pvc_info(pvc: &PersistentVolumeClaim) -> PvcInfo {
    let spec = pvc.spec.clone().unwrap_or_default();
    let status = pvc.status.clone().unwrap_or_default();
    PvcInfo {
        name: pvc.name_any(),
        namespace: pvc.namespace().unwrap_or_default(),
        labels: pvc.labels().iter().map(|(k, v)| KeyValue { name: k.clone(), value: v.clone() }).collect(),
        storage_class: spec.storage_class_name.clone(),
        capacity_bytes: status.capacity.as_ref().and_then(|c| c.get("storage")).and_then(|q| crate::base::quantity::parse_bytes(&q.0)),
        access_modes: spec
            .access_modes
            .iter()
            .flatten()
            .filter_map(|m| match m.as_str() {
                "ReadWriteOnce" => Some(AccessMode::ReadWriteOnce),
                "ReadOnlyMany" => Some(AccessMode::ReadOnlyMany),
                "ReadWriteMany" => Some(AccessMode::ReadWriteMany),
                "ReadWriteOncePod" => Some(AccessMode::ReadWriteOncePod),
                _ => None,
            })
            .collect(),
        volume_mode: if spec.volume_mode.as_deref() == Some("Block") { VolumeMode::Block } else { VolumeMode::Filesystem },
        node_name: pvc.annotations().get("volume.kubernetes.io/selected-node").cloned(),
    }
}
