//! The reconcile decision, as a pure function of what was observed and `now`: which runs start,
//! which are recorded, pruned or verified, and what the status says. Nothing here talks to the
//! cluster.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::api::{BackupPolicySpec, BackupRun, ConcurrencyPolicy, DeletionPolicy, RunStatus, to_time};
use crate::runs::report::Report;
use crate::runs::{child_name, run_name_to, storage_dir};
use crate::schedule::{self, Schedule, ScheduleError};

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
    fn finished(&self) -> bool {
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

/// A destination of the policy, and why no run can write to it (none: runs can).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedDestination {
    pub name: String,
    pub problem: Option<(NotReady, String)>,
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

/// A PVC the selector matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedPvc {
    pub name: String,
    pub read_write_once: bool,
    pub read_write_once_pod: bool,
    /// A running pod that mounts the claim, and its node.
    pub mounted_by: Option<(String, Option<String>)>,
}

#[derive(Debug, Clone)]
pub struct Observed {
    pub now: DateTime<Utc>,
    /// PVCs the selector matches that are not bound yet (or lost): (name, phase). Not backed up
    /// until they are, and named on the status meanwhile.
    pub unbound: Vec<(String, String)>,
    pub namespace: String,
    pub policy: String,
    pub spec: BackupPolicySpec,
    pub created: DateTime<Utc>,
    pub last_schedule_time: Option<DateTime<Utc>>,
    pub last_verify_time: Option<DateTime<Utc>>,
    /// When the policy was last resumed (Suspended went False): runs before it are not replayed.
    pub resumed_at: Option<DateTime<Utc>>,
    pub pvcs: Vec<ObservedPvc>,
    /// The policy's destinations (one, unnamed, without spec.destinations), in spec order.
    pub destinations: Vec<ObservedDestination>,
    pub runs: Vec<ObservedRun>,
    pub prunes: Vec<ObservedAux>,
    pub verifies: Vec<ObservedAux>,
    pub cleanup: Option<ObservedAux>,
    /// The policy is being deleted.
    pub deleting: bool,
    /// The policy carries the operator's finalizer.
    pub has_finalizer: bool,
    /// Runs an unfinished BackupRestore reads: retention keeps them until it finishes.
    pub held: BTreeSet<String>,
    /// PVCs an unfinished BackupRestore writes (PVC → restore): not backed up meanwhile, so that
    /// a half-restored volume never becomes a backup that retention prefers to the good ones.
    pub restoring: BTreeMap<String, String>,
    /// When the first cause held back by [`defer_young_causes`] becomes reportable.
    pub cause_reportable_at: Option<DateTime<Utc>>,
}

impl Observed {
    /// Whether the run writes to one of the policy's current destinations.
    pub fn knows(&self, run: &ObservedRun) -> bool {
        self.destinations.iter().any(|d| d.name == run.destination)
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

/// Why the policy is not Ready; the reason strings are a public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    InvalidSchedule,
    InvalidTimeZone,
    NoMatchingPvcs,
    BackupStorageMissing,
    /// A Secret (or key) a destination's Jobs need does not exist.
    DestinationCredentialsMissing,
    BackupFailed,
    BackupCorrupted,
    PruneFailed,
    /// A run cannot start; the readiness reason names why (PodRejected, ImageError, ...).
    RunStuck,
}

impl NotReady {
    pub fn reason(self) -> &'static str {
        match self {
            NotReady::InvalidSchedule => "InvalidSchedule",
            NotReady::InvalidTimeZone => "InvalidTimeZone",
            NotReady::NoMatchingPvcs => "NoMatchingPVCs",
            NotReady::BackupStorageMissing => "BackupStorageMissing",
            NotReady::DestinationCredentialsMissing => "DestinationCredentialsMissing",
            NotReady::BackupFailed => "BackupFailed",
            NotReady::BackupCorrupted => "BackupCorrupted",
            NotReady::PruneFailed => "PruneFailed",
            NotReady::RunStuck => "RunStuck",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub not_ready: Option<NotReady>,
    /// A more specific reason than `not_ready`'s, from the failed run (PluginFailed, PlanRefused…).
    pub reason: Option<String>,
    pub message: String,
}

/// A run to start: one PVC, one destination, one scheduled time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub name: String,
    pub pvc: String,
    pub destination: String,
    pub scheduled: DateTime<Utc>,
    /// A ReadWriteOnce claim in use: the Job must run on this node.
    pub node: Option<String>,
}

/// One step of retention, or of deleting a policy with `deletionPolicy: Delete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneStep {
    /// Nothing on storage to free (a failed run, a snapshot whose deletion frees it, a run that
    /// was never started): delete the run's object, or forget its record.
    Delete { run: String, object: RunObject },
    /// Free the artifact first: plan and start the prune Job.
    Start { run: String, pvc: String, artifact: String, job: String },
    /// The prune Job succeeded (in `seconds`): delete the run's Job, then the prune Job.
    Finish { run: String, prune_job: String, seconds: Option<i64> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyStart {
    pub run: String,
    pub pvc: String,
    pub artifact: String,
    pub job: String,
}

/// A run that could not start within `startTimeoutSeconds`: the host fails it with its cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailStuck {
    pub run: String,
    pub pvc: String,
    /// `<reason>: <message>`.
    pub cause: String,
    pub elapsed_seconds: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyDone {
    pub run: String,
    pub job: String,
    pub record: VerifyRecord,
}

/// What to do for a policy being deleted with `deletionPolicy: Delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finalize {
    /// Artifacts are still being pruned.
    Wait,
    /// Every artifact is pruned: remove the policy's directory from the storage claim.
    StartCleanup,
    /// The directory is gone (or there is nothing to delete): let the policy go.
    RemoveFinalizer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub create: Vec<NewRun>,
    /// Runs refused before planning (a ReadWriteOncePod claim in use): recorded as failures.
    pub refused: Vec<ObservedRun>,
    /// Active runs that `Replace` stops.
    pub replace: Vec<String>,
    /// PVCs whose run was skipped because their previous backup is still active (Forbid).
    pub skipped_active: Vec<String>,
    /// PVCs whose run was skipped because a restore is writing them: (PVC, restore).
    pub skipped_restoring: Vec<(String, String)>,
    /// Finished runs to record once (result annotation and event).
    pub record: Vec<String>,
    pub prune: Vec<PruneStep>,
    /// Runs whose prune Job failed, with its message: kept, and shown as PruneFailed.
    pub prune_failed: Vec<(String, String)>,
    pub verify_start: Vec<VerifyStart>,
    pub verify_done: Vec<VerifyDone>,
    pub fail_stuck: Vec<FailStuck>,
    pub last_verify_time: Option<DateTime<Utc>>,
    pub add_finalizer: bool,
    pub finalize: Option<Finalize>,
    /// The run the schedule made due now, if any: `lastScheduleTime` once every PVC is covered.
    pub due: Option<DateTime<Utc>>,
    pub last_schedule_time: Option<DateTime<Utc>>,
    pub next_schedule_time: Option<DateTime<Utc>>,
    pub suspended: bool,
    /// Scheduled times missed since the last run (the CronJob controller warns past 100).
    pub missed: u32,
    pub skipped_past_deadline: bool,
    /// Look again then (the next scheduled time), or `None` to wait for a change.
    pub requeue_at: Option<DateTime<Utc>>,
    /// Why nothing can run at all (invalid schedule), before any run is looked at.
    pub invalid: Option<Readiness>,
    /// Backup Jobs that enter (true) or leave (false) the public listing ([`listing`]).
    pub relist: Vec<(String, bool)>,
}

fn newest_first(a: &ObservedRun, b: &ObservedRun) -> std::cmp::Ordering {
    b.scheduled.cmp(&a.scheduled).then_with(|| b.start.cmp(&a.start)).then_with(|| b.name.cmp(&a.name))
}

/// The specification's `kubectl get jobs -l backup-policy=<policy>` shows at most
/// `retentionCount` Jobs of each series (PVC and destination): the newest ones, counting the runs
/// being created now. Older backup Jobs leave the listing at once (they lose the public labels);
/// they stay, under the operator's own labels, as the records of artifacts that retention keeps
/// until newer backups succeed (the newest successful artifact is never pruned). Returns the
/// Jobs whose listing changes: (run, listed).
pub fn listing(runs: &[ObservedRun], creating: &[NewRun], deleting: &[&str], keep: u32) -> Vec<(String, bool)> {
    let keep = keep.max(1) as usize;
    // (scheduled, name, listed now) per series; new runs are listed when created, and Jobs being
    // deleted now take no place.
    let mut by_series: BTreeMap<(&str, &str), Vec<(Option<DateTime<Utc>>, &str, Option<bool>)>> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.object == RunObject::Job && !deleting.contains(&r.name.as_str())) {
        by_series.entry(run.series()).or_default().push((run.scheduled, &run.name, Some(run.listed)));
    }
    for new in creating {
        by_series.entry((new.pvc.as_str(), new.destination.as_str())).or_default().push((Some(new.scheduled), &new.name, None));
    }
    let mut changes = Vec::new();
    for (_, mut jobs) in by_series {
        jobs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(a.1)));
        jobs.dedup_by(|a, b| a.1 == b.1);
        for (i, (_, name, listed)) in jobs.into_iter().enumerate() {
            let want = i < keep;
            if listed.is_some_and(|l| l != want) {
                changes.push(((*name).to_owned(), want));
            }
        }
    }
    changes.sort();
    changes
}

