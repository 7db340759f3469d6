//! The `BackupPolicy` custom resource (`backup.example.com/v1alpha1`): its spec and status. Field
//! names are a public contract; validation and defaults live in the generated OpenAPI schema, so
//! the API server itself refuses a bad spec.

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
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
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
    /// How PVCs are backed up: tar (a verified archive on the storage claim), snapshot (a CSI
    /// VolumeSnapshot), restic (an encrypted, incremental restic repository per PVC and
    /// destination) or custom (the WebAssembly plugin in spec.plugin).
    #[serde(default)]
    pub backup_strategy: BackupStrategyKind,
    /// Successful backups kept per PVC. The newest successful one is never deleted.
    #[serde(default = "default_retention_count")]
    #[schemars(range(min = 1, max = 1000))]
    pub retention_count: u32,
    /// Failed backup Jobs kept per PVC, for inspection.
    #[serde(default = "default_failed_jobs_history_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub failed_jobs_history_limit: u32,
    /// The image backup Jobs run (tar strategy).
    #[serde(default = "default_backup_image")]
    #[schemars(length(min = 1))]
    pub backup_image: String,
    /// The claim backups are written to when spec.destinations is not set.
    #[serde(default = "default_backup_storage_claim")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub backup_storage_claim: String,
    /// Where backups are stored: claims and S3-compatible object storage, each PVC backed up to
    /// every one by its own run. History, retention and the newest success are kept per
    /// destination. Default: the one claim in spec.backupStorageClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub destinations: Option<Vec<Destination>>,
    /// Settings of the restic strategy (backupStrategy: restic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restic: Option<ResticSpec>,
    /// Stops new runs; resuming does not replay the suspended period.
    #[serde(default)]
    pub suspend: bool,
    /// A run that could not start within this many seconds of its time is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31536000))]
    pub starting_deadline_seconds: Option<i64>,
    /// Per PVC: Forbid skips a run while that PVC's previous backup is active; Replace deletes it.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Retries of a backup Job's pod before the run counts as failed.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: i32,
    /// Seconds a backup Job may run before Kubernetes stops it and the run counts as failed
    /// (default 6 hours), so that a hung run never blocks the next ones for good.
    #[serde(default = "default_active_deadline_seconds", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2592000))]
    pub active_deadline_seconds: Option<i64>,
    /// Seconds a run may take to get its pod running (refused by admission, an image that cannot
    /// be pulled, a pod that cannot be scheduled) before the operator fails it with that cause.
    #[serde(default = "default_start_timeout_seconds")]
    #[schemars(range(min = 10, max = 86400))]
    pub start_timeout_seconds: i64,
    /// The user and groups a policy's Jobs run as, instead of the strategy's choice. With it the
    /// Jobs run as that user with no added capabilities, which Pod Security `restricted` allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<RunAs>,
    /// The custom plugin (`backupStrategy: custom`), or config and limits for a built-in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginSpec>,
    /// What happens to the backups when the policy is deleted: Retain keeps them on the storage
    /// claim; Delete prunes every artifact (through the strategy) before the policy goes away.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Re-verification of stored backups on a schedule of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
    /// Webhooks told about runs: each target names the events it wants. Delivery never delays a
    /// run; refused addresses show in the Notifications condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub notifications: Vec<NotificationTarget>,
    /// Commands run in the application's pod around each backup (a checkpoint, a flush), with
    /// pods/exec: see the hooks ClusterRole in config/rbac.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// The ServiceAccount of this namespace the operator acts as for this policy when it runs
    /// with --tenant-impersonation (default: the operator's --default-service-account, `backup`):
    /// hooks' exec, reading the Secrets and ConfigMaps the policy names, and creating its Jobs and
    /// VolumeSnapshots are then allowed only as far as that account's RBAC allows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub service_account_name: Option<String>,
}

/// Commands run in the running pod that mounts the PVC being backed up.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
pub struct Hooks {
    /// Before the backup starts. A failure fails the run (unless onError is Continue); its output
    /// goes to the run's history message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<Hook>,
    /// After the backup finished (succeeded or failed), whenever the pre hook ran, in the same pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<Hook>,
}

/// One command run with pods/exec.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    /// The command and its arguments (no shell unless it names one, e.g. ["sh", "-c", "..."]).
    #[schemars(length(min = 1, max = 64))]
    pub command: Vec<String>,
    /// The container it runs in. Default: the first container that mounts the PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub container: Option<String>,
    /// Seconds it may take (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<u32>,
    /// Fail (default): a failed pre hook fails the run. Continue: the backup runs anyway, and
    /// the failure is noted on the run.
    #[serde(default)]
    pub on_error: HookErrorPolicy,
}

