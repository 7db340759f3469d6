//! The policies' status writes, off the reconcile's path. A reconcile hands over its policy's new
//! status and goes on; a few writers send the newest status of each policy through the status
//! subresource (server-side apply, the operator's field manager), coalesced per policy. Until the
//! policy store shows a status, reconciles of that policy see it here instead, so that they
//! neither decide from the old one nor write it again. In a minute when many policies are due,
//! this leaves the API server to the runs' Jobs first; their statuses follow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::api::{BackupPolicy, BackupPolicyStatus};

/// Status writes in flight at once.
const CONCURRENCY: usize = 4;
/// A written status stands in for the store at most this long (the store normally shows it
/// within milliseconds).
const KEEP_WRITTEN: Duration = Duration::from_secs(120);
/// Failed writes are retried with exponential backoff up to this interval, until they succeed or
/// the policy is gone.
const RETRY_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    /// Being written; `again` when a newer status came meanwhile.
    Writing { again: bool },
    Written,
}

#[derive(Debug, Clone)]
struct Entry {
    namespace: String,
    name: String,
    /// The policy's resourceVersion in the store when the status was computed.
    over_version: String,
    status: BackupPolicyStatus,
    state: State,
    failures: u32,
    at: Instant,
}

/// What to do with a policy after a write.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Done,
    Write,
    RetryAfter(Duration),
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Written,
    /// Worth retrying (the API server was busy or unreachable).
    Failed,
    /// Never worth retrying (the policy is gone, or the status was refused).
    Refused,
}

/// The statuses waiting, being written, or written but maybe not yet in the store; by policy uid.
#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    pruned: Option<Instant>,
}

impl Entries {
    /// The status a reconcile should see for a policy the store shows at `version`.
    fn current(&mut self, uid: &str, version: &str, now: Instant) -> Option<BackupPolicyStatus> {
        let entry = self.map.get(uid)?;
        match entry.state {
            State::Queued | State::Writing { .. } => Some(entry.status.clone()),
            State::Written if entry.over_version == version && now.duration_since(entry.at) < KEEP_WRITTEN => Some(entry.status.clone()),
            State::Written => {
                self.map.remove(uid);
                None
            }
        }
    }

    /// Takes a new status; true when the policy must be queued for a writer.
    fn submit(&mut self, uid: &str, namespace: &str, name: &str, version: &str, status: BackupPolicyStatus, now: Instant) -> bool {
        if self.pruned.is_none_or(|at| now.duration_since(at) > KEEP_WRITTEN) {
            // Policies deleted right after a write leave entries behind.
            self.map.retain(|_, e| e.state != State::Written || now.duration_since(e.at) < KEEP_WRITTEN);
            self.pruned = Some(now);
        }
        let entry = self.map.entry(uid.to_owned()).or_insert_with(|| Entry {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            over_version: version.to_owned(),
            status: status.clone(),
            state: State::Written,
            failures: 0,
            at: now,
        });
        entry.over_version = version.to_owned();
        entry.status = status;
        entry.at = now;
        match entry.state {
            State::Queued => false,
            State::Writing { .. } => {
                entry.state = State::Writing { again: true };
                false
            }
            State::Written => {
                entry.state = State::Queued;
                true
            }
        }
    }

    /// The status to write now, if the policy is queued.
    fn take(&mut self, uid: &str) -> Option<(String, String, BackupPolicyStatus)> {
        let entry = self.map.get_mut(uid)?;
        (entry.state == State::Queued).then(|| {
            entry.state = State::Writing { again: false };
            (entry.namespace.clone(), entry.name.clone(), entry.status.clone())
        })
    }

    fn finished(&mut self, uid: &str, outcome: Outcome, now: Instant) -> Next {
        let Some(entry) = self.map.get_mut(uid) else { return Next::Done };
        let again = matches!(entry.state, State::Writing { again: true });
        match outcome {
            Outcome::Refused => {
                self.map.remove(uid);
                Next::Done
            }
            Outcome::Written => {
                entry.failures = 0;
                entry.at = now;
                entry.state = if again { State::Queued } else { State::Written };
                if again { Next::Write } else { Next::Done }
            }
            Outcome::Failed => {
                entry.failures = entry.failures.saturating_add(1);
                entry.state = State::Queued;
                let backoff = Duration::from_millis(500).saturating_mul(1 << entry.failures.min(10)).min(RETRY_MAX);
                Next::RetryAfter(backoff)
            }
        }
    }
}

