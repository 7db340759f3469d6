//! Observe: what the cluster says about one policy, as plain data for [`crate::policy::decide`]. The only
//! part of a reconcile that reads from the API server.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use crate::api::{BackupPolicy, BackupStrategyKind, RunStatus, from_time};
use crate::context::Context;
use crate::policy::observed::NotReady;
use crate::policy::observed::{Observed, ObservedDestination, ObservedPvc};
use crate::runs::observed::{ObservedRun, RunObject};
use crate::runs::destination;
use crate::error::{Error, Result};
use crate::runs::{self, backup_job, snapshot, stuck};
use crate::base::names::{LABEL_KIND, RunKind};
use crate::strategy::check::{is_label_key, is_label_value};

/// The finalizer that holds a policy with `deletionPolicy: Delete` until its backups are pruned.
pub const FINALIZER: &str = "backup.example.com/prune-artifacts";

/// What one reconcile sees: the plain data, and the PVC objects the planner describes.
pub struct Observation {
    pub observed: Observed,
    pub pvcs: Vec<PersistentVolumeClaim>,
}

/// `matchLabels` and `matchExpressions` as a label selector query, checked as the API server
/// checks a selector, so that a bad one is a condition on the policy rather than a failed list.
pub fn selector_query(selector: &LabelSelector) -> Result<String> {
    let bad = |m: String| Err(Error::InvalidSelector(crate::base::text::bound(&m, 300)));
    let mut parts = Vec::new();
    for (k, v) in selector.match_labels.iter().flatten() {
        if !is_label_key(k) {
            return bad(format!("matchLabels key {k:?} is not a valid label key"));
        }
        if !is_label_value(v) {
            return bad(format!("matchLabels value {v:?} of {k:?} is not a valid label value (at most 63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends)"));
        }
        parts.push(format!("{k}={v}"));
    }
    for e in selector.match_expressions.iter().flatten() {
        if !is_label_key(&e.key) {
            return bad(format!("matchExpressions key {:?} is not a valid label key", e.key));
        }
        let values = e.values.clone().unwrap_or_default();
        if let Some(v) = values.iter().find(|v| !is_label_value(v)) {
            return bad(format!("matchExpressions value {v:?} of {:?} is not a valid label value", e.key));
        }
        let list = values.join(",");
        parts.push(match (e.operator.as_str(), values.is_empty()) {
            ("In", false) => format!("{} in ({list})", e.key),
            ("NotIn", false) => format!("{} notin ({list})", e.key),
            ("In" | "NotIn", true) => return bad(format!("operator {} on {:?} needs at least one value", e.operator, e.key)),
            ("Exists", true) => e.key.clone(),
            ("DoesNotExist", true) => format!("!{}", e.key),
            ("Exists" | "DoesNotExist", false) => return bad(format!("operator {} on {:?} takes no values", e.operator, e.key)),
            (other, _) => return bad(format!("unknown operator {other:?} on {:?} (In, NotIn, Exists, DoesNotExist)", e.key)),
        });
    }
    Ok(parts.join(","))
}

fn access_modes(pvc: &PersistentVolumeClaim) -> Vec<String> {
    pvc.spec.as_ref().and_then(|s| s.access_modes.clone()).unwrap_or_default()
}


/// A running pod (not one of the operator's own) that mounts the claim, and its node.
fn mounted_by(pods: &[Pod], claim: &str) -> Option<(String, Option<String>)> {
    crate::runs::pod_mounting(pods, claim, false).map(|p| (p.name_any(), p.spec.as_ref().and_then(|s| s.node_name.clone())))
}

/// Runs recorded only in the status (their planning failed or they were refused).
fn not_started(policy: &BackupPolicy) -> Vec<ObservedRun> {
    let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| t.as_ref().and_then(from_time);
    policy
        .status
        .iter()
        .flat_map(|s| &s.backup_history)
        .filter(|r| r.not_started)
        .map(|r| ObservedRun {
            name: r.job_name.clone(),
            object: RunObject::NotStarted,
            pvc: r.pvc.clone(),
            destination: r.destination.clone().unwrap_or_default(),
            scheduled: time(&r.scheduled_time),
            status: RunStatus::Failed,
            start: time(&r.start_time),
            completion: time(&r.completion_time),
            reason: r.reason.clone(),
            message: r.message.clone(),
            plugin: r.plugin.clone(),
            recorded: true,
            ..ObservedRun::default()
        })
        .collect()
}

