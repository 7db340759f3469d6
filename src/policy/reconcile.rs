//! One reconcile of a policy: parse it, observe ([`super::observe`]) → decide
//! ([`super::decide`], pure) → apply ([`super::apply`]) → write the status ([`super::status`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};

use crate::api::{BackupPolicy, RunStatus};
use crate::policy::decide::{self};
use crate::runs::observed::ObservedRun;
use crate::error::{Error, Result, Retry};
use crate::policy::observe::{self};
use crate::policy::status::{self, Summary};

use crate::base::names::FIELD_MANAGER;
use crate::context::Context;
use super::apply::apply;
use super::target::Target;

/// One reconcile of a policy, timed and counted (with the reason of an error).
#[tracing::instrument(skip_all, fields(namespace = %object.namespace().unwrap_or_default(), policy = %object.name_any()))]
pub(crate) async fn reconcile(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let metrics = ctx.metrics.clone();
    let result = reconcile_object(object, ctx).await;
    metrics.reconciled("backuppolicy", started.elapsed(), result.as_ref().err().map(|e| e.classify().reason));
    result
}

/// Parses the policy, or says on the object itself why it cannot be read.
pub(crate) async fn reconcile_object(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let parsed = serde_json::to_value(&*object).and_then(serde_json::from_value::<BackupPolicy>);
    match parsed {
        Ok(policy) => reconcile_policy(Arc::new(policy), ctx).await,
        Err(e) => {
            unreadable(&object, &ctx, &e.to_string()).await?;
            Ok(Action::await_change())
        }
    }
}

/// A policy the operator cannot parse: `Ready=False InvalidSpec` with the parser's words, and a
/// Warning event; nothing else is done for it until its spec changes.
pub(crate) async fn unreadable(object: &DynamicObject, ctx: &Context, problem: &str) -> Result<()> {
    let now = Utc::now();
    let name = object.name_any();
    let message = format!("the operator cannot read this policy's spec ({problem}); fix the spec (for example a number out of range)");
    tracing::warn!(policy = %name, "{message}");
    let mut conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> =
        object.data.pointer("/status/conditions").and_then(|c| serde_json::from_value(c.clone()).ok()).unwrap_or_default();
    let generation = object.metadata.generation;
    crate::base::conditions::set_condition(&mut conditions, "Ready", false, "InvalidSpec", message.clone(), generation, now);
    let resource = ApiResource::erase::<BackupPolicy>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &object.namespace().unwrap_or_default(), &resource);
    let patch = serde_json::json!({
        "apiVersion": resource.api_version, "kind": resource.kind,
        "status": {"conditions": conditions, "observedGeneration": generation},
    });
    let reference = object.object_ref(&resource);
    ctx.publish(&reference, EventType::Warning, "InvalidSpec", message.clone());
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await?;
    Ok(())
}

pub(crate) async fn reconcile_policy(policy: Arc<BackupPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let policy = ctx.statuses.current(policy);
    let ns = policy.namespace().unwrap_or_default();
    let tenant = ctx.tenancy.client(&ctx.client, &ns, policy.spec.service_account_name.as_deref())?;
    let target = Target {
        policy: &policy,
        ctx: &ctx,
        tenant,
        ns: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
        uid: policy.uid().unwrap_or_default(),
        reference: policy.object_ref(&()),
        events: Mutex::default(),
    };
    let result = reconcile_target(&target, &policy, &ctx).await;
    target.publish_events();
    result
}

/// The targets' problems for the Notifications condition; `None` for a policy without targets.
pub(crate) async fn notification_problems(policy: &BackupPolicy, ctx: &Context, tenant: &Client) -> Option<Vec<crate::notify::TargetProblem>> {
    if policy.spec.notifications.is_empty() {
        return None;
    }
    Some(ctx.notifier.check(policy, tenant).await)
}

