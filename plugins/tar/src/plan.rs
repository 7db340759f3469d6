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
# A run stopped midway (its Job or policy deleted: the pod gets SIGTERM) removes what it wrote:
# the long steps run in the background so that the signal is handled at once, and the shell (PID 1,
# which ignores what it does not trap) stops every process of the pod's group.
trap 'rm -f "$partial" "$sums.partial"' EXIT
trap 'trap "" TERM INT; kill 0 2> /dev/null; exit 143' TERM INT
run() { "$@" & wait $!; }
# Partial files of runs that were killed outright (no signal to handle) and are no longer written.
find /backup -maxdepth 1 -name '.*.partial' -mmin +10 -exec rm -f {} \; 2> /dev/null || true
if [ -n "$BACKUP_EXCLUDES" ]; then
  printf '%s\n' "$BACKUP_EXCLUDES" > /scratch/excludes
  run tar -c${TAR_COMPRESS}f "$partial" -X /scratch/excludes -C /data .
else
  run tar -c${TAR_COMPRESS}f "$partial" -C /data .
fi
if [ "$TAR_COMPRESS" = z ]; then run gzip -t "$partial"; fi
run tar -t${TAR_COMPRESS}f "$partial" > /scratch/listing
entries=$(wc -l < /scratch/listing)
[ "$entries" -gt 0 ] || { echo "archive lists no entries" >&2; exit 1; }
run sha256sum "$partial" > /scratch/sum
sum=$(cut -d' ' -f1 < /scratch/sum)
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
pub const RESTORE_SCRIPT: &str = concat!(
    r#"set -u
fail() { echo "$1" >&2; printf '%s' "$1" > /dev/termination-log; exit 1; }
"#,
    include_str!("../../restore-swap.sh"),
    r#"artifact="/backup/$BACKUP_ARTIFACT"
[ -f "$artifact" ] || fail "artifact $BACKUP_ARTIFACT not found on the backup storage; the target was not touched"
cd /backup || fail "backup directory missing; the target was not touched"
[ -f "$BACKUP_ARTIFACT.sha256" ] || fail "checksum file $BACKUP_ARTIFACT.sha256 missing; the target was not touched"
sha256sum -c -s "$BACKUP_ARTIFACT.sha256" || fail "sha256 of $BACKUP_ARTIFACT does not match the recorded checksum; the target was not touched"
tar -t${TAR_COMPRESS}f "$artifact" > /dev/null 2>&1 || fail "$BACKUP_ARTIFACT does not list as a tar archive; the target was not touched"
prepare_work
tar -x${TAR_COMPRESS}f "$artifact" -C "$staging" || { rm -rf "$work"; fail "extracting $BACKUP_ARTIFACT failed (is the target large enough?); the target's contents were not changed"; }
swap_in "$staging"
sum=$(sha256sum "$artifact" | cut -d' ' -f1)
bytes=$(wc -c < "$artifact" | tr -d ' ')
echo "restored $BACKUP_ARTIFACT ($bytes bytes, sha256 $sum) into /data"
printf '{"sizeBytes":%s,"sha256":"%s","verified":true}' "$bytes" "$sum" > /dev/termination-log
"#
);

/// Prune: delete an artifact and its checksum; one that is not there is already pruned, one that
/// cannot be deleted (permissions) fails the prune, and the run's record stays.
pub const PRUNE_SCRIPT: &str = r#"set -eu
for f in "/backup/$BACKUP_ARTIFACT" "/backup/$BACKUP_ARTIFACT.sha256"; do
  err=$(rm -f "$f" 2>&1) || true
  if [ -e "$f" ] || [ -L "$f" ]; then
    msg="cannot delete $f: $(printf '%s' "$err" | tail -c 400)"
    echo "$msg" >&2; printf '%s' "$msg" > /dev/termination-log; exit 1
  fi
done
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

/// The image for S3 destinations when the policy keeps the default `backupImage` (busybox has no
/// S3 client): rclone, with busybox's tar, gzip and sha256sum beside it.
pub const S3_IMAGE: &str = "rclone/rclone:1.60.1";
const BUSYBOX_DEFAULT: &str = "busybox:latest";

