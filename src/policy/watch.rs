//! The policy controller's watches: which changes (of a policy, its Jobs, pods, PVCs, snapshots,
//! restores, plugin ConfigMaps) trigger which policy's reconcile.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use crate::api::BackupPolicy;
use crate::error::{Error, Retry};
use crate::policy::observe::{self};
use crate::runs::snapshot;
use crate::base::names::LABEL_POLICY_UID;
use crate::strategy::source;

use crate::context::Context;
use crate::platform::cache::{Caches, PolicyTriggers};
use super::reconcile::reconcile;

/// How often the plugin directory is checked for new versions.
const PLUGIN_DIR_POLL: Duration = Duration::from_secs(10);
/// When a run whose hooks found no free slot is tried again.
const HOOKS_BUSY_RETRY: Duration = Duration::from_secs(5);

/// Runs the policy controller until SIGTERM/SIGINT, on the shared caches (set in `ctx`) and
/// their change streams.
pub async fn run(ctx: Arc<Context>, caches: Caches, triggers: PolicyTriggers) {
    // Policies are watched untyped and parsed one by one in their reconcile: one object that does
    // not parse (written under a looser CRD, say) gets a status of its own instead of failing the
    // whole watch list, and every other policy keeps running. Only a new generation (a spec change,
    // a deletion) triggers a reconcile: the operator's own status writes do not.
    let policy_type = ApiResource::erase::<BackupPolicy>(&());
    let policies: Api<DynamicObject> = match &ctx.namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &policy_type),
        None => Api::all_with(ctx.client.clone(), &policy_type),
    };
    let writer = kube::runtime::reflector::store::Writer::new(policy_type.clone());
    let store = writer.as_reader();
    let policy_stream = crate::platform::watch_stream::without_errors(
        watcher(policies, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .predicate_filter(kube::runtime::predicates::generation, Default::default()),
        "BackupPolicy",
    );
    let config = kube::runtime::controller::Config::default().concurrency(ctx.reconcile_concurrency);
    let mut controller = Controller::for_stream_with(policy_stream, store.clone(), policy_type.clone())
        .with_config(config)
        .owns_shared_stream_with(triggers.jobs, ());
    // Snapshot readiness shows on the policy at once, like a Job's completion.
    if let Some(snapshots) = triggers.snapshots {
        let (snapshot_store, dyntype) = (store.clone(), policy_type.clone());
        controller = controller.watches_stream_with(
            crate::platform::watch_stream::without_errors(snapshots, "VolumeSnapshot"),
            move |snapshot| owner_of(&snapshot_store, &dyntype, snapshot.metadata.namespace.as_deref(), snapshot.labels()),
            snapshot::resource(),
        );
    }
    // A new plugin version in --plugin-dir: look at every policy again.
    if let Some(dir) = &ctx.plugin_dir {
        controller = controller.reconcile_all_on(source::watch_dir(dir.clone(), PLUGIN_DIR_POLL));
    }
    // Metrics of deleted policies go with them.
    let metrics_store = store.clone();
    let metrics_type = policy_type.clone();
    let metrics = ctx.metrics.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            metrics.retain_policies(|ns, name| metrics_store.get(&ObjectRef::new_with(name, metrics_type.clone()).within(ns)).is_some());
        }
    });
    let (pvc_store, pvc_type) = (store.clone(), policy_type.clone());
    let (pod_store, pod_type) = (store.clone(), policy_type.clone());
    let (restore_store, restore_type) = (store.clone(), policy_type.clone());
    let config_maps = ctx.metadata_watch::<ConfigMap>(watcher::Config::default());
    if let Some(restores) = triggers.restores {
        // A restore that starts or finishes holds or frees its policy's backup (retention).
        controller = controller.watches_shared_stream_with(
            restores,
            move |restore| {
                let name = restore.data.pointer("/spec/source/policy").and_then(|v| v.as_str())?;
                let policy = ObjectRef::new_with(name, restore_type.clone()).within(&restore.namespace().unwrap_or_default());
                restore_store.get(&policy).map(|_| policy)
            },
            crate::platform::cache::restore_resource(),
        );
    }
    let (event_store, event_type, event_jobs) = (store.clone(), policy_type.clone(), caches.jobs.clone());
    let policies = controller
        // A run whose pods are refused has no pod to watch: the Job controller's FailedCreate
        // event about its Job triggers the policy instead.
        .watches_shared_stream_with(
            triggers.failed_creates,
            move |event| {
                let job = event.involved_object.name.as_deref().zip(event.involved_object.namespace.as_deref()).and_then(|(name, ns)| event_jobs.get(&ObjectRef::new(name).within(ns)));
                job.and_then(|j| owner_of(&event_store, &event_type, j.metadata.namespace.as_deref(), j.labels()))
            },
            (),
        )
        // A run's pod that cannot start (an image error, a refusal, no node) changes only the pod,
        // not its Job: the runs' pods trigger their policy, so the cause shows at once.
        .watches_shared_stream_with(
            triggers.pods,
            move |pod| owner_of(&pod_store, &pod_type, pod.metadata.namespace.as_deref(), pod.labels()),
            (),
        )
        // A PVC appearing, binding or going away changes what the policies selecting it back up
        // (or, for their storage claim, whether they can).
        .watches_shared_stream_with(
            triggers.pvcs,
            move |pvc| {
                let ns = pvc.namespace();
                let (name, labels) = (pvc.name_any(), pvc.labels().clone());
                let dyntype = pvc_type.clone();
                pvc_store
                    .state()
                    .into_iter()
                    .filter(move |p| p.namespace() == ns && concerns_pvc(p, &name, &labels))
                    .map(move |p| ObjectRef::from_obj_with(&*p, dyntype.clone()))
            },
            (),
        )
        // A new plugin version in a ConfigMap is picked up at once.
        .watches_stream(config_maps, move |cm| {
            let (ns, name) = (cm.namespace(), cm.name_any());
            let dyntype = policy_type.clone();
            store
                .state()
                .into_iter()
                .filter(move |p| {
                    p.namespace() == ns && p.data.pointer("/spec/plugin/configMapRef/name").and_then(|v| v.as_str()) == Some(name.as_str())
                })
                .map(move |p| ObjectRef::from_obj_with(&*p, dyntype.clone()))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(policy = %obj, "reconciled"),
                Err(e) => tracing::warn!("reconcile: {e}"),
            }
        });
    policies.await;
}

