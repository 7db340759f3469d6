//! The `BackupPolicy` custom resource (`backup.example.com/v1alpha1`). Field names are a public
//! contract; validation and defaults live in the generated OpenAPI schema, so the API server
//! itself refuses a bad spec.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A schedule of backups for the PVCs a selector matches in the policy's namespace.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "backup.example.com",
    version = "v1alpha1",
    kind = "BackupPolicy",
    plural = "backuppolicies",
    shortname = "bp",
    namespaced,
    status = "BackupPolicyStatus",
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Strategy","type":"string","jsonPath":".spec.backupStrategy"}"#,
    printcolumn = r#"{"name":"Suspend","type":"boolean","jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Last Schedule","type":"date","jsonPath":".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"Last Success","type":"date","jsonPath":".status.lastSuccessfulTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicySpec {
    /// Cron schedule: 5 fields (minute hour day-of-month month day-of-week) or @yearly,
    /// @monthly, @weekly, @daily, @hourly.
    #[schemars(length(min = 1))]
    pub schedule: String,
    /// IANA time zone the schedule is evaluated in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Selects the PVCs to back up, in the policy's namespace.
    pub pvc_selector: LabelSelector,
    #[serde(default)]
    pub backup_strategy: BackupStrategyKind,
    /// Successful backups kept per PVC. The newest successful one is never deleted.
    #[serde(default = "default_retention_count")]
    #[schemars(range(min = 1))]
    pub retention_count: u32,
    /// Failed backup Jobs kept per PVC, for inspection.
    #[serde(default = "default_failed_jobs_history_limit")]
    pub failed_jobs_history_limit: u32,
    /// The image backup Jobs run (tar strategy).
    #[serde(default = "default_backup_image")]
    #[schemars(length(min = 1))]
    pub backup_image: String,
    /// The claim backups are written to.
    #[serde(default = "default_backup_storage_claim")]
    #[schemars(length(min = 1))]
    pub backup_storage_claim: String,
    /// Stops new runs; resuming does not replay the suspended period.
    #[serde(default)]
    pub suspend: bool,
    /// A run that could not start within this many seconds of its time is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,
    /// Per PVC: Forbid skips a run while that PVC's previous backup is active; Replace deletes it.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Retries of a backup Job's pod before the run counts as failed.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0))]
    pub backoff_limit: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// The custom plugin (`backupStrategy: custom`), or config and limits for a built-in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginSpec>,
}

fn default_retention_count() -> u32 {
    7
}
fn default_failed_jobs_history_limit() -> u32 {
    1
}
fn default_backup_image() -> String {
    "busybox:latest".into()
}
fn default_backup_storage_claim() -> String {
    "backup-storage".into()
}
fn default_backoff_limit() -> i32 {
    1
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackupStrategyKind {
    Snapshot,
    #[default]
    Tar,
    Custom,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
pub enum ConcurrencyPolicy {
    Allow,
    #[default]
    Forbid,
    Replace,
}

/// Where a custom strategy plugin comes from, and what it is given.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PluginSpec {
    /// A ConfigMap in the policy's namespace holding the component in `binaryData`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// A file in the operator's --plugin-dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Pins the plugin's exact bytes (lowercase hex sha256); other bytes are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub sha256: Option<String>,
    /// Configuration passed to the plugin as JSON, checked by its validate-config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub config: Option<serde_json::Value>,
    /// Lower the operator's limits for this plugin (never raise them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<PluginLimitsSpec>,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
pub struct ConfigMapKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PluginLimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_millis: Option<u64>,
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Recent runs, newest first, at most 10.
    #[serde(default)]
    pub backup_history: Vec<BackupRun>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupRun {
    pub job_name: String,
    pub pvc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    pub status: RunStatus,
    #[serde(default)]
    pub message: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum RunStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// The CRD as YAML, generated from these types (`backup-operator crd`).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&BackupPolicy::crd())
}

/// A chrono time as a Kubernetes `Time` (k8s-openapi uses jiff). Times outside jiff's range
/// (years -9999..=9999) cannot occur here: they come from the clock and cron schedules.
pub fn to_time(t: chrono::DateTime<chrono::Utc>) -> Time {
    let nanos = i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0);
    Time(k8s_openapi::jiff::Timestamp::new(t.timestamp(), nanos).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

/// A Kubernetes `Time` as a chrono time.
pub fn from_time(t: &Time) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.0.as_second(), u32::try_from(t.0.subsec_nanosecond()).unwrap_or(0))
}