/// Shared by the S3 scripts: credentials from the variables the host named, rclone's remote
/// `dest:` from the environment, and `fail`, which reports a bounded message to the host.
const S3_PRELUDE: &str = r#"set -eu
set -o pipefail
fail() { echo "$1" >&2; printf '%s' "$1" | head -c 3000 > /dev/termination-log; exit 1; }
value_of() { eval "printf '%s' \"\${$1:-}\""; }
export AWS_ACCESS_KEY_ID="$(value_of "$ACCESS_KEY_VAR")" AWS_SECRET_ACCESS_KEY="$(value_of "$SECRET_KEY_VAR")"
# The root filesystem is read-only: rclone's config and cache live on scratch.
export RCLONE_CONFIG=/scratch/rclone.conf RCLONE_CACHE_DIR=/scratch/rclone-cache
export RCLONE_CONFIG_DEST_TYPE=s3 RCLONE_CONFIG_DEST_PROVIDER=Other RCLONE_CONFIG_DEST_ENV_AUTH=true
export RCLONE_CONFIG_DEST_ENDPOINT="$S3_ENDPOINT" RCLONE_CONFIG_DEST_REGION="$S3_REGION" RCLONE_CONFIG_DEST_FORCE_PATH_STYLE=true
if [ -n "$CA_FILE" ]; then export RCLONE_CA_CERT="$CA_FILE"; fi
# An endpoint that does not answer fails the run within about a minute, not after rclone's
# defaults (a 1-minute connect timeout, 5-minute idle timeout, 3 x 10 retries): 10 s to connect,
# 30 s without a byte, each request tried twice, each operation once.
export RCLONE_CONTIMEOUT=10s RCLONE_TIMEOUT=30s RCLONE_LOW_LEVEL_RETRIES=2 RCLONE_RETRIES=1
touch "$RCLONE_CONFIG"
# fail_from FILE WHAT: fails with WHAT and the end of FILE (rclone's errors); an endpoint that did
# not answer is reported with the reason DestinationUnreachable.
unanswered() { grep -q -i "dial tcp\|i/o timeout\|connection refused\|no such host\|network is unreachable\|no route to host\|deadline exceeded\|timeout awaiting" "$1" 2> /dev/null; }
fail_from() {
  detail=$(tail -c 600 "$1" 2> /dev/null | tr '\n' ' ')
  if unanswered "$1"; then
    msg="destination $S3_ENDPOINT does not answer: $2: $detail"
    echo "$msg" >&2
    printf '{"reason":"DestinationUnreachable","message":"%s"}' "$(printf '%s' "$msg" | tr -d '"\\' | head -c 3000)" > /dev/termination-log
    exit 1
  fi
  fail "$2: $detail"
}
# A run stopped midway (SIGTERM to the pod's shell, PID 1) stops every process of the pod's group
# at once and runs the EXIT trap: the long pipelines run in the background (`bg`) for that.
trap 'trap "" TERM INT; kill 0 2> /dev/null; exit 143' TERM INT
bg() { "$@" & wait $!; }
# hash_of FIFO OUT: the sha256 of what is written to FIFO, into OUT, in the background.
hash_of() { rm -f "$1"; mkfifo "$1"; (sha256sum < "$1" | cut -d' ' -f1 > "$2") & }
"#;

/// Backup to S3: stream the archive to a temporary object while hashing it, read the object back
/// whole (its sha256 must match what was written, and gzip must accept it), write its checksum
/// object, then move it into place. Nothing is staged on the node's disk.
pub const S3_BACKUP_SCRIPT: &str = r#"
final="$REMOTE/$BACKUP_FILE"
partial="$REMOTE/.$BACKUP_FILE.partial"
# Whether the endpoint answers at all, before anything is read from /data.
if ! rclone lsf --max-depth 1 "$REMOTE/" > /dev/null 2> /scratch/err && unanswered /scratch/err; then
  fail_from /scratch/err "listing $REMOTE failed"
fi
trap 'rclone deletefile "$partial" > /dev/null 2>&1 || true' EXIT
hash_of /scratch/written /scratch/written.sum
upload() {
  if [ -n "$BACKUP_EXCLUDES" ]; then
    printf '%s\n' "$BACKUP_EXCLUDES" > /scratch/excludes
    tar -c${TAR_COMPRESS}f - -X /scratch/excludes -C /data . | tee /scratch/written | rclone rcat "$partial" 2> /scratch/err
  else
    tar -c${TAR_COMPRESS}f - -C /data . | tee /scratch/written | rclone rcat "$partial" 2> /scratch/err
  fi
}
bg upload || fail_from /scratch/err "uploading the archive to $partial failed"
wait
sum=$(cat /scratch/written.sum)
hash_of /scratch/read /scratch/read.sum
if [ "$TAR_COMPRESS" = z ]; then
  rclone cat "$partial" 2> /scratch/err | tee /scratch/read | gzip -t || fail "reading $partial back failed or its gzip stream is damaged: $(tail -c 600 /scratch/err)"