/// Writes the policies' statuses in the background; see the module's description.
#[derive(Clone)]
pub struct StatusWriter {
    entries: Arc<Mutex<Entries>>,
    queue: tokio::sync::mpsc::UnboundedSender<String>,
    /// A status the API server refuses is said on the policy as a Warning event, not only logged.
    events: crate::platform::events::Publisher,
    runs_first: crate::platform::runs_first::RunsFirst,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
}

impl StatusWriter {
    /// Starts the writers (on the current runtime).
    pub fn start(client: Client, events: crate::platform::events::Publisher, runs_first: crate::platform::runs_first::RunsFirst, metrics: Arc<crate::telemetry::metrics::Metrics>) -> StatusWriter {
        // Unbounded, yet never longer than the number of policies: a policy is queued only when
        // it is not queued already.
        let (queue, receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
        let writer = StatusWriter { entries: Arc::default(), queue, events, runs_first, metrics };
        let worker = writer.clone();
        let uids = futures::stream::unfold(receiver, |mut r| async move { r.recv().await.map(|uid| (uid, r)) });
        tokio::spawn(uids.for_each_concurrent(CONCURRENCY, move |uid| {
            let (worker, client) = (worker.clone(), client.clone());
            async move { worker.write_one(&client, uid).await }
        }));
        writer
    }

    /// The policy as a reconcile should see it: with the status handed over here, while the
    /// store does not show it yet.
    pub fn current(&self, policy: Arc<BackupPolicy>) -> Arc<BackupPolicy> {
        let (Some(uid), Some(version)) = (policy.uid(), policy.resource_version()) else { return policy };
        let Ok(mut entries) = self.entries.lock() else { return policy };
        match entries.current(&uid, &version, Instant::now()) {
            Some(status) if policy.status.as_ref() != Some(&status) => {
                let mut newer = (*policy).clone();
                newer.status = Some(status);
                Arc::new(newer)
            }
            _ => policy,
        }
    }

    /// Hands over a policy's new status (`policy` as [`StatusWriter::current`] returned it);
    /// nothing happens when it is the status the policy has.
    pub fn submit(&self, policy: &BackupPolicy, status: BackupPolicyStatus) {
        if policy.status.as_ref() == Some(&status) {
            return;
        }
        let (Some(uid), Some(version)) = (policy.uid(), policy.resource_version()) else { return };
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(policy = %policy.name_any(), changed = ?changed_fields(policy.status.as_ref(), &status), "status handed over");
        }
        let queue = match self.entries.lock() {
            Ok(mut entries) => entries.submit(&uid, &policy.namespace().unwrap_or_default(), &policy.name_any(), &version, status, Instant::now()),
            Err(_) => false,
        };
        if queue {
            let _ = self.queue.send(uid);
        }
    }

    async fn write_one(&self, client: &Client, uid: String) {
        // Taken after the wait: the newest status handed over meanwhile is the one written.
        self.runs_first.wait_turn().await;
        let taken = self.entries.lock().ok().and_then(|mut e| e.take(&uid));
        let Some((namespace, name, status)) = taken else { return };
        let api: Api<BackupPolicy> = Api::namespaced(client.clone(), &namespace);
        let patch = serde_json::json!({"apiVersion": "backup.example.com/v1alpha1", "kind": "BackupPolicy", "status": status});
        let outcome = match api.patch_status(&name, &PatchParams::apply(crate::base::names::FIELD_MANAGER).force(), &Patch::Apply(patch)).await {
            Ok(_) => Outcome::Written,
            Err(kube::Error::Api(e)) if e.code == 404 && crate::platform::kube_client::really_gone(&api, &name, Some(&uid)).await => Outcome::Refused,
            Err(kube::Error::Api(e)) if e.code == 400 || e.code == 422 => {
                tracing::error!(policy = %name, namespace = %namespace, "the API server refuses the policy's status: {}", e.message);
                self.metrics.status_write_failures.inc();
                let reference = k8s_openapi::api::core::v1::ObjectReference {
                    api_version: Some("backup.example.com/v1alpha1".into()),
                    kind: Some("BackupPolicy".into()),
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    uid: Some(uid.clone()),
                    ..Default::default()
                };
                let note = format!("the API server refuses the policy's new status, so the status shown is older: {}", e.message);
                self.events.publish(&reference, kube::runtime::events::EventType::Warning, "StatusRefused", note);
                Outcome::Refused
            }
            Err(e) => {
                tracing::warn!(policy = %name, namespace = %namespace, "writing the status (retried): {e}");
                self.metrics.status_write_failures.inc();
                Outcome::Failed
            }
        };
        let next = self.entries.lock().map(|mut e| e.finished(&uid, outcome, Instant::now())).unwrap_or(Next::Done);
        match next {
            Next::Done => {}
            Next::Write => {
                let _ = self.queue.send(uid);
            }
            Next::RetryAfter(delay) => {
                let queue = self.queue.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = queue.send(uid);
                });
            }
        }
    }
}

