//! Application-consistent hooks on the real cluster: commands run with pods/exec in the pod that
//! mounts the PVC, before and after each backup.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use backup_operator::api::{BackupRun, RunStatus};
use serde_json::json;
use support::operator::{LIMIT, Operator, claim, claim_dir, condition_is, create_policy, enable_hooks, mount_pod, poll, setup, status, wait_policy};

fn sh(script: &str) -> serde_json::Value {
    json!(["sh", "-c", script])
}

async fn first_finished(ns: &support::TestNamespace, policy: &str) -> BackupRun {
    poll(&format!("a finished run of {policy}"), LIMIT * 2, || async {
        status(ns, policy).await.backup_history.into_iter().find(|r| matches!(r.status, RunStatus::Succeeded | RunStatus::Failed))
    })
    .await
}

#[tokio::test]
async fn hooks_run_in_the_pod_that_mounts_the_pvc() {
    let Some((cluster, ns)) = setup("hooks").await else { return };
    enable_hooks(&cluster, &ns);
    for (claim_name, app) in [("data-ok", "ok"), ("data-pre", "pre"), ("data-post", "post"), ("data-idle", "idle")] {
        claim(&ns, claim_name, json!({"app": app})).await;
    }
    claim(&ns, "backup-storage", json!({})).await;
    for (pod, claim_name) in [("app-ok", "data-ok"), ("app-pre", "data-pre"), ("app-post", "data-post")] {
        mount_pod(&ns, pod, claim_name).await;
    }
    let _operator = Operator::start(&cluster, &ns);
    let policy = |app: &str, extra: serde_json::Value| {
        let mut spec = json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": app}}});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        spec
    };
    let log_both = json!({"hooks": {"pre": {"command": sh("echo pre >> /data/hooks.log")}, "post": {"command": sh("echo post >> /data/hooks.log")}}});
    create_policy(&ns, "ok", policy("ok", log_both.clone())).await.expect("policy");
    create_policy(&ns, "pre", policy("pre", json!({"hooks": {
        "pre": {"command": sh("echo checkpoint refused >&2; exit 3")},
        "post": {"command": sh("echo post-after-failed-pre >> /data/hooks.log")}
    }})))
    .await
    .expect("policy");
    // A backup that fails (its image does not exist) after the pre hook ran: the post hook still runs.
    let mut failing = log_both.clone();
    failing["backupImage"] = json!("no-such-image:0");
    failing["startTimeoutSeconds"] = json!(10);
    create_policy(&ns, "post", policy("post", failing)).await.expect("policy");
    // No pod mounts data-idle: the run goes ahead without hooks, and says so.
    create_policy(&ns, "idle", policy("idle", json!({"hooks": {"pre": {"command": sh("exit 1")}}}))).await.expect("policy");

    let ok = first_finished(&ns, "ok").await;
    assert_eq!(ok.status, RunStatus::Succeeded, "{ok:?}");
    assert!(ok.message.contains("pre hook ok in") && ok.message.contains("post hook ok in") && ok.message.contains("(pod app-ok)"), "{}", ok.message);
    let log = std::fs::read_to_string(claim_dir(&ns, "data-ok").await.join("hooks.log")).expect("hooks.log");
    assert!(log.starts_with("pre\npost\n"), "{log:?}");
    let millis: u64 = ok.message.split(" ok in ").skip(1).filter_map(|t| t.split(' ').next()?.parse::<u64>().ok()).sum();
    support::measured(&format!("hooks: pre + post exec in the application's pod add {millis} ms to a run ({})", ok.message));

    let pre = first_finished(&ns, "pre").await;
    assert_eq!((pre.status, pre.reason.as_deref()), (RunStatus::Failed, Some("HookFailed")), "{pre:?}");
    assert!(pre.message.contains("exit code 3") && pre.message.contains("checkpoint refused"), "the pre hook's output: {}", pre.message);
    let log = std::fs::read_to_string(claim_dir(&ns, "data-pre").await.join("hooks.log")).expect("hooks.log");
    // One line per run that reached its hooks (a second run may have by now): only the post hook's.
    assert!(!log.is_empty() && log.lines().all(|l| l == "post-after-failed-pre"), "{log:?}");
    assert!(support::operator::jobs(&ns, "pre").await.is_empty(), "no backup Job after a failed pre hook");

    let post = first_finished(&ns, "post").await;
    assert_eq!(post.status, RunStatus::Failed, "{post:?}");
    assert!(post.message.contains("no-such-image") && post.message.contains("post hook ok in"), "{}", post.message);
    let log = std::fs::read_to_string(claim_dir(&ns, "data-post").await.join("hooks.log")).expect("hooks.log");
    assert!(log.starts_with("pre\npost\n"), "{log:?}");

    let idle = first_finished(&ns, "idle").await;
    assert_eq!(idle.status, RunStatus::Succeeded, "{idle:?}");
    assert!(idle.message.contains("hooks skipped: no running pod mounts data-idle"), "{}", idle.message);
    ns.delete().await;
}

