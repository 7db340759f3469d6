//! The reconcile decision, as a pure function of what was observed and `now`: which runs start,
//! which are recorded, pruned or verified, and what the status says. Nothing here talks to the
//! cluster.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::api::{ConcurrencyPolicy, DeletionPolicy, RunStatus};
use crate::base::names::{child_name, run_name_to};
use crate::policy::schedule::{self, Schedule, ScheduleError};
use crate::runs::observed::{ObservedAux, ObservedRun, RunObject, VerifyRecord, newest_first, target};
use super::observed::Observed;
use super::observed::NotReady;
use super::readiness::Readiness;

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

/// The specification's `kubectl get jobs -l backup-policy=<policy>` shows at most
/// `retentionCount` Jobs of each series (PVC and destination): the newest ones, counting the runs
/// being created now. Older backup Jobs leave the listing at once (they lose the public labels);
/// they stay, under the operator's own labels, as the records of artifacts that retention keeps
/// until newer backups succeed (the newest successful artifact is never pruned). Returns the
/// Jobs whose listing changes: (run, listed).
/// A run of a series as the listing sees it: scheduled time, name, listed now (`None`: created
/// in this reconcile).
type ListedRun<'a> = (Option<DateTime<Utc>>, &'a str, Option<bool>);

pub fn listing(runs: &[ObservedRun], creating: &[NewRun], deleting: &[&str], keep: u32) -> Vec<(String, bool)> {
    let keep = keep.max(1) as usize;
    // (scheduled, name, listed now) per series; new runs are listed when created, and Jobs being
    // deleted now take no place.
    let mut by_series: BTreeMap<(&str, &str), Vec<ListedRun<'_>>> = BTreeMap::new();
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


#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