/// Runs retention drops: per series (PVC and destination), successful ones beyond
/// `keep_succeeded` (newest kept, so the newest success always stays) and failed ones beyond
/// `keep_failed`. Active runs are never touched.
pub fn retention(runs: &[ObservedRun], keep_succeeded: u32, keep_failed: u32) -> Vec<String> {
    let mut by_pvc: BTreeMap<(&str, &str), Vec<&ObservedRun>> = BTreeMap::new();
    for run in runs {
        by_pvc.entry(run.series()).or_default().push(run);
    }
    let keep_succeeded = keep_succeeded.max(1) as usize;
    let mut drop = Vec::new();
    for (_, mut runs) in by_pvc {
        runs.sort_by(|a, b| newest_first(a, b));
        let (mut succeeded, mut failed) = (0usize, 0usize);
        for run in runs {
            match run.status {
                RunStatus::Succeeded => {
                    succeeded += 1;
                    if succeeded > keep_succeeded {
                        drop.push(run.name.clone());
                    }
                }
                RunStatus::Failed => {
                    failed += 1;
                    if failed > keep_failed as usize {
                        drop.push(run.name.clone());
                    }
                }
                RunStatus::Pending | RunStatus::Running => {}
            }
        }
    }
    drop.sort();
    drop
}

/// How to drop each of `dropped`: delete what holds no data, prune what does, finish prunes that
/// succeeded; prunes that failed are reported and kept.
pub fn prune_steps(dropped: &[String], runs: &[ObservedRun], prunes: &[ObservedAux]) -> (Vec<PruneStep>, Vec<(String, String)>) {
    let mut steps = Vec::new();
    let mut failed = Vec::new();
    for name in dropped {
        let Some(run) = runs.iter().find(|r| &r.name == name) else { continue };
        let holds_data = run.object == RunObject::Job && run.status == RunStatus::Succeeded && run.artifact.is_some();
        if !holds_data {
            steps.push(PruneStep::Delete { run: run.name.clone(), object: run.object });
            continue;
        }
        match prunes.iter().find(|p| p.run == run.name) {
            None => steps.push(PruneStep::Start {
                run: run.name.clone(),
                pvc: run.pvc.clone(),
                artifact: run.artifact.clone().unwrap_or_default(),
                job: child_name(&run.name, "prune"),
            }),
            Some(p) => match p.status {
                RunStatus::Succeeded => steps.push(PruneStep::Finish { run: run.name.clone(), prune_job: p.name.clone(), seconds: p.seconds() }),
                RunStatus::Failed => failed.push((run.name.clone(), format!("prune Job {} failed: {}", p.name, p.message))),
                RunStatus::Pending | RunStatus::Running => {}
            },
        }
    }
    // A prune Job whose run is gone (deleted after the prune succeeded, before the prune Job).
    for p in prunes {
        if p.status == RunStatus::Succeeded && !runs.iter().any(|r| r.name == p.run) {
            steps.push(PruneStep::Finish { run: p.run.clone(), prune_job: p.name.clone(), seconds: p.seconds() });
        }
    }
    (steps, failed)
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
        Some(note) => crate::runs::report::bound(&format!("{message}; {note}"), crate::error::MAX_MESSAGE_BYTES),
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

/// When the policy was resumed, from its `Suspended` condition (status, transition time) as last
/// written and the spec: runs up to that moment are not replayed. If the spec was just unsuspended
/// and the status still says suspended, that moment is now.
pub fn resumed_at(suspended_condition: Option<(bool, DateTime<Utc>)>, suspend: bool, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match (suspended_condition, suspend) {
        (Some((true, _)), false) => Some(now),
        (Some((false, since)), _) => Some(since),
        (Some((true, _)), true) | (None, _) => None,
    }
}

fn empty(observed: &Observed) -> Decision {
    Decision {
        create: Vec::new(),
        refused: Vec::new(),
        replace: Vec::new(),
        skipped_active: Vec::new(),
        skipped_restoring: Vec::new(),
        record: Vec::new(),
        prune: Vec::new(),
        prune_failed: Vec::new(),
        verify_start: Vec::new(),
        verify_done: Vec::new(),
        fail_stuck: Vec::new(),
        last_verify_time: observed.last_verify_time,
        add_finalizer: false,
        finalize: None,
        due: None,
        last_schedule_time: observed.last_schedule_time,
        next_schedule_time: None,
        suspended: observed.spec.suspend,
        missed: 0,
        skipped_past_deadline: false,
        requeue_at: None,
        invalid: None,
        relist: Vec::new(),
    }
}

/// Finished runs not yet recorded, and re-verifications that finished.
fn bookkeeping(observed: &Observed, d: &mut Decision) {
    d.record = observed.runs.iter().filter(|r| r.finished() && !r.recorded && r.object != RunObject::NotStarted).map(|r| r.name.clone()).collect();
    for v in &observed.verifies {
        if !matches!(v.status, RunStatus::Succeeded | RunStatus::Failed) {
            continue;
        }
        let report = v.report.clone().unwrap_or_default();
        let verified = v.status == RunStatus::Succeeded && report.verified != Some(false);
        let message = if verified {
            "verified".to_owned()
        } else if !report.message.is_empty() {
            report.message.clone()
        } else {
            format!("verify Job {} failed: {}", v.name, v.message)
        };
        d.verify_done.push(VerifyDone {
            run: v.run.clone(),
            job: v.name.clone(),
            record: VerifyRecord { time: v.completion.unwrap_or(observed.now), verified, message },
        });
    }
}

/// Deleting a policy: with `Delete`, prune every artifact, then remove its directory, then let it
/// go; with `Retain`, let it go at once (its objects are garbage-collected, its archives kept).
fn finalize(observed: &Observed, d: &mut Decision) {
    if !observed.has_finalizer {
        return;
    }
    if observed.spec.deletion_policy == DeletionPolicy::Retain {
        d.finalize = Some(Finalize::RemoveFinalizer);
        return;
    }
    // A run a restore reads stays (and so the policy waits) until the restore finishes.
    let all: Vec<String> = observed.runs.iter().filter(|r| r.finished() && !observed.held.contains(&r.name)).map(|r| r.name.clone()).collect();
    let (steps, failed) = prune_steps(&all, &observed.runs, &observed.prunes);
    d.prune = steps;
    d.prune_failed = failed;
    let pending = observed.runs.iter().any(|r| r.object != RunObject::NotStarted) || !observed.prunes.is_empty();
    d.finalize = Some(match (&observed.cleanup, pending) {
        (_, true) => Finalize::Wait,
        (None, false) if cleanup_possible(observed) => Finalize::StartCleanup,
        (None, false) => Finalize::RemoveFinalizer,
        (Some(c), false) => match c.status {
            RunStatus::Succeeded => Finalize::RemoveFinalizer,
            RunStatus::Failed => {
                d.prune_failed.push((String::new(), format!("cleanup Job {} failed: {}", c.name, c.message)));
                Finalize::Wait
            }
            RunStatus::Pending | RunStatus::Running => Finalize::Wait,
        },
    });
}

/// The policy's directory can be removed from its storage claim: it has the one unnamed claim
/// destination and the claim is there. (With spec.destinations, pruning every artifact is the
/// deletion: the PVCs' directories stay, empty.)
fn cleanup_possible(observed: &Observed) -> bool {
    matches!(observed.destinations.as_slice(), [only] if only.name.is_empty() && only.problem.is_none())
}

/// The verification runs due now: the newest `newest` successful artifacts of each PVC.
fn verification(observed: &Observed, d: &mut Decision) -> Option<DateTime<Utc>> {
    let spec = observed.spec.verify.as_ref()?;
    let schedule = Schedule::parse(&spec.schedule, observed.spec.time_zone.as_deref()).ok()?;
    let when = schedule::decide(&schedule, observed.last_verify_time, observed.created, None, observed.now);
    if observed.spec.suspend {
        return None;
    }
    if let Some(at) = when.run {
        d.last_verify_time = Some(at);
        let minutes = at.timestamp().div_euclid(60);
        let mut by_pvc: BTreeMap<(&str, &str), Vec<&ObservedRun>> = BTreeMap::new();
        for run in observed.runs.iter().filter(|r| r.object == RunObject::Job && r.status == RunStatus::Succeeded && r.artifact.is_some() && observed.knows(r)) {
            by_pvc.entry(run.series()).or_default().push(run);
        }
        for (_, mut runs) in by_pvc {
            runs.sort_by(|a, b| newest_first(a, b));
            for run in runs.into_iter().take(spec.newest as usize) {
                // One verification of a run at a time (a finished one is recorded and deleted first).
                if observed.verifies.iter().any(|v| v.run == run.name) {
                    continue;
                }
                d.verify_start.push(VerifyStart {
                    run: run.name.clone(),
                    pvc: run.pvc.clone(),
                    artifact: run.artifact.clone().unwrap_or_default(),
                    job: child_name(&run.name, &format!("verify-{minutes}")),
                });
            }
        }
    }
    when.next
}

pub fn decide(observed: &Observed) -> Decision {
    let spec = &observed.spec;
    let mut d = empty(observed);
    bookkeeping(observed, &mut d);
    if observed.deleting {
        finalize(observed, &mut d);
        return d;
    }
    d.add_finalizer = spec.deletion_policy == DeletionPolicy::Delete && !observed.has_finalizer;
    if spec.deletion_policy == DeletionPolicy::Retain && observed.has_finalizer {
        d.finalize = Some(Finalize::RemoveFinalizer);
    }
    let schedule = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(e @ ScheduleError::InvalidSchedule { .. }) => {
            d.invalid = Some(Readiness { not_ready: Some(NotReady::InvalidSchedule), reason: None, message: e.to_string() });
            return d;
        }
        Err(e @ ScheduleError::InvalidTimeZone(_)) => {
            d.invalid = Some(Readiness { not_ready: Some(NotReady::InvalidTimeZone), reason: None, message: e.to_string() });
            return d;
        }
    };

    // The next run follows the last one the status recorded, which is written only after every
    // PVC of a run has its Job or a recorded failure. A crash between two creates therefore
    // decides the same run again, and the deterministic names make the Jobs that exist no-ops
    // while the missing ones are created.
    let since = observed.last_schedule_time.max(observed.resumed_at);
    let when = schedule::decide(&schedule, since, observed.created, spec.starting_deadline_seconds, observed.now);
    let due = if spec.suspend { None } else { when.run };
    // Destinations no run can write to (a missing claim or Secret) are left out: the others go on,
    // and readiness says what is missing.
    let ready: Vec<&str> = observed.destinations.iter().filter(|d| d.problem.is_none()).map(|d| d.name.as_str()).collect();
    if let Some(scheduled) = due
        && !ready.is_empty()
        && !observed.pvcs.is_empty()
    {
        d.due = Some(scheduled);
        for (pvc, destination) in observed.pvcs.iter().flat_map(|p| ready.iter().map(move |d| (p, *d))) {
            let name = run_name_to(&observed.policy, &pvc.name, destination, scheduled);
            if observed.runs.iter().any(|r| r.name == name) {
                continue;
            }
            if let Some(restore) = observed.restoring.get(&pvc.name) {
                d.skipped_restoring.push((target(&pvc.name, destination), restore.clone()));
                continue;
            }
            let active: Vec<&ObservedRun> = observed
                .runs
                .iter()
                .filter(|r| r.series() == (pvc.name.as_str(), destination) && matches!(r.status, RunStatus::Pending | RunStatus::Running))
                .collect();
            match spec.concurrency_policy {
                ConcurrencyPolicy::Allow => {}
                ConcurrencyPolicy::Forbid if !active.is_empty() => {
                    d.skipped_active.push(target(&pvc.name, destination));
                    continue;
                }
                ConcurrencyPolicy::Forbid => {}
                ConcurrencyPolicy::Replace => d.replace.extend(active.iter().map(|r| r.name.clone())),
            }
            let node = match &pvc.mounted_by {
                Some((pod, _)) if pvc.read_write_once_pod => {
                    d.refused.push(ObservedRun {
                        name,
                        object: RunObject::NotStarted,
                        pvc: pvc.name.clone(),
                        destination: destination.to_owned(),
                        scheduled: Some(scheduled),
                        status: RunStatus::Failed,
                        start: Some(observed.now),
                        completion: Some(observed.now),
                        reason: Some("ReadWriteOncePod".into()),
                        message: format!(
                            "PVC {} is ReadWriteOncePod and mounted by pod {pod}: no other pod can mount it while that pod runs (stop it, or back up with the snapshot strategy)",
                            pvc.name
                        ),
                        recorded: true,
                        ..ObservedRun::default()
                    });
                    continue;
                }
                Some((_, node)) if pvc.read_write_once => node.clone(),
                _ => None,
            };
            d.create.push(NewRun { name, pvc: pvc.name.clone(), destination: destination.to_owned(), scheduled, node });
        }
    }
    // Runs to a destination the spec no longer has are left as they are: there is nothing to
    // prune them with, and nothing new arrives to replace them.
    let current: Vec<ObservedRun> = observed.runs.iter().filter(|r| observed.knows(r)).cloned().collect();
    let dropped: Vec<String> = retention(&current, spec.retention_count, spec.failed_jobs_history_limit)
        .into_iter()
        .filter(|n| !d.replace.contains(n) && !observed.held.contains(n))
        .collect();
    let (steps, failed) = prune_steps(&dropped, &observed.runs, &observed.prunes);
    d.prune = steps;
    d.prune_failed = failed;
    let deleting: Vec<&str> = d
        .prune
        .iter()
        .filter_map(|step| match step {
            PruneStep::Delete { run, .. } | PruneStep::Finish { run, .. } => Some(run.as_str()),
            PruneStep::Start { .. } => None,
        })
        .chain(d.replace.iter().map(String::as_str))
        .collect();
    d.relist = listing(&observed.runs, &d.create, &deleting, spec.retention_count);
    let next_verify = verification(observed, &mut d);
    let next_stuck = stuck_runs(observed, &mut d);

    let newest_run = observed.runs.iter().filter_map(|r| r.scheduled).max();
    d.last_schedule_time = observed.last_schedule_time.max(newest_run);
    d.next_schedule_time = if spec.suspend { None } else { when.next };
    d.missed = when.missed;
    d.skipped_past_deadline = when.skipped_past_deadline;
    // A run in progress needs no periodic look: its Job and its pods trigger the policy (see
    // `cache::Changes` for the trigger that used to be lost); only times decide when to look.
    d.requeue_at = match (spec.suspend, next_stuck) {
        (true, stuck) => [stuck, observed.cause_reportable_at].into_iter().flatten().min(),
        (false, stuck) => [when.next, next_verify, stuck, observed.cause_reportable_at].into_iter().flatten().min(),
    };
    d
}