/// What a failed hook does to the run.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
pub enum HookErrorPolicy {
    #[default]
    Fail,
    Continue,
}

/// One webhook and the events it is sent.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationTarget {
    /// Names the target in events and the status: a DNS label of at most 63 characters, unique
    /// in the policy.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// The events sent: Succeeded and Failed (a run's result), Corrupted (a stored backup failed
    /// re-verification), PruneFailed (retention could not delete a backup), PluginFailed (the
    /// strategy could not plan a run), Skipped (a run skipped: the previous one still runs, or a
    /// restore writes the PVC) and Missed (a run not started within startingDeadlineSeconds).
    #[schemars(length(min = 1, max = 7))]
    pub events: Vec<NotificationEvent>,
    /// Where and how the notification is sent.
    pub webhook: Webhook,
}

/// What happened, as a notification names it.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotificationEvent {
    Succeeded,
    Failed,
    Missed,
    Skipped,
    Corrupted,
    PruneFailed,
    PluginFailed,
}

/// An HTTP(S) webhook.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The Secret key (in the policy's namespace) holding the URL: webhook URLs often carry a
    /// token. http or https; https is verified against the system's CA certificates.
    pub url_secret: SecretKey,
    /// The body: Generic (the documented JSON), Slack (an incoming-webhook message) or CloudEvents
    /// (a CloudEvents 1.0 structured JSON event).
    #[serde(default)]
    pub format: WebhookFormat,
}

/// The body of a webhook request.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
pub enum WebhookFormat {
    #[default]
    Generic,
    Slack,
    CloudEvents,
}

/// One place backups are stored: exactly one of `claim` and `s3`.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "has(self.claim) != has(self.s3)", "message": "exactly one of claim and s3"}]))]
pub struct Destination {
    /// Names the destination in run names, labels and the status: a DNS label of at most 20
    /// characters, unique in the policy.
    #[schemars(length(min = 1, max = 20), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// A PersistentVolumeClaim in the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimDestination>,
    /// An S3-compatible bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Destination>,
}

/// A claim destination.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
pub struct ClaimDestination {
    /// The PersistentVolumeClaim's name, in the policy's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
}

/// An S3-compatible bucket. Each PVC's backups go under `<prefix>/<namespace>/<policy>/<pvc>/`.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    /// The service's URL, `http://` or `https://` (for example https://s3.eu-west-1.amazonaws.com).
    #[schemars(length(max = 512), regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"))]
    pub endpoint: String,
    /// The bucket (S3 naming rules: 3 to 63 lowercase letters, digits, dots and hyphens).
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))]
    pub bucket: String,
    /// A key prefix inside the bucket: segments separated by `/`, none of them empty, `.` or
    /// `..` (a prefix cannot climb out of its place), no leading or trailing slash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), regex(pattern = r"^([A-Za-z0-9!_*'()-][A-Za-z0-9!_.*'()-]*|\.[A-Za-z0-9!_*'()-][A-Za-z0-9!_.*'()-]*|\.\.[A-Za-z0-9!_.*'()-]+)(/([A-Za-z0-9!_*'()-][A-Za-z0-9!_.*'()-]*|\.[A-Za-z0-9!_*'()-][A-Za-z0-9!_.*'()-]*|\.\.[A-Za-z0-9!_.*'()-]+))*$"))]
    pub prefix: Option<String>,
    /// The bucket's region (default us-east-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
    /// A Secret in the policy's namespace with the keys AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY. The operator checks that they exist; the Job reads them.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// A key of credentialsSecret holding a PEM CA bundle to trust for the endpoint (a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ca_bundle_key: Option<String>,
}

/// The restic strategy's settings.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResticSpec {
    /// The Secret (in the policy's namespace) and key holding the repository password: every
    /// repository of the policy is encrypted with it, and cannot be read without it.
    pub password_secret: SecretKey,
}

/// A key of a Secret in the policy's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
pub struct SecretKey {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key in the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// What deleting a policy does to its backups.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// Re-checks the newest artifacts of each PVC with the strategy's verify plan.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    /// Cron schedule of the verification runs, in the policy's time zone (same syntax as
    /// spec.schedule).
    #[schemars(length(min = 1))]
    pub schedule: String,
    /// How many of the newest successful backups of each PVC each verification run re-checks.
    #[serde(default = "default_verify_newest")]
    #[schemars(range(min = 1, max = 10))]
    pub newest: u32,
}

