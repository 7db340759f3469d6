//! The BackupRestore controller: observe ([`observe`]) → decide ([`decide`], pure) → apply (the
//! target PVC, the restore Job planned by the policy's strategy, the status). A restore reads one
//! backup and writes one PVC; it never writes or deletes a backup (the backup volume is mounted
//! read-only), and while it is Pending or Running its backup is held from the policy's retention
//! and its target is not backed up.

pub mod decide;
pub mod observe;
pub mod render;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::Controller;
use kube::{Api, Resource, ResourceExt};

use crate::api::restore::{BackupRestoreStatus, RestoredBackup};
use crate::api::{BackupPolicy, BackupRestore, RestorePhase, to_time};
use crate::context::Context;
use crate::base::names::FIELD_MANAGER;
use crate::error::{Error, Result};
use crate::strategy::bindings::types::{ArtifactRequest, Plan};
use crate::strategy::resolve;
use decide::{Candidate, Step};

/// The restore that owns a Job (its UID), on the Job and its pods.
pub use crate::base::names::ANNOTATION_RESTORE_LOCK;
pub use crate::runs::holds::{Holds, holds};
pub const LABEL_RESTORE_UID: &str = "backup.example.com/restore-uid";
/// The restore's name, on its Job (shortened like other label values).
pub const LABEL_RESTORE: &str = "backup.example.com/restore";
/// On a PVC a restore created: that restore's UID (the PVC is deliberately not owned by it).
pub const ANNOTATION_RESTORED_BY: &str = "backup.example.com/restored-by";
/// The condition a restore reports.
pub const CONDITION: &str = "Restored";
/// How often an unfinished restore is looked at besides its Job's changes.
const POLL: Duration = Duration::from_secs(10);

/// Runs the restore controller until SIGTERM/SIGINT, on the shared watches of restores (untyped:
/// each is parsed in its own reconcile) and Jobs.
pub async fn run(ctx: Arc<Context>, jobs: crate::platform::cache::Changes<Job>, restores: crate::platform::cache::Changes<DynamicObject>) {
    let Some(caches) = ctx.caches.get().cloned() else {
        tracing::error!("the restore controller needs the shared watches");
        return;
    };
    let config = kube::runtime::controller::Config::default().concurrency(ctx.reconcile_concurrency);
    let Some(store) = caches.restores.clone() else { return };
    Controller::for_shared_stream_with(restores, store, crate::platform::cache::restore_resource())
        .with_config(config)
        .owns_shared_stream_with(jobs, ())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(restore = %obj, "reconciled"),
                Err(e) => tracing::warn!("restore reconcile: {e}"),
            }
        })
        .await;
}

fn error_policy(restore: Arc<DynamicObject>, error: &Error, _ctx: Arc<Context>) -> Action {
    let classified = error.classify();
    tracing::warn!(restore = %restore.name_any(), error = %classified.message, reason = classified.reason, "restore reconcile failed");
    match classified.retry {
        // Said on the object already (an event): nothing changes until the object does.
        crate::error::Retry::AwaitChange => Action::await_change(),
        crate::error::Retry::Backoff | crate::error::Retry::Soon => Action::requeue(Duration::from_secs(15)),
    }
}

/// One reconcile of a restore, timed and counted (with the reason of an error).
#[tracing::instrument(skip_all, fields(namespace = %object.namespace().unwrap_or_default(), restore = %object.name_any()))]
async fn reconcile(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let metrics = ctx.metrics.clone();
    let result = match crate::platform::cache::parse_restore(&object) {
        Ok(restore) => reconcile_restore(Arc::new(restore), ctx).await,
        Err(e) => unreadable(&object, &ctx, &e.to_string()).await.map(|()| Action::await_change()),
    };
    metrics.reconciled("backuprestore", started.elapsed(), result.as_ref().err().map(|e| e.classify().reason));
    result
}

