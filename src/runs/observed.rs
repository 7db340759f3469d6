//! A run as the host observed it (from its Job or VolumeSnapshot, its annotations and pods), and
//! how it shows in `status.backupHistory`. Shared by the policy and restore controllers.


use chrono::{DateTime, Utc};

use crate::api::{BackupRun, RunStatus, to_time};
use crate::runs::report::Report;
use crate::base::names::storage_dir;


/// Runs kept in `status.backupHistory`.
pub const HISTORY_LIMIT: usize = 10;

/// What a run's object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunObject {
    #[default]
    Job,
    Snapshot,
    /// Nothing was created: planning failed or the run was refused. The status entry is the
    /// only record.
    NotStarted,
}

/// The newest re-verification of a run's artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRecord {
    pub time: DateTime<Utc>,
    pub verified: bool,
    pub message: String,
}

/// A backup run of this policy, as observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedRun {
    pub name: String,
    pub object: RunObject,
    pub pvc: String,
    /// The destination it writes to ("" without spec.destinations).
    pub destination: String,
    pub scheduled: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub start: Option<DateTime<Utc>>,
    pub completion: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub message: String,
    /// `name@sha256-prefix` of the plugin that planned it.
    pub plugin: Option<String>,
    /// The artifact as the plan named it (relative to the PVC's directory), or the snapshot's name.
    pub artifact: Option<String>,
    /// What the run reported (from the host's record, or freshly from its pod).
    pub report: Option<Report>,
    /// Whether the host recorded the finished run (its result annotation and event).
    pub recorded: bool,
    /// Whether the plan verifies what it wrote (a plan with `verification: none` does not).
    pub verifies: bool,
    pub verify: Option<VerifyRecord>,
    /// Why a run that has not finished is not getting anywhere (its pods or Job events say).
    pub stuck: Option<crate::runs::stuck::Stuck>,
    /// What the run's hooks did (from its Job).
    pub hooks: Option<crate::hooks::HookRecord>,
    /// Its Job carries the public labels (`backup-policy`, `pvc`), so that
    /// `kubectl get jobs -l backup-policy=<policy>` lists it.
    pub listed: bool,
    /// Notifications of its outcome recorded as not yet delivered to every target.
    pub pending_notifications: Vec<crate::api::NotificationEvent>,
}

impl ObservedRun {
    pub fn finished(&self) -> bool {
        matches!(self.status, RunStatus::Succeeded | RunStatus::Failed)
    }

    /// A successful run whose artifact a verification found damaged.
    pub fn corrupted(&self) -> bool {
        self.status == RunStatus::Succeeded && self.verify.as_ref().is_some_and(|v| !v.verified)
    }

    /// The series the run belongs to: the backups of one PVC at one destination. Retention,
    /// concurrency and "the latest backup" are per series.
    pub fn series(&self) -> (&str, &str) {
        (&self.pvc, &self.destination)
    }

    /// How messages name the run's series: the PVC, and the destination when there is one.
    pub fn target(&self) -> String {
        target(&self.pvc, &self.destination)
    }
}

/// `data-0`, or `data-0 to offsite` for a named destination.
pub fn target(pvc: &str, destination: &str) -> String {
    if destination.is_empty() { pvc.to_owned() } else { format!("{pvc} to {destination}") }
}

/// A prune, verify or cleanup Job, as observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedAux {
    pub name: String,
    /// The backup run it is about (none for cleanup).
    pub run: String,
    pub status: RunStatus,
    pub message: String,
    pub report: Option<Report>,
    pub start: Option<DateTime<Utc>>,
    pub completion: Option<DateTime<Utc>>,
}

impl ObservedAux {
    /// How long the Job ran, once it finished.
    pub fn seconds(&self) -> Option<i64> {
        Some((self.completion? - self.start?).num_seconds())
    }
}