else
  rclone cat "$partial" 2> /scratch/err | tee /scratch/read > /dev/null || fail "reading $partial back failed: $(tail -c 600 /scratch/err)"
fi
wait
read_back=$(cat /scratch/read.sum)
[ "$read_back" = "$sum" ] || fail "the object reads back with sha256 $read_back, but $sum was written"
printf '%s  %s\n' "$sum" "$BACKUP_FILE" | rclone rcat "$final.sha256" 2> /scratch/err || fail "writing $final.sha256 failed: $(tail -c 600 /scratch/err)"
rclone moveto "$partial" "$final" 2> /scratch/err || fail "moving the archive into place failed: $(tail -c 600 /scratch/err)"
trap - EXIT
bytes=$(rclone size --json "$final" | sed -n 's/.*"bytes":\([0-9]*\).*/\1/p')
echo "backup verified: $final bytes=$bytes sha256=$sum"
printf '{"sizeBytes":%s,"sha256":"%s","verified":true}' "${bytes:-0}" "$sum" > /dev/termination-log
"#;

/// Restore from S3: download the archive aside on the target, check it against its checksum
/// object and list it before touching the target's files, extract it aside, then swap it in.
pub const S3_RESTORE_SCRIPT: &str = concat!(
    include_str!("../../restore-swap.sh"),
    r#"object="$REMOTE/$BACKUP_ARTIFACT"
prepare_work
archive="$work/archive"
trap 'rm -f "$archive"' EXIT
rclone copyto "$object" "$archive" 2> /scratch/err || { rm -rf "$work"; fail "downloading $object failed: $(tail -c 600 /scratch/err); the target's files were not changed"; }
expected=$(rclone cat "$object.sha256" 2> /scratch/err | cut -d' ' -f1) || { rm -rf "$work"; fail "reading $object.sha256 failed; the target's files were not changed"; }
sum=$(sha256sum "$archive" | cut -d' ' -f1)
[ "$sum" = "$expected" ] || { rm -rf "$work"; fail "sha256 of $BACKUP_ARTIFACT ($sum) does not match the recorded checksum; the target's files were not changed"; }
tar -t${TAR_COMPRESS}f "$archive" > /dev/null 2>&1 || { rm -rf "$work"; fail "$BACKUP_ARTIFACT does not list as a tar archive; the target's files were not changed"; }
tar -x${TAR_COMPRESS}f "$archive" -C "$staging" || { rm -rf "$work"; fail "extracting $BACKUP_ARTIFACT failed (is the target large enough?); the target's files were not changed"; }
rm -f "$archive"
swap_in "$staging"
echo "restored $object (sha256 $sum) into /data"
printf '{"sha256":"%s","verified":true}' "$sum" > /dev/termination-log
"#
);

/// Prune from S3: delete the archive and its checksum object. "Already gone" is decided from a
/// listing of the PVC's prefix that succeeded and does not name the object, never from an error
/// text (rclone says "doesn't exist" for wrong credentials too): a delete that fails for any other
/// reason fails the prune, and the run's record stays.
pub const S3_PRUNE_SCRIPT: &str = r#"
for name in "$BACKUP_ARTIFACT" "$BACKUP_ARTIFACT.sha256"; do
  object="$REMOTE/$name"
  rclone deletefile "$object" 2> /scratch/err && continue
  listing=$(rclone lsf --files-only "$REMOTE/" 2> /scratch/list-err) \
    || fail "deleting $object failed: $(tail -c 300 /scratch/err); listing $REMOTE failed too: $(tail -c 300 /scratch/list-err)"
  if printf '%s\n' "$listing" | grep -qxF "$name"; then
    fail "deleting $object failed: $(tail -c 600 /scratch/err)"
  fi
done
echo "pruned $REMOTE/$BACKUP_ARTIFACT"
"#;

/// Verify in S3: the object reads back whole with its recorded sha256 (and as gzip).
pub const S3_VERIFY_SCRIPT: &str = r#"
report() { printf '{"verified":%s,"message":"%s"}' "$1" "$2" > /dev/termination-log; }
object="$REMOTE/$BACKUP_ARTIFACT"
expected=$(rclone cat "$object.sha256" 2> /dev/null | cut -d' ' -f1) || { report false "checksum object missing"; exit 1; }
[ -n "$expected" ] || { report false "checksum object missing"; exit 1; }
hash_of /scratch/read /scratch/read.sum
if [ "$TAR_COMPRESS" = z ]; then
  rclone cat "$object" 2> /dev/null | tee /scratch/read | gzip -t 2> /dev/null || { wait; report false "object missing or its gzip stream is damaged"; exit 1; }