/// Hooks hold a reconcile worker for as long as they run, so they get fewer slots than there are
/// workers: with 2 workers, one slow pre hook runs, a second policy's hooks wait for the slot (and
/// are tried again), and a policy without hooks still gets its run meanwhile.
#[tokio::test]
async fn slow_hooks_never_take_every_reconcile_worker() {
    let Some((cluster, ns)) = setup("hooks-slots").await else { return };
    enable_hooks(&cluster, &ns);
    for (claim_name, app) in [("data-s1", "s1"), ("data-s2", "s2"), ("data-plain", "plain")] {
        claim(&ns, claim_name, json!({"app": app})).await;
    }
    claim(&ns, "backup-storage", json!({})).await;
    for (pod, claim_name) in [("app-s1", "data-s1"), ("app-s2", "data-s2")] {
        mount_pod(&ns, pod, claim_name).await;
    }
    // 2 workers: hooks get 1 slot (the defaults, 16 in all and 4 per namespace, are kept below that).
    let operator = Operator::start_with(&cluster, &ns, &["--reconcile-concurrency", "2"]);
    let slow = json!({"pre": {"command": sh("echo started >> /data/hook-started; sleep 300"), "timeoutSeconds": 600}});
    for app in ["s1", "s2"] {
        create_policy(&ns, app, json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": app}}, "hooks": slow})).await.expect("policy");
    }
    create_policy(&ns, "plain", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "plain"}}})).await.expect("policy");

    let plain = first_finished(&ns, "plain").await;
    assert_eq!(plain.status, RunStatus::Succeeded, "{plain:?}");
    poll("a slow policy's hooks deferred", LIMIT, || async { operator.log().contains("wait: 1 hooks").then_some(()) }).await;
    // The slot's holder writes its mark once its exec has begun.
    let started = poll("a slow pre hook started", LIMIT, || async {
        let mut started = Vec::new();
        for claim_name in ["data-s1", "data-s2"] {
            if claim_dir(&ns, claim_name).await.join("hook-started").exists() {
                started.push(claim_name);
            }
        }
        (!started.is_empty()).then_some(started)
    })
    .await;
    assert_eq!(started.len(), 1, "one slow pre hook at a time: {started:?}");
    // The waiting policy says so on itself, not only in the operator's log.
    let waiting = if started == ["data-s1"] { "s2" } else { "s1" };
    support::operator::event_reasons(&cluster, &ns, waiting, &["HooksWaiting"]).await;
    for app in ["s1", "s2"] {
        assert!(support::operator::jobs(&ns, app).await.is_empty(), "{app}: no backup Job while its pre hook runs or waits");
    }
    ns.delete().await;
}

/// An operator acting with its own rights runs hooks only where a cluster admin enabled them:
/// elsewhere, editing a policy would amount to exec in every pod that mounts a matched PVC.
#[tokio::test]
async fn hooks_are_refused_in_a_namespace_without_the_admins_label() {
    let Some((cluster, ns)) = setup("hooks-off").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    mount_pod(&ns, "db-0", "data-db-0").await;
    let _operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "hooked", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "hooks": {"pre": {"command": sh("id; cat /etc/hostname")}}}))
        .await
        .expect("policy");
    wait_policy(&ns, "hooked", "Ready=False HooksForbidden", condition_is("Ready", "False", "HooksForbidden")).await;
    let s = status(&ns, "hooked").await;
    let message = s.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains("backup.example.com/hooks=enabled") && !message.contains("uid="), "{message}");
    assert!(support::operator::jobs(&ns, "hooked").await.is_empty(), "no backup without its hooks");
    support::measured(&format!("observed: hooks in a namespace without the admin's label: Ready=False HooksForbidden: {message}"));
    ns.delete().await;
}