/// Whether a label selector (already checked by [`selector_query`]) matches these labels, as the
/// API server would: every `matchLabels` pair, and every expression.
pub fn selector_matches(selector: &LabelSelector, labels: &std::collections::BTreeMap<String, String>) -> bool {
    let pairs = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs && expressions
}

/// What the cluster says about one policy, from the shared watches (no list from the API server).
/// `tenant` reads what the policy names (its Secrets) with the rights the operator acts with for it.
pub async fn observe(policy: &BackupPolicy, ctx: &Context, tenant: &kube::Client, snapshots_api: bool, now: DateTime<Utc>) -> Result<Observation> {
    let client = &ctx.client;
    let caches = ctx.caches().await?;
    let ns = policy.namespace().ok_or_else(|| Error::InvalidSpec("BackupPolicy without a namespace".into()))?;
    let name = policy.name_any();
    let uid = policy.uid().unwrap_or_default();

    selector_query(&policy.spec.pvc_selector)?;
    let destination_claims: Vec<String> = destination::of(&policy.spec).iter().filter_map(|d| d.claim().map(str::to_owned)).collect();
    let matched: Vec<PersistentVolumeClaim> = caches
        .pvc_candidates(&ns, &policy.spec.pvc_selector)
        .into_iter()
        .filter(|p| selector_matches(&policy.spec.pvc_selector, p.labels()))
        .filter(|p| p.name_any() != policy.spec.backup_storage_claim)
        .filter(|p| !destination_claims.iter().any(|c| *c == p.name_any()))
        .map(|p| (*p).clone())
        .collect();
    let phase = |p: &PersistentVolumeClaim| p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
    let (mut pvcs, unbound): (Vec<PersistentVolumeClaim>, Vec<PersistentVolumeClaim>) = matched.into_iter().partition(|p| phase(p) == "Bound");
    pvcs.sort_by_key(|p| p.name_any());
    let mut unbound: Vec<(String, String)> = unbound.iter().map(|p| (p.name_any(), phase(p))).collect();
    unbound.sort();
    let acting_as = ctx.tenancy.acting_as(&ns, policy.spec.service_account_name.as_deref());
    let destinations = observe_destinations(policy, caches, tenant, &acting_as, &ns).await?;

    let jobs: Vec<Job> = caches.jobs_of_policy(&ns, &uid).into_iter().filter(|j| j.owner_references().iter().any(|o| o.uid == uid)).collect();
    let claims: std::collections::BTreeSet<String> = pvcs.iter().map(|p| p.name_any()).collect();
    let pods = caches.pods_of_policy(&ns, &uid, &claims);
    let of_kind = |kind: RunKind| jobs.iter().filter(move |j| j.labels().get(LABEL_KIND).map(String::as_str) == Some(kind.label()));

    let mut run_list: Vec<ObservedRun> = of_kind(RunKind::Backup).filter_map(backup_job::observe).collect();
    backup_job::attach_pod_reports(&mut run_list, &pods);
    attach_stuck_causes(caches, &ns, &mut run_list, &pods);
    let cause_reportable_at = crate::runs::observed::defer_young_causes(&mut run_list, now, policy.spec.start_timeout_seconds);
    match caches.snapshots_of(&ns, &uid) {
        Some(found) => run_list.extend(found.iter().filter(|s| s.owner_references().iter().any(|o| o.uid == uid)).filter_map(snapshot::observe_one)),
        // The API appeared after start-up: read it.
        None if snapshots_api => run_list.extend(snapshot::observe(client, &ns, &uid).await?),
        None => {}
    }
    let existing: Vec<String> = run_list.iter().map(|r| r.name.clone()).collect();
    run_list.extend(not_started(policy).into_iter().filter(|r| !existing.contains(&r.name)));

    let holds = crate::runs::holds::holds(&caches.restores_in(&ns), &pvcs);
    let held = holds.runs.iter().filter(|(p, _)| *p == name).map(|(_, run)| run.clone()).collect();
    let status = policy.status.clone().unwrap_or_default();
    let suspended = status.conditions.iter().find(|c| c.type_ == "Suspended");
    let resumed_at = crate::policy::observed::resumed_at(
        suspended.and_then(|c| Some((c.status.as_str() == "True", from_time(&c.last_transition_time)?))),
        policy.spec.suspend,
        now,
    );
    let observed = Observed {
        now,
        cause_reportable_at,
        unbound,
        namespace: ns,
        policy: name,
        spec: policy.spec.clone(),
        created: policy.metadata.creation_timestamp.as_ref().and_then(from_time).unwrap_or(now),
        last_schedule_time: status.last_schedule_time.as_ref().and_then(from_time),
        last_verify_time: status.last_verify_time.as_ref().and_then(from_time),
        resumed_at,
        pvcs: pvcs
            .iter()
            .map(|p| {
                let modes = access_modes(p);
                ObservedPvc {
                    name: p.name_any(),
                    read_write_once: modes.iter().any(|m| m == "ReadWriteOnce"),
                    read_write_once_pod: modes.iter().any(|m| m == "ReadWriteOncePod"),
                    mounted_by: mounted_by(&pods, &p.name_any())
                        .map(|(pod, node)| (pod, node.or_else(|| p.annotations().get("volume.kubernetes.io/selected-node").cloned()))),
                }
            })
            .collect(),
        destinations,
        runs: run_list,
        prunes: of_kind(RunKind::Prune).map(|j| runs::observe_aux(j, &pods)).collect(),
        verifies: of_kind(RunKind::Verify).map(|j| runs::observe_aux(j, &pods)).collect(),
        cleanup: of_kind(RunKind::Cleanup).map(|j| runs::observe_aux(j, &pods)).next(),
        deleting: policy.metadata.deletion_timestamp.is_some(),
        has_finalizer: policy.finalizers().iter().any(|f| f == FINALIZER),
        held,
        restoring: holds.targets,
    };
    Ok(Observation { observed, pvcs })
}

