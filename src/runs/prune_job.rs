//! The prune Job of a run: when retention (or deleting a policy with `deletionPolicy: Delete`)
//! drops a run that holds an artifact, the strategy's `plan-prune` frees it first, in the run's own
//! directory; the run's Job is deleted only once the prune Job succeeded.

use k8s_openapi::api::batch::v1::Job;
use kube::Client;

use super::{RunChild, render_child};
use crate::base::names::RunKind;
use crate::error::Result;
use crate::strategy::bindings::types::JobPlan;

pub fn render(child: &RunChild<'_>, plan: &JobPlan) -> Job {
    debug_assert_eq!(child.kind, RunKind::Prune);
    render_child(child, plan)
}

pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<()> {
    super::delete_job(client, namespace, name).await
}
