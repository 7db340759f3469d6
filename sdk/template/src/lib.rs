//! A custom strategy to start from: a copy of the PVC's files in a directory per run on the
//! backup claim, with a sha256 manifest that the Job checks after copying and that verification
//! re-checks. Built on `backup-strategy-sdk`; rename it, change the scripts, keep the tests.

use backup_strategy_sdk::*;

/// The plugin's config (`spec.plugin.config`): every field has a default.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Config {
    /// Leave files whose names end with one of these out of the copy.
    pub skip_suffixes: Vec<String>,
}

const BACKUP: &str = r#"set -eu
dir="/backup/$RUN"
rm -rf "$dir.partial" && mkdir -p "$dir.partial"
cd /data
find . -type f | while read -r f; do
  for s in $SKIP; do case "$f" in *"$s") continue 2 ;; esac; done
  mkdir -p "$dir.partial/$(dirname "$f")" && cp -p "$f" "$dir.partial/$f"
done
cd "$dir.partial" && find . -type f ! -name MANIFEST.sha256 -exec sha256sum {} + > MANIFEST.sha256
# An empty PVC has an empty manifest, which sha256sum -c refuses ("no checksum lines").
[ ! -s MANIFEST.sha256 ] || sha256sum -c -s MANIFEST.sha256
mv "$dir.partial" "$dir"
sum=$(sha256sum "$dir/MANIFEST.sha256" | cut -d' ' -f1)
printf '{"sha256":"%s","verified":true}' "$sum" > /dev/termination-log
"#;
const RESTORE: &str = r#"set -eu
cd "/backup/$RUN" && { [ ! -s MANIFEST.sha256 ] || sha256sum -c -s MANIFEST.sha256; }
find /data -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} +
cp -a . /data/ && rm -f /data/MANIFEST.sha256
"#;
const PRUNE: &str = r#"rm -rf "/backup/$RUN""#;
const VERIFY: &str = r#"cd "/backup/$RUN" && { [ ! -s MANIFEST.sha256 ] || sha256sum -c -s MANIFEST.sha256; } || { printf '{"verified":false,"message":"manifest does not match"}' > /dev/termination-log; exit 1; }"#;

pub struct CopyStrategy;

fn claim_only(policy: &PolicyInfo) -> Result<(), PlanError> {
    match policy.destination.kind {
        DestinationKind::Claim(_) => Ok(()),
        DestinationKind::S3(_) => Err(PlanError::UnsupportedDestination("the template copies files to claims only".into())),
    }
}

/// An artifact of this strategy is the run's name (a directory on the claim).
fn artifact_job(request: &ArtifactRequest, script: &str) -> Result<JobPlan, PlanError> {
    claim_only(&request.policy)?;
    if request.artifact.is_empty() || !request.artifact.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(PlanError::Failed(format!("{:?} is not an artifact of this strategy", request.artifact)));
    }
    Ok(JobPlan::shell(&request.policy.backup_image, script, &request.artifact).env("RUN", &request.artifact).privileges(PodPrivileges::root()))
}

impl Strategy for CopyStrategy {
    fn describe() -> Description {
        Description {
            name: "template-copy".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "a copy of the PVC's files per run, with a checked sha256 manifest".into(),
            actions: vec![Action::Backup, Action::Restore, Action::Prune, Action::Verify],
            config_schema: r#"{"type":"object","additionalProperties":false,"properties":{"skipSuffixes":{"type":"array","items":{"type":"string"}}}}"#.into(),
        }
    }

    fn validate_config(config: String) -> Result<(), PlanError> {
        parse_config::<Config>(&config).map(|_| ())
    }

    fn plan_backup(request: BackupRequest) -> Result<Plan, PlanError> {
        claim_only(&request.policy)?;
        let config: Config = parse_config(&request.policy.config)?;
        let run = request.policy.run_name.clone();
        Ok(JobPlan::shell(&request.policy.backup_image, BACKUP, &run)
            .env("RUN", &run)
            .env("SKIP", config.skip_suffixes.join(" "))
            .mount(Mount::data(true))
            .mount(Mount::backup(false))
            .privileges(PodPrivileges::root())
            .verified_by(Verification::CheckedByJob("sha256sum -c MANIFEST.sha256".into()))
            .plan())
    }

    fn plan_restore(request: ArtifactRequest) -> Result<Plan, PlanError> {
        Ok(artifact_job(&request, RESTORE)?.mount(Mount::data(false)).mount(Mount::backup(true)).plan())
    }

    fn plan_prune(request: ArtifactRequest) -> Result<Plan, PlanError> {
        Ok(artifact_job(&request, PRUNE)?.mount(Mount::backup(false)).plan())
    }

    fn plan_verify(request: ArtifactRequest) -> Result<Plan, PlanError> {
        Ok(artifact_job(&request, VERIFY)?.mount(Mount::backup(true)).plan())
    }
}

backup_strategy_sdk::plugin!(CopyStrategy);

#[cfg(test)]
mod tests {
    use super::*;
    use backup_strategy_sdk::testing::{artifact_request, backup_request, s3_destination};

    #[test]
    fn backs_up_each_run_into_its_own_directory_read_only() {
        let Plan::Job(job) = CopyStrategy::plan_backup(backup_request(r#"{"skipSuffixes": [".tmp"]}"#)).unwrap() else { panic!("a job") };
        assert_eq!(job.artifact_location, "db-backup-data-db-0-29401260");
        assert!(job.mounts.contains(&Mount::data(true)) && job.env.iter().any(|e| e.name == "SKIP"));
    }

    #[test]
    fn refuses_bad_config_object_storage_and_foreign_artifacts() {
        assert!(matches!(CopyStrategy::validate_config(r#"{"colour": 1}"#.into()), Err(PlanError::InvalidConfig(_))));
        let mut to_s3 = backup_request("{}");
        to_s3.policy.destination = s3_destination();
        assert!(matches!(CopyStrategy::plan_backup(to_s3), Err(PlanError::UnsupportedDestination(_))));
        assert!(CopyStrategy::plan_prune(artifact_request("{}", "../etc")).is_err());
        assert!(CopyStrategy::plan_prune(artifact_request("{}", "db-backup-data-db-0-29401260")).is_ok());
    }
}
