//! WASI p2 for plugins, deny-all. Components from mainstream toolchains (`cargo component`,
//! `wasm32-wasip2`, C with wasi-libc and the preview 1 adapter) import WASI whether or not they use
//! it, so the host links it, with nothing behind it: no preopened directories, no sockets, no
//! name lookup, no environment or arguments, stdin closed, stdout and stderr into the plugin's
//! capped log, clocks frozen and randomness a fixed sequence, so that the same request always gets
//! the same plan. A guest that asks for more gets an error value from WASI, never access.

use std::sync::{Arc, Mutex};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiView};

/// The wall clock every plugin sees: 2000-01-01T00:00:00Z, so that a plan never depends on when it
/// was made (the host passes the run's time in the request).
const FROZEN_WALL_CLOCK_SECONDS: u64 = 946_684_800;

/// What a plugin writes to stdout and stderr together, per call, kept for its log; the rest is
/// dropped and counted.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Links WASI p2 (the synchronous bindings) into `linker`, with the monotonic clock replaced by a
/// frozen one whose timers are ready at once: a guest that sleeps would otherwise hold a call
/// slot in the host, where the epoch deadline cannot interrupt it.
pub fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    monotonic_clock::add_to_linker::<T, HasFrozenClock>(linker, |t| FrozenClock(t.ctx().table))?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A fresh deny-all context whose stdout and stderr write into `output`.
pub fn context(output: &GuestOutput) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(output.clone())
        .stderr(output.clone())
        .wall_clock(FrozenWallClock)
        .monotonic_clock(FrozenMonotonicClock)
        .secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a, 0xa5, 0x3c, 0xc3]))
        .insecure_random(wasmtime_wasi::Deterministic::new(vec![0x42]))
        .insecure_random_seed(0)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    builder.build()
}

struct FrozenWallClock;

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_secs(FROZEN_WALL_CLOCK_SECONDS)
    }
}

struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

/// `wasi:clocks/monotonic-clock` over the frozen clock: time never passes, and every timer is
/// ready when asked.
struct FrozenClock<'a>(&'a mut ResourceTable);

struct HasFrozenClock;

impl HasData for HasFrozenClock {
    type Data<'a> = FrozenClock<'a>;
}

impl monotonic_clock::Host for FrozenClock<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(FrozenMonotonicClock.now())
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(FrozenMonotonicClock.resolution())
    }

    fn subscribe_instant(&mut self, _when: monotonic_clock::Instant) -> wasmtime::Result<Resource<DynPollable>> {
        ready(self.0)
    }

    fn subscribe_duration(&mut self, _duration: monotonic_clock::Duration) -> wasmtime::Result<Resource<DynPollable>> {
        ready(self.0)
    }
}

/// A timer that has already fired.
struct Ready;

#[wasmtime_wasi::async_trait]
impl Pollable for Ready {
    async fn ready(&mut self) {}
}

fn ready(table: &mut ResourceTable) -> wasmtime::Result<Resource<DynPollable>> {
    let timer = table.push(Ready)?;
    wasmtime_wasi::p2::subscribe(table, timer)
}

/// A plugin's stdout and stderr for one call: at most [`MAX_OUTPUT_BYTES`] kept, the rest
/// counted. Writes never fail and never wait, so output cannot stall or trap a plan.
#[derive(Clone, Default)]
pub struct GuestOutput(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

impl GuestOutput {
    /// What was written, and how many bytes past the cap were dropped.
    pub fn take(&self) -> (Vec<u8>, usize) {
        match self.0.lock() {
            Ok(mut c) => (std::mem::take(&mut c.bytes), std::mem::take(&mut c.dropped)),
            Err(_) => (Vec::new(), 0),
        }
    }

    fn append(&self, bytes: &[u8]) {
        if let Ok(mut c) = self.0.lock() {
            let room = MAX_OUTPUT_BYTES.saturating_sub(c.bytes.len());
            let kept = bytes.len().min(room);
            c.bytes.extend_from_slice(&bytes[..kept]);
            c.dropped += bytes.len() - kept;
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI p3 asks for this, and p3 is not linked.
        Box::new(tokio::io::sink())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_OUTPUT_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_and_the_rest_counted() {
        let out = GuestOutput::default();
        let mut stream = out.p2_stream();
        stream.write(bytes::Bytes::from(vec![b'a'; MAX_OUTPUT_BYTES - 10])).unwrap();
        stream.write(bytes::Bytes::from_static(b"0123456789abcdef")).unwrap();
        let (kept, dropped) = out.take();
        assert_eq!(kept.len(), MAX_OUTPUT_BYTES);
        assert!(kept.ends_with(b"0123456789"));
        assert_eq!(dropped, 6);
        assert_eq!(out.take(), (Vec::new(), 0), "taken once");
    }
}
