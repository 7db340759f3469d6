//! Webhook notifications about runs. A reconcile hands a [`Notification`] to the [`Notifier`] and
//! goes on: delivery happens in the background from a bounded queue served round-robin by
//! namespace ([`crate::base::fair`]; full: dropped and counted), a few attempts at a time, each with a timeout;
//! a failed attempt goes back into the queue with exponential backoff and jitter, so it holds no
//! slot while it waits and one tenant's failing targets never delay another's; after the last
//! attempt a `NotificationFailed` Warning event goes to the policy.
//!
//! At most one delivery per run (or scheduled time) and event per process, and none lost to a
//! restart: a run's outcome is recorded once on its object together with a pending mark
//! ([`PendingMark`], an annotation) for the notifications it owes; the mark goes once every target
//! is done with it, and a restarted operator sends what is still marked, with the same event id
//! (receivers that deduplicate by id see it once).
//!
//! - [`payload`]: the request bodies (generic JSON, Slack, CloudEvents), pure.
//! - [`address`]: which addresses may be reached, pure.
//! - [`http`]: one request, to a checked address.

pub mod address;
pub mod http;
pub mod payload;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::Resource;
use kube::runtime::events::EventType;

pub use address::AddressRules;
pub use payload::Notification;

use crate::api::{BackupPolicy, NotificationTarget};

/// Notifications waiting for delivery; more are dropped (and counted).
const QUEUE: usize = 1024;
/// Of those, from one namespace.
const QUEUE_PER_NAMESPACE: usize = 256;
/// Delivery attempts at once.
const CONCURRENCY: usize = 4;
/// Of those, for one namespace: the others always find a worker free, whatever one namespace's
/// targets do (an attempt to a target that never answers holds its worker for the timeout).
const CONCURRENCY_PER_NAMESPACE: usize = CONCURRENCY / 2;

/// The operator's delivery settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub rules: AddressRules,
    /// Per request: resolve, connect, send and read the answer.
    pub timeout: Duration,
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Config {
    fn default() -> Self {
        // 8 attempts over about 4 minutes: a receiver restarting or redeployed gets it.
        Config { rules: AddressRules::default(), timeout: Duration::from_secs(10), attempts: 8, first_backoff: Duration::from_secs(2), max_backoff: Duration::from_secs(60) }
    }
}

struct Delivery {
    /// Reads the target's URL Secret: the tenant's client (see [`crate::platform::tenancy`]).
    client: kube::Client,
    target: NotificationTarget,
    policy: ObjectReference,
    notification: Notification,
    /// Attempts made so far.
    attempts: u32,
}

