//! Leader election with a `coordination.k8s.io/v1` Lease (kube-lease-manager): of several
//! replicas only the holder of the lease reconciles. A replica that loses the lease exits, so that
//! it restarts as a follower with nothing half-done in memory; one that stops cleanly releases the
//! lease, so the next one takes over at once instead of after the lease expires.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Seconds a lease is valid without renewal: how long a crashed leader blocks the next one.
pub const LEASE_SECONDS: u64 = 15;
/// Extra seconds tolerated for clock skew between replicas.
pub const GRACE_SECONDS: u64 = 2;

pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl Leadership {
    /// Campaigns for the lease `name` in `namespace` as `identity` and returns once it is held.
    pub async fn acquire(client: Client, namespace: &str, name: &str, identity: &str) -> Result<Leadership, String> {
        let manager = LeaseManagerBuilder::new(client, name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(LEASE_SECONDS)
            .with_grace(GRACE_SECONDS)
            .build()
            .await
            .map_err(|e| format!("leader election: {e}"))?;
        let (mut state, task) = manager.watch().await;
        tracing::info!(lease = %format!("{namespace}/{name}"), identity, "waiting for the leader lease");
        while !*state.borrow_and_update() {
            if state.changed().await.is_err() {
                return Err(match task.await {
                    Ok(Err(e)) => format!("leader election stopped: {e}"),
                    _ => "leader election stopped".to_owned(),
                });
            }
        }
        tracing::info!(identity, "holding the leader lease");
        Ok(Leadership { state, task })
    }

    /// Resolves when the lease is lost.
    pub async fn lost(&mut self) {
        loop {
            if !*self.state.borrow_and_update() || self.state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the lease up, so that another replica takes over without waiting for it to expire.
    pub async fn release(self) {
        drop(self.state);
        match self.task.await {
            Ok(Ok(manager)) => {
                if let Err(e) = manager.release().await {
                    tracing::warn!("releasing the leader lease: {e}");
                }
            }
            Ok(Err(e)) => tracing::warn!("leader election: {e}"),
            Err(e) => tracing::warn!("leader election task: {e}"),
        }
    }
}
