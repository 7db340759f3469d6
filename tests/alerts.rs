//! The shipped alert rules (`config/prometheus/rules.yaml`), tested with promtool (built from
//! Prometheus's Go module by the harness) against the series an operator really exported on the
//! test cluster: a policy backing up to a healthy claim and to an S3 destination whose credentials
//! the server refuses. BackupMissing fires for the S3 copy only, BackupFailing for the policy,
//! OperatorDown not at all (and fires once the operator's series are gone). Also: the
//! PrometheusRule carries the same groups as rules.yaml.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use backup_operator::api::RunStatus;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use serde_json::json;
use support::operator::{Operator, claim, create_policy, poll, setup, status};

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus/rules.yaml");

/// The operator's /metrics, from the address its log says it serves on.
fn scrape(operator: &Operator) -> String {
    let log = operator.log();
    let address = log
        .lines()
        .find(|l| l.contains("serving /metrics"))
        .and_then(|l| l.split("address=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .expect("the operator's metrics address in its log")
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&address).expect("connect to the metrics endpoint");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).expect("a body")
}

/// promtool input series from an exposition: each backup_operator_ sample as it was exported,
/// held for `steps` minutes; a counter starts from 0 a minute before (as it did in the process).
fn input_series(exposition: &str, steps: u32) -> Vec<serde_json::Value> {
    exposition
        .lines()
        .filter(|l| l.starts_with("backup_operator_") && !l.contains("_bucket{") && !l.contains("_created"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let values = if series.contains("_total") { format!("0 {value}+0x{steps}") } else { format!("{value}+0x{steps}") };
            Some(json!({"series": series, "values": values}))
        })
        .collect()
}

fn promtool(test_file: &std::path::Path) -> (bool, String) {
    let out = Command::new(support::cluster_env("PROMTOOL")).args(["test", "rules"]).arg(test_file).output().expect("run promtool");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn the_alert_rules_fire_for_a_failing_off_site_copy_beside_a_healthy_claim() {
    let Some((cluster, ns)) = setup("alerts").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "bad-s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": "nobody", "AWS_SECRET_ACCESS_KEY": "wrong-secret-key"}
    }))
    .expect("secret");
    ns.api::<Secret>().create(&PostParams::default(), &secret).await.expect("create secret");
    let operator = Operator::start(&cluster, &ns);
    create_policy(&ns, "db", json!({
        "schedule": "*/1 * * * *",
        "pvcSelector": {"matchLabels": {"app": "db"}},
        "destinations": [
            {"name": "local", "claim": {"name": "backup-storage"}},
            {"name": "offsite", "s3": {"endpoint": support::cluster_env("S3_ENDPOINT"), "bucket": support::cluster_env("S3_BUCKET"), "prefix": ns.name, "credentialsSecret": "bad-s3"}},
        ],
    }))
    .await
    .expect("policy");
    poll("a backup to the claim and a failed one to S3", Duration::from_secs(300), || async {
        let history = status(&ns, "db").await.backup_history;
        let ok = history.iter().any(|r| r.destination.as_deref() == Some("local") && r.status == RunStatus::Succeeded);
        let failed = history.iter().any(|r| r.destination.as_deref() == Some("offsite") && r.status == RunStatus::Failed);
        (ok && failed).then_some(())
    })
    .await;
    // The refused copy's run says why first, in the user's words, then the tool's own output.
    let failed = status(&ns, "db").await.backup_history.into_iter().find(|r| r.destination.as_deref() == Some("offsite") && r.status == RunStatus::Failed).expect("failed run");
    assert!(failed.message.contains("destination offsite: the S3 server"), "the cause first: {}", failed.message);
    support::measured(&format!("alerts: a refused S3 copy's run message: {}", failed.message));
    // The reconcile after the outcomes sets the series; scrape once both targets have theirs.
    let exposition = poll("the per-destination series", Duration::from_secs(60), || async {
        let text = scrape(&operator);
        (text.contains("destination=\"offsite\"") && text.contains("backup_operator_last_successful_backup_timestamp_seconds{")).then_some(text)
    })
    .await;
    let series = input_series(&exposition, 40);
    assert!(series.len() > 5, "{exposition}");

    let labels = |destination: &str| json!({"severity": "critical", "namespace": ns.name, "policy": "db", "pvc": "data-db-0", "destination": destination});
    let test = json!({
        "rule_files": [RULES],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "BackupMissing", "exp_alerts": [{
                        "exp_labels": labels("offsite"),
                        "exp_annotations": {
                            "summary": format!("no successful backup of {}/data-db-0 to destination \"offsite\" by policy db", ns.name),
                            "runbook": "docs/runbooks.md#backupmissing"
                        }
                    }]},
                    {"eval_time": "20m", "alertname": "BackupFailing", "exp_alerts": [{
                        "exp_labels": {"severity": "warning", "namespace": ns.name, "policy": "db"},
                        "exp_annotations": {
                            "summary": format!("backups of policy {}/db failed in the last hour", ns.name),
                            "runbook": "docs/runbooks.md#backupfailing"
                        }
                    }]},
                    {"eval_time": "20m", "alertname": "OperatorDown", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "PruneFailing", "exp_alerts": []}
                ]
            },
            {
                // Without any series of the operator (it is down, or not scraped).
                "interval": "1m",
                "input_series": [{"series": "up{job=\"other\"}", "values": "1+0x30"}],
                "alert_rule_test": [{"eval_time": "20m", "alertname": "OperatorDown", "exp_alerts": [{
                    "exp_labels": {"severity": "critical"},
                    "exp_annotations": {"summary": "no backup-operator replica is leading: no backups are running", "runbook": "docs/runbooks.md#operatordown"}
                }]}]
            }
        ]
    });
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().expect("temp file");
    std::fs::write(file.path(), serde_yaml::to_string(&test).expect("yaml")).expect("write test");
    let (ok, output) = promtool(file.path());
    assert!(ok, "promtool test rules:\n{output}\nseries:\n{exposition}");
    support::measured(&format!(
        "alerts: promtool passed on {} series the operator exported (claim copy healthy, S3 copy refused): BackupMissing for destination offsite only, BackupFailing for the policy, OperatorDown silent and firing without the operator's series",
        series.len()
    ));
    drop(operator);
    ns.delete().await;
}

/// The PrometheusRule for the Prometheus operator carries rules.yaml's groups.
#[test]
fn the_prometheus_rule_carries_the_tested_rules() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/prometheus");
    let rules: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(root.join("rules.yaml")).expect("rules")).expect("yaml");
    let resource: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(root.join("prometheusrule.yaml")).expect("rule")).expect("yaml");
    assert_eq!(resource["spec"]["groups"], rules["groups"], "config/prometheus/prometheusrule.yaml differs from rules.yaml");
    let names: BTreeMap<String, ()> = rules["groups"][0]["rules"].as_sequence().expect("rules").iter().filter_map(|r| Some((r["alert"].as_str()?.to_owned(), ()))).collect();
    for alert in ["BackupMissing", "BackupFailing", "VerificationFailed", "PruneFailing", "OperatorDown", "RestoreFailed"] {
        assert!(names.contains_key(alert), "{alert} in rules.yaml");
    }
}
