//! Compiling untrusted components within limits. Compile time and memory grow with a component's
//! function sizes and local counts, and a deadline on calls does not cover compilation, so the
//! shape is checked before Cranelift sees the bytes; compiled artefacts are cached on disk by
//! digest and engine, bounded in bytes, and artefacts of other engine versions are removed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmparser::{Parser, Payload};

/// The engine settings that decide whether a compiled artefact fits an engine. The operator's
/// engine adds only runtime settings (the instance pool) on top, so artefacts its compiler child
/// makes load in it.
pub fn engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    config
}

/// Where and within what a component is compiled: a child process of the operator binary
/// (`backup-operator compile-plugin`), with an address-space limit and a wall-clock deadline, so
/// that a component made to be slow or greedy to compile costs the operator neither memory nor
/// time beyond these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiler {
    pub exe: PathBuf,
    pub memory_bytes: u64,
    pub timeout: Duration,
}

/// Largest compiled artefact taken from the compiler child (a 1 MiB component compiles to a few MiB).
const MAX_ARTEFACT_BYTES: u64 = 64 << 20;

/// Why the compiler child did not produce an artefact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileFailure {
    /// wasmtime refused the bytes (the child's message).
    Invalid(String),
    TimedOut(Duration),
    /// The child died (out of memory under its limit, most likely), with how it ended.
    Died(String),
}

/// The child's side: the component on stdin, the artefact on stdout, a message and exit code 2
/// when wasmtime refuses it.
pub fn compile_child_main() -> std::process::ExitCode {
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().take(4 << 20).read_to_end(&mut bytes) {
        eprintln!("reading the component: {e}");
        return std::process::ExitCode::from(2);
    }
    let compiled = wasmtime::Engine::new(&engine_config()).and_then(|engine| engine.precompile_component(&bytes));
    match compiled {
        Ok(artefact) => match std::io::stdout().write_all(&artefact) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("writing the artefact: {e}");
                std::process::ExitCode::from(3)
            }
        },
        Err(e) => {
            eprintln!("{e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

impl Compiler {
    /// Compiles `bytes` in a child process within the limits. Blocking.
    pub fn compile(&self, bytes: &[u8]) -> Result<Vec<u8>, CompileFailure> {
        let mut command = Command::new(&self.exe);
        // Fewer malloc arenas: each reserves 64 MiB of address space, which the limit counts.
        command.arg("compile-plugin").env("MALLOC_ARENA_MAX", "2").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let limit = self.memory_bytes;
        // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(move || {
                let address_space = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                if libc::setrlimit(libc::RLIMIT_AS, &address_space) != 0 || libc::setrlimit(libc::RLIMIT_CORE, &no_core) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // When the container runs out of memory, the kernel ends the child, not the
                // operator (best effort: open and write are async-signal-safe).
                let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
                if fd >= 0 {
                    libc::write(fd, b"1000".as_ptr().cast(), 4);
                    libc::close(fd);
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| CompileFailure::Died(format!("starting the compiler: {e}")))?;
        let mut stdin = child.stdin.take().ok_or_else(|| CompileFailure::Died("no stdin".into()))?;
        let input = bytes.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let stdout = child.stdout.take().ok_or_else(|| CompileFailure::Died("no stdout".into()))?;
        // The artefact is read with a cap too: what a component compiles to is its author's choice.
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            stdout.take(MAX_ARTEFACT_BYTES + 1).read_to_end(&mut out).map(|_| out)
        });
        let mut stderr = child.stderr.take().ok_or_else(|| CompileFailure::Died("no stderr".into()))?;
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.by_ref().take(16 * 1024).read_to_string(&mut text);
            text
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(CompileFailure::TimedOut(self.timeout));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(CompileFailure::Died(format!("waiting for the compiler: {e}"))),
            }
        };
        let _ = writer.join();
        let artefact = reader.join().ok().and_then(|r| r.ok()).unwrap_or_default();
        let message = errors.join().unwrap_or_default();
        match status.code() {
            Some(0) if artefact.len() as u64 > MAX_ARTEFACT_BYTES => {
                Err(CompileFailure::Died(format!("the compiled plugin is over {MAX_ARTEFACT_BYTES} bytes")))
            }
            Some(0) => Ok(artefact),
            Some(2) => Err(CompileFailure::Invalid(message.trim().to_owned())),
            _ => Err(CompileFailure::Died(format!("{status}: {}", message.trim()))),
        }
    }
}

