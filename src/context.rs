//! What the controllers share: the clients, the wasm host, the shared caches, the notifier, the
//! hook slots, the tenant's identity, and the memory of rejected plugin configs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};

use crate::error::{Error, Result};
use crate::strategy::StrategyRuntime;
use crate::base::names::FIELD_MANAGER;


/// Hooks running at once by default, in all and in one namespace (`--hook-concurrency`,
/// `--hook-concurrency-per-namespace`).
pub const DEFAULT_HOOK_CONCURRENCY: u16 = 16;
pub const DEFAULT_HOOK_CONCURRENCY_PER_NAMESPACE: u16 = 4;

/// A rejected config: the policy's generation and the plugin's digest it was rejected for, and
/// the error.
pub(crate) type RejectedConfig = (Option<i64>, String, Error);

pub struct Context {
    /// The process's metrics.
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
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
    pub caches: std::sync::OnceLock<crate::platform::cache::Caches>,
    pub(crate) events: crate::platform::events::Publisher,
    pub(crate) failures: Mutex<HashMap<String, u32>>,
    /// Writes the policies' statuses (and shows them until the store does).
    pub(crate) statuses: crate::platform::status_writer::StatusWriter,
    /// Delivers the policies' webhook notifications in the background.
    pub(crate) notifier: crate::notify::Notifier,
    /// Run creations go before the background writes.
    pub(crate) runs_first: crate::platform::runs_first::RunsFirst,
    /// Hooks running at once, in all and per namespace.
    pub(crate) hook_slots: crate::base::hook_slots::HookSlots,
    /// Whose rights the operator acts with for a tenant's objects.
    pub tenancy: crate::platform::tenancy::Tenancy,
    /// Configs a custom plugin's validate-config rejected, by policy (namespace/name): the
    /// policy's generation and the plugin's digest it was rejected for, and the error. Such a
    /// policy is not planned again until one of them changes.
    pub(crate) rejected_configs: Mutex<HashMap<String, RejectedConfig>>,
}

/// Policies whose rejected config is remembered, at most (past it the memory starts over).
pub(crate) const REJECTED_CONFIGS_KEPT: usize = 4096;

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
        metrics: Arc<crate::telemetry::metrics::Metrics>,
    ) -> Self {
        let runs_first = crate::platform::runs_first::RunsFirst::default();
        let events = crate::platform::events::Publisher::start(client.clone(), FIELD_MANAGER, runs_first.clone(), metrics.clone());
        let statuses = crate::platform::status_writer::StatusWriter::start(client.clone(), events.clone(), runs_first.clone(), metrics.clone());
        let notifier = crate::notify::Notifier::start(client.clone(), events.clone(), crate::notify::Config::default(), metrics.clone());
        Context {
            metrics,
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
            hook_slots: crate::base::hook_slots::HookSlots::new(crate::base::hook_slots::HookLimits::within(
                usize::from(DEFAULT_HOOK_CONCURRENCY),
                usize::from(DEFAULT_HOOK_CONCURRENCY_PER_NAMESPACE),
                usize::from(reconcile_concurrency),
            )),
            tenancy: crate::platform::tenancy::Tenancy::Operator,
            rejected_configs: Mutex::default(),
        }
    }

    /// The remembered rejection of this policy's config by this plugin, if neither changed since.
    pub(crate) fn rejected_config(&self, key: &str, generation: Option<i64>, digest: &str) -> Option<Error> {
        let rejected = self.rejected_configs.lock().ok()?;
        rejected.get(key).filter(|(g, d, _)| *g == generation && d == digest).map(|(_, _, e)| e.duplicate())
    }

    pub(crate) fn remember_rejected_config(&self, key: String, generation: Option<i64>, digest: String, error: &Error) {
        if let Ok(mut rejected) = self.rejected_configs.lock() {
            if rejected.len() >= REJECTED_CONFIGS_KEPT {
                rejected.clear();
            }
            rejected.insert(key, (generation, digest, error.duplicate()));
        }
    }

    /// Acts for tenants as `tenancy` says (default: with the operator's own rights).
    pub fn with_tenancy(mut self, tenancy: crate::platform::tenancy::Tenancy) -> Self {
        self.tenancy = tenancy;
        self
    }

    /// Runs at most `total` hooks at once, `per_namespace` in one namespace (both kept below the
    /// reconcile workers).
    pub fn with_hook_concurrency(mut self, total: usize, per_namespace: usize) -> Self {
        let limits = crate::base::hook_slots::HookLimits::within(total, per_namespace, usize::from(self.reconcile_concurrency));
        self.hook_slots = crate::base::hook_slots::HookSlots::new(limits);
        self
    }

    /// Delivers notifications with `config` (address rules, timeouts, attempts).
    pub fn with_notifications(mut self, config: crate::notify::Config) -> Self {
        self.notifier = crate::notify::Notifier::start(self.client.clone(), self.events.clone(), config, self.metrics.clone());
        self
    }

    /// The watched objects (set, with every store listed once, before the controllers start).
    pub async fn caches(&self) -> Result<&crate::platform::cache::Caches> {
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
        crate::platform::watch_stream::without_errors(watcher(api, config).default_backoff().touched_objects(), "ConfigMap")
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
