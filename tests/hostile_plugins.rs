//! The hostile plugin suite: plugins built from tests/plugins/ that loop, hoard memory, trap, ask
//! for privileges, flood output, or target another contract version; plus wrong digests and random
//! bytes. Each is stopped or refused with its own error, and after each one a good plugin still
//! plans normally.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use backup_operator::strategy::Error;
use backup_operator::strategy::check::PlanViolation;
use backup_operator::strategy::builtin::BuiltinStrategy;
use backup_operator::strategy::{Plugin, PluginLimits, RuntimeConfig, StrategyRuntime};
use support::requests::backup_request;

struct Suite {
    runtime: StrategyRuntime,
    hostile: Arc<Plugin>,
    good: Arc<Plugin>,
}

/// Long enough that the floods (megabytes through the sandbox) finish on a loaded 2-core CI
/// machine (at 200 ms, two of them once timed out there); the loops wait it out.
const DEADLINE: Duration = Duration::from_secs(2);
const MEMORY: u64 = 16 * 1024 * 1024;

async fn suite() -> Suite {
    let dir = support::built_plugins("tests/plugins");
    let runtime = StrategyRuntime::new(RuntimeConfig { deadline: DEADLINE, memory_limit_bytes: MEMORY, ..RuntimeConfig::default() })
        .expect("runtime");
    let bytes = std::fs::read(dir.join("hostile_plugin.wasm")).expect("hostile plugin built");
    let hostile = runtime.load("hostile", Arc::from(bytes), None).await.expect("hostile plugin loads");
    let good = runtime.load("tar", Arc::from(BuiltinStrategy::Tar.wasm()), None).await.expect("tar loads");
    Suite { runtime, hostile, good }
}

impl Suite {
    async fn attack(&self, attack: &str) -> Error {
        self.runtime.plan_backup(self.hostile.clone(), None, backup_request(attack)).await.expect_err(attack)
    }

