//! The BackupPolicy controller: observe (PVCs, Jobs, the storage claim) → decide (pure, in
//! [`crate::decide`]) → plan each new run through its strategy plugin → apply (server-side apply,
//! one field manager; status through the status subresource).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use crate::api::{BackupPolicy, BackupPolicyStatus, BackupStrategyKind, RunStatus, from_time, to_time};
use crate::decide::{self, Decision, Observed, ObservedJob};
use crate::error::{Error, Result};
use crate::render::{self, ANNOTATION_SCHEDULED_TIME, JobContext, LABEL_POLICY, LABEL_PVC};
use crate::snapshot;
use crate::strategy::bindings::types::{AccessMode, BackupRequest, KeyValue, Plan, PolicyInfo, PvcInfo, VolumeMode};
use crate::strategy::builtin::BuiltinStrategy;
use crate::strategy::source::{self, PluginLocation};
use crate::strategy::{Plugin, PluginLimits, StrategyRuntime};

pub const FIELD_MANAGER: &str = "backup-operator";
/// How often the plugin directory is checked for new versions.
const PLUGIN_DIR_POLL: Duration = Duration::from_secs(10);

pub struct Context {
    pub client: Client,
    pub runtime: StrategyRuntime,
    pub plugin_dir: Option<PathBuf>,
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, runtime: StrategyRuntime, plugin_dir: Option<PathBuf>, namespace: Option<String>) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance: None });
        Context { client, runtime, plugin_dir, namespace, recorder, failures: Mutex::default() }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(ctx: Arc<Context>) {
    let policies: Api<BackupPolicy> = ctx.api();
    let mut controller = Controller::new(policies, watcher::Config::default())
        .owns(ctx.api::<Job>(), watcher::Config::default().labels(LABEL_POLICY));
    // A new plugin version in --plugin-dir: look at every policy again.
    if let Some(dir) = &ctx.plugin_dir {
        controller = controller.reconcile_all_on(source::watch_dir(dir.clone(), PLUGIN_DIR_POLL));
    }
    let store = controller.store();
    let pvc_store = store.clone();
    controller
        // A PVC appearing, binding or going away changes what the namespace's policies back up.
        .watches(ctx.api::<PersistentVolumeClaim>(), watcher::Config::default(), move |pvc| {
            let ns = pvc.namespace();
            pvc_store.state().into_iter().filter(move |p| p.namespace() == ns).map(|p| ObjectRef::from_obj(&*p))
        })
        // A new plugin version in a ConfigMap is picked up at once.
        .watches(ctx.api::<ConfigMap>(), watcher::Config::default(), move |cm| {
            let (ns, name) = (cm.namespace(), cm.name_any());
            store
                .state()
                .into_iter()
                .filter(move |p| {
                    p.namespace() == ns
                        && p.spec.plugin.as_ref().and_then(|pl| pl.config_map_ref.as_ref()).is_some_and(|r| r.name == name)
                })
                .map(|p| ObjectRef::from_obj(&*p))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(policy = %obj, "reconciled"),
                Err(e) => tracing::warn!("reconcile: {e}"),
            }
        })
        .await;
}

fn error_policy(policy: Arc<BackupPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", policy.namespace().unwrap_or_default(), policy.name_any());
    let n = ctx.failures.lock().map(|mut f| {
        let n = f.entry(key).or_insert(0);
        *n += 1;
        *n
    });
    let attempt = n.unwrap_or(1).min(8);
    let backoff = Duration::from_secs(2u64 << attempt).min(Duration::from_secs(300));
    tracing::warn!(policy = %policy.name_any(), error = %error, label = error.metric_label(), ?backoff, "reconcile failed");
    Action::requeue(backoff)
}

/// `matchLabels` and `matchExpressions` as a label selector query.
pub fn selector_query(selector: &LabelSelector) -> Result<String> {
    let mut parts: Vec<String> = selector.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => return Err(Error::InvalidSpec(format!("pvcSelector: unknown operator {other:?}"))),
        });
    }
    Ok(parts.join(","))
}

fn time(t: &Option<Time>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(from_time)
}

