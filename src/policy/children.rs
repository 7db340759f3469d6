//! A run's children: prune and verify Jobs planned by the plugin, and the cleanup of a deleted
//! policy's artifacts (finalize).

use std::sync::Arc;

use kube::runtime::events::EventType;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

use crate::api::{BackupPolicy, NotificationEvent};
use crate::policy::decide::{Decision, Finalize, PruneStep};
use crate::runs::observed::RunObject;
use crate::runs::destination::{self, Destination};
use crate::error::{Error, Result};
use crate::policy::observe::{FINALIZER, Observation};
use crate::runs::{self, RunChild, backup_job, cleanup_job, prune_job, snapshot, verify_job};
use crate::base::names::RunKind;
use crate::strategy::bindings::types::{ArtifactRequest, Plan};
use crate::strategy::{Plugin, resolve};

use super::target::Target;
use super::target::Outcome;
use super::target::pvc_info_or_name;

pub(crate) fn artifact_request(t: &Target<'_>, observation: &Observation, run: &str, pvc: &str, destination: &Destination, artifact: &str) -> ArtifactRequest {
    let scheduled = observation.observed.runs.iter().find(|r| r.name == run).and_then(|r| r.scheduled);
    ArtifactRequest { policy: t.policy_info(run, scheduled, pvc, destination), pvc: pvc_info_or_name(observation, &t.ns, pvc), artifact: artifact.to_owned() }
}

/// A Job plan for an existing run's artifact, from the strategy, or why there is none.
pub(crate) async fn child_plan(t: &Target<'_>, plugin: Option<&Arc<Plugin>>, kind: RunKind, request: ArtifactRequest) -> Result<crate::strategy::bindings::types::JobPlan> {
    let Some(plugin) = plugin else { return Err(Error::Runtime("the policy's plugin could not be loaded".into())) };
    let limits = resolve::limits(t.policy);
    let plan = match kind {
        RunKind::Prune => t.ctx.runtime.plan_prune(plugin.clone(), limits, request).await?,
        RunKind::Verify => t.ctx.runtime.plan_verify(plugin.clone(), limits, request).await?,
        RunKind::Backup | RunKind::Cleanup | RunKind::Restore => return Err(Error::Runtime("not a child plan".into())),
    };
    match plan {
        Plan::Job(job) => Ok(job),
        Plan::VolumeSnapshot(_) => Err(Error::Runtime("a volume-snapshot plan cannot prune or verify".into())),
    }
}

/// Plans a prune or verify Job for an existing run's artifact through the strategy, and creates it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start_child(
    t: &Target<'_>,
    observation: &Observation,
    plugin: Option<&Arc<Plugin>>,
    kind: RunKind,
    run: &str,
    pvc: &str,
    artifact: &str,
    job: &str,
) -> Result<()> {
    let destination_name = observation.observed.runs.iter().find(|r| r.name == run).map(|r| r.destination.clone()).unwrap_or_default();
    let destination = t.destination(&destination_name)?;
    let access = destination::access(&t.policy.spec, &destination);
    let request = artifact_request(t, observation, run, pvc, &destination, artifact);
    let plan = child_plan(t, plugin, kind, request).await?;
    let plugin_label = plugin.map(|p| resolve::label(p)).unwrap_or_default();
    let child = RunChild {
        kind,
        name: job,
        namespace: &t.ns,
        policy: &t.name,
        policy_uid: &t.uid,
        run,
        pvc,
        plugin: &plugin_label,
        access: &access,
        owner: t.policy.controller_owner_ref(&()),
        run_as: t.policy.spec.pod_security_context.clone(),
    };
    let rendered = match kind {
        RunKind::Prune => prune_job::render(&child, &plan),
        RunKind::Verify => verify_job::render(&child, &plan),
        RunKind::Backup | RunKind::Cleanup | RunKind::Restore => return Err(Error::Runtime("not a run's child Job".into())),
    };
    runs::apply_job(&t.tenant, &t.ns, &rendered).await
}

/// Retention: free the artifacts of dropped runs through the strategy, then delete their records.
pub(crate) async fn prune(t: &Target<'_>, observation: &Observation, d: &Decision, plugin: Option<&Arc<Plugin>>, out: &mut Outcome) {
    for step in &d.prune {
        match step {
            PruneStep::Delete { run, object } => {
                let result = match object {
                    RunObject::Job => backup_job::delete(&t.ctx.client, &t.ns, run).await,
                    RunObject::Snapshot => snapshot::delete(&t.ctx.client, &t.ns, run).await,
                    RunObject::NotStarted => Ok(()),
                };
                match result {
                    Ok(()) => {
                        if *object == RunObject::Snapshot {
                            t.event(EventType::Normal, "Pruned", format!("run {run}: VolumeSnapshot deleted by retention"));
                        }
                        out.runs.retain(|r| &r.name != run);
                    }
                    Err(e) => out.transient(e),
                }
            }
            PruneStep::Start { run, pvc, artifact, job } => match start_child(t, observation, plugin, RunKind::Prune, run, pvc, artifact, job).await {
                Ok(()) => tracing::info!(policy = %t.name, run = %run, job = %job, "started prune job"),
                Err(e) if e.is_permanent() => {
                    let message = format!("run {run}: cannot plan pruning {artifact}: {}", e.classify().message);
                    t.notify(NotificationEvent::PruneFailed, out.runs.iter().find(|r| &r.name == run), Some(pvc.as_str()), None, message.clone());
                    t.event(EventType::Warning, "PruneFailed", message.clone());
                    out.prune_failed.push((run.clone(), message));
                }
                Err(e) => out.transient(e),
            },
            PruneStep::Finish { run, prune_job: job, seconds } => {
                let result = match backup_job::delete(&t.ctx.client, &t.ns, run).await {
                    Ok(()) => prune_job::delete(&t.ctx.client, &t.ns, job).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => {
                        if out.runs.iter().any(|r| &r.name == run) {
                            let took = seconds.map(|s| format!(", {s} s")).unwrap_or_default();
                            t.event(EventType::Normal, "Pruned", format!("run {run}: artifact deleted by retention ({job}{took})"));
                        }
                        out.runs.retain(|r| &r.name != run);
                    }
                    Err(e) => out.transient(e),
                }
            }
        }
    }
    for (run, message) in &d.prune_failed {
        if !run.is_empty() {
            t.notify(NotificationEvent::PruneFailed, out.runs.iter().find(|r| &r.name == run), None, None, message.clone());
            t.event(EventType::Warning, "PruneFailed", format!("run {run}: {message}"));
        }
    }
}