/// The top-level status fields that differ (for the debug log of why a status is written).
fn changed_fields(old: Option<&BackupPolicyStatus>, new: &BackupPolicyStatus) -> Vec<String> {
    let old = old.and_then(|o| serde_json::to_value(o).ok()).unwrap_or_default();
    let new = serde_json::to_value(new).unwrap_or_default();
    let keys = |v: &serde_json::Value| v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    let mut all = keys(&old);
    all.extend(keys(&new));
    all.sort();
    all.dedup();
    all.into_iter().filter(|k| old.get(k) != new.get(k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(n: i64) -> BackupPolicyStatus {
        BackupPolicyStatus { observed_generation: Some(n), ..Default::default() }
    }

    #[test]
    fn statuses_are_coalesced_written_once_and_stand_in_for_the_store_until_it_moves_on() {
        let t0 = Instant::now();
        let mut e = Entries::default();
        // A new status queues the policy; a newer one before the write only replaces it.
        assert!(e.submit("u", "ns", "db", "10", status(1), t0));
        assert!(!e.submit("u", "ns", "db", "10", status(2), t0));
        assert_eq!(e.current("u", "10", t0), Some(status(2)));
        assert_eq!(e.take("u").map(|t| t.2), Some(status(2)));
        assert_eq!(e.take("u"), None, "taken once");
        // A newer status while writing: written again after this write.
        assert!(!e.submit("u", "ns", "db", "10", status(3), t0));
        assert_eq!(e.finished("u", Outcome::Written, t0), Next::Write);
        assert_eq!(e.take("u").map(|t| t.2), Some(status(3)));
        assert_eq!(e.finished("u", Outcome::Written, t0), Next::Done);
        // Written: stands in while the store shows the version it was computed over.
        assert_eq!(e.current("u", "10", t0), Some(status(3)));
        assert_eq!(e.current("u", "10", t0 + KEEP_WRITTEN), None, "not forever");
        assert!(e.map.is_empty());
        assert!(e.submit("u", "ns", "db", "11", status(4), t0));
        e.take("u");
        assert_eq!(e.finished("u", Outcome::Written, t0), Next::Done);
        assert_eq!(e.current("u", "12", t0), None, "the store moved on");
        assert!(e.map.is_empty());
    }

    #[test]
    fn failed_writes_are_retried_with_backoff_and_refused_ones_dropped() {
        let t0 = Instant::now();
        let mut e = Entries::default();
        e.submit("u", "ns", "db", "10", status(1), t0);
        let mut delays = Vec::new();
        for _ in 0..9 {
            e.take("u").expect("queued again");
            match e.finished("u", Outcome::Failed, t0) {
                Next::RetryAfter(d) => delays.push(d.as_secs_f64()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delays, vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]);
        assert_eq!(e.current("u", "10", t0), Some(status(1)), "still the status to show while retrying");
        e.take("u");
        assert_eq!(e.finished("u", Outcome::Refused, t0), Next::Done);
        assert!(e.map.is_empty() && e.current("u", "10", t0).is_none());
        assert_eq!(e.finished("gone", Outcome::Written, t0), Next::Done);
    }
}
