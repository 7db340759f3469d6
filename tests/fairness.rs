//! One tenant cannot slow another's shared work, on the real cluster, with one operator watching
//! both namespaces (as the cluster-wide install does) and acting as each tenant's ServiceAccount
//! (`--tenant-impersonation`): in the noisy namespace, four policies whose plugins are slow to
//! compile within the shape limits (then unusable), and four whose runs are
//! refused every minute, each refusal notified to six webhook targets that hold every connection
//! without answering; in the quiet namespace, a policy with a new
//! plugin of its own and a receiver that answers. The quiet plugin is compiled as soon as the
//! noisy compile under way when it asked ends (first come, first served would put it behind all
//! four), and the quiet
//! receiver gets each of its runs' notifications while the noisy deliveries are still being
//! retried (a delivery holding its slot through its retries would keep it waiting for minutes).

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::operator::{AllNamespacesOperator, LIMIT, claim, create_policy, plugin_configmap, poll, setup, status};
use support::webhook::{about, counts, received, start_receiver, target, url_secret};

/// Accepts every connection and never answers (a CGI script that sleeps): every delivery attempt
/// to it waits for its timeout.
const SINK: &str = r#"mkdir -p /www/cgi-bin
printf '#!/bin/sh\nexec sleep 3600\n' > /www/cgi-bin/hang
chmod +x /www/cgi-bin/hang
exec httpd -f -p 8080 -h /www"#;

/// A component with a custom section appended: the same code, a digest of its own for this test
/// run (`tag`) and `n` (the operators' compile cache remembers earlier runs' compiles).
fn version(bytes: &[u8], tag: &str, n: u8) -> Vec<u8> {
    let mut v = bytes.to_vec();
    let name = format!("v{tag}{n}");
    v.extend_from_slice(&[0, name.len() as u8 + 2, name.len() as u8]);
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    v
}

/// Whether a log line is about `tenant`'s compile slot.
fn of_tenant(line: &str, tenant: &str) -> bool {
    line.contains(&format!("tenant=\"{tenant}\""))
}

/// How many of `tenant`'s compiles had started before the first line about `other` matching `what`.
fn started_before(log: &str, tenant: &str, other: &str, what: &str) -> usize {
    log.lines()
        .take_while(|l| !(l.contains(what) && of_tenant(l, other)))
        .filter(|l| l.contains("compiling plugin") && of_tenant(l, tenant))
        .count()
}

