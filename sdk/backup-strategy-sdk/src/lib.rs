//! Write backup-operator strategy plugins without the boilerplate.
//!
//! The `backup:strategy@0.3.0` contract is bundled (`wit/`, checked against the operator's copy by
//! its tests), so a plugin outside the operator's repository needs no path to it. This crate
//! re-exports the contract's types, the [`Strategy`] trait a plugin implements and the
//! [`plugin!`] macro that makes it the component's export, and adds:
//!
//! - plan builders with safe defaults: [`JobPlan::shell`], [`Mount::data`], [`Mount::backup`],
//!   [`Mount::scratch`], [`PodPrivileges::none`] and [`PodPrivileges::root`];
//! - [`parse_config`]: the policy's JSON config into your own type, or `invalid-config` with
//!   the parser's words;
//! - [`testing`]: sample requests, so that a planner is unit-tested natively with `cargo test`.
//!
//! ```ignore
//! use backup_strategy_sdk::*;
//! struct Copy;
//! impl Strategy for Copy { /* describe, validate_config, plan_backup, ... */ }
//! backup_strategy_sdk::plugin!(Copy);
//! ```

wit_bindgen::generate!({
    path: "wit",
    world: "backup-strategy",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "backup_strategy_sdk",
    additional_derives: [PartialEq, Eq],
});

pub use backup::strategy::host::{LogLevel, log};
pub use backup::strategy::types::*;
pub use exports::backup::strategy::strategy::Guest as Strategy;

/// Makes `$t` (a type implementing [`Strategy`]) the component's export when building for
/// WebAssembly; natively (unit tests) it does nothing, since the export names are not valid
/// symbols there.
#[macro_export]
macro_rules! plugin {
    ($t:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::export!($t);
    };
}

/// The contract this SDK implements.
pub const CONTRACT: &str = "backup:strategy@0.3.0";

impl PodPrivileges {
    /// Nothing beyond the defaults: the Job runs as an unprivileged user.
    pub fn none() -> Self {
        PodPrivileges {
            privileged: false,
            add_capabilities: Vec::new(),
            host_network: false,
            host_pid: false,
            host_ipc: false,
            automount_service_account_token: false,
            host_paths: Vec::new(),
            run_as_root: false,
        }
    }

    /// Root (with the few capabilities the host grants), to read and restore files of every
    /// owner; still nothing the host refuses.
    pub fn root() -> Self {
        PodPrivileges { run_as_root: true, ..PodPrivileges::none() }
    }
}

impl Mount {
    /// The PVC, at /data: read-only except in a restore plan.
    pub fn data(read_only: bool) -> Self {
        Mount { volume: "data".into(), path: "/data".into(), read_only }
    }

    /// This PVC's own directory on a claim destination, at /backup (none for object storage).
    pub fn backup(read_only: bool) -> Self {
        Mount { volume: "backup".into(), path: "/backup".into(), read_only }
    }

    /// An emptyDir for temporary files, at /scratch (the root filesystem is read-only).
    pub fn scratch() -> Self {
        Mount { volume: "scratch".into(), path: "/scratch".into(), read_only: false }
    }
}

impl JobPlan {
    /// A Job running `script` with `/bin/sh -c` in `image`, writing `artifact` (relative to the
    /// PVC's own directory): no env, no mounts yet, the namespace's default resources, no
    /// privileges, and no verification until [`JobPlan::verified_by`] says how.
    pub fn shell(image: impl Into<String>, script: impl Into<String>, artifact: impl Into<String>) -> Self {
        JobPlan {
            image: image.into(),
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            args: Vec::new(),
            env: Vec::new(),
            mounts: Vec::new(),
            resources: Resources { cpu_millicores: None, memory_bytes: None },
            privileges: PodPrivileges::none(),
            artifact_location: artifact.into(),
            verification: Verification::None,
        }
    }

    /// Adds a plain environment variable: pass values this way, never spliced into the script.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push(EnvVar { name: name.into(), source: EnvSource::Value(value.into()) });
        self
    }

    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Mounts `backup` on a claim destination, or `scratch` for object storage (which has no
    /// backup volume), so that one plan works for both.
    pub fn storage(self, destination: &Destination, read_only: bool) -> Self {
        match destination.kind {
            DestinationKind::Claim(_) => self.mount(Mount::backup(read_only)),
            DestinationKind::S3(_) => self.mount(Mount::scratch()),
        }
    }

    pub fn privileges(mut self, privileges: PodPrivileges) -> Self {
        self.privileges = privileges;
        self
    }

    pub fn verified_by(mut self, verification: Verification) -> Self {
        self.verification = verification;
        self
    }

    pub fn plan(self) -> Plan {
        Plan::Job(self)
    }
}

