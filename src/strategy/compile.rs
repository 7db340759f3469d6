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
        command.arg("compile-plugin").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
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
}

impl Default for ShapeLimits {
    fn default() -> Self {
        ShapeLimits { max_functions: 20_000, max_function_bytes: 128 * 1024, max_locals: 4_096, max_code_bytes: 1024 * 1024 }
    }
}

/// What the component's code looks like, measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub functions: usize,
    pub largest_function_bytes: usize,
    pub most_locals: u64,
    pub code_bytes: usize,
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
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| ShapeError::Invalid(e.to_string()))? {
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

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

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
            let stale_tmp = name.ends_with(".tmp") && meta.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age.as_secs() > 600);
            if (name.ends_with(".cwasm") && !name.ends_with(&suffix)) || stale_tmp {
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
}

/// Bytes of a directory's files (for tests and measurements).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
