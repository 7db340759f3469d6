//! The operator's work once it leads: the shared watches, then the policy and restore
//! controllers side by side (neither knows the other).

use std::sync::Arc;

use futures::StreamExt;

use crate::context::Context;
use crate::error::Result;

/// Runs the controllers until SIGTERM/SIGINT. Every watch retries with backoff: an API that goes
/// away (a CRD deleted) is retried calmly, never in a hot loop. Fails only when the watches cannot
/// start, so that the process exits with an error and is restarted.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    // One watch per kind of object, shared by the stores reconciles read and the triggers.
    let (caches, triggers) = crate::platform::cache::start(&ctx.client, ctx.namespace.as_deref(), ctx.snapshots_api, ctx.restores_api)?;
    caches.ready().await?;
    let _ = ctx.caches.set(caches.clone());
    let policies = crate::policy::watch::run(ctx.clone(), caches, triggers.policy);
    match triggers.restore.restores {
        Some(restores) => {
            futures::join!(policies, crate::restore::run(ctx.clone(), triggers.restore.jobs, restores));
        }
        None => {
            tracing::warn!("the BackupRestore CRD is not installed: restores are off until it is (kubectl apply -k config/crd) and the operator restarts");
            // The restore Jobs' watch is shared: keep it drained.
            tokio::spawn(triggers.restore.jobs.for_each(|_| async {}));
            policies.await;
        }
    }
    Ok(())
}
