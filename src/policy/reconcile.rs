//! The BackupPolicy controller: watches, and the orchestration of one reconcile. Observe
//! ([`crate::observe`]) → decide ([`crate::decide`], pure) → apply: plan each new run through its
//! strategy plugin, several PVCs at a time, and create, record, prune and verify the run objects
//! ([`crate::runs`]) → write the status ([`crate::status`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::core::PartialObjectMeta;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use crate::api::{BackupPolicy, NotificationEvent, RunStatus};
use crate::decide::{self, Decision, Finalize, NewRun, ObservedRun, PruneStep, RunObject};
use crate::destination::{self, Destination};
use crate::error::{Error, MAX_MESSAGE_BYTES, Result, Retry};
use crate::observe::{self, FINALIZER, Observation};
use crate::runs::{self, LABEL_POLICY_UID, RunChild, RunKind, backup_job, cleanup_job, prune_job, snapshot, verify_job};
use crate::status::{self, Summary};
use crate::strategy::bindings::types::{ArtifactRequest, BackupRequest, Plan, PolicyInfo, PvcInfo, VolumeMode};
use crate::strategy::source;
use crate::strategy::{Plugin, StrategyRuntime, resolve};

pub const FIELD_MANAGER: &str = "backup-operator";
/// Runs of one policy created at once (per reconcile), within the limit all reconciles share:
/// one policy over N PVCs gets its Jobs as fast as N policies.
const RUN_CREATION_CONCURRENCY: usize = crate::runs_first::IN_FLIGHT_LIMIT;
/// How often the plugin directory is checked for new versions.
const PLUGIN_DIR_POLL: Duration = Duration::from_secs(10);
/// Hooks running at once by default, in all and in one namespace (`--hook-concurrency`,
/// `--hook-concurrency-per-namespace`).
pub const DEFAULT_HOOK_CONCURRENCY: u16 = 16;
pub const DEFAULT_HOOK_CONCURRENCY_PER_NAMESPACE: u16 = 4;
/// When a run whose hooks found no free slot is tried again.
const HOOKS_BUSY_RETRY: Duration = Duration::from_secs(5);

pub struct Context {
    pub client: Client,
    pub runtime: StrategyRuntime,
    pub plugin_dir: Option<PathBuf>,
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Whether the cluster serves the VolumeSnapshot API (looked up at start).
    pub snapshots_api: bool,
    /// Whether the BackupRestore CRD is installed (looked up at start; restores need it).
    pub restores_api: bool,
    /// Reconciles running at once (per controller).
    pub reconcile_concurrency: u16,
    /// The watched objects reconciles read (set when the controllers start).
    pub caches: std::sync::OnceLock<crate::cache::Caches>,
    events: crate::events::Publisher,
    failures: Mutex<HashMap<String, u32>>,
    /// Writes the policies' statuses (and shows them until the store does).
    statuses: crate::status_writer::StatusWriter,
    /// Delivers the policies' webhook notifications in the background.
    notifier: crate::notify::Notifier,
    /// Run creations go before the background writes.
    runs_first: crate::runs_first::RunsFirst,
    /// Hooks running at once, in all and per namespace.
    hook_slots: crate::hook_slots::HookSlots,
    /// Whose rights the operator acts with for a tenant's objects.
    pub tenancy: crate::tenancy::Tenancy,
    /// Configs a custom plugin's validate-config rejected, by policy (namespace/name): the
    /// policy's generation and the plugin's digest it was rejected for, and the error. Such a
    /// policy is not planned again until one of them changes.
    rejected_configs: Mutex<HashMap<String, (Option<i64>, String, Error)>>,
}

/// Policies whose rejected config is remembered, at most (past it the memory starts over).
const REJECTED_CONFIGS_KEPT: usize = 4096;

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        runtime: StrategyRuntime,
        plugin_dir: Option<PathBuf>,
        namespace: Option<String>,
        snapshots_api: bool,
        restores_api: bool,
        reconcile_concurrency: u16,
    ) -> Self {
        let runs_first = crate::runs_first::RunsFirst::default();
        let events = crate::events::Publisher::start(client.clone(), FIELD_MANAGER, runs_first.clone());
        let statuses = crate::status_writer::StatusWriter::start(client.clone(), events.clone(), runs_first.clone());
        let notifier = crate::notify::Notifier::start(client.clone(), events.clone(), crate::notify::Config::default());
        Context {
            client,
            runtime,
            plugin_dir,
            namespace,
            snapshots_api,
            restores_api,
            reconcile_concurrency,
            caches: std::sync::OnceLock::new(),
            events,
            failures: Mutex::default(),
            statuses,
            notifier,
            runs_first,
            hook_slots: crate::hook_slots::HookSlots::new(crate::hook_slots::HookLimits::within(
                usize::from(DEFAULT_HOOK_CONCURRENCY),
                usize::from(DEFAULT_HOOK_CONCURRENCY_PER_NAMESPACE),
                usize::from(reconcile_concurrency),
            )),
            tenancy: crate::tenancy::Tenancy::Operator,
            rejected_configs: Mutex::default(),
        }
    }

    /// The remembered rejection of this policy's config by this plugin, if neither changed since.
    fn rejected_config(&self, key: &str, generation: Option<i64>, digest: &str) -> Option<Error> {
        let rejected = self.rejected_configs.lock().ok()?;
        rejected.get(key).filter(|(g, d, _)| *g == generation && d == digest).map(|(_, _, e)| e.duplicate())
    }

    fn remember_rejected_config(&self, key: String, generation: Option<i64>, digest: String, error: &Error) {
        if let Ok(mut rejected) = self.rejected_configs.lock() {
            if rejected.len() >= REJECTED_CONFIGS_KEPT {
                rejected.clear();
            }
            rejected.insert(key, (generation, digest, error.duplicate()));
        }
    }

    /// Acts for tenants as `tenancy` says (default: with the operator's own rights).
    pub fn with_tenancy(mut self, tenancy: crate::tenancy::Tenancy) -> Self {
        self.tenancy = tenancy;
        self
    }

    /// Runs at most `total` hooks at once, `per_namespace` in one namespace (both kept below the
    /// reconcile workers).
    pub fn with_hook_concurrency(mut self, total: usize, per_namespace: usize) -> Self {
        let limits = crate::hook_slots::HookLimits::within(total, per_namespace, usize::from(self.reconcile_concurrency));
        self.hook_slots = crate::hook_slots::HookSlots::new(limits);
        self
    }

    /// Delivers notifications with `config` (address rules, timeouts, attempts).
    pub fn with_notifications(mut self, config: crate::notify::Config) -> Self {
        self.notifier = crate::notify::Notifier::start(self.client.clone(), self.events.clone(), config);
        self
    }

    /// The watched objects (set, with every store listed once, before the controllers start).
    pub async fn caches(&self) -> Result<&crate::cache::Caches> {
        self.caches.get().ok_or_else(|| Error::Runtime("the watches have not started".into()))
    }

    /// Queues an event about an object (bounded note) for publishing in the background; a failure
    /// to publish is only logged.
    pub fn publish(&self, reference: &ObjectReference, type_: EventType, reason: &str, note: String) {
        self.events.publish(reference, type_, reason, note);
    }

    /// A watch of only the objects' metadata, retried with backoff.
    pub fn metadata_watch<K>(&self, config: watcher::Config) -> impl futures::Stream<Item = std::result::Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
        K::DynamicType: Default + Clone + Eq + std::hash::Hash + Send + Sync,
    {
        let api: Api<PartialObjectMeta<K>> = match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        crate::watch_stream::without_errors(watcher(api, config).default_backoff().touched_objects(), "ConfigMap")
    }
}