else
  rclone cat "$object" 2> /dev/null | tee /scratch/read > /dev/null || { wait; report false "object missing"; exit 1; }
fi
wait
sum=$(cat /scratch/read.sum)
[ "$sum" = "$expected" ] || { report false "sha256 does not match the recorded checksum"; exit 1; }
echo "verified $object sha256=$sum"
printf '{"sha256":"%s","verified":true}' "$sum" > /dev/termination-log
"#;

/// Object storage as plain data: where the PVC's objects go, and the variables the host fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub access_key_var: String,
    pub secret_key_var: String,
    pub ca_file: Option<String>,
}

impl Remote {
    fn env(&self) -> Vec<(String, String)> {
        vec_of(&[
            ("REMOTE", &format!("dest:{}/{}", self.bucket, self.prefix)),
            ("S3_ENDPOINT", &self.endpoint),
            ("S3_REGION", &self.region),
            ("ACCESS_KEY_VAR", &self.access_key_var),
            ("SECRET_KEY_VAR", &self.secret_key_var),
            ("CA_FILE", self.ca_file.as_deref().unwrap_or("")),
        ])
    }
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && !s.starts_with(|c: char| c.is_ascii_digit()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

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
    /// Object storage, or none for the claim mounted as /backup.
    pub remote: Option<Remote>,
}

impl Target<'_> {
    fn image(&self) -> String {
        match &self.remote {
            Some(_) if self.image == BUSYBOX_DEFAULT || self.image.is_empty() => S3_IMAGE.to_string(),
            _ => self.image.to_string(),
        }
    }