fn observe_job(job: &Job) -> Option<ObservedJob> {
    let labels = job.metadata.labels.as_ref()?;
    let pvc = labels.get(LABEL_PVC)?.clone();
    let scheduled = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SCHEDULED_TIME))
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let status = job.status.clone().unwrap_or_default();
    let conditions = status.conditions.clone().unwrap_or_default();
    let has = |type_: &str| conditions.iter().find(|c| c.type_ == type_ && c.status == "True");
    let artifact = job.metadata.annotations.as_ref().and_then(|a| a.get(render::ANNOTATION_ARTIFACT)).cloned().unwrap_or_default();
    let (run_status, message) = if has("Complete").is_some() {
        (RunStatus::Succeeded, format!("written and verified: {artifact}"))
    } else if let Some(c) = has("Failed") {
        (RunStatus::Failed, format!("{}: {}", c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
    } else if status.active.unwrap_or(0) > 0 {
        (RunStatus::Running, String::new())
    } else {
        (RunStatus::Pending, String::new())
    };
    Some(ObservedJob {
        name: job.name_any(),
        pvc,
        scheduled,
        status: run_status,
        start: time(&status.start_time).or_else(|| time(&job.metadata.creation_timestamp)),
        completion: time(&status.completion_time).or_else(|| {
            (run_status == RunStatus::Failed).then(|| conditions.iter().find(|c| c.type_ == "Failed").and_then(|c| time(&c.last_transition_time))).flatten()
        }),
        message,
    })
}

fn pvc_info(pvc: &PersistentVolumeClaim) -> PvcInfo {
    let spec = pvc.spec.clone().unwrap_or_default();
    let status = pvc.status.clone().unwrap_or_default();
    PvcInfo {
        name: pvc.name_any(),
        namespace: pvc.namespace().unwrap_or_default(),
        labels: pvc.labels().iter().map(|(k, v)| KeyValue { name: k.clone(), value: v.clone() }).collect(),
        storage_class: spec.storage_class_name.clone(),
        capacity_bytes: status.capacity.as_ref().and_then(|c| c.get("storage")).and_then(|q| parse_quantity(&q.0)),
        access_modes: spec
            .access_modes
            .iter()
            .flatten()
            .filter_map(|m| match m.as_str() {
                "ReadWriteOnce" => Some(AccessMode::ReadWriteOnce),
                "ReadOnlyMany" => Some(AccessMode::ReadOnlyMany),
                "ReadWriteMany" => Some(AccessMode::ReadWriteMany),
                "ReadWriteOncePod" => Some(AccessMode::ReadWriteOncePod),
                _ => None,
            })
            .collect(),
        volume_mode: if spec.volume_mode.as_deref() == Some("Block") { VolumeMode::Block } else { VolumeMode::Filesystem },
        node_name: pvc.annotations().get("volume.kubernetes.io/selected-node").cloned(),
    }
}

/// Bytes of a quantity like `64Mi`, `1Gi`, `500M` or `1024`.
fn parse_quantity(q: &str) -> Option<u64> {
    let units: [(&str, u64); 10] = [
        ("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40), ("Pi", 1 << 50),
        ("k", 1_000), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000), ("P", 1_000_000_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().ok()?.checked_mul(factor);
        }
    }
    q.parse().ok()
}

/// Upserts a condition, keeping its transition time when its status does not change.
fn set_condition(conditions: &mut Vec<Condition>, type_: &str, status: bool, reason: &str, message: String, generation: Option<i64>, now: DateTime<Utc>) {
    let status = if status { "True" } else { "False" }.to_owned();
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| to_time(now));
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: transition,
    });
}