/// Whether the BackupRestore CRD is installed.
pub async fn has_restore_api(client: &Client) -> bool {
    client.list_api_group_resources("backup.example.com/v1alpha1").await.is_ok_and(|r| r.resources.iter().any(|r| r.name == "backuprestores"))
}

/// Whether the cluster serves snapshot.storage.k8s.io/v1 VolumeSnapshots.
pub async fn has_snapshot_api(client: &Client) -> bool {
    client.list_api_group_resources("snapshot.storage.k8s.io/v1").await.is_ok_and(|r| r.resources.iter().any(|r| r.name == "volumesnapshots"))
}

/// Runs the controllers until SIGTERM/SIGINT. Every watch retries with backoff: an API that goes
/// away (a CRD deleted) is retried calmly, never in a hot loop. Fails only when the watches cannot
/// start, so that the process exits with an error and is restarted.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    // One watch per kind of object, shared by the stores reconciles read and the triggers below.
    let (caches, triggers) = crate::cache::start(&ctx.client, ctx.namespace.as_deref(), ctx.snapshots_api, ctx.restores_api)?;
    caches.ready().await?;
    let _ = ctx.caches.set(caches.clone());
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
    let policy_stream = crate::watch_stream::without_errors(
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
        .owns_shared_stream_with(triggers.policy_jobs, ());
    // Snapshot readiness shows on the policy at once, like a Job's completion.
    if let Some(snapshots) = triggers.snapshots {
        let (snapshot_store, dyntype) = (store.clone(), policy_type.clone());
        controller = controller.watches_stream_with(
            crate::watch_stream::without_errors(snapshots, "VolumeSnapshot"),
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
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            crate::metrics::get().retain_policies(|ns, name| metrics_store.get(&ObjectRef::new_with(name, metrics_type.clone()).within(ns)).is_some());
        }
    });
    let (pvc_store, pvc_type) = (store.clone(), policy_type.clone());
    let (pod_store, pod_type) = (store.clone(), policy_type.clone());
    let (restore_store, restore_type) = (store.clone(), policy_type.clone());
    let config_maps = ctx.metadata_watch::<ConfigMap>(watcher::Config::default());
    let (restores_trigger, restores_main) = match triggers.restores {
        Some((trigger, main)) => (Some(trigger), Some(main)),
        None => (None, None),
    };
    if let Some(restores) = restores_trigger {
        // A restore that starts or finishes holds or frees its policy's backup (retention).
        controller = controller.watches_shared_stream_with(
            restores,
            move |restore| {
                let name = restore.data.pointer("/spec/source/policy").and_then(|v| v.as_str())?;
                let policy = ObjectRef::new_with(name, restore_type.clone()).within(&restore.namespace().unwrap_or_default());
                restore_store.get(&policy).map(|_| policy)
            },
            crate::cache::restore_resource(),
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
    match restores_main {
        Some(main) => {
            futures::join!(policies, crate::restore::run(ctx.clone(), triggers.restore_jobs, main));
        }
        None => {
            tracing::warn!("the BackupRestore CRD is not installed: restores are off until it is (kubectl apply -k config/crd) and the operator restarts");
            // The restore Jobs' watch is shared: keep it drained.
            tokio::spawn(triggers.restore_jobs.for_each(|_| async {}));
            policies.await;
        }
    }
    Ok(())
}

/// The policy an object of a run belongs to (by the policy-uid label), if it is known. The
/// `backup-policy` label names it, so the policy is looked up directly and its uid checked; only a
/// name that does not fit a label (or a policy recreated under the same name) costs a scan.
fn owner_of(
    store: &kube::runtime::reflector::Store<DynamicObject>,
    dyntype: &ApiResource,
    namespace: Option<&str>,
    labels: &std::collections::BTreeMap<String, String>,
) -> Option<ObjectRef<DynamicObject>> {
    let uid = labels.get(LABEL_POLICY_UID)?;
    let is_it = |p: &DynamicObject| p.metadata.uid.as_deref() == Some(uid.as_str());
    if let (Some(ns), Some(name)) = (namespace, labels.get(crate::runs::LABEL_POLICY)) {
        let named = ObjectRef::new_with(name, dyntype.clone()).within(ns);
        if store.get(&named).is_some_and(|p| is_it(&p)) {
            return Some(named);
        }
    }
    store.find(|p| is_it(p)).map(|p| ObjectRef::from_obj_with(&*p, dyntype.clone()))
}

/// Whether a PVC matters to a policy: its selector matches the PVC's labels, or it is one of the
/// policy's storage claims.
fn concerns_pvc(policy: &DynamicObject, pvc: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
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

fn error_policy(policy: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
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

/// What one reconcile is about: the policy and the names its objects use.
struct Target<'a> {
    policy: &'a BackupPolicy,
    ctx: &'a Context,
    /// Acts for the policy: the operator's client, or its ServiceAccount's with
    /// --tenant-impersonation (hooks, the Secrets and ConfigMaps it names, its Jobs).
    tenant: kube::Client,
    ns: String,
    name: String,
    uid: String,
    reference: ObjectReference,
    /// The reconcile's events, published together at its end (see [`Target::publish_events`]).
    events: Mutex<Vec<(EventType, String, String)>>,
}

impl Target<'_> {
    /// Hands a notification about `run` (or, without one, about `pvc` and `scheduled`) to the
    /// notifier, when a target of the policy wants `event`; never waits. A run's recorded outcome
    /// carries a pending mark for it, which the notifier removes when every target is done.
    fn notify(&self, event: NotificationEvent, run: Option<&ObservedRun>, pvc: Option<&str>, scheduled: Option<chrono::DateTime<Utc>>, message: String) {
        let mark = run.filter(|r| r.pending_notifications.contains(&event)).and_then(|r| {
            let resource = match r.object {
                RunObject::Job => ApiResource::erase::<k8s_openapi::api::batch::v1::Job>(&()),
                RunObject::Snapshot => crate::runs::snapshot::resource(),
                RunObject::NotStarted => return None,
            };
            let annotation = crate::runs::pending_annotations(&[event]).into_keys().next()?;
            Some(crate::notify::PendingMark { resource, namespace: self.ns.clone(), name: r.name.clone(), annotation })
        });
        if mark.is_none() && !self.wants(event) {
            return;
        }
        let report = run.and_then(|r| r.report.as_ref());
        let notification = crate::notify::Notification {
            event,
            namespace: self.ns.clone(),
            policy: self.name.clone(),
            pvc: run.map(|r| r.pvc.clone()).or_else(|| pvc.map(str::to_owned)),
            destination: run.map(|r| r.destination.clone()),
            run: run.map(|r| r.name.clone()),
            scheduled_time: run.and_then(|r| r.scheduled).or(scheduled),
            time: Utc::now(),
            message,
            artifact: run.and_then(|r| r.artifact.clone()),
            size_bytes: report.and_then(|r| r.size_bytes),
            sha256: report.and_then(|r| r.sha256.clone()),
        };
        self.ctx.notifier.notify(self.policy, &self.tenant, &notification, mark);
    }

    /// Whether a target of the policy wants notifications of `event`.
    fn wants(&self, event: NotificationEvent) -> bool {
        self.policy.spec.notifications.iter().any(|n| n.events.contains(&event))
    }

    /// Queues an event of the policy for the end of the reconcile.
    fn event(&self, type_: EventType, reason: &str, note: String) {
        if let Ok(mut events) = self.events.lock() {
            events.push((type_, reason.to_owned(), note));
        }
    }

    /// One event per type and reason of this reconcile: a run of 1,000 PVCs is one `RunStarted`
    /// event naming them (as many as fit), not 1,000 requests.
    fn publish_events(&self) {
        let queued = self.events.lock().map(|mut e| std::mem::take(&mut *e)).unwrap_or_default();
        for (type_, reason, note) in crate::events::group(queued, MAX_MESSAGE_BYTES) {
            self.ctx.publish(&self.reference, type_, &reason, note);
        }
    }

    fn policy_info(&self, run: &str, scheduled: Option<DateTime<Utc>>, pvc: &str, destination: &Destination) -> PolicyInfo {
        policy_info(self.policy, run, scheduled, pvc, destination)
    }

    /// The destination a run of this policy writes to, by name (its label).
    fn destination(&self, name: &str) -> Result<Destination> {
        destination::find(&self.policy.spec, name)
            .ok_or_else(|| Error::InvalidSpec(format!("destination {name:?} is no longer in spec.destinations")))
    }
}

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
        repository_password_env: policy.spec.restic.as_ref().map(|_| destination::REPOSITORY_PASSWORD_ENV.to_owned()),
        retention_count: policy.spec.retention_count,
        config: resolve::config(policy),
        namespace,
    }
}

