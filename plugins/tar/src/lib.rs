//! Built-in `tar` backup strategy: a verified archive of the PVC on the backup storage claim.
//! The planning logic lives in [`plan`]; this file only converts to and from the WIT types.
extern crate alloc;

pub mod plan;

#[cfg(target_arch = "wasm32")]
mod component {
    use crate::plan::{self, ArtifactAction, Target};

    use backup_strategy_sdk::*;

    struct Tar;

    fn target(policy: &PolicyInfo) -> Target<'_> {
        let remote = match &policy.destination.kind {
            DestinationKind::Claim(_) => None,
            DestinationKind::S3(s3) => Some(plan::Remote {
                endpoint: s3.endpoint.clone(),
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
                region: s3.region.clone(),
                access_key_var: s3.access_key_id_env.clone(),
                secret_key_var: s3.secret_access_key_env.clone(),
                ca_file: s3.ca_file.clone(),
            }),
        };
        Target { image: &policy.backup_image, remote }
    }

    /// The `backup` volume on a claim; scratch space for object storage (the streams' pipes and
    /// rclone's config), which has no `backup` volume.
    fn storage(policy: &PolicyInfo, backup_read_only: bool) -> Mount {
        match &policy.destination.kind {
            DestinationKind::Claim(_) => Mount::backup(backup_read_only),
            DestinationKind::S3(_) => Mount::scratch(),
        }
    }

    fn job_plan(job: plan::TarJob, mounts: Vec<Mount>) -> Plan {
        Plan::Job(JobPlan {
            image: job.image,
            command: job.command,
            args: Vec::new(),
            env: job.env.into_iter().map(|(name, value)| EnvVar { name, source: EnvSource::Value(value) }).collect(),
            mounts,
            resources: Resources { cpu_millicores: None, memory_bytes: None },
            // Root, so that files of every owner on the PVC can be read; nothing beyond that.
            privileges: PodPrivileges::root(),
            verification: Verification::Sha256File(job.checksum_file),
            artifact_location: job.artifact,
        })
    }

    fn filesystem_only(pvc: &PvcInfo) -> Result<(), PlanError> {
        match pvc.volume_mode {
            VolumeMode::Filesystem => Ok(()),
            VolumeMode::Block => Err(PlanError::UnsupportedVolume(format!(
                "PVC {} is a block volume; the tar strategy archives files: use the snapshot strategy",
                pvc.name
            ))),
        }
    }

    impl Strategy for Tar {
        fn describe() -> Description {
            Description {
                name: "tar".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                summary: "tar archive of the PVC on a claim or in S3, checksummed and read back after writing".into(),
                actions: vec![Action::Backup, Action::Restore, Action::Prune, Action::Verify],
                config_schema: plan::CONFIG_SCHEMA.into(),
            }
        }

        fn validate_config(config: String) -> Result<(), PlanError> {
            plan::parse_config(&config).map(|_| ()).map_err(PlanError::InvalidConfig)
        }

        fn plan_backup(request: BackupRequest) -> Result<Plan, PlanError> {
            filesystem_only(&request.pvc)?;
            let config = plan::parse_config(&request.policy.config).map_err(PlanError::InvalidConfig)?;
            let job = plan::plan_backup(&target(&request.policy), &request.policy.scheduled_stamp, &config).map_err(PlanError::Failed)?;
            let mut mounts = vec![Mount::data(true), Mount::scratch()];
            if let DestinationKind::Claim(_) = request.policy.destination.kind {
                mounts.push(Mount::backup(false));
            }
            Ok(job_plan(job, mounts))
        }

        fn plan_restore(request: ArtifactRequest) -> Result<Plan, PlanError> {
            filesystem_only(&request.pvc)?;
            let job = plan::plan_artifact_job(&target(&request.policy), &request.artifact, ArtifactAction::Restore).map_err(PlanError::Failed)?;
            Ok(job_plan(job, vec![Mount::data(false), storage(&request.policy, true)]))
        }

        fn plan_prune(request: ArtifactRequest) -> Result<Plan, PlanError> {
            let job = plan::plan_artifact_job(&target(&request.policy), &request.artifact, ArtifactAction::Prune).map_err(PlanError::Failed)?;
            Ok(job_plan(job, vec![storage(&request.policy, false)]))
        }

        fn plan_verify(request: ArtifactRequest) -> Result<Plan, PlanError> {
            let job = plan::plan_artifact_job(&target(&request.policy), &request.artifact, ArtifactAction::Verify).map_err(PlanError::Failed)?;
            Ok(job_plan(job, vec![storage(&request.policy, true)]))
        }
    }

    backup_strategy_sdk::plugin!(Tar);
}
