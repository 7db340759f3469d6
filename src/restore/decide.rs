//! Deciding a restore's next step: pure functions of what was observed and `now`.

use chrono::{DateTime, Utc};

use crate::api::restore::{BackupRestoreSpec, RestoredBackup};
use crate::api::{RestorePhase, RunStatus, to_time};
use crate::runs::observed::{ObservedAux, RunObject};

/// Candidate backups listed in a refusal, at most.
const LISTED: usize = 5;

/// One backup of the source PVC, as the policy's runs record it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Candidate {
    pub run: String,
    /// The destination the backup is at ("" without spec.destinations).
    pub destination: String,
    pub object: RunObject,
    pub scheduled: Option<DateTime<Utc>>,
    pub status: RunStatus,
    /// Verified after writing and not found damaged since (none: the run did not succeed).
    pub verified: Option<bool>,
    /// The run's history message (why it is unverified or failed).
    pub message: String,
    /// The artifact as the plan named it (relative to the PVC's directory), or the snapshot.
    pub artifact: Option<String>,
    /// Where it is, as the policy's history shows it.
    pub artifact_path: Option<String>,
    pub sha256: Option<String>,
}

/// The PVC a restore writes into.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedTarget {
    pub name: String,
    /// The restore creates it (`target.newClaim`).
    pub create: bool,
    pub exists: bool,
    /// It exists and this restore created it.
    pub ours: bool,
    pub bound: bool,
    /// A running (or starting) pod, not one of the operator's, that mounts it.
    pub in_use_by: Option<String>,
    /// Another unfinished restore that holds the target's lock (its name).
    pub busy_with: Option<String>,
}