/// The policy an object of a run belongs to (by the policy-uid label), if it is known. The
/// `backup-policy` label names it, so the policy is looked up directly and its uid checked; only a
/// name that does not fit a label (or a policy recreated under the same name) costs a scan.
pub(crate) fn owner_of(
    store: &kube::runtime::reflector::Store<DynamicObject>,
    dyntype: &ApiResource,
    namespace: Option<&str>,
    labels: &std::collections::BTreeMap<String, String>,
) -> Option<ObjectRef<DynamicObject>> {
    let uid = labels.get(LABEL_POLICY_UID)?;
    let is_it = |p: &DynamicObject| p.metadata.uid.as_deref() == Some(uid.as_str());
    if let (Some(ns), Some(name)) = (namespace, labels.get(crate::base::names::LABEL_POLICY)) {
        let named = ObjectRef::new_with(name, dyntype.clone()).within(ns);
        if store.get(&named).is_some_and(|p| is_it(&p)) {
            return Some(named);
        }
    }
    store.find(|p| is_it(p)).map(|p| ObjectRef::from_obj_with(&*p, dyntype.clone()))
}

/// Whether a PVC matters to a policy: its selector matches the PVC's labels, or it is one of the
/// policy's storage claims.
pub(crate) fn concerns_pvc(policy: &DynamicObject, pvc: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
    let storage = policy.data.pointer("/spec/backupStorageClaim").and_then(|v| v.as_str()).unwrap_or("backup-storage");
    if storage == pvc {
        return true;
    }
    let destinations = policy.data.pointer("/spec/destinations").and_then(|d| d.as_array());
    if destinations.is_some_and(|list| list.iter().any(|d| d.pointer("/claim/name").and_then(|n| n.as_str()) == Some(pvc))) {
        return true;
    }
    match policy.data.pointer("/spec/pvcSelector").map(|s| serde_json::from_value(s.clone())) {
        Some(Ok(selector)) => observe::selector_matches(&selector, labels),
        // A selector the operator cannot read: let the reconcile say so.
        _ => true,
    }
}

pub(crate) fn error_policy(policy: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
    let classified = error.classify();
    let backoff = match classified.retry {
        // Waiting for a hook slot is not a failure: back soon, and the backoff is not raised.
        Retry::Soon => {
            tracing::info!(policy = %policy.name_any(), reason = classified.reason, "{}", classified.message);
            return Action::requeue(HOOKS_BUSY_RETRY);
        }
        Retry::AwaitChange | Retry::Backoff => {
            let key = format!("{}/{}", policy.namespace().unwrap_or_default(), policy.name_any());
            let n = ctx.failures.lock().map(|mut f| {
                let n = f.entry(key).or_insert(0);
                *n += 1;
                *n
            });
            let attempt = n.unwrap_or(1).min(8);
            Duration::from_secs(2u64 << attempt).min(Duration::from_secs(300))
        }
    };
    tracing::warn!(policy = %policy.name_any(), error = %classified.message, reason = classified.reason, ?backoff, "reconcile failed");
    Action::requeue(backoff)
}
