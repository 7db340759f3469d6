//! The operator acting for a tenant with the tenant's rights (`--tenant-impersonation`, as the
//! shipped manifests run it), on the real cluster: a tenant who may edit BackupPolicies and
//! BackupRestores but not exec into pods cannot make the operator exec for it; once the
//! namespace's admin grants the `backup` ServiceAccount pods/exec, the hook runs; and a restore
//! whose ServiceAccount may not write its target claim is refused before anything is written.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use backup_operator::api::{BackupRestore, RestorePhase, RunStatus};
use serde_json::json;
use support::operator::*;
use support::{TestCluster, TestNamespace};

/// kubectl as the tenant (`--as` a ServiceAccount of the namespace); stdout, or the error output.
fn as_tenant(cluster: &TestCluster, ns: &TestNamespace, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut child = std::process::Command::new(cluster.kubectl_path())
        .args(["-n", &ns.name, &format!("--as=system:serviceaccount:{}:tenant", ns.name)])
        .args(args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("kubectl");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() { Ok(text(&out.stdout)) } else { Err(format!("{}{}", text(&out.stdout), text(&out.stderr))) }
}

#[tokio::test]
async fn a_tenant_gets_only_what_its_service_accounts_may_do() {
    let Some((cluster, ns)) = setup("tenancy").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "copy", json!({})).await;
    claim(&ns, "backup-storage", json!({})).await;
    mount_pod(&ns, "db-0", "data-db-0").await;
    let k = |args: &[&str]| support::kubectl(&cluster, &[&["-n", ns.name.as_str()][..], args].concat());
    // What the operator may do here: the tenant kit's `backup` ServiceAccount.
    support::kubectl(&cluster, &["apply", "-n", &ns.name, "-k", concat!(env!("CARGO_MANIFEST_DIR"), "/config/tenant")]);
    // The tenant: rights on the backup resources of its namespace, and nothing else.
    k(&["create", "serviceaccount", "tenant"]);
    k(&["create", "role", "tenant", "--verb=get,list,watch,create,update,patch,delete", "--resource=backuppolicies.backup.example.com,backuprestores.backup.example.com"]);
    k(&["create", "rolebinding", "tenant", "--role=tenant", &format!("--serviceaccount={}:tenant", ns.name)]);
    let can_exec = as_tenant(&cluster, &ns, &["auth", "can-i", "create", "pods/exec"], None).unwrap_or_else(|e| e);
    assert_eq!(can_exec.trim(), "no", "the tenant may not exec");

    let _operator = Operator::start_with(&cluster, &ns, &["--tenant-impersonation"]);
    let policy = "apiVersion: backup.example.com/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: hooked\nspec:\n  schedule: \"*/1 * * * *\"\n  pvcSelector:\n    matchLabels:\n      app: db\n  hooks:\n    pre:\n      command: [\"sh\", \"-c\", \"id; cat /etc/hostname\"]\n";
    as_tenant(&cluster, &ns, &["apply", "-f", "-"], Some(policy)).expect("the tenant creates its policy");
    wait_policy(&ns, "hooked", "Ready=False Forbidden", condition_is("Ready", "False", "Forbidden")).await;
    let (_, message) = ready(&status(&ns, "hooked").await);
    assert!(message.contains("pods/exec") && message.contains(&format!("ServiceAccount {}/backup", ns.name)) && !message.contains("uid="), "{message}");
    support::measured(&format!("observed: a tenant without pods/exec, policy with a pre hook: Ready=False Forbidden: {message}"));

    // The namespace's admin lets the backup ServiceAccount exec: the hook runs, as that account.
    k(&["create", "role", "exec", "--verb=create,get", "--resource=pods/exec"]);
    k(&["create", "rolebinding", "exec", "--role=exec", &format!("--serviceaccount={}:backup", ns.name)]);
    let run = poll("a backup after its pre hook ran", LIMIT + std::time::Duration::from_secs(60), || async {
        status(&ns, "hooked").await.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded)
    })
    .await;
    assert!(run.message.contains("pre hook ok"), "{}", run.message);

    // A restore acting as an account that may only read claims: refused before anything is written.
    k(&["create", "serviceaccount", "reader"]);
    k(&["create", "role", "reader", "--verb=get", "--resource=persistentvolumeclaims,configmaps,secrets"]);
    k(&["create", "rolebinding", "reader", "--role=reader", &format!("--serviceaccount={}:reader", ns.name)]);
    let restore = format!(
        "apiVersion: backup.example.com/v1alpha1\nkind: BackupRestore\nmetadata:\n  name: into-copy\nspec:\n  serviceAccountName: reader\n  source:\n    policy: hooked\n    pvc: data-db-0\n    runName: {}\n  target:\n    claimName: copy\n",
        run.job_name
    );
    as_tenant(&cluster, &ns, &["apply", "-f", "-"], Some(&restore)).expect("the tenant creates its restore");
    let done = poll("the restore refused", LIMIT, || async {
        let r = ns.api::<BackupRestore>().get("into-copy").await.ok()?;
        r.status.as_ref()?.phase?.finished().then_some(r)
    })
    .await;
    let status = done.status.clone().unwrap_or_default();
    let condition = status.conditions.first().cloned().expect("condition");
    assert_eq!((status.phase, condition.reason.as_str()), (Some(RestorePhase::Failed), "Forbidden"), "{}", condition.message);
    assert!(condition.message.contains("PersistentVolumeClaim copy") && condition.message.contains("reader"), "{}", condition.message);
    support::measured(&format!("observed: a restore whose ServiceAccount cannot write its target: Failed Forbidden: {}", condition.message));
    let jobs = ns.api::<k8s_openapi::api::batch::v1::Job>().list(&kube::api::ListParams::default().labels("backup.example.com/kind=restore")).await.expect("jobs").items;
    assert!(jobs.is_empty(), "no restore Job");
    ns.delete().await;
}

