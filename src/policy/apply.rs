//! Carrying out a decision: record finished runs, start new ones, delete what retention drops,
//! verify, finalize; what happened is the outcome the status is written from.

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::events::EventType;

use crate::api::{NotificationEvent, RunStatus};
use crate::policy::decide::{Decision, NewRun, PruneStep};
use crate::runs::observed::{ObservedRun, RunObject};
use crate::error::{Error, Result};
use crate::policy::observe::Observation;
use crate::runs::{self, backup_job, snapshot};
use crate::strategy::{Plugin, resolve};

use super::start::create_planned_run;
use super::children::{finalize, prune, set_finalizer, verify};
use super::target::{Outcome, Target};
use super::start::post_hook;


/// Runs of one policy created at once (per reconcile), within the limit all reconciles share:
/// one policy over N PVCs gets its Jobs as fast as N policies.
const RUN_CREATION_CONCURRENCY: usize = crate::platform::runs_first::IN_FLIGHT_LIMIT;

pub(crate) async fn apply(t: &Target<'_>, observation: &Observation, d: &Decision) -> Outcome {
    let o = &observation.observed;
    let mut out = Outcome { runs: o.runs.clone(), prune_failed: d.prune_failed.clone(), plugin_error: None, plugin: None, transient: None };

    if d.add_finalizer && let Err(e) = set_finalizer(t, true).await {
        out.transient(e);
    }
    record_finished(t, d, &mut out).await;
    delete_recorded_pods(t, &mut out).await;
    for name in &d.replace {
        match backup_job::delete(&t.ctx.client, &t.ns, name).await {
            Ok(()) => out.runs.retain(|r| &r.name != name),
            Err(e) => out.transient(e),
        }
    }

    // The plugin, when something needs planning (or a custom plugin's config needs checking).
    let needs_plan = !d.create.is_empty()
        || !d.verify_start.is_empty()
        || d.prune.iter().any(|s| matches!(s, PruneStep::Start { .. }));
    let check_only = !needs_plan && (t.policy.spec.backup_strategy == crate::api::BackupStrategyKind::Custom || t.policy.spec.plugin.is_some()) && !o.deleting;
    let plugin: std::result::Result<Arc<Plugin>, Error> = if needs_plan || check_only {
        resolve::plugin(t.policy, &t.tenant, &t.ctx.runtime, t.ctx.plugin_dir.as_deref()).await.map_err(Error::from)
    } else {
        Err(Error::Runtime("no plugin needed".into()))
    };
    if let Ok(p) = &plugin {
        out.plugin = Some(resolve::status(p));
    }
    // A custom plugin's config is checked (validate-config) before anything is planned with it;
    // a rejection is remembered until the policy or the plugin changes, and nothing is planned
    // with that config meanwhile.
    let custom = t.policy.spec.backup_strategy == crate::api::BackupStrategyKind::Custom || t.policy.spec.plugin.is_some();
    let mut config_rejected = false;
    if (check_only || (needs_plan && custom)) && !o.deleting {
        let key = format!("{}/{}", t.ns, t.name);
        let generation = t.policy.metadata.generation;
        let checked = match &plugin {
            Ok(p) => match t.ctx.rejected_config(&key, generation, &p.id.digest) {
                Some(remembered) => Err(remembered),
                None => {
                    let result = t.ctx.runtime.validate_config(p.clone(), resolve::limits(t.policy), resolve::config(t.policy)).await.map_err(Error::from);
                    if let Err(e) = &result
                        && matches!(e, Error::Strategy(crate::strategy::Error::PluginConfigInvalid { .. }))
                    {
                        t.ctx.remember_rejected_config(key, generation, p.id.digest.clone(), e);
                    }
                    result
                }
            },
            Err(e) => Err(e.duplicate()),
        };
        match checked {
            Ok(()) => {}
            Err(e) if e.is_permanent() => {
                let c = e.classify();
                t.event(EventType::Warning, c.reason, c.message);
                config_rejected = matches!(e, Error::Strategy(crate::strategy::Error::PluginConfigInvalid { .. }));
                out.plugin_error = Some(e);
            }
            Err(e) => out.transient(e),
        }
    }

    // New runs, up to RUN_CREATION_CONCURRENCY PVCs at a time (a policy with 1,000 PVCs creates
    // its Jobs at the API server's pace, not one round trip after another); a failure for one PVC
    // is that PVC's failed run.
    let planned: &[NewRun] = if config_rejected { &[] } else { &d.create };
    let creations: Vec<_> = planned.iter().map(|new| create_planned_run(t, observation, &plugin, new)).collect();
    let created: Vec<Result<(String, Option<ObservedRun>)>> = futures::stream::iter(creations).buffered(RUN_CREATION_CONCURRENCY).collect().await;
    for (new, result) in planned.iter().zip(created) {
        match result {
            Ok((plugin_label, run)) => {
                t.event(EventType::Normal, "RunStarted", format!("{}: run {} started ({plugin_label})", crate::runs::observed::target(&new.pvc, &new.destination), new.name));
                out.runs.extend(run);
            }
            Err(e) if e.is_permanent() => {
                let c = e.classify();
                t.event(EventType::Warning, c.reason, format!("{}: run {} not started: {}", crate::runs::observed::target(&new.pvc, &new.destination), new.name, c.message));
                let plugin_failed = matches!(e, Error::Strategy(crate::strategy::Error::PlanRefused { .. })) || c.reason.starts_with("Plugin");
                out.runs.push(ObservedRun {
                    name: new.name.clone(),
                    object: RunObject::NotStarted,
                    pvc: new.pvc.clone(),
                    destination: new.destination.clone(),
                    scheduled: Some(new.scheduled),
                    status: RunStatus::Failed,
                    start: Some(o.now),
                    completion: Some(o.now),
                    reason: Some(c.reason.to_owned()),
                    message: c.message,
                    plugin: plugin.as_ref().ok().map(|p| resolve::label(p)),
                    recorded: true,
                    ..ObservedRun::default()
                });
                // Recorded once (in the status's history): at most one notification.
                if let Some(run) = out.runs.last() {
                    let event = if plugin_failed { NotificationEvent::PluginFailed } else { NotificationEvent::Failed };
                    t.notify(event, Some(run), None, None, run.message.clone());
                }
            }
            Err(e) => {
                // Not a failure, but the run is late: say so where `kubectl describe bp` shows it.
                if let Error::HooksBusy { busy, .. } = &e {
                    t.event(EventType::Normal, "HooksWaiting", format!("{}: run {} waits for a hook slot: {busy}", crate::runs::observed::target(&new.pvc, &new.destination), new.name));
                }
                out.transient(e);
            }
        }
    }
    // The public listing follows the runs just created (at most retentionCount Jobs of a series
    // carry `backup-policy`).
    relist(t, d, &mut out).await;
    for refused in &d.refused {
        t.event(EventType::Warning, "RunRefused", format!("{}: {}", refused.target(), refused.message));
        out.runs.push(refused.clone());
    }
    for (pvc, restore) in &d.skipped_restoring {
        let note = format!("{pvc}: BackupRestore {restore} is restoring into it");
        t.notify(NotificationEvent::Skipped, None, Some(pvc), d.due, note.clone());
        t.event(EventType::Normal, "RunSkipped", note);
    }
    for pvc in &d.skipped_active {
        let note = format!("{pvc}: the previous backup is still running (concurrencyPolicy Forbid)");
        t.notify(NotificationEvent::Skipped, None, Some(pvc), d.due, note.clone());
        t.event(EventType::Normal, "RunSkipped", note);
    }
    if d.skipped_past_deadline {
        let note = "the scheduled run could not start within startingDeadlineSeconds and was skipped".to_owned();
        t.notify(NotificationEvent::Missed, None, None, d.due, note.clone());
        t.event(EventType::Warning, "RunMissed", note);
    }
    if d.missed > crate::policy::schedule::TOO_MANY_MISSED {
        t.event(EventType::Warning, "TooManyMissedRuns", format!("{} scheduled runs were missed; only the most recent one starts", d.missed));
    }

    for f in &d.fail_stuck {
        match runs::fail_stuck_job(&t.ctx.client, &t.ns, &f.run, &f.cause, f.elapsed_seconds).await {
            Ok(()) => {
                let reason = f.cause.split(':').next().unwrap_or("RunStuck");
                t.event(EventType::Warning, reason, format!("{}: run {} failed after {} s without starting: {}", f.pvc, f.run, f.elapsed_seconds, f.cause));
            }
            Err(e) => out.transient(e),
        }
    }
    prune(t, observation, d, plugin.as_ref().ok(), &mut out).await;
    verify(t, observation, d, plugin.as_ref().ok(), &mut out).await;
    finalize(t, d, &mut out).await;
    notify_pending(t, &out);
    out
}

