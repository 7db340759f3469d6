//! Whether a policy is backing up, and if not why: the Ready condition's facts, a pure function
//! of what was observed.

use std::collections::BTreeMap;


use crate::api::RunStatus;
use crate::runs::observed::{ObservedRun, RunObject, newest_first};
use super::observed::{NotReady, Observed};



#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub not_ready: Option<NotReady>,
    /// A more specific reason than `not_ready`'s, from the failed run (PluginFailed, PlanRefused…).
    pub reason: Option<String>,
    pub message: String,
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