/// One reconcile of a policy, timed and counted (with the reason of an error).
#[tracing::instrument(skip_all, fields(namespace = %object.namespace().unwrap_or_default(), policy = %object.name_any()))]
async fn reconcile(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile_object(object, ctx).await;
    crate::metrics::get().reconciled("backuppolicy", started.elapsed(), result.as_ref().err().map(|e| e.classify().reason));
    result
}

/// Parses the policy, or says on the object itself why it cannot be read.
async fn reconcile_object(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let parsed = serde_json::to_value(&*object).and_then(serde_json::from_value::<BackupPolicy>);
    match parsed {
        Ok(policy) => reconcile_policy(Arc::new(policy), ctx).await,
        Err(e) => {
            unreadable(&object, &ctx, &e.to_string()).await?;
            Ok(Action::await_change())
        }
    }
}

/// A policy the operator cannot parse: `Ready=False InvalidSpec` with the parser's words, and a
/// Warning event; nothing else is done for it until its spec changes.
async fn unreadable(object: &DynamicObject, ctx: &Context, problem: &str) -> Result<()> {
    let now = Utc::now();
    let name = object.name_any();
    let message = format!("the operator cannot read this policy's spec ({problem}); fix the spec (for example a number out of range)");
    tracing::warn!(policy = %name, "{message}");
    let mut conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> =
        object.data.pointer("/status/conditions").and_then(|c| serde_json::from_value(c.clone()).ok()).unwrap_or_default();
    let generation = object.metadata.generation;
    status::set_condition(&mut conditions, "Ready", false, "InvalidSpec", message.clone(), generation, now);
    let resource = ApiResource::erase::<BackupPolicy>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &object.namespace().unwrap_or_default(), &resource);
    let patch = serde_json::json!({
        "apiVersion": resource.api_version, "kind": resource.kind,
        "status": {"conditions": conditions, "observedGeneration": generation},
    });
    let reference = object.object_ref(&resource);
    ctx.publish(&reference, EventType::Warning, "InvalidSpec", message.clone());
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await?;
    Ok(())
}

async fn reconcile_policy(policy: Arc<BackupPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let policy = ctx.statuses.current(policy);
    let ns = policy.namespace().unwrap_or_default();
    let tenant = ctx.tenancy.client(&ctx.client, &ns, policy.spec.service_account_name.as_deref())?;
    let target = Target {
        policy: &policy,
        ctx: &ctx,
        tenant,
        ns: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
        uid: policy.uid().unwrap_or_default(),
        reference: policy.object_ref(&()),
        events: Mutex::default(),
    };
    let result = reconcile_target(&target, &policy, &ctx).await;
    target.publish_events();
    result
}

/// The targets' problems for the Notifications condition; `None` for a policy without targets.
async fn notification_problems(policy: &BackupPolicy, ctx: &Context, tenant: &Client) -> Option<Vec<crate::notify::TargetProblem>> {
    if policy.spec.notifications.is_empty() {
        return None;
    }
    Some(ctx.notifier.check(policy, tenant).await)
}

