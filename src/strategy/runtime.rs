//! The plugin sandbox. One wasmtime `Engine` per process; each component compiled once, keyed by
//! its sha256 (in memory, and on disk so a restart does not recompile) and pre-instantiated once.
//! Every call gets a fresh `Store` with a memory cap and an epoch deadline and runs on a blocking
//! thread, at most `max_concurrency` at a time. Plugins import a log and WASI p2, deny-all
//! ([`super::wasi`]): nothing behind it but their own capped output.
//!
//! Compiling is kept apart from calling: a component's shape is checked first
//! ([`super::compile`]), compilations queue for their own slots (never a call slot), one per
//! digest at a time, and a component that failed is remembered by digest until its bytes change.
//! Caches are bounded in bytes.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::types::{ArtifactRequest, BackupRequest, Description};
use super::bindings::{BackupStrategy, BackupStrategyPre};
use super::check::{PlanPolicy, PlanPurpose};
use super::epoch::{EpochTicker, spawn_epoch_ticker};
use super::error::{Error, PluginId, Result};
use super::host::{HostState, truncate};

/// Failed digests remembered (each entry is an error message).
const MAX_FAILED_DIGESTS: usize = 256;
/// What a plugin may say about itself (`describe`), kept in memory per version.
const MAX_DESCRIPTION_NAME: usize = 63;
const MAX_DESCRIPTION_VERSION: usize = 64;
const MAX_DESCRIPTION_SUMMARY: usize = 1024;
const MAX_DESCRIPTION_SCHEMA: usize = 16 * 1024;
/// Linear memory kept mapped between calls in a pool slot.
const KEEP_RESIDENT_BYTES: usize = 256 * 1024;
/// Table memory kept mapped between calls in a pool slot (a component's tables are a few entries).
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 * 1024;
/// Bytes of a plugin's error message shown to users.
pub(super) const MAX_MESSAGE_BYTES: usize = 2048;

/// The operator's limits for plugins. Per-plugin overrides may only lower them.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub memory_limit_bytes: u64,
    pub deadline: Duration,
    pub max_concurrency: usize,
    /// A ConfigMap holds at most 1 MiB, so that is the default.
    pub max_plugin_bytes: usize,
    /// Where compiled plugins are kept across restarts; `None` compiles in memory only.
    pub cache_dir: Option<PathBuf>,
    pub plan_policy: PlanPolicy,
    /// Compilations at once, apart from the call slots.
    pub compile_concurrency: usize,
    /// Bytes of compiled plugins kept in memory, and on disk.
    pub cache_memory_bytes: u64,
    pub cache_disk_bytes: u64,
    pub shape_limits: super::compile::ShapeLimits,
    /// Compile in a child process within limits (the operator binary); `None` compiles in this
    /// process (tests and benchmarks).
    pub compiler: Option<super::compile::Compiler>,
    /// Where loads and calls are counted (the process's metrics; a fresh set by default).
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            memory_limit_bytes: 64 * 1024 * 1024,
            deadline: Duration::from_millis(1000),
            max_concurrency: 4,
            max_plugin_bytes: 1024 * 1024,
            cache_dir: None,
            plan_policy: PlanPolicy::default(),
            compile_concurrency: 1,
            cache_memory_bytes: 256 << 20,
            cache_disk_bytes: 512 << 20,
            shape_limits: super::compile::ShapeLimits::default(),
            compiler: None,
            metrics: Arc::default(),
        }
    }
}

/// A policy's overrides of the operator's limits (`spec.plugin.limits`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginLimits {
    pub memory_limit_bytes: Option<u64>,
    pub deadline: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct CallLimits {
    pub(super) memory_bytes: u64,
    pub(super) deadline: Duration,
}

/// One planning call, with its request.
#[derive(Debug, Clone)]
pub enum PlanRequest {
    Backup(BackupRequest),
    Restore(ArtifactRequest),
    Prune(ArtifactRequest),
    Verify(ArtifactRequest),
}

impl PlanRequest {
    pub fn purpose(&self) -> PlanPurpose {
        match self {
            PlanRequest::Backup(_) => PlanPurpose::Backup,
            PlanRequest::Restore(_) => PlanPurpose::Restore,
            PlanRequest::Prune(_) => PlanPurpose::Prune,
            PlanRequest::Verify(_) => PlanPurpose::Verify,
        }
    }
}

