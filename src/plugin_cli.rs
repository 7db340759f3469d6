//! `backup-operator plugin …`: a strategy plugin on the command line, without a cluster. It loads
//! the component in the same sandbox as the operator, asks it what the operator would ask, applies
//! the same plan checks, and renders what the operator would create.
//!
//! Exit codes: 0 the plan is accepted (or the command succeeded), 2 the host refuses the plan,
//! 3 the plugin failed (invalid config, an error it returned, a trap, a timeout, an incompatible
//! or invalid component), 1 anything else (a file that cannot be read, a bad request file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::api::{BackupPolicy, BackupPolicySpec};
use crate::runs::destination;
use crate::error::Error;
use crate::runs::{self, RunChild};
use crate::base::names::RunKind;
use crate::strategy::bindings::types::{AccessMode, Action, ArtifactRequest, BackupRequest, KeyValue, Plan, PvcInfo, VolumeMode};
use crate::strategy::check::{check_destination, check_plan};
use crate::strategy::{PlanRequest, RuntimeConfig, StrategyRuntime};

pub const EXIT_REFUSED: u8 = 2;
pub const EXIT_PLUGIN_FAILED: u8 = 3;
pub const EXIT_OTHER: u8 = 1;

/// The `plugin` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Print the component's description: name, version, actions, config schema, sha256.
    Describe { wasm: PathBuf },
    /// Check a config (JSON, or a file holding it) with the plugin's validate-config.
    Validate {
        wasm: PathBuf,
        #[arg(long, default_value = "{}")]
        config: String,
    },
    /// Plan from a sample request (YAML or JSON file; every field has a default), print the plan,
    /// the host's verdict, and the Job or VolumeSnapshot the operator would create.
    Plan {
        wasm: PathBuf,
        #[arg(long)]
        request: Option<PathBuf>,
    },
    /// Print the sha256 of the component's bytes, for spec.plugin.sha256.
    Sha256 { wasm: PathBuf },
}

/// A sample request: what the operator would know when planning. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SampleRequest {
    /// backup (default), restore, prune or verify.
    #[serde(default)]
    pub action: SampleAction,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default = "default_policy")]
    pub policy: String,
    /// The BackupPolicy's spec, as in its manifest (default: a daily custom policy for all PVCs).
    #[serde(default)]
    pub spec: Option<serde_json::Value>,
    /// RFC 3339 (default 2026-01-01T00:00:00Z).
    #[serde(default)]
    pub scheduled_time: Option<String>,
    #[serde(default)]
    pub pvc: SamplePvc,
    /// Which of spec.destinations (default: the first, or the storage claim without them).
    #[serde(default)]
    pub destination: Option<String>,
    /// The artifact for restore, prune and verify (default: what a backup would name).
    #[serde(default)]
    pub artifact: Option<String>,
}