async fn reconcile_target(target: &Target<'_>, policy: &Arc<BackupPolicy>, ctx: &Arc<Context>) -> Result<Action> {
    let now = Utc::now();
    let started = std::time::Instant::now();
    // Snapshots are looked for when the API was there at start-up (and is watched), or when the
    // policy makes them: a CRD installed later is found at the policy's next reconcile.
    let snapshots = ctx.snapshots_api || policy.spec.backup_strategy == crate::api::BackupStrategyKind::Snapshot;
    let observation = match observe::observe(policy, ctx, &target.tenant, snapshots, now).await {
        Ok(o) => o,
        Err(e) if e.classify().retry == Retry::AwaitChange => {
            // Nothing can run, but the policy still says why.
            let classified = e.classify();
            target.event(EventType::Warning, classified.reason, classified.message.clone());
            let previous = policy.status.clone().unwrap_or_default();
            let summary = Summary {
                namespace: &target.ns,
                policy: &target.name,
                last_schedule_time: previous.last_schedule_time.as_ref().and_then(crate::api::from_time),
                last_verify_time: previous.last_verify_time.as_ref().and_then(crate::api::from_time),
                next_schedule_time: None,
                runs: &[],
                destinations: &[],
                readiness: decide::Readiness { not_ready: None, reason: None, message: String::new() },
                plugin_error: Some(classified),
                plugin: None,
                notifications: notification_problems(policy, ctx, &target.tenant).await,
                suspended: policy.spec.suspend,
                generation: policy.metadata.generation,
                now,
            };
            ctx.statuses.submit(policy, status::build(&previous, &summary));
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e),
    };
    let observed_in = std::time::Instant::now();
    let decision = decide::decide(&observation.observed);
    let outcome = apply(target, &observation, &decision).await;
    // Where a slow reconcile spends its time (a run's outcome is recorded, and notified, here).
    tracing::debug!(
        observe_ms = (observed_in - started).as_millis() as u64,
        apply_ms = observed_in.elapsed().as_millis() as u64,
        "reconcile phases"
    );

    let o = &observation.observed;
    let readiness = match &decision.invalid {
        Some(invalid) => invalid.clone(),
        None => decide::readiness(o, &outcome.runs, &outcome.prune_failed),
    };
    // lastScheduleTime moves on only when every matched PVC has a run or a recorded failure.
    let last_schedule_time = match decision.due {
        Some(due) if outcome.transient.is_none() => Some(due).max(o.last_schedule_time),
        _ => o.last_schedule_time,
    };
    let summary = Summary {
        namespace: &target.ns,
        policy: &target.name,
        last_schedule_time,
        last_verify_time: decision.last_verify_time,
        next_schedule_time: decision.next_schedule_time,
        runs: &outcome.runs,
        destinations: &o.destinations,
        readiness,
        plugin_error: outcome.plugin_error.as_ref().map(Error::classify),
        plugin: outcome.plugin.clone(),
        notifications: notification_problems(policy, ctx, &target.tenant).await,
        suspended: decision.suspended,
        generation: policy.metadata.generation,
        now,
    };
    let previous = policy.status.clone().unwrap_or_default();
    if !o.deleting || o.has_finalizer {
        ctx.statuses.submit(policy, status::build(&previous, &summary));
    }
    crate::metrics::get().set_policy_backups(&target.ns, &target.name, &backups_per_pvc(o, &outcome.runs));
    if let Some(e) = outcome.transient {
        return Err(e);
    }
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&format!("{}/{}", target.ns, target.name));
    }
    Ok(match decision.requeue_at {
        Some(at) => Action::requeue((at - now).to_std().unwrap_or_default().max(Duration::from_millis(100))),
        // While deleting, poll the prune and cleanup Jobs' progress as well as watching them.
        None if o.deleting => Action::requeue(Duration::from_secs(5)),
        None => Action::await_change(),
    })
}

/// Per PVC (matched now, or with runs): when its newest successful backup finished (Unix
/// seconds) and how many successful backups are kept.
fn backups_per_pvc(o: &decide::Observed, runs: &[ObservedRun]) -> std::collections::BTreeMap<String, (Option<f64>, i64)> {
    let mut out: std::collections::BTreeMap<String, (Option<f64>, i64)> = o.pvcs.iter().map(|p| (p.name.clone(), (None, 0))).collect();
    for run in runs.iter().filter(|r| r.status == RunStatus::Succeeded) {
        let entry = out.entry(run.pvc.clone()).or_insert((None, 0));
        entry.1 += 1;
        if let Some(done) = run.completion.map(|t| t.timestamp() as f64) {
            entry.0 = Some(entry.0.map_or(done, |t: f64| t.max(done)));
        }
    }
    out
}

/// What applying a decision left: the runs as they now stand, and what went wrong.
struct Outcome {
    runs: Vec<ObservedRun>,
    prune_failed: Vec<(String, String)>,
    /// A plugin problem found outside any run (config validation).
    plugin_error: Option<Error>,
    /// The plugin loaded for this reconcile, for the status.
    plugin: Option<crate::api::PluginStatus>,
    /// The first transient error: the reconcile is retried with backoff once the status is written.
    transient: Option<Error>,
}

impl Outcome {
    fn transient(&mut self, e: Error) {
        // A run waiting for a hook slot is retried every 5 s: said by an event and by the
        // retry's own log line, not by a warning each time.
        if e.classify().retry != Retry::Soon {
            tracing::warn!("{e}");
        }
        if self.transient.is_none() {
            self.transient = Some(e);
        }
    }
}