/// Holds back causes that clear on their own (a pod waiting for a node) while their run is younger
/// than the grace, capped by half the start timeout so that a stuck run shows why before it fails. Returns when
/// the first held-back cause becomes reportable (the reconcile looks again then).
pub fn defer_young_causes(runs: &mut [ObservedRun], now: DateTime<Utc>, start_timeout_seconds: i64) -> Option<DateTime<Utc>> {
    // At most half the start timeout: the cause shows for a while before the run fails with it.
    let grace = chrono::Duration::seconds(crate::runs::stuck::UNSCHEDULABLE_GRACE_SECONDS.min(start_timeout_seconds.max(1) / 2));
    let mut reportable_at: Option<DateTime<Utc>> = None;
    for run in runs.iter_mut() {
        let (Some(cause), Some(start)) = (&run.stuck, run.start) else { continue };
        if cause.clears_on_its_own() && now < start + grace {
            run.stuck = None;
            reportable_at = Some(reportable_at.map_or(start + grace, |at| at.min(start + grace)));
        }
    }
    reportable_at
}

pub fn newest_first(a: &ObservedRun, b: &ObservedRun) -> std::cmp::Ordering {
    b.scheduled.cmp(&a.scheduled).then_with(|| b.start.cmp(&a.start)).then_with(|| b.name.cmp(&a.name))
}

/// One run as the policy's history shows it (also how a restore judges a backup).
pub fn history_entry(namespace: &str, policy: &str, r: &ObservedRun) -> BackupRun {
    let report = r.report.clone().unwrap_or_default();
    let artifact = r.artifact.as_ref().map(|a| match (r.object, r.destination.is_empty()) {
        (RunObject::Job, true) => format!("{}/{a}", storage_dir(namespace, policy, &r.pvc)),
        (RunObject::Job, false) => format!("{}:{}/{a}", r.destination, storage_dir(namespace, policy, &r.pvc)),
        (RunObject::Snapshot | RunObject::NotStarted, _) => a.clone(),
    });
    let succeeded = r.status == RunStatus::Succeeded;
    // Verified after writing (the plan verifies and the run reported so, or a Job that verifies
    // completed), and not found damaged since.
    let verified = match (&r.verify, succeeded) {
        (_, false) => None,
        (Some(v), true) => Some(v.verified),
        (None, true) => Some(r.verifies && report.verified != Some(false)),
    };
    let message = match (&r.verify, r.status) {
        (Some(v), RunStatus::Succeeded) if !v.verified => format!("corrupted: {}", v.message),
        (_, RunStatus::Pending | RunStatus::Running) if r.stuck.is_some() => {
            r.stuck.as_ref().map(|st| format!("{}: {}", st.reason, st.message)).unwrap_or_default()
        }
        (_, RunStatus::Succeeded) if r.object == RunObject::Job => match (verified, &artifact) {
            (Some(true), Some(a)) => format!("written and verified: {a}"),
            (_, Some(a)) => format!("written, unverified: {a}"),
            (_, None) => "succeeded".into(),
        },
        _ => r.message.clone(),
    };
    let message = match r.hooks.as_ref().and_then(crate::hooks::HookRecord::note) {
        Some(note) if message.is_empty() => note,
        Some(note) => crate::base::text::bound(&format!("{message}; {note}"), crate::base::text::MAX_MESSAGE_BYTES),
        None => message,
    };
    BackupRun {
        job_name: r.name.clone(),
        pvc: r.pvc.clone(),
        destination: (!r.destination.is_empty()).then(|| r.destination.clone()),
        scheduled_time: r.scheduled.map(to_time),
        start_time: r.start.map(to_time),
        completion_time: r.completion.map(to_time),
        status: r.status,
        reason: r.reason.clone().or_else(|| r.stuck.as_ref().map(|st| st.reason.to_owned())),
        message,
        plugin: r.plugin.clone(),
        artifact: if succeeded { artifact } else { None },
        size_bytes: report.size_bytes,
        sha256: report.sha256.clone(),
        verified,
        last_verify_time: r.verify.as_ref().map(|v| to_time(v.time)),
        not_started: r.object == RunObject::NotStarted,
    }
}

/// `status.backupHistory`: the newest runs first, at most [`HISTORY_LIMIT`].
pub fn history(namespace: &str, policy: &str, runs: &[ObservedRun]) -> Vec<BackupRun> {
    let mut sorted: Vec<&ObservedRun> = runs.iter().collect();
    sorted.sort_by(|a, b| newest_first(a, b));
    sorted.into_iter().take(HISTORY_LIMIT).map(|r| history_entry(namespace, policy, r)).collect()
}

pub fn last_success(runs: &[ObservedRun]) -> Option<DateTime<Utc>> {
    runs.iter().filter(|r| r.status == RunStatus::Succeeded).filter_map(|r| r.completion.or(r.scheduled)).max()
}