/// The container's memory limit, from its cgroup (v2 `memory.max`, or v1's limit), if it has one.
pub fn container_memory_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<u64>().ok());
    // v1 reports "no limit" as a huge number.
    read("/sys/fs/cgroup/memory.max").or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes")).filter(|l| *l < (1 << 50))
}

/// The compiler child's address space: the configured one, but at most three quarters of the
/// container's limit (the operator keeps the rest), and never under 384 MiB (the release binary
/// needs about 300 MiB of address space before it compiles anything). The child is also the
/// first process the kernel picks when the container runs out (`oom_score_adj` 1000).
pub fn child_memory_bytes(configured: u64, container_limit: Option<u64>) -> u64 {
    match container_limit {
        Some(limit) => configured.min(limit / 4 * 3).max(384 << 20),
        None => configured,
    }
}

/// Documented limits on a component's code, checked before compiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeLimits {
    /// Functions in all the component's core modules together.
    pub max_functions: usize,
    /// Bytes of one function body.
    pub max_function_bytes: usize,
    /// Locals of one function.
    pub max_locals: u64,
    /// Bytes of all code sections together.
    pub max_code_bytes: usize,
    /// Data segments in all core modules (each costs the compiler and the instance memory).
    pub max_data_segments: usize,
    /// Type, import and export entries, core and component, in all (each is an allocation of
    /// the compiler's, whatever its size in bytes).
    pub max_entries: usize,
    /// Core modules and components nested in the component, and how deep.
    pub max_modules: usize,
    pub max_nesting: usize,
}

impl Default for ShapeLimits {
    fn default() -> Self {
        ShapeLimits {
            max_functions: 20_000,
            max_function_bytes: 128 * 1024,
            max_locals: 4_096,
            max_code_bytes: 1024 * 1024,
            max_data_segments: 4_096,
            max_entries: 16_384,
            max_modules: 64,
            max_nesting: 8,
        }
    }
}

/// What the component's code looks like, measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub functions: usize,
    pub largest_function_bytes: usize,
    pub most_locals: u64,
    pub code_bytes: usize,
    pub data_segments: usize,
    /// Type, import and export entries.
    pub entries: usize,
    /// Nested core modules and components.
    pub modules: usize,
    pub deepest: usize,
}

/// Why a component's shape is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeError {
    /// The bytes do not parse.
    Invalid(String),
    /// A measure is over its limit.
    TooComplex(String),
}

