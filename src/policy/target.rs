//! What one reconcile acts on (the policy, the client acting for its tenant, the events it
//! queues) and what its apply step did (the outcome the status is written from).

use std::sync::Mutex;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::ApiResource;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use crate::api::{BackupPolicy, NotificationEvent};
use crate::runs::observed::{ObservedRun, RunObject};
use crate::runs::destination::{self, Destination};
use crate::error::{Error, Result, Retry};
use crate::base::text::MAX_MESSAGE_BYTES;
use crate::strategy::bindings::types::PolicyInfo;
use crate::context::Context;
use crate::runs::request::policy_info;
use crate::policy::observe::Observation;
use crate::strategy::bindings::types::{PvcInfo, VolumeMode};

/// What one reconcile is about: the policy and the names its objects use.
pub(crate) struct Target<'a> {
    pub(crate) policy: &'a BackupPolicy,
    pub(crate) ctx: &'a Context,
    /// Acts for the policy: the operator's client, or its ServiceAccount's with
    /// --tenant-impersonation (hooks, the Secrets and ConfigMaps it names, its Jobs).
    pub(crate) tenant: kube::Client,
    pub(crate) ns: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) reference: ObjectReference,
    /// The reconcile's events, published together at its end (see [`Target::publish_events`]).
    pub(crate) events: Mutex<Vec<(EventType, String, String)>>,
}

impl Target<'_> {
    /// Hands a notification about `run` (or, without one, about `pvc` and `scheduled`) to the
    /// notifier, when a target of the policy wants `event`; never waits. A run's recorded outcome
    /// carries a pending mark for it, which the notifier removes when every target is done.
    pub(crate) fn notify(&self, event: NotificationEvent, run: Option<&ObservedRun>, pvc: Option<&str>, scheduled: Option<chrono::DateTime<Utc>>, message: String) {
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
    pub(crate) fn wants(&self, event: NotificationEvent) -> bool {
        self.policy.spec.notifications.iter().any(|n| n.events.contains(&event))
    }

    /// Queues an event of the policy for the end of the reconcile.
    pub(crate) fn event(&self, type_: EventType, reason: &str, note: String) {
        if let Ok(mut events) = self.events.lock() {
            events.push((type_, reason.to_owned(), note));
        }
    }

    /// The event of one run's outcome, published on its own (never grouped with another run's),
    /// about the policy and related to the run's Job or VolumeSnapshot.
    pub(crate) fn run_event(&self, type_: EventType, reason: &str, run: &ObservedRun, note: String) {
        let related = match run.object {
            RunObject::Job => Some(("batch/v1", "Job")),
            RunObject::Snapshot => Some(("snapshot.storage.k8s.io/v1", "VolumeSnapshot")),
            RunObject::NotStarted => None,
        }
        .map(|(api_version, kind)| ObjectReference {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
            name: Some(run.name.clone()),
            namespace: Some(self.ns.clone()),
            ..ObjectReference::default()
        });
        self.ctx.events.publish_related(&self.reference, related, type_, reason, note);
    }

    /// One event per type and reason of this reconcile: a run of 1,000 PVCs is one `RunStarted`
    /// event naming them (as many as fit), not 1,000 requests.
    pub(crate) fn publish_events(&self) {
        let queued = self.events.lock().map(|mut e| std::mem::take(&mut *e)).unwrap_or_default();
        for (type_, reason, note) in crate::platform::events::group(queued, MAX_MESSAGE_BYTES) {
            self.ctx.publish(&self.reference, type_, &reason, note);
        }
    }

    pub(crate) fn policy_info(&self, run: &str, scheduled: Option<DateTime<Utc>>, pvc: &str, destination: &Destination) -> PolicyInfo {
        policy_info(self.policy, run, scheduled, pvc, destination)
    }

    /// The destination a run of this policy writes to, by name (its label).
    pub(crate) fn destination(&self, name: &str) -> Result<Destination> {
        destination::find(&self.policy.spec, name)
            .ok_or_else(|| Error::InvalidSpec(format!("destination {name:?} is no longer in spec.destinations")))
    }
}

/// What applying a decision left: the runs as they now stand, and what went wrong.
pub(crate) struct Outcome {
    pub(crate) runs: Vec<ObservedRun>,
    pub(crate) prune_failed: Vec<(String, String)>,
    /// A plugin problem found outside any run (config validation).
    pub(crate) plugin_error: Option<Error>,
    /// The plugin loaded for this reconcile, for the status.
    pub(crate) plugin: Option<crate::api::PluginStatus>,
    /// The first transient error: the reconcile is retried with backoff once the status is written.
    pub(crate) transient: Option<Error>,
}

impl Outcome {
    pub(crate) fn transient(&mut self, e: Error) {
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

pub(crate) fn pvc_info_or_name(observation: &Observation, ns: &str, pvc: &str) -> PvcInfo {
    observation.pvcs.iter().find(|p| p.name_any() == pvc).map(crate::runs::request::pvc_info).unwrap_or_else(|| PvcInfo {
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