/// A restore the operator cannot parse (a time the API server admitted under a looser schema,
/// say): `Failed InvalidSpec` with the parser's words and a Warning event; nothing is restored.
/// When the API server refuses even that status, the event is all there is.
async fn unreadable(object: &DynamicObject, ctx: &Context, problem: &str) -> Result<()> {
    let name = object.name_any();
    let message = crate::base::text::bound(
        &format!("the operator cannot read this restore's spec ({problem}); nothing was restored: delete it and create a corrected one"),
        crate::base::text::MAX_MESSAGE_BYTES,
    );
    tracing::warn!(restore = %name, "{message}");
    let resource = crate::platform::cache::restore_resource();
    ctx.publish(&object.object_ref(&resource), EventType::Warning, "InvalidSpec", message.clone());
    if object.data.pointer("/status/phase").and_then(|p| p.as_str()) == Some("Failed") {
        return Ok(());
    }
    let mut status = BackupRestoreStatus::default();
    finish(&mut status, RestorePhase::Failed, "InvalidSpec", message, object.metadata.generation);
    status.observed_generation = object.metadata.generation;
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &object.namespace().unwrap_or_default(), &resource);
    let patch = serde_json::json!({"apiVersion": resource.api_version, "kind": resource.kind, "status": status});
    match api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await {
        Ok(_) => Ok(()),
        // The object is gone, or the API server refuses to store any status for it: the event
        // above says why it is not restored.
        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 404 | 422) => {
            tracing::warn!(restore = %name, "no status can be written: {}", s.message);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn reconcile_restore(restore: Arc<BackupRestore>, ctx: Arc<Context>) -> Result<Action> {
    let now = Utc::now();
    let ns = restore.namespace().unwrap_or_default();
    // Acts for the restore (its target claim, its Job): with its ServiceAccount's rights under
    // --tenant-impersonation.
    let tenant = ctx.tenancy.client(&ctx.client, &ns, restore.spec.service_account_name.as_deref())?;
    let acting_as = ctx.tenancy.acting_as(&ns, restore.spec.service_account_name.as_deref());
    let observed = observe::observe(&restore, &ctx, now).await?;
    let decision = decide::decide(&observed.data);
    let previous = restore.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = restore.metadata.generation;
    status.target_claim = Some(observed.data.target.name.clone());
    if let Some((_, backup)) = &decision.backup {
        status.backup = Some(backup.clone());
    }
    let reference = restore.object_ref(&());
    let event = |type_: EventType, reason: &str, note: String| {
        let (ctx, reference, reason) = (ctx.clone(), reference.clone(), reason.to_owned());
        async move { ctx.publish(&reference, type_, &reason, note) }
    };
    let uid = restore.uid().unwrap_or_default();
    // A finished restore lets go of its target (again, if an earlier release failed).
    let finishing = matches!(decision.step, Step::Done | Step::Fail { .. } | Step::Succeed { .. } | Step::FailStuck { .. });
    if finishing
        && observed.lock_holder.as_deref() == Some(uid.as_str())
        && let Some(target) = &observed.target_pvc
    {
        unlock_target(&tenant, &ns, target).await?;
    }
    // A finished restore Job's pods would keep the target and the backup claim in use.
    if finishing && let Some(job) = &observed.data.job {
        let pods = ctx.caches().await?.pods_in(&ns);
        crate::runs::delete_pods_of_job(&ctx.client, &ns, &pods, &job.name).await?;
    }
    let action = match &decision.step {
        Step::Done => return Ok(Action::await_change()),
        Step::Fail { reason, message } => {
            tracing::warn!(restore = %restore.name_any(), reason, "{message}");
            finish(&mut status, RestorePhase::Failed, reason, message.clone(), restore.metadata.generation);
            event(EventType::Warning, reason, message.clone()).await;
            Action::await_change()
        }
        Step::Succeed { message } => {
            finish(&mut status, RestorePhase::Succeeded, "Succeeded", message.clone(), restore.metadata.generation);
            event(EventType::Normal, "Restored", message.clone()).await;
            Action::await_change()
        }
        Step::FailStuck { job, reason, message, elapsed_seconds } => {
            crate::runs::fail_stuck_job(&ctx.client, &ns, job, &format!("{reason}: {message}"), *elapsed_seconds).await?;
            finish(&mut status, RestorePhase::Failed, reason, message.clone(), restore.metadata.generation);
            event(EventType::Warning, reason, message.clone()).await;
            Action::await_change()
        }
        Step::Wait { reason, message } => {
            progress(&mut status, RestorePhase::Running, reason, message.clone(), restore.metadata.generation);
            Action::requeue(POLL)
        }
        Step::CreateClaim { from_snapshot } => {
            let claim = render::claim(&restore, observed.source_pvc.as_ref(), from_snapshot.as_deref());
            match Api::<PersistentVolumeClaim>::namespaced(tenant.clone(), &ns).create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    let message = format!("created PVC {}{}", observed.data.target.name, from_snapshot.as_ref().map(|s| format!(" from VolumeSnapshot {s}")).unwrap_or_default());
                    event(EventType::Normal, "ClaimCreated", message.clone()).await;
                    // Pending: the target is being prepared; Running once the restore itself started.
                    progress(&mut status, RestorePhase::Pending, "Pending", message, restore.metadata.generation);
                    Action::requeue(Duration::from_secs(1))
                }
                // The API server refuses the claim (an invalid storage class name, a quota, no
                // permission): retrying cannot help, so the restore says so and stops.
                Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => {
                    let message = format!("creating PVC {}: {}", observed.data.target.name, s.message);
                    finish(&mut status, RestorePhase::Failed, "RestoreFailed", message.clone(), restore.metadata.generation);
                    event(EventType::Warning, "RestoreFailed", message).await;
                    Action::await_change()
                }
                Err(e) => return Err(e.into()),
            }
        }
        Step::StartJob => {
            let Some(((candidate, backup), policy)) = decision.backup.as_ref().zip(observed.policy.as_ref()) else {
                return Err(Error::Runtime("no backup chosen".into()));
            };
            // One writer per target: take its lock first (a conflict is tried again, and then
            // finds the other restore's lock).
            if observed.lock_holder.as_deref() != Some(uid.as_str()) {
                let Some(target) = &observed.target_pvc else { return Err(Error::Runtime(format!("PVC {} went away", observed.data.target.name))) };
                let locked = match lock_target(&tenant, &ns, target, &uid).await {
                    Err(Error::Kube(kube::Error::Api(s))) if s.code == 403 => Err(Error::Forbidden { action: format!("patch PersistentVolumeClaim {} (the restore's target), as {acting_as}", target.name_any()), message: s.message }),
                    other => other,
                };
                let holder = match locked {
                    Err(e @ Error::Forbidden { .. }) => {
                        let c = e.classify();
                        finish(&mut status, RestorePhase::Failed, c.reason, c.message.clone(), restore.metadata.generation);
                        event(EventType::Warning, c.reason, c.message).await;
                        write(&ctx, &restore, &status).await?;
                        return Ok(Action::await_change());
                    }
                    other => other?,
                };
                if let Some(holder) = holder {
                    // Another restore took it first: this one never starts.
                    let other = ctx.caches().await?.restores_in(&ns).into_iter().find(|r| r.uid().as_deref() == Some(holder.as_str())).map(|r| r.name_any()).unwrap_or(holder);
                    let message = format!("BackupRestore {other} is restoring into PVC {}: this restore did not touch it; create it again once that one has finished", observed.data.target.name);
                    finish(&mut status, RestorePhase::Failed, "TargetBusy", message.clone(), restore.metadata.generation);
                    event(EventType::Warning, "TargetBusy", message).await;
                    write(&ctx, &restore, &status).await?;
                    return Ok(Action::await_change());
                }
            }
            // Hold the backup (the status says which) before anything reads it.
            let job_name = render::job_name(&restore);
            status.job_name = Some(job_name.clone());
            let message = format!("restoring backup {} into PVC {}", backup.run_name, observed.data.target.name);
            progress(&mut status, RestorePhase::Running, "Running", message.clone(), restore.metadata.generation);
            write(&ctx, &restore, &status).await?;
            match start_job(&ctx, &tenant, &restore, policy, &observed, candidate, backup, &job_name).await {
                Ok(plugin) => {
                    event(EventType::Normal, "RestoreStarted", format!("{message} with Job {job_name} ({plugin})")).await;
                    Action::requeue(POLL)
                }
                Err(e) if e.is_permanent() => {
                    let c = e.classify();
                    finish(&mut status, RestorePhase::Failed, c.reason, c.message.clone(), restore.metadata.generation);
                    status.job_name = None;
                    event(EventType::Warning, c.reason, c.message).await;
                    Action::await_change()
                }
                Err(e) => return Err(e),
            }
        }
    };
    if status != previous {
        write(&ctx, &restore, &status).await?;
        // Counted once, when the finished phase is stored.
        if let Some(phase) = status.phase.filter(|p| p.finished())
            && !previous.phase.is_some_and(RestorePhase::finished)
        {
            ctx.metrics.restore_finished(&ns, phase == RestorePhase::Succeeded);
        }
    }
    Ok(action)
}