/// Measures the component (every nested core module) and checks it against `limits`.
pub fn check_shape(bytes: &[u8], limits: &ShapeLimits) -> Result<Shape, ShapeError> {
    let mut shape = Shape::default();
    let over = |m: String| Err(ShapeError::TooComplex(m));
    let mut depth = 0usize;
    let count_entries = |shape: &mut Shape, n: u32| -> Result<(), ShapeError> {
        shape.entries += n as usize;
        if shape.entries > limits.max_entries {
            return Err(ShapeError::TooComplex(format!("more than {} type, import and export entries", limits.max_entries)));
        }
        Ok(())
    };
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| ShapeError::Invalid(e.to_string()))? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                shape.modules += 1;
                depth += 1;
                shape.deepest = shape.deepest.max(depth);
                if shape.modules > limits.max_modules {
                    return over(format!("more than {} nested modules and components", limits.max_modules));
                }
                if depth > limits.max_nesting {
                    return over(format!("components nested more than {} deep", limits.max_nesting));
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::DataSection(reader) => {
                shape.data_segments += reader.count() as usize;
                if shape.data_segments > limits.max_data_segments {
                    return over(format!("more than {} data segments", limits.max_data_segments));
                }
            }
            Payload::TypeSection(r) => count_entries(&mut shape, r.count())?,
            Payload::ImportSection(r) => count_entries(&mut shape, r.count())?,
            Payload::ExportSection(r) => count_entries(&mut shape, r.count())?,
            Payload::CoreTypeSection(r) => count_entries(&mut shape, r.count())?,
            Payload::ComponentTypeSection(r) => count_entries(&mut shape, r.count())?,
            Payload::ComponentImportSection(r) => count_entries(&mut shape, r.count())?,
            Payload::ComponentExportSection(r) => count_entries(&mut shape, r.count())?,
            Payload::InstanceSection(r) => count_entries(&mut shape, r.count())?,
            Payload::ComponentInstanceSection(r) => count_entries(&mut shape, r.count())?,
            Payload::ComponentAliasSection(r) => count_entries(&mut shape, r.count())?,
            Payload::ComponentCanonicalSection(r) => count_entries(&mut shape, r.count())?,
            Payload::CodeSectionStart { size, .. } => {
                shape.code_bytes += size as usize;
                if shape.code_bytes > limits.max_code_bytes {
                    return over(format!("{} bytes of code, over the limit of {}", shape.code_bytes, limits.max_code_bytes));
                }
            }
            Payload::CodeSectionEntry(body) => {
                shape.functions += 1;
                if shape.functions > limits.max_functions {
                    return over(format!("more than {} functions", limits.max_functions));
                }
                let size = body.range().len();
                shape.largest_function_bytes = shape.largest_function_bytes.max(size);
                if size > limits.max_function_bytes {
                    return over(format!("a function of {size} bytes, over the limit of {}", limits.max_function_bytes));
                }
                let mut locals: u64 = 0;
                let reader = body.get_locals_reader().map_err(|e| ShapeError::Invalid(e.to_string()))?;
                for local in reader {
                    let (count, _) = local.map_err(|e| ShapeError::Invalid(e.to_string()))?;
                    locals = locals.saturating_add(u64::from(count));
                    if locals > limits.max_locals {
                        return over(format!("a function with more than {} locals", limits.max_locals));
                    }
                }
                shape.most_locals = shape.most_locals.max(locals);
            }
            _ => {}
        }
    }
    Ok(shape)
}

/// Compiled artefacts on disk: `<sha256>-<engine key>.cwasm`.
#[derive(Debug, Clone)]
pub struct DiskCache {
    pub dir: PathBuf,
    pub engine_key: u64,
    pub max_bytes: u64,
}

/// A digest's compile lock ([`DiskCache::lock`]). Its file goes when it is released: a process
/// waiting on it then finds the artefact, and one arriving later takes a new file and finds it too.
pub struct CompileLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl Drop for CompileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
/// How long a failed compile is remembered on disk.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(3600);

