//! The tar strategy's planning logic in plain Rust, free of the WIT glue, so that the host's
//! benchmark can run the very same code natively.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::Deserialize;

/// Backup: archive /data into a temporary name on /backup, verify the archive reads back whole,
/// write its sha256, rename both into place, then check the renamed file against the checksum.
/// Values arrive in the environment, never spliced into the script.
pub const BACKUP_SCRIPT: &str = r#"set -eu
dir="/backup/$BACKUP_DIR"
final="$dir/$BACKUP_FILE"
partial="$dir/.$BACKUP_FILE.partial"
sums="$final.sha256"
trap 'rm -f "$partial" "$sums.partial"' EXIT
mkdir -p "$dir"
if [ -n "$BACKUP_EXCLUDES" ]; then
  printf '%s\n' "$BACKUP_EXCLUDES" > /scratch/excludes
  tar -c${TAR_COMPRESS}f "$partial" -X /scratch/excludes -C /data .
else
  tar -c${TAR_COMPRESS}f "$partial" -C /data .
fi
[ "$TAR_COMPRESS" = z ] && gzip -t "$partial"
tar -t${TAR_COMPRESS}f "$partial" > /scratch/listing
entries=$(wc -l < /scratch/listing)
[ "$entries" -gt 0 ] || { echo "archive lists no entries" >&2; exit 1; }
sum=$(sha256sum "$partial" | cut -d' ' -f1)
printf '%s  %s\n' "$sum" "$BACKUP_FILE" > "$sums.partial"
mv "$partial" "$final"
mv "$sums.partial" "$sums"
cd "$dir" && sha256sum -c -s "$BACKUP_FILE.sha256"
echo "backup verified: $final entries=$entries bytes=$(wc -c < "$final") sha256=$sum"
"#;

/// Restore: verify the checksum and the archive's structure before touching /data, so that a
/// missing or damaged artifact never replaces good data with nothing.
pub const RESTORE_SCRIPT: &str = r#"set -eu
artifact="/backup/$BACKUP_ARTIFACT"
[ -f "$artifact" ] || { echo "artifact $BACKUP_ARTIFACT not found on the backup storage" >&2; exit 1; }
cd "$(dirname "$artifact")" && sha256sum -c -s "$(basename "$artifact").sha256"
tar -t${TAR_COMPRESS}f "$artifact" > /dev/null
tar -x${TAR_COMPRESS}f "$artifact" -C /data
echo "restored $BACKUP_ARTIFACT into /data"
"#;

/// Prune: delete an artifact and its checksum; a missing artifact is already pruned.
pub const PRUNE_SCRIPT: &str = r#"set -eu
rm -f "/backup/$BACKUP_ARTIFACT" "/backup/$BACKUP_ARTIFACT.sha256"
echo "pruned $BACKUP_ARTIFACT"
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    None,
}