struct Inner {
    queue: std::sync::Mutex<crate::base::fair::FairQueue<Delivery>>,
    /// Wakes the workers when a delivery is queued.
    queued: tokio::sync::Notify,
    config: Config,
    client: kube::Client,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
    /// What was queued (notification id and target), newest last, bounded: an outcome seen
    /// again in this process (a prune that keeps failing) is not sent again.
    sent: std::sync::Mutex<(std::collections::HashSet<String>, std::collections::VecDeque<String>)>,
    /// Each policy's last check (by namespace/name): when, for which targets, what it found. A
    /// reconcile then costs no Secret read or DNS lookup while the targets are unchanged.
    checked: std::sync::Mutex<std::collections::HashMap<String, Checked>>,
    /// Notifications (by id) with deliveries under way: how many, and the mark to remove from
    /// the run's object when the last one is done.
    outstanding: std::sync::Mutex<std::collections::HashMap<String, Outstanding>>,
    /// Attempts under way, by namespace (at most [`CONCURRENCY_PER_NAMESPACE`] each).
    in_flight: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// A notification's deliveries under way.
struct Outstanding {
    deliveries: usize,
    mark: Option<PendingMark>,
    /// A delivery was dropped (the queue was full): the mark stays for a later call to queue it
    /// again.
    dropped: bool,
}

/// Where a notification is recorded as owed: an annotation of the run's object (a Job or a
/// VolumeSnapshot), removed by the operator once every target got it or finally failed.
#[derive(Debug, Clone)]
pub struct PendingMark {
    pub resource: kube::discovery::ApiResource,
    pub namespace: String,
    pub name: String,
    pub annotation: String,
}

impl PendingMark {
    /// Removes the annotation (an object gone meanwhile is fine); a failure leaves it, and the
    /// notification is sent again after a restart (same id).
    async fn remove(&self, client: &kube::Client) {
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(client.clone(), &self.namespace, &self.resource);
        let patch = serde_json::json!({"metadata": {"annotations": {self.annotation.clone(): null}}});
        match api.patch(&self.name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(namespace = %self.namespace, object = %self.name, "cannot clear the pending notification mark {}: {e}", self.annotation),
        }
    }
}

/// Notifications remembered as sent, per process.
const REMEMBERED: usize = 16 * 1024;
/// A policy's last check: when, for which targets, what it found.
type Checked = (std::time::Instant, Vec<NotificationTarget>, Vec<TargetProblem>);

/// How long a policy's target check (Secret reads, DNS lookups) stands before it is done again.
const CHECK_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Policies whose last check is kept.
const CHECKS_KEPT: usize = 4096;

/// Delivers notifications in the background. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

/// Why a target cannot be sent to, for the policy's Notifications condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetProblem {
    pub target: String,
    /// NotificationRefused, NotificationInvalid or NotificationSecretMissing.
    pub reason: &'static str,
    pub message: String,
}

