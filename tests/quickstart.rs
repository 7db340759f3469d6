//! The README's quick start, verbatim: every line of its shell block runs as written (from the
//! repository's root, with the test cluster's kubectl and a kubeconfig whose current namespace is
//! this test's), with the operator running, until the policy's Jobs are listed by the README's own
//! label queries and its status shows the first backup.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::operator::{Operator, crd_lock, poll, setup};

/// The command lines of the shell block under "## Quick start" (comments stripped).
fn quick_start_lines(readme: &str) -> Vec<String> {
    let section = readme.split("## Quick start").nth(1).expect("a Quick start section");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("a sh block");
    block.lines().map(|l| l.split(" #").next().unwrap_or(l).trim().to_owned()).filter(|l| !l.is_empty()).collect()
}

#[tokio::test]
async fn the_readme_quick_start_runs_verbatim() {
    let Some((cluster, ns)) = setup("quickstart").await else { return };
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let lines = quick_start_lines(&readme);
    assert!(lines.iter().any(|l| l.starts_with("kubectl get jobs -l backup-policy=db-backup")), "{lines:?}");
    // A kubeconfig of the test cluster whose current namespace is this test's.
    let mut config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&cluster.kubeconfig).expect("kubeconfig")).expect("yaml");
    config["contexts"][0]["context"]["namespace"] = serde_yaml::Value::String(ns.name.clone());
    let kubeconfig = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(kubeconfig.path(), serde_yaml::to_string(&config).expect("yaml")).expect("write kubeconfig");
    let kubectl_dir = cluster.kubectl_path().parent().expect("kubectl's directory").to_path_buf();
    let path = format!("{}:{}", kubectl_dir.display(), std::env::var("PATH").unwrap_or_default());
    let run = |line: &str| -> String {
        let out = Command::new("sh")
            .args(["-c", line])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("KUBECONFIG", kubeconfig.path())
            .env("PATH", &path)
            .output()
            .expect("run the line");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "`{line}` failed: {text}");
        text
    };
    let _operator = Operator::start(&cluster, &ns);
    // Apply lines first (the CRD one under the tests' CRD lock), then wait for the first backup,
    // then every line again, the queries now answering with the runs.
    for line in lines.iter().filter(|l| l.contains(" apply ")) {
        let _lock = line.contains("config/crd").then(crd_lock);
        run(line);
    }
    let jobs = poll("the first backup Job of the quick start", Duration::from_secs(240), || async {
        let out = run("kubectl get jobs -l backup-policy=db-backup,pvc=data-db-0 -o name");
        (!out.trim().is_empty()).then_some(out)
    })
    .await;
    poll("the status of the first backup", Duration::from_secs(180), || async {
        let out = run("kubectl get bp db-backup -o jsonpath='{.status}'");
        out.contains("lastSuccessfulTime").then_some(())
    })
    .await;
    let mut shown = Vec::new();
    for line in lines.iter().filter(|l| !l.contains(" apply ")) {
        shown.push(format!("$ {line}\n{}", run(line)));
    }
    let all = shown.join("\n");
    assert!(all.contains("db-backup"), "{all}");
    support::measured(&format!("README quick start, verbatim: {} lines ran; first Job {}", lines.len(), jobs.trim()));
    ns.delete().await;
}

#[test]
fn the_quick_start_block_is_read() {
    let lines = quick_start_lines("x\n## Quick start\n\ntext\n```yaml\na: b\n```\n```sh\nkubectl apply -f x.yaml   # a comment\n\nkubectl get bp\n```\n## Next\n```sh\nno\n```");
    assert_eq!(lines, vec!["kubectl apply -f x.yaml".to_owned(), "kubectl get bp".to_owned()]);
}