/// Runs stuck past `startTimeoutSeconds` are failed with their cause; the earliest moment another
/// one will be is when to look again.
fn stuck_runs(observed: &Observed, d: &mut Decision) -> Option<DateTime<Utc>> {
    let timeout = chrono::Duration::seconds(observed.spec.start_timeout_seconds.max(1));
    let mut next: Option<DateTime<Utc>> = None;
    for run in observed.runs.iter().filter(|r| matches!(r.status, RunStatus::Pending | RunStatus::Running)) {
        let (Some(stuck), Some(start)) = (&run.stuck, run.start) else { continue };
        let deadline = start + timeout;
        if observed.now >= deadline {
            d.fail_stuck.push(FailStuck {
                run: run.name.clone(),
                pvc: run.pvc.clone(),
                cause: format!("{}: {}", stuck.reason, stuck.message),
                elapsed_seconds: (observed.now - start).num_seconds(),
            });
        } else {
            next = Some(next.map_or(deadline, |n| n.min(deadline)));
        }
    }
    next
}

/// The newest of `runs` for each series (PVC and destination).
fn newest_per_pvc<'a>(runs: impl Iterator<Item = &'a ObservedRun>) -> BTreeMap<(&'a str, &'a str), &'a ObservedRun> {
    let mut newest: BTreeMap<(&str, &str), &ObservedRun> = BTreeMap::new();
    for run in runs {
        let entry = newest.entry(run.series()).or_insert(run);
        if newest_first(run, entry).is_lt() {
            *entry = run;
        }
    }
    newest
}

