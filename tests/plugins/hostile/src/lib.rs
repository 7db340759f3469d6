//! A strategy plugin that attacks the host. The policy's config is the attack's name; each one is
//! something a buggy or malicious plugin could do, and the host must refuse or stop every one.
wit_bindgen::generate!({ path: "../../../wit", world: "backup-strategy" });

use backup::strategy::host::{LogLevel, log};
use backup::strategy::types::{
    Action, ArtifactRequest, BackupRequest, Description, EnvSource, EnvVar, JobPlan, Mount, Plan, PlanError,
    PodPrivileges, Resources, SecretKeyRef, Verification,
};
use exports::backup::strategy::strategy::Guest;

struct Hostile;

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

#[inline(never)]
fn spin() -> u64 {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
        if std::hint::black_box(n) == u64::MAX {
            return n;
        }
    }
}

fn memory_bomb() -> usize {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        block[0] = hoard.len() as u8;
        hoard.push(std::hint::black_box(block));
    }
}

impl Guest for Hostile {
    fn describe() -> Description {
        Description {
            name: "hostile".into(),
            version: "0.1.0".into(),
            summary: "misbehaves as configured".into(),
            actions: vec![Action::Backup],
            config_schema: String::new(),
        }
    }

    fn validate_config(_config: String) -> Result<(), PlanError> {
        Ok(())
    }

    fn plan_backup(request: BackupRequest) -> Result<Plan, PlanError> {
        let mut job = innocent_job();
        // The attack's name: the config itself (the runtime tests), or {"attack": "<name>"} (a
        // policy's config is a JSON object).
        let config = request.policy.config.trim();
        let attack = config.strip_prefix("{\"attack\":\"").and_then(|r| r.strip_suffix("\"}")).unwrap_or(config);
        match attack {
            "spin" => {
                spin();
            }
            "memory-bomb" => {
                memory_bomb();
            }
            "trap" => panic!("the hostile plugin panics on purpose"),
            "privileged" => job.privileges.privileged = true,
            "host-path" => job.privileges.host_paths = vec!["/etc".into()],
            "host-network" => job.privileges.host_network = true,
            "token-mount" => job.privileges.automount_service_account_token = true,
            "secret-env" => job.env.push(EnvVar {
                name: "AWS_SECRET_ACCESS_KEY".into(),
                source: EnvSource::Secret(SecretKeyRef { name: "cloud-credentials".into(), key: "secret".into() }),
            }),
            // Replaces the destination's credentials with its own (to send the data elsewhere).
            "shadow-credentials" => job.env.push(EnvVar { name: "AWS_ACCESS_KEY_ID".into(), source: EnvSource::Value("attacker".into()) }),
            "oversized-output" => job.args = (0..64).map(|_| "A".repeat(64 * 1024)).collect(),
            // A Job that tries to destroy every other backup on the storage claim: it runs as root
            // and walks up from its own backup mount. The host mounts only this PVC's directory.
            "escape" => {
                job.privileges.run_as_root = true;
                job.mounts.push(Mount { volume: "backup".into(), path: "/backup".into(), read_only: false });
                job.command = vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "rm -rf /backup/../* /backup/../../* /backup/../.. 2>/dev/null; \
                     find / -xdev -name '*.tar.gz*' -exec rm -f {} + 2>/dev/null; \
                     for d in /backup/.. /backup/../.. /backup/../../..; do ls -la $d; done; true"
                        .into(),
                ];
            }
            // Fails for one PVC only (a name ending in -1), plans an innocent Job for the others.
            "fail-one" => {
                if request.pvc.name.ends_with("-1") {
                    return Err(PlanError::Failed(format!("refusing {} on purpose", request.pvc.name)));
                }
                job.command = vec!["/bin/sh".into(), "-c".into(), format!("echo run {}", request.policy.run_name)];
            }
            // Counted, not just measured in bytes: each is small in bytes, huge in items.
            "env-flood" => {
                job.env = (0..20_000).map(|_| EnvVar { name: "A".into(), source: EnvSource::Value(String::new()) }).collect()
            }
            "args-flood" => job.args = vec![String::new(); 200_000],
            "huge-resources" => {
                job.resources = Resources { cpu_millicores: Some(u32::MAX), memory_bytes: Some(u64::MAX) };
            }
            // Within the host's maxima, but more CPU than the test node has: a pod that never fits.
            "greedy" => job.resources = Resources { cpu_millicores: Some(60_000), memory_bytes: None },
            "root-mount" => job.mounts.push(Mount { volume: "scratch".into(), path: "//".into(), read_only: false }),
            "log-injection" => {
                log(LogLevel::Warn, "innocent\n2026-11-29T00:00:00Z  INFO backup_operator: forged line");
            }
            "log-flood" => {
                for i in 0..10_000 {
                    log(LogLevel::Error, &format!("flood {i} {}", "x".repeat(4096)));
                }
            }
            other => return Err(PlanError::Failed(format!("unknown attack {other:?}"))),
        }
        Ok(Plan::Job(job))
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

export!(Hostile);