impl Notifier {
    /// Starts the delivery task (on the current runtime).
    pub fn start(client: kube::Client, events: crate::platform::events::Publisher, config: Config, metrics: Arc<crate::telemetry::metrics::Metrics>) -> Notifier {
        let inner = Arc::new(Inner {
            queue: std::sync::Mutex::new(crate::base::fair::FairQueue::new(QUEUE, QUEUE_PER_NAMESPACE)),
            queued: tokio::sync::Notify::new(),
            config,
            client,
            metrics,
            sent: std::sync::Mutex::default(),
            checked: std::sync::Mutex::default(),
            outstanding: std::sync::Mutex::default(),
            in_flight: std::sync::Mutex::default(),
        });
        let tls = http::tls_config();
        for _ in 0..CONCURRENCY {
            let (inner, tls, events) = (inner.clone(), tls.clone(), events.clone());
            tokio::spawn(async move {
                loop {
                    let delivery = next(&inner).await;
                    let namespace = delivery.notification.namespace.clone();
                    attempt(&inner, &tls, &events, delivery).await;
                    if let Ok(mut in_flight) = inner.in_flight.lock()
                        && let Some(n) = in_flight.get_mut(&namespace)
                    {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            in_flight.remove(&namespace);
                        }
                    }
                    // A namespace that was at its share may be served again.
                    inner.queued.notify_waiters();
                }
            });
        }
        Notifier { inner }
    }

    /// Queues `notification` for every target of `policy` that wants its event; never waits. The
    /// targets' URL Secrets are read with `client` (the tenant's). `mark`, when the outcome was
    /// recorded with one, is removed once every target is done with it; a notification dropped
    /// because the queue is full is then queued again by a later call.
    pub fn notify(&self, policy: &BackupPolicy, client: &kube::Client, notification: &Notification, mark: Option<PendingMark>) {
        let id = notification.id();
        let (mut queued, mut dropped) = (0, false);
        // Held while queuing, so that a delivery that ends at once finds its entry.
        let outstanding = mark.as_ref().and_then(|_| self.inner.outstanding.lock().ok());
        for target in policy.spec.notifications.iter().filter(|t| t.events.contains(&notification.event)) {
            let key = format!("{id}#{}", target.name);
            if !self.first_time(key.clone()) {
                continue;
            }
            let delivery = Delivery { client: client.clone(), target: target.clone(), policy: policy.object_ref(&()), notification: notification.clone(), attempts: 0 };
            if queue(&self.inner, delivery, std::time::Instant::now()) {
                queued += 1;
            } else {
                count(&self.inner, &notification.namespace, &notification.policy, "dropped");
                tracing::warn!(namespace = %notification.namespace, policy = %notification.policy, target = %target.name, "notification queue full: dropped");
                forget(&self.inner, &key);
                dropped = true;
            }
        }
        let (Some(mark), Some(mut outstanding)) = (mark, outstanding) else { return };
        match outstanding.get_mut(&id) {
            Some(entry) => {
                entry.deliveries += queued;
                entry.dropped |= dropped;
            }
            None if queued > 0 => {
                outstanding.insert(id, Outstanding { deliveries: queued, mark: Some(mark), dropped });
            }
            None if dropped => {}
            // Nothing under way or dropped: every target was done with it before (or none wants
            // it now).
            None => {
                let client = self.inner.client.clone();
                tokio::spawn(async move { mark.remove(&client).await });
            }
        }
    }

    fn first_time(&self, key: String) -> bool {
        let Ok(mut sent) = self.inner.sent.lock() else { return true };
        let (set, order) = &mut *sent;
        if !set.insert(key.clone()) {
            return false;
        }
        order.push_back(key);
        while order.len() > REMEMBERED {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }

    /// Each target's problem, found by reading its URL and resolving its host (at most once a
    /// minute per policy while its targets stay the same): what its Notifications condition shows.
    pub async fn check(&self, policy: &BackupPolicy, client: &kube::Client) -> Vec<TargetProblem> {
        let ns = policy.metadata.namespace.clone().unwrap_or_default();
        let key = format!("{ns}/{}", policy.metadata.name.clone().unwrap_or_default());
        let targets = &policy.spec.notifications;
        if let Ok(checked) = self.inner.checked.lock()
            && let Some((at, seen, problems)) = checked.get(&key)
            && at.elapsed() < CHECK_TTL
            && seen == targets
        {
            return problems.clone();
        }
        let problems = check_now(client, &self.inner.config, &ns, targets).await;
        if let Ok(mut checked) = self.inner.checked.lock() {
            if checked.len() >= CHECKS_KEPT {
                checked.retain(|_, (at, _, _)| at.elapsed() < CHECK_TTL);
                if checked.len() >= CHECKS_KEPT {
                    checked.clear();
                }
            }
            checked.insert(key, (std::time::Instant::now(), targets.clone(), problems.clone()));
        }
        problems
    }

}

/// Each target's problem, now: its Secret read with `client`, its host resolved.
async fn check_now(client: &kube::Client, config: &Config, ns: &str, targets: &[NotificationTarget]) -> Vec<TargetProblem> {
    let mut problems = Vec::new();
    for target in targets {
        let problem = match url_of(client, ns, target).await {
            Err(problem) => Some(problem),
            Ok(url) => match http::parse(&url) {
                Err(f) => Some(TargetProblem { target: target.name.clone(), reason: "NotificationInvalid", message: f.message().to_owned() }),
                Ok(parsed) => match http::resolve(&parsed, &config.rules, config.timeout).await {
                    Err(http::Failure::Refused(m)) => Some(TargetProblem { target: target.name.clone(), reason: "NotificationRefused", message: m }),
                    // Resolution can fail for a while (DNS); delivery retries it then.
                    Err(_) | Ok(_) => None,
                },
            },
        };
        problems.extend(problem);
    }
    problems
}

/// Forgets that `key` was queued, so that a later call queues it again.
fn forget(inner: &Inner, key: &str) {
    if let Ok(mut sent) = inner.sent.lock() {
        let (set, order) = &mut *sent;
        set.remove(key);
        order.retain(|k| k != key);
    }
}