impl Default for SampleRequest {
    fn default() -> Self {
        SampleRequest {
            action: SampleAction::Backup,
            namespace: default_namespace(),
            policy: default_policy(),
            spec: None,
            scheduled_time: None,
            pvc: SamplePvc::default(),
            destination: None,
            artifact: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SampleAction {
    #[default]
    Backup,
    Restore,
    Prune,
    Verify,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SamplePvc {
    #[serde(default = "default_pvc")]
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub storage_class: Option<String>,
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
    /// ReadWriteOnce (default), ReadOnlyMany, ReadWriteMany, ReadWriteOncePod.
    #[serde(default)]
    pub access_modes: Vec<String>,
    /// Filesystem (default) or Block.
    #[serde(default)]
    pub volume_mode: Option<String>,
    #[serde(default)]
    pub node_name: Option<String>,
}

impl Default for SamplePvc {
    fn default() -> Self {
        SamplePvc { name: default_pvc(), labels: BTreeMap::new(), storage_class: None, capacity_bytes: None, access_modes: Vec::new(), volume_mode: None, node_name: None }
    }
}

fn default_namespace() -> String {
    "default".into()
}
fn default_policy() -> String {
    "sample".into()
}
fn default_pvc() -> String {
    "data-db-0".into()
}

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    fn other(message: impl Into<String>) -> Failure {
        Failure { code: EXIT_OTHER, message: message.into() }
    }

    fn plugin(e: &Error) -> Failure {
        let code = if e.is_permanent() { EXIT_PLUGIN_FAILED } else { EXIT_OTHER };
        Failure { code, message: format!("{}: {e}", e.classify().reason) }
    }
}

/// The policy, PVC and requests a sample describes.
pub struct Sample {
    pub policy: BackupPolicy,
    pub destination: destination::Destination,
    pub run: String,
    pub request: PlanRequest,
}

/// Builds the operator's request from a sample, the way a reconcile does.
pub fn sample(s: &SampleRequest) -> Result<Sample, String> {
    let mut spec = s.spec.clone().unwrap_or_else(|| serde_json::json!({}));
    let object = spec.as_object_mut().ok_or("spec must be an object")?;
    object.entry("schedule").or_insert_with(|| "@daily".into());
    object.entry("pvcSelector").or_insert_with(|| serde_json::json!({}));
    object.entry("backupStrategy").or_insert_with(|| "custom".into());
    let spec: BackupPolicySpec = serde_json::from_value(spec).map_err(|e| format!("spec: {e}"))?;
    let mut policy = BackupPolicy::new(&s.policy, spec);
    policy.metadata = ObjectMeta {
        name: Some(s.policy.clone()),
        namespace: Some(s.namespace.clone()),
        uid: Some("00000000-0000-0000-0000-000000000000".into()),
        ..ObjectMeta::default()
    };
    let destinations = destination::of(&policy.spec);
    let destination = match &s.destination {
        Some(name) => destinations.iter().find(|d| &d.name == name).cloned().ok_or_else(|| format!("destination {name:?} is not in spec.destinations"))?,
        None => destinations.first().cloned().ok_or("spec.destinations is empty")?,
    };
    let scheduled = chrono::DateTime::parse_from_rfc3339(s.scheduled_time.as_deref().unwrap_or("2026-01-01T00:00:00Z"))
        .map_err(|e| format!("scheduledTime: {e}"))?
        .with_timezone(&chrono::Utc);
    let run = crate::base::names::run_name_to(&s.policy, &s.pvc.name, &destination.name, scheduled);
    let modes = if s.pvc.access_modes.is_empty() { vec!["ReadWriteOnce".to_owned()] } else { s.pvc.access_modes.clone() };
    let access_modes = modes
        .iter()
        .map(|m| match m.as_str() {
            "ReadWriteOnce" => Ok(AccessMode::ReadWriteOnce),
            "ReadOnlyMany" => Ok(AccessMode::ReadOnlyMany),
            "ReadWriteMany" => Ok(AccessMode::ReadWriteMany),
            "ReadWriteOncePod" => Ok(AccessMode::ReadWriteOncePod),
            other => Err(format!("pvc.accessModes: unknown mode {other:?}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let volume_mode = match s.pvc.volume_mode.as_deref() {
        None | Some("Filesystem") => VolumeMode::Filesystem,
        Some("Block") => VolumeMode::Block,
        Some(other) => return Err(format!("pvc.volumeMode: {other:?} is not Filesystem or Block")),
    };
    let pvc = PvcInfo {
        name: s.pvc.name.clone(),
        namespace: s.namespace.clone(),
        labels: s.pvc.labels.iter().map(|(name, value)| KeyValue { name: name.clone(), value: value.clone() }).collect(),
        storage_class: s.pvc.storage_class.clone(),
        capacity_bytes: s.pvc.capacity_bytes,
        access_modes,
        volume_mode,
        node_name: s.pvc.node_name.clone(),
    };
    let info = crate::runs::request::policy_info(&policy, &run, Some(scheduled), &s.pvc.name, &destination);
    let artifact = || s.artifact.clone().unwrap_or_else(|| format!("{}.tar.gz", info.scheduled_stamp));
    let request = match s.action {
        SampleAction::Backup => PlanRequest::Backup(BackupRequest { policy: info.clone(), pvc }),
        SampleAction::Restore => PlanRequest::Restore(ArtifactRequest { policy: info.clone(), pvc, artifact: artifact() }),
        SampleAction::Prune => PlanRequest::Prune(ArtifactRequest { policy: info.clone(), pvc, artifact: artifact() }),
        SampleAction::Verify => PlanRequest::Verify(ArtifactRequest { policy: info.clone(), pvc, artifact: artifact() }),
    };
    Ok(Sample { policy, destination, run, request })
}

/// The objects the operator would create for a checked plan, as YAML.
pub fn render(sample: &Sample, plan: &Plan, plugin_label: &str) -> Result<String, String> {
    let policy = &sample.policy;
    let (ns, name, uid) = (policy.metadata.namespace.clone().unwrap_or_default(), policy.metadata.name.clone().unwrap_or_default(), "00000000-0000-0000-0000-000000000000");
    let access = destination::access(&policy.spec, &sample.destination);
    let (pvc, scheduled) = match &sample.request {
        PlanRequest::Backup(r) => (r.pvc.name.clone(), r.policy.scheduled_time.clone()),
        PlanRequest::Restore(r) | PlanRequest::Prune(r) | PlanRequest::Verify(r) => (r.pvc.name.clone(), r.policy.scheduled_time.clone()),
    };
    match (plan, &sample.request) {
        (Plan::VolumeSnapshot(p), PlanRequest::Backup(_)) => {
            let context = runs::snapshot::SnapshotContext { namespace: &ns, policy: &name, policy_uid: uid, run: &sample.run, pvc: &pvc, scheduled_time: &scheduled, plugin: plugin_label, owner: None };
            yaml(&runs::snapshot::render(&context, p))
        }
        (Plan::VolumeSnapshot(_), _) => Err("a volume-snapshot plan is only for backups".into()),
        (Plan::Job(job), PlanRequest::Backup(_)) => {
            let b = runs::backup_job::BackupJob {
                namespace: &ns,
                policy: &name,
                policy_uid: uid,
                run: &sample.run,
                pvc: &pvc,
                scheduled_time: &scheduled,
                plugin: plugin_label,
                access: &access,
                owner: None,
                backoff_limit: policy.spec.backoff_limit,
                active_deadline_seconds: policy.spec.active_deadline_seconds,
                node: None,
                run_as: policy.spec.pod_security_context.clone(),
            };
            yaml(&runs::backup_job::render(&b, job))
        }
        (Plan::Job(job), PlanRequest::Restore(r)) => {
            // A BackupRestore of this PVC into itself, rendered by the operator's own code.
            let restore_name = sample.run.clone();
            let spec: crate::api::BackupRestoreSpec = serde_json::from_value(serde_json::json!({"source": {"policy": name, "pvc": pvc}}))
                .map_err(|e| e.to_string())?;
            let mut restore = crate::api::BackupRestore::new(&restore_name, spec);
            restore.metadata.namespace = Some(ns.clone());
            let backup = crate::api::restore::RestoredBackup {
                policy: name.clone(),
                run_name: sample.run.clone(),
                destination: (!access.destination.is_empty()).then(|| access.destination.clone()),
                artifact: Some(r.artifact.clone()),
                sha256: None,
                scheduled_time: None,
                verified: true,
            };
            let job_name = crate::restore::render::job_name(&restore);
            let rendered = crate::restore::render::job(
                &crate::restore::render::RestoreJob { restore: &restore, policy, backup: &backup, target: &pvc, name: &job_name, plugin: plugin_label, access: &access },
                job,
            );
            yaml(&rendered)
        }
        (Plan::Job(job), PlanRequest::Prune(_) | PlanRequest::Verify(_)) => {
            let kind = if matches!(sample.request, PlanRequest::Prune(_)) { RunKind::Prune } else { RunKind::Verify };
            let child_name = crate::base::names::child_name(&sample.run, kind.label());
            let child = RunChild { kind, name: &child_name, namespace: &ns, policy: &name, policy_uid: uid, run: &sample.run, pvc: &pvc, plugin: plugin_label, access: &access, owner: None, run_as: policy.spec.pod_security_context.clone() };
            let rendered = match kind {
                RunKind::Prune => runs::prune_job::render(&child, job),
                RunKind::Backup | RunKind::Verify | RunKind::Cleanup | RunKind::Restore => runs::verify_job::render(&child, job),
            };
            yaml(&rendered)
        }
    }
}

fn yaml<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_yaml::to_string(value).map_err(|e| e.to_string())
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::other(format!("{}: {e}", path.display())))
}

fn runtime() -> Result<StrategyRuntime, Failure> {
    StrategyRuntime::new(RuntimeConfig::default()).map_err(|e| Failure::other(e.to_string()))
}

async fn load(runtime: &StrategyRuntime, path: &Path) -> Result<Arc<crate::strategy::Plugin>, Failure> {
    let bytes = read(path)?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into());
    runtime.load(&name, Arc::from(bytes), None).await.map_err(|e| Failure::plugin(&e.into()))
}

/// Runs one `plugin` subcommand; returns what to print on stdout.
pub async fn run(command: PluginCommand) -> Result<String, Failure> {
    match command {
        PluginCommand::Sha256 { wasm } => Ok(format!("{}\n", crate::strategy::runtime::sha256_hex(&read(&wasm)?))),
        PluginCommand::Describe { wasm } => {
            let rt = runtime()?;
            let plugin = load(&rt, &wasm).await?;
            let d = &plugin.description;
            let actions: Vec<&str> = d
                .actions
                .iter()
                .map(|a| match a {
                    Action::Backup => "backup",
                    Action::Restore => "restore",
                    Action::Prune => "prune",
                    Action::Verify => "verify",
                })
                .collect();
            Ok(format!(
                "name: {}\nversion: {}\nsummary: {}\nactions: [{}]\ncontract: {}\nsha256: {}\nconfigSchema: {}\n",
                d.name,
                d.version,
                d.summary,
                actions.join(", "),
                crate::strategy::WIT_PACKAGE,
                plugin.id.digest,
                if d.config_schema.is_empty() { "none".into() } else { d.config_schema.clone() }
            ))
        }
        PluginCommand::Validate { wasm, config } => {
            let config = if Path::new(&config).is_file() { String::from_utf8_lossy(&read(Path::new(&config))?).into_owned() } else { config };
            let rt = runtime()?;
            let plugin = load(&rt, &wasm).await?;
            rt.validate_config(plugin, None, config).await.map_err(|e| Failure::plugin(&e.into()))?;
            Ok("config accepted\n".into())
        }
        PluginCommand::Plan { wasm, request } => {
            let sample_request: SampleRequest = match &request {
                Some(path) => serde_yaml::from_slice(&read(path)?).map_err(|e| Failure::other(format!("{}: {e}", path.display())))?,
                None => SampleRequest::default(),
            };
            let sample = sample(&sample_request).map_err(Failure::other)?;
            let rt = runtime()?;
            let plugin = load(&rt, &wasm).await?;
            let (rt2, plugin2, request2) = (rt.clone(), plugin.clone(), sample.request.clone());
            let plan = tokio::task::spawn_blocking(move || rt2.plan_unchecked_blocking(&plugin2, &request2))
                .await
                .map_err(|e| Failure::other(e.to_string()))?
                .map_err(|e| Failure::plugin(&e.into()))?;
            let mut out = format!("# plugin {} {} (sha256 {})\n# run {}\n# plan, as the plugin returned it:\n", plugin.description.name, plugin.description.version, plugin.id.digest, sample.run);
            for line in format!("{plan:#?}").lines() {
                out.push_str(&format!("#   {line}\n"));
            }
            let verdict = check_plan(&plan, sample.request.purpose(), &rt.config().plan_policy).and_then(|()| check_destination(&plan, &crate::runs::destination::for_plan(&sample.destination, &sample_request.namespace, &sample_request.policy, &sample_request.pvc.name)));
            match verdict {
                Ok(()) => {
                    out.push_str("# verdict: accepted; the operator would create:\n");
                    out.push_str(&render(&sample, &plan, &format!("{}@{}", plugin.description.name, &plugin.id.digest[..12])).map_err(Failure::other)?);
                    Ok(out)
                }
                Err(violation) => Err(Failure { code: EXIT_REFUSED, message: format!("{out}# verdict: refused (PlanRefused): {violation}") }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_has_defaults_for_everything_and_follows_the_operator() {
        let s = sample(&SampleRequest::default()).expect("sample");
        assert_eq!(s.run, crate::base::names::run_name("sample", "data-db-0", chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc)));
        let PlanRequest::Backup(r) = &s.request else { panic!("backup") };
        assert_eq!((r.policy.namespace.as_str(), r.pvc.access_modes.as_slice()), ("default", &[AccessMode::ReadWriteOnce][..]));

        let yaml = r#"
action: prune
namespace: prod
policy: db
spec: {backupStrategy: restic, restic: {passwordSecret: {name: pw, key: password}},
       destinations: [{name: offsite, s3: {endpoint: "http://s3:9000", bucket: backups, credentialsSecret: creds}}]}
pvc: {name: data-db-1, volumeMode: Block}
artifact: db-data-db-1-offsite-29401234
"#;
        let request: SampleRequest = serde_yaml::from_str(yaml).expect("yaml");
        let s = sample(&request).expect("sample");
        assert_eq!(s.destination.name, "offsite");
        let PlanRequest::Prune(r) = &s.request else { panic!("prune") };
        assert_eq!((r.artifact.as_str(), r.pvc.volume_mode), ("db-data-db-1-offsite-29401234", VolumeMode::Block));
        assert_eq!(r.policy.repository_password_env.as_deref(), Some(crate::base::names::REPOSITORY_PASSWORD_ENV));

        for bad in ["color: red", "pvc: {volumeMode: Tape}", "destination: nowhere", "scheduledTime: yesterday"] {
            let parsed: Result<SampleRequest, _> = serde_yaml::from_str(bad);
            assert!(parsed.map_err(|e| e.to_string()).and_then(|r| sample(&r).map(|_| ())).is_err(), "{bad}");
        }
    }
}
