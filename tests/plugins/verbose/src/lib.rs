//! A strategy plugin that describes itself at length: 8 MiB of summary and 8 MiB of config schema.
//! The host keeps a bounded description per version; 16 versions must not cost 16 × 16 MiB.
wit_bindgen::generate!({ path: "../../../wit", world: "backup-strategy" });

use backup::strategy::types::{Action, ArtifactRequest, BackupRequest, Description, Plan, PlanError};
use exports::backup::strategy::strategy::Guest;

struct Verbose;

const MIB: usize = 1 << 20;

impl Guest for Verbose {
    fn describe() -> Description {
        Description {
            name: "verbose".into(),
            version: "0.1.0".into(),
            summary: "s".repeat(8 * MIB),
            actions: vec![Action::Backup],
            config_schema: "c".repeat(8 * MIB),
        }
    }

    fn validate_config(_config: String) -> Result<(), PlanError> {
        Ok(())
    }

    fn plan_backup(_request: BackupRequest) -> Result<Plan, PlanError> {
        Err(PlanError::Unsupported(Action::Backup))
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

export!(Verbose);
