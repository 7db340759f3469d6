//! Webhook notifications on the real cluster: a receiver pod (busybox httpd with a CGI script that
//! records every request) gets exactly one notification per run and event in each format, also
//! when it was down while the run finished and the operator restarted meanwhile; internal
//! addresses are refused with a condition and nothing is sent to them.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use serde_json::{Value, json};
use support::operator::{LIMIT, Operator, claim, claim_dir, condition_is, create_policy, event_reasons, poll, setup, status, wait_policy};
use support::webhook::{about, counts, received, start_receiver, target, url_secret};

const FORMATS: [&str; 3] = ["generic", "slack", "cloudevents"];

#[tokio::test]
async fn each_run_is_notified_once_per_format_even_after_the_receiver_was_down() {
    let Some((cluster, ns)) = setup("notify").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    std::fs::write(claim_dir(&ns, "data-db-0").await.join("rows"), b"1\n2\n").expect("data");
    let ip = start_receiver(&ns).await;
    for format in FORMATS {
        url_secret(&ns, &format!("hook-{format}"), &format!("http://{ip}:8080/cgi-bin/record?format={format}")).await;
    }
    // The receiver is a pod: an internal address, allowed by the operator's flag.
    let allow = format!("--notification-allow-cidr={ip}/32");
    let operator = Operator::start_with(&cluster, &ns, &[&allow]);
    let kinds = [("generic", "Generic"), ("slack", "Slack"), ("cloudevents", "CloudEvents")];
    let targets: Vec<Value> = kinds.iter().map(|(f, kind)| target(f, &format!("hook-{f}"), kind, &["Succeeded", "Failed"])).collect();
    create_policy(&ns, "db", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "notifications": targets
    }))
    .await
    .expect("policy");
    // A run that cannot start: its image does not exist (failed after startTimeoutSeconds).
    let failed_targets: Vec<Value> = kinds.iter().map(|(f, kind)| target(f, &format!("hook-{f}"), kind, &["Failed"])).collect();
    create_policy(&ns, "broken", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupImage": "no-such-image:0",
        "startTimeoutSeconds": 10, "notifications": failed_targets
    }))
    .await
    .expect("policy");
    wait_policy(&ns, "db", "Notifications=True", condition_is("Notifications", "True", "Configured")).await;

    // The first success, in all three formats; the broken policy's failure.
    let (ok_run, all) = poll("a successful run notified in every format and a failed one", LIMIT * 3, || async {
        let all = received(&ip)?;
        let c = counts(&all);
        let ok_run = c.keys().find(|(f, r, e)| f == "generic" && e == "Succeeded" && r.starts_with("db-")).map(|(_, r, _)| r.clone())?;
        let every_format = FORMATS.iter().all(|f| c.contains_key(&(f.to_string(), ok_run.clone(), "Succeeded".into())));
        let failed_run = c.keys().find(|(f, r, e)| f == "generic" && e == "Failed" && r.starts_with("broken-")).map(|(_, r, _)| r.clone())?;
        let failed_every_format = FORMATS.iter().all(|f| c.contains_key(&(f.to_string(), failed_run.clone(), "Failed".into())));
        (every_format && failed_every_format).then_some((ok_run, all))
    })
    .await;
    let generic = all.iter().find(|r| r.format == "generic" && about(r) == (ok_run.clone(), "Succeeded".into())).expect("generic");
    for field in ["namespace", "policy", "pvc", "run", "scheduledTime", "time", "result", "message", "artifact", "sizeBytes", "sha256"] {
        assert!(!generic.body[field].is_null(), "the generic notification lacks {field}: {}", generic.body);
    }
    assert_eq!((generic.body["policy"].as_str(), generic.body["pvc"].as_str()), (Some("db"), Some("data-db-0")));
    assert_eq!(generic.content_type, "application/json");
    let completed = status(&ns, "db").await.backup_history.into_iter().find(|r| r.job_name == ok_run).and_then(|r| r.completion_time).expect("completion time");
    support::measured(&format!(
        "notification latency: run {ok_run} completed -> received by the webhook in {} s (1 s resolution)",
        generic.arrived - completed.0.as_second()
    ));
    // The broken policy's failures come in the same formats: pick the successful run's.
    let ce = all.iter().find(|r| r.format == "cloudevents" && about(r) == (ok_run.clone(), "Succeeded".into())).expect("cloudevent");
    assert_eq!(ce.content_type, "application/cloudevents+json; charset=utf-8");
    assert_eq!((ce.body["specversion"].as_str(), ce.body["type"].as_str()), (Some("1.0"), Some("com.example.backup.succeeded")));
    let slack = all.iter().find(|r| r.format == "slack" && about(r) == (ok_run.clone(), "Succeeded".into())).expect("slack");
    assert!(slack.body["text"].as_str().is_some_and(|t| t.contains(&format!("backup {}/db data-db-0, run {ok_run}: Succeeded", ns.name))), "{}", slack.body);
    let failed = all.iter().find(|r| r.format == "generic" && r.body["policy"] == "broken").expect("failure");
    assert_eq!(failed.body["event"], "Failed");
    assert!(failed.body["message"].as_str().unwrap_or_default().contains("no-such-image"), "{}", failed.body);

    // The receiver goes down; the next run finishes meanwhile; it comes back and gets it once.
    support::kubectl(&cluster, &["-n", &ns.name, "exec", "receiver", "--", "touch", "/tmp/down"]);
    poll("the receiver down", LIMIT, || async { received(&ip).is_none().then_some(()) }).await;
    let next = poll("a run of db finished while the receiver is down", LIMIT * 3, || async {
        let history = status(&ns, "db").await.backup_history;
        let known = |name: &str| name == ok_run || counts(&all).keys().any(|(_, r, _)| r == name);
        history.into_iter().find(|r| r.status == backup_operator::api::RunStatus::Succeeded && !known(&r.job_name)).map(|r| r.job_name)
    })
    .await;
    poll("a failed delivery attempt for that run", LIMIT * 2, || async {
        operator.log().lines().any(|l| l.contains("notification attempt failed") && l.contains(&next)).then_some(())
    })
    .await;
    // The operator stops while the delivery is pending: its Job says so, and the next operator
    // delivers it (the same event id).
    operator.kill();
    let pending = "notification-pending.backup.example.com/Succeeded";
    let job = ns.api::<Job>().get(&next).await.expect("the run's Job");
    assert!(job.annotations().contains_key(pending), "the undelivered notification is recorded on {next}: {:?}", job.annotations());
    let operator = Operator::start_with(&cluster, &ns, &[&allow]);
    poll("the restarted operator retrying that run's notification", LIMIT * 2, || async {
        operator.log().lines().any(|l| l.contains("notification attempt failed") && l.contains(&next)).then_some(())
    })
    .await;
    support::kubectl(&cluster, &["-n", &ns.name, "exec", "receiver", "--", "rm", "/tmp/down"]);
    poll("that run notified after the receiver came back", Duration::from_secs(300), || async {
        let c = counts(&received(&ip)?);
        FORMATS.iter().all(|f| c.contains_key(&(f.to_string(), next.clone(), "Succeeded".into()))).then_some(())
    })
    .await;
    poll("the pending mark removed once every target got it", LIMIT, || async {
        let job = ns.api::<Job>().get(&next).await.ok()?;
        (!job.annotations().contains_key(pending)).then_some(())
    })
    .await;
    // Exactly once per run, event and format: the first run (several reconciles and later runs
    // have passed since) and the one delivered late, across a restart.
    let after = counts(&received(&ip).expect("receiver up"));
    for f in FORMATS {
        for run in [&ok_run, &next] {
            assert_eq!(after.get(&(f.to_string(), run.clone(), "Succeeded".into())), Some(&1), "{f} {run}: {after:?}");
        }
    }
    assert!(after.values().all(|n| *n == 1), "a duplicate: {after:?}");

    // A restarted operator sees every earlier outcome as recorded: nothing is sent again.
    operator.kill();
    let restarted = Operator::start_with(&cluster, &ns, &[&allow]);
    let before: std::collections::BTreeSet<String> = after.keys().map(|(_, r, _)| r.clone()).collect();
    poll("a run after the restart notified", LIMIT * 3, || async {
        let c = counts(&received(&ip)?);
        c.keys().any(|(f, r, e)| f == "generic" && e == "Succeeded" && !before.contains(r)).then_some(())
    })
    .await;
    let final_counts = counts(&received(&ip).expect("receiver up"));
    assert!(final_counts.values().all(|n| *n == 1), "a duplicate after the restart: {final_counts:?}");
    drop(restarted);
    ns.delete().await;
}