/// Whether backups are working, from the runs as they stand after this reconcile.
pub fn readiness(observed: &Observed, runs: &[ObservedRun], prune_failed: &[(String, String)]) -> Readiness {
    let not_ready = |reason, message: String| Readiness { not_ready: Some(reason), reason: None, message };
    let broken: Vec<&(NotReady, String)> = observed.destinations.iter().filter_map(|d| d.problem.as_ref()).collect();
    if let Some((reason, _)) = broken.first() {
        let others = observed.destinations.len() - broken.len();
        let list: Vec<&str> = broken.iter().map(|(_, m)| m.as_str()).collect();
        let tail = if others > 0 { format!(" (backups to the other {others} destination(s) go on)") } else { String::new() };
        return not_ready(*reason, format!("{}{tail}", list.join("; ")));
    }
    if observed.pvcs.is_empty() {
        let message = match unbound_note(observed) {
            Some(note) => format!("no bound PersistentVolumeClaim in this namespace matches spec.pvcSelector ({note})"),
            None => "no PersistentVolumeClaim in this namespace matches spec.pvcSelector".to_owned(),
        };
        return not_ready(NotReady::NoMatchingPvcs, message);
    }
    // The latest finished run of each PVC decides whether backups are working.
    // Only the destinations the spec has now decide (an old failure at a removed one never heals).
    let latest = newest_per_pvc(runs.iter().filter(|r| r.finished() && observed.knows(r)));
    let newest_success = newest_per_pvc(runs.iter().filter(|r| r.status == RunStatus::Succeeded && observed.knows(r)));
    // A run that cannot start says so at once, before its timeout fails it.
    if let Some(run) = runs.iter().filter(|r| matches!(r.status, RunStatus::Pending | RunStatus::Running) && observed.knows(r)).find(|r| r.stuck.is_some()) {
        let stuck = run.stuck.clone().unwrap_or_else(|| crate::runs::stuck::Stuck { reason: "RunStuck", message: String::new() });
        return Readiness {
            not_ready: Some(NotReady::RunStuck),
            reason: Some(stuck.reason.to_owned()),
            message: format!("{} ({}) cannot start: {} (failed after spec.startTimeoutSeconds)", run.target(), run.name, stuck.message),
        };
    }
    let failed: Vec<&&ObservedRun> = latest.values().filter(|r| r.status == RunStatus::Failed).collect();
    if let Some(first) = failed.first() {
        let list: Vec<String> = failed.iter().map(|r| format!("{} ({}): {}", r.target(), r.name, r.message)).collect();
        return Readiness {
            not_ready: Some(NotReady::BackupFailed),
            // A run that could not even start says why (PluginFailed, PlanRefused, JobRefused,
            // ...), and so does one whose script named its cause (DestinationUnreachable).
            reason: first.reason.clone().filter(|reason| {
                let specific = first.object == RunObject::NotStarted || crate::runs::report::FAILURE_REASONS.contains(&reason.as_str());
                specific && failed.iter().all(|r| r.reason == first.reason)
            }),
            message: format!("latest backup failed for {}", list.join("; ")),
        };
    }
    let corrupted: Vec<String> = newest_success
        .values()
        .filter(|r| r.corrupted())
        .map(|r| format!("{} ({}): {}", r.target(), r.name, r.verify.as_ref().map(|v| v.message.as_str()).unwrap_or_default()))
        .collect();
    if !corrupted.is_empty() {
        return not_ready(NotReady::BackupCorrupted, format!("the newest backup is corrupted for {}", corrupted.join("; ")));
    }
    if let Some((_, message)) = prune_failed.first() {
        return not_ready(NotReady::PruneFailed, format!("{message} (the backup is kept; delete the failed prune Job to retry)"));
    }
    let scheduled = format!("{} PVC(s) scheduled", observed.pvcs.len());
    let message = match unbound_note(observed) {
        Some(note) => format!("{scheduled}; {note}"),
        None => scheduled,
    };
    Readiness { not_ready: None, reason: None, message }
}

/// PVCs listed in a message, at most.
const LISTED_PVCS: usize = 10;

