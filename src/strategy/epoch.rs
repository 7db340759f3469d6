//! Plugin deadlines: the engine's epoch advances every few milliseconds, but only while some call
//! is in flight, so an idle operator does not wake up for nothing.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;

use super::error::{Error, Result};

/// How often the epoch advances: the granularity of plugin deadlines.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Advances the engine's epoch, but only while a call is in flight: an idle operator does not wake
/// every tick.
#[derive(Default)]
pub(super) struct EpochTicker {
    in_flight: std::sync::atomic::AtomicUsize,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

/// A call in flight, for as long as it lives.
pub(super) struct InFlight<'a>(&'a EpochTicker);

impl EpochTicker {
    pub(super) fn enter(&self) -> InFlight<'_> {
        if self.in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
        InFlight(self)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Advances the engine's epoch every tick while a call is in flight, and sleeps otherwise. Holds
/// only a weak reference, so it ends with the engine.
pub(super) fn spawn_epoch_ticker(engine: &Engine, ticker: Arc<EpochTicker>) -> Result<()> {
    let weak = engine.weak();
    let state = ticker.clone();
    let handle = std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                if state.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    drop(engine);
                    // Woken by the next call; the timeout only notices a dropped engine.
                    std::thread::park_timeout(Duration::from_secs(5));
                    continue;
                }
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map_err(|e| Error::Runtime(format!("epoch ticker: {e}")))?;
    let _ = ticker.thread.set(handle.thread().clone());
    Ok(())
}
