//! The names the host gives and reads: labels and annotations of every object of a run (the
//! public `backup-policy` and `pvc` among them), the field manager, the finalizer, run and child
//! names that fit 63 characters, and where a PVC's backups live on a storage claim.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "backup-operator";

/// Labels every child of a policy carries. `backup-policy` and `pvc` are the public contract
/// (`kubectl get jobs -l backup-policy=<policy>`); values longer than a label allows are
/// shortened with a hash, and the full names are in annotations.
pub const LABEL_POLICY: &str = "backup-policy";
pub const LABEL_PVC: &str = "pvc";
/// The owning policy's UID: how the host finds a policy's objects, whatever its name's length.
pub const LABEL_POLICY_UID: &str = "backup.example.com/policy-uid";
/// backup, prune, verify, cleanup or restore.
pub const LABEL_KIND: &str = "backup.example.com/kind";
/// The destination (spec.destinations[].name) a run writes to; absent without destinations.
pub const LABEL_DESTINATION: &str = "backup.example.com/destination";

pub const ANNOTATION_POLICY: &str = "backup.example.com/policy";
pub const ANNOTATION_PVC: &str = "backup.example.com/pvc";
/// The run an object belongs to (the backup run's name, for prune and verify Jobs too).
pub const ANNOTATION_RUN: &str = "backup.example.com/run";
pub const ANNOTATION_SCHEDULED_TIME: &str = "backup.example.com/scheduled-time";
/// The artifact as the plan named it, relative to the PVC's own directory on the storage claim.
pub const ANNOTATION_ARTIFACT: &str = "backup.example.com/artifact";
pub const ANNOTATION_VERIFICATION: &str = "backup.example.com/verification";
pub const ANNOTATION_PLUGIN: &str = "backup.example.com/plugin";
/// What the finished run reported, recorded once by the host (JSON, bounded).
pub const ANNOTATION_RESULT: &str = "backup.example.com/result";
/// The newest re-verification of the run's artifact (JSON, bounded).
pub const ANNOTATION_VERIFY_RESULT: &str = "backup.example.com/verify-result";
/// Why the host failed a run that could not start (`<reason>: <message>`).
pub const ANNOTATION_STUCK: &str = "backup.example.com/stuck";
/// `<prefix><Event>: pending`: a notification of the run's outcome not yet delivered to every
/// target. Written with the outcome, removed once every target got it (or finally failed): a
/// restarted operator sends what is still pending, with the same event id.
pub const ANNOTATION_NOTIFICATION_PENDING: &str = "notification-pending.backup.example.com/";

/// Longest Kubernetes object name the host makes (a DNS-1123 label, as Job names need).
pub const MAX_NAME: usize = 63;

/// The kinds of object a run has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Backup,
    Prune,
    Verify,
    Cleanup,
    /// A restore's Job (owned by its BackupRestore, not by the policy).
    Restore,
}

impl RunKind {
    pub fn label(self) -> &'static str {
        match self {
            RunKind::Backup => "backup",
            RunKind::Prune => "prune",
            RunKind::Verify => "verify",
            RunKind::Cleanup => "cleanup",
            RunKind::Restore => "restore",
        }
    }
}

/// 32-bit FNV-1a: stable across releases, which a std hasher is not.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// `head-suffix`, with `head` cut and a hash of `full` added so the result fits `max`.
fn fit(head: &str, suffix: &str, full: &str, max: usize) -> String {
    let joined = if suffix.is_empty() { head.to_owned() } else { format!("{head}-{suffix}") };
    if joined.len() <= max {
        return joined;
    }
    let tail = if suffix.is_empty() { format!("-{:08x}", fnv1a(full)) } else { format!("-{:08x}-{suffix}", fnv1a(full)) };
    let cut: String = head.chars().take(max.saturating_sub(tail.len())).collect();
    format!("{}{tail}", cut.trim_end_matches(['-', '.', '_']))
}

/// The run's name: `<policy>-<pvc>-<unix minutes of the scheduled time>`, shortened with a hash to
/// fit 63 characters. The same run always gets the same name, so a second create (after a restart,
/// a crash, a repeated reconcile) is a no-op.
pub fn run_name(policy: &str, pvc: &str, scheduled: DateTime<Utc>) -> String {
    let minutes = scheduled.timestamp().div_euclid(60);
    fit(&format!("{policy}-{pvc}"), &minutes.to_string(), &format!("{policy}/{pvc}"), MAX_NAME)
}

/// The run's name for one destination: `<policy>-<pvc>-<destination>-<minutes>`; the unnamed
/// destination of a policy without spec.destinations keeps [`run_name`].
pub fn run_name_to(policy: &str, pvc: &str, destination: &str, scheduled: DateTime<Utc>) -> String {
    if destination.is_empty() {
        return run_name(policy, pvc, scheduled);
    }
    let minutes = scheduled.timestamp().div_euclid(60);
    fit(&format!("{policy}-{pvc}-{destination}"), &minutes.to_string(), &format!("{policy}/{pvc}/{destination}"), MAX_NAME)
}

/// The name of an object that belongs to `run` (its prune or verify Job), within 63 characters.
pub fn child_name(run: &str, suffix: &str) -> String {
    fit(run, suffix, &format!("{run}/{suffix}"), MAX_NAME)
}

/// A label value for a name: itself when it fits 63 characters, else shortened with a hash.
pub fn label_value(name: &str) -> String {
    fit(name, "", name, 63)
}