/// The pods of finished runs whose result is recorded on their Job: nothing reads them any more,
/// and they would keep the claims they mounted in use.
pub(crate) async fn delete_recorded_pods(t: &Target<'_>, out: &mut Outcome) {
    let Ok(caches) = t.ctx.caches().await else { return };
    let pods = caches.pods_of_policy(&t.ns, &t.uid, &std::collections::BTreeSet::new());
    if pods.is_empty() {
        return;
    }
    let done: Vec<String> = out.runs.iter().filter(|r| r.object == RunObject::Job && r.recorded && matches!(r.status, RunStatus::Succeeded | RunStatus::Failed)).map(|r| r.name.clone()).collect();
    for run in done {
        if let Err(e) = runs::delete_pods_of_job(&t.ctx.client, &t.ns, &pods, &run).await {
            out.transient(e);
        }
    }
}

/// Puts backup Jobs into the public listing or takes them out, as decided.
pub(crate) async fn relist(t: &Target<'_>, d: &Decision, out: &mut Outcome) {
    for (run, listed) in &d.relist {
        let Some(pvc) = out.runs.iter().find(|r| &r.name == run).map(|r| r.pvc.clone()) else { continue };
        match runs::set_listed(&t.ctx.client, &t.ns, run, &t.name, &pvc, *listed).await {
            Ok(()) => {
                if let Some(r) = out.runs.iter_mut().find(|r| &r.name == run) {
                    r.listed = *listed;
                }
            }
            Err(e) => out.transient(e),
        }
    }
}

