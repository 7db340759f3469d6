//! The `BackupRestore` custom resource (`backup.example.com/v1alpha1`, short name `br`): one
//! restore of one backup of a PVC, into that PVC, another existing PVC, or a new one. A restore
//! is a one-shot request: its spec cannot change once created, and a finished restore stays
//! finished (delete it and create another to try again).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Restores one backup that a BackupPolicy made of a PVC.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "backup.example.com",
    version = "v1alpha1",
    kind = "BackupRestore",
    plural = "backuprestores",
    shortname = "br",
    namespaced,
    status = "BackupRestoreStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.source.pvc"}"#,
    printcolumn = r#"{"name":"Backup","type":"string","jsonPath":".status.backup.runName"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".status.targetClaim"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Restored\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "a BackupRestore cannot be changed once created: delete it and create a new one"}]))]
pub struct BackupRestoreSpec {
    /// The backup to restore.
    pub source: RestoreSource,
    /// Where to restore it (default: the source PVC itself).
    #[serde(default)]
    pub target: RestoreTarget,
    /// Restore into a PVC even while a running pod mounts it. Without it such a restore fails
    /// with TargetInUse: stop the workload first (scale its StatefulSet to 0).
    #[serde(default)]
    pub allow_in_use: bool,
    /// Restore from a backup that is not verified (or did not succeed). Without it only
    /// verified successful backups are restored, and others fail with BackupNotVerified.
    #[serde(default)]
    pub allow_unverified: bool,
    /// The ServiceAccount of this namespace the operator acts as for this restore when it runs
    /// with --tenant-impersonation (default: the operator's --default-service-account, `backup`):
    /// creating or locking the target PVC and creating the restore Job are then allowed only as
    /// far as that account's RBAC allows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub service_account_name: Option<String>,
    /// Seconds the restore may run before it fails (default 6 hours).
    #[serde(default = "default_active_deadline_seconds")]
    #[schemars(range(min = 1, max = 2592000))]
    pub active_deadline_seconds: i64,
}

fn default_active_deadline_seconds() -> i64 {
    6 * 3600
}

/// Which backup: a policy and a PVC, and optionally one of its backups (default: the newest
/// verified successful one).
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSource {
    /// The BackupPolicy, in this namespace, that made the backup.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub policy: String,
    /// The PVC the backup was made of.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub pvc: String,
    /// One backup by its run name (`status.backupHistory[].jobName` of the policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub run_name: Option<String>,
    /// One backup by the time it was scheduled for (RFC 3339, e.g. 2026-11-29T01:00:00Z).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
    /// Only backups at this destination (spec.destinations[].name of the policy); default: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 20))]
    pub destination: Option<String>,
}

/// Where a backup is restored to. At most one of `claimName` and `newClaim`.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RestoreTarget {
    /// An existing PVC in this namespace to restore into; its contents are replaced by the
    /// backup's. Default: the source PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub claim_name: Option<String>,
    /// A PVC to create for the restore, with the source PVC's size, access modes, volume mode and
    /// storage class. It is not owned by the BackupRestore: deleting the restore keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_claim: Option<NewClaim>,
}

/// A PVC the restore creates.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NewClaim {
    /// The new PVC's name; no PVC of that name may exist yet.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// The storage class (default: the source PVC's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Labels for the new PVC (the source PVC's labels are not copied, so that a policy
    /// selecting them does not start backing up the copy unasked).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// What the operator observed of the restore.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackupRestoreStatus {
    /// Pending, Running, Succeeded or Failed; Succeeded and Failed are final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// When the restore started working on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The backup actually restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<RestoredBackup>,
    /// The PVC restored into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_claim: Option<String>,
    /// The Job that restores (tar and custom strategies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Restored: True once the backup is in the target; False with the reason otherwise
    /// (Pending, Running, BackupNotFound, BackupNotVerified, TargetInUse, TargetExists,
    /// PluginFailed, PlanRefused, InvalidSpec, RestoreFailed).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 9007199254740991i64))]
    pub observed_generation: Option<i64>,
}

/// The backup a restore reads. While the restore is Pending or Running, the policy's retention
/// keeps this backup.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RestoredBackup {
    /// The policy that made it.
    pub policy: String,
    /// The backup run's name.
    pub run_name: String,
    /// The destination it was read from (none for a policy without spec.destinations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Where it is: its path on the storage claim, or the VolumeSnapshot's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// Its sha256, as the backup run recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The time the backup was scheduled for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
    /// Whether the backup was verified when the restore chose it.
    #[serde(default)]
    pub verified: bool,
}

/// The state of a restore.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum RestorePhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl RestorePhase {
    pub fn finished(self) -> bool {
        match self {
            RestorePhase::Succeeded | RestorePhase::Failed => true,
            RestorePhase::Pending | RestorePhase::Running => false,
        }
    }
}

impl BackupRestoreSpec {
    /// The PVC a restore writes: the new claim, the named one, or the source PVC itself.
    pub fn target_name(&self) -> String {
        self.target.new_claim.as_ref().map(|c| c.name.clone()).or_else(|| self.target.claim_name.clone()).unwrap_or_else(|| self.source.pvc.clone())
    }
}