async fn apply(t: &Target<'_>, observation: &Observation, d: &Decision) -> Outcome {
    let o = &observation.observed;
    let mut out = Outcome { runs: o.runs.clone(), prune_failed: d.prune_failed.clone(), plugin_error: None, plugin: None, transient: None };

    if d.add_finalizer && let Err(e) = set_finalizer(t, true).await {
        out.transient(e);
    }
    record_finished(t, d, &mut out).await;
    delete_recorded_pods(t, &mut out).await;
    for name in &d.replace {
        match backup_job::delete(&t.ctx.client, &t.ns, name).await {
            Ok(()) => out.runs.retain(|r| &r.name != name),
            Err(e) => out.transient(e),
        }
    }

    // The plugin, when something needs planning (or a custom plugin's config needs checking).
    let needs_plan = !d.create.is_empty()
        || !d.verify_start.is_empty()
        || d.prune.iter().any(|s| matches!(s, PruneStep::Start { .. }));
    let check_only = !needs_plan && (t.policy.spec.backup_strategy == crate::api::BackupStrategyKind::Custom || t.policy.spec.plugin.is_some()) && !o.deleting;
    let plugin: std::result::Result<Arc<Plugin>, Error> = if needs_plan || check_only {
        resolve::plugin(t.policy, &t.tenant, &t.ctx.runtime, t.ctx.plugin_dir.as_deref()).await
    } else {
        Err(Error::Runtime("no plugin needed".into()))
    };
    if let Ok(p) = &plugin {
        out.plugin = Some(resolve::status(p));
    }
    // A custom plugin's config is checked (validate-config) before anything is planned with it;
    // a rejection is remembered until the policy or the plugin changes, and nothing is planned
    // with that config meanwhile.
    let custom = t.policy.spec.backup_strategy == crate::api::BackupStrategyKind::Custom || t.policy.spec.plugin.is_some();
    let mut config_rejected = false;
    if (check_only || (needs_plan && custom)) && !o.deleting {
        let key = format!("{}/{}", t.ns, t.name);
        let generation = t.policy.metadata.generation;
        let checked = match &plugin {
            Ok(p) => match t.ctx.rejected_config(&key, generation, &p.id.digest) {
                Some(remembered) => Err(remembered),
                None => {
                    let result = t.ctx.runtime.validate_config(p.clone(), resolve::limits(t.policy), resolve::config(t.policy)).await;
                    if let Err(e) = &result
                        && matches!(e, Error::PluginConfigInvalid { .. })
                    {
                        t.ctx.remember_rejected_config(key, generation, p.id.digest.clone(), e);
                    }
                    result
                }
            },
            Err(e) => Err(e.duplicate()),
        };
        match checked {
            Ok(()) => {}
            Err(e) if e.is_permanent() => {
                let c = e.classify();
                t.event(EventType::Warning, c.reason, c.message);
                config_rejected = matches!(e, Error::PluginConfigInvalid { .. });
                out.plugin_error = Some(e);
            }
            Err(e) => out.transient(e),
        }
    }

    // New runs, up to RUN_CREATION_CONCURRENCY PVCs at a time (a policy with 1,000 PVCs creates
    // its Jobs at the API server's pace, not one round trip after another); a failure for one PVC
    // is that PVC's failed run.
    let planned: &[NewRun] = if config_rejected { &[] } else { &d.create };
    let creations: Vec<_> = planned.iter().map(|new| create_planned_run(t, observation, &plugin, new)).collect();
    let created: Vec<Result<(String, Option<ObservedRun>)>> = futures::stream::iter(creations).buffered(RUN_CREATION_CONCURRENCY).collect().await;
    for (new, result) in planned.iter().zip(created) {
        match result {
            Ok((plugin_label, run)) => {
                t.event(EventType::Normal, "RunStarted", format!("{}: run {} started ({plugin_label})", decide::target(&new.pvc, &new.destination), new.name));
                out.runs.extend(run);
            }
            Err(e) if e.is_permanent() => {
                let c = e.classify();
                t.event(EventType::Warning, c.reason, format!("{}: run {} not started: {}", decide::target(&new.pvc, &new.destination), new.name, c.message));
                let plugin_failed = matches!(e, Error::PlanRefused { .. }) || c.reason.starts_with("Plugin");
                out.runs.push(ObservedRun {
                    name: new.name.clone(),
                    object: RunObject::NotStarted,
                    pvc: new.pvc.clone(),
                    destination: new.destination.clone(),
                    scheduled: Some(new.scheduled),
                    status: RunStatus::Failed,
                    start: Some(o.now),
                    completion: Some(o.now),
                    reason: Some(c.reason.to_owned()),
                    message: c.message,
                    plugin: plugin.as_ref().ok().map(|p| resolve::label(p)),
                    recorded: true,
                    ..ObservedRun::default()
                });
                // Recorded once (in the status's history): at most one notification.
                if let Some(run) = out.runs.last() {
                    let event = if plugin_failed { NotificationEvent::PluginFailed } else { NotificationEvent::Failed };
                    t.notify(event, Some(run), None, None, run.message.clone());
                }
            }
            Err(e) => {
                // Not a failure, but the run is late: say so where `kubectl describe bp` shows it.
                if let Error::HooksBusy { busy, .. } = &e {
                    t.event(EventType::Normal, "HooksWaiting", format!("{}: run {} waits for a hook slot: {busy}", decide::target(&new.pvc, &new.destination), new.name));
                }
                out.transient(e);
            }
        }
    }
    // The public listing follows the runs just created (at most retentionCount Jobs of a series
    // carry `backup-policy`).
    relist(t, d, &mut out).await;
    for refused in &d.refused {
        t.event(EventType::Warning, "RunRefused", format!("{}: {}", refused.target(), refused.message));
        out.runs.push(refused.clone());
    }
    for (pvc, restore) in &d.skipped_restoring {
        let note = format!("{pvc}: BackupRestore {restore} is restoring into it");
        t.notify(NotificationEvent::Skipped, None, Some(pvc), d.due, note.clone());
        t.event(EventType::Normal, "RunSkipped", note);
    }
    for pvc in &d.skipped_active {
        let note = format!("{pvc}: the previous backup is still running (concurrencyPolicy Forbid)");
        t.notify(NotificationEvent::Skipped, None, Some(pvc), d.due, note.clone());
        t.event(EventType::Normal, "RunSkipped", note);
    }
    if d.skipped_past_deadline {
        let note = "the scheduled run could not start within startingDeadlineSeconds and was skipped".to_owned();
        t.notify(NotificationEvent::Missed, None, None, d.due, note.clone());
        t.event(EventType::Warning, "RunMissed", note);
    }
    if d.missed > crate::schedule::TOO_MANY_MISSED {
        t.event(EventType::Warning, "TooManyMissedRuns", format!("{} scheduled runs were missed; only the most recent one starts", d.missed));
    }

    for f in &d.fail_stuck {
        match runs::fail_stuck_job(&t.ctx.client, &t.ns, &f.run, &f.cause, f.elapsed_seconds).await {
            Ok(()) => {
                let reason = f.cause.split(':').next().unwrap_or("RunStuck");
                t.event(EventType::Warning, reason, format!("{}: run {} failed after {} s without starting: {}", f.pvc, f.run, f.elapsed_seconds, f.cause));
            }
            Err(e) => out.transient(e),
        }
    }
    prune(t, observation, d, plugin.as_ref().ok(), &mut out).await;
    verify(t, observation, d, plugin.as_ref().ok(), &mut out).await;
    finalize(t, d, &mut out).await;
    notify_pending(t, &out);
    out
}

/// The pods of finished runs whose result is recorded on their Job: nothing reads them any more,
/// and they would keep the claims they mounted in use.
async fn delete_recorded_pods(t: &Target<'_>, out: &mut Outcome) {
    let Ok(caches) = t.ctx.caches().await else { return };
    let pods = caches.pods_of_policy(&t.ns, &t.uid, &std::collections::BTreeSet::new());
    if pods.is_empty() {
        return;
    }
    let done: Vec<String> = out.runs.iter().filter(|r| r.object == RunObject::Job && r.recorded && matches!(r.status, RunStatus::Succeeded | RunStatus::Failed)).map(|r| r.name.clone()).collect();
    for run in done {
        if let Err(e) = runs::delete_pods_of_job(&t.ctx.client, &t.ns, &pods, &run).await {
            out.transient(e);
        }
    }
}

/// Puts backup Jobs into the public listing or takes them out, as decided.
async fn relist(t: &Target<'_>, d: &Decision, out: &mut Outcome) {
    for (run, listed) in &d.relist {
        let Some(pvc) = out.runs.iter().find(|r| &r.name == run).map(|r| r.pvc.clone()) else { continue };
        match runs::set_listed(&t.ctx.client, &t.ns, run, &t.name, &pvc, *listed).await {
            Ok(()) => {
                if let Some(r) = out.runs.iter_mut().find(|r| &r.name == run) {
                    r.listed = *listed;
                }
            }
            Err(e) => out.transient(e),
        }
    }
}