/// What a tenant writes in a policy cannot name another registry than the allowlist's, nor climb
/// out of its place in a bucket.
#[tokio::test]
async fn images_are_matched_by_reference_and_prefixes_cannot_climb() {
    let Some((cluster, ns)) = setup("hostile-spec").await else { return };
    claim(&ns, "data-db-0", json!({"app": "db"})).await;
    claim(&ns, "backup-storage", json!({})).await;
    // A prefix with `..` is refused at admission, as are `.` and empty segments.
    for prefix in ["../other", "team/../../other", "./x", "a//b"] {
        let spec = json!({
            "schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}},
            "destinations": [{"name": "x", "s3": {"endpoint": "http://s3.example.com:9000", "bucket": "backups", "prefix": prefix, "credentialsSecret": "creds"}}]
        });
        let err = post_raw_policy(&ns, "climbing", spec).await.expect_err(prefix);
        assert!(err.to_string().contains("prefix"), "{prefix}: {err}");
    }
    // `busybox` admits busybox:latest, not the registry host busybox:5000.
    let _operator = Operator::start_with(&cluster, &ns, &["--image-allowlist", "busybox"]);
    create_policy(&ns, "evil", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}, "backupImage": "busybox:5000/evil/pwn:1"})).await.expect("policy");
    create_policy(&ns, "plain", json!({"schedule": "*/1 * * * *", "pvcSelector": {"matchLabels": {"app": "db"}}})).await.expect("policy");
    wait_policy(&ns, "evil", "Ready=False PlanRefused", condition_is("Ready", "False", "PlanRefused")).await;
    let (_, message) = ready(&status(&ns, "evil").await);
    assert!(message.contains("busybox:5000/evil/pwn:1") && message.contains("allowlist"), "{message}");
    support::measured(&format!("observed: backupImage busybox:5000/evil/pwn:1 under --image-allowlist busybox: Ready=False PlanRefused: {message}"));
    poll("a verified backup with busybox:latest under the allowlist", LIMIT + std::time::Duration::from_secs(60), || async {
        status(&ns, "plain").await.backup_history.into_iter().find(|r| r.status == RunStatus::Succeeded && r.verified == Some(true))
    })
    .await;
    assert!(jobs(&ns, "evil").await.is_empty(), "no Job with the refused image");
    let _ = cluster;
    ns.delete().await;
}