/// Parses the policy's config (`""` and `"{}"` give `T::default()` through serde's defaults)
/// into `T`, or says what is wrong as `invalid-config`.
pub fn parse_config<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, PlanError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| PlanError::InvalidConfig(format!("config: {e}")))
}

/// Sample requests for native unit tests of a planner (`cargo test`, no WebAssembly needed).
pub mod testing {
    use super::*;

    /// A daily backup of `data-db-0` in namespace `prod` by policy `db-backup`, to the claim
    /// `backup-storage`, with `config` as the policy's plugin config.
    pub fn backup_request(config: &str) -> BackupRequest {
        BackupRequest {
            policy: PolicyInfo {
                name: "db-backup".into(),
                namespace: "prod".into(),
                scheduled_time: "2026-11-29T01:00:00Z".into(),
                scheduled_stamp: "20261129t010000z".into(),
                run_name: "db-backup-data-db-0-29401260".into(),
                backup_image: "busybox:latest".into(),
                destination: Destination { name: String::new(), kind: DestinationKind::Claim("backup-storage".into()) },
                repository_password_env: None,
                retention_count: 7,
                config: config.into(),
            },
            pvc: PvcInfo {
                name: "data-db-0".into(),
                namespace: "prod".into(),
                labels: vec![KeyValue { name: "app".into(), value: "db".into() }],
                storage_class: Some("standard".into()),
                capacity_bytes: Some(1 << 30),
                access_modes: vec![AccessMode::ReadWriteOnce],
                volume_mode: VolumeMode::Filesystem,
                node_name: None,
            },
        }
    }

    /// The same policy and PVC, asking about `artifact`.
    pub fn artifact_request(config: &str, artifact: &str) -> ArtifactRequest {
        let BackupRequest { policy, pvc } = backup_request(config);
        ArtifactRequest { policy, pvc, artifact: artifact.into() }
    }

    /// An S3 destination, for plans that must work with object storage too.
    pub fn s3_destination() -> Destination {
        Destination {
            name: "offsite".into(),
            kind: DestinationKind::S3(S3Destination {
                endpoint: "https://s3.example".into(),
                bucket: "backups".into(),
                prefix: "prod/db-backup/data-db-0".into(),
                region: "us-east-1".into(),
                access_key_id_env: "AWS_ACCESS_KEY_ID".into(),
                secret_access_key_env: "AWS_SECRET_ACCESS_KEY".into(),
                ca_file: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_contract_is_the_operators() {
        let bundled = include_str!("../wit/strategy.wit");
        assert!(bundled.contains(&format!("package {CONTRACT};")));
        // In the operator's repository, the copy must be identical to wit/strategy.wit.
        let operator = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit/strategy.wit");
        if let Ok(original) = std::fs::read_to_string(operator) {
            assert_eq!(bundled, original, "sdk/backup-strategy-sdk/wit/strategy.wit is stale: copy wit/strategy.wit");
        }
    }

    #[test]
    fn builders_have_safe_defaults() {
        let plan = JobPlan::shell("busybox:latest", "true", "x").mount(Mount::data(true)).env("A", "1");
        assert_eq!(plan.command, vec!["/bin/sh", "-c", "true"]);
        assert!(!plan.privileges.run_as_root && !plan.privileges.privileged);
        assert_eq!(plan.verification, Verification::None);
        assert!(PodPrivileges::root().run_as_root && PodPrivileges::root().add_capabilities.is_empty());
        let to_s3 = JobPlan::shell("i", "s", "a").storage(&testing::s3_destination(), false);
        assert_eq!(to_s3.mounts, vec![Mount::scratch()]);
    }

    #[test]
    fn configs_parse_into_your_type_or_say_why_not() {
        #[derive(serde::Deserialize, Default, Debug, PartialEq)]
        #[serde(deny_unknown_fields, default)]
        struct Config {
            level: u8,
        }
        assert_eq!(parse_config::<Config>("").unwrap(), Config::default());
        assert_eq!(parse_config::<Config>(r#"{"level": 3}"#).unwrap(), Config { level: 3 });
        assert!(matches!(parse_config::<Config>(r#"{"colour": 1}"#), Err(PlanError::InvalidConfig(m)) if m.contains("colour")));
    }
}
