//! Renders a restore's objects: the restore Job (from a checked plan) and the PVC it creates.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, TypedLocalObjectReference, VolumeResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::{ANNOTATION_RESTORED_BY, LABEL_RESTORE, LABEL_RESTORE_UID};
use crate::api::restore::RestoredBackup;
use crate::api::{BackupPolicy, BackupRestore};
use crate::base::names::{ANNOTATION_PLUGIN, ANNOTATION_POLICY, ANNOTATION_PVC, ANNOTATION_RUN, LABEL_KIND, RunKind};
use crate::strategy::bindings::types::JobPlan;


pub fn job_name(restore: &BackupRestore) -> String {
    crate::base::names::child_name(&restore.name_any(), "restore")
}

pub struct RestoreJob<'a> {
    pub restore: &'a BackupRestore,
    pub policy: &'a BackupPolicy,
    pub backup: &'a RestoredBackup,
    pub target: &'a str,
    pub name: &'a str,
    pub plugin: &'a str,
    /// The backup's destination, as its Jobs get it.
    pub access: &'a crate::runs::destination::Access,
}

fn labels(restore: &BackupRestore) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_KIND.to_owned(), RunKind::Restore.label().to_owned()),
        (LABEL_RESTORE_UID.to_owned(), restore.uid().unwrap_or_default()),
        (LABEL_RESTORE.to_owned(), crate::base::names::label_value(&restore.name_any())),
    ])
}

/// The restore Job: the target mounted as `data` (writable, only here), the source PVC's own
/// directory of the storage claim as `backup` (read-only: a restore never changes a backup), one
/// try, owned by the BackupRestore.
pub fn job(r: &RestoreJob<'_>, plan: &JobPlan) -> Job {
    let ns = r.restore.namespace().unwrap_or_default();
    let source = &r.restore.spec.source;
    let ctx = crate::runs::render::JobContext {
        name: r.name.to_owned(),
        namespace: ns.clone(),
        labels: labels(r.restore),
        annotations: BTreeMap::from([
            (ANNOTATION_RUN.to_owned(), r.backup.run_name.clone()),
            (ANNOTATION_POLICY.to_owned(), source.policy.clone()),
            (ANNOTATION_PVC.to_owned(), r.target.to_owned()),
            (ANNOTATION_PLUGIN.to_owned(), r.plugin.to_owned()),
        ]),
        data_claim: r.target.to_owned(),
        storage_claim: r.access.storage_claim.clone(),
        secret_env: r.access.env.clone(),
        ca_bundle: r.access.ca_bundle.clone(),
        backup_sub_path: crate::base::names::storage_dir(&ns, &source.policy, &source.pvc),
        owner: r.restore.controller_owner_ref(&()),
        backoff_limit: 0,
        active_deadline_seconds: Some(r.restore.spec.active_deadline_seconds),
        data_writable: true,
        backup_writable: false,
        node: None,
        run_as: r.policy.spec.pod_security_context.clone(),
    };
    crate::runs::render::render_job(&ctx, plan)
}