impl DiskCache {
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{:016x}.cwasm", self.engine_key))
    }

    /// Writes an artefact under a name no other writer uses, then renames it into place.
    pub fn write(&self, digest: &str, compiled: &[u8]) {
        let path = self.path(digest);
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".{digest}.{}.{n}.tmp", std::process::id()));
        if let Err(e) = std::fs::write(&tmp, compiled).and_then(|()| std::fs::rename(&tmp, &path)) {
            tracing::warn!(path = %path.display(), "could not cache compiled plugin: {e}");
            let _ = std::fs::remove_file(&tmp);
        }
        self.prune();
    }

    /// Removes artefacts of other engines and temporary leftovers, then the least recently used
    /// artefacts until the directory is within `max_bytes`.
    pub fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let suffix = format!("-{:016x}.cwasm", self.engine_key);
        let mut kept: Vec<(std::time::SystemTime, u64, PathBuf)> = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            let stale_tmp = (name.ends_with(".tmp") || name.ends_with(".lock")) && meta.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age.as_secs() > 600);
            let other_engine_failure = name.ends_with(".failed") && !name.ends_with(&format!("-{:016x}.failed", self.engine_key));
            if (name.ends_with(".cwasm") && !name.ends_with(&suffix)) || stale_tmp || other_engine_failure {
                let _ = std::fs::remove_file(entry.path());
            } else if name.ends_with(&suffix) {
                kept.push((meta.accessed().or_else(|_| meta.modified()).unwrap_or(std::time::UNIX_EPOCH), meta.len(), entry.path()));
            }
        }
        kept.sort();
        let mut total: u64 = kept.iter().map(|(_, len, _)| len).sum();
        for (_, len, path) in kept {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }

    /// Holds `digest`'s compile lock (an exclusive lock on a file beside the artefact) until the
    /// returned file is dropped: operators sharing the directory (replicas, many at start-up)
    /// compile a component once, and the others wait and read the artefact. `None` when the lock
    /// cannot be had (then each compiles, as without it).
    pub fn lock(&self, digest: &str) -> Option<CompileLock> {
        let path = self.dir.join(format!(".{digest}-{:016x}.lock", self.engine_key));
        let file = std::fs::File::options().create(true).truncate(false).write(true).open(&path).ok()?;
        file.lock().ok()?;
        Some(CompileLock { path, _file: file })
    }

    pub fn read(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).ok()?;
        // Mark it used, for least-recently-used pruning (access times may not be kept).
        let _ = std::fs::File::options().append(true).open(&path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Some(bytes)
    }

    pub fn remove(&self, digest: &str) {
        let _ = std::fs::remove_file(self.path(digest));
    }

    fn failure_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{:016x}.failed", self.engine_key))
    }

    /// Remembers that compiling `digest` failed (timed out, ran out of memory, refused), with why,
    /// bounded: the next operator does not compile it again.
    pub fn write_failure(&self, digest: &str, message: &str) {
        let message: String = message.chars().take(1000).collect();
        if let Err(e) = std::fs::write(self.failure_path(digest), message) {
            tracing::warn!(dir = %self.dir.display(), "could not remember a failed compile: {e}");
        }
    }

    /// A failure remembered within the last [`FAILURE_MEMORY`] (a deadline missed on a loaded
    /// machine is given another chance after that, a bomb costs one compile per period).
    pub fn read_failure(&self, digest: &str) -> Option<String> {
        let path = self.failure_path(digest);
        let mut file = std::fs::File::open(&path).ok()?;
        let age = file.metadata().and_then(|m| m.modified()).ok().and_then(|m| m.elapsed().ok());
        if age.is_none_or(|a| a > FAILURE_MEMORY) {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        let mut text = String::new();
        Read::by_ref(&mut file).take(1000).read_to_string(&mut text).ok()?;
        Some(text)
    }
}

/// Bytes of a directory's files (for tests and measurements).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

#[cfg(test)]
mod tests {

