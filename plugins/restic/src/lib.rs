//! Built-in `restic` backup strategy: an encrypted, deduplicated restic repository per PVC and
//! destination, on a claim or in S3-compatible object storage. The planning logic lives in
//! [`plan`]; this file only converts to and from the WIT types.
extern crate alloc;

pub mod plan;

#[cfg(target_arch = "wasm32")]
mod component {
    use crate::plan::{self, Repository, Target};

    use backup_strategy_sdk::*;

    struct Restic;

    fn target<'a>(policy: &'a PolicyInfo, pvc: &'a PvcInfo) -> Target<'a> {
        let repository = match &policy.destination.kind {
            DestinationKind::Claim(_) => Repository::Claim,
            DestinationKind::S3(s3) => Repository::S3 {
                endpoint: s3.endpoint.clone(),
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
                region: s3.region.clone(),
                access_key_var: s3.access_key_id_env.clone(),
                secret_key_var: s3.secret_access_key_env.clone(),
                ca_file: s3.ca_file.clone(),
            },
        };
        Target {
            image: &policy.backup_image,
            namespace: &policy.namespace,
            policy: &policy.name,
            pvc: &pvc.name,
            repository,
            password_var: policy.repository_password_env.as_deref(),
        }
    }

    /// `data` as asked, `backup` only on a claim (object storage has none), and scratch space for
    /// restic's cache and the scripts' files.
    fn mounts(policy: &PolicyInfo, data: Option<bool>, backup_read_only: bool) -> Vec<Mount> {
        let mut mounts = Vec::new();
        if let Some(read_only) = data {
            mounts.push(Mount::data(read_only));
        }
        if let DestinationKind::Claim(_) = policy.destination.kind {
            mounts.push(Mount::backup(backup_read_only));
        }
        mounts.push(Mount::scratch());
        mounts
    }

    fn job_plan(job: plan::ResticJob, mounts: Vec<Mount>, verification: Verification) -> Plan {
        Plan::Job(JobPlan {
            image: job.image,
            command: job.command,
            args: Vec::new(),
            env: job.env.into_iter().map(|(name, value)| EnvVar { name, source: EnvSource::Value(value) }).collect(),
            mounts,
            resources: Resources { cpu_millicores: None, memory_bytes: None },
            // Root, so that files of every owner on the PVC can be read and restored; nothing more.
            privileges: PodPrivileges::root(),
            verification,
            artifact_location: job.artifact,
        })
    }

    fn filesystem_only(pvc: &PvcInfo) -> Result<(), PlanError> {
        match pvc.volume_mode {
            VolumeMode::Filesystem => Ok(()),
            VolumeMode::Block => Err(PlanError::UnsupportedVolume(format!(
                "PVC {} is a block volume; the restic strategy backs up files: use the snapshot strategy",
                pvc.name
            ))),
        }
    }

    fn config(policy: &PolicyInfo) -> Result<plan::ResticConfig, PlanError> {
        plan::parse_config(&policy.config).map_err(PlanError::InvalidConfig)
    }

    impl Strategy for Restic {
        fn describe() -> Description {
            Description {
                name: "restic".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                summary: "restic repository per PVC and destination (claim or S3): encrypted, deduplicated, checked after each backup".into(),
                actions: vec![Action::Backup, Action::Restore, Action::Prune, Action::Verify],
                config_schema: plan::CONFIG_SCHEMA.into(),
            }
        }

        fn validate_config(config: String) -> Result<(), PlanError> {
            plan::parse_config(&config).map(|_| ()).map_err(PlanError::InvalidConfig)
        }

        fn plan_backup(request: BackupRequest) -> Result<Plan, PlanError> {
            filesystem_only(&request.pvc)?;
            let config = config(&request.policy)?;
            let job = plan::plan(&target(&request.policy, &request.pvc), &request.policy.run_name, plan::Action::Backup, &config)
                .map_err(PlanError::Failed)?;
            // The digest the Job reports is the snapshot's ID.
            let check = format!("restic check --read-data-subset={}", config.check_subset);
            Ok(job_plan(job, mounts(&request.policy, Some(true), false), Verification::CheckedByJob(check)))
        }

        fn plan_restore(request: ArtifactRequest) -> Result<Plan, PlanError> {
            filesystem_only(&request.pvc)?;
            let job = plan::plan(&target(&request.policy, &request.pvc), &request.artifact, plan::Action::Restore, &config(&request.policy)?)
                .map_err(PlanError::Failed)?;
            Ok(job_plan(job, mounts(&request.policy, Some(false), true), Verification::None))
        }

        fn plan_prune(request: ArtifactRequest) -> Result<Plan, PlanError> {
            let job = plan::plan(&target(&request.policy, &request.pvc), &request.artifact, plan::Action::Prune, &config(&request.policy)?)
                .map_err(PlanError::Failed)?;
            Ok(job_plan(job, mounts(&request.policy, None, false), Verification::None))
        }

        fn plan_verify(request: ArtifactRequest) -> Result<Plan, PlanError> {
            let job = plan::plan(&target(&request.policy, &request.pvc), &request.artifact, plan::Action::Verify, &config(&request.policy)?)
                .map_err(PlanError::Failed)?;
            // Writable: restic check takes a lock, which lives in the repository.
            Ok(job_plan(job, mounts(&request.policy, None, false), Verification::None))
        }
    }

    backup_strategy_sdk::plugin!(Restic);
}
