//! Runs first. In a minute when many policies are due, the API server is the bottleneck: every
//! policy's run costs a Job, a status write and an event, and the Job controller adds a pod per
//! Job. While runs are being created, the background writers (policy statuses, events) wait, so
//! that the Jobs, which decide when the backups start, are served first. A write waits at most
//! [`MAX_WAIT`], so that a long stream of runs never starves the statuses. The creations
//! themselves are bounded across all reconciles ([`IN_FLIGHT_LIMIT`]), and with them the
//! connections to the API server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

// tokio's clock, so that the tests can let time pass.
use tokio::time::Instant;

/// How long after the last run was created the writers still wait (the next reconcile of a
/// burst usually follows within milliseconds).
const QUIET: Duration = Duration::from_millis(150);
/// The longest a background write waits for the runs.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// Run creations in flight at once, across all reconciles: the reconciles (48 by default) and
/// one policy's runs over many PVCs share it.
pub const IN_FLIGHT_LIMIT: usize = 64;
/// How often a waiting writer looks again.
const POLL: Duration = Duration::from_millis(25);

/// Counts the run creations in flight; shared by the reconciles and the background writers.
#[derive(Clone)]
pub struct RunsFirst {
    inner: Arc<Inner>,
}

struct Inner {
    started: Instant,
    permits: Arc<tokio::sync::Semaphore>,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` when a creation last ended, plus one (0: none has).
    last_done_ms: AtomicU64,
}

/// Held while a run is being created.
pub struct Creating {
    inner: Arc<Inner>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Creating {
    fn drop(&mut self) {
        self.inner.last_done_ms.store(self.inner.started.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Default for RunsFirst {
    fn default() -> Self {
        let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_LIMIT));
        RunsFirst { inner: Arc::new(Inner { started: Instant::now(), permits, in_flight: AtomicUsize::new(0), last_done_ms: AtomicU64::new(0) }) }
    }
}

impl RunsFirst {
    /// Marks a run creation as in flight until the guard is dropped, once one of the
    /// [`IN_FLIGHT_LIMIT`] places is free (the writers wait from the moment it asks).
    pub async fn creating(&self) -> Creating {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = self.inner.permits.clone().acquire_owned().await.ok();
        Creating { inner: self.inner.clone(), _permit: permit }
    }

    /// Whether a background write may go now: no creation in flight, none in the last [`QUIET`].
    fn quiet(&self) -> bool {
        if self.inner.in_flight.load(Ordering::Acquire) > 0 {
            return false;
        }
        match self.inner.last_done_ms.load(Ordering::Relaxed) {
            0 => true,
            done => self.inner.started.elapsed().saturating_sub(Duration::from_millis(done - 1)) >= QUIET,
        }
    }

    /// Waits until no run is being created (or [`MAX_WAIT`] has passed).
    pub async fn wait_turn(&self) {
        let deadline = Instant::now() + MAX_WAIT;
        while !self.quiet() && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn writers_wait_for_creations_then_a_quiet_moment_and_never_longer_than_the_cap() {
        let gate = RunsFirst::default();
        assert!(gate.quiet(), "nothing created yet");
        let creating = gate.creating().await;
        assert!(!gate.quiet());
        drop(creating);
        assert!(!gate.quiet(), "just ended: the next creation of the burst may follow");
        let waited = Instant::now();
        gate.wait_turn().await;
        assert!(waited.elapsed() >= QUIET && waited.elapsed() < QUIET + POLL * 2, "{:?}", waited.elapsed());
        // At most IN_FLIGHT_LIMIT creations at once: the next one waits for a place.
        let held: Vec<Creating> = futures::future::join_all((0..IN_FLIGHT_LIMIT).map(|_| gate.creating())).await;
        let next = gate.clone();
        let waiting = tokio::spawn(async move { next.creating().await });
        tokio::time::sleep(POLL).await;
        assert!(!waiting.is_finished(), "a creation beyond the limit waits");
        drop(held);
        let _stuck = waiting.await.expect("a place frees");
        // A creation that never ends holds the writers for MAX_WAIT at most.
        let waited = Instant::now();
        gate.wait_turn().await;
        assert!(waited.elapsed() >= MAX_WAIT && waited.elapsed() < MAX_WAIT + POLL * 2, "{:?}", waited.elapsed());
    }
}