/// The unbound matched PVCs, named (at most [`LISTED_PVCS`]).
fn unbound_note(observed: &Observed) -> Option<String> {
    observed.unbound.first()?;
    let names: Vec<String> = observed.unbound.iter().take(LISTED_PVCS).map(|(n, phase)| format!("{n} ({phase})")).collect();
    let more = observed.unbound.len().saturating_sub(LISTED_PVCS);
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    Some(format!("not backed up until bound: {}{more}", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use crate::runs::run_name;
    use super::*;
    use crate::api::VerifySpec;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    fn spec(schedule: &str) -> BackupPolicySpec {
        serde_json::from_value(serde_json::json!({"schedule": schedule, "pvcSelector": {"matchLabels": {"app": "db"}}})).expect("spec")
    }

    fn run(name: &str, pvc: &str, scheduled: &str, status: RunStatus) -> ObservedRun {
        let finished = matches!(status, RunStatus::Succeeded | RunStatus::Failed);
        ObservedRun {
            name: name.into(),
            pvc: pvc.into(),
            scheduled: Some(t(scheduled)),
            status,
            start: Some(t(scheduled)),
            completion: finished.then(|| t(scheduled) + chrono::Duration::seconds(5)),
            artifact: (status == RunStatus::Succeeded).then(|| format!("{name}.tar.gz")),
            recorded: finished,
            verifies: true,
            ..ObservedRun::default()
        }
    }

    fn pvc(name: &str) -> ObservedPvc {
        ObservedPvc { name: name.into(), read_write_once: true, ..ObservedPvc::default() }
    }

    fn observed(now: &str) -> Observed {
        Observed {
            now: t(now),
            unbound: Vec::new(),
            namespace: "prod".into(),
            policy: "db-backup".into(),
            spec: spec("*/1 * * * *"),
            created: t("2026-11-29T00:00:10Z"),
            last_schedule_time: None,
            last_verify_time: None,
            resumed_at: None,
            pvcs: vec![pvc("data-db-0"), pvc("data-db-1")],
            destinations: vec![ObservedDestination::default()],
            runs: Vec::new(),
            prunes: Vec::new(),
            verifies: Vec::new(),
            cleanup: None,
            deleting: false,
            has_finalizer: false,
            held: BTreeSet::new(),
            restoring: BTreeMap::new(),
            cause_reportable_at: None,
        }
    }

    fn new_run(pvc: &str, at: DateTime<Utc>) -> NewRun {
        NewRun { name: run_name("db-backup", pvc, at), pvc: pvc.into(), destination: String::new(), scheduled: at, node: None }
    }

    #[test]
    fn a_due_run_creates_one_run_per_pvc_once() {
        let d = decide(&observed("2026-11-29T00:01:05Z"));
        let at = t("2026-11-29T00:01:00Z");
        assert_eq!(d.create, vec![new_run("data-db-0", at), new_run("data-db-1", at)]);
        assert_eq!(d.due, Some(at));
        assert_eq!(d.requeue_at, Some(t("2026-11-29T00:02:00Z")));

        // The same tick observed again with the Jobs present (or with a lost status): nothing new.
        let mut again = observed("2026-11-29T00:01:40Z");
        again.runs = d.create.iter().map(|r| run(&r.name, &r.pvc, "2026-11-29T00:01:00Z", RunStatus::Running)).collect();
        assert_eq!(decide(&again).create, vec![]);
        // A restart that lost the status, before the Jobs were seen: same names, so creates are no-ops.
        let lost = decide(&observed("2026-11-29T00:01:40Z"));
        assert_eq!(lost.create, d.create);
    }

    #[test]
    fn a_crash_between_two_creates_completes_the_run() {
        // The operator created data-db-0's Job for 00:02 and died before data-db-1's and before
        // writing the status, which still says 00:01.
        let mut o = observed("2026-11-29T00:02:20Z");
        o.last_schedule_time = Some(t("2026-11-29T00:01:00Z"));
        let at = t("2026-11-29T00:02:00Z");
        o.runs = vec![
            run(&run_name("db-backup", "data-db-0", t("2026-11-29T00:01:00Z")), "data-db-0", "2026-11-29T00:01:00Z", RunStatus::Succeeded),
            run(&run_name("db-backup", "data-db-1", t("2026-11-29T00:01:00Z")), "data-db-1", "2026-11-29T00:01:00Z", RunStatus::Succeeded),
            run(&run_name("db-backup", "data-db-0", at), "data-db-0", "2026-11-29T00:02:00Z", RunStatus::Running),
        ];
        let d = decide(&o);
        assert_eq!(d.create, vec![new_run("data-db-1", at)]);
        assert_eq!(d.skipped_active, Vec::<String>::new(), "data-db-0's own Job for this run is not a previous run");
        assert_eq!(d.due, Some(at));
    }

    #[test]
    fn a_recorded_failure_covers_its_pvc_for_that_run() {
        let mut o = observed("2026-11-29T00:01:30Z");
        let at = t("2026-11-29T00:01:00Z");
        o.runs = vec![ObservedRun {
            object: RunObject::NotStarted,
            reason: Some("PluginFailed".into()),
            ..run(&run_name("db-backup", "data-db-1", at), "data-db-1", "2026-11-29T00:01:00Z", RunStatus::Failed)
        }];
        let d = decide(&o);
        assert_eq!(d.create, vec![new_run("data-db-0", at)], "the failed PVC is not planned again for the same time");
        let r = readiness(&o, &o.runs, &[]);
        assert_eq!((r.not_ready, r.reason.as_deref()), (Some(NotReady::BackupFailed), Some("PluginFailed")));
        let h = history("prod", "db-backup", &o.runs);
        assert!(h[0].not_started && h[0].reason.as_deref() == Some("PluginFailed"));
    }

    #[test]
    fn concurrency_policies_apply_per_pvc() {
        let mut o = observed("2026-11-29T00:02:05Z");
        o.last_schedule_time = Some(t("2026-11-29T00:01:00Z"));
        o.runs = vec![run("old-0", "data-db-0", "2026-11-29T00:01:00Z", RunStatus::Running), run("old-1", "data-db-1", "2026-11-29T00:01:00Z", RunStatus::Succeeded)];
        let forbid = decide(&o);
        assert_eq!(forbid.create.iter().map(|r| r.pvc.as_str()).collect::<Vec<_>>(), ["data-db-1"]);
        assert_eq!(forbid.skipped_active, ["data-db-0"]);
        assert!(forbid.replace.is_empty());

        o.spec.concurrency_policy = ConcurrencyPolicy::Replace;
        let replace = decide(&o);
        assert_eq!(replace.create.len(), 2);
        assert_eq!(replace.replace, ["old-0"]);

        o.spec.concurrency_policy = ConcurrencyPolicy::Allow;
        let allow = decide(&o);
        assert_eq!((allow.create.len(), allow.replace.len()), (2, 0));
    }

    #[test]
    fn claims_in_use_pin_the_node_or_refuse_read_write_once_pod() {
        let mut o = observed("2026-11-29T00:01:05Z");
        o.pvcs[0].mounted_by = Some(("db-0".into(), Some("node-a".into())));
        o.pvcs[1] = ObservedPvc { name: "data-db-1".into(), read_write_once_pod: true, mounted_by: Some(("db-1".into(), Some("node-b".into()))), ..ObservedPvc::default() };
        let d = decide(&o);
        assert_eq!(d.create.len(), 1);
        assert_eq!(d.create[0].node.as_deref(), Some("node-a"));
        assert_eq!(d.refused.len(), 1);
        assert_eq!(d.refused[0].reason.as_deref(), Some("ReadWriteOncePod"));
        assert!(d.refused[0].message.contains("db-1"), "{}", d.refused[0].message);
        assert_eq!(d.due, Some(t("2026-11-29T00:01:00Z")), "a refused PVC is covered by its recorded failure");
    }

    #[test]
    fn retention_keeps_the_newest_successes_and_never_the_last_good_one() {
        type Case = (&'static str, Vec<(&'static str, RunStatus)>, u32, u32, Vec<&'static str>);
        use RunStatus::*;
        let cases: Vec<Case> = vec![
            ("under the limit", vec![("a", Succeeded), ("b", Succeeded)], 3, 1, vec![]),
            ("over the limit: oldest go", vec![("a", Succeeded), ("b", Succeeded), ("c", Succeeded), ("d", Succeeded)], 2, 1, vec!["a", "b"]),
            ("failures after the last success keep it", vec![("a", Succeeded), ("b", Failed), ("c", Failed), ("d", Failed)], 1, 1, vec!["b", "c"]),
            ("failed history limit 0", vec![("a", Succeeded), ("b", Failed)], 1, 0, vec!["b"]),
            ("active runs are never deleted", vec![("a", Succeeded), ("b", Succeeded), ("c", Running), ("d", Pending)], 1, 0, vec!["a"]),
            ("only failures: keep the newest failed", vec![("a", Failed), ("b", Failed)], 1, 1, vec!["a"]),
        ];
        for (what, runs, keep, keep_failed, want) in cases {
            let runs: Vec<ObservedRun> =
                runs.iter().enumerate().map(|(i, (name, status))| run(name, "data-db-0", &format!("2026-11-29T00:0{i}:00Z"), *status)).collect();
            assert_eq!(retention(&runs, keep, keep_failed), want, "{what}");
        }
        let runs = vec![
            run("a0", "data-db-0", "2026-11-29T00:01:00Z", Succeeded),
            run("a1", "data-db-1", "2026-11-29T00:02:00Z", Succeeded),
            run("b1", "data-db-1", "2026-11-29T00:03:00Z", Succeeded),
        ];
        assert_eq!(retention(&runs, 1, 0), ["a1"], "per PVC, not across PVCs");
    }

    #[test]
    fn restores_hold_their_backup_and_their_target() {
        use RunStatus::*;
        let mut o = observed("2026-11-29T00:04:05Z");
        o.spec.retention_count = 1;
        o.last_schedule_time = Some(t("2026-11-29T00:03:00Z"));
        o.runs = vec![
            run("old", "data-db-0", "2026-11-29T00:01:00Z", Succeeded),
            run("mid", "data-db-0", "2026-11-29T00:02:00Z", Succeeded),
            run("new", "data-db-0", "2026-11-29T00:03:00Z", Succeeded),
        ];
        let pruned = |d: &Decision| -> Vec<String> {
            let mut runs: Vec<String> = d.prune.iter().filter_map(|s| match s { PruneStep::Start { run, .. } => Some(run.clone()), _ => None }).collect();
            runs.sort();
            runs
        };
        assert_eq!(pruned(&decide(&o)), ["mid", "old"]);
        o.held = BTreeSet::from(["old".to_owned()]);
        o.restoring = BTreeMap::from([("data-db-0".to_owned(), "restore-db".to_owned())]);
        let d = decide(&o);
        assert_eq!(pruned(&d), ["mid"], "the backup a restore reads is kept");
        assert_eq!(d.create.iter().map(|n| n.pvc.as_str()).collect::<Vec<_>>(), ["data-db-1"], "the PVC being restored is not backed up");
        assert_eq!(d.skipped_restoring, [("data-db-0".to_owned(), "restore-db".to_owned())]);
        o.spec.deletion_policy = DeletionPolicy::Delete;
        o.deleting = true;
        o.has_finalizer = true;
        let d = decide(&o);
        assert_eq!(pruned(&d), ["mid", "new"]);
        assert_eq!(d.finalize, Some(Finalize::Wait), "deleting waits for the restore");
    }

    #[test]
    fn retention_prunes_artifacts_before_deleting_their_runs() {
        use RunStatus::*;
        let runs = vec![
            run("ok", "data-db-0", "2026-11-29T00:01:00Z", Succeeded),
            run("bad", "data-db-0", "2026-11-29T00:02:00Z", Failed),
            ObservedRun { object: RunObject::Snapshot, ..run("snap", "data-db-0", "2026-11-29T00:03:00Z", Succeeded) },
            ObservedRun { object: RunObject::NotStarted, ..run("never", "data-db-0", "2026-11-29T00:04:00Z", Failed) },
            run("pruning", "data-db-0", "2026-11-29T00:05:00Z", Succeeded),
            run("pruned", "data-db-0", "2026-11-29T00:06:00Z", Succeeded),
            run("stuck", "data-db-0", "2026-11-29T00:07:00Z", Succeeded),
        ];
        let aux = |name: &str, run: &str, status| ObservedAux { name: name.into(), run: run.into(), status, message: "exit 1".into(), ..ObservedAux::default() };
        let prunes = vec![aux("p1", "pruning", Running), aux("p2", "pruned", Succeeded), aux("p3", "stuck", Failed), aux("p4", "gone", Succeeded)];
        let dropped: Vec<String> = ["ok", "bad", "snap", "never", "pruning", "pruned", "stuck"].map(String::from).to_vec();
        let (steps, failed) = prune_steps(&dropped, &runs, &prunes);
        assert_eq!(
            steps,
            vec![
                PruneStep::Start { run: "ok".into(), pvc: "data-db-0".into(), artifact: "ok.tar.gz".into(), job: "ok-prune".into() },
                PruneStep::Delete { run: "bad".into(), object: RunObject::Job },
                PruneStep::Delete { run: "snap".into(), object: RunObject::Snapshot },
                PruneStep::Delete { run: "never".into(), object: RunObject::NotStarted },
                PruneStep::Finish { run: "pruned".into(), prune_job: "p2".into(), seconds: None },
                PruneStep::Finish { run: "gone".into(), prune_job: "p4".into(), seconds: None },
            ]
        );
        assert_eq!(failed.len(), 1);
        assert!(failed[0].0 == "stuck" && failed[0].1.contains("exit 1"), "{failed:?}");
        let mut o = observed("2026-11-29T00:08:00Z");
        o.runs = runs;
        assert_eq!(readiness(&o, &o.runs, &failed).not_ready, Some(NotReady::PruneFailed));
    }

    #[test]
    fn history_is_newest_first_capped_and_carries_the_record() {
        let mut runs: Vec<ObservedRun> =
            (0..12).map(|i| run(&format!("j{i:02}"), "data-db-0", &format!("2026-11-29T00:{i:02}:00Z"), RunStatus::Succeeded)).collect();
        runs[11].report = Some(Report { size_bytes: Some(42), sha256: Some("f".repeat(64)), verified: Some(true), message: String::new(), reason: None });
        let h = history("prod", "db-backup", &runs);
        assert_eq!(h.len(), HISTORY_LIMIT);
        assert_eq!(h[0].job_name, "j11");
        assert_eq!(h[9].job_name, "j02");
        assert_eq!(h[0].artifact.as_deref(), Some("prod/db-backup/data-db-0/j11.tar.gz"));
        assert_eq!((h[0].size_bytes, h[0].verified), (Some(42), Some(true)));
        assert_eq!(h[0].message, "written and verified: prod/db-backup/data-db-0/j11.tar.gz");
        runs[11].verifies = false;
        let h = history("prod", "db-backup", &runs);
        assert_eq!(h[0].verified, Some(false));
        assert!(h[0].message.starts_with("written, unverified"), "a plan that verifies nothing is not called verified: {}", h[0].message);
    }

    #[test]
    fn not_ready_reasons() {
        let mut bad_cron = observed("2026-11-29T00:01:05Z");
        bad_cron.spec.schedule = "every minute".into();
        let d = decide(&bad_cron);
        assert_eq!((d.invalid.map(|r| r.not_ready), d.create.len(), d.requeue_at), (Some(Some(NotReady::InvalidSchedule)), 0, None));

        let mut bad_tz = observed("2026-11-29T00:01:05Z");
        bad_tz.spec.time_zone = Some("Nowhere/Special".into());
        assert_eq!(decide(&bad_tz).invalid.and_then(|r| r.not_ready), Some(NotReady::InvalidTimeZone));

        let mut no_storage = observed("2026-11-29T00:01:05Z");
        no_storage.destinations[0].problem = Some((NotReady::BackupStorageMissing, "claim \"store\" does not exist".into()));
        let d = decide(&no_storage);
        assert_eq!((readiness(&no_storage, &[], &[]).not_ready, d.create.len(), d.due), (Some(NotReady::BackupStorageMissing), 0, None));
        assert!(readiness(&no_storage, &[], &[]).message.contains("does not exist"));

        let mut no_pvcs = observed("2026-11-29T00:01:05Z");
        no_pvcs.pvcs.clear();
        assert_eq!(readiness(&no_pvcs, &[], &[]).not_ready, Some(NotReady::NoMatchingPvcs));
        // A matched claim that is not bound is named, whether or not others are backed up.
        no_pvcs.unbound = vec![("data-db-2".into(), "Pending".into())];
        let r = readiness(&no_pvcs, &[], &[]);
        assert_eq!(r.not_ready, Some(NotReady::NoMatchingPvcs));
        assert!(r.message.contains("data-db-2 (Pending)"), "{}", r.message);
        let mut some_pending = observed("2026-11-29T00:01:05Z");
        some_pending.unbound = vec![("data-db-2".into(), "Pending".into())];
        let r = readiness(&some_pending, &[], &[]);
        assert_eq!(r.not_ready, None);
        assert!(r.message.contains("scheduled") && r.message.contains("not backed up until bound: data-db-2 (Pending)"), "{}", r.message);

        // A run whose script named its cause makes that the reason; a Job's own reason does not.
        let mut unreachable = observed("2026-11-29T00:03:05Z");
        unreachable.runs = vec![ObservedRun { reason: Some("DestinationUnreachable".into()), message: "s3 does not answer".into(), ..run("u", "data-db-0", "2026-11-29T00:02:00Z", RunStatus::Failed) }];
        let r = readiness(&unreachable, &unreachable.runs, &[]);
        assert_eq!((r.not_ready, r.reason.as_deref()), (Some(NotReady::BackupFailed), Some("DestinationUnreachable")));

        let mut failing = observed("2026-11-29T00:03:05Z");
        failing.runs = vec![
            run("ok", "data-db-0", "2026-11-29T00:01:00Z", RunStatus::Succeeded),
            ObservedRun { message: "BackoffLimitExceeded".into(), reason: Some("BackoffLimitExceeded".into()), ..run("bad", "data-db-0", "2026-11-29T00:02:00Z", RunStatus::Failed) },
        ];
        let r = readiness(&failing, &failing.runs, &[]);
        assert_eq!((r.not_ready, r.reason), (Some(NotReady::BackupFailed), None), "a failed Job is BackupFailed");
        assert!(r.message.contains("BackoffLimitExceeded"));
        assert_eq!(last_success(&failing.runs), Some(t("2026-11-29T00:01:05Z")));
    }

    #[test]
    fn verification_runs_on_its_schedule_and_corruption_holds_until_a_newer_good_backup() {
        let mut o = observed("2026-11-29T00:10:05Z");
        o.last_schedule_time = Some(t("2026-11-29T00:10:00Z"));
        o.last_verify_time = Some(t("2026-11-29T00:05:00Z"));
        o.spec.verify = Some(VerifySpec { schedule: "*/10 * * * *".into(), newest: 2 });
        o.runs = vec![
            run("r1", "data-db-0", "2026-11-29T00:01:00Z", RunStatus::Succeeded),
            run("r2", "data-db-0", "2026-11-29T00:02:00Z", RunStatus::Succeeded),
            run("r3", "data-db-0", "2026-11-29T00:03:00Z", RunStatus::Succeeded),
            run("f4", "data-db-0", "2026-11-29T00:04:00Z", RunStatus::Failed),
        ];
        let d = decide(&o);
        let minutes = t("2026-11-29T00:10:00Z").timestamp() / 60;
        assert_eq!(d.verify_start.iter().map(|v| v.run.as_str()).collect::<Vec<_>>(), ["r3", "r2"], "the newest 2 successes");
        assert_eq!(d.verify_start[0].job, format!("r3-verify-{minutes}"));
        assert_eq!(d.last_verify_time, Some(t("2026-11-29T00:10:00Z")));
        assert_eq!(d.requeue_at, Some(t("2026-11-29T00:11:00Z")));

        o.verifies = vec![ObservedAux {
            name: "r3-verify".into(),
            run: "r3".into(),
            status: RunStatus::Failed,
            report: Some(Report { verified: Some(false), message: "sha256 does not match".into(), ..Report::default() }),
            ..ObservedAux::default()
        }];
        let d = decide(&o);
        assert_eq!(d.verify_done.len(), 1);
        assert!(!d.verify_done[0].record.verified && d.verify_done[0].record.message.contains("sha256"));
        let mut after = o.runs.clone();
        after[2].verify = Some(d.verify_done[0].record.clone());
        // The failed run f4 is the latest finished run, so that is reported first; without it the
        // corrupted newest backup is.
        after.retain(|r| r.name != "f4");
        let r = readiness(&o, &after, &[]);
        assert_eq!(r.not_ready, Some(NotReady::BackupCorrupted), "{}", r.message);
        after.push(run("r5", "data-db-0", "2026-11-29T00:05:00Z", RunStatus::Succeeded));
        assert_eq!(readiness(&o, &after, &[]).not_ready, None, "a newer good backup clears it");
        assert!(history("prod", "db-backup", &after).iter().any(|h| h.job_name == "r3" && h.verified == Some(false)));
    }

    #[test]
    fn deleting_with_delete_prunes_everything_then_cleans_up_then_lets_go() {
        use RunStatus::*;
        let mut o = observed("2026-11-29T00:05:00Z");
        o.spec.deletion_policy = DeletionPolicy::Delete;
        assert!(decide(&o).add_finalizer, "a Delete policy gets the finalizer");
        o.has_finalizer = true;
        o.deleting = true;
        o.runs = vec![run("a", "data-db-0", "2026-11-29T00:01:00Z", Succeeded), run("b", "data-db-0", "2026-11-29T00:02:00Z", Failed)];
        let d = decide(&o);
        assert!(d.create.is_empty());
        assert_eq!(d.prune.len(), 2, "even the newest success goes: {:?}", d.prune);
        assert_eq!(d.finalize, Some(Finalize::Wait));
        o.runs.clear();
        assert_eq!(decide(&o).finalize, Some(Finalize::StartCleanup));
        o.cleanup = Some(ObservedAux { name: "c".into(), status: Succeeded, ..ObservedAux::default() });
        assert_eq!(decide(&o).finalize, Some(Finalize::RemoveFinalizer));
        o.spec.deletion_policy = DeletionPolicy::Retain;
        o.cleanup = None;
        o.runs = vec![run("a", "data-db-0", "2026-11-29T00:01:00Z", Succeeded)];
        let d = decide(&o);
        assert_eq!((d.finalize, d.prune.len()), (Some(Finalize::RemoveFinalizer), 0), "Retain keeps every backup");
    }

    #[test]
    fn a_run_that_cannot_start_is_reported_then_failed_after_the_start_timeout() {
        let mut o = observed("2026-11-29T00:01:30Z");
        o.last_schedule_time = Some(t("2026-11-29T00:01:00Z"));
        let stuck = crate::runs::stuck::Stuck { reason: "ImageError", message: "ErrImagePull: not found".into() };
        o.runs = vec![ObservedRun { stuck: Some(stuck), recorded: false, ..run("r1", "data-db-0", "2026-11-29T00:01:00Z", RunStatus::Pending) }];
        let d = decide(&o);
        assert!(d.fail_stuck.is_empty());
        assert_eq!(d.requeue_at, Some(t("2026-11-29T00:02:00Z")));
        let r = readiness(&o, &o.runs, &[]);
        assert_eq!((r.not_ready, r.reason.as_deref()), (Some(NotReady::RunStuck), Some("ImageError")));
        assert_eq!(history("prod", "db-backup", &o.runs)[0].reason.as_deref(), Some("ImageError"));

        o.spec.start_timeout_seconds = 20;
        let d = decide(&o);
        assert_eq!(d.fail_stuck.len(), 1);
        assert_eq!((d.fail_stuck[0].cause.as_str(), d.fail_stuck[0].elapsed_seconds), ("ImageError: ErrImagePull: not found", 30));
    }

    #[test]
    fn a_run_in_progress_is_followed_by_its_triggers_not_by_a_timer() {
        // (run status, suspended) -> requeue at: the next scheduled time, or none when suspended
        let table = [
            (Some(RunStatus::Pending), false, Some("2026-11-29T01:01:00Z")),
            (Some(RunStatus::Running), false, Some("2026-11-29T01:01:00Z")),
            (Some(RunStatus::Running), true, None),
            (Some(RunStatus::Succeeded), false, Some("2026-11-29T01:01:00Z")),
            (None, false, Some("2026-11-29T01:01:00Z")),
        ];
        for (status, suspend, want) in table {
            let mut o = observed("2026-11-29T00:01:05Z");
            o.spec.schedule = "1 * * * *".into();
            o.spec.suspend = suspend;
            o.last_schedule_time = Some(t("2026-11-29T00:01:00Z"));
            o.runs = status.into_iter().map(|s| ObservedRun { recorded: s == RunStatus::Succeeded, ..run("r1", "data-db-0", "2026-11-29T00:01:00Z", s) }).collect();
            assert_eq!(decide(&o).requeue_at, want.map(t), "{status:?}, suspended {suspend}");
        }
    }

    #[test]
    fn kubectl_lists_the_newest_retention_count_jobs_of_each_series() {
        let job = |name: &str, pvc: &str, minute: u32, listed: bool| ObservedRun {
            listed,
            ..run(name, pvc, &format!("2026-11-29T00:{minute:02}:00Z"), RunStatus::Succeeded)
        };
        let new = |name: &str, pvc: &str, minute: u32| NewRun { name: name.into(), pvc: pvc.into(), destination: String::new(), scheduled: t(&format!("2026-11-29T00:{minute:02}:00Z")), node: None };
        let four = vec![job("a1", "a", 1, true), job("a2", "a", 2, true), job("a3", "a", 3, true), job("b1", "b", 1, true)];
        let not_started = ObservedRun { object: RunObject::NotStarted, ..job("a5", "a", 5, false) };
        // (runs, being created, retentionCount) -> changes
        let cases: Vec<(&str, Vec<ObservedRun>, Vec<NewRun>, u32, Vec<(&str, bool)>)> = vec![
            ("within the count", four.clone(), vec![], 3, vec![]),
            ("a new run pushes the oldest out", four.clone(), vec![new("a4", "a", 4)], 3, vec![("a1", false)]),
            ("series apart", four.clone(), vec![new("b2", "b", 2)], 1, vec![("a1", false), ("a2", false), ("b1", false)]),
            ("the count lowered", four.clone(), vec![], 1, vec![("a1", false), ("a2", false)]),
            ("the count raised again", vec![job("a1", "a", 1, false), job("a2", "a", 2, true)], vec![], 3, vec![("a1", true)]),
            ("a run being created that exists already", four.clone(), vec![new("a3", "a", 3)], 3, vec![]),
            ("records of runs never started are no Jobs", vec![job("a1", "a", 1, true), not_started], vec![], 1, vec![]),
        ];
        for (what, runs, creating, keep, want) in cases {
            let want: Vec<(String, bool)> = want.into_iter().map(|(n, l)| (n.to_owned(), l)).collect();
            assert_eq!(listing(&runs, &creating, &[], keep), want, "{what}");
        }
        // A Job being deleted now leaves its place to the next older one.
        let unlisted_older = vec![job("a1", "a", 1, false), job("a2", "a", 2, true), job("a3", "a", 3, true)];
        assert_eq!(listing(&unlisted_older, &[], &["a3"], 2), vec![("a1".to_owned(), true)]);
    }

    #[test]
    fn a_wait_for_a_node_is_reported_after_the_grace_other_causes_at_once() {
        let cause = |reason| Some(crate::runs::stuck::Stuck { reason, message: "pod x: 0/1 nodes are available".into() });
        // (cause, run age in seconds, start timeout) -> (still reported, reportable at +seconds)
        let table = [
            ("Unschedulable", 5, 600, false, Some(30)),
            ("Unschedulable", 29, 600, false, Some(30)),
            ("Unschedulable", 30, 600, true, None),
            ("Unschedulable", 4, 10, false, Some(5)),
            ("Unschedulable", 5, 10, true, None),
            ("Unschedulable", 0, 1, true, None),
            ("ImageError", 1, 600, true, None),
            ("PodRejected", 0, 600, true, None),
        ];
        for (reason, age, timeout, reported, at) in table {
            let start = t("2026-11-29T00:01:00Z");
            let mut runs = vec![ObservedRun { stuck: cause(reason), ..run("r1", "data-db-0", "2026-11-29T00:01:00Z", RunStatus::Pending) }];
            let reportable = defer_young_causes(&mut runs, start + chrono::Duration::seconds(age), timeout);
            assert_eq!((runs[0].stuck.is_some(), reportable), (reported, at.map(|s| start + chrono::Duration::seconds(s))), "{reason} after {age} s");
        }
        // The reconcile looks again when the cause becomes reportable.
        let mut o = observed("2026-11-29T00:01:05Z");
        o.last_schedule_time = Some(t("2026-11-29T00:01:00Z"));
        o.cause_reportable_at = Some(t("2026-11-29T00:01:30Z"));
        assert_eq!(decide(&o).requeue_at, Some(t("2026-11-29T00:01:30Z")));
        o.spec.suspend = true;
        assert_eq!(decide(&o).requeue_at, Some(t("2026-11-29T00:01:30Z")));
    }

    #[test]
    fn suspend_stops_runs_and_resume_does_not_replay() {
        let mut o = observed("2026-11-29T00:05:05Z");
        o.last_schedule_time = Some(t("2026-11-29T00:01:00Z"));
        o.spec.suspend = true;
        let d = decide(&o);
        assert!(d.suspended && d.create.is_empty() && d.requeue_at.is_none() && d.next_schedule_time.is_none());

        // Resumed at 00:05:03: the ticks at 00:02..00:05 belong to the suspended period.
        o.spec.suspend = false;
        o.resumed_at = Some(t("2026-11-29T00:05:03Z"));
        let d = decide(&o);
        assert!(d.create.is_empty(), "{:?}", d.create);
        assert_eq!(d.requeue_at, Some(t("2026-11-29T00:06:00Z")));
        o.now = t("2026-11-29T00:06:01Z");
        assert_eq!(decide(&o).create.len(), 2, "the first tick after resuming runs");
    }

    #[test]
    fn resume_time_comes_from_the_suspended_condition() {
        let now = t("2026-11-29T00:05:03Z");
        let before = t("2026-11-29T00:01:00Z");
        let cases = [
            ("never suspended, no status yet", None, false, None),
            ("still suspended", Some((true, before)), true, None),
            ("just resumed: the status still says suspended", Some((true, before)), false, Some(now)),
            ("resumed earlier", Some((false, before)), false, Some(before)),
            ("suspended again, status not yet written", Some((false, before)), true, Some(before)),
        ];
        for (what, condition, suspend, want) in cases {
            assert_eq!(resumed_at(condition, suspend, now), want, "{what}");
        }
    }

    #[test]
    fn a_long_outage_starts_one_catch_up_run() {
        let mut o = observed("2026-11-29T03:00:30Z");
        o.last_schedule_time = Some(t("2026-11-29T00:01:00Z"));
        let d = decide(&o);
        assert_eq!(d.create.len(), 2, "one run per PVC, not one per missed tick");
        assert!(d.create.iter().all(|r| r.scheduled == t("2026-11-29T03:00:00Z")));
        assert_eq!(d.missed, 179);
    }

    #[test]
    fn each_destination_is_a_series_of_its_own() {
        let named = |name: &str| ObservedDestination { name: name.into(), problem: None };
        let mut o = observed("2026-11-29T00:01:05Z");
        o.pvcs = vec![pvc("data-db-0"), pvc("data-db-1")];
        o.destinations = vec![named("local"), named("offsite")];
        let d = decide(&o);
        let created: Vec<(&str, &str)> = d.create.iter().map(|n| (n.pvc.as_str(), n.destination.as_str())).collect();
        assert_eq!(created, vec![("data-db-0", "local"), ("data-db-0", "offsite"), ("data-db-1", "local"), ("data-db-1", "offsite")]);
        let names: BTreeSet<&str> = d.create.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names.len(), 4, "one run name per PVC and destination");

        // A broken destination is left out; the others run, and readiness names the broken one.
        let mut one_broken = o.clone();
        one_broken.destinations[1].problem = Some((NotReady::DestinationCredentialsMissing, "Secret \"s3\" does not exist".into()));
        let d = decide(&one_broken);
        assert!(d.create.iter().all(|n| n.destination == "local") && d.create.len() == 2, "{:?}", d.create);
        let r = readiness(&one_broken, &[], &[]);
        assert_eq!(r.not_ready, Some(NotReady::DestinationCredentialsMissing));
        assert!(r.message.contains("Secret \"s3\"") && r.message.contains("other 1 destination"), "{}", r.message);

        // Concurrency, retention and the latest result are per destination.
        let at = |name: &str, dest: &str, when: &str, status| ObservedRun { destination: dest.into(), ..run(name, "data-db-0", when, status) };
        let mut busy = o.clone();
        busy.pvcs = vec![pvc("data-db-0")];
        busy.runs = vec![at("slow", "offsite", "2026-11-29T00:00:00Z", RunStatus::Running)];
        let d = decide(&busy);
        assert_eq!(d.create.iter().map(|n| n.destination.as_str()).collect::<Vec<_>>(), vec!["local"]);
        assert_eq!(d.skipped_active, vec!["data-db-0 to offsite".to_owned()]);
        let runs = vec![
            at("l1", "local", "2026-11-29T00:01:00Z", RunStatus::Succeeded),
            at("l2", "local", "2026-11-29T00:02:00Z", RunStatus::Succeeded),
            at("o1", "offsite", "2026-11-29T00:01:00Z", RunStatus::Succeeded),
            at("o2", "offsite", "2026-11-29T00:02:00Z", RunStatus::Failed),
        ];
        assert_eq!(retention(&runs, 1, 1), vec!["l1".to_owned()], "offsite keeps its only success");
        let mut failing = o.clone();
        failing.pvcs = vec![pvc("data-db-0")];
        let r = readiness(&failing, &runs, &[]);
        assert_eq!(r.not_ready, Some(NotReady::BackupFailed));
        assert!(r.message.contains("data-db-0 to offsite (o2)") && !r.message.contains("(l2)"), "{}", r.message);
        // A destination removed from the spec: its old failure no longer decides, and its runs are
        // neither pruned nor verified (there is nothing to do that with).
        let mut removed = failing.clone();
        removed.destinations = vec![named("local")];
        assert_eq!(readiness(&removed, &runs, &[]).not_ready, None, "only local decides now");
        assert_eq!(retention(&runs, 1, 1), vec!["l1".to_owned()]);
        removed.runs = runs.clone();
        removed.spec.retention_count = 1;
        removed.spec.failed_jobs_history_limit = 0;
        let d = decide(&removed);
        let pruned: Vec<String> = d.prune.iter().map(|p| format!("{p:?}")).collect();
        assert!(pruned.iter().any(|p| p.contains("\"l1\"")) && pruned.iter().all(|p| !p.contains("\"o2\"")), "{pruned:?}");
        let entry = history_entry("ns", "p", &runs[0]);
        assert_eq!((entry.destination.as_deref(), entry.artifact.as_deref()), (Some("local"), Some("local:ns/p/data-db-0/l1.tar.gz")));
    }
}