/// Each destination of the policy, and why no run can write to it, if none can: its claim is
/// missing or being deleted, or a Secret key its Jobs need is missing. Secrets are read by name
/// (never listed or watched) and only their key names are kept.
async fn observe_destinations(policy: &BackupPolicy, caches: &crate::platform::cache::Caches, client: &kube::Client, acting_as: &str, ns: &str) -> Result<Vec<ObservedDestination>> {
    let spec = &policy.spec;
    match spec.backup_strategy {
        BackupStrategyKind::Snapshot if spec.destinations.is_some() => {
            return Err(Error::InvalidSpec(
                "the snapshot strategy keeps backups in the cluster as VolumeSnapshots: spec.destinations does not apply to it; remove it".into(),
            ));
        }
        BackupStrategyKind::Restic if spec.restic.is_none() => {
            return Err(Error::InvalidSpec("the restic strategy encrypts every repository: set spec.restic.passwordSecret".into()));
        }
        BackupStrategyKind::Snapshot | BackupStrategyKind::Restic | BackupStrategyKind::Tar | BackupStrategyKind::Custom => {}
    }
    // A prefix that climbs (admitted under an older CRD) never reaches a plan.
    for d in spec.destinations.iter().flatten() {
        if let Some(problem) = d.s3.as_ref().and_then(|s3| s3.prefix.as_deref()).and_then(destination::prefix_problem) {
            return Err(Error::InvalidSpec(format!("spec.destinations[{}]: {problem}", d.name)));
        }
    }
    let secrets_api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), ns);
    // Secret name -> its keys (None: it does not exist; Err: it cannot be read).
    let mut secrets: BTreeMap<String, std::result::Result<Option<BTreeSet<String>>, String>> = BTreeMap::new();
    let mut observed = Vec::new();
    for d in destination::of(spec) {
        let mut problem = None;
        if let Some(claim) = d.claim() {
            // A claim being deleted is as good as missing: a Job would keep it from ever going away.
            match caches.pvc(ns, claim) {
                None => problem = Some((NotReady::BackupStorageMissing, format!("{} does not exist in this namespace", d.describe()))),
                Some(c) if c.metadata.deletion_timestamp.is_some() => {
                    problem = Some((
                        NotReady::BackupStorageMissing,
                        format!("{} is being deleted: no run starts against it, so that it can go; create it again or point the policy elsewhere", d.describe()),
                    ));
                }
                Some(_) => {}
            }
        }
        if problem.is_none() {
            for (secret, key) in destination::required_keys(spec, &d) {
                if !secrets.contains_key(&secret) {
                    let keys = match secrets_api.get_opt(&secret).await {
                        Ok(found) => Ok(found.map(|s| s.data.unwrap_or_default().into_keys().chain(s.string_data.unwrap_or_default().into_keys()).collect())),
                        Err(kube::Error::Api(e)) if e.code == 403 => Err(format!("{acting_as} may not read Secret {secret:?} ({}): grant it get on secrets", e.message)),
                        Err(e) => return Err(e.into()),
                    };
                    secrets.insert(secret.clone(), keys);
                }
                let message = match secrets.get(&secret) {
                    Some(Ok(Some(keys))) if keys.contains(&key) => continue,
                    Some(Ok(Some(_))) => format!("Secret {secret:?} has no key {key:?}, which {} needs", d.describe()),
                    Some(Ok(None)) | None => format!("Secret {secret:?} (key {key:?}, for {}) does not exist in this namespace", d.describe()),
                    Some(Err(message)) => message.clone(),
                };
                problem = Some((NotReady::DestinationCredentialsMissing, message));
                break;
            }
        }
        observed.push(ObservedDestination { name: d.name.clone(), problem });
    }
    Ok(observed)
}

