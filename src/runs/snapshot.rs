//! The VolumeSnapshot of a run (snapshot.storage.k8s.io/v1): named after the run by the host,
//! observed as a run, deleted by retention (the CSI driver then frees its storage). The API comes
//! from the CSI external-snapshotter's CRDs; a cluster without them gets a clear error instead.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::report::Report;
use crate::base::names::{ANNOTATION_PLUGIN, ANNOTATION_POLICY, ANNOTATION_PVC, ANNOTATION_RESULT, ANNOTATION_RUN, ANNOTATION_SCHEDULED_TIME, LABEL_PVC, RunKind, labels, selector};
use crate::api::RunStatus;
use crate::runs::observed::{ObservedRun, RunObject};
use crate::error::{Error, Result};
use crate::strategy::bindings::types::SnapshotPlan;

pub fn resource() -> ApiResource {
    crate::base::names::volume_snapshot_resource()
}

fn api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource())
}

fn missing_api() -> Error {
    Error::SnapshotApiMissing
}

/// The policy's snapshots, as runs; none when the cluster has no VolumeSnapshot API.
pub async fn observe(client: &Client, namespace: &str, policy_uid: &str) -> Result<Vec<ObservedRun>> {
    match api(client, namespace).list(&ListParams::default().labels(&selector(policy_uid, RunKind::Backup))).await {
        Ok(list) => Ok(list
            .items
            .iter()
            .filter(|s| s.owner_references().iter().any(|o| o.uid == policy_uid))
            .filter_map(observe_one)
            .collect()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// A snapshot as a run: Succeeded once the snapshotter reports `readyToUse`, Failed with its error.
pub fn observe_one(snapshot: &DynamicObject) -> Option<ObservedRun> {
    let pvc = snapshot.annotations().get(ANNOTATION_PVC).or_else(|| snapshot.labels().get(LABEL_PVC))?.clone();
    let parse = |s: &str| DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc));
    let scheduled = snapshot.annotations().get(ANNOTATION_SCHEDULED_TIME).and_then(|s| parse(s));
    let status = snapshot.data.get("status");
    let ready = status.and_then(|s| s.get("readyToUse")).and_then(serde_json::Value::as_bool).unwrap_or(false);
    let error = status.and_then(|s| s.get("error")).and_then(|e| e.get("message")).and_then(serde_json::Value::as_str);
    let created = status.and_then(|s| s.get("creationTime")).and_then(serde_json::Value::as_str).and_then(parse);
    let (run_status, message) = match (ready, error) {
        (true, _) => (RunStatus::Succeeded, format!("snapshot {} is ready to use", snapshot.name_any())),
        (false, Some(e)) => (RunStatus::Failed, e.to_owned()),
        (false, None) if status.is_some() => (RunStatus::Running, String::new()),
        (false, None) => (RunStatus::Pending, String::new()),
    };
    let restore_size = status.and_then(|s| s.get("restoreSize")).and_then(serde_json::Value::as_str).and_then(crate::base::quantity::parse_bytes);
    Some(ObservedRun {
        name: snapshot.name_any(),
        object: RunObject::Snapshot,
        pvc,
        // Snapshots stay in the cluster: a snapshot policy has no destinations.
        destination: String::new(),
        scheduled,
        status: run_status,
        start: snapshot.metadata.creation_timestamp.as_ref().and_then(crate::api::from_time),
        completion: if ready { created.or(scheduled) } else { None },
        reason: (run_status == RunStatus::Failed).then(|| "SnapshotFailed".to_owned()),
        message: crate::base::text::bound(&message, super::report::MAX_MESSAGE_BYTES),
        plugin: snapshot.annotations().get(ANNOTATION_PLUGIN).cloned(),
        artifact: Some(snapshot.name_any()),
        report: Some(Report { size_bytes: restore_size, verified: ready.then_some(true), ..Report::default() }),
        recorded: snapshot.annotations().contains_key(ANNOTATION_RESULT),
        verifies: true,
        verify: None,
        stuck: None,
        // Snapshots are no Jobs: `kubectl get jobs` never lists them.
        listed: false,
        hooks: None,
        pending_notifications: super::pending_notifications(snapshot.annotations()),
    })
}

pub struct SnapshotContext<'a> {
    pub namespace: &'a str,
    pub policy: &'a str,
    pub policy_uid: &'a str,
    /// The run's name, which the snapshot takes.
    pub run: &'a str,
    pub pvc: &'a str,
    pub scheduled_time: &'a str,
    pub plugin: &'a str,
    pub owner: Option<OwnerReference>,
}

