//! What one reconcile observed of a policy: its PVCs, destinations, runs and their children, as
//! plain data for the pure decision.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::api::BackupPolicySpec;
use crate::runs::observed::{ObservedAux, ObservedRun};


/// A destination of the policy, and why no run can write to it (none: runs can).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedDestination {
    pub name: String,
    pub problem: Option<(NotReady, String)>,
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