async fn resolve_plugin(policy: &BackupPolicy, ctx: &Context) -> Result<Arc<Plugin>> {
    let pinned = policy.spec.plugin.as_ref().and_then(|p| p.sha256.as_deref());
    let (name, bytes) = match policy.spec.backup_strategy {
        BackupStrategyKind::Tar => (BuiltinStrategy::Tar.name().to_owned(), Arc::from(BuiltinStrategy::Tar.wasm())),
        BackupStrategyKind::Snapshot => (BuiltinStrategy::Snapshot.name().to_owned(), Arc::from(BuiltinStrategy::Snapshot.wasm())),
        BackupStrategyKind::Custom => {
            let spec = policy.spec.plugin.as_ref().ok_or_else(|| {
                Error::InvalidSpec("backupStrategy custom needs spec.plugin.configMapRef or spec.plugin.file".into())
            })?;
            let location = match (&spec.config_map_ref, &spec.file, &ctx.plugin_dir) {
                (Some(r), None, _) => PluginLocation::ConfigMap { namespace: policy.namespace().unwrap_or_default(), name: r.name.clone(), key: r.key.clone() },
                (None, Some(file), Some(dir)) => PluginLocation::File { dir: dir.clone(), file: file.clone() },
                (None, Some(_), None) => return Err(Error::InvalidSpec("spec.plugin.file needs the operator to run with --plugin-dir".into())),
                _ => return Err(Error::InvalidSpec("spec.plugin needs exactly one of configMapRef and file".into())),
            };
            (location.display_name(), location.fetch(&ctx.client).await?)
        }
    };
    ctx.runtime.load(&name, bytes, pinned).await
}

/// The policy's opaque plugin config as JSON ("{}" when unset).
fn plugin_config(policy: &BackupPolicy) -> String {
    policy.spec.plugin.as_ref().and_then(|p| p.config.as_ref()).map_or_else(|| "{}".into(), ToString::to_string)
}

fn plugin_limits(policy: &BackupPolicy) -> Option<PluginLimits> {
    let l = policy.spec.plugin.as_ref()?.limits.as_ref()?;
    Some(PluginLimits { memory_limit_bytes: l.memory_bytes, deadline: l.timeout_millis.map(Duration::from_millis) })
}

async fn reconcile(policy: Arc<BackupPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let ns = policy.namespace().ok_or_else(|| Error::InvalidSpec("BackupPolicy without a namespace".into()))?;
    let name = policy.name_any();
    let now = Utc::now();
    let pvcs_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);

    // --- observe
    let selector = selector_query(&policy.spec.pvc_selector)?;
    let mut pvcs: Vec<PersistentVolumeClaim> = pvcs_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .filter(|p| p.name_any() != policy.spec.backup_storage_claim)
        .collect();
    pvcs.sort_by_key(|p| p.name_any());
    let storage_claim_exists = pvcs_api.get_opt(&policy.spec.backup_storage_claim).await?.is_some();
    let uid = policy.uid().unwrap_or_default();
    let mut jobs: Vec<ObservedJob> = jobs_api
        .list(&ListParams::default().labels(&format!("{LABEL_POLICY}={name}")))
        .await?
        .items
        .iter()
        .filter(|j| j.owner_references().iter().any(|o| o.uid == uid))
        .filter_map(observe_job)
        .collect();
    // Runs of the snapshot strategy are VolumeSnapshots rather than Jobs.
    let snapshots = snapshot::observe(&ctx.client, &ns, &name, &uid).await?;
    let snapshot_names: Vec<String> = snapshots.iter().map(|s| s.name.clone()).collect();
    jobs.extend(snapshots);
    let status = policy.status.clone().unwrap_or_default();
    let suspended = status.conditions.iter().find(|c| c.type_ == "Suspended");
    let resumed_at = decide::resumed_at(
        suspended.and_then(|c| Some((c.status.as_str() == "True", from_time(&c.last_transition_time)?))),
        policy.spec.suspend,
        now,
    );
    let observed = Observed {
        now,
        policy: name.clone(),
        spec: policy.spec.clone(),
        created: time(&policy.metadata.creation_timestamp).unwrap_or(now),
        last_schedule_time: time(&status.last_schedule_time),
        resumed_at,
        pvcs: pvcs.iter().map(ResourceExt::name_any).collect(),
        storage_claim_exists,
        jobs,
    };

    // --- decide
    let decision = decide::decide(&observed);

    // --- apply: deletions, then new runs planned by the strategy
    for job in &decision.delete {
        if snapshot_names.contains(job) {
            snapshot::delete(&ctx.client, &ns, job).await?;
            tracing::info!(policy = %name, snapshot = %job, "deleted volume snapshot");
            continue;
        }
        match jobs_api.delete(job, &DeleteParams::background()).await {
            Ok(_) => tracing::info!(policy = %name, job, "deleted backup job"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut plugin_error: Option<Error> = None;
    if !decision.create.is_empty() {
        match create_runs(&policy, &ctx, &decision, &pvcs).await {
            Ok(()) => {}
            Err(e) if e.is_permanent() => plugin_error = Some(e),
            Err(e) => return Err(e),
        }
    } else if policy.spec.backup_strategy == BackupStrategyKind::Custom || policy.spec.plugin.is_some() {
        // Check the plugin and its config on every change, not only when a run is due.
        if let Err(e) = check_plugin(&policy, &ctx).await {
            if !e.is_permanent() {
                return Err(e);
            }
            plugin_error = Some(e);
        }
    }

    let reference = policy.object_ref(&());
    if let Some(e) = &plugin_error {
        publish(&ctx, &reference, EventType::Warning, e.metric_label(), e.to_string()).await;
    }
    if decision.missed > crate::schedule::TOO_MANY_MISSED {
        publish(&ctx, &reference, EventType::Warning, "TooManyMissedRuns", format!("{} scheduled runs were missed; only the most recent one starts", decision.missed)).await;
    }
    for pvc in &decision.skipped_active {
        publish(&ctx, &reference, EventType::Normal, "RunSkipped", format!("{pvc}: the previous backup is still running (concurrencyPolicy Forbid)")).await;
    }
    write_status(&policy, &ctx, &decision, plugin_error.as_ref(), now).await?;
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&format!("{ns}/{name}"));
    }
    Ok(match decision.requeue_at {
        Some(at) => Action::requeue((at - now).to_std().unwrap_or_default().max(Duration::from_millis(100))),
        None => Action::await_change(),
    })
}