    /// After every attack, the good plugin still plans.
    async fn good_still_plans(&self, after: &str) {
        self.runtime
            .plan_backup(self.good.clone(), None, backup_request("{}"))
            .await
            .unwrap_or_else(|e| panic!("after {after}, the good plugin failed: {e}"));
    }
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_the_deadline() {
    let s = suite().await;
    // The loop never ends by itself: any return proves the deadline fired.
    let err = s.attack("spin").await;
    assert!(matches!(err, Error::PluginTimeout { limit_ms: 2000, .. }), "{err}");
    assert!(err.to_string().contains("2000 ms deadline"), "{err}");
    s.good_still_plans("spin").await;

    // A policy may lower the deadline, never raise it past the operator's.
    let lower = PluginLimits { deadline: Some(Duration::from_millis(20)), memory_limit_bytes: None };
    let err = s.runtime.plan_backup(s.hostile.clone(), Some(lower), backup_request("spin")).await.unwrap_err();
    assert!(matches!(err, Error::PluginTimeout { limit_ms: 20, .. }), "{err}");
    let higher = PluginLimits { deadline: Some(Duration::from_secs(3600)), memory_limit_bytes: None };
    let err = s.runtime.plan_backup(s.hostile.clone(), Some(higher), backup_request("spin")).await.unwrap_err();
    assert!(matches!(err, Error::PluginTimeout { limit_ms: 2000, .. }), "{err}");
    s.good_still_plans("spin with overrides").await;
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_at_the_cap() {
    let s = suite().await;
    let err = s.attack("memory-bomb").await;
    assert!(matches!(err, Error::PluginMemoryLimit { limit_bytes: MEMORY, .. }), "{err}");
    s.good_still_plans("memory-bomb").await;
    let lower = PluginLimits { memory_limit_bytes: Some(4 * 1024 * 1024), deadline: None };
    let err = s.runtime.plan_backup(s.hostile.clone(), Some(lower), backup_request("memory-bomb")).await.unwrap_err();
    assert!(matches!(err, Error::PluginMemoryLimit { limit_bytes: 4194304, .. }), "{err}");
    s.good_still_plans("memory-bomb with a lower cap").await;
}

#[tokio::test]
async fn a_trap_is_reported_with_the_plugin_and_digest() {
    let s = suite().await;
    let err = s.attack("trap").await;
    let Error::PluginTrap { plugin, .. } = &err else { panic!("expected a trap: {err}") };
    assert_eq!(plugin.name, "hostile");
    assert_eq!(plugin.digest, s.hostile.id.digest);
    assert!(err.to_string().contains(&s.hostile.id.digest[..12]), "{err}");
    s.good_still_plans("trap").await;
}

#[tokio::test]
async fn escalating_plans_are_refused_each_with_its_violation() {
    let s = suite().await;
    let cases = [
        ("privileged", PlanViolation::Privileged),
        ("host-path", PlanViolation::HostPath("/etc".into())),
        ("host-network", PlanViolation::HostNamespace("network")),
        ("token-mount", PlanViolation::ServiceAccountToken),
        ("secret-env", PlanViolation::SecretEnv("AWS_SECRET_ACCESS_KEY".into())),
        ("shadow-credentials", PlanViolation::ReservedEnv("AWS_ACCESS_KEY_ID".into())),
    ];
    for (attack, want) in cases {
        let err = s.attack(attack).await;
        match &err {
            Error::PlanRefused { violation, plugin } => {
                assert_eq!(violation, &want, "{attack}");
                assert_eq!(plugin.name, "hostile");
            }
            other => panic!("{attack}: expected a refused plan, got {other}"),
        }
        s.good_still_plans(attack).await;
    }
}

#[tokio::test]
async fn a_plan_for_object_storage_cannot_mount_a_backup_volume() {
    use backup_operator::strategy::bindings::types::{Destination, DestinationKind, S3Destination};
    let s = suite().await;
    let mut request = backup_request("escape");
    request.policy.destination = Destination {
        name: "offsite".into(),
        kind: DestinationKind::S3(S3Destination {
            endpoint: "http://s3.example:9000".into(),
            bucket: "backups".into(),
            prefix: "prod/db-backup/data-db-0".into(),
            region: "us-east-1".into(),
            access_key_id_env: "AWS_ACCESS_KEY_ID".into(),
            secret_access_key_env: "AWS_SECRET_ACCESS_KEY".into(),
            ca_file: None,
        }),
    };
    match s.runtime.plan_backup(s.hostile.clone(), None, request).await {
        Err(Error::PlanRefused { violation, .. }) => assert_eq!(violation, PlanViolation::NoBackupVolume("offsite".into())),
        other => panic!("expected a refused plan, got {other:?}"),
    }
    // The same attack against a claim destination plans (the host confines it to its directory).
    assert!(s.runtime.plan_backup(s.hostile.clone(), None, backup_request("escape")).await.is_ok());
}

#[tokio::test]
async fn plans_huge_in_items_or_resources_are_refused_by_count() {
    let s = suite().await;
    type Case = (&'static str, fn(&PlanViolation) -> bool);
    let cases: [Case; 4] = [
        ("env-flood", |v| matches!(v, PlanViolation::TooMany { what: "env vars", count: 20_000, .. })),
        ("args-flood", |v| matches!(v, PlanViolation::TooMany { what: "command and args items", .. })),
        ("huge-resources", |v| matches!(v, PlanViolation::BadResources(m) if m.contains("millicores"))),
        ("root-mount", |v| matches!(v, PlanViolation::BadMountPath(p) if p == "//")),
    ];
    for (attack, want) in cases {
        match s.attack(attack).await {
            Error::PlanRefused { violation, .. } => assert!(want(&violation), "{attack}: {violation}"),
            other => panic!("{attack}: expected a refused plan, got {other}"),
        }
        s.good_still_plans(attack).await;
    }
    // A log line with a newline is one escaped line, and the call completes.
    s.runtime.plan_backup(s.hostile.clone(), None, backup_request("log-injection")).await.expect("log-injection plans an innocent job");
}

#[tokio::test]
async fn oversized_output_is_refused() {
    let s = suite().await;
    let err = s.attack("oversized-output").await;
    assert!(
        matches!(err, Error::PlanRefused { violation: PlanViolation::PlanTooLarge { size, .. }, .. } if size >= 4 * 1024 * 1024),
        "{err}"
    );
    s.good_still_plans("oversized-output").await;
}

#[tokio::test]
async fn a_log_flood_is_capped_and_the_call_completes() {
    let s = suite().await;
    let plan = s.runtime.plan_backup(s.hostile.clone(), None, backup_request("log-flood")).await;
    // 10,000 lines of 4 KiB either finish under the deadline (logged lines capped) or time out;
    // both leave the operator serving.
    match plan {
        Ok(_) | Err(Error::PluginTimeout { .. }) => {}
        Err(other) => panic!("log flood: {other}"),
    }
    s.good_still_plans("log-flood").await;
}

#[tokio::test]
async fn a_component_for_the_previous_wit_version_is_incompatible_naming_both() {
    let s = suite().await;
    let dir = support::built_plugins("tests/plugins");
    let bytes = std::fs::read(dir.join("other_wit_plugin.wasm")).expect("other-wit plugin built");
    let err = s.runtime.load("other-wit", Arc::from(bytes), None).await.unwrap_err();
    assert!(matches!(&err, Error::PluginIncompatible { found, .. } if found == "backup:strategy@0.1.0"), "{err}");
    let message = err.to_string();
    assert!(message.contains("backup:strategy@0.1.0") && message.contains("backup:strategy@0.3.0"), "{message}");
    assert_eq!(backup_operator::Error::from(err.clone()).classify().reason, "PluginIncompatible");
    s.good_still_plans("other-wit").await;
}

#[tokio::test]
async fn a_wrong_sha256_is_refused_before_compiling() {
    let s = suite().await;
    let wrong = "0".repeat(64);
    let err = s.runtime.load("tar-pinned", Arc::from(BuiltinStrategy::Tar.wasm()), Some(&wrong)).await.unwrap_err();
    assert!(matches!(&err, Error::PluginDigestMismatch { expected, actual, .. } if *expected == wrong && *actual == s.good.id.digest), "{err}");
    // The right pin loads, in either case.
    let pin = s.good.id.digest.to_uppercase();
    s.runtime.load("tar-pinned", Arc::from(BuiltinStrategy::Tar.wasm()), Some(&pin)).await.expect("right pin");
    s.good_still_plans("wrong sha256").await;
}

#[tokio::test]
async fn random_bytes_and_oversized_plugins_are_refused() {
    let s = suite().await;
    // Deterministic pseudo-random bytes (xorshift), so a failure reproduces.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let err = s.runtime.load("random", Arc::from(random), None).await.unwrap_err();
    assert!(matches!(err, Error::PluginInvalid { .. }), "{err}");
    // A core module is not a component either.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let err = s.runtime.load("core-module", Arc::from(core_module), None).await.unwrap_err();
    assert!(matches!(err, Error::PluginInvalid { .. }), "{err}");
    let huge = vec![0u8; 1024 * 1024 + 1];
    let err = s.runtime.load("huge", Arc::from(huge), None).await.unwrap_err();
    assert!(matches!(err, Error::PluginTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("1 MiB"), "{err}");
    s.good_still_plans("random bytes").await;
}

#[tokio::test]
async fn attacks_running_together_do_not_stop_a_good_plugin() {
    let s = suite().await;
    let mut calls = Vec::new();
    for attack in ["spin", "memory-bomb", "spin", "trap"] {
        let rt = s.runtime.clone();
        let hostile = s.hostile.clone();
        calls.push(tokio::spawn(async move { rt.plan_backup(hostile, None, backup_request(attack)).await }));
    }
    s.good_still_plans("concurrent attacks").await;
    for call in calls {
        assert!(call.await.expect("join").is_err());
    }
}

#[tokio::test]
async fn components_are_measured_before_compiling_and_failures_are_remembered() {
    use backup_operator::strategy::compile::{ShapeLimits, check_shape};
    // The built-ins, measured: the documented limits leave them plenty of room.
    for builtin in [BuiltinStrategy::Tar, BuiltinStrategy::Snapshot] {
        let shape = check_shape(builtin.wasm(), &ShapeLimits::default()).expect("a built-in fits the limits");
        assert!(shape.functions > 10 && shape.code_bytes > 1000, "{shape:?}");
        eprintln!("{}: {shape:?}", builtin.name());
    }
    // Lower limits refuse the same component before Cranelift sees it, with the measure named.
    let tight = ShapeLimits { max_function_bytes: 64, ..ShapeLimits::default() };
    let runtime = StrategyRuntime::new(RuntimeConfig { shape_limits: tight, ..RuntimeConfig::default() }).expect("runtime");
    let err = runtime.load("tar", Arc::from(BuiltinStrategy::Tar.wasm()), None).await.unwrap_err();
    assert!(matches!(&err, Error::PluginTooComplex { message, .. } if message.contains("over the limit of 64")), "{err}");
    assert_eq!(backup_operator::Error::from(err.clone()).classify().reason, "PluginInvalid");
    // The same bytes again: the remembered failure, not another attempt.
    let again = runtime.load("tar-again", Arc::from(BuiltinStrategy::Tar.wasm()), None).await.unwrap_err();
    assert!(matches!(again, Error::PluginTooComplex { .. }), "{again}");
}

#[tokio::test]
async fn one_compilation_per_digest_and_caches_bounded_in_bytes() {
    // How big one compiled tar plugin is on disk.
    let probe = tempfile::tempdir().expect("tempdir");
    StrategyRuntime::new(RuntimeConfig { cache_dir: Some(probe.path().to_path_buf()), ..RuntimeConfig::default() })
        .expect("runtime")
        .load("tar", Arc::from(BuiltinStrategy::Tar.wasm()), None)
        .await
        .expect("load");
    let one = backup_operator::strategy::compile::dir_bytes(probe.path());
    let dir = tempfile::tempdir().expect("tempdir");
    // Room for one compiled plugin in memory, and one and a half on disk.
    let runtime = StrategyRuntime::new(RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        cache_memory_bytes: 1,
        cache_disk_bytes: one + one / 2,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    // Eight loads of the same bytes at once: one compilation, one artefact, no temporary left.
    let loads: Vec<_> = (0..8)
        .map(|i| {
            let rt = runtime.clone();
            tokio::spawn(async move { rt.load(&format!("tar-{i}"), Arc::from(BuiltinStrategy::Tar.wasm()), None).await })
        })
        .collect();
    for load in loads {
        load.await.expect("join").expect("load");
    }
    let files: Vec<String> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("e").file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    // Twenty versions later (each a different digest), memory and disk hold one version.
    let snapshot = runtime.load("snapshot", Arc::from(BuiltinStrategy::Snapshot.wasm()), None).await.expect("load");
    let mut versions = Vec::new();
    for i in 0..20u8 {
        // The same component with a custom section appended: valid, and a new digest each time.
        let mut bytes = BuiltinStrategy::Tar.wasm().to_vec();
        bytes.extend_from_slice(&[0, 3, 1, b'v', i]);
        versions.push(runtime.load(&format!("v{i}"), Arc::from(bytes), None).await.expect("version loads"));
    }
    let (count, bytes) = runtime.cache_stats();
    assert_eq!(count, 1, "one compiled plugin in memory ({bytes} bytes)");
    let on_disk = backup_operator::strategy::compile::dir_bytes(dir.path());
    let files = std::fs::read_dir(dir.path()).expect("ls").count();
    assert!(on_disk <= one + one / 2 && files == 1, "the disk cache stays within its bytes: {files} files, {on_disk} bytes");
    support::measured(&format!("20 plugin versions: {count} compiled plugin in memory ({bytes} bytes), {files} on disk ({on_disk} bytes, bound {})", one + one / 2));
    drop((snapshot, versions));
}

fn compiler(memory_bytes: u64, timeout: Duration) -> backup_operator::strategy::compile::Compiler {
    backup_operator::strategy::compile::Compiler { exe: env!("CARGO_BIN_EXE_backup-operator").into(), memory_bytes, timeout }
}

#[tokio::test]
async fn compiling_happens_in_a_child_process_within_a_deadline_and_a_memory_limit() {
    // A custom plugin: the tar component with a custom section appended (the built-ins' own
    // digests compile in process).
    let mut custom = BuiltinStrategy::Tar.wasm().to_vec();
    custom.extend_from_slice(&[0, 3, 1, b'c', 1]);
    let custom: Arc<[u8]> = Arc::from(custom);
    // The artefact the child makes loads into the operator's pooled engine, and plans.
    let runtime = StrategyRuntime::new(RuntimeConfig { compiler: Some(compiler(1 << 30, Duration::from_secs(120))), ..RuntimeConfig::default() })
        .expect("runtime");
    let tar = runtime.load("custom", custom.clone(), None).await.expect("compiled by the child");
    runtime.plan_backup(tar, None, backup_request("{}")).await.expect("plans");

    let hasty = StrategyRuntime::new(RuntimeConfig { compiler: Some(compiler(1 << 30, Duration::from_millis(1))), ..RuntimeConfig::default() })
        .expect("runtime");
    let err = hasty.load("custom", custom.clone(), None).await.unwrap_err();
    assert!(matches!(&err, Error::PluginCompileTimeout { message, .. } if message.contains("longer than 1 ms")), "{err}");
    assert_eq!(backup_operator::Error::from(err.clone()).classify().reason, "PluginCompileTimeout");
    // The built-in itself is trusted: compiled in process whatever the child's limits.
    hasty.load("tar", Arc::from(BuiltinStrategy::Tar.wasm()), None).await.expect("built-in");

    let starved = StrategyRuntime::new(RuntimeConfig { compiler: Some(compiler(32 << 20, Duration::from_secs(60))), ..RuntimeConfig::default() })
        .expect("runtime");
    let err = starved.load("custom", custom, None).await.unwrap_err();
    assert!(matches!(&err, Error::PluginCompileMemory { message, .. } if message.contains("the compiler stopped")), "{err}");
    assert_eq!(backup_operator::Error::from(err.clone()).classify().reason, "PluginCompileMemory");
}

#[tokio::test]
async fn a_component_made_to_be_slow_to_compile_is_refused_before_compiling() {
    // 100,000 locals in one function: under 1 KiB, and the kind of input whose compilation grows
    // with size times locals.
    let bomb = support::components::component(1, 100_000, 64);
    assert!(bomb.len() < 1024, "{}", bomb.len());
    let runtime = StrategyRuntime::new(RuntimeConfig { compiler: Some(compiler(1 << 30, Duration::from_secs(60))), ..RuntimeConfig::default() })
        .expect("runtime");
    let started = std::time::Instant::now();
    let err = runtime.load("bomb", Arc::from(bomb), None).await.unwrap_err();
    assert!(matches!(&err, Error::PluginTooComplex { message, .. } if message.contains("more than 4096 locals")), "{err}");
    support::measured(&format!("a 100,000-local component refused in {:?}", started.elapsed()));
    // The largest component the limits accept (7 functions of ~128 KiB, 4,096 locals each):
    // compiled in the child, or stopped by its deadline; measured either way.
    let largest = support::components::component(7, 4096, 26_000);
    let shape = backup_operator::strategy::compile::check_shape(&largest, &Default::default()).expect("within the limits");
    // The compiler child on its own, timed, with its own peak memory (wait4's rusage).
    let started = std::time::Instant::now();
    // Waited for with wait4 below (for its resource usage), which clippy does not see.
    #[allow(clippy::zombie_processes)]
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_backup-operator"))
        .arg("compile-plugin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("compiler child");
    {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(&largest).expect("write");
    }
    // SAFETY: wait4 writes the exit status and the resource usage into the values it is given.
    let (status, peak_kib) = unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage);
        (status, usage.ru_maxrss)
    };
    support::measured(&format!(
        "largest accepted component ({} bytes, {shape:?}): compiled by the child in {:?} (exit status {status}), peak RSS {} MiB",
        largest.len(),
        started.elapsed(),
        peak_kib / 1024
    ));
    let result = runtime.load("largest", Arc::from(largest.clone()), None).await;
    match result {
        Ok(_) | Err(Error::PluginCompileTimeout { .. } | Error::PluginCompileMemory { .. } | Error::PluginIncompatible { .. }) => {}
        Err(other) => panic!("the largest component: {other}"),
    }
}

/// A component that imports WASI p2 loads and plans; what it tries through WASI gets an error
/// value or nothing (each attempt reports what it saw as its plan error), never access.
#[tokio::test]
async fn wasi_is_linked_deny_all() {
    let s = suite().await;
    let dir = support::built_plugins("tests/plugins");
    let bytes = std::fs::read(dir.join("wasi_hostile_plugin.wasm")).expect("wasi-hostile plugin built");
    let plugin = s.runtime.load("wasi-hostile", Arc::from(bytes), None).await.expect("a component importing WASI loads");
    let saw = |attempt: &'static str| {
        let (runtime, plugin) = (s.runtime.clone(), plugin.clone());
        async move {
            match runtime.plan_backup(plugin, None, backup_request(attempt)).await {
                Err(Error::PluginPlanFailed { message, .. }) => message,
                other => panic!("{attempt}: {other:?}"),
            }
        }
    };
    // No preopened directory: nothing to open a file from.
    assert_eq!(saw("files").await, "preopens: 0");
    // No socket of either kind, no name lookup (wasmtime answers a refused lookup so).
    assert_eq!(saw("sockets").await, "tcp: access-denied; udp: access-denied; lookup: permanent-resolver-failure");
    // No environment, arguments or working directory; stdin closed.
    assert_eq!(saw("environment").await, "env: 0; args: 0; cwd: none; stdin: closed");
    // Frozen clocks: an hour's sleep returns at once (it cannot hold a call slot) and no time passes.
    assert_eq!(saw("time").await, "wall: 946684800; monotonic: 0 -> 0; slept");
    // Randomness is a fixed sequence: the same request gets the same plan.
    assert_eq!(saw("random").await, "random: c3c3c3c3c3c3c3c3; seed: 00");
    assert_eq!(saw("random").await, "random: c3c3c3c3c3c3c3c3; seed: 00");
    // Exiting ends the call as a trap.
    let exited = s.runtime.plan_backup(plugin.clone(), None, backup_request("exit")).await.expect_err("exit");
    assert!(matches!(exited, Error::PluginTrap { .. }), "{exited}");
    // 2 MiB to stdout and stderr: kept up to the cap, the plan still made.
    s.runtime.plan_backup(plugin.clone(), None, backup_request("output")).await.expect("output flood still plans");
    s.runtime.plan_backup(plugin.clone(), None, backup_request("{}")).await.expect("plans");
    s.good_still_plans("wasi").await;
}
