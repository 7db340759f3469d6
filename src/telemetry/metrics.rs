//! Prometheus metrics (`/metrics`, text format). Labels are bounded: namespaces, policy and PVC
//! names (as many as there are objects), strategies, results and error reasons from fixed sets;
//! never error text, never run names. Series of a policy that is gone are removed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub namespace: String,
    pub policy: String,
    pub strategy: String,
    /// Succeeded or Failed.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub namespace: String,
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub namespace: String,
    pub policy: String,
    /// delivered, failed (after the last attempt), refused (address rules) or dropped (queue full).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PvcLabels {
    pub namespace: String,
    pub policy: String,
    pub pvc: String,
    /// The destination (spec.destinations[].name; empty for a policy without destinations): a
    /// failing off-site copy shows beside a healthy claim copy.
    pub destination: String,
}

/// A PVC's backups at one destination: (PVC, destination).
pub type Target = (String, String);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// backuppolicy or backuprestore.
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    /// The condition reason of the error (a fixed set, see docs/concepts.md).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginCallLabels {
    /// The plugin's name as the policy references it (a built-in, a ConfigMap or a file).
    pub plugin: String,
    /// ok, or the error's reason (PluginFailed, PluginTimeout, PlanRefused, ...).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub namespace: String,
    pub policy: String,
    /// verified or corrupted.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceResultLabels {
    pub namespace: String,
    /// Succeeded or Failed.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyOnlyLabels {
    pub namespace: String,
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// get, list, watch, create, patch, update, delete.
    pub verb: String,
    /// The resource (a fixed set, `other` for the rest; `/status` for the status subresource).
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// compiled, failed, memory (cache hit), disk (cache hit).
    pub outcome: String,
}

/// The operator's metrics: one value per process, made in `main` and handed to what counts
/// (the client, the wasm host, the controllers, the publishers); tests make their own.
pub struct Metrics {
    registry: Registry,
    pub runs: Family<RunLabels, Counter>,
    pub run_duration: Family<PolicyLabels, Histogram>,
    pub last_success: Family<PvcLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub backups_stored: Family<PvcLabels, Gauge>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub plugin_calls: Family<PluginCallLabels, Counter>,
    pub plugin_call_duration: Family<PluginLabels, Histogram>,
    pub plugin_loads: Family<OutcomeLabels, Counter>,
    pub leader: Gauge,
    pub requests: Family<RequestLabels, Counter>,
    pub events_dropped: Counter,
    pub status_write_failures: Counter,
    pub notifications: Family<NotificationLabels, Counter>,
    pub verifications: Family<ResultLabels, Counter>,
    pub prunes_failing: Family<PolicyOnlyLabels, Gauge>,
    pub restores: Family<NamespaceResultLabels, Counter>,
    /// The PVC series each policy has, so that they can be removed with it.
    series: Mutex<BTreeMap<(String, String), BTreeSet<Target>>>,
}

/// 1 s to 9 hours.
fn run_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