/// Plans the restore through the policy's strategy, checks it like any plan, and creates the Job.
#[allow(clippy::too_many_arguments)]
async fn start_job(
    ctx: &Context,
    tenant: &kube::Client,
    restore: &BackupRestore,
    policy: &BackupPolicy,
    observed: &observe::Observation,
    candidate: &Candidate,
    backup: &RestoredBackup,
    job_name: &str,
) -> Result<String> {
    let plugin = resolve::plugin(policy, tenant, &ctx.runtime, ctx.plugin_dir.as_deref()).await?;
    let artifact = candidate.artifact.clone().ok_or_else(|| Error::InvalidSpec(format!("backup {} has no artifact", backup.run_name)))?;
    let destination = crate::runs::destination::find(&policy.spec, &candidate.destination)
        .ok_or_else(|| Error::InvalidSpec(format!("destination {:?} of backup {} is no longer in the policy's spec.destinations", candidate.destination, backup.run_name)))?;
    let access = crate::runs::destination::access(&policy.spec, &destination);
    let request = ArtifactRequest {
        policy: crate::runs::request::policy_info(policy, job_name, candidate.scheduled, &restore.spec.source.pvc, &destination),
        pvc: observed.target_info(),
        artifact,
    };
    let plan = ctx.runtime.plan_restore(plugin.clone(), resolve::limits(policy), request).await?;
    let Plan::Job(plan) = plan else {
        return Err(Error::InvalidSpec("the strategy planned a VolumeSnapshot for a restore".into()));
    };
    let label = resolve::label(&plugin);
    let job = render::job(&render::RestoreJob { restore, policy, backup, target: &observed.data.target.name, name: job_name, plugin: &label, access: &access }, &plan);
    crate::runs::apply_job(tenant, &restore.namespace().unwrap_or_default(), &job).await?;
    tracing::info!(restore = %restore.name_any(), job = %job_name, "created restore job");
    Ok(label)
}