    /// The script and its extra environment, for the claim or for object storage.
    fn script(&self, claim: &str, s3: &str) -> Result<(String, Vec<(String, String)>), String> {
        match &self.remote {
            None => Ok((claim.to_string(), Vec::new())),
            Some(remote) if is_env_name(&remote.access_key_var) && is_env_name(&remote.secret_key_var) => {
                Ok((format!("{S3_PRELUDE}{s3}"), remote.env()))
            }
            Some(_) => Err("the host named invalid credential variables".into()),
        }
    }
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
pub fn plan_backup(target: &Target<'_>, stamp: &str, config: &TarConfig) -> Result<TarJob, String> {
    let file = format!("{stamp}.{}", config.compression.extension());
    let (script, remote_env) = target.script(BACKUP_SCRIPT, S3_BACKUP_SCRIPT)?;
    let mut env = vec_of(&[
        ("BACKUP_FILE", &file),
        ("BACKUP_EXCLUDES", &config.exclude.join("\n")),
        ("TAR_COMPRESS", config.compression.tar_flag()),
    ]);
    env.extend(remote_env);
    Ok(TarJob { image: target.image(), command: shell(&script), env, checksum_file: format!("{file}.sha256"), artifact: file })
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
    let (script, remote_env) = match action {
        ArtifactAction::Restore => target.script(RESTORE_SCRIPT, S3_RESTORE_SCRIPT)?,
        ArtifactAction::Prune => target.script(PRUNE_SCRIPT, S3_PRUNE_SCRIPT)?,
        ArtifactAction::Verify => target.script(VERIFY_SCRIPT, S3_VERIFY_SCRIPT)?,
    };
    let mut env = vec_of(&[("BACKUP_ARTIFACT", artifact), ("TAR_COMPRESS", compression.tar_flag())]);
    env.extend(remote_env);
    Ok(TarJob {
        image: target.image(),
        command: shell(&script),
        env,
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
        Target { image: "busybox:latest", remote: None }
    }

    fn remote() -> Target<'static> {
        Target {
            image: "busybox:latest",
            remote: Some(Remote {
                endpoint: "http://10.88.0.1:9000".into(),
                bucket: "backups".into(),
                prefix: "ns/p/data-0".into(),
                region: "us-east-1".into(),
                access_key_var: "AWS_ACCESS_KEY_ID".into(),
                secret_key_var: "AWS_SECRET_ACCESS_KEY".into(),
                ca_file: None,
            }),
        }
    }

    #[test]
    fn s3_destinations_stream_through_rclone_and_read_back() {
        let job = plan_backup(&remote(), "20261129t010000z", &TarConfig::default()).unwrap();
        assert_eq!(job.image, S3_IMAGE, "busybox has no S3 client");
        assert!(job.env.contains(&("REMOTE".into(), "dest:backups/ns/p/data-0".into())));
        let script = &job.command[2];
        let at = |needle: &str| script.find(needle).unwrap_or_else(|| panic!("{needle} in the backup script"));
        assert!(at("rclone rcat \"$partial\"") < at("rclone cat \"$partial\"") && at("rclone cat \"$partial\"") < at("rclone moveto"), "{script}");
        for action in [ArtifactAction::Restore, ArtifactAction::Prune, ArtifactAction::Verify] {
            let job = plan_artifact_job(&remote(), "20261129t010000z.tar.gz", action).unwrap();
            assert!(job.command[2].contains("rclone") && !job.command[2].contains("/backup/"), "{action:?}");
        }
        let mut bad = remote();
        if let Some(r) = bad.remote.as_mut() {
            r.access_key_var = "X; rm -rf /".into();
        }
        assert!(plan_backup(&bad, "s", &TarConfig::default()).is_err());
    }

    /// Runs the shared swap (`restore-swap.sh`) with busybox's sh on a scratch target, with `mv`
    /// failing for entries named `poison`; returns the target's entries afterwards and whether
    /// the swap succeeded.
    fn swap(old: &[&str], new: &[&str]) -> (Vec<String>, bool) {
        let root = std::env::temp_dir().join(format!("restore-swap-{}-{}", std::process::id(), old.len() * 10 + new.len()));
        let _ = std::fs::remove_dir_all(&root);
        let (data, new_dir) = (root.join("data"), root.join("new"));
        std::fs::create_dir_all(data.join("lost+found")).unwrap();
        std::fs::create_dir_all(&new_dir).unwrap();
        for f in old {
            std::fs::write(data.join(f), "old").unwrap();
        }
        for f in new {
            std::fs::write(new_dir.join(f), "new").unwrap();
        }
        let script = format!(
            "fail() {{ echo \"$1\" >&2; exit 1; }}\nmv() {{ case \"$1\" in *poison*) return 1 ;; esac; command mv \"$@\"; }}\n{}\nprepare_work\ncp -a {}/. \"$staging\"/\nswap_in \"$staging\"\n",
            include_str!("../../restore-swap.sh").replace("/data", &data.display().to_string()),
            new_dir.display()
        );
        let ok = std::process::Command::new("busybox").args(["sh", "-c", &script]).env("HOSTNAME", "pod-1").status().unwrap().success();
        let mut entries: Vec<String> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                let content = std::fs::read_to_string(e.path()).unwrap_or_default();
                if content.is_empty() { name } else { format!("{name}={content}") }
            })
            .collect();
        entries.sort();
        let _ = std::fs::remove_dir_all(&root);
        (entries, ok)
    }

    #[test]
    fn a_restore_swap_that_fails_leaves_the_previous_contents_in_place() {
        // (old contents, new contents, whether the swap succeeds, what the target holds after)
        type Case = (&'static [&'static str], &'static [&'static str], bool, &'static [&'static str]);
        let cases: [Case; 4] = [
            (&["a", ".hidden"], &["b", ".dot", "..dots"], true, &["..dots=new", ".dot=new", "b=new", "lost+found"]),
            (&["a", ".hidden"], &["b", "poison"], false, &[".hidden=old", "a=old", "lost+found"]),
            (&["a", "poison", "z"], &["b"], false, &["a=old", "lost+found", "poison=old", "z=old"]),
            (&[], &["b"], true, &["b=new", "lost+found"]),
        ];
        for (old, new, ok, want) in cases {
            let (entries, succeeded) = swap(old, new);
            assert_eq!((succeeded, entries.iter().map(String::as_str).collect::<Vec<_>>()), (ok, want.to_vec()), "{old:?} -> {new:?}");
        }
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
        let job = plan_backup(&target(), "20261129t010000z", &TarConfig::default()).unwrap();
        assert_eq!(job.artifact, "20261129t010000z.tar.gz");
        assert_eq!(job.checksum_file, "20261129t010000z.tar.gz.sha256");
        assert!(job.env.contains(&("TAR_COMPRESS".into(), "z".into())));
        assert!(job.command[2].contains("/dev/termination-log"), "the run reports size and digest");
        let other = plan_backup(&target(), "20261129t010100z", &TarConfig::default()).unwrap();
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
        assert!(at("sha256sum -c -s") < at("-C \"$staging\"") && at("-C \"$staging\"") < at("swap_in \"$staging\""), "{restore}");
    }
}