/// Re-verification: start the due verify Jobs, record the finished ones on their runs.
pub(crate) async fn verify(t: &Target<'_>, observation: &Observation, d: &Decision, plugin: Option<&Arc<Plugin>>, out: &mut Outcome) {
    for start in &d.verify_start {
        let result = start_child(t, observation, plugin, RunKind::Verify, &start.run, &start.pvc, &start.artifact, &start.job).await;
        match result {
            Ok(()) => tracing::info!(policy = %t.name, run = %start.run, job = %start.job, "started verify job"),
            Err(e) if e.is_permanent() => {
                let c = e.classify();
                t.event(EventType::Warning, c.reason, format!("run {}: cannot plan verification: {}", start.run, c.message));
            }
            Err(e) => out.transient(e),
        }
    }
    for done in &d.verify_done {
        let pending: Vec<NotificationEvent> = (!done.record.verified && t.wants(NotificationEvent::Corrupted)).then_some(NotificationEvent::Corrupted).into_iter().collect();
        if let Err(e) = backup_job::record_verification(&t.ctx.client, &t.ns, &done.run, &done.record, &pending).await {
            out.transient(e);
            continue;
        }
        t.ctx.metrics.verified(&t.ns, &t.name, done.record.verified);
        if let Some(run) = out.runs.iter_mut().find(|r| r.name == done.run) {
            run.verify = Some(done.record.clone());
            run.pending_notifications.extend(pending);
            if done.record.verified {
                t.run_event(EventType::Normal, "Verified", run, format!("{}: run {} re-verified", run.pvc, run.name));
            } else {
                t.run_event(EventType::Warning, "BackupCorrupted", run, format!("{}: run {}: {}", run.pvc, run.name, done.record.message));
            }
        }
        if let Err(e) = verify_job::delete(&t.ctx.client, &t.ns, &done.job).await {
            out.transient(e);
        }
    }
}

/// Deleting a policy with `deletionPolicy: Delete`: prune (above), clean up, let it go.
pub(crate) async fn finalize(t: &Target<'_>, d: &Decision, out: &mut Outcome) {
    let result = match d.finalize {
        None | Some(Finalize::Wait) => Ok(()),
        Some(Finalize::StartCleanup) if !crate::strategy::image::allowed(&t.ctx.runtime.config().plan_policy.image_allowlist, &t.policy.spec.backup_image) => {
            // The cleanup Job runs the policy's backupImage: the allowlist holds for it too.
            out.prune_failed.push((String::new(), format!("the cleanup Job cannot run: backupImage {:?} is not in the operator's image allowlist", t.policy.spec.backup_image)));
            Ok(())
        }
        Some(Finalize::StartCleanup) => {
            let job = cleanup_job::render(
                &t.ns,
                &t.name,
                &t.uid,
                &t.policy.spec.backup_image,
                &t.policy.spec.backup_storage_claim,
                t.policy.controller_owner_ref(&()),
                t.policy.spec.pod_security_context.clone(),
            );
            cleanup_job::apply(&t.tenant, &t.ns, &job).await
        }
        Some(Finalize::RemoveFinalizer) => {
            let removed = set_finalizer(t, false).await;
            if removed.is_ok() && t.policy.metadata.deletion_timestamp.is_some() {
                tracing::info!(policy = %t.name, "backups deleted; policy released");
            }
            removed
        }
    };
    if let Err(e) = result {
        out.transient(e);
    }
}

pub(crate) async fn set_finalizer(t: &Target<'_>, present: bool) -> Result<()> {
    let mut finalizers: Vec<String> = t.policy.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    if present {
        finalizers.push(FINALIZER.to_owned());
    }
    let api: Api<BackupPolicy> = Api::namespaced(t.ctx.client.clone(), &t.ns);
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": t.policy.resource_version()}});
    match api.patch(&t.name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 && crate::platform::kube_client::really_gone(&api, &t.name, t.policy.uid().as_deref()).await => Ok(()),
        Err(e) => Err(e.into()),
    }
}
