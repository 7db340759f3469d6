//! The tar strategy's planning logic in plain Rust, free of the WIT glue, so that the host's
//! benchmark can run the very same code natively.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::Deserialize;

/// Backup: archive /data into a temporary name on /backup (this PVC's own directory on the
/// storage claim), verify the archive reads back whole, write its sha256, rename both into place,
/// check the renamed file against the checksum, and report size and digest to the host through
/// the termination message. Values arrive in the environment, never spliced into the script.
pub const BACKUP_SCRIPT: &str = r#"set -eu
final="/backup/$BACKUP_FILE"
partial="/backup/.$BACKUP_FILE.partial"
sums="$final.sha256"
trap 'rm -f "$partial" "$sums.partial"' EXIT
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
cd /backup && sha256sum -c -s "$BACKUP_FILE.sha256"
bytes=$(wc -c < "$final" | tr -d ' ')
echo "backup verified: $BACKUP_FILE entries=$entries bytes=$bytes sha256=$sum"
printf '{"sizeBytes":%s,"sha256":"%s","verified":true}' "$bytes" "$sum" > /dev/termination-log
"#;

/// Restore: verify the checksum and the archive's structure before touching /data, so that a
/// missing or damaged artifact never replaces good data with nothing; extract into a staging
/// directory on the target (a full disk fails here, with the target unchanged); only then replace
/// the target's contents with the backup's (files written after the backup, such as newer WAL
/// segments of a database, would otherwise survive next to the restored ones). Reports the
/// artifact's size and digest like a backup.
pub const RESTORE_SCRIPT: &str = r#"set -u
fail() { echo "$1" >&2; printf '%s' "$1" > /dev/termination-log; exit 1; }
artifact="/backup/$BACKUP_ARTIFACT"
[ -f "$artifact" ] || fail "artifact $BACKUP_ARTIFACT not found on the backup storage; the target was not touched"
cd /backup || fail "backup directory missing; the target was not touched"
[ -f "$BACKUP_ARTIFACT.sha256" ] || fail "checksum file $BACKUP_ARTIFACT.sha256 missing; the target was not touched"
sha256sum -c -s "$BACKUP_ARTIFACT.sha256" || fail "sha256 of $BACKUP_ARTIFACT does not match the recorded checksum; the target was not touched"
tar -t${TAR_COMPRESS}f "$artifact" > /dev/null 2>&1 || fail "$BACKUP_ARTIFACT does not list as a tar archive; the target was not touched"
staging=/data/.backup-restore-staging
rm -rf "$staging" && mkdir "$staging" || fail "cannot create $staging on the target"
tar -x${TAR_COMPRESS}f "$artifact" -C "$staging" || { rm -rf "$staging"; fail "extracting $BACKUP_ARTIFACT failed (is the target large enough?); the target's contents were not changed"; }
find /data -mindepth 1 -maxdepth 1 ! -name .backup-restore-staging ! -name lost+found -exec rm -rf {} \; || fail "removing the target's old contents failed"
find "$staging" -mindepth 1 -maxdepth 1 ! -name lost+found -exec mv {} /data/ \; || fail "moving the restored files into place failed"
chmod "$(stat -c %a "$staging")" /data && chown "$(stat -c %u:%g "$staging")" /data || true
rm -rf "$staging"
sum=$(sha256sum "$artifact" | cut -d' ' -f1)
bytes=$(wc -c < "$artifact" | tr -d ' ')
echo "restored $BACKUP_ARTIFACT ($bytes bytes, sha256 $sum) into /data"
printf '{"sizeBytes":%s,"sha256":"%s","verified":true}' "$bytes" "$sum" > /dev/termination-log
"#;

/// Prune: delete an artifact and its checksum; a missing artifact is already pruned.
pub const PRUNE_SCRIPT: &str = r#"set -eu
rm -f "/backup/$BACKUP_ARTIFACT" "/backup/$BACKUP_ARTIFACT.sha256"
echo "pruned $BACKUP_ARTIFACT"
"#;

