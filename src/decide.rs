//! The reconcile decision, as a pure function of what was observed and `now`: which runs start,
//! which Jobs go, and what the status says. Nothing here talks to the cluster.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::api::{BackupPolicySpec, BackupRun, ConcurrencyPolicy, RunStatus};
use crate::schedule::{self, Schedule, ScheduleError};

/// Runs kept in `status.backupHistory`.
pub const HISTORY_LIMIT: usize = 10;
const MAX_NAME: usize = 63;

/// A backup Job of this policy, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedJob {
    pub name: String,
    pub pvc: String,
    pub scheduled: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub start: Option<DateTime<Utc>>,
    pub completion: Option<DateTime<Utc>>,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Observed {
    pub now: DateTime<Utc>,
    pub policy: String,
    pub spec: BackupPolicySpec,
    pub created: DateTime<Utc>,
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// When the policy was last resumed (Suspended went False): runs before it are not replayed.
    pub resumed_at: Option<DateTime<Utc>>,
    /// PVCs the selector matches, by name.
    pub pvcs: Vec<String>,
    pub storage_claim_exists: bool,
    pub jobs: Vec<ObservedJob>,
}

/// Why the policy is not Ready; the reason strings are a public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    InvalidSchedule,
    InvalidTimeZone,
    NoMatchingPvcs,
    BackupStorageMissing,
    BackupFailed,
}

impl NotReady {
    pub fn reason(self) -> &'static str {
        match self {
            NotReady::InvalidSchedule => "InvalidSchedule",
            NotReady::InvalidTimeZone => "InvalidTimeZone",
            NotReady::NoMatchingPvcs => "NoMatchingPVCs",
            NotReady::BackupStorageMissing => "BackupStorageMissing",
            NotReady::BackupFailed => "BackupFailed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub not_ready: Option<NotReady>,
    pub message: String,
}

/// A Job to create: one PVC, one scheduled time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub job_name: String,
    pub pvc: String,
    pub scheduled: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub create: Vec<NewRun>,
    /// Jobs to delete: replaced active runs and those retention drops.
    pub delete: Vec<String>,
    /// PVCs whose run was skipped because their previous backup is still active (Forbid).
    pub skipped_active: Vec<String>,
    pub last_schedule_time: Option<DateTime<Utc>>,
    pub last_successful_time: Option<DateTime<Utc>>,
    pub next_schedule_time: Option<DateTime<Utc>>,
    pub history: Vec<BackupRun>,
    pub readiness: Readiness,
    pub suspended: bool,
    /// Scheduled times missed since the last run (the CronJob controller warns past 100).
    pub missed: u32,
    pub skipped_past_deadline: bool,
    /// Look again then (the next scheduled time), or `None` to wait for a change.
    pub requeue_at: Option<DateTime<Utc>>,
}

