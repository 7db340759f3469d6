//! The cleanup Job of a policy deleted with `deletionPolicy: Delete`: after every artifact was
//! pruned through the strategy, it removes the policy's directory from the storage claim. Its plan
//! is the host's own (a fixed command, the policy's directory passed in the environment), checked
//! like any other.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;

use crate::base::names::{ANNOTATION_POLICY, RunKind, child_name, label_value, labels};
use crate::error::Result;
use crate::runs::render::{JobContext, render_job};
use crate::strategy::bindings::types::{EnvSource, EnvVar, JobPlan, Mount, PodPrivileges, Resources, Verification};

const SCRIPT: &str = r#"set -eu
rm -rf "/storage/$POLICY_DIR"
[ ! -e "/storage/$POLICY_DIR" ]
echo "removed $POLICY_DIR from the storage claim""#;

pub fn name(policy: &str) -> String {
    child_name(&label_value(policy), "cleanup")
}

pub fn plan(image: &str, policy: &str) -> JobPlan {
    JobPlan {
        image: image.to_owned(),
        command: vec!["/bin/sh".into(), "-c".into(), SCRIPT.into()],
        args: Vec::new(),
        env: vec![EnvVar { name: "POLICY_DIR".into(), source: EnvSource::Value(policy.to_owned()) }],
        mounts: vec![Mount { volume: "backup".into(), path: "/storage".into(), read_only: false }],
        resources: Resources { cpu_millicores: None, memory_bytes: None },
        // Root, to remove files that backups of any owner wrote.
        privileges: PodPrivileges { run_as_root: true, ..PodPrivileges::none() },
        artifact_location: policy.to_owned(),
        verification: Verification::None,
    }
}

/// The Job sees the namespace's directory of the storage claim, and removes only the policy's.
pub fn render(
    namespace: &str,
    policy: &str,
    policy_uid: &str,
    image: &str,
    storage_claim: &str,
    owner: Option<OwnerReference>,
    run_as: Option<crate::api::RunAs>,
) -> Job {
    let ctx = JobContext {
        name: name(policy),
        namespace: namespace.to_owned(),
        labels: labels(policy, policy_uid, None, RunKind::Cleanup),
        annotations: [(ANNOTATION_POLICY.to_owned(), policy.to_owned())].into(),
        data_claim: storage_claim.to_owned(),
        storage_claim: storage_claim.to_owned(),
        secret_env: Vec::new(),
        ca_bundle: None,
        backup_sub_path: namespace.to_owned(),
        owner,
        backoff_limit: 1,
        active_deadline_seconds: Some(600),
        data_writable: false,
        backup_writable: true,
        node: None,
        run_as,
    };
    render_job(&ctx, &plan(image, policy))
}

pub async fn apply(client: &Client, namespace: &str, job: &Job) -> Result<()> {
    super::apply_job(client, namespace, job).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::check::{PlanPolicy, PlanPurpose, check_plan};
    use crate::strategy::bindings::types::Plan;

    #[test]
    fn the_cleanup_plan_passes_the_host_check_and_sees_only_the_namespace() {
        let plan = plan("busybox:latest", "db-backup");
        assert_eq!(check_plan(&Plan::Job(plan), PlanPurpose::Prune, &PlanPolicy::default()), Ok(()));
        let job = render("prod", "db-backup", "uid", "busybox:latest", "backup-storage", None, None);
        let pod = job.spec.and_then(|s| s.template.spec).expect("pod");
        let mount = &pod.containers[0].volume_mounts.as_ref().expect("mounts")[0];
        assert_eq!(mount.sub_path.as_deref(), Some("prod"));
    }
}