/// Finished runs, recorded once on their object, with an event.
async fn record_finished(t: &Target<'_>, d: &Decision, out: &mut Outcome) {
    for name in &d.record {
        // The post hook, once, before the run is recorded (its result is recorded on the Job
        // first, so that a retried record does not run it again).
        let pending_post = out
            .runs
            .iter()
            .find(|r| &r.name == name && r.object == RunObject::Job)
            .and_then(|r| Some((r.pvc.clone(), r.hooks.clone()?)))
            .filter(|(_, h)| h.pod.is_some() && h.post.is_none() && t.policy.spec.hooks.as_ref().is_some_and(|h| h.post.is_some()));
        if let Some((pvc, hooks)) = pending_post {
            // No slot free: the run stays unrecorded and is tried again shortly.
            let _slot = match t.ctx.hook_slots.try_acquire(&t.ns) {
                Ok(slot) => slot,
                Err(busy) => {
                    t.event(EventType::Normal, "HooksWaiting", format!("{pvc}: the post hook of run {name} waits for a hook slot: {busy}"));
                    out.transient(Error::HooksBusy { pvc, busy });
                    continue;
                }
            };
            let done = post_hook(t, &hooks).await;
            if let Err(e) = backup_job::record_hooks(&t.ctx.client, &t.ns, name, &done).await {
                out.transient(e);
                continue;
            }
            if let Some(run) = out.runs.iter_mut().find(|r| &r.name == name) {
                run.hooks = Some(done);
            }
        }
        let Some(run) = out.runs.iter_mut().find(|r| &r.name == name) else { continue };
        // The notification the outcome owes is recorded with it, so a restart does not lose it.
        let event = match run.status {
            RunStatus::Succeeded => Some(NotificationEvent::Succeeded),
            RunStatus::Failed => Some(NotificationEvent::Failed),
            RunStatus::Pending | RunStatus::Running => None,
        };
        run.pending_notifications = event.filter(|e| t.wants(*e)).into_iter().collect();
        let result = match run.object {
            RunObject::Job => backup_job::record(&t.ctx.client, &t.ns, run).await,
            RunObject::Snapshot => snapshot::record(&t.ctx.client, &t.ns, &run.name, &run.pending_notifications).await,
            RunObject::NotStarted => Ok(()),
        };
        if let Err(e) = result {
            out.transient(e);
            continue;
        }
        run.recorded = true;
        if matches!(run.status, RunStatus::Succeeded | RunStatus::Failed) {
            let m = crate::metrics::get();
            let result = if run.status == RunStatus::Succeeded { "Succeeded" } else { "Failed" };
            let strategy = serde_json::to_value(t.policy.spec.backup_strategy).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            m.runs.get_or_create(&crate::metrics::RunLabels { namespace: t.ns.clone(), policy: t.name.clone(), strategy, result: result.into() }).inc();
            if let (Some(start), Some(end)) = (run.start, run.completion) {
                let seconds = (end - start).num_milliseconds().max(0) as f64 / 1000.0;
                m.run_duration.get_or_create(&crate::metrics::PolicyLabels { namespace: t.ns.clone(), policy: t.name.clone() }).observe(seconds);
            }
        }
        match run.status {
            RunStatus::Succeeded => t.event(EventType::Normal, "RunSucceeded", format!("{}: run {} succeeded: {}", run.pvc, run.name, succeeded(run))),
            RunStatus::Failed => t.event(EventType::Warning, "RunFailed", format!("{}: run {} failed: {}", run.pvc, run.name, run.message)),
            RunStatus::Pending | RunStatus::Running => {}
        }
    }
}

/// How a successful run went, in words (its event's and notification's message).
fn succeeded(run: &ObservedRun) -> String {
    let report = run.report.clone().unwrap_or_default();
    match (run.verifies && report.verified != Some(false), report.size_bytes, &report.sha256) {
        (true, Some(size), Some(sum)) => format!("written and verified, {size} bytes, sha256 {sum}"),
        (true, _, _) => "written and verified".to_owned(),
        (false, _, _) => "written, unverified (the plan verifies nothing)".to_owned(),
    }
}

/// The notifications recorded runs still owe (just recorded, or left by an operator that
/// stopped before delivering them), handed to the notifier; it sends each once per process.
fn notify_pending(t: &Target<'_>, out: &Outcome) {
    for run in out.runs.iter().filter(|r| r.recorded) {
        for event in &run.pending_notifications {
            let message = match event {
                NotificationEvent::Succeeded => succeeded(run),
                NotificationEvent::Corrupted => run.verify.as_ref().map(|v| v.message.clone()).unwrap_or_default(),
                NotificationEvent::Failed
                | NotificationEvent::Missed
                | NotificationEvent::Skipped
                | NotificationEvent::PruneFailed
                | NotificationEvent::PluginFailed => run.message.clone(),
            };
            t.notify(*event, Some(run), None, None, message);
        }
    }
}