#[tokio::test]
async fn internal_addresses_are_refused_and_nothing_is_sent() {
    let Some((cluster, ns)) = setup("notify-refused").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    // A listener on the operator's own loopback: it must never see a connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    url_secret(&ns, "loopback", &format!("http://127.0.0.1:{port}/hook")).await;
    url_secret(&ns, "metadata", "http://169.254.169.254/latest/meta-data/").await;
    let kubeconfig = kube::config::Kubeconfig::read_from(&cluster.kubeconfig).expect("kubeconfig");
    let api_server = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("kubeconfig").cluster_url.to_string();
    url_secret(&ns, "apiserver", &format!("{}/api/v1/namespaces/kube-system/secrets", api_server.trim_end_matches('/'))).await;
    // IPv4 inside IPv6 (NAT64, 6to4, IPv4-compatible) and a name with a trailing dot and capitals.
    url_secret(&ns, "nat64", &format!("http://[64:ff9b::7f00:1]:{port}/hook")).await;
    url_secret(&ns, "sixtofour", "http://[2002:a00:1::1]/hook").await;
    url_secret(&ns, "compatible", "http://[::a00:1]/hook").await;
    url_secret(&ns, "dotted", &format!("http://LOCALHOST.:{port}/hook")).await;
    let _operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "db", json!({
        "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}},
        "notifications": [target("loopback", "loopback", "Generic", &["Succeeded"]), target("metadata", "metadata", "Slack", &["Succeeded"]),
                          target("apiserver", "apiserver", "CloudEvents", &["Succeeded"])]
    }))
    .await
    .expect("policy");
    // (Two targets a policy, so that each condition message holds them whole.)
    for (policy, targets) in [("forms-a", ["nat64", "sixtofour"]), ("forms-b", ["compatible", "dotted"])] {
        create_policy(&ns, policy, json!({
            "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}},
            "notifications": targets.iter().map(|t| target(t, t, "Generic", &["Succeeded"])).collect::<Vec<_>>()
        }))
        .await
        .expect("policy");
    }
    wait_policy(&ns, "db", "Notifications=False NotificationRefused", condition_is("Notifications", "False", "NotificationRefused")).await;
    let message = status(&ns, "db").await.conditions.into_iter().find(|c| c.type_ == "Notifications").map(|c| c.message).unwrap_or_default();
    // This cluster's API server listens on loopback: the more specific reason is given.
    for expected in ["target loopback: 127.0.0.1 resolves to 127.0.0.1, an address of the Kubernetes API server or a denied range", "--notification-allow-cidr=127.0.0.1/32", "target metadata: 169.254.169.254", "link-local", "target apiserver: 127.0.0.1"] {
        assert!(message.contains(expected), "{expected:?} not in {message:?}");
    }
    for (policy, expected) in [
        ("forms-a", ["target nat64: 64:ff9b::7f00:1 resolves to 64:ff9b::7f00:1, an IPv6 form of 127.0.0.1", "target sixtofour: 2002:a00:1::1 resolves to 2002:a00:1::1, an IPv6 form of 10.0.0.1, a private address"]),
        ("forms-b", ["target compatible: ::a00:1 resolves to ::a00:1, an IPv6 form of 10.0.0.1", "target dotted: localhost resolves to"]),
    ] {
        wait_policy(&ns, policy, "Notifications=False NotificationRefused", condition_is("Notifications", "False", "NotificationRefused")).await;
        let message = status(&ns, policy).await.conditions.into_iter().find(|c| c.type_ == "Notifications").map(|c| c.message).unwrap_or_default();
        for expected in expected {
            assert!(message.contains(expected), "{expected:?} not in {message:?}");
        }
        support::measured(&format!("observed: webhooks to IPv6 forms of internal addresses ({policy}): Notifications=False NotificationRefused: {message}"));
    }
    // The run succeeds (notifications never hold a run), its notifications are refused at
    // delivery too (an event), and nothing reached the listener.
    poll("a successful run", LIMIT * 2, || async {
        status(&ns, "db").await.backup_history.into_iter().find(|r| r.status == backup_operator::api::RunStatus::Succeeded)
    })
    .await;
    event_reasons(&cluster, &ns, "db", &["NotificationRefused"]).await;
    assert!(listener.accept().is_err(), "the loopback listener got a connection");
    ns.delete().await;
}

