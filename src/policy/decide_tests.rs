//! The decision's tables.

use crate::base::names::run_name;
use super::*;
use std::collections::BTreeSet;

use crate::api::BackupPolicySpec;
use crate::policy::observed::{ObservedDestination, ObservedPvc, resumed_at};
use crate::policy::readiness::readiness;
use crate::runs::observed::{HISTORY_LIMIT, defer_young_causes, history, history_entry, last_success};
use crate::runs::report::Report;
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
    type Case<'a> = (&'a str, Vec<ObservedRun>, Vec<NewRun>, u32, Vec<(&'a str, bool)>);
    let cases: Vec<Case<'_>> = vec![
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
