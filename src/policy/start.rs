//! Starting one run: its hooks, its plan (asked of the strategy plugin) and its Job or snapshot.

use std::sync::Arc;

use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use crate::policy::decide::NewRun;
use crate::runs::observed::ObservedRun;
use crate::runs::destination::{self};
use crate::error::{Error, Result};
use crate::policy::observe::Observation;
use crate::runs::{self, backup_job, snapshot};
use crate::strategy::bindings::types::{BackupRequest, Plan};
use crate::strategy::{Plugin, resolve};

use crate::base::names::FIELD_MANAGER;
use super::target::Target;

pub(crate) async fn create_planned_run(t: &Target<'_>, observation: &Observation, plugin: &std::result::Result<Arc<Plugin>, Error>, new: &NewRun) -> Result<(String, Option<ObservedRun>)> {
    match plugin {
        Ok(p) => create_run(t, observation, p, new).await,
        Err(e) => Err(e.duplicate()),
    }
}

/// Plans one run through the strategy, checks it, and creates its Job or VolumeSnapshot.
/// Returns the plugin's label and, for a Job, the run as it now stands (so that this reconcile's
/// status already lists it and the Job's creation does not need another status write).
pub(crate) async fn create_run(t: &Target<'_>, observation: &Observation, plugin: &Arc<Plugin>, new: &NewRun) -> Result<(String, Option<ObservedRun>)> {
    let Some(pvc) = observation.pvcs.iter().find(|p| p.name_any() == new.pvc) else {
        return Err(Error::Runtime(format!("PVC {} went away", new.pvc)));
    };
    let destination = t.destination(&new.destination)?;
    let access = destination::access(&t.policy.spec, &destination);
    let request = BackupRequest { policy: t.policy_info(&new.name, Some(new.scheduled), &new.pvc, &destination), pvc: crate::runs::request::pvc_info(pvc) };
    let plan = t.ctx.runtime.plan_backup(plugin.clone(), resolve::limits(t.policy), request.clone()).await?;
    let plugin_label = resolve::label(plugin);
    let owner = t.policy.controller_owner_ref(&());
    // Planned first (a plan the host refuses never runs the application's hooks), then the pre
    // hook, then the run's object. A policy with hooks holds a hook slot until its run's object
    // exists (a failed pre hook's post hook and a snapshot's post hook run under it too).
    let _hook_slot = match &t.policy.spec.hooks {
        Some(h) if h.pre.is_some() || h.post.is_some() => {
            Some(t.ctx.hook_slots.try_acquire(&t.ns).map_err(|busy| Error::HooksBusy { pvc: new.pvc.clone(), busy })?)
        }
        _ => None,
    };
    let hooks = pre_hook(t, &new.pvc).await?;
    match plan {
        Plan::Job(job_plan) => {
            let mut job = backup_job::render(
                &backup_job::BackupJob {
                    namespace: &t.ns,
                    policy: &t.name,
                    policy_uid: &t.uid,
                    run: &new.name,
                    pvc: &new.pvc,
                    scheduled_time: &request.policy.scheduled_time,
                    plugin: &plugin_label,
                    access: &access,
                    owner,
                    backoff_limit: t.policy.spec.backoff_limit,
                    active_deadline_seconds: t.policy.spec.active_deadline_seconds,
                    node: new.node.clone(),
                    run_as: t.policy.spec.pod_security_context.clone(),
                },
                &job_plan,
            );
            if let Some(record) = &hooks {
                job.metadata.annotations.get_or_insert_default().insert(crate::hooks::ANNOTATION.to_owned(), record.to_annotation());
            }
            let creating = t.ctx.runs_first.creating().await;
            let created = runs::applied_job(&t.tenant, &t.ns, &job).await;
            drop(creating);
            // A Job the API server refuses never runs: the pre hook's post hook runs now.
            let created = match (created, &hooks) {
                (Ok(job), _) => job,
                (Err(e), Some(record)) => {
                    post_hook(t, record).await;
                    return Err(e);
                }
                (Err(e), None) => return Err(e),
            };
            tracing::info!(policy = %t.name, pvc = %new.pvc, run = %new.name, "created backup job");
            return Ok((plugin_label, backup_job::observe(&created)));
        }
        Plan::VolumeSnapshot(plan) => {
            let context = snapshot::SnapshotContext {
                namespace: &t.ns,
                policy: &t.name,
                policy_uid: &t.uid,
                run: &new.name,
                pvc: &new.pvc,
                scheduled_time: &request.policy.scheduled_time,
                plugin: &plugin_label,
                owner,
            };
            let creating = t.ctx.runs_first.creating().await;
            let applied = snapshot::apply(&t.tenant, &t.ns, &new.name, &snapshot::render(&context, &plan), FIELD_MANAGER).await;
            drop(creating);
            // A snapshot is taken when it is created: the post hook follows at once.
            if let Some(record) = &hooks {
                post_hook(t, record).await;
            }
            applied?;
            tracing::info!(policy = %t.name, pvc = %new.pvc, run = %new.name, "created volume snapshot");
        }
    }
    Ok((plugin_label, None))
}