async fn set_finalizer(t: &Target<'_>, present: bool) -> Result<()> {
    let mut finalizers: Vec<String> = t.policy.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    if present {
        finalizers.push(FINALIZER.to_owned());
    }
    let api: Api<BackupPolicy> = Api::namespaced(t.ctx.client.clone(), &t.ns);
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": t.policy.resource_version()}});
    match api.patch(&t.name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 && crate::kube_client::really_gone(&api, &t.name, t.policy.uid().as_deref()).await => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn pvc_info_or_name(observation: &Observation, ns: &str, pvc: &str) -> PvcInfo {
    observation.pvcs.iter().find(|p| p.name_any() == pvc).map(observe::pvc_info).unwrap_or_else(|| PvcInfo {
        name: pvc.to_owned(),
        namespace: ns.to_owned(),
        labels: Vec::new(),
        storage_class: None,
        capacity_bytes: None,
        access_modes: Vec::new(),
        volume_mode: VolumeMode::Filesystem,
        node_name: None,
    })
}

async fn create_planned_run(t: &Target<'_>, observation: &Observation, plugin: &std::result::Result<Arc<Plugin>, Error>, new: &NewRun) -> Result<(String, Option<ObservedRun>)> {
    match plugin {
        Ok(p) => create_run(t, observation, p, new).await,
        Err(e) => Err(e.duplicate()),
    }
}

/// Plans one run through the strategy, checks it, and creates its Job or VolumeSnapshot.
/// Returns the plugin's label and, for a Job, the run as it now stands (so that this reconcile's
/// status already lists it and the Job's creation does not need another status write).
async fn create_run(t: &Target<'_>, observation: &Observation, plugin: &Arc<Plugin>, new: &NewRun) -> Result<(String, Option<ObservedRun>)> {
    let Some(pvc) = observation.pvcs.iter().find(|p| p.name_any() == new.pvc) else {
        return Err(Error::Runtime(format!("PVC {} went away", new.pvc)));
    };
    let destination = t.destination(&new.destination)?;
    let access = destination::access(&t.policy.spec, &destination);
    let request = BackupRequest { policy: t.policy_info(&new.name, Some(new.scheduled), &new.pvc, &destination), pvc: observe::pvc_info(pvc) };
    let plan = t.ctx.runtime.plan_backup(plugin.clone(), resolve::limits(t.policy), request.clone()).await?;
    let plugin_label = resolve::label(plugin);
    let owner = t.policy.controller_owner_ref(&());
    // Planned first (a plan the host refuses never runs the application's hooks), then the pre
    // hook, then the run's object. A policy with hooks holds a hook slot until its run's object
    // exists (a failed pre hook's post hook and a snapshot's post hook run under it too).
    let _hook_slot = match &t.policy.spec.hooks {
        Some(h) if h.pre.is_some() || h.post.is_some() => {
            Some(t.ctx.hook_slots.try_acquire(&t.ns).map_err(|busy| Error::HooksBusy { pvc: new.pvc.clone(), busy })?)
        }
        _ => None,
    };
    let hooks = pre_hook(t, &new.pvc).await?;
    match plan {
        Plan::Job(job_plan) => {
            let mut job = backup_job::render(
                &backup_job::BackupJob {
                    namespace: &t.ns,
                    policy: &t.name,
                    policy_uid: &t.uid,
                    run: &new.name,
                    pvc: &new.pvc,
                    scheduled_time: &request.policy.scheduled_time,
                    plugin: &plugin_label,
                    access: &access,
                    owner,
                    backoff_limit: t.policy.spec.backoff_limit,
                    active_deadline_seconds: t.policy.spec.active_deadline_seconds,
                    node: new.node.clone(),
                    run_as: t.policy.spec.pod_security_context.clone(),
                },
                &job_plan,
            );
            if let Some(record) = &hooks {
                job.metadata.annotations.get_or_insert_default().insert(crate::hooks::ANNOTATION.to_owned(), record.to_annotation());
            }
            let creating = t.ctx.runs_first.creating().await;
            let created = runs::applied_job(&t.tenant, &t.ns, &job).await;
            drop(creating);
            // A Job the API server refuses never runs: the pre hook's post hook runs now.
            let created = match (created, &hooks) {
                (Ok(job), _) => job,
                (Err(e), Some(record)) => {
                    post_hook(t, record).await;
                    return Err(e);
                }
                (Err(e), None) => return Err(e),
            };
            tracing::info!(policy = %t.name, pvc = %new.pvc, run = %new.name, "created backup job");
            return Ok((plugin_label, backup_job::observe(&created)));
        }
        Plan::VolumeSnapshot(plan) => {
            let context = snapshot::SnapshotContext {
                namespace: &t.ns,
                policy: &t.name,
                policy_uid: &t.uid,
                run: &new.name,
                pvc: &new.pvc,
                scheduled_time: &request.policy.scheduled_time,
                plugin: &plugin_label,
                owner,
            };
            let creating = t.ctx.runs_first.creating().await;
            let applied = snapshot::apply(&t.tenant, &t.ns, &new.name, &snapshot::render(&context, &plan), FIELD_MANAGER).await;
            drop(creating);
            // A snapshot is taken when it is created: the post hook follows at once.
            if let Some(record) = &hooks {
                post_hook(t, record).await;
            }
            applied?;
            tracing::info!(policy = %t.name, pvc = %new.pvc, run = %new.name, "created volume snapshot");
        }
    }
    Ok((plugin_label, None))
}

/// The policy's pre hook for a new run of `pvc`, in the running pod that mounts it. Returns what to
/// record on the run (`None` for a policy without hooks), or the run's failure when the pre hook
/// failed and stops the backup (its post hook has run then).
async fn pre_hook(t: &Target<'_>, pvc: &str) -> Result<Option<crate::hooks::HookRecord>> {
    let Some(hooks) = &t.policy.spec.hooks else { return Ok(None) };
    let Some(first) = hooks.pre.as_ref().or(hooks.post.as_ref()) else { return Ok(None) };
    // Exec in a tenant's pods: with the tenant's rights, or where a cluster admin enabled hooks.
    if !t.ctx.tenancy.impersonating() && !crate::tenancy::hooks_enabled(&t.ctx.client, &t.ns).await? {
        return Err(Error::HooksForbidden(format!(
            "hooks run only in namespaces labelled {}=enabled by a cluster admin, or with the operator's --tenant-impersonation (editing a policy would otherwise amount to exec in every pod that mounts a matched PVC)",
            crate::tenancy::HOOKS_LABEL
        )));
    }
    let pods = t.ctx.caches().await?.pods_mounting(&t.ns, pvc);
    let Some((pod, container)) = crate::hooks::pod_for(&pods, pvc, first.container.as_deref()) else {
        return Ok(Some(crate::hooks::HookRecord { skipped: Some(format!("no running pod mounts {pvc}")), ..Default::default() }));
    };
    let mut record = crate::hooks::HookRecord { pod: Some(pod.clone()), container: Some(container.clone()), ..Default::default() };
    let Some(pre) = &hooks.pre else { return Ok(Some(record)) };
    let outcome = crate::hooks::exec(&t.tenant, &t.ns, &pod, &container, pre).await;
    tracing::info!(policy = %t.name, pvc, pod = %pod, ok = outcome.ok, millis = outcome.millis as u64, "pre hook: {}", outcome.summary);
    if outcome.forbidden {
        return Err(Error::Forbidden {
            action: format!("create pods/exec in pod {pod} (the pre hook), as {}", t.ctx.tenancy.acting_as(&t.ns, t.policy.spec.service_account_name.as_deref())),
            message: outcome.summary,
        });
    }
    record.pre = Some(outcome.summary.clone());
    if !outcome.ok {
        if crate::hooks::stops_backup(pre) {
            let record = post_hook(t, &record).await;
            return Err(Error::HookFailed { pvc: pvc.to_owned(), message: record.note().unwrap_or(outcome.summary) });
        }
        t.event(EventType::Warning, "HookFailed", format!("{pvc}: pre hook in pod {pod}: {} (onError: Continue)", outcome.summary));
    }
    Ok(Some(record))
}

/// The policy's post hook in the pod the pre hook ran in; returns the record with its result.
/// Nothing to do when the hooks were skipped or there is no post hook.
async fn post_hook(t: &Target<'_>, record: &crate::hooks::HookRecord) -> crate::hooks::HookRecord {
    let mut record = record.clone();
    let (Some(post), Some(pod), Some(container)) = (t.policy.spec.hooks.as_ref().and_then(|h| h.post.as_ref()), &record.pod, &record.container) else {
        return record;
    };
    let outcome = crate::hooks::exec(&t.tenant, &t.ns, pod, container, post).await;
    tracing::info!(policy = %t.name, pod = %pod, ok = outcome.ok, millis = outcome.millis as u64, "post hook: {}", outcome.summary);
    if !outcome.ok {
        t.event(EventType::Warning, "HookFailed", format!("post hook in pod {pod}: {}", outcome.summary));
    }
    record.post = Some(outcome.summary);
    record
}

fn artifact_request(t: &Target<'_>, observation: &Observation, run: &str, pvc: &str, destination: &Destination, artifact: &str) -> ArtifactRequest {
    let scheduled = observation.observed.runs.iter().find(|r| r.name == run).and_then(|r| r.scheduled);
    ArtifactRequest { policy: t.policy_info(run, scheduled, pvc, destination), pvc: pvc_info_or_name(observation, &t.ns, pvc), artifact: artifact.to_owned() }
}

/// A Job plan for an existing run's artifact, from the strategy, or why there is none.
async fn child_plan(t: &Target<'_>, plugin: Option<&Arc<Plugin>>, kind: RunKind, request: ArtifactRequest) -> Result<crate::strategy::bindings::types::JobPlan> {
    let Some(plugin) = plugin else { return Err(Error::Runtime("the policy's plugin could not be loaded".into())) };
    let limits = resolve::limits(t.policy);
    let plan = match kind {
        RunKind::Prune => t.ctx.runtime.plan_prune(plugin.clone(), limits, request).await?,
        RunKind::Verify => t.ctx.runtime.plan_verify(plugin.clone(), limits, request).await?,
        RunKind::Backup | RunKind::Cleanup | RunKind::Restore => return Err(Error::Runtime("not a child plan".into())),
    };
    match plan {
        Plan::Job(job) => Ok(job),
        Plan::VolumeSnapshot(_) => Err(Error::Runtime("a volume-snapshot plan cannot prune or verify".into())),
    }
}

/// Plans a prune or verify Job for an existing run's artifact through the strategy, and creates it.
#[allow(clippy::too_many_arguments)]
async fn start_child(
    t: &Target<'_>,
    observation: &Observation,
    plugin: Option<&Arc<Plugin>>,
    kind: RunKind,
    run: &str,
    pvc: &str,
    artifact: &str,
    job: &str,
) -> Result<()> {
    let destination_name = observation.observed.runs.iter().find(|r| r.name == run).map(|r| r.destination.clone()).unwrap_or_default();
    let destination = t.destination(&destination_name)?;
    let access = destination::access(&t.policy.spec, &destination);
    let request = artifact_request(t, observation, run, pvc, &destination, artifact);
    let plan = child_plan(t, plugin, kind, request).await?;
    let plugin_label = plugin.map(|p| resolve::label(p)).unwrap_or_default();
    let child = RunChild {
        kind,
        name: job,
        namespace: &t.ns,
        policy: &t.name,
        policy_uid: &t.uid,
        run,
        pvc,
        plugin: &plugin_label,
        access: &access,
        owner: t.policy.controller_owner_ref(&()),
        run_as: t.policy.spec.pod_security_context.clone(),
    };
    let rendered = match kind {
        RunKind::Prune => prune_job::render(&child, &plan),
        RunKind::Verify => verify_job::render(&child, &plan),
        RunKind::Backup | RunKind::Cleanup | RunKind::Restore => return Err(Error::Runtime("not a run's child Job".into())),
    };
    runs::apply_job(&t.tenant, &t.ns, &rendered).await
}

/// Retention: free the artifacts of dropped runs through the strategy, then delete their records.
async fn prune(t: &Target<'_>, observation: &Observation, d: &Decision, plugin: Option<&Arc<Plugin>>, out: &mut Outcome) {
    for step in &d.prune {
        match step {
            PruneStep::Delete { run, object } => {
                let result = match object {
                    RunObject::Job => backup_job::delete(&t.ctx.client, &t.ns, run).await,
                    RunObject::Snapshot => snapshot::delete(&t.ctx.client, &t.ns, run).await,
                    RunObject::NotStarted => Ok(()),
                };
                match result {
                    Ok(()) => {
                        if *object == RunObject::Snapshot {
                            t.event(EventType::Normal, "Pruned", format!("run {run}: VolumeSnapshot deleted by retention"));
                        }
                        out.runs.retain(|r| &r.name != run);
                    }
                    Err(e) => out.transient(e),
                }
            }
            PruneStep::Start { run, pvc, artifact, job } => match start_child(t, observation, plugin, RunKind::Prune, run, pvc, artifact, job).await {
                Ok(()) => tracing::info!(policy = %t.name, run = %run, job = %job, "started prune job"),
                Err(e) if e.is_permanent() => {
                    let message = format!("run {run}: cannot plan pruning {artifact}: {}", e.classify().message);
                    t.notify(NotificationEvent::PruneFailed, out.runs.iter().find(|r| &r.name == run), Some(pvc.as_str()), None, message.clone());
                    t.event(EventType::Warning, "PruneFailed", message.clone());
                    out.prune_failed.push((run.clone(), message));
                }
                Err(e) => out.transient(e),
            },
            PruneStep::Finish { run, prune_job: job, seconds } => {
                let result = match backup_job::delete(&t.ctx.client, &t.ns, run).await {
                    Ok(()) => prune_job::delete(&t.ctx.client, &t.ns, job).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => {
                        if out.runs.iter().any(|r| &r.name == run) {
                            let took = seconds.map(|s| format!(", {s} s")).unwrap_or_default();
                            t.event(EventType::Normal, "Pruned", format!("run {run}: artifact deleted by retention ({job}{took})"));
                        }
                        out.runs.retain(|r| &r.name != run);
                    }
                    Err(e) => out.transient(e),
                }
            }
        }
    }
    for (run, message) in &d.prune_failed {
        if !run.is_empty() {
            t.notify(NotificationEvent::PruneFailed, out.runs.iter().find(|r| &r.name == run), None, None, message.clone());
            t.event(EventType::Warning, "PruneFailed", format!("run {run}: {message}"));
        }
    }
}

/// Re-verification: start the due verify Jobs, record the finished ones on their runs.
async fn verify(t: &Target<'_>, observation: &Observation, d: &Decision, plugin: Option<&Arc<Plugin>>, out: &mut Outcome) {
    for start in &d.verify_start {
        let result = start_child(t, observation, plugin, RunKind::Verify, &start.run, &start.pvc, &start.artifact, &start.job).await;
        match result {
            Ok(()) => tracing::info!(policy = %t.name, run = %start.run, job = %start.job, "started verify job"),
            Err(e) if e.is_permanent() => {
                let c = e.classify();
                t.event(EventType::Warning, c.reason, format!("run {}: cannot plan verification: {}", start.run, c.message));
            }
            Err(e) => out.transient(e),
        }
    }
    for done in &d.verify_done {
        let pending: Vec<NotificationEvent> = (!done.record.verified && t.wants(NotificationEvent::Corrupted)).then_some(NotificationEvent::Corrupted).into_iter().collect();
        if let Err(e) = backup_job::record_verification(&t.ctx.client, &t.ns, &done.run, &done.record, &pending).await {
            out.transient(e);
            continue;
        }
        if let Some(run) = out.runs.iter_mut().find(|r| r.name == done.run) {
            run.verify = Some(done.record.clone());
            run.pending_notifications.extend(pending);
            if done.record.verified {
                t.event(EventType::Normal, "Verified", format!("{}: run {} re-verified", run.pvc, run.name));
            } else {
                t.event(EventType::Warning, "BackupCorrupted", format!("{}: run {}: {}", run.pvc, run.name, done.record.message));
            }
        }
        if let Err(e) = verify_job::delete(&t.ctx.client, &t.ns, &done.job).await {
            out.transient(e);
        }
    }
}

/// Deleting a policy with `deletionPolicy: Delete`: prune (above), clean up, let it go.
async fn finalize(t: &Target<'_>, d: &Decision, out: &mut Outcome) {
    let result = match d.finalize {
        None | Some(Finalize::Wait) => Ok(()),
        Some(Finalize::StartCleanup) if !crate::strategy::image::allowed(&t.ctx.runtime.config().plan_policy.image_allowlist, &t.policy.spec.backup_image) => {
            // The cleanup Job runs the policy's backupImage: the allowlist holds for it too.
            out.prune_failed.push((String::new(), format!("the cleanup Job cannot run: backupImage {:?} is not in the operator's image allowlist", t.policy.spec.backup_image)));
            Ok(())
        }
        Some(Finalize::StartCleanup) => {
            let job = cleanup_job::render(
                &t.ns,
                &t.name,
                &t.uid,
                &t.policy.spec.backup_image,
                &t.policy.spec.backup_storage_claim,
                t.policy.controller_owner_ref(&()),
                t.policy.spec.pod_security_context.clone(),
            );
            cleanup_job::apply(&t.tenant, &t.ns, &job).await
        }
        Some(Finalize::RemoveFinalizer) => {
            let removed = set_finalizer(t, false).await;
            if removed.is_ok() && t.policy.metadata.deletion_timestamp.is_some() {
                tracing::info!(policy = %t.name, "backups deleted; policy released");
            }
            removed
        }
    };
    if let Err(e) = result {
        out.transient(e);
    }
}