/// A compiled, pre-instantiated plugin, ready to be called.
pub struct Plugin {
    pub id: PluginId,
    pub description: Description,
    pub(super) pre: BackupStrategyPre<HostState>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("id", &self.id).field("description", &self.description.name).finish()
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) struct Inner {
    pub(super) engine: Engine,
    pub(super) linker: Linker<HostState>,
    pub(super) config: RuntimeConfig,
    pub(super) disk: Option<super::compile::DiskCache>,
    pub(super) plugins: Mutex<PluginCache>,
    pub(super) permits: Arc<Semaphore>,
    /// Compile slots, handed out round-robin among the namespaces waiting for one.
    pub(super) compile_slots: Arc<crate::base::fair::FairSlots>,
    /// One compilation per digest at a time: later loads of the same bytes wait for it.
    pub(super) compiling: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The digest of each source's latest version, so that unchanged bytes are not hashed again.
    pub(super) versions: Mutex<HashMap<String, (String, String)>>,
    /// The built-ins' digests: the operator's own code, compiled in this process without the
    /// untrusted-plugin limits.
    pub(super) builtin_digests: Vec<String>,
    pub(super) ticker: Arc<EpochTicker>,
}

/// Compiled plugins by digest, least recently used first out once over `max_bytes`, and the
/// digests that failed to load.
#[derive(Default)]
pub(super) struct PluginCache {
    by_digest: HashMap<String, (u64, Arc<Plugin>, u64)>,
    bytes: u64,
    failed: HashMap<String, (u64, Error)>,
    uses: u64,
}

impl PluginCache {
    fn get(&mut self, digest: &str) -> Option<Arc<Plugin>> {
        self.uses += 1;
        let stamp = self.uses;
        self.by_digest.get_mut(digest).map(|(s, p, _)| {
            *s = stamp;
            p.clone()
        })
    }

    fn insert(&mut self, digest: &str, plugin: Arc<Plugin>, size: u64, max_bytes: u64) {
        self.uses += 1;
        if let Some((_, _, old)) = self.by_digest.insert(digest.to_owned(), (self.uses, plugin, size)) {
            self.bytes -= old;
        }
        self.bytes += size;
        while self.bytes > max_bytes && self.by_digest.len() > 1 {
            let Some(oldest) = self.by_digest.iter().filter(|(d, _)| *d != digest).min_by_key(|(_, (s, _, _))| *s).map(|(d, _)| d.clone()) else { break };
            if let Some((_, _, size)) = self.by_digest.remove(&oldest) {
                self.bytes -= size;
            }
        }
    }

    fn fail(&mut self, digest: &str, error: &Error) {
        self.uses += 1;
        self.failed.insert(digest.to_owned(), (self.uses, error.clone()));
        if self.failed.len() > MAX_FAILED_DIGESTS
            && let Some(oldest) = self.failed.iter().min_by_key(|(_, (s, _))| *s).map(|(d, _)| d.clone())
        {
            self.failed.remove(&oldest);
        }
    }
}

/// What loading found before compiling.
enum Known {
    Ready(Arc<Plugin>),
    Compile(PluginId),
}

/// The strategy plugin host. Cheap to clone; clones share the engine and caches.
#[derive(Clone)]
pub struct StrategyRuntime {
    pub(super) inner: Arc<Inner>,
}