async fn check_plugin(policy: &BackupPolicy, ctx: &Context) -> Result<()> {
    let plugin = resolve_plugin(policy, ctx).await?;
    let config = plugin_config(policy);
    ctx.runtime.validate_config(plugin, plugin_limits(policy), config).await
}

async fn create_runs(policy: &BackupPolicy, ctx: &Context, decision: &Decision, pvcs: &[PersistentVolumeClaim]) -> Result<()> {
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let plugin = resolve_plugin(policy, ctx).await?;
    let config = plugin_config(policy);
    let owner = policy.controller_owner_ref(&());
    let plugin_label = format!("{}@{}", plugin.id.name, plugin.id.digest.get(..12).unwrap_or(&plugin.id.digest));
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    for run in &decision.create {
        let Some(pvc) = pvcs.iter().find(|p| p.name_any() == run.pvc) else { continue };
        let request = BackupRequest {
            policy: PolicyInfo {
                name: name.clone(),
                namespace: ns.clone(),
                scheduled_time: run.scheduled.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                scheduled_stamp: run.scheduled.format("%Y%m%dt%H%M%Sz").to_string(),
                backup_image: policy.spec.backup_image.clone(),
                storage_claim: policy.spec.backup_storage_claim.clone(),
                retention_count: policy.spec.retention_count,
                config: config.clone(),
            },
            pvc: pvc_info(pvc),
        };
        let plan = ctx.runtime.plan_backup(plugin.clone(), plugin_limits(policy), request.clone()).await?;
        match plan {
            Plan::Job(job_plan) => {
                let context = JobContext {
                    name: run.job_name.clone(),
                    namespace: ns.clone(),
                    policy: name.clone(),
                    pvc: run.pvc.clone(),
                    storage_claim: policy.spec.backup_storage_claim.clone(),
                    owner: owner.clone(),
                    scheduled_time: request.policy.scheduled_time.clone(),
                    plugin: plugin_label.clone(),
                    backoff_limit: policy.spec.backoff_limit,
                    active_deadline_seconds: policy.spec.active_deadline_seconds,
                    data_writable: false,
                };
                // k8s-openapi serializes apiVersion and kind, as server-side apply needs.
                let job = render::render_job(&context, &job_plan);
                jobs_api.patch(&run.job_name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&job)).await?;
                tracing::info!(policy = %name, pvc = %run.pvc, job = %run.job_name, "created backup job");
            }
            Plan::VolumeSnapshot(plan) => {
                let context = snapshot::SnapshotContext {
                    namespace: &ns,
                    policy: &name,
                    pvc: &run.pvc,
                    scheduled_time: &request.policy.scheduled_time,
                    plugin: &plugin_label,
                    owner: owner.clone(),
                };
                snapshot::apply(&ctx.client, &ns, &plan.name, &snapshot::render(&context, &plan), FIELD_MANAGER).await?;
                tracing::info!(policy = %name, pvc = %run.pvc, snapshot = %plan.name, "created volume snapshot");
            }
        }
    }
    Ok(())
}

