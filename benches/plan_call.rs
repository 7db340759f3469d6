//! What a strategy call costs. `plan_backup` through the sandbox (fresh Store, instantiate from the
//! pre-instantiated component, call, check the plan) against the same planning logic as a native
//! function; and loading a plugin cold (compile) and from the on-disk cache.
//!
//! cargo bench --bench plan_call

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use backup_operator::strategy::builtin::BuiltinStrategy;
use backup_operator::strategy::{RuntimeConfig, StrategyRuntime};
use backup_strategy_tar::plan::{Target, parse_config, plan_backup};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

#[path = "../tests/support/requests.rs"]
mod requests;

fn plan_call(c: &mut Criterion) {
    let runtime = StrategyRuntime::new(RuntimeConfig::default()).expect("runtime");
    let tar = runtime.load_blocking("tar", BuiltinStrategy::Tar.wasm(), None).expect("load tar");
    let request = requests::backup_request(r#"{"compression":"gzip"}"#);

    let mut group = c.benchmark_group("plan_backup");
    group.bench_function("wasm_fresh_store", |b| {
        b.iter(|| runtime.plan_backup_blocking(&tar, None, std::hint::black_box(&request)).expect("plan"))
    });
    // The floor under any call: a fresh store, instantiation, a call that does almost nothing.
    group.bench_function("wasm_validate_empty_config", |b| {
        b.iter(|| runtime.validate_config_blocking(&tar, None, std::hint::black_box("")).expect("valid"))
    });
    group.bench_function("native", |b| {
        b.iter(|| {
            let r = std::hint::black_box(&request);
            let config = parse_config(&r.policy.config).expect("config");
            let target = Target { image: &r.policy.backup_image, remote: None };
            plan_backup(&target, &r.policy.scheduled_stamp, &config)
        })
    });
    group.finish();
}

fn plugin_load(c: &mut Criterion) {
    let wasm: Arc<[u8]> = Arc::from(BuiltinStrategy::Tar.wasm());
    let cache = tempfile::tempdir().expect("tempdir");
    let cached_config = RuntimeConfig { cache_dir: Some(cache.path().to_path_buf()), ..RuntimeConfig::default() };
    // Populate the on-disk cache once.
    StrategyRuntime::new(cached_config.clone()).expect("runtime").load_blocking("tar", &wasm, None).expect("load");

    let mut group = c.benchmark_group("plugin_load");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("cold_compile", |b| {
        b.iter_batched(
            || StrategyRuntime::new(RuntimeConfig::default()).expect("runtime"),
            |rt| rt.load_blocking("tar", &wasm, None).expect("load"),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("from_disk_cache", |b| {
        b.iter_batched(
            || StrategyRuntime::new(cached_config.clone()).expect("runtime"),
            |rt| rt.load_blocking("tar", &wasm, None).expect("load"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, plan_call, plugin_load);
criterion_main!(benches);
