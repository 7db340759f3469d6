//! Implements the previous contract, backup:strategy@0.1.0, which the 0.2.0 host must refuse as
//! incompatible, naming both versions.
wit_bindgen::generate!({ path: "wit", world: "backup-strategy" });

use backup::strategy::types::{Action, ArtifactRequest, BackupRequest, Description, Plan, PlanError};

struct Old;

impl exports::backup::strategy::strategy::Guest for Old {
    fn describe() -> Description {
        Description {
            name: "old".into(),
            version: "0.1.0".into(),
            summary: "built against backup:strategy@0.1.0".into(),
            actions: vec![Action::Backup],
            config_schema: String::new(),
        }
    }
    fn validate_config(_config: String) -> Result<(), PlanError> {
        Ok(())
    }
    fn plan_backup(request: BackupRequest) -> Result<Plan, PlanError> {
        Err(PlanError::Failed(request.pvc.name))
    }
    fn plan_restore(_: ArtifactRequest) -> Result<Plan, PlanError> {
        Err(PlanError::Unsupported(Action::Restore))
    }
    fn plan_prune(_: ArtifactRequest) -> Result<Plan, PlanError> {
        Err(PlanError::Unsupported(Action::Prune))
    }
}

export!(Old);