impl StrategyRuntime {
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let mut wasm: Config = super::compile::engine_config();
        // A pool of instance slots, reused call after call: a fresh store per call then costs
        // microseconds instead of mapping and unmapping linear memory each time. Calls are bounded
        // by the semaphore, so the pool (with headroom for loads) is never exhausted.
        let slots = u32::try_from(config.max_concurrency.max(1) * 2 + 2).unwrap_or(u32::MAX);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            // A C or `cargo component` plugin carries the WASI adapter and its shims: a few more
            // core instances and tables per component than a Rust one.
            .total_core_instances(slots * 8)
            .total_memories(slots * 2)
            .total_tables(slots * 8)
            .max_memory_size(usize::try_from(config.memory_limit_bytes).unwrap_or(usize::MAX))
            // Reset the first pages of memory (a planner's stack, data and small heap) and of the
            // tables by memset rather than decommitting them, so the next call does not fault
            // them back in (tables faulting in lazily cost a quarter of a plan call); where the
            // kernel has PAGEMAP_SCAN (6.7+), only the pages a call dirtied are reset.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES)
            .pagemap_scan(wasmtime::Enabled::Auto);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|e| Error::Runtime(format!("engine: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        BackupStrategy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| Error::Runtime(format!("linker: {e:#}")))?;
        super::wasi::add_to_linker(&mut linker).map_err(|e| Error::Runtime(format!("linker (WASI): {e:#}")))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hasher.finish();
        let ticker = Arc::new(EpochTicker::default());
        spawn_epoch_ticker(&engine, ticker.clone())?;
        let disk = match &config.cache_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::Runtime(format!("plugin cache {}: {e}", dir.display())))?;
                let disk = super::compile::DiskCache { dir: dir.clone(), engine_key, max_bytes: config.cache_disk_bytes };
                disk.prune();
                Some(disk)
            }
            None => None,
        };
        let permits = Arc::new(Semaphore::new(config.max_concurrency.max(1)));
        let compile_slots = Arc::new(crate::base::fair::FairSlots::new(config.compile_concurrency.max(1)));
        Ok(StrategyRuntime {
            inner: Arc::new(Inner {
                engine,
                linker,
                config,
                disk,
                plugins: Mutex::default(),
                permits,
                compile_slots,
                compiling: Mutex::default(),
                versions: Mutex::default(),
                builtin_digests: super::builtin::BuiltinStrategy::ALL.iter().map(|b| sha256_hex(b.wasm())).collect(),
                ticker,
            }),
        })
    }

    /// Compiles the built-in strategies before the operator serves, so that they never wait
    /// behind a custom plugin's compilation.
    pub async fn preload_builtins(&self) -> Result<()> {
        for builtin in super::builtin::BuiltinStrategy::ALL {
            self.load(builtin.name(), Arc::from(builtin.wasm()), None).await?;
        }
        Ok(())
    }

    /// Compiled plugins held in memory, and their bytes.
    pub fn cache_stats(&self) -> (usize, u64) {
        self.inner.plugins.lock().map(|c| (c.by_digest.len(), c.bytes)).unwrap_or_default()
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Compiles (or finds) the component in `bytes`, pre-instantiates it and asks it to describe
    /// itself. `pinned_sha256`, when given, must match the bytes exactly. Compiling waits for a
    /// compile slot, never a call slot; the same bytes are compiled once even when loaded by many.
    pub async fn load(&self, name: &str, bytes: Arc<[u8]>, pinned_sha256: Option<&str>) -> Result<Arc<Plugin>> {
        self.load_with_digest("", name, None, bytes, pinned_sha256).await
    }

    /// [`load`](Self::load) for a source whose `version` says whether its bytes changed: the
    /// bytes of a version seen before are not hashed again. `tenant` (the policy's namespace)
    /// waits for a compile slot in turn with the other tenants.
    pub async fn load_versioned(&self, tenant: &str, name: &str, version: &str, bytes: Arc<[u8]>, pinned_sha256: Option<&str>) -> Result<Arc<Plugin>> {
        let known = self.inner.versions.lock().ok().and_then(|v| v.get(name).filter(|(seen, _)| seen == version).map(|(_, d)| d.clone()));
        let plugin = self.load_with_digest(tenant, name, known, bytes, pinned_sha256).await?;
        if let Ok(mut versions) = self.inner.versions.lock() {
            // Bounded like the sources it mirrors: a policy names one source.
            if versions.len() > 4096 {
                versions.clear();
            }
            versions.insert(name.to_owned(), (version.to_owned(), plugin.id.digest.clone()));
        }
        Ok(plugin)
    }

    async fn load_with_digest(&self, tenant: &str, name: &str, digest: Option<String>, bytes: Arc<[u8]>, pinned_sha256: Option<&str>) -> Result<Arc<Plugin>> {
        let pinned = pinned_sha256.map(str::to_ascii_lowercase);
        let (this, owned_name, hashed) = (self.clone(), name.to_owned(), bytes.clone());
        let known = match digest {
            Some(digest) => self.known_digest(name, digest, bytes.len(), pinned.as_deref())?,
            None => spawn_blocking(move || this.known(&owned_name, &hashed, pinned.as_deref())).await?,
        };
        let id = match known {
            Known::Ready(plugin) => {
                self.inner.config.metrics.plugin_load("memory");
                return Ok(plugin);
            }
            Known::Compile(id) => id,
        };
        let gate = self.gate(&id.digest);
        let _one_at_a_time = gate.lock().await;
        if let Some(known) = self.lookup(&id) {
            return known;
        }
        // Who compiled what, when and for how long: the order shows the tenants taking turns.
        tracing::info!(tenant, plugin = %id, "waiting for a compile slot");
        let permit = self.inner.compile_slots.acquire(tenant).await;
        tracing::info!(tenant, plugin = %id, "compiling plugin");
        let started = std::time::Instant::now();
        let (this, compile_id) = (self.clone(), id.clone());
        let compiled = spawn_blocking(move || {
            let _permit = permit;
            this.compile(&compile_id, &bytes)
        })
        .await;
        let result = match compiled {
            Ok((component, size)) => {
                let (this, finish_id) = (self.clone(), id.clone());
                self.run_blocking(move || this.finish(finish_id, &component, size)).await
            }
            Err(e) => Err(e),
        };
        let seconds = started.elapsed().as_secs_f64();
        match &result {
            Ok(_) => tracing::info!(tenant, plugin = %id, seconds, "plugin compiled"),
            Err(e) => {
                tracing::info!(tenant, plugin = %id, seconds, "plugin not compiled: {e}");
                self.inner.config.metrics.plugin_load("failed");
            }
        }
        if let Err(e) = &result
            && e.is_permanent()
            && let Ok(mut cache) = self.inner.plugins.lock()
        {
            cache.fail(&id.digest, e);
        }
        result
    }

    /// [`load`](Self::load) on the calling thread; for benchmarks and blocking contexts.
    pub fn load_blocking(&self, name: &str, bytes: &[u8], pinned_sha256: Option<&str>) -> Result<Arc<Plugin>> {
        match self.known(name, bytes, pinned_sha256)? {
            Known::Ready(plugin) => Ok(plugin),
            Known::Compile(id) => {
                let (component, size) = self.compile(&id, bytes)?;
                self.finish(id, &component, size)
            }
        }
    }

    /// Hashes the bytes, checks the pin and size, and finds a compiled plugin or a remembered
    /// failure for them.
    fn known(&self, name: &str, bytes: &[u8], pinned_sha256: Option<&str>) -> Result<Known> {
        self.known_digest(name, sha256_hex(bytes), bytes.len(), pinned_sha256)
    }

    fn known_digest(&self, name: &str, digest: String, len: usize, pinned_sha256: Option<&str>) -> Result<Known> {
        if let Some(expected) = pinned_sha256
            && !expected.eq_ignore_ascii_case(&digest)
        {
            return Err(Error::PluginDigestMismatch { name: name.to_owned(), expected: expected.to_owned(), actual: digest });
        }
        let id = PluginId { name: name.to_owned(), digest };
        if len > self.inner.config.max_plugin_bytes {
            return Err(Error::PluginTooLarge { plugin: id, size: len, max: self.inner.config.max_plugin_bytes });
        }
        match self.lookup(&id) {
            Some(known) => known.map(Known::Ready),
            None => Ok(Known::Compile(id)),
        }
    }

    /// A compiled plugin (under this name), or the error these bytes failed with before.
    fn lookup(&self, id: &PluginId) -> Option<Result<Arc<Plugin>>> {
        let mut cache = self.inner.plugins.lock().ok()?;
        if let Some(cached) = cache.get(&id.digest) {
            if cached.id.name == id.name {
                return Some(Ok(cached));
            }
            return Some(Ok(Arc::new(Plugin { id: id.clone(), description: cached.description.clone(), pre: cached.pre.clone() })));
        }
        cache.failed.get(&id.digest).map(|(_, e)| Err(e.clone()))
    }

    fn gate(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut compiling) = self.inner.compiling.lock() else { return Arc::default() };
        // Gates nobody waits on any more go, so the map stays small.
        compiling.retain(|_, g| Arc::strong_count(g) > 1);
        compiling.entry(digest.to_owned()).or_default().clone()
    }

    /// Pre-instantiates a compiled component and asks it to describe itself (a call slot).
    fn finish(&self, id: PluginId, component: &Component, size: u64) -> Result<Arc<Plugin>> {
        let incompatible = |e: wasmtime::Error| Error::PluginIncompatible {
            plugin: id.clone(),
            found: self.contract_of(component),
            message: truncate(format!("{e:#}"), MAX_MESSAGE_BYTES),
        };
        let instance_pre = self.inner.linker.instantiate_pre(component).map_err(incompatible)?;
        let pre = BackupStrategyPre::new(instance_pre).map_err(incompatible)?;
        let limits = self.limits(None);
        let description = self.call_raw(&id, &pre, limits, |b, store| b.backup_strategy_strategy().call_describe(store))?;
        let description = bounded(description);
        let digest = id.digest.clone();
        // What the cache holds of it: the compiled code and what it said of itself.
        let held = size + description_bytes(&description);
        let plugin = Arc::new(Plugin { id, description, pre });
        if let Ok(mut cache) = self.inner.plugins.lock() {
            cache.insert(&digest, plugin.clone(), held, self.inner.config.cache_memory_bytes);
        }
        Ok(plugin)
    }

    /// Which version of the contract a component was built for, from the names of what it
    /// imports and exports (`backup:strategy/strategy@0.1.0`, say).
    fn contract_of(&self, component: &Component) -> String {
        let ty = component.component_type();
        let names: Vec<String> = ty
            .exports(&self.inner.engine)
            .map(|(name, _)| name.to_owned())
            .chain(ty.imports(&self.inner.engine).map(|(name, _)| name.to_owned()))
            .collect();
        names
            .iter()
            .find_map(|n| n.strip_prefix("backup:strategy/").and_then(|rest| rest.split_once('@')).map(|(_, v)| format!("backup:strategy@{v}")))
            .unwrap_or_else(|| {
                let shown: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
                format!("another contract (exports and imports: {})", if shown.is_empty() { "none".into() } else { shown.join(", ") })
            })
    }

    /// Compiles a component (after checking its shape), or loads its precompiled form from the
    /// on-disk cache. Returns it with the size of its compiled form.
    fn compile(&self, id: &PluginId, bytes: &[u8]) -> Result<(Component, u64)> {
        let invalid = |e: wasmtime::Error| Error::PluginInvalid { plugin: id.clone(), message: truncate(format!("{e:#}"), MAX_MESSAGE_BYTES) };
        let disk = self.inner.disk.as_ref();
        // Another process compiling the same bytes into the same directory finishes first; this
        // one then reads its artefact. (A blocking wait: compiles run on blocking threads.)
        let _compiling = disk.and_then(|d| d.lock(&id.digest));
        // Read into memory rather than `deserialize_file`: a mapped file truncated by anyone
        // while in use would bring the process down with SIGBUS.
        if let Some(cached) = disk.and_then(|d| d.read(&id.digest)) {
            // SAFETY: the file was written by `precompile_component` of an engine with the same
            // compatibility hash (it is in the name), in the operator's own cache directory;
            // wasmtime also checks its header before use.
            match unsafe { Component::deserialize(&self.inner.engine, &cached) } {
                Ok(component) => {
                    self.inner.config.metrics.plugin_load("disk");
                    return Ok((component, cached.len() as u64));
                }
                Err(e) => {
                    tracing::warn!(plugin = %id, "discarding unusable cached plugin: {e:#}");
                    if let Some(d) = disk {
                        d.remove(&id.digest);
                    }
                }
            }
        }
        if let Some(remembered) = disk.and_then(|d| d.read_failure(&id.digest)) {
            return Err(Error::PluginTooComplex { plugin: id.clone(), message: truncate(format!("an earlier compile of these bytes failed ({remembered}); not compiled again"), MAX_MESSAGE_BYTES) });
        }
        super::compile::check_shape(bytes, &self.inner.config.shape_limits).map_err(|e| match e {
            super::compile::ShapeError::Invalid(message) => Error::PluginInvalid { plugin: id.clone(), message: truncate(message, MAX_MESSAGE_BYTES) },
            super::compile::ShapeError::TooComplex(message) => Error::PluginTooComplex { plugin: id.clone(), message },
        })?;
        let trusted = self.inner.builtin_digests.contains(&id.digest);
        let compiled = match &self.inner.config.compiler {
            Some(_) if trusted => self.inner.engine.precompile_component(bytes).map_err(invalid)?,
            None => self.inner.engine.precompile_component(bytes).map_err(invalid)?,
            Some(compiler) => compiler.compile(bytes).map_err(|failure| match failure {
                super::compile::CompileFailure::Invalid(message) => Error::PluginInvalid { plugin: id.clone(), message: truncate(message, MAX_MESSAGE_BYTES) },
                super::compile::CompileFailure::TimedOut(after) => Error::PluginCompileTimeout {
                    plugin: id.clone(),
                    message: format!("compiling took longer than {} ms (--plugin-compile-timeout-ms)", after.as_millis()),
                },
                super::compile::CompileFailure::Died(how) => Error::PluginCompileMemory {
                    plugin: id.clone(),
                    message: truncate(
                        format!("the compiler stopped ({how}), most likely past its {} bytes of memory (--plugin-compile-memory-bytes)", compiler.memory_bytes),
                        MAX_MESSAGE_BYTES,
                    ),
                },
            })
            .inspect_err(|e| {
                // Remembered across restarts: a bomb is not compiled again by the next operator.
                if let Some(d) = disk {
                    d.write_failure(&id.digest, &e.to_string());
                }
            })?,
        };
        if let Some(d) = disk {
            d.write(&id.digest, &compiled);
        }
        // SAFETY: `compiled` was produced just now by this engine's `precompile_component`.
        let component = unsafe { Component::deserialize(&self.inner.engine, &compiled) }.map_err(invalid)?;
        self.inner.config.metrics.plugin_load("compiled");
        Ok((component, compiled.len() as u64))
    }

    /// Runs wasm off the async workers, at most `max_concurrency` calls at once.
    pub(super) async fn run_blocking<R: Send + 'static>(&self, f: impl FnOnce() -> Result<R> + Send + 'static) -> Result<R> {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Runtime(format!("plugin call slots closed: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| Error::Runtime(format!("plugin call thread: {e}")))?
    }
}

/// The bytes a description holds.
fn description_bytes(d: &Description) -> u64 {
    let strings: usize = [&d.name, &d.version, &d.summary, &d.config_schema].iter().map(|s| s.capacity()).sum();
    (strings + d.actions.capacity() * std::mem::size_of::<super::bindings::types::Action>()) as u64
}

/// What a plugin says about itself, cut to documented sizes: it is kept in memory per version.
fn bounded(d: Description) -> Description {
    // (A collect from the same Vec reuses its allocation: shrink it too.)
    let mut actions: Vec<_> = d.actions.into_iter().take(8).collect();
    actions.shrink_to_fit();
    Description {
        name: truncate(d.name, MAX_DESCRIPTION_NAME),
        version: truncate(d.version, MAX_DESCRIPTION_VERSION),
        summary: truncate(d.summary, MAX_DESCRIPTION_SUMMARY),
        actions,
        config_schema: truncate(d.config_schema, MAX_DESCRIPTION_SCHEMA),
    }
}

/// A blocking task, its panic turned into an error.
async fn spawn_blocking<R: Send + 'static>(f: impl FnOnce() -> Result<R> + Send + 'static) -> Result<R> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Runtime(format!("plugin thread: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_description_holds_only_what_is_kept() {
        let huge = "x".repeat(8 << 20);
        let actions = vec![super::super::bindings::types::Action::Backup; 1 << 20];
        let d = bounded(Description { name: huge.clone(), version: huge.clone(), summary: huge.clone(), actions, config_schema: huge });
        let held = description_bytes(&d);
        assert!(held <= (MAX_DESCRIPTION_NAME + MAX_DESCRIPTION_VERSION + MAX_DESCRIPTION_SUMMARY + MAX_DESCRIPTION_SCHEMA + 4 * 3 + 8 * 8) as u64, "{held} bytes held (the ellipses, 8 actions)");
        assert!(d.summary.capacity() <= MAX_DESCRIPTION_SUMMARY + 4, "{}", d.summary.capacity());
    }
}