impl Compression {
    fn tar_flag(self) -> &'static str {
        match self {
            Compression::Gzip => "z",
            Compression::None => "",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "tar.gz",
            Compression::None => "tar",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarConfig {
    pub compression: Compression,
    /// Patterns (tar `-X`) left out of the archive, relative to the PVC's root. Needs a tar with
    /// `-X` in the backup image (GNU tar; Debian's busybox-static lacks it).
    pub exclude: Vec<String>,
}

impl Default for TarConfig {
    fn default() -> Self {
        TarConfig { compression: Compression::Gzip, exclude: Vec::new() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    compression: Option<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

pub const CONFIG_SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"properties":{"compression":{"enum":["gzip","none"],"default":"gzip"},"exclude":{"type":"array","maxItems":64,"items":{"type":"string","minLength":1,"maxLength":256}}}}"#;

const MAX_EXCLUDES: usize = 64;
const MAX_PATTERN: usize = 256;

/// Parses and checks the policy's config for this strategy ("" or "{}" means the defaults).
pub fn parse_config(json: &str) -> Result<TarConfig, String> {
    if json.trim().is_empty() {
        return Ok(TarConfig::default());
    }
    let raw: RawConfig = serde_json::from_str(json).map_err(|e| format!("tar config: {e}"))?;
    let compression = match raw.compression.as_deref() {
        None | Some("gzip") => Compression::Gzip,
        Some("none") => Compression::None,
        Some(other) => {
            return Err(format!("tar config: compression must be \"gzip\" or \"none\", not {other:?}"));
        }
    };
    if raw.exclude.len() > MAX_EXCLUDES {
        return Err(format!("tar config: at most {MAX_EXCLUDES} exclude patterns, got {}", raw.exclude.len()));
    }
    for pattern in &raw.exclude {
        if pattern.is_empty() || pattern.len() > MAX_PATTERN || pattern.contains(['\n', '\0']) {
            return Err(format!(
                "tar config: exclude pattern {pattern:?} must be 1-{MAX_PATTERN} characters on one line"
            ));
        }
    }
    Ok(TarConfig { compression, exclude: raw.exclude })
}

/// What a plan is for, as plain strings.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub namespace: &'a str,
    pub policy: &'a str,
    pub pvc: &'a str,
    pub image: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarJob {
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Path of the archive inside the backup volume.
    pub artifact: String,
    /// Path of its sha256 file inside the backup volume.
    pub checksum_file: String,
}

fn shell(script: &str) -> Vec<String> {
    ["/bin/sh", "-c", script].into_iter().map(ToString::to_string).collect()
}

/// The archive's directory inside the backup volume. Kubernetes names cannot contain '/', so
/// namespace, policy and PVC can never collide; the stamp separates runs.
pub fn artifact_dir(target: &Target<'_>) -> String {
    format!("{}/{}/{}", target.namespace, target.policy, target.pvc)
}

pub fn plan_backup(target: &Target<'_>, stamp: &str, config: &TarConfig) -> TarJob {
    let dir = artifact_dir(target);
    let file = format!("{stamp}.{}", config.compression.extension());
    let artifact = format!("{dir}/{file}");
    TarJob {
        image: target.image.to_string(),
        command: shell(BACKUP_SCRIPT),
        env: vec_of(&[
            ("BACKUP_DIR", &dir),
            ("BACKUP_FILE", &file),
            ("BACKUP_EXCLUDES", &config.exclude.join("\n")),
            ("TAR_COMPRESS", config.compression.tar_flag()),
        ]),
        checksum_file: format!("{artifact}.sha256"),
        artifact,
    }
}

/// Restores or prunes `artifact`, a path that an earlier backup plan returned. Pruning touches only
/// this policy's and PVC's artifacts; a restore may read any artifact of the same namespace (into
/// a clone, say), never another namespace's.
pub fn plan_artifact_job(target: &Target<'_>, artifact: &str, restore: bool) -> Result<TarJob, String> {
    let prefix = if restore { format!("{}/", target.namespace) } else { format!("{}/", artifact_dir(target)) };
    let expected = if restore { format!("{}/<policy>/<pvc>/<stamp>.tar.gz", target.namespace) } else { format!("{prefix}<stamp>.tar.gz") };
    let refuse = || format!("{artifact:?} is not a tar artifact this PVC may use (expected {expected})");
    let rest = artifact.strip_prefix(&prefix).ok_or_else(refuse)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let depth = if restore { 3 } else { 1 };
    if parts.len() != depth || parts.iter().any(|p| p.is_empty() || p.starts_with('.') || p.contains(['\n', '\0'])) {
        return Err(refuse());
    }
    let name = parts[depth - 1];
    let compression = if name.ends_with(".tar.gz") {
        Compression::Gzip
    } else if name.ends_with(".tar") {
        Compression::None
    } else {
        return Err(refuse());
    };
    Ok(TarJob {
        image: target.image.to_string(),
        command: shell(if restore { RESTORE_SCRIPT } else { PRUNE_SCRIPT }),
        env: vec_of(&[("BACKUP_ARTIFACT", artifact), ("TAR_COMPRESS", compression.tar_flag())]),
        checksum_file: format!("{artifact}.sha256"),
        artifact: artifact.to_string(),
    })
}

fn vec_of(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target<'static> {
        Target { namespace: "prod", policy: "db-backup", pvc: "data-db-0", image: "busybox:latest" }
    }

    #[test]
    fn config_defaults_and_errors() {
        assert_eq!(parse_config("").unwrap(), TarConfig::default());
        assert_eq!(parse_config("{}").unwrap(), TarConfig::default());
        assert_eq!(parse_config(r#"{"compression":"none"}"#).unwrap().compression, Compression::None);
        let cases = [
            (r#"{"compression":"zstd"}"#, "compression must be"),
            (r#"{"colour":"red"}"#, "unknown field"),
            (r#"{"exclude":["a\nb"]}"#, "one line"),
            ("not json", "tar config"),
        ];
        for (json, want) in cases {
            let err = parse_config(json).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn backup_paths_separate_namespaces_policies_pvcs_and_runs() {
        let job = plan_backup(&target(), "20261129t010000z", &TarConfig::default());
        assert_eq!(job.artifact, "prod/db-backup/data-db-0/20261129t010000z.tar.gz");
        assert_eq!(job.checksum_file, "prod/db-backup/data-db-0/20261129t010000z.tar.gz.sha256");
        assert!(job.env.contains(&("TAR_COMPRESS".into(), "z".into())));
        let other = plan_backup(&target(), "20261129t010100z", &TarConfig::default());
        assert_ne!(job.artifact, other.artifact);
    }

    #[test]
    fn artifact_jobs_only_touch_this_pvcs_artifacts() {
        let t = target();
        let own = "prod/db-backup/data-db-0/20261129t010000z.tar.gz";
        assert!(plan_artifact_job(&t, own, true).is_ok());
        assert!(plan_artifact_job(&t, own, false).is_ok());
        // A restore may clone another PVC's backup in the same namespace; a prune may not touch it.
        let sibling = "prod/db-backup/data-db-1/20261129t010000z.tar.gz";
        assert!(plan_artifact_job(&t, sibling, true).is_ok());
        assert!(plan_artifact_job(&t, sibling, false).is_err());
        for bad in ["staging/db-backup/data-db-0/x.tar.gz", "prod/db-backup/data-db-0/../../x.tar.gz", "prod/../x.tar.gz", "/etc/passwd", "", "prod/a/b/.x.tar.gz", "prod/a/b/x.zip"] {
            assert!(plan_artifact_job(&t, bad, true).is_err(), "restore {bad}");
            assert!(plan_artifact_job(&t, bad, false).is_err(), "prune {bad}");
        }
    }
}