/// 1 ms to 33 s.
fn reconcile_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// 10 µs to 42 s.
fn plugin_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 4.0, 12))
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("backup_operator");
        let runs = Family::<RunLabels, Counter>::default();
        registry.register("runs", "Finished backup runs by policy, strategy and result", runs.clone());
        let run_duration = Family::<PolicyLabels, Histogram>::new_with_constructor(run_buckets as fn() -> Histogram);
        registry.register("run_duration_seconds", "Duration of finished backup runs (start to completion)", run_duration.clone());
        let last_success = Family::<PvcLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "last_successful_backup_timestamp_seconds",
            "When the newest successful backup of the PVC finished (Unix time); alert on time() minus this",
            last_success.clone(),
        );
        let backups_stored = Family::<PvcLabels, Gauge>::default();
        registry.register("backups_stored", "Successful backups of the PVC that retention keeps", backups_stored.clone());
        let reconcile_duration = Family::<ControllerLabels, Histogram>::new_with_constructor(reconcile_buckets as fn() -> Histogram);
        registry.register("reconcile_duration_seconds", "Duration of reconciles", reconcile_duration.clone());
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register("reconcile_errors", "Reconciles that ended in an error, by reason", reconcile_errors.clone());
        let plugin_calls = Family::<PluginCallLabels, Counter>::default();
        registry.register("plugin_calls", "Plugin calls by plugin and outcome", plugin_calls.clone());
        let plugin_call_duration = Family::<PluginLabels, Histogram>::new_with_constructor(plugin_buckets as fn() -> Histogram);
        registry.register("plugin_call_duration_seconds", "Duration of plugin calls", plugin_call_duration.clone());
        let plugin_loads = Family::<OutcomeLabels, Counter>::default();
        registry.register("plugin_loads", "Plugin loads: compiled, failed, or served from the memory or disk cache", plugin_loads.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 when this replica holds the leader lease (or runs without leader election)", leader.clone());
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("kubernetes_requests", "Requests sent to the Kubernetes API server, by verb and resource", requests.clone());
        let events_dropped = Counter::default();
        registry.register("events_dropped", "Kubernetes events not published because the publishing queue was full", events_dropped.clone());
        let status_write_failures = Counter::default();
        registry.register("status_write_failures", "Policy status writes that failed (retried with backoff unless refused)", status_write_failures.clone());
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register("notifications", "Webhook notifications by policy and result (delivered, failed, refused, dropped)", notifications.clone());
        let verifications = Family::<ResultLabels, Counter>::default();
        registry.register("verifications", "Verifications of kept backups (spec.verify) by result: verified or corrupted", verifications.clone());
        let prunes_failing = Family::<PolicyOnlyLabels, Gauge>::default();
        registry.register("prunes_failing", "Backups of the policy whose prune failed and that retention therefore keeps", prunes_failing.clone());
        let restores = Family::<NamespaceResultLabels, Counter>::default();
        registry.register("restores", "Finished BackupRestores by result: Succeeded or Failed", restores.clone());
        Metrics {
            registry,
            verifications,
            prunes_failing,
            restores,
            runs,
            run_duration,
            last_success,
            backups_stored,
            reconcile_duration,
            reconcile_errors,
            plugin_calls,
            plugin_call_duration,
            plugin_loads,
            leader,
            requests,
            events_dropped,
            status_write_failures,
            notifications,
            series: Mutex::default(),
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The per-PVC series of one policy after a reconcile: newest success time and backups kept.
    /// PVCs the policy no longer has lose their series.
    pub fn set_policy_backups(&self, namespace: &str, policy: &str, pvcs: &BTreeMap<Target, (Option<f64>, i64)>) {
        let labels = |(pvc, destination): &Target| PvcLabels { namespace: namespace.to_owned(), policy: policy.to_owned(), pvc: pvc.clone(), destination: destination.clone() };
        for (pvc, (last, stored)) in pvcs {
            if let Some(t) = last {
                self.last_success.get_or_create(&labels(pvc)).set(*t);
            }
            self.backups_stored.get_or_create(&labels(pvc)).set(*stored);
        }
        let Ok(mut series) = self.series.lock() else { return };
        let known = series.entry((namespace.to_owned(), policy.to_owned())).or_default();
        for gone in known.iter().filter(|p| !pvcs.contains_key(*p)) {
            self.last_success.remove(&labels(gone));
            self.backups_stored.remove(&labels(gone));
        }
        *known = pvcs.keys().cloned().collect();
    }

    /// Removes the series of policies that no longer exist.
    pub fn retain_policies(&self, exists: impl Fn(&str, &str) -> bool) {
        let Ok(mut series) = self.series.lock() else { return };
        series.retain(|(namespace, policy), pvcs| {
            if exists(namespace, policy) {
                return true;
            }
            for pvc in pvcs.iter() {
                let labels = PvcLabels { namespace: namespace.clone(), policy: policy.clone(), pvc: pvc.0.clone(), destination: pvc.1.clone() };
                self.last_success.remove(&labels);
                self.backups_stored.remove(&labels);
            }
            self.run_duration.remove(&PolicyLabels { namespace: namespace.clone(), policy: policy.clone() });
            self.prunes_failing.remove(&PolicyOnlyLabels { namespace: namespace.clone(), policy: policy.clone() });
            false
        });
    }

    pub fn verified(&self, namespace: &str, policy: &str, verified: bool) {
        let result = if verified { "verified" } else { "corrupted" };
        self.verifications.get_or_create(&ResultLabels { namespace: namespace.to_owned(), policy: policy.to_owned(), result: result.to_owned() }).inc();
    }

    pub fn set_prunes_failing(&self, namespace: &str, policy: &str, failing: usize) {
        self.prunes_failing.get_or_create(&PolicyOnlyLabels { namespace: namespace.to_owned(), policy: policy.to_owned() }).set(i64::try_from(failing).unwrap_or(i64::MAX));
    }

    pub fn restore_finished(&self, namespace: &str, succeeded: bool) {
        let result = if succeeded { "Succeeded" } else { "Failed" };
        self.restores.get_or_create(&NamespaceResultLabels { namespace: namespace.to_owned(), result: result.to_owned() }).inc();
    }

    pub fn reconciled(&self, controller: &str, took: Duration, error_reason: Option<&str>) {
        self.reconcile_duration.get_or_create(&ControllerLabels { controller: controller.to_owned() }).observe(took.as_secs_f64());
        if let Some(reason) = error_reason {
            self.reconcile_errors.get_or_create(&ErrorLabels { controller: controller.to_owned(), reason: reason.to_owned() }).inc();
        }
    }

    pub fn plugin_call(&self, plugin: &str, outcome: &str, took: Duration) {
        self.plugin_calls.get_or_create(&PluginCallLabels { plugin: plugin.to_owned(), outcome: outcome.to_owned() }).inc();
        self.plugin_call_duration.get_or_create(&PluginLabels { plugin: plugin.to_owned() }).observe(took.as_secs_f64());
    }

    pub fn plugin_load(&self, outcome: &str) {
        self.plugin_loads.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc();
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_gone_pvcs_and_policies_are_removed() {
        let m = Metrics::new();
        let target = |pvc: &str, destination: &str| (pvc.to_owned(), destination.to_owned());
        let pvcs = BTreeMap::from([(target("data-0", "claim"), (Some(1_700_000_000.0), 3)), (target("data-0", "offsite"), (None, 0)), (target("data-1", "claim"), (None, 0))]);
        m.set_policy_backups("team", "db", &pvcs);
        let text = m.encode();
        assert!(text.contains(r#"backup_operator_last_successful_backup_timestamp_seconds{namespace="team",policy="db",pvc="data-0",destination="claim"} 1700000000"#), "{text}");
        assert!(text.contains(r#"backup_operator_backups_stored{namespace="team",policy="db",pvc="data-0",destination="offsite"} 0"#), "{text}");
        m.set_policy_backups("team", "db", &BTreeMap::from([(target("data-0", "claim"), (Some(1.0), 1))]));
        assert!(!m.encode().contains(r#"pvc="data-1""#));
        m.retain_policies(|_, _| false);
        assert!(!m.encode().contains(r#"pvc="data-0""#));
        m.plugin_call("tar", "ok", Duration::from_micros(20));
        m.reconciled("backuppolicy", Duration::from_millis(3), Some("KubeApi"));
        let text = m.encode();
        assert!(text.contains(r#"backup_operator_plugin_calls_total{plugin="tar",outcome="ok"} 1"#), "{text}");
        assert!(text.contains(r#"backup_operator_reconcile_errors_total{controller="backuppolicy",reason="KubeApi"} 1"#), "{text}");
    }
}