/// The directory of one PVC's backups on the storage claim; the only part of the claim a run's
/// Jobs see (mounted as a sub-path, created on first use).
pub fn storage_dir(namespace: &str, policy: &str, pvc: &str) -> String {
    format!("{namespace}/{policy}/{pvc}")
}

/// The labels of every object of a run. Only backups (Jobs and VolumeSnapshots) carry the public
/// `backup-policy` and `pvc`: the specification counts a policy's Jobs by them, so prune, verify
/// and cleanup Jobs are found by the operator's own labels only.
pub fn labels(policy: &str, policy_uid: &str, pvc: Option<&str>, kind: RunKind) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_POLICY_UID.to_owned(), policy_uid.to_owned()),
        (LABEL_KIND.to_owned(), kind.label().to_owned()),
    ]);
    let public = match kind {
        RunKind::Backup => true,
        RunKind::Prune | RunKind::Verify | RunKind::Cleanup | RunKind::Restore => false,
    };
    if public {
        labels.insert(LABEL_POLICY.to_owned(), label_value(policy));
        if let Some(pvc) = pvc {
            labels.insert(LABEL_PVC.to_owned(), label_value(pvc));
        }
    }
    labels
}

/// [`labels`], plus the destination's name when it has one.
pub fn labels_to(policy: &str, policy_uid: &str, pvc: Option<&str>, destination: &str, kind: RunKind) -> BTreeMap<String, String> {
    let mut labels = labels(policy, policy_uid, pvc, kind);
    if !destination.is_empty() {
        labels.insert(LABEL_DESTINATION.to_owned(), destination.to_owned());
    }
    labels
}

/// The destination an object's labels name ("" for none).
pub fn destination_of(labels: &BTreeMap<String, String>) -> String {
    labels.get(LABEL_DESTINATION).cloned().unwrap_or_default()
}

/// A label query for every object of kind `kind` of the policy with this UID.
pub fn selector(policy_uid: &str, kind: RunKind) -> String {
    format!("{LABEL_POLICY_UID}={policy_uid},{LABEL_KIND}={}", kind.label())
}

/// Parses an RFC 3339 annotation value.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// The variables the host sets in every Job of an S3 destination, from its credentialsSecret.
pub const ACCESS_KEY_ID_ENV: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";
/// The variable the host sets to the repository password (spec.restic.passwordSecret).
pub const REPOSITORY_PASSWORD_ENV: &str = "BACKUP_REPOSITORY_PASSWORD";
/// On a PVC a restore writes: that restore's UID, taken through the API server (a write that
/// names the PVC's resourceVersion) before its Job starts, so that two restores never write one
/// PVC at once; removed when the restore finishes.
pub const ANNOTATION_RESTORE_LOCK: &str = "backup.example.com/restore-lock";

/// The VolumeSnapshot kind (`snapshot.storage.k8s.io/v1`), read untyped: its CRDs come with the
/// cluster's CSI snapshot controller, not with the operator.
pub fn volume_snapshot_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot"), "volumesnapshots")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn run_names_are_deterministic_and_fit() {
        let at = t("2026-11-29T01:00:00Z");
        assert_eq!(run_name("db-backup", "data-db-0", at), format!("db-backup-data-db-0-{}", at.timestamp() / 60));
        assert_eq!(run_name("db-backup", "data-db-0", at), run_name("db-backup", "data-db-0", at + chrono::Duration::seconds(30)));
        assert_ne!(run_name("db-backup", "data-db-0", at), run_name("db-backup", "data-db-0", at + chrono::Duration::minutes(1)));
        let long_policy = "p".repeat(250);
        let a = run_name(&long_policy, "data-db-0", at);
        let b = run_name(&long_policy, "data-db-1", at);
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b, "shortened names keep PVCs apart");
        assert!(a.ends_with(&(at.timestamp() / 60).to_string()));
    }

    #[test]
    fn child_names_and_label_values_fit() {
        let run = run_name(&"p".repeat(60), "data-db-0", t("2026-11-29T01:00:00Z"));
        let prune = child_name(&run, "prune");
        assert!(prune.len() <= 63 && prune.ends_with("-prune"), "{prune}");
        assert_ne!(child_name(&run, "verify-1"), child_name(&run, "verify-2"));
        assert_eq!(child_name("short", "prune"), "short-prune");
        assert_eq!(label_value("db-backup"), "db-backup");
        let long = label_value(&"x".repeat(200));
        assert!(long.len() <= 63, "{long}");
        assert_ne!(long, label_value(&"x".repeat(201)));
    }

    #[test]
    fn labels_carry_the_public_contract_and_the_owner() {
        let l = labels("db-backup", "uid-1", Some("data-db-0"), RunKind::Backup);
        assert_eq!(l[LABEL_POLICY], "db-backup");
        assert_eq!(l[LABEL_PVC], "data-db-0");
        assert_eq!(l[LABEL_POLICY_UID], "uid-1");
        assert_eq!(l[LABEL_KIND], "backup");
        // The specification counts a policy's Jobs by `backup-policy`: only backups carry it.
        for kind in [RunKind::Prune, RunKind::Verify, RunKind::Cleanup] {
            let l = labels("db-backup", "uid-1", Some("data-db-0"), kind);
            assert!(!l.contains_key(LABEL_POLICY) && !l.contains_key(LABEL_PVC), "{kind:?}: {l:?}");
            assert_eq!((l[LABEL_POLICY_UID].as_str(), l[LABEL_KIND].as_str()), ("uid-1", kind.label()));
        }
        assert_eq!(selector("uid-1", RunKind::Backup), "backup.example.com/policy-uid=uid-1,backup.example.com/kind=backup");
    }
}