/// The new PVC: the source PVC's size, access modes, volume mode and class, empty or from the
/// VolumeSnapshot. It is not owned by the restore, so deleting the restore keeps the data; the
/// annotation says which restore made it.
pub fn claim(restore: &BackupRestore, source: Option<&PersistentVolumeClaim>, from_snapshot: Option<&str>) -> PersistentVolumeClaim {
    let new = restore.spec.target.new_claim.clone();
    let source_spec = source.and_then(|p| p.spec.clone()).unwrap_or_default();
    let mut labels = new.as_ref().map(|n| n.labels.clone()).unwrap_or_default();
    labels.insert(LABEL_RESTORE.to_owned(), crate::base::names::label_value(&restore.name_any()));
    let mut requests = source_spec.resources.as_ref().and_then(|r| r.requests.clone()).unwrap_or_default();
    // A snapshot restored without its source PVC: the provisioner sizes it from the snapshot.
    if requests.is_empty() {
        requests.insert("storage".into(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into()));
    }
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(restore.spec.target_name()),
            namespace: restore.namespace(),
            labels: Some(labels),
            // Created locked by the restore that fills it.
            annotations: Some(BTreeMap::from([
                (ANNOTATION_RESTORED_BY.to_owned(), restore.uid().unwrap_or_default()),
                (super::ANNOTATION_RESTORE_LOCK.to_owned(), restore.uid().unwrap_or_default()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: source_spec.access_modes.clone().or_else(|| Some(vec!["ReadWriteOnce".into()])),
            resources: Some(VolumeResourceRequirements { requests: Some(requests), limits: None }),
            storage_class_name: new.and_then(|n| n.storage_class_name).or(source_spec.storage_class_name.clone()),
            volume_mode: source_spec.volume_mode.clone(),
            data_source: from_snapshot.map(|name| TypedLocalObjectReference {
                api_group: Some("snapshot.storage.k8s.io".into()),
                kind: "VolumeSnapshot".into(),
                name: name.to_owned(),
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BackupRestoreSpec;
    use crate::api::restore::{NewClaim, RestoreSource, RestoreTarget};
    use crate::strategy::bindings::types::{Mount, PodPrivileges, Resources, Verification};

    fn restore(target: RestoreTarget) -> BackupRestore {
        let mut r = BackupRestore::new(
            "restore-db",
            BackupRestoreSpec {
                source: RestoreSource { policy: "db".into(), pvc: "data-db-0".into(), run_name: None, scheduled_time: None, destination: None },
                target,
                allow_in_use: false,
                allow_unverified: false,
                service_account_name: None,
                active_deadline_seconds: 600,
            },
        );
        r.metadata.namespace = Some("team".into());
        r.metadata.uid = Some("uid-r".into());
        r
    }

    fn policy() -> BackupPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "backup.example.com/v1alpha1", "kind": "BackupPolicy",
            "metadata": {"name": "db", "namespace": "team", "uid": "uid-p"},
            "spec": {"schedule": "* * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}}
        }))
        .expect("policy")
    }

    #[test]
    fn the_restore_job_writes_only_the_target_and_reads_only_the_source_directory() {
        let r = restore(RestoreTarget { claim_name: Some("copy".into()), new_claim: None });
        let p = policy();
        let backup = RestoredBackup { policy: "db".into(), run_name: "db-data-db-0-1".into(), destination: None, artifact: None, sha256: None, scheduled_time: None, verified: true };
        let plan = JobPlan {
            image: "busybox:latest".into(),
            command: vec!["sh".into()],
            args: vec![],
            env: vec![],
            mounts: vec![
                Mount { volume: "data".into(), path: "/data".into(), read_only: false },
                Mount { volume: "backup".into(), path: "/backup".into(), read_only: false },
            ],
            resources: Resources { cpu_millicores: None, memory_bytes: None },
            privileges: PodPrivileges { privileged: false, add_capabilities: vec![], host_network: false, host_pid: false, host_ipc: false, automount_service_account_token: false, host_paths: vec![], run_as_root: true },
            artifact_location: "1.tar.gz".into(),
            verification: Verification::None,
        };
        let job = job(&RestoreJob { restore: &r, policy: &p, backup: &backup, target: "copy", name: "restore-db-restore", plugin: "tar@x", access: &crate::runs::destination::access(&p.spec, &crate::runs::destination::of(&p.spec)[0]) }, &plan);
        let pod = job.spec.as_ref().and_then(|s| s.template.spec.clone()).expect("pod");
        let mounts = pod.containers[0].volume_mounts.clone().unwrap_or_default();
        let mount = |n: &str| mounts.iter().find(|m| m.name == n).cloned().expect("mount");
        assert_eq!(mount("data").read_only, Some(false));
        assert_eq!(mount("backup").read_only, Some(true));
        assert_eq!(mount("backup").sub_path.as_deref(), Some("team/db/data-db-0"));
        let volumes = pod.volumes.unwrap_or_default();
        let claim_of = |n: &str| volumes.iter().find(|v| v.name == n).and_then(|v| v.persistent_volume_claim.clone()).expect("volume");
        assert_eq!(claim_of("data").claim_name, "copy");
        assert_eq!(claim_of("backup").read_only, Some(true));
        let labels = job.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[LABEL_KIND], "restore");
        assert!(!labels.contains_key(crate::base::names::LABEL_POLICY_UID), "the policy's retention must not see restore Jobs as runs");
        assert_eq!(job.metadata.owner_references.unwrap_or_default()[0].uid, "uid-r");
    }

    #[test]
    fn a_new_claim_copies_the_source_shape_but_not_its_labels_or_owner() {
        let new = NewClaim { name: "copy".into(), storage_class_name: None, labels: BTreeMap::from([("app".into(), "copy".into())]) };
        let r = restore(RestoreTarget { claim_name: None, new_claim: Some(new) });
        let source: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data-db-0", "labels": {"app": "db"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "64Mi"}}}
        }))
        .expect("pvc");
        let claim = claim(&r, Some(&source), Some("snap-1"));
        assert_eq!(claim.metadata.name.as_deref(), Some("copy"));
        assert_eq!(claim.metadata.labels.clone().unwrap_or_default().get("app").map(String::as_str), Some("copy"));
        assert!(claim.metadata.owner_references.is_none());
        let spec = claim.spec.expect("spec");
        assert_eq!(spec.storage_class_name.as_deref(), Some("standard"));
        assert_eq!(spec.resources.and_then(|r| r.requests).unwrap_or_default()["storage"].0, "64Mi");
        assert_eq!(spec.data_source.map(|d| (d.kind, d.name)), Some(("VolumeSnapshot".into(), "snap-1".into())));
    }
}
