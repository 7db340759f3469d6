//! Built-in `snapshot` backup strategy: a CSI VolumeSnapshot (snapshot.storage.k8s.io/v1) of the
//! PVC. The planning logic lives in [`plan`]; this file only converts to and from the WIT types.
extern crate alloc;

pub mod plan;

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../wit", world: "backup-strategy" });

    use backup::strategy::types::{
        Action, ArtifactRequest, BackupRequest, Description, KeyValue, Plan, PlanError, SnapshotPlan,
    };
    use exports::backup::strategy::strategy::Guest;

    struct Snapshot;

    impl Guest for Snapshot {
        fn describe() -> Description {
            Description {
                name: "snapshot".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                summary: "CSI VolumeSnapshot of the PVC, verified when the snapshot reports readyToUse".into(),
                actions: vec![Action::Backup],
                config_schema: crate::plan::CONFIG_SCHEMA.into(),
            }
        }

        fn validate_config(config: String) -> Result<(), PlanError> {
            crate::plan::parse_config(&config).map(|_| ()).map_err(PlanError::InvalidConfig)
        }

        fn plan_backup(request: BackupRequest) -> Result<Plan, PlanError> {
            let config = crate::plan::parse_config(&request.policy.config).map_err(PlanError::InvalidConfig)?;
            let p = crate::plan::plan_backup(&config);
            Ok(Plan::VolumeSnapshot(SnapshotPlan {
                snapshot_class: p.class,
                labels: p.labels.into_iter().map(|(name, value)| KeyValue { name, value }).collect(),
            }))
        }

        // Restoring is a new PVC with the snapshot as its dataSource, and the host deletes the
        // VolumeSnapshot itself when retention drops it: neither is a Job plan.
        fn plan_restore(_request: ArtifactRequest) -> Result<Plan, PlanError> {
            Err(PlanError::Unsupported(Action::Restore))
        }

        fn plan_prune(_request: ArtifactRequest) -> Result<Plan, PlanError> {
            Err(PlanError::Unsupported(Action::Prune))
        }

        // A snapshot is verified by the snapshotter's readyToUse; there is no file to re-read.
        fn plan_verify(_request: ArtifactRequest) -> Result<Plan, PlanError> {
            Err(PlanError::Unsupported(Action::Verify))
        }
    }

    export!(Snapshot);
}