/// Everything a restore's decision needs.
#[derive(Debug, Clone)]
pub struct RestoreObserved {
    pub now: DateTime<Utc>,
    pub spec: BackupRestoreSpec,
    pub phase: Option<RestorePhase>,
    pub started: Option<DateTime<Utc>>,
    /// The backup chosen earlier (held by this restore since).
    pub chosen: Option<RestoredBackup>,
    /// The policy exists (and is not being deleted).
    pub policy_exists: bool,
    /// The source PVC's backups, any order.
    pub candidates: Vec<Candidate>,
    pub source_pvc_exists: bool,
    pub target: ObservedTarget,
    /// The restore Job, once created.
    pub job: Option<ObservedAux>,
    /// Why the restore Job's pod cannot start (an image error, no node), when it cannot.
    pub job_stuck: Option<crate::runs::stuck::Stuck>,
    /// The policy's `startTimeoutSeconds`: how long a restore Job may take to start.
    pub start_timeout_seconds: i64,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Finished earlier: nothing to do.
    Done,
    /// Final failure: the condition's reason and message.
    Fail { reason: &'static str, message: String },
    /// Create the target PVC (empty, or from the VolumeSnapshot `from_snapshot`), then look again.
    CreateClaim { from_snapshot: Option<String> },
    /// Create the restore Job through the strategy's plan-restore.
    StartJob,
    /// Something is in progress: wait for it (the reason and message say what).
    Wait { reason: &'static str, message: String },
    /// The restore Job could not start within the start timeout: stop it and fail with why.
    FailStuck { job: String, reason: &'static str, message: String, elapsed_seconds: i64 },
    /// The backup is in the target.
    Succeed { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub step: Step,
    /// The backup this restore reads (kept in its status, which holds it from retention).
    pub backup: Option<(Candidate, RestoredBackup)>,
}

fn fail(reason: &'static str, message: String) -> Decision {
    Decision { step: Step::Fail { reason, message }, backup: None }
}

fn describe(c: &Candidate) -> String {
    let when = c.scheduled.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default();
    let state = match (c.status, c.verified) {
        (RunStatus::Succeeded, Some(true)) => "verified",
        (RunStatus::Succeeded, _) => "unverified",
        (RunStatus::Failed, _) => "failed",
        (RunStatus::Pending | RunStatus::Running, _) => "running",
    };
    format!("{} ({when}, {state})", c.run)
}

fn listing(candidates: &[&Candidate]) -> String {
    let names: Vec<String> = candidates.iter().take(LISTED).map(|c| describe(c)).collect();
    let more = candidates.len().saturating_sub(LISTED);
    if more > 0 { format!("{} and {more} more", names.join(", ")) } else { names.join(", ") }
}

/// The backup to restore: the one the spec names, or the newest verified successful one.
/// Refusals are (reason, message).
pub fn select<'a>(spec: &BackupRestoreSpec, candidates: &'a [Candidate]) -> Result<&'a Candidate, (&'static str, String)> {
    let source = &spec.source;
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.scheduled.cmp(&a.scheduled).then_with(|| b.run.cmp(&a.run)));
    if sorted.is_empty() {
        return Err(("BackupNotFound", format!("BackupPolicy {} has no backup of PVC {}", source.policy, source.pvc)));
    }
    let unverified = |c: &Candidate| {
        let why = if c.message.is_empty() { String::new() } else { format!(": {}", c.message) };
        ("BackupNotVerified", format!("backup {} is not verified{why}; restore a verified backup, or set allowUnverified: true", describe(c)))
    };
    let named = source.run_name.is_some() || source.scheduled_time.is_some();
    if named {
        let wanted_time = source.scheduled_time.as_ref().and_then(crate::api::from_time);
        let found = sorted.iter().find(|c| {
            source.run_name.as_ref().is_none_or(|r| &c.run == r) && wanted_time.is_none_or(|t| c.scheduled == Some(t))
        });
        let Some(c) = found else {
            let what = match (&source.run_name, wanted_time) {
                (Some(r), Some(t)) => format!("run {r} scheduled at {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                (Some(r), None) => format!("run {r}"),
                (None, Some(t)) => format!("a run scheduled at {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                (None, None) => String::new(),
            };
            return Err(("BackupNotFound", format!("no backup of PVC {} by BackupPolicy {} is {what}; its backups: {}", source.pvc, source.policy, listing(&sorted))));
        };
        return match c.status {
            RunStatus::Pending | RunStatus::Running => Err(("BackupNotFound", format!("backup {} has not finished", c.run))),
            _ if c.artifact.is_none() => Err(("BackupNotFound", format!("backup {} wrote nothing to restore{}", describe(c), if c.message.is_empty() { String::new() } else { format!(": {}", c.message) }))),
            RunStatus::Failed if !spec.allow_unverified => Err(unverified(c)),
            RunStatus::Succeeded if c.verified != Some(true) && !spec.allow_unverified => Err(unverified(c)),
            RunStatus::Failed | RunStatus::Succeeded => Ok(c),
        };
    }
    let successes: Vec<&Candidate> = sorted.iter().copied().filter(|c| c.status == RunStatus::Succeeded && c.artifact.is_some()).collect();
    if let Some(c) = successes.iter().find(|c| c.verified == Some(true)) {
        return Ok(c);
    }
    match successes.first() {
        Some(c) if spec.allow_unverified => Ok(c),
        Some(c) => Err(unverified(c)),
        None => Err(("BackupNotFound", format!("BackupPolicy {} has no successful backup of PVC {}; its backups: {}", source.policy, source.pvc, listing(&sorted)))),
    }
}

/// Labels a new PVC may carry: at most 64, each a valid label key and value.
fn bad_labels(labels: &std::collections::BTreeMap<String, String>) -> Option<String> {
    use crate::strategy::check::{is_label_key, is_label_value};
    if labels.len() > MAX_LABELS {
        return Some(format!("{} labels, at most {MAX_LABELS}", labels.len()));
    }
    labels.iter().find(|(k, v)| !is_label_key(k) || !is_label_value(v)).map(|(k, v)| {
        let shown = |s: &str| s.chars().take(70).collect::<String>();
        format!("{:?}: {:?} is not a valid label", shown(k), shown(v))
    })
}

const MAX_LABELS: usize = 64;

fn restored(spec: &BackupRestoreSpec, c: &Candidate) -> RestoredBackup {
    RestoredBackup {
        policy: spec.source.policy.clone(),
        run_name: c.run.clone(),
        destination: (!c.destination.is_empty()).then(|| c.destination.clone()),
        artifact: c.artifact_path.clone(),
        sha256: c.sha256.clone(),
        scheduled_time: c.scheduled.map(to_time),
        verified: c.verified == Some(true),
    }
}

pub fn decide(o: &RestoreObserved) -> Decision {
    if o.phase.is_some_and(RestorePhase::finished) {
        return Decision { step: Step::Done, backup: None };
    }
    let spec = &o.spec;
    if spec.target.claim_name.is_some() && spec.target.new_claim.is_some() {
        return fail("InvalidSpec", "set at most one of target.claimName and target.newClaim".into());
    }
    if let Some(new) = &spec.target.new_claim
        && let Some(problem) = bad_labels(&new.labels)
    {
        return fail("InvalidSpec", format!("target.newClaim.labels: {problem}"));
    }
    if !o.policy_exists {
        return fail("BackupNotFound", format!("BackupPolicy {} does not exist in this namespace", spec.source.policy));
    }
    // The backup: the one held since an earlier reconcile, or the one to hold now.
    let candidate = match &o.chosen {
        Some(chosen) => match o.candidates.iter().find(|c| c.run == chosen.run_name) {
            Some(c) => c,
            None => return fail("BackupNotFound", format!("backup {} is gone from BackupPolicy {}", chosen.run_name, spec.source.policy)),
        },
        None => match select(spec, &o.candidates) {
            Ok(c) => c,
            Err((reason, message)) => return fail(reason, message),
        },
    };
    let backup = Some((candidate.clone(), restored(spec, candidate)));
    let with = |step: Step| Decision { step, backup: backup.clone() };
    // Refusals past this point name the backup they would have restored.
    let with_fail = |reason: &'static str, message: String| with(Step::Fail { reason, message });
    let target = &o.target;
    let snapshot = candidate.object == RunObject::Snapshot;
    if snapshot && !target.create {
        return with_fail("InvalidSpec", format!("backup {} is a VolumeSnapshot: it is restored into a new PVC (set target.newClaim)", candidate.run));
    }

    // Work already under way: follow it.
    if let Some(job) = &o.job {
        return match job.status {
            RunStatus::Succeeded => with(Step::Succeed { message: format!("backup {} restored into PVC {} by Job {}", candidate.run, target.name, job.name) }),
            RunStatus::Failed => with_fail("RestoreFailed", format!("restore Job {} failed: {}", job.name, job.message)),
            RunStatus::Pending | RunStatus::Running => match &o.job_stuck {
                None => with(Step::Wait { reason: "Running", message: format!("restore Job {} is restoring backup {} into PVC {}", job.name, candidate.run, target.name) }),
                Some(stuck) => {
                    let elapsed = job.start.map(|s| (o.now - s).num_seconds()).unwrap_or(0);
                    let message = format!("restore Job {} cannot start: {}", job.name, stuck.message);
                    if elapsed > o.start_timeout_seconds {
                        with(Step::FailStuck { job: job.name.clone(), reason: stuck.reason, message: format!("{message} (failed after the policy's startTimeoutSeconds)"), elapsed_seconds: elapsed })
                    } else {
                        with(Step::Wait { reason: stuck.reason, message })
                    }
                }
            },
        };
    }
    let elapsed = o.started.map(|s| (o.now - s).num_seconds()).unwrap_or(0);
    if snapshot && target.ours {
        if target.bound {
            return with(Step::Succeed { message: format!("PVC {} was created from VolumeSnapshot {} and is bound", target.name, candidate.run) });
        }
        if elapsed > spec.active_deadline_seconds {
            return with_fail("RestoreFailed", format!("PVC {} from VolumeSnapshot {} is not bound after {elapsed} s (see its events)", target.name, candidate.run));
        }
        return with(Step::Wait { reason: "Running", message: format!("waiting for PVC {} to be provisioned from VolumeSnapshot {}", target.name, candidate.run) });
    }

    // Nothing started yet: check the target.
    if target.create {
        if target.exists && !target.ours {
            return with_fail("TargetExists", format!("PVC {} already exists: name a new PVC in target.newClaim, or restore into it with target.claimName", target.name));
        }
        if !target.exists {
            if !o.source_pvc_exists && !snapshot {
                return with_fail("InvalidSpec", format!("the new PVC copies the source PVC {}, which does not exist: restore into an existing PVC with target.claimName", spec.source.pvc));
            }
            return with(Step::CreateClaim { from_snapshot: snapshot.then(|| candidate.run.clone()) });
        }
    } else if !target.exists {
        return with_fail("TargetNotFound", format!("PVC {} does not exist: create it, or use target.newClaim", target.name));
    }
    // One writer per target: a restore that finds another one's lock on it never starts.
    if let Some(other) = &target.busy_with {
        return with_fail("TargetBusy", format!("BackupRestore {other} is restoring into PVC {}: this restore did not touch it; create it again once that one has finished", target.name));
    }
    if let Some(pod) = &target.in_use_by
        && !spec.allow_in_use
    {
        return with_fail("TargetInUse", format!("PVC {} is mounted by pod {pod}: stop it first (scale its StatefulSet to 0), or set allowInUse: true", target.name));
    }
    with(Step::StartJob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::restore::{NewClaim, RestoreSource, RestoreTarget};

    fn t(minute: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-29T10:{minute:02}:00Z")).expect("time").with_timezone(&Utc)
    }

    fn candidate(run: &str, minute: u32, status: RunStatus, verified: Option<bool>) -> Candidate {
        Candidate {
            run: run.into(),
            object: RunObject::Job,
            scheduled: Some(t(minute)),
            status,
            verified,
            artifact: (status == RunStatus::Succeeded).then(|| format!("{run}.tar.gz")),
            artifact_path: None,
            ..Candidate::default()
        }
    }

    fn spec(run: Option<&str>, allow_unverified: bool) -> BackupRestoreSpec {
        BackupRestoreSpec {
            source: RestoreSource { policy: "db".into(), pvc: "data-0".into(), run_name: run.map(String::from), scheduled_time: None, destination: None },
            target: RestoreTarget::default(),
            allow_in_use: false,
            allow_unverified,
            service_account_name: None,
            active_deadline_seconds: 600,
        }
    }

    #[test]
    fn selection_prefers_the_newest_verified_backup_and_refuses_the_rest() {
        let runs = vec![
            candidate("old", 1, RunStatus::Succeeded, Some(true)),
            candidate("new-unverified", 3, RunStatus::Succeeded, Some(false)),
            candidate("mid", 2, RunStatus::Succeeded, Some(true)),
            candidate("failed", 4, RunStatus::Failed, None),
            candidate("running", 5, RunStatus::Running, None),
        ];
        let only_unverified = vec![candidate("u", 1, RunStatus::Succeeded, Some(false))];
        let only_failed = vec![candidate("f", 1, RunStatus::Failed, None)];
        type Want = Result<&'static str, &'static str>;
        let cases: Vec<(&str, BackupRestoreSpec, &[Candidate], Want)> = vec![
            ("default: newest verified", spec(None, false), &runs, Ok("mid")),
            ("named verified", spec(Some("old"), false), &runs, Ok("old")),
            ("named unverified", spec(Some("new-unverified"), false), &runs, Err("BackupNotVerified")),
            ("named unverified, allowed", spec(Some("new-unverified"), true), &runs, Ok("new-unverified")),
            ("named failed (no artifact)", spec(Some("failed"), true), &runs, Err("BackupNotFound")),
            ("named running", spec(Some("running"), true), &runs, Err("BackupNotFound")),
            ("named missing", spec(Some("nope"), false), &runs, Err("BackupNotFound")),
            ("only unverified", spec(None, false), &only_unverified, Err("BackupNotVerified")),
            ("only unverified, allowed", spec(None, true), &only_unverified, Ok("u")),
            ("only failed", spec(None, true), &only_failed, Err("BackupNotFound")),
            ("none", spec(None, true), &[], Err("BackupNotFound")),
        ];
        for (name, spec, candidates, want) in cases {
            let got = select(&spec, candidates).map(|c| c.run.as_str()).map_err(|(reason, _)| reason);
            assert_eq!(got, want, "{name}");
        }
        let mut by_time = spec(None, false);
        by_time.source.scheduled_time = Some(to_time(t(1)));
        assert_eq!(select(&by_time, &runs).map(|c| c.run.as_str()), Ok("old"));
        let (_, message) = select(&spec(Some("nope"), false), &runs).expect_err("missing");
        assert!(message.contains("mid (2026-11-29T10:02:00Z, verified)"), "{message}");
    }

    fn observed(target: ObservedTarget) -> RestoreObserved {
        RestoreObserved {
            now: t(30),
            spec: spec(None, false),
            phase: None,
            started: None,
            chosen: None,
            policy_exists: true,
            candidates: vec![candidate("good", 1, RunStatus::Succeeded, Some(true))],
            source_pvc_exists: true,
            target,
            job: None,
            job_stuck: None,
            start_timeout_seconds: 600,
        }
    }

    fn existing(name: &str) -> ObservedTarget {
        ObservedTarget { name: name.into(), exists: true, bound: true, ..ObservedTarget::default() }
    }

    fn reason(d: &Decision) -> &str {
        match &d.step {
            Step::Fail { reason, .. } | Step::Wait { reason, .. } => reason,
            Step::FailStuck { .. } => "FailStuck",
            Step::Done => "Done",
            Step::CreateClaim { .. } => "CreateClaim",
            Step::StartJob => "StartJob",
            Step::Succeed { .. } => "Succeeded",
        }
    }

    #[test]
    fn the_target_is_checked_before_anything_is_started() {
        let in_use = ObservedTarget { in_use_by: Some("db-0".into()), ..existing("data-0") };
        let mut allowed = observed(in_use.clone());
        allowed.spec.allow_in_use = true;
        let mut both = observed(existing("data-0"));
        both.spec.target = RestoreTarget { claim_name: Some("x".into()), new_claim: Some(NewClaim { name: "y".into(), storage_class_name: None, labels: Default::default() }) };
        let mut no_policy = observed(existing("data-0"));
        no_policy.policy_exists = false;
        let new = ObservedTarget { name: "copy".into(), create: true, ..ObservedTarget::default() };
        let mut bad_label = observed(new.clone());
        bad_label.spec.target.new_claim = Some(NewClaim { name: "copy".into(), storage_class_name: None, labels: [("app".to_owned(), "has space".to_owned())].into() });
        let mut new_without_source = observed(new.clone());
        new_without_source.source_pvc_exists = false;
        let mut finished = observed(existing("data-0"));
        finished.phase = Some(RestorePhase::Failed);
        let mut gone = observed(existing("data-0"));
        gone.chosen = Some(RestoredBackup { policy: "db".into(), run_name: "pruned".into(), destination: None, artifact: None, sha256: None, scheduled_time: None, verified: true });
        let cases = vec![
            ("existing, idle", observed(existing("data-0")), "StartJob"),
            ("in use", observed(in_use), "TargetInUse"),
            ("in use, allowed", allowed, "StartJob"),
            ("locked by another restore", observed(ObservedTarget { busy_with: Some("other".into()), ..existing("data-0") }), "TargetBusy"),
            ("locked by another restore, in use allowed", {
                let mut o = observed(ObservedTarget { busy_with: Some("other".into()), ..existing("data-0") });
                o.spec.allow_in_use = true;
                o
            }, "TargetBusy"),
            ("new claim ours, locked by another", observed(ObservedTarget { exists: true, ours: true, busy_with: Some("other".into()), ..new.clone() }), "TargetBusy"),
            ("missing target", observed(ObservedTarget { name: "data-0".into(), ..ObservedTarget::default() }), "TargetNotFound"),
            ("both targets", both, "InvalidSpec"),
            ("no policy", no_policy, "BackupNotFound"),
            ("new claim", observed(new.clone()), "CreateClaim"),
            ("new claim exists, not ours", observed(ObservedTarget { exists: true, ..new.clone() }), "TargetExists"),
            ("new claim ours", observed(ObservedTarget { exists: true, ours: true, ..new.clone() }), "StartJob"),
            ("new claim, source gone", new_without_source, "InvalidSpec"),
            ("new claim, invalid label", bad_label, "InvalidSpec"),
            ("finished", finished, "Done"),
            ("held backup gone", gone, "BackupNotFound"),
        ];
        for (name, o, want) in cases {
            assert_eq!(reason(&decide(&o)), want, "{name}");
        }
        let message = match decide(&observed(ObservedTarget { in_use_by: Some("db-0".into()), ..existing("data-0") })).step {
            Step::Fail { message, .. } => message,
            other => panic!("{other:?}"),
        };
        assert!(message.contains("pod db-0") && message.contains("allowInUse"), "{message}");
    }

    #[test]
    fn the_job_decides_the_outcome_and_snapshots_restore_into_new_claims() {
        let job = |status| ObservedAux { name: "r-restore".into(), status, message: "sha256 mismatch".into(), ..ObservedAux::default() };
        let mut running = observed(existing("data-0"));
        running.job = Some(job(RunStatus::Running));
        let mut done = running.clone();
        done.job = Some(job(RunStatus::Succeeded));
        let mut failed = running.clone();
        failed.job = Some(job(RunStatus::Failed));
        assert_eq!(reason(&decide(&running)), "Running");
        let mut stuck = running.clone();
        stuck.job_stuck = Some(crate::runs::stuck::Stuck { reason: "ImageError", message: "pod x: ErrImagePull".into() });
        stuck.job = Some(ObservedAux { start: Some(t(29)), ..job(RunStatus::Pending) });
        assert_eq!(reason(&decide(&stuck)), "ImageError", "a stuck restore says why at once");
        stuck.job = Some(ObservedAux { start: Some(t(10)), ..job(RunStatus::Pending) });
        assert_eq!(reason(&decide(&stuck)), "FailStuck", "and fails after the start timeout");
        assert_eq!(reason(&decide(&done)), "Succeeded");
        assert_eq!(reason(&decide(&failed)), "RestoreFailed");
        assert!(decide(&done).backup.is_some_and(|(c, b)| c.run == "good" && b.run_name == "good" && b.verified));

        let snap = Candidate { object: RunObject::Snapshot, artifact: Some("snap-1".into()), ..candidate("snap-1", 1, RunStatus::Succeeded, Some(true)) };
        let mut into_existing = observed(existing("data-0"));
        into_existing.candidates = vec![snap.clone()];
        assert_eq!(reason(&decide(&into_existing)), "InvalidSpec");
        let new = ObservedTarget { name: "copy".into(), create: true, ..ObservedTarget::default() };
        let mut create = observed(new.clone());
        create.candidates = vec![snap];
        assert_eq!(decide(&create).step, Step::CreateClaim { from_snapshot: Some("snap-1".into()) });
        let mut waiting = create.clone();
        waiting.target = ObservedTarget { exists: true, ours: true, ..new };
        waiting.started = Some(t(29));
        assert_eq!(reason(&decide(&waiting)), "Running");
        let mut late = waiting.clone();
        late.started = Some(t(0));
        assert_eq!(reason(&decide(&late)), "RestoreFailed");
        let mut bound = waiting;
        bound.target.bound = true;
        assert_eq!(reason(&decide(&bound)), "Succeeded");
    }
}