async fn publish(ctx: &Context, reference: &ObjectReference, type_: EventType, reason: &str, note: String) {
    let event = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!("publishing event {reason}: {e}");
    }
}

async fn write_status(policy: &BackupPolicy, ctx: &Context, d: &Decision, plugin_error: Option<&Error>, now: DateTime<Utc>) -> Result<()> {
    let previous = policy.status.clone().unwrap_or_default();
    let generation = policy.metadata.generation;
    let mut conditions = previous.conditions.clone();
    let (ready, reason, message) = match (plugin_error, &d.readiness.not_ready) {
        (Some(e @ (Error::PluginConfigInvalid { .. } | Error::PluginInvalid { .. } | Error::PluginIncompatible { .. } | Error::PluginDigestMismatch { .. } | Error::PluginTooLarge { .. } | Error::InvalidSpec(_))), _) => {
            (false, "PluginInvalid", e.to_string())
        }
        (Some(e @ Error::SnapshotApiMissing), _) => (false, "SnapshotAPIMissing", e.to_string()),
        (Some(e), _) => (false, "PluginFailed", e.to_string()),
        (None, Some(reason)) => (false, reason.reason(), d.readiness.message.clone()),
        (None, None) => (true, "Scheduled", d.readiness.message.clone()),
    };
    set_condition(&mut conditions, "Ready", ready, reason, message, generation, now);
    let (suspended_reason, suspended_message) =
        if d.suspended { ("Suspended", "spec.suspend is true: no new runs") } else { ("Active", "runs start on schedule") };
    set_condition(&mut conditions, "Suspended", d.suspended, suspended_reason, suspended_message.into(), generation, now);
    let status = BackupPolicyStatus {
        last_schedule_time: d.last_schedule_time.map(to_time),
        last_successful_time: d.last_successful_time.map(to_time),
        next_schedule_time: d.next_schedule_time.map(to_time),
        backup_history: d.history.clone(),
        conditions,
        observed_generation: generation,
    };
    if Some(&status) == policy.status.as_ref() {
        return Ok(());
    }
    let api: Api<BackupPolicy> = Api::namespaced(ctx.client.clone(), &policy.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "backup.example.com/v1alpha1",
        "kind": "BackupPolicy",
        "status": status,
    });
    api.patch_status(&policy.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_become_queries() {
        let s: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "db"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "skip", "operator": "DoesNotExist"}
            ]
        }))
        .expect("selector");
        assert_eq!(selector_query(&s).expect("query"), "app=db,tier in (a,b),!skip");
        let bad: LabelSelector = serde_json::from_value(serde_json::json!({"matchExpressions": [{"key": "k", "operator": "Near"}]})).expect("selector");
        assert!(selector_query(&bad).is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("64Mi"), Some(64 << 20));
        assert_eq!(parse_quantity("1G"), Some(1_000_000_000));
        assert_eq!(parse_quantity("1024"), Some(1024));
        assert_eq!(parse_quantity("1.5Gi"), None);
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-29T00:00:00Z").expect("t").with_timezone(&Utc);
        let t1 = t0 + chrono::Duration::minutes(5);
        let mut c = Vec::new();
        set_condition(&mut c, "Ready", true, "Scheduled", "ok".into(), Some(1), t0);
        set_condition(&mut c, "Ready", true, "Scheduled", "still ok".into(), Some(2), t1);
        assert_eq!((c.len(), from_time(&c[0].last_transition_time), c[0].message.as_str()), (1, Some(t0), "still ok"));
        set_condition(&mut c, "Ready", false, "BackupFailed", "no".into(), Some(2), t1);
        assert_eq!((c[0].status.as_str(), from_time(&c[0].last_transition_time)), ("False", Some(t1)));
    }
}