/// Takes the target's lock for the restore `uid`, provided the PVC has not changed since it was
/// observed (its resourceVersion): of two restores that find it free at once, one gets a conflict,
/// reads the PVC again and finds the other's lock. Returns the holder when it is another restore
/// (a lock of a restore that has finished or is gone is taken over).
async fn lock_target(client: &kube::Client, ns: &str, pvc: &PersistentVolumeClaim, uid: &str) -> Result<Option<String>> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let name = pvc.name_any();
    let patch = serde_json::json!({"metadata": {"resourceVersion": pvc.resource_version(), "annotations": {ANNOTATION_RESTORE_LOCK: uid}}});
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let now = api.get(&name).await?;
            match now.annotations().get(ANNOTATION_RESTORE_LOCK) {
                Some(holder) if holder != uid => Ok(Some(holder.clone())),
                _ => Err(Error::Runtime(format!("PVC {name} changed while this restore was taking it; looking again"))),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Releases the target's lock held by this restore, provided the PVC has not changed since it was
/// observed holding it (a conflict is tried again); a PVC that is gone has nothing to release.
async fn unlock_target(client: &kube::Client, ns: &str, pvc: &PersistentVolumeClaim) -> Result<()> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({"metadata": {"resourceVersion": pvc.resource_version(), "annotations": {ANNOTATION_RESTORE_LOCK: null}}});
    match api.patch(&pvc.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn progress(status: &mut BackupRestoreStatus, phase: RestorePhase, reason: &str, message: String, generation: Option<i64>) {
    let now = Utc::now();
    if status.start_time.is_none() {
        status.start_time = Some(to_time(now));
    }
    status.phase = Some(phase);
    crate::base::conditions::set_condition(&mut status.conditions, CONDITION, false, reason, message, generation, now);
}

fn finish(status: &mut BackupRestoreStatus, phase: RestorePhase, reason: &str, message: String, generation: Option<i64>) {
    let now = Utc::now();
    status.phase = Some(phase);
    status.completion_time = Some(to_time(now));
    let message = crate::base::text::bound(&message, crate::base::text::MAX_MESSAGE_BYTES);
    crate::base::conditions::set_condition(&mut status.conditions, CONDITION, phase == RestorePhase::Succeeded, reason, message, generation, now);
}

async fn write(ctx: &Context, restore: &BackupRestore, status: &BackupRestoreStatus) -> Result<()> {
    let api: Api<BackupRestore> = Api::namespaced(ctx.client.clone(), &restore.namespace().unwrap_or_default());
    let patch = serde_json::json!({"apiVersion": "backup.example.com/v1alpha1", "kind": "BackupRestore", "status": status});
    match api.patch_status(&restore.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 && crate::platform::kube_client::really_gone(&api, &restore.name_any(), restore.uid().as_deref()).await => Ok(()),
        // The API server refuses any status for this object (a spec it admitted under a looser
        // schema): say so where `kubectl describe` shows it, and stop retrying.
        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 422) => {
            let message = crate::base::text::bound(&format!("the API server refuses this restore's status ({}); delete it and create a corrected one", s.message), crate::base::text::MAX_MESSAGE_BYTES);
            ctx.publish(&restore.object_ref(&()), EventType::Warning, "InvalidSpec", message);
            Err(Error::InvalidSpec(s.message))
        }
        Err(e) => Err(e.into()),
    }
}



#[cfg(test)]
mod tests {
    use super::*;

    fn restore(name: &str, phase: Option<RestorePhase>) -> BackupRestore {
        let mut r: BackupRestore = serde_json::from_value(serde_json::json!({
            "apiVersion": "backup.example.com/v1alpha1", "kind": "BackupRestore",
            "metadata": {"name": name, "namespace": "a", "uid": format!("uid-{name}")},
            "spec": {"source": {"policy": "db", "pvc": format!("data-{name}")}}
        }))
        .expect("restore");
        r.status = phase.map(|p| BackupRestoreStatus {
            phase: Some(p),
            backup: Some(RestoredBackup { policy: "db".into(), run_name: format!("run-{name}"), destination: None, artifact: None, sha256: None, scheduled_time: None, verified: true }),
            ..BackupRestoreStatus::default()
        });
        r
    }

    fn claim(name: &str, lock: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "a", "annotations": lock.map(|l| serde_json::json!({ANNOTATION_RESTORE_LOCK: l}))}})).expect("pvc")
    }

    #[test]
    fn restores_under_way_hold_their_backup_and_target_and_no_others_do() {
        let restores = [
            restore("new", None),
            restore("running", Some(RestorePhase::Running)),
            restore("pending", Some(RestorePhase::Pending)),
            restore("failed", Some(RestorePhase::Failed)),
            restore("done", Some(RestorePhase::Succeeded)),
        ];
        let claims = [claim("locked", Some("uid-new")), claim("stale", Some("uid-done")), claim("orphan", Some("uid-gone")), claim("free", None)];
        let h = holds(&restores, &claims);
        let targets: Vec<(&str, &str)> = h.targets.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(targets, [("data-pending", "pending"), ("data-running", "running"), ("locked", "new")]);
        let runs: Vec<&str> = h.runs.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(runs, ["run-pending", "run-running"]);
    }
}