/// The policy's pre hook for a new run of `pvc`, in the running pod that mounts it. Returns what to
/// record on the run (`None` for a policy without hooks), or the run's failure when the pre hook
/// failed and stops the backup (its post hook has run then).
pub(crate) async fn pre_hook(t: &Target<'_>, pvc: &str) -> Result<Option<crate::hooks::HookRecord>> {
    let Some(hooks) = &t.policy.spec.hooks else { return Ok(None) };
    let Some(first) = hooks.pre.as_ref().or(hooks.post.as_ref()) else { return Ok(None) };
    // Exec in a tenant's pods: with the tenant's rights, or where a cluster admin enabled hooks.
    if !t.ctx.tenancy.impersonating() && !crate::platform::tenancy::hooks_enabled(&t.ctx.client, &t.ns).await? {
        return Err(Error::HooksForbidden(format!(
            "hooks run only in namespaces labelled {}=enabled by a cluster admin, or with the operator's --tenant-impersonation (editing a policy would otherwise amount to exec in every pod that mounts a matched PVC)",
            crate::platform::tenancy::HOOKS_LABEL
        )));
    }
    let pods = t.ctx.caches().await?.pods_mounting(&t.ns, pvc);
    let Some((pod, container)) = crate::hooks::pod_for(&pods, pvc, first.container.as_deref()) else {
        return Ok(Some(crate::hooks::HookRecord { skipped: Some(format!("no running pod mounts {pvc}")), ..Default::default() }));
    };
    let mut record = crate::hooks::HookRecord { pod: Some(pod.clone()), container: Some(container.clone()), ..Default::default() };
    let Some(pre) = &hooks.pre else { return Ok(Some(record)) };
    let outcome = crate::hooks::exec(&t.tenant, &t.ns, &pod, &container, pre).await;
    tracing::info!(policy = %t.name, pvc, pod = %pod, ok = outcome.ok, millis = outcome.millis as u64, "pre hook: {}", outcome.summary);
    if outcome.forbidden {
        return Err(Error::Forbidden {
            action: format!("create pods/exec in pod {pod} (the pre hook), as {}", t.ctx.tenancy.acting_as(&t.ns, t.policy.spec.service_account_name.as_deref())),
            message: outcome.summary,
        });
    }
    record.pre = Some(outcome.summary.clone());
    if !outcome.ok {
        if crate::hooks::stops_backup(pre) {
            let record = post_hook(t, &record).await;
            return Err(Error::HookFailed { pvc: pvc.to_owned(), message: record.note().unwrap_or(outcome.summary) });
        }
        t.event(EventType::Warning, "HookFailed", format!("{pvc}: pre hook in pod {pod}: {} (onError: Continue)", outcome.summary));
    }
    Ok(Some(record))
}

/// The policy's post hook in the pod the pre hook ran in; returns the record with its result.
/// Nothing to do when the hooks were skipped or there is no post hook.
pub(crate) async fn post_hook(t: &Target<'_>, record: &crate::hooks::HookRecord) -> crate::hooks::HookRecord {
    let mut record = record.clone();
    let (Some(post), Some(pod), Some(container)) = (t.policy.spec.hooks.as_ref().and_then(|h| h.post.as_ref()), &record.pod, &record.container) else {
        return record;
    };
    let outcome = crate::hooks::exec(&t.tenant, &t.ns, pod, container, post).await;
    tracing::info!(policy = %t.name, pod = %pod, ok = outcome.ok, millis = outcome.millis as u64, "post hook: {}", outcome.summary);
    if !outcome.ok {
        t.event(EventType::Warning, "HookFailed", format!("post hook in pod {pod}: {}", outcome.summary));
    }
    record.post = Some(outcome.summary);
    record
}