    #[test]
    fn one_process_compiles_a_digest_at_a_time_and_the_others_wait_for_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DiskCache { dir: dir.path().to_path_buf(), engine_key: 7, max_bytes: 1 << 20 };
        let held = cache.lock("abc").expect("lock");
        let (other, order) = (cache.clone(), std::sync::Arc::new(std::sync::Mutex::new(Vec::new())));
        let seen = order.clone();
        let waiter = std::thread::spawn(move || {
            let _lock = other.lock("abc").expect("lock");
            seen.lock().expect("order").push("waiter");
            other.read("abc").is_some()
        });
        // Another digest is not held up.
        drop(cache.lock("other").expect("another digest's lock"));
        std::thread::sleep(Duration::from_millis(200));
        cache.write("abc", b"compiled");
        order.lock().expect("order").push("compiler");
        drop(held);
        assert!(waiter.join().expect("join"), "the waiter reads the artefact written under the lock");
        assert_eq!(*order.lock().expect("order"), vec!["compiler", "waiter"]);
        let files: Vec<String> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(files.len(), 1, "only the artefact stays: {files:?}");
    }

    use super::*;

    fn leb(mut n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn section(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![id];
        out.extend(leb(payload.len() as u64));
        out.extend_from_slice(payload);
        out
    }

    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    /// A component with one core module of one memory and `segments` passive data segments.
    fn data_segments(segments: u64) -> Vec<u8> {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend(section(5, &[1, 0, 1]));
        let mut data = leb(segments);
        for _ in 0..segments {
            data.extend([1, 1, b'x']);
        }
        module.extend(section(11, &data));
        let mut component = COMPONENT.to_vec();
        component.extend(section(1, &module));
        component
    }

    /// Empty components nested `depth` deep.
    fn nested(depth: usize) -> Vec<u8> {
        let mut inner = COMPONENT.to_vec();
        for _ in 0..depth {
            let mut outer = COMPONENT.to_vec();
            outer.extend(section(4, &inner));
            inner = outer;
        }
        inner
    }

    #[test]
    fn the_compiler_child_gets_at_most_three_quarters_of_the_containers_memory() {
        let (gib, mib) = (1u64 << 30, 1u64 << 20);
        assert_eq!(child_memory_bytes(gib, None), gib);
        assert_eq!(child_memory_bytes(gib, Some(512 * mib)), 384 * mib);
        assert_eq!(child_memory_bytes(gib, Some(768 * mib)), 576 * mib);
        assert_eq!(child_memory_bytes(gib, Some(8 * gib)), gib);
        assert_eq!(child_memory_bytes(gib, Some(100 * mib)), 384 * mib);
    }

    #[test]
    fn the_built_ins_fit_the_limits_with_room() {
        for builtin in [super::super::builtin::BuiltinStrategy::Tar, super::super::builtin::BuiltinStrategy::Snapshot, super::super::builtin::BuiltinStrategy::Restic] {
            let shape = check_shape(builtin.wasm(), &ShapeLimits::default()).expect("a built-in fits");
            let limits = ShapeLimits::default();
            assert!(shape.data_segments * 4 < limits.max_data_segments && shape.entries * 4 < limits.max_entries && shape.modules * 4 < limits.max_modules, "{shape:?}");
        }
    }

    #[test]
    fn data_segments_and_nesting_are_counted_before_compiling() {
        let limits = ShapeLimits::default();
        let ok = check_shape(&data_segments(100), &limits).expect("100 segments");
        assert_eq!(ok.data_segments, 100);
        let bomb = data_segments(90_000);
        assert!(bomb.len() < 400_000, "{}", bomb.len());
        assert!(matches!(check_shape(&bomb, &limits), Err(ShapeError::TooComplex(m)) if m.contains("data segments")));
        let ok = check_shape(&nested(4), &limits).expect("4 deep");
        assert_eq!((ok.modules, ok.deepest), (4, 4));
        assert!(matches!(check_shape(&nested(10_000), &limits), Err(ShapeError::TooComplex(m)) if m.contains("nested")));
    }

    #[test]
    fn the_disk_cache_drops_other_engines_and_stays_within_its_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DiskCache { dir: dir.path().to_path_buf(), engine_key: 7, max_bytes: 2500 };
        std::fs::write(dir.path().join(format!("{}-{:016x}.cwasm", "a".repeat(64), 6)), vec![0u8; 100]).expect("old engine");
        for (i, digest) in ["b", "c", "d"].iter().enumerate() {
            std::thread::sleep(std::time::Duration::from_millis(20 * i as u64));
            cache.write(&digest.repeat(64), &vec![1u8; 1000]);
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("e").file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| n.ends_with(&format!("-{:016x}.cwasm", 7))), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with('b')), "the least recently used one went: {names:?}");
        assert!(dir_bytes(dir.path()) <= 2500);
    }
}