/// Why unfinished runs are not getting anywhere: from their pods, and for a run without pods from
/// its Job's `FailedCreate` events (admission refusals show only there), both from the caches.
fn attach_stuck_causes(caches: &crate::platform::cache::Caches, ns: &str, runs: &mut [ObservedRun], pods: &[Pod]) {
    let unfinished = |r: &ObservedRun| r.object == RunObject::Job && matches!(r.status, RunStatus::Pending | RunStatus::Running);
    let names: std::collections::BTreeSet<&str> = runs.iter().filter(|r| unfinished(r)).map(|r| r.name.as_str()).collect();
    let events = if names.is_empty() { Vec::new() } else { caches.failed_creates_of(ns, &names) };
    for run in runs.iter_mut().filter(|r| unfinished(r)) {
        let own: Vec<Event> = events.iter().filter(|e| e.involved_object.name.as_deref() == Some(run.name.as_str())).cloned().collect();
        run.stuck = stuck::cause(&run.name, pods, &own);
    }
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
        let cases = [
            (serde_json::json!({"matchExpressions": [{"key": "k", "operator": "Near"}]}), "unknown operator \"Near\""),
            (serde_json::json!({"matchLabels": {"app": "my db"}}), "\"my db\" of \"app\" is not a valid label value"),
            (serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "In"}]}), "needs at least one value"),
            (serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": []}]}), "needs at least one value"),
            (serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "Exists", "values": ["a"]}]}), "takes no values"),
            (serde_json::json!({"matchLabels": {"bad key!": "x"}}), "not a valid label key"),
            (serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a,b"]}]}), "not a valid label value"),
        ];
        for (selector, want) in cases {
            let s: LabelSelector = serde_json::from_value(selector.clone()).expect("selector");
            let err = selector_query(&s).expect_err(&selector.to_string());
            assert!(matches!(err, Error::InvalidSelector(_)), "{err}");
            assert!(err.to_string().contains(want), "{selector}: {err}");
        }
    }

    #[test]
    fn selectors_match_labels_as_the_api_server_does() {
        let labels: std::collections::BTreeMap<String, String> = [("app", "db"), ("tier", "a")].map(|(k, v)| (k.to_owned(), v.to_owned())).into();
        let cases = [
            (serde_json::json!({}), true),
            (serde_json::json!({"matchLabels": {"app": "db"}}), true),
            (serde_json::json!({"matchLabels": {"app": "web"}}), false),
            (serde_json::json!({"matchLabels": {"app": "db", "tier": "b"}}), false),
            (serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}), true),
            (serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}), false),
            (serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}), true),
            (serde_json::json!({"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}), true),
            (serde_json::json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}), true),
            (serde_json::json!({"matchLabels": {"app": "db"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}, {"key": "x", "operator": "Exists"}]}), false),
        ];
        for (selector, want) in cases {
            let s: LabelSelector = serde_json::from_value(selector.clone()).expect("selector");
            assert_eq!(selector_matches(&s, &labels), want, "{selector}");
        }
    }

    #[test]
    fn a_running_pod_that_mounts_the_claim_is_found_with_its_node() {
        let pod = |name: &str, phase: &str, claim: &str, ours: bool| -> Pod {
            let labels = if ours { serde_json::json!({LABEL_KIND: "backup"}) } else { serde_json::json!({}) };
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": labels},
                "spec": {"nodeName": "node-a", "containers": [], "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]},
                "status": {"phase": phase}
            }))
            .expect("pod")
        };
        let pods = vec![pod("done", "Succeeded", "data-0", false), pod("backup", "Running", "data-0", true), pod("db-0", "Running", "data-0", false)];
        assert_eq!(mounted_by(&pods, "data-0"), Some(("db-0".into(), Some("node-a".into()))));
        assert_eq!(mounted_by(&pods, "data-1"), None);
    }
}