fn count(inner: &Inner, namespace: &str, policy: &str, result: &str) {
    inner
        .metrics
        .notifications
        .get_or_create(&crate::telemetry::metrics::NotificationLabels { namespace: namespace.to_owned(), policy: policy.to_owned(), result: result.to_owned() })
        .inc();
}

/// The webhook URL from the target's Secret.
async fn url_of(client: &kube::Client, ns: &str, target: &NotificationTarget) -> Result<String, TargetProblem> {
    let secret_ref = &target.webhook.url_secret;
    let problem = |message: String| TargetProblem { target: target.name.clone(), reason: "NotificationSecretMissing", message };
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), ns);
    let secret = match api.get_opt(&secret_ref.name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(problem(format!("Secret {:?} (key {:?}, the URL of target {}) does not exist in this namespace", secret_ref.name, secret_ref.key, target.name))),
        Err(e) => return Err(problem(format!("cannot read Secret {:?}: {e}", secret_ref.name))),
    };
    let bytes = secret
        .data
        .and_then(|d| d.get(&secret_ref.key).map(|b| b.0.clone()))
        .or_else(|| secret.string_data.and_then(|d| d.get(&secret_ref.key).map(|s| s.clone().into_bytes())));
    match bytes {
        Some(b) => String::from_utf8(b).map_err(|_| problem(format!("Secret {:?} key {:?} is not text", secret_ref.name, secret_ref.key))),
        None => Err(problem(format!("Secret {:?} has no key {:?} (the URL of target {})", secret_ref.name, secret_ref.key, target.name))),
    }
}

/// The wait before attempt `attempt` (1-based retries): doubling from `first`, capped, with up to
/// a fifth of jitter either way so that many retries do not arrive together.
pub fn backoff(config: &Config, attempt: u32, jitter_seed: u64) -> Duration {
    let base = config.first_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(config.max_backoff);
    let fifth = base.as_millis() as u64 / 5;
    if fifth == 0 {
        return base;
    }
    let offset = jitter_seed % (2 * fifth + 1);
    Duration::from_millis((base.as_millis() as u64 - fifth) + offset)
}

/// Queues a delivery (attempt) for `at`; false when its namespace's share or the queue is full.
fn queue(inner: &Inner, d: Delivery, at: std::time::Instant) -> bool {
    let namespace = d.notification.namespace.clone();
    let queued = inner.queue.lock().is_ok_and(|mut q| q.push(&namespace, at, d).is_ok());
    if queued {
        inner.queued.notify_waiters();
        inner.queued.notify_one();
    }
    queued
}

/// The next delivery whose time has come, namespaces taking turns, of a namespace below its
/// share of the workers; waits for one. Counts it in its namespace's attempts under way.
async fn next(inner: &Inner) -> Delivery {
    loop {
        // Registered before looking, so that a delivery queued (or an attempt ended) meanwhile
        // wakes this worker.
        let woken = inner.queued.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (ready, wait) = match (inner.in_flight.lock(), inner.queue.lock()) {
            (Ok(mut in_flight), Ok(mut q)) => {
                let now = std::time::Instant::now();
                let may = |ns: &str| in_flight.get(ns).copied().unwrap_or(0) < CONCURRENCY_PER_NAMESPACE;
                let ready = q.pop_ready_if(now, may);
                let wait = q.next_ready_at_if(may).map(|at| at.saturating_duration_since(now));
                if let Some(d) = &ready {
                    *in_flight.entry(d.notification.namespace.clone()).or_default() += 1;
                }
                (ready, wait)
            }
            _ => (None, None),
        };
        if let Some(d) = ready {
            return d;
        }
        match wait {
            Some(wait) => {
                let _ = tokio::time::timeout(wait, woken).await;
            }
            None => woken.await,
        }
    }
}