/// 32-bit FNV-1a: stable across releases, which a std hasher is not.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The Job for `policy`, `pvc` and a scheduled time: `<policy>-<pvc>-<unix minutes>`, shortened
/// with a hash of the full name to fit 63 characters. The same run always gets the same name, so
/// a second create (after a restart, a crash, a repeated reconcile) is a no-op.
pub fn job_name(policy: &str, pvc: &str, scheduled: DateTime<Utc>) -> String {
    let minutes = scheduled.timestamp().div_euclid(60);
    let full = format!("{policy}-{pvc}-{minutes}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = format!("{:08x}", fnv1a(&format!("{policy}/{pvc}")));
    let suffix = format!("-{hash}-{minutes}");
    let head: String = format!("{policy}-{pvc}").chars().take(MAX_NAME - suffix.len()).collect();
    format!("{}{suffix}", head.trim_end_matches(['-', '.']))
}

fn newest_first(a: &ObservedJob, b: &ObservedJob) -> std::cmp::Ordering {
    b.scheduled.cmp(&a.scheduled).then_with(|| b.start.cmp(&a.start)).then_with(|| b.name.cmp(&a.name))
}

/// Jobs retention deletes: per PVC, successful ones beyond `keep_succeeded` (newest kept, so the
/// newest success always stays) and failed ones beyond `keep_failed`. Active runs are never touched.
pub fn retention(jobs: &[ObservedJob], keep_succeeded: u32, keep_failed: u32) -> Vec<String> {
    let mut by_pvc: BTreeMap<&str, Vec<&ObservedJob>> = BTreeMap::new();
    for job in jobs {
        by_pvc.entry(job.pvc.as_str()).or_default().push(job);
    }
    let keep_succeeded = keep_succeeded.max(1) as usize;
    let mut delete = Vec::new();
    for (_, mut runs) in by_pvc {
        runs.sort_by(|a, b| newest_first(a, b));
        let (mut succeeded, mut failed) = (0usize, 0usize);
        for run in runs {
            match run.status {
                RunStatus::Succeeded => {
                    succeeded += 1;
                    if succeeded > keep_succeeded {
                        delete.push(run.name.clone());
                    }
                }
                RunStatus::Failed => {
                    failed += 1;
                    if failed > keep_failed as usize {
                        delete.push(run.name.clone());
                    }
                }
                RunStatus::Pending | RunStatus::Running => {}
            }
        }
    }
    delete.sort();
    delete
}

/// `status.backupHistory`: the newest runs first, at most [`HISTORY_LIMIT`].
pub fn history(jobs: &[ObservedJob]) -> Vec<BackupRun> {
    let mut sorted: Vec<&ObservedJob> = jobs.iter().collect();
    sorted.sort_by(|a, b| newest_first(a, b));
    sorted
        .into_iter()
        .take(HISTORY_LIMIT)
        .map(|j| BackupRun {
            job_name: j.name.clone(),
            pvc: j.pvc.clone(),
            start_time: j.start.map(crate::api::to_time),
            completion_time: j.completion.map(crate::api::to_time),
            status: j.status,
            message: j.message.clone(),
        })
        .collect()
}

fn invalid(observed: &Observed, reason: NotReady, message: String) -> Decision {
    Decision {
        create: Vec::new(),
        delete: Vec::new(),
        skipped_active: Vec::new(),
        last_schedule_time: observed.last_schedule_time,
        last_successful_time: last_success(&observed.jobs),
        next_schedule_time: None,
        history: history(&observed.jobs),
        readiness: Readiness { not_ready: Some(reason), message },
        suspended: observed.spec.suspend,
        missed: 0,
        skipped_past_deadline: false,
        requeue_at: None,
    }
}

fn last_success(jobs: &[ObservedJob]) -> Option<DateTime<Utc>> {
    jobs.iter().filter(|j| j.status == RunStatus::Succeeded).filter_map(|j| j.completion.or(j.scheduled)).max()
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

pub fn decide(observed: &Observed) -> Decision {
    let spec = &observed.spec;
    let schedule = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(e @ ScheduleError::InvalidSchedule { .. }) => return invalid(observed, NotReady::InvalidSchedule, e.to_string()),
        Err(e @ ScheduleError::InvalidTimeZone(_)) => return invalid(observed, NotReady::InvalidTimeZone, e.to_string()),
    };

    // The next run follows the last one the status recorded, which is written only after all of a
    // run's Jobs exist. A crash between two creates therefore decides the same run again, and the
    // deterministic names make the Jobs that exist no-ops while the missing ones are created.
    let since = observed.last_schedule_time.max(observed.resumed_at);
    let when = schedule::decide(&schedule, since, observed.created, spec.starting_deadline_seconds, observed.now);
    let newest_job = observed.jobs.iter().filter_map(|j| j.scheduled).max();
    let last_scheduled = observed.last_schedule_time.max(newest_job);

    let mut create = Vec::new();
    let mut delete = Vec::new();
    let mut skipped_active = Vec::new();
    let mut last_schedule_time = last_scheduled;
    let due = if spec.suspend { None } else { when.run };
    if let Some(scheduled) = due
        && observed.storage_claim_exists
        && !observed.pvcs.is_empty()
    {
        last_schedule_time = Some(scheduled);
        for pvc in &observed.pvcs {
            let name = job_name(&observed.policy, pvc, scheduled);
            if observed.jobs.iter().any(|j| j.name == name) {
                continue;
            }
            let active: Vec<&ObservedJob> = observed
                .jobs
                .iter()
                .filter(|j| &j.pvc == pvc && matches!(j.status, RunStatus::Pending | RunStatus::Running))
                .collect();
            match spec.concurrency_policy {
                ConcurrencyPolicy::Allow => {}
                ConcurrencyPolicy::Forbid if !active.is_empty() => {
                    skipped_active.push(pvc.clone());
                    continue;
                }
                ConcurrencyPolicy::Forbid => {}
                ConcurrencyPolicy::Replace => delete.extend(active.iter().map(|j| j.name.clone())),
            }
            create.push(NewRun { job_name: name, pvc: pvc.clone(), scheduled });
        }
    }
    for name in retention(&observed.jobs, spec.retention_count, spec.failed_jobs_history_limit) {
        if !delete.contains(&name) {
            delete.push(name);
        }
    }

    let readiness = readiness(observed);
    Decision {
        create,
        delete,
        skipped_active,
        last_schedule_time,
        last_successful_time: last_success(&observed.jobs),
        next_schedule_time: if spec.suspend { None } else { when.next },
        history: history(&observed.jobs),
        readiness,
        suspended: spec.suspend,
        missed: when.missed,
        skipped_past_deadline: when.skipped_past_deadline,
        requeue_at: if spec.suspend { None } else { when.next },
    }
}

fn readiness(observed: &Observed) -> Readiness {
    let not_ready = |reason, message: String| Readiness { not_ready: Some(reason), message };
    if !observed.storage_claim_exists {
        return not_ready(
            NotReady::BackupStorageMissing,
            format!("PersistentVolumeClaim {:?} (spec.backupStorageClaim) does not exist in this namespace", observed.spec.backup_storage_claim),
        );
    }
    if observed.pvcs.is_empty() {
        return not_ready(NotReady::NoMatchingPvcs, "no PersistentVolumeClaim in this namespace matches spec.pvcSelector".into());
    }
    // The latest finished run of each PVC decides whether backups are working.
    let mut latest: BTreeMap<&str, &ObservedJob> = BTreeMap::new();
    for job in observed.jobs.iter().filter(|j| matches!(j.status, RunStatus::Succeeded | RunStatus::Failed)) {
        let entry = latest.entry(job.pvc.as_str()).or_insert(job);
        if newest_first(job, entry).is_lt() {
            *entry = job;
        }
    }
    let failed: Vec<String> = latest
        .values()
        .filter(|j| j.status == RunStatus::Failed)
        .map(|j| format!("{} ({}): {}", j.pvc, j.name, j.message))
        .collect();
    if !failed.is_empty() {
        return not_ready(NotReady::BackupFailed, format!("latest backup failed for {}", failed.join("; ")));
    }
    Readiness { not_ready: None, message: format!("{} PVC(s) scheduled", observed.pvcs.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    fn spec(schedule: &str) -> BackupPolicySpec {
        serde_json::from_value(serde_json::json!({"schedule": schedule, "pvcSelector": {"matchLabels": {"app": "db"}}})).expect("spec")
    }

    fn job(name: &str, pvc: &str, scheduled: &str, status: RunStatus) -> ObservedJob {
        ObservedJob {
            name: name.into(),
            pvc: pvc.into(),
            scheduled: Some(t(scheduled)),
            status,
            start: Some(t(scheduled)),
            completion: matches!(status, RunStatus::Succeeded | RunStatus::Failed).then(|| t(scheduled) + chrono::Duration::seconds(5)),
            message: String::new(),
        }
    }

    fn observed(now: &str) -> Observed {
        Observed {
            now: t(now),
            policy: "db-backup".into(),
            spec: spec("*/1 * * * *"),
            created: t("2026-11-29T00:00:10Z"),
            last_schedule_time: None,
            resumed_at: None,
            pvcs: vec!["data-db-0".into(), "data-db-1".into()],
            storage_claim_exists: true,
            jobs: Vec::new(),
        }
    }

    #[test]
    fn job_names_are_deterministic_and_fit() {
        let at = t("2026-11-29T01:00:00Z");
        assert_eq!(job_name("db-backup", "data-db-0", at), format!("db-backup-data-db-0-{}", at.timestamp() / 60));
        assert_eq!(job_name("db-backup", "data-db-0", at), job_name("db-backup", "data-db-0", at + chrono::Duration::seconds(30)));
        assert_ne!(job_name("db-backup", "data-db-0", at), job_name("db-backup", "data-db-0", at + chrono::Duration::minutes(1)));
        let long_policy = "p".repeat(50);
        let a = job_name(&long_policy, "data-db-0", at);
        let b = job_name(&long_policy, "data-db-1", at);
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b, "shortened names keep PVCs apart");
        assert!(a.ends_with(&(at.timestamp() / 60).to_string()));
        let _ = LabelSelector::default();
    }

    #[test]
    fn a_due_run_creates_one_job_per_pvc_once() {
        let d = decide(&observed("2026-11-29T00:01:05Z"));
        let at = t("2026-11-29T00:01:00Z");
        assert_eq!(
            d.create,
            vec![
                NewRun { job_name: job_name("db-backup", "data-db-0", at), pvc: "data-db-0".into(), scheduled: at },
                NewRun { job_name: job_name("db-backup", "data-db-1", at), pvc: "data-db-1".into(), scheduled: at },
            ]
        );
        assert_eq!(d.last_schedule_time, Some(at));
        assert_eq!(d.requeue_at, Some(t("2026-11-29T00:02:00Z")));
        assert_eq!(d.readiness.not_ready, None);

        // The same tick observed again with the Jobs present (or with a lost status): nothing new.
        let mut again = observed("2026-11-29T00:01:40Z");
        again.jobs = d.create.iter().map(|r| job(&r.job_name, &r.pvc, "2026-11-29T00:01:00Z", RunStatus::Running)).collect();
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
        o.jobs = vec![
            job(&job_name("db-backup", "data-db-0", t("2026-11-29T00:01:00Z")), "data-db-0", "2026-11-29T00:01:00Z", RunStatus::Succeeded),
            job(&job_name("db-backup", "data-db-1", t("2026-11-29T00:01:00Z")), "data-db-1", "2026-11-29T00:01:00Z", RunStatus::Succeeded),
            job(&job_name("db-backup", "data-db-0", at), "data-db-0", "2026-11-29T00:02:00Z", RunStatus::Running),
        ];
        let d = decide(&o);
        assert_eq!(d.create, vec![NewRun { job_name: job_name("db-backup", "data-db-1", at), pvc: "data-db-1".into(), scheduled: at }]);
        assert_eq!(d.skipped_active, Vec::<String>::new(), "data-db-0's own Job for this run is not a previous run");
        assert_eq!(d.last_schedule_time, Some(at));
    }

    #[test]
    fn concurrency_policies_apply_per_pvc() {
        let mut o = observed("2026-11-29T00:02:05Z");
        o.last_schedule_time = Some(t("2026-11-29T00:01:00Z"));
        o.jobs = vec![
            job("old-0", "data-db-0", "2026-11-29T00:01:00Z", RunStatus::Running),
            job("old-1", "data-db-1", "2026-11-29T00:01:00Z", RunStatus::Succeeded),
        ];
        let forbid = decide(&o);
        assert_eq!(forbid.create.iter().map(|r| r.pvc.as_str()).collect::<Vec<_>>(), ["data-db-1"]);
        assert_eq!(forbid.skipped_active, ["data-db-0"]);
        assert!(forbid.delete.is_empty());

        o.spec.concurrency_policy = ConcurrencyPolicy::Replace;
        let replace = decide(&o);
        assert_eq!(replace.create.len(), 2);
        assert_eq!(replace.delete, ["old-0"]);

        o.spec.concurrency_policy = ConcurrencyPolicy::Allow;
        let allow = decide(&o);
        assert_eq!((allow.create.len(), allow.delete.len()), (2, 0));
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
            let jobs: Vec<ObservedJob> = runs
                .iter()
                .enumerate()
                .map(|(i, (name, status))| job(name, "data-db-0", &format!("2026-11-29T00:0{i}:00Z"), *status))
                .collect();
            assert_eq!(retention(&jobs, keep, keep_failed), want, "{what}");
        }
        // Per PVC, not across PVCs.
        let jobs = vec![
            job("a0", "data-db-0", "2026-11-29T00:01:00Z", Succeeded),
            job("a1", "data-db-1", "2026-11-29T00:02:00Z", Succeeded),
            job("b1", "data-db-1", "2026-11-29T00:03:00Z", Succeeded),
        ];
        assert_eq!(retention(&jobs, 1, 0), ["a1"]);
    }

    #[test]
    fn history_is_newest_first_and_capped() {
        let jobs: Vec<ObservedJob> = (0..12)
            .map(|i| job(&format!("j{i:02}"), "data-db-0", &format!("2026-11-29T00:{i:02}:00Z"), RunStatus::Succeeded))
            .collect();
        let h = history(&jobs);
        assert_eq!(h.len(), HISTORY_LIMIT);
        assert_eq!(h[0].job_name, "j11");
        assert_eq!(h[9].job_name, "j02");
        assert_eq!(h[0].status, RunStatus::Succeeded);
        assert!(h[0].completion_time.is_some());
    }

    #[test]
    fn not_ready_reasons() {
        let mut bad_cron = observed("2026-11-29T00:01:05Z");
        bad_cron.spec.schedule = "every minute".into();
        let d = decide(&bad_cron);
        assert_eq!((d.readiness.not_ready, d.create.len(), d.requeue_at), (Some(NotReady::InvalidSchedule), 0, None));

        let mut bad_tz = observed("2026-11-29T00:01:05Z");
        bad_tz.spec.time_zone = Some("Nowhere/Special".into());
        assert_eq!(decide(&bad_tz).readiness.not_ready, Some(NotReady::InvalidTimeZone));

        let mut no_storage = observed("2026-11-29T00:01:05Z");
        no_storage.storage_claim_exists = false;
        let d = decide(&no_storage);
        assert_eq!((d.readiness.not_ready, d.create.len()), (Some(NotReady::BackupStorageMissing), 0));
        assert_eq!(d.last_schedule_time, None, "a run that created nothing is not recorded");

        let mut no_pvcs = observed("2026-11-29T00:01:05Z");
        no_pvcs.pvcs.clear();
        assert_eq!(decide(&no_pvcs).readiness.not_ready, Some(NotReady::NoMatchingPvcs));

        let mut failing = observed("2026-11-29T00:03:05Z");
        failing.jobs = vec![
            job("ok", "data-db-0", "2026-11-29T00:01:00Z", RunStatus::Succeeded),
            ObservedJob { message: "BackoffLimitExceeded".into(), ..job("bad", "data-db-0", "2026-11-29T00:02:00Z", RunStatus::Failed) },
        ];
        let d = decide(&failing);
        assert_eq!(d.readiness.not_ready, Some(NotReady::BackupFailed));
        assert!(d.readiness.message.contains("BackoffLimitExceeded"));
        assert_eq!(d.last_successful_time, Some(t("2026-11-29T00:01:05Z")));
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
}