fn default_verify_newest() -> u32 {
    1
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
fn default_active_deadline_seconds() -> Option<i64> {
    Some(6 * 3600)
}
fn default_start_timeout_seconds() -> i64 {
    600
}

/// Who a policy's Jobs run as.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunAs {
    /// The user ID (not 0: this is for backups that do not need root).
    #[schemars(range(min = 1, max = 2147483647))]
    pub run_as_user: i64,
    /// The primary group ID (default: the user ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub run_as_group: Option<i64>,
    /// The supplemental group that owns the volumes (where the volume type supports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub fs_group: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackupStrategyKind {
    Snapshot,
    #[default]
    Tar,
    Custom,
    /// Incremental, encrypted, deduplicated backups with restic (spec.restic.passwordSecret).
    Restic,
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
    /// A file in the operator's --plugin-dir: a plain file name (at most 253 of A-Z a-z 0-9 . _ -,
    /// not starting with a dot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"))]
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
    /// The ConfigMap's name, in the policy's namespace.
    pub name: String,
    /// The key under binaryData that holds the component.
    pub key: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PluginLimitsSpec {
    /// Memory a plugin call may use, in bytes (only lower than the operator's limit counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 17179869184u64))]
    pub memory_bytes: Option<u64>,
    /// Time a plugin call may take, in milliseconds (only lower than the operator's limit counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600000))]
    pub timeout_millis: Option<u64>,
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// What the operator observed: the schedule's progress, recent runs, and whether backups work.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicyStatus {
    /// The newest scheduled time for which every matched PVC has a run or a recorded failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the newest successful backup of any PVC finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// When the next run is due (none while suspended or invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The newest verification time that started its runs (spec.verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verify_time: Option<Time>,
    /// Recent runs, newest first, at most 10.
    #[serde(default)]
    pub backup_history: Vec<BackupRun>,
    /// The strategy plugin the policy uses, as last loaded (to plan a run or check the config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginStatus>,
    /// Per destination (spec.destinations): its newest successful backup, the backups it holds,
    /// and why it is not working, if it is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<DestinationStatus>,
    /// Ready (backing up as specified, or why not) and Suspended.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 9007199254740991i64))]
    pub observed_generation: Option<i64>,
}

/// One run: a policy, a PVC and a scheduled time.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupRun {
    /// The run's name, chosen by the operator: the name of its Job or VolumeSnapshot.
    pub job_name: String,
    /// The PVC backed up.
    pub pvc: String,
    /// The destination (spec.destinations[].name) the run wrote to; unset without destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The time the run was scheduled for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
    /// When the run started: its Job (or snapshot) was created. A run whose pod waits for a node
    /// is Pending from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Pending, Running, Succeeded or Failed.
    pub status: RunStatus,
    /// Why the run failed, as a reason word (PluginFailed, PlanRefused, BackoffLimitExceeded, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, in words.
    #[serde(default)]
    pub message: String,
    /// The plugin that planned the run: name@sha256-prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Where the backup is: its path on the storage claim, or the VolumeSnapshot's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// Size of the artifact in bytes (a snapshot's restoreSize).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 9007199254740991u64))]
    pub size_bytes: Option<u64>,
    /// sha256 of the artifact, as the run computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Whether the artifact was verified: after writing, and again by each verification run.
    /// False means it is unverified or was found corrupted (see message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// When a verification run last checked the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verify_time: Option<Time>,
    /// True when nothing was created for the run (it could not be planned, or was refused): this
    /// entry is then the only record of the failure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_started: bool,
}

/// Which plugin: what it says it is, and the digest of its bytes.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    /// Where it came from: tar, snapshot or restic for a built-in, configmap/<ns>/<name>[<key>]
    /// or plugin-dir/<file> for a custom one.
    pub source: String,
    /// The name the plugin gives itself (describe).
    pub name: String,
    /// The version the plugin gives itself (describe).
    pub version: String,
    /// sha256 of its bytes (what spec.plugin.sha256 pins).
    pub sha256: String,
}

/// One destination's state.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DestinationStatus {
    /// The destination's name.
    pub name: String,
    /// When its newest successful backup (of any PVC) finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// Successful backups it holds, over all PVCs.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100000))]
    pub backups: u32,
    /// Why backups to it are not working (empty when they are).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The state of a run.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
pub enum RunStatus {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
}
