//! The compiled-plugin cache is bounded by the bytes it holds, descriptions included: sixteen
//! versions of a plugin whose `describe()` returns 16 MiB (8 MiB of summary, 8 MiB of schema) grow
//! the process by no more than the configured cap. Its own test binary, so that no other test's
//! allocations move the resident size it measures.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use backup_operator::strategy::{RuntimeConfig, StrategyRuntime};

/// The cache's cap for this test: room for every compiled version (about 150 KB each), and for
/// two of the full descriptions, were they kept.
const CAP: u64 = 32 << 20;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmRSS");
    kib * 1024
}

/// The plugin with a custom section appended: the same code, a new digest (a new version).
fn version(bytes: &[u8], n: u8) -> Arc<[u8]> {
    let mut v = bytes.to_vec();
    v.extend_from_slice(&[0, 3, 1, b'v', n]);
    Arc::from(v)
}

#[tokio::test]
async fn sixteen_versions_of_a_plugin_with_a_16_mib_description_stay_under_the_cache_cap() {
    let verbose = std::fs::read(support::built_plugins("tests/plugins").join("verbose_plugin.wasm")).expect("verbose plugin built");
    // Compiled in a child process, as the operator does: Cranelift's own allocations never count
    // in this process's resident size.
    let compiler = backup_operator::strategy::compile::Compiler { exe: env!("CARGO_BIN_EXE_backup-operator").into(), memory_bytes: 1 << 30, timeout: Duration::from_secs(300) };
    let runtime = StrategyRuntime::new(RuntimeConfig { cache_memory_bytes: CAP, compiler: Some(compiler), ..RuntimeConfig::default() }).expect("runtime");
    // A first version warms the engine and the instance pool; the sixteen after it are measured.
    let first = runtime.load("verbose", version(&verbose, 0), None).await.expect("the verbose plugin loads");
    assert_eq!(first.description.summary.len(), first.description.summary.capacity(), "the summary is shrunk to what is kept");
    assert!(first.description.summary.len() < 8 << 20 && first.description.config_schema.len() < 8 << 20, "the description is bounded");
    drop(first);
    let before = resident_bytes();
    for n in 1..=16u8 {
        let plugin = runtime.load(&format!("verbose-{n}"), version(&verbose, n), None).await.expect("a version loads");
        assert_eq!(plugin.description.name, "verbose");
    }
    let after = resident_bytes();
    let (count, held) = runtime.cache_stats();
    let grown = after.saturating_sub(before);
    support::measured(&format!(
        "16 versions of a plugin describing itself in 16 MiB: resident size {} -> {} MiB (+{:.1} MiB, cap {} MiB); the cache holds {count} versions in {held} bytes",
        before >> 20,
        after >> 20,
        grown as f64 / f64::from(1 << 20),
        CAP >> 20
    ));
    assert!(held <= CAP, "the cache holds {held} bytes, over its cap of {CAP}");
    assert!(grown <= CAP, "16 versions grew the process by {grown} bytes, over the cache's cap of {CAP}");
}
