//! A strategy plugin that imports WASI p2, like every component from `cargo component`,
//! `wasm32-wasip2` or C with wasi-libc, and uses it to try what such a plugin could reach: files,
//! sockets, name lookup, the environment, stdin, time, randomness, exit. The config names the
//! attempt; the plugin reports what it saw as a `failed` plan error (so the test reads it), and
//! plans an innocent Job for the attempts that should simply work (output, sleeping).
wit_bindgen::generate!({ path: "wit", world: "backup:wasi-hostile/wasi-hostile", generate_all });

use backup::strategy::types::{
    Action, ArtifactRequest, BackupRequest, Description, JobPlan, Mount, Plan, PlanError, PodPrivileges, Resources,
    Verification,
};
use exports::backup::strategy::strategy::Guest;
use wasi::cli::{environment, exit, stderr, stdin, stdout};
use wasi::clocks::{monotonic_clock, wall_clock};
use wasi::filesystem::preopens;
use wasi::random::{insecure_seed, random};
use wasi::sockets::network::IpAddressFamily;
use wasi::sockets::{instance_network, ip_name_lookup, tcp_create_socket, udp_create_socket};

struct WasiHostile;

fn innocent_job() -> JobPlan {
    JobPlan {
        image: "busybox:latest".into(),
        command: vec!["/bin/sh".into(), "-c".into(), "true".into()],
        args: vec![],
        env: vec![],
        mounts: vec![Mount { volume: "data".into(), path: "/data".into(), read_only: true }],
        resources: Resources { cpu_millicores: None, memory_bytes: None },
        privileges: PodPrivileges {
            privileged: false,
            add_capabilities: vec![],
            host_network: false,
            host_pid: false,
            host_ipc: false,
            automount_service_account_token: false,
            host_paths: vec![],
            run_as_root: false,
        },
        artifact_location: "nothing".into(),
        verification: Verification::None,
    }
}

fn saw(what: String) -> Result<Plan, PlanError> {
    Err(PlanError::Failed(what))
}

/// Opens every preopened directory's `etc/passwd` and `.`: with none preopened there is nothing to
/// open from (WASI p2 has no ambient filesystem).
fn files() -> String {
    let dirs = preopens::get_directories();
    let mut seen = format!("preopens: {}", dirs.len());
    for (dir, name) in &dirs {
        let opened = dir.open_at(
            wasi::filesystem::types::PathFlags::empty(),
            "etc/passwd",
            wasi::filesystem::types::OpenFlags::empty(),
            wasi::filesystem::types::DescriptorFlags::READ,
        );
        seen.push_str(&format!("; {name}: {}", if opened.is_ok() { "opened" } else { "refused" }));
    }
    seen
}

/// A TCP and a UDP socket (to connect to the API server), and a name lookup.
fn sockets() -> String {
    let tcp = match tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
        Ok(_) => "created".to_string(),
        Err(e) => e.name().to_string(),
    };
    let udp = match udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4) {
        Ok(_) => "created".to_string(),
        Err(e) => e.name().to_string(),
    };
    let network = instance_network::instance_network();
    let lookup = match ip_name_lookup::resolve_addresses(&network, "kubernetes.default.svc") {
        Ok(_) => "resolving".to_string(),
        Err(e) => e.name().to_string(),
    };
    format!("tcp: {tcp}; udp: {udp}; lookup: {lookup}")
}

fn environment() -> String {
    let stdin_read = match stdin::get_stdin().blocking_read(1024) {
        Ok(bytes) => format!("{} bytes", bytes.len()),
        Err(_) => "closed".into(),
    };
    format!(
        "env: {}; args: {}; cwd: {}; stdin: {stdin_read}",
        environment::get_environment().len(),
        environment::get_arguments().len(),
        environment::initial_cwd().unwrap_or_else(|| "none".into())
    )
}

/// Sleeps an hour by the monotonic clock; reads both clocks before and after.
fn time() -> String {
    let wall = wall_clock::now();
    let before = monotonic_clock::now();
    monotonic_clock::subscribe_duration(3_600 * 1_000_000_000).block();
    let after = monotonic_clock::now();
    format!("wall: {}; monotonic: {before} -> {after}; slept", wall.seconds)
}

fn randomness() -> String {
    let bytes = random::get_random_bytes(8);
    let (a, b) = insecure_seed::insecure_seed();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("random: {hex}; seed: {a:x}{b:x}")
}

/// Writes far more than the host keeps, to both streams.
fn flood_output() {
    let line = format!("{}\n", "y".repeat(1023));
    for stream in [stdout::get_stdout(), stderr::get_stderr()] {
        for _ in 0..1_000 {
            let _ = stream.blocking_write_and_flush(line.as_bytes());
        }
    }
}

impl Guest for WasiHostile {
    fn describe() -> Description {
        Description {
            name: "wasi-hostile".into(),
            version: "0.1.0".into(),
            summary: "tries WASI as configured".into(),
            actions: vec![Action::Backup],
            config_schema: String::new(),
        }
    }

    fn validate_config(_config: String) -> Result<(), PlanError> {
        Ok(())
    }

    fn plan_backup(request: BackupRequest) -> Result<Plan, PlanError> {
        match request.policy.config.trim() {
            "files" => saw(files()),
            "sockets" => saw(sockets()),
            "environment" => saw(environment()),
            "time" => saw(time()),
            "random" => saw(randomness()),
            "exit" => {
                exit::exit(Err(()));
                saw("still running after exit".into())
            }
            "output" => {
                flood_output();
                Ok(Plan::Job(innocent_job()))
            }
            _ => Ok(Plan::Job(innocent_job())),
        }
    }

    fn plan_restore(_request: ArtifactRequest) -> Result<Plan, PlanError> {
        Err(PlanError::Unsupported(Action::Restore))
    }

    fn plan_prune(_request: ArtifactRequest) -> Result<Plan, PlanError> {
        Err(PlanError::Unsupported(Action::Prune))
    }

    fn plan_verify(_request: ArtifactRequest) -> Result<Plan, PlanError> {
        Err(PlanError::Unsupported(Action::Verify))
    }
}

export!(WasiHostile);
