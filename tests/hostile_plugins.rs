//! The hostile plugin suite: plugins built from tests/plugins/ that loop, hoard memory, trap, ask
//! for privileges, flood output, or target another contract version; plus wrong digests and random
//! bytes. Each is stopped or refused with its own error, and after each one a good plugin still
//! plans normally.

mod support;

use std::sync::Arc;
use std::time::Duration;

use backup_operator::Error;
use backup_operator::strategy::check::PlanViolation;
use backup_operator::strategy::builtin::BuiltinStrategy;
use backup_operator::strategy::{Plugin, PluginLimits, RuntimeConfig, StrategyRuntime};
use support::requests::backup_request;

struct Suite {
    runtime: StrategyRuntime,
    hostile: Arc<Plugin>,
    good: Arc<Plugin>,
}

const DEADLINE: Duration = Duration::from_millis(200);
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
    assert!(matches!(err, Error::PluginTimeout { limit_ms: 200, .. }), "{err}");
    assert!(err.to_string().contains("200 ms deadline"), "{err}");
    s.good_still_plans("spin").await;

    // A policy may lower the deadline, never raise it past the operator's.
    let lower = PluginLimits { deadline: Some(Duration::from_millis(20)), memory_limit_bytes: None };
    let err = s.runtime.plan_backup(s.hostile.clone(), Some(lower), backup_request("spin")).await.unwrap_err();
    assert!(matches!(err, Error::PluginTimeout { limit_ms: 20, .. }), "{err}");
    let higher = PluginLimits { deadline: Some(Duration::from_secs(3600)), memory_limit_bytes: None };
    let err = s.runtime.plan_backup(s.hostile.clone(), Some(higher), backup_request("spin")).await.unwrap_err();
    assert!(matches!(err, Error::PluginTimeout { limit_ms: 200, .. }), "{err}");
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
async fn plans_huge_in_items_or_resources_are_refused_by_count() {
    let s = suite().await;
    let cases: [(&str, fn(&PlanViolation) -> bool); 4] = [
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
    assert!(message.contains("backup:strategy@0.1.0") && message.contains("backup:strategy@0.2.0"), "{message}");
    assert_eq!(err.classify().reason, "PluginIncompatible");
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
