//! Smoke test of the local test cluster: a StatefulSet with volumeClaimTemplates binds and runs,
//! its pods write files, and a Job archives one PVC onto a `backup-storage` claim. The archive is
//! then read on the host's disk and must list exactly the files the pod wrote.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::PostParams;
use kube::runtime::conditions;
use kube::Api;
use serde_json::json;

use support::{wait_condition, TestNamespace};

const LIMIT: Duration = Duration::from_secs(180);

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

async fn create_pvc(ns: &TestNamespace, name: &str) {
    let pvc: PersistentVolumeClaim = from_json(json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}
    }));
    ns.api::<PersistentVolumeClaim>().create(&PostParams::default(), &pvc).await.expect("create pvc");
}

async fn wait_bound(ns: &TestNamespace, name: &str) -> String {
    let api = ns.api::<PersistentVolumeClaim>();
    wait_condition(api.clone(), name, &format!("pvc {name} Bound"), LIMIT, |o: Option<&PersistentVolumeClaim>| {
        o.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Bound")
    })
    .await;
    api.get(name).await.expect("get pvc").spec.and_then(|s| s.volume_name).expect("bound pvc names its volume")
}

/// The directory on this machine's disk that backs a hostPath-provisioned volume.
async fn host_path_of(client: &kube::Client, pv_name: &str) -> std::path::PathBuf {
    let pv = Api::<PersistentVolume>::all(client.clone()).get(pv_name).await.expect("get pv");
    let path = pv.spec.and_then(|s| s.host_path).map(|h| h.path).expect("hostPath volume");
    std::path::PathBuf::from(path)
}

#[tokio::test]
async fn statefulset_pvcs_bind_and_a_job_archives_one_onto_backup_storage() {
    let Some(cluster) = support::cluster().await else { return };
    let ns = cluster.namespace("smoke").await;

    // Each pod writes a small tree that names it, then marks itself ready.
    let sts: StatefulSet = from_json(json!({
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 2,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "db",
                        "image": "busybox:latest",
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c",
                            "mkdir -p /data/sub && echo \"row of $HOSTNAME\" > /data/table.txt && \
                             echo nested > /data/sub/nested.txt && touch /data/ready && exec sleep 3600"],
                        "readinessProbe": {"exec": {"command": ["test", "-f", "/data/ready"]}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                    }]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}
            }]
        }
    }));
    ns.api::<StatefulSet>().create(&PostParams::default(), &sts).await.expect("create statefulset");
    wait_condition(ns.api::<StatefulSet>(), "db", "statefulset db with 2 ready replicas", LIMIT, |o: Option<&StatefulSet>| {
        o.and_then(|s| s.status.as_ref()?.ready_replicas) == Some(2)
    })
    .await;
    for claim in ["data-db-0", "data-db-1"] {
        wait_bound(&ns, claim).await;
    }

    create_pvc(&ns, "backup-storage").await;
    let backup_pv = wait_bound(&ns, "backup-storage").await;

    let job: Job = from_json(json!({
        "metadata": {"name": "backup-db-0"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "tar",
                    "image": "busybox:latest",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["tar", "czf", "/backup/x.tar.gz", "-C", "/data", "."],
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data", "readOnly": true},
                        {"name": "backup", "mountPath": "/backup"}
                    ]
                }],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0", "readOnly": true}},
                    {"name": "backup", "persistentVolumeClaim": {"claimName": "backup-storage"}}
                ]
            }}
        }
    }));
    ns.api::<Job>().create(&PostParams::default(), &job).await.expect("create job");
    wait_condition(ns.api::<Job>(), "backup-db-0", "job backup-db-0 complete", LIMIT, conditions::is_job_completed()).await;
    let job = ns.api::<Job>().get("backup-db-0").await.expect("get job");
    assert_eq!(job.status.and_then(|s| s.succeeded), Some(1), "the tar job succeeded");

    // Read the archive where it landed on this machine's disk.
    let archive = host_path_of(&cluster.client, &backup_pv).await.join("x.tar.gz");
    let listing = Command::new("tar").arg("tzf").arg(&archive).output().expect("run tar");
    assert!(listing.status.success(), "tar tzf {}: {}", archive.display(), String::from_utf8_lossy(&listing.stderr));
    let listed: BTreeSet<String> = String::from_utf8_lossy(&listing.stdout).lines().map(str::to_owned).collect();
    let written: BTreeSet<String> =
        ["./", "./ready", "./sub/", "./sub/nested.txt", "./table.txt"].into_iter().map(str::to_owned).collect();
    assert_eq!(listed, written, "the archive lists exactly what pod db-0 wrote");

    let content = Command::new("tar").arg("xzOf").arg(&archive).arg("./table.txt").output().expect("run tar");
    assert_eq!(String::from_utf8_lossy(&content.stdout), "row of db-0\n", "the archive holds db-0's data, not db-1's");

    ns.delete().await;
}