pub(crate) async fn reconcile_target(target: &Target<'_>, policy: &Arc<BackupPolicy>, ctx: &Arc<Context>) -> Result<Action> {
    let now = Utc::now();
    let started = std::time::Instant::now();
    // Snapshots are looked for when the API was there at start-up (and is watched), or when the
    // policy makes them: a CRD installed later is found at the policy's next reconcile.
    let snapshots = ctx.snapshots_api || policy.spec.backup_strategy == crate::api::BackupStrategyKind::Snapshot;
    let observation = match observe::observe(policy, ctx, &target.tenant, snapshots, now).await {
        Ok(o) => o,
        Err(e) if e.classify().retry == Retry::AwaitChange => {
            // Nothing can run, but the policy still says why.
            let classified = e.classify();
            target.event(EventType::Warning, classified.reason, classified.message.clone());
            let previous = policy.status.clone().unwrap_or_default();
            let summary = Summary {
                namespace: &target.ns,
                policy: &target.name,
                last_schedule_time: previous.last_schedule_time.as_ref().and_then(crate::api::from_time),
                last_verify_time: previous.last_verify_time.as_ref().and_then(crate::api::from_time),
                next_schedule_time: None,
                runs: &[],
                destinations: &[],
                readiness: crate::policy::readiness::Readiness { not_ready: None, reason: None, message: String::new() },
                plugin_error: Some(classified),
                plugin: None,
                notifications: notification_problems(policy, ctx, &target.tenant).await,
                suspended: policy.spec.suspend,
                generation: policy.metadata.generation,
                now,
            };
            ctx.statuses.submit(policy, status::build(&previous, &summary));
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e),
    };
    let observed_in = std::time::Instant::now();
    let decision = decide::decide(&observation.observed);
    let outcome = apply(target, &observation, &decision).await;
    // Where a slow reconcile spends its time (a run's outcome is recorded, and notified, here).
    tracing::debug!(
        observe_ms = (observed_in - started).as_millis() as u64,
        apply_ms = observed_in.elapsed().as_millis() as u64,
        "reconcile phases"
    );

    let o = &observation.observed;
    let readiness = match &decision.invalid {
        Some(invalid) => invalid.clone(),
        None => crate::policy::readiness::readiness(o, &outcome.runs, &outcome.prune_failed),
    };
    // lastScheduleTime moves on only when every matched PVC has a run or a recorded failure.
    let last_schedule_time = match decision.due {
        Some(due) if outcome.transient.is_none() => Some(due).max(o.last_schedule_time),
        _ => o.last_schedule_time,
    };
    let summary = Summary {
        namespace: &target.ns,
        policy: &target.name,
        last_schedule_time,
        last_verify_time: decision.last_verify_time,
        next_schedule_time: decision.next_schedule_time,
        runs: &outcome.runs,
        destinations: &o.destinations,
        readiness,
        plugin_error: outcome.plugin_error.as_ref().map(Error::classify),
        plugin: outcome.plugin.clone(),
        notifications: notification_problems(policy, ctx, &target.tenant).await,
        suspended: decision.suspended,
        generation: policy.metadata.generation,
        now,
    };
    let previous = policy.status.clone().unwrap_or_default();
    if !o.deleting || o.has_finalizer {
        ctx.statuses.submit(policy, status::build(&previous, &summary));
    }
    ctx.metrics.set_policy_backups(&target.ns, &target.name, &backups_per_pvc(o, &outcome.runs));
    ctx.metrics.set_prunes_failing(&target.ns, &target.name, outcome.prune_failed.len());
    if let Some(e) = outcome.transient {
        return Err(e);
    }
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&format!("{}/{}", target.ns, target.name));
    }
    Ok(match decision.requeue_at {
        Some(at) => Action::requeue((at - now).to_std().unwrap_or_default().max(Duration::from_millis(100))),
        // While deleting, poll the prune and cleanup Jobs' progress as well as watching them.
        None if o.deleting => Action::requeue(Duration::from_secs(5)),
        None => Action::await_change(),
    })
}

/// Per PVC (matched now, or with runs): when its newest successful backup finished (Unix
/// seconds) and how many successful backups are kept.
pub(crate) fn backups_per_pvc(o: &crate::policy::observed::Observed, runs: &[ObservedRun]) -> std::collections::BTreeMap<crate::telemetry::metrics::Target, (Option<f64>, i64)> {
    // Every PVC at every destination has its series, a target never backed up included (no time).
    let mut out: std::collections::BTreeMap<crate::telemetry::metrics::Target, (Option<f64>, i64)> =
        o.pvcs.iter().flat_map(|p| o.destinations.iter().map(|d| ((p.name.clone(), d.name.clone()), (None, 0)))).collect();
    for run in runs.iter().filter(|r| r.status == RunStatus::Succeeded && o.knows(r)) {
        let entry = out.entry((run.pvc.clone(), run.destination.clone())).or_insert((None, 0));
        entry.1 += 1;
        if let Some(done) = run.completion.map(|t| t.timestamp() as f64) {
            entry.0 = Some(entry.0.map_or(done, |t: f64| t.max(done)));
        }
    }
    out
}