/// The VolumeSnapshot for a checked plan: named after the run, the plan's class and extra labels,
/// plus the policy's labels, the run's annotations and the owner reference, which the host sets.
pub fn render(ctx: &SnapshotContext<'_>, plan: &SnapshotPlan) -> serde_json::Value {
    let mut labels_: BTreeMap<String, String> = plan.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
    labels_.extend(labels(ctx.policy, ctx.policy_uid, Some(ctx.pvc), RunKind::Backup));
    let labels = labels_;
    let mut spec = serde_json::json!({"source": {"persistentVolumeClaimName": ctx.pvc}});
    if let Some(class) = &plan.snapshot_class {
        spec["volumeSnapshotClassName"] = serde_json::json!(class);
    }
    serde_json::json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {
            "name": ctx.run,
            "namespace": ctx.namespace,
            "labels": labels,
            "annotations": {
                ANNOTATION_RUN: ctx.run, ANNOTATION_POLICY: ctx.policy, ANNOTATION_PVC: ctx.pvc,
                ANNOTATION_SCHEDULED_TIME: ctx.scheduled_time, ANNOTATION_PLUGIN: ctx.plugin,
            },
            "ownerReferences": ctx.owner.iter().collect::<Vec<_>>(),
        },
        "spec": spec,
    })
}

pub async fn apply(client: &Client, namespace: &str, name: &str, snapshot: &serde_json::Value, field_manager: &str) -> Result<()> {
    match api(client, namespace).patch(name, &PatchParams::apply(field_manager), &Patch::Apply(snapshot)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(missing_api()),
        Err(e) => Err(crate::error::Error::creating(format!("VolumeSnapshot {name}"), e)),
    }
}

/// Records a finished snapshot once (the host's own annotation, merged), and the notifications of
/// it still to be delivered.
pub async fn record(client: &Client, namespace: &str, name: &str, pending: &[crate::api::NotificationEvent]) -> Result<()> {
    let mut annotations = super::pending_annotations(pending);
    annotations.insert(ANNOTATION_RESULT.to_owned(), "{}".to_owned());
    let patch = serde_json::json!({"metadata": {"annotations": annotations}});
    match api(client, namespace).patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a snapshot that retention dropped; the CSI driver then frees its storage (with a
/// `Delete` deletion policy on the class).
pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<()> {
    match api(client, namespace).delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::bindings::types::KeyValue;

    fn snapshot(status: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": "s", "labels": {"pvc": "data-0", "backup-policy": "p"},
                         "annotations": {ANNOTATION_SCHEDULED_TIME: "2026-11-29T01:00:00Z"}},
            "spec": {}, "status": status
        }))
        .expect("snapshot")
    }

    #[test]
    fn snapshot_states() {
        let cases = [
            (serde_json::json!({"readyToUse": true, "creationTime": "2026-11-29T01:00:02Z", "restoreSize": "1Gi"}), RunStatus::Succeeded),
            (serde_json::json!({"readyToUse": false, "error": {"message": "driver said no"}}), RunStatus::Failed),
            (serde_json::json!({"readyToUse": false}), RunStatus::Running),
            (serde_json::Value::Null, RunStatus::Pending),
        ];
        for (status, want) in cases {
            let mut s = snapshot(status.clone());
            if status.is_null() {
                s.data.as_object_mut().expect("object").remove("status");
            }
            let run = observe_one(&s).expect("run");
            assert_eq!(run.status, want, "{status}");
            assert_eq!(run.pvc, "data-0");
        }
        let failed = observe_one(&snapshot(serde_json::json!({"error": {"message": "driver said no"}}))).expect("run");
        assert_eq!(failed.message, "driver said no");
        let ready = observe_one(&snapshot(serde_json::json!({"readyToUse": true, "restoreSize": "1Gi"}))).expect("run");
        assert_eq!(ready.report.and_then(|r| r.size_bytes), Some(1 << 30), "restoreSize is on the record");
    }

    #[test]
    fn rendering_adds_the_policy_labels_and_class() {
        let ctx = SnapshotContext {
            namespace: "prod", policy: "p", policy_uid: "uid-1", run: "p-data-0-29401234", pvc: "data-0",
            scheduled_time: "2026-11-29T01:00:00Z", plugin: "snapshot@x", owner: None,
        };
        let plan = SnapshotPlan { snapshot_class: Some("csi".into()), labels: vec![KeyValue { name: "team".into(), value: "db".into() }] };
        let v = render(&ctx, &plan);
        assert_eq!(v["metadata"]["name"], "p-data-0-29401234", "the host names the snapshot after the run");
        assert_eq!(v["metadata"]["labels"]["backup.example.com/policy-uid"], "uid-1");
        assert_eq!(v["spec"]["source"]["persistentVolumeClaimName"], "data-0");
        assert_eq!(v["spec"]["volumeSnapshotClassName"], "csi");
        assert_eq!(v["metadata"]["labels"]["backup-policy"], "p");
        assert_eq!(v["metadata"]["labels"]["team"], "db");
        let no_class = render(&ctx, &SnapshotPlan { snapshot_class: None, ..plan });
        assert!(no_class["spec"].get("volumeSnapshotClassName").is_none());
    }
}