/// One attempt at a delivery; a transient failure queues the next attempt after its backoff
/// (holding no worker meanwhile), the last one or a final failure says so on the policy.
async fn attempt(inner: &Inner, tls: &Arc<rustls::ClientConfig>, events: &crate::platform::events::Publisher, mut d: Delivery) {
    let n = &d.notification;
    let (body, content_type) = payload::body(d.target.webhook.format, n);
    let result = async {
        let url = url_of(&d.client, &n.namespace, &d.target).await.map_err(|p| http::Failure::Invalid(p.message))?;
        let target = http::parse(&url)?;
        let addresses = http::resolve(&target, &inner.config.rules, inner.config.timeout).await?;
        http::post(&target, &addresses, body, content_type, tls.clone(), inner.config.timeout).await
    }
    .await;
    d.attempts += 1;
    let id = n.id();
    match result {
        Ok(status) => {
            count(inner, &n.namespace, &n.policy, "delivered");
            tracing::info!(namespace = %n.namespace, policy = %n.policy, target = %d.target.name, id = %n.id(), status, "notification delivered");
        }
        Err(http::Failure::Transient(m)) if d.attempts < inner.config.attempts.max(1) => {
            tracing::info!(namespace = %n.namespace, policy = %n.policy, target = %d.target.name, id = %n.id(), attempt = d.attempts, "notification attempt failed: {m}");
            let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|t| t.subsec_nanos() as u64).unwrap_or_default();
            let at = std::time::Instant::now() + backoff(&inner.config, d.attempts, seed);
            let (namespace, policy) = (n.namespace.clone(), n.policy.clone());
            let key = format!("{id}#{}", d.target.name);
            if !queue(inner, d, at) {
                count(inner, &namespace, &policy, "dropped");
                forget(inner, &key);
                finished(inner, &id, true).await;
            }
            return;
        }
        Err(http::Failure::Transient(m)) => {
            count(inner, &n.namespace, &n.policy, "failed");
            events.publish(&d.policy, EventType::Warning, "NotificationFailed", format!("target {}: {} not delivered after {} attempts: {m}", d.target.name, n.id(), d.attempts));
        }
        Err(f @ (http::Failure::Invalid(_) | http::Failure::Refused(_) | http::Failure::Rejected(_))) => {
            let refused = matches!(f, http::Failure::Refused(_));
            count(inner, &n.namespace, &n.policy, if refused { "refused" } else { "failed" });
            let reason = if refused { "NotificationRefused" } else { "NotificationFailed" };
            events.publish(&d.policy, EventType::Warning, reason, format!("target {}: {} not sent: {}", d.target.name, n.id(), f.message()));
        }
    }
    finished(inner, &id, false).await;
}

/// One delivery of notification `id` is over (delivered, finally failed, or `dropped`): when it
/// was the last and none was dropped, its pending mark goes.
async fn finished(inner: &Inner, id: &str, dropped: bool) {
    let mark = {
        let Ok(mut outstanding) = inner.outstanding.lock() else { return };
        let Some(entry) = outstanding.get_mut(id) else { return };
        entry.deliveries = entry.deliveries.saturating_sub(1);
        entry.dropped |= dropped;
        if entry.deliveries > 0 {
            return;
        }
        outstanding.remove(id).filter(|e| !e.dropped).and_then(|e| e.mark)
    };
    if let Some(mark) = mark {
        mark.remove(&inner.client).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let c = Config::default();
        let cases = [(1, 2_000), (2, 4_000), (3, 8_000), (5, 32_000), (6, 60_000), (7, 60_000), (30, 60_000)];
        for (attempt, base) in cases {
            for seed in [0u64, 1, 7_919, u64::MAX] {
                let ms = backoff(&c, attempt, seed).as_millis() as u64;
                assert!(ms >= base - base / 5 && ms <= base + base / 5, "attempt {attempt} seed {seed}: {ms}");
            }
        }
        let total: u64 = (1..c.attempts).map(|a| backoff(&c, a, 0).as_millis() as u64).sum();
        assert!((120_000..=300_000).contains(&total), "{total} ms of retries");
    }
}