/// Verify: the recorded checksum, then the archive's structure; any failure is reported as a
/// corrupted artifact with the reason.
pub const VERIFY_SCRIPT: &str = r#"set -u
report() { printf '{"verified":%s,"message":"%s"}' "$1" "$2" > /dev/termination-log; }
cd /backup || { report false "backup directory missing"; exit 1; }
[ -f "$BACKUP_ARTIFACT" ] || { report false "artifact missing"; exit 1; }
[ -f "$BACKUP_ARTIFACT.sha256" ] || { report false "checksum file missing"; exit 1; }
sha256sum -c -s "$BACKUP_ARTIFACT.sha256" || { report false "sha256 does not match the recorded checksum"; exit 1; }
if [ "$TAR_COMPRESS" = z ]; then gzip -t "$BACKUP_ARTIFACT" 2>/dev/null || { report false "gzip stream is damaged"; exit 1; }; fi
tar -t${TAR_COMPRESS}f "$BACKUP_ARTIFACT" > /dev/null 2>&1 || { report false "tar listing failed"; exit 1; }
sum=$(sha256sum "$BACKUP_ARTIFACT" | cut -d' ' -f1)
bytes=$(wc -c < "$BACKUP_ARTIFACT" | tr -d ' ')
echo "verified $BACKUP_ARTIFACT bytes=$bytes sha256=$sum"
printf '{"sizeBytes":%s,"sha256":"%s","verified":true}' "$bytes" "$sum" > /dev/termination-log
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
    pub image: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarJob {
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Path of the archive inside the backup volume (the PVC's own directory).
    pub artifact: String,
    /// Path of its sha256 file inside the backup volume.
    pub checksum_file: String,
}

fn shell(script: &str) -> Vec<String> {
    ["/bin/sh", "-c", script].into_iter().map(ToString::to_string).collect()
}

/// The host mounts only this PVC's directory as /backup, so the archive needs no directory of its
/// own: the stamp separates runs.
pub fn plan_backup(target: &Target<'_>, stamp: &str, config: &TarConfig) -> TarJob {
    let file = format!("{stamp}.{}", config.compression.extension());
    TarJob {
        image: target.image.to_string(),
        command: shell(BACKUP_SCRIPT),
        env: vec_of(&[
            ("BACKUP_FILE", &file),
            ("BACKUP_EXCLUDES", &config.exclude.join("\n")),
            ("TAR_COMPRESS", config.compression.tar_flag()),
        ]),
        checksum_file: format!("{file}.sha256"),
        artifact: file,
    }
}

/// What an artifact job does with an earlier backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactAction {
    Restore,
    Prune,
    Verify,
}

/// Restores, prunes or verifies `artifact`, a file name that an earlier backup plan returned,
/// relative to the PVC's own directory.
pub fn plan_artifact_job(target: &Target<'_>, artifact: &str, action: ArtifactAction) -> Result<TarJob, String> {
    let refuse = || format!("{artifact:?} is not a tar artifact of this strategy (expected <stamp>.tar.gz or <stamp>.tar)");
    if artifact.is_empty() || artifact.contains(['/', '\n', '\0', '"', '\\']) || artifact.starts_with('.') || artifact.len() > 255 {
        return Err(refuse());
    }
    let compression = if artifact.ends_with(".tar.gz") {
        Compression::Gzip
    } else if artifact.ends_with(".tar") {
        Compression::None
    } else {
        return Err(refuse());
    };
    let script = match action {
        ArtifactAction::Restore => RESTORE_SCRIPT,
        ArtifactAction::Prune => PRUNE_SCRIPT,
        ArtifactAction::Verify => VERIFY_SCRIPT,
    };
    Ok(TarJob {
        image: target.image.to_string(),
        command: shell(script),
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
        Target { image: "busybox:latest" }
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
    fn backups_are_named_by_their_stamp_inside_the_pvc_directory() {
        let job = plan_backup(&target(), "20261129t010000z", &TarConfig::default());
        assert_eq!(job.artifact, "20261129t010000z.tar.gz");
        assert_eq!(job.checksum_file, "20261129t010000z.tar.gz.sha256");
        assert!(job.env.contains(&("TAR_COMPRESS".into(), "z".into())));
        assert!(job.command[2].contains("/dev/termination-log"), "the run reports size and digest");
        let other = plan_backup(&target(), "20261129t010100z", &TarConfig::default());
        assert_ne!(job.artifact, other.artifact);
    }

    #[test]
    fn artifact_jobs_only_take_a_plain_artifact_name() {
        let t = target();
        for action in [ArtifactAction::Restore, ArtifactAction::Prune, ArtifactAction::Verify] {
            assert!(plan_artifact_job(&t, "20261129t010000z.tar.gz", action).is_ok());
            assert!(plan_artifact_job(&t, "20261129t010000z.tar", action).is_ok());
            for bad in ["../x.tar.gz", "a/b.tar.gz", "/etc/passwd", "", ".x.tar.gz", "x.zip", "x\".tar"] {
                assert!(plan_artifact_job(&t, bad, action).is_err(), "{action:?} {bad}");
            }
        }
        let verify = plan_artifact_job(&t, "a.tar.gz", ArtifactAction::Verify).unwrap();
        assert!(verify.command[2].contains("sha256sum -c"));
        // A restore checks the archive, then extracts it aside, and only then replaces the target.
        let restore = &plan_artifact_job(&t, "a.tar.gz", ArtifactAction::Restore).unwrap().command[2];
        let at = |needle: &str| restore.find(needle).unwrap_or_else(|| panic!("{needle} in the restore script"));
        assert!(at("sha256sum -c") < at("-C \"$staging\"") && at("-C \"$staging\"") < at("rm -rf {}"), "{restore}");
    }
}