#[tokio::test]
async fn a_noisy_tenant_delays_neither_another_tenants_compiles_nor_its_notifications() {
    let Some((cluster, noisy)) = setup("noisy").await else { return };
    let quiet = cluster.namespace("quiet").await;
    for ns in [&noisy, &quiet] {
        support::kubectl(&cluster, &["apply", "-n", &ns.name, "-k", concat!(env!("CARGO_MANIFEST_DIR"), "/config/tenant")]);
    }
    claim(&noisy, "data-a-0", json!({"app": "a"})).await;
    claim(&noisy, "backup-storage", json!({})).await;
    claim(&quiet, "data-db-0", json!({"app": "db"})).await;
    claim(&quiet, "backup-storage", json!({})).await;

    // The noisy tenant's webhook sink, and the quiet tenant's receiver.
    let sink: Pod = serde_json::from_value(json!({
        "metadata": {"name": "sink"},
        "spec": {"containers": [{"name": "nc", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent", "command": ["/bin/sh", "-c", SINK]}],
                 "terminationGracePeriodSeconds": 0}
    }))
    .expect("pod");
    noisy.api::<Pod>().create(&PostParams::default(), &sink).await.expect("sink pod");
    support::wait_condition(noisy.api::<Pod>(), "sink", "sink running", LIMIT, kube::runtime::conditions::is_pod_running()).await;
    let sink_ip = noisy.api::<Pod>().get("sink").await.expect("sink").status.and_then(|s| s.pod_ip).expect("sink IP");
    let ip = start_receiver(&quiet).await;
    url_secret(&noisy, "sink", &format!("http://{sink_ip}:8080/cgi-bin/hang")).await;
    url_secret(&quiet, "hook", &format!("http://{ip}:8080/cgi-bin/record?format=generic")).await;

    // The noisy plugins: half a MiB of 9,500 small functions each (within the limits; 7 s to
    // compile in a debug build's child on an idle machine), four digests.
    let slow = support::components::component(9_500, 4, 12);
    for n in 0..4u8 {
        plugin_configmap(&noisy, &format!("bomb-{n}"), &version(&slow, &noisy.name, n)).await;
    }
    // The quiet plugin: the tar strategy as a custom plugin (a digest of its own, so compiled).
    plugin_configmap(&quiet, "mine", &version(backup_operator::strategy::builtin::BuiltinStrategy::Tar.wasm(), &quiet.name, 1)).await;

    let allow_sink = format!("--notification-allow-cidr={sink_ip}/32");
    let allow_receiver = format!("--notification-allow-cidr={ip}/32");
    let operator = AllNamespacesOperator::start(
        &cluster,
        &noisy,
        &[&noisy.name, &quiet.name],
        &["--tenant-impersonation", "--reconcile-concurrency", "8", "--image-allowlist", "busybox", &allow_sink, &allow_receiver],
    );
    // Runs refused every minute (an image outside the allowlist; no pod is made), each refusal
    // notified to six targets that never answer.
    let sinks: Vec<Value> = (0..6).map(|t| target(&format!("sink-{t}"), "sink", "Generic", &["PluginFailed", "Failed"])).collect();
    for n in 0..4 {
        create_policy(&noisy, &format!("refused-{n}"), json!({
            "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "a"}}, "backupImage": "evil.example.com/pwn:1",
            "notifications": sinks
        }))
        .await
        .expect("noisy policy");
    }
    for n in 0..4 {
        create_policy(&noisy, &format!("bomb-{n}"), json!({
            "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "a"}}, "backupStrategy": "custom",
            "plugin": {"configMapRef": {"name": format!("bomb-{n}"), "key": "plugin.wasm"}}
        }))
        .await
        .expect("noisy policy");
    }
    // Every noisy plugin waits for the compile slot (one compiles) before the quiet one is asked for.
    poll("the four noisy plugins queued for compiling", LIMIT * 2, || async {
        let log = operator.log();
        let queued = log.lines().filter(|l| l.contains("waiting for a compile slot") && l.contains(&noisy.name)).count();
        (queued >= 4).then_some(())
    })
    .await;
    create_policy(&quiet, "db", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupStrategy": "custom",
        "plugin": {"configMapRef": {"name": "mine", "key": "plugin.wasm"}},
        "notifications": [target("mine", "hook", "Generic", &["Succeeded", "Failed"])]
    }))
    .await
    .expect("quiet policy");
    let log = poll("the quiet plugin compiled", LIMIT * 2, || async {
        let log = operator.log();
        log.lines().any(|l| l.contains("plugin compiled") && of_tenant(l, &quiet.name)).then_some(log)
    })
    .await;
    // The compile slot, when it freed, went to the quiet tenant first: it waited for the noisy
    // compile under way when it asked, not for the noisy ones queued before it.
    let under_way = started_before(&log, &noisy.name, &quiet.name, "waiting for a compile slot");
    let before = started_before(&log, &noisy.name, &quiet.name, "compiling plugin");
    let seconds: Vec<&str> = log.lines().filter(|l| l.contains("plugin compiled") || l.contains("plugin not compiled")).filter_map(|l| l.rsplit("seconds=").next()).collect();
    support::measured(&format!(
        "observed: four noisy plugins queued for the compile slot; the quiet tenant's asked when {under_way} noisy compiles had started and was compiled after {before} (compile seconds, built-ins first: {})",
        seconds.join(", ")
    ));
    assert!(under_way < 4, "the quiet plugin was asked for before the noisy ones were all compiled");
    assert_eq!(before, under_way, "the quiet tenant's plugin waited for noisy compiles queued before it");

    // Two of the quiet policy's runs notified while the noisy deliveries are still being retried.
    let runs = poll("two quiet runs notified", LIMIT * 4, || async {
        let c = counts(&received(&ip)?);
        let runs: Vec<String> = c.keys().filter(|(_, r, e)| e == "Succeeded" && r.starts_with("db-")).map(|(_, r, _)| r.clone()).collect();
        (runs.len() >= 2).then_some(runs)
    })
    .await;
    let noisy_events = support::kubectl(&cluster, &["-n", &noisy.name, "get", "events", "-o", "jsonpath={.items[*].reason}"]);
    let log = operator.log();
    let noisy_attempts = log.lines().filter(|l| l.contains("notification attempt failed") && l.contains(&noisy.name)).count();
    assert!(noisy_attempts > 0, "the noisy targets were tried");
    assert!(
        !noisy_events.contains("NotificationFailed"),
        "a noisy delivery ran out of attempts before the quiet tenant's notifications arrived: the quiet ones waited for it"
    );
    let all = received(&ip).expect("receiver up");
    let history = status(&quiet, "db").await.backup_history;
    let mut latencies = Vec::new();
    for run in &runs {
        let completed = history.iter().find(|r| &r.job_name == run).and_then(|r| r.completion_time.clone()).expect("completion time");
        let arrived = all.iter().find(|r| about(r) == (run.clone(), "Succeeded".into())).map(|r| r.arrived).expect("received");
        latencies.push(arrived - completed.0.as_second());
    }
    support::measured(&format!(
        "observed: 24 noisy webhook targets that never answer ({noisy_attempts} failed attempts so far); the quiet receiver got runs {runs:?} {latencies:?} s after they completed (1 s resolution)"
    ));
    drop(operator);
    quiet.delete().await;
    noisy.delete().await;
}