/// Finished runs, recorded once on their object, with an event.
pub(crate) async fn record_finished(t: &Target<'_>, d: &Decision, out: &mut Outcome) {
    for name in &d.record {
        // The post hook, once, before the run is recorded (its result is recorded on the Job
        // first, so that a retried record does not run it again).
        let pending_post = out
            .runs
            .iter()
            .find(|r| &r.name == name && r.object == RunObject::Job)
            .and_then(|r| Some((r.pvc.clone(), r.hooks.clone()?)))
            .filter(|(_, h)| h.pod.is_some() && h.post.is_none() && t.policy.spec.hooks.as_ref().is_some_and(|h| h.post.is_some()));
        if let Some((pvc, hooks)) = pending_post {
            // No slot free: the run stays unrecorded and is tried again shortly.
            let _slot = match t.ctx.hook_slots.try_acquire(&t.ns) {
                Ok(slot) => slot,
                Err(busy) => {
                    t.event(EventType::Normal, "HooksWaiting", format!("{pvc}: the post hook of run {name} waits for a hook slot: {busy}"));
                    out.transient(Error::HooksBusy { pvc, busy });
                    continue;
                }
            };
            let done = post_hook(t, &hooks).await;
            if let Err(e) = backup_job::record_hooks(&t.ctx.client, &t.ns, name, &done).await {
                out.transient(e);
                continue;
            }
            if let Some(run) = out.runs.iter_mut().find(|r| &r.name == name) {
                run.hooks = Some(done);
            }
        }
        let Some(run) = out.runs.iter_mut().find(|r| &r.name == name) else { continue };
        // The notification the outcome owes is recorded with it, so a restart does not lose it.
        let event = match run.status {
            RunStatus::Succeeded => Some(NotificationEvent::Succeeded),
            RunStatus::Failed => Some(NotificationEvent::Failed),
            RunStatus::Pending | RunStatus::Running => None,
        };
        run.pending_notifications = event.filter(|e| t.wants(*e)).into_iter().collect();
        let result = match run.object {
            RunObject::Job => backup_job::record(&t.ctx.client, &t.ns, run).await,
            RunObject::Snapshot => snapshot::record(&t.ctx.client, &t.ns, &run.name, &run.pending_notifications).await,
            RunObject::NotStarted => Ok(()),
        };
        if let Err(e) = result {
            out.transient(e);
            continue;
        }
        run.recorded = true;
        if matches!(run.status, RunStatus::Succeeded | RunStatus::Failed) {
            let m = &t.ctx.metrics;
            let result = if run.status == RunStatus::Succeeded { "Succeeded" } else { "Failed" };
            let strategy = serde_json::to_value(t.policy.spec.backup_strategy).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            m.runs.get_or_create(&crate::telemetry::metrics::RunLabels { namespace: t.ns.clone(), policy: t.name.clone(), strategy, result: result.into() }).inc();
            if let (Some(start), Some(end)) = (run.start, run.completion) {
                let seconds = (end - start).num_milliseconds().max(0) as f64 / 1000.0;
                m.run_duration.get_or_create(&crate::telemetry::metrics::PolicyLabels { namespace: t.ns.clone(), policy: t.name.clone() }).observe(seconds);
            }
        }
        match run.status {
            RunStatus::Succeeded => t.run_event(EventType::Normal, "RunSucceeded", run, format!("{}: run {} succeeded: {}", run.pvc, run.name, succeeded(run))),
            RunStatus::Failed => t.run_event(EventType::Warning, "RunFailed", run, format!("{}: run {} failed: {}", run.pvc, run.name, run.message)),
            RunStatus::Pending | RunStatus::Running => {}
        }
    }
}

/// How a successful run went, in words (its event's and notification's message).
pub(crate) fn succeeded(run: &ObservedRun) -> String {
    let report = run.report.clone().unwrap_or_default();
    match (run.verifies && report.verified != Some(false), report.size_bytes, &report.sha256) {
        (true, Some(size), Some(sum)) => format!("written and verified, {size} bytes, sha256 {sum}"),
        (true, _, _) => "written and verified".to_owned(),
        (false, _, _) => "written, unverified (the plan verifies nothing)".to_owned(),
    }
}

/// The notifications recorded runs still owe (just recorded, or left by an operator that
/// stopped before delivering them), handed to the notifier; it sends each once per process.
pub(crate) fn notify_pending(t: &Target<'_>, out: &Outcome) {
    for run in out.runs.iter().filter(|r| r.recorded) {
        for event in &run.pending_notifications {
            let message = match event {
                NotificationEvent::Succeeded => succeeded(run),
                NotificationEvent::Corrupted => run.verify.as_ref().map(|v| v.message.clone()).unwrap_or_default(),
                NotificationEvent::Failed
                | NotificationEvent::Missed
                | NotificationEvent::Skipped
                | NotificationEvent::PruneFailed
                | NotificationEvent::PluginFailed => run.message.clone(),
            };
            t.notify(*event, Some(run), None, None, message);
        }
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
