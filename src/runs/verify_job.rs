//! The verify Job of a run (`spec.verify`): the strategy's `plan-verify` re-reads the artifact,
//! read-only, in the run's own directory. Its outcome is recorded on the run's Job, then the
//! verify Job is deleted.

use k8s_openapi::api::batch::v1::Job;
use kube::Client;

use super::{RunChild, render_child};
use crate::base::names::RunKind;
use crate::error::Result;
use crate::strategy::bindings::types::JobPlan;

pub fn render(child: &RunChild<'_>, plan: &JobPlan) -> Job {
    debug_assert_eq!(child.kind, RunKind::Verify);
    render_child(child, plan)
}

pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<()> {
    super::delete_job(client, namespace, name).await
}
