//! The restic strategy's planning logic in plain Rust, free of the WIT glue.
//!
//! One repository per PVC and destination: `/backup/repo` on a claim (the PVC's own directory), or
//! `s3:<endpoint>/<bucket>/<prefix>` (the PVC's own prefix) in object storage, initialised on first
//! use and encrypted with the policy's password. A run's snapshot carries the tags namespace,
//! policy, pvc and run, and a host name fixed per PVC (`<pvc>.<namespace>`), so that each run's
//! snapshot is found by its `run=` tag: that tag is the artifact. Every value reaches the scripts
//! through the environment, never spliced into them.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::Deserialize;

/// The image used when the policy keeps the default `backupImage` (busybox has no restic).
pub const DEFAULT_IMAGE: &str = "restic/restic:0.14.0";
const BUSYBOX_DEFAULT: &str = "busybox:latest";

/// Shared by every script: the password and credentials from the variables the host named, the
/// repository's options, and `fail`, which reports a bounded message to the host.
const PRELUDE: &str = r#"set -u
fail() { echo "$1" >&2; printf '%s' "$1" | head -c 3000 > /dev/termination-log; exit 1; }
value_of() { eval "printf '%s' \"\${$1:-}\""; }
export RESTIC_PASSWORD="$(value_of "$PASSWORD_VAR")"
[ -n "$RESTIC_PASSWORD" ] || fail "the repository password (variable $PASSWORD_VAR) is empty"
if [ -n "$ACCESS_KEY_VAR" ]; then
  export AWS_ACCESS_KEY_ID="$(value_of "$ACCESS_KEY_VAR")" AWS_SECRET_ACCESS_KEY="$(value_of "$SECRET_KEY_VAR")"
fi
# The root filesystem is read-only: restic's cache and temporary pack files go to scratch.
export RESTIC_CACHE_DIR=/scratch/restic-cache TMPDIR=/scratch/tmp
mkdir -p "$TMPDIR"
# restic with the repository's options. A repository locked by another Job of the same PVC and
# destination (a prune while the next backup starts) is waited for, up to 5 minutes.
r() {
  set -- --repo "$REPO" "$@"
  # A restore mounts a claim's repository read-only, where restic cannot write the lock it takes
  # even to list snapshots: it reads without one (the backup it reads is held from retention).
  if [ "${READ_ONLY_REPO:-}" = 1 ]; then set -- --no-lock "$@"; fi
  if [ -n "$REGION" ]; then set -- -o "s3.region=$REGION" "$@"; fi
  if [ -n "$CA_FILE" ]; then set -- --cacert "$CA_FILE" "$@"; fi
  tries=0
  while :; do
    # R_TIMEOUT (seconds), when set, bounds one call: restic retries an endpoint that does not
    # answer for many minutes.
    ${R_TIMEOUT:+timeout "$R_TIMEOUT"} restic "$@" 2> /scratch/restic.err && { cat /scratch/restic.err >&2; return 0; }
    code=$?
    if grep -q "already locked" /scratch/restic.err && [ "$tries" -lt 60 ]; then
      tries=$((tries + 1)); sleep 5; continue
    fi
    cat /scratch/restic.err >&2
    return "$code"
  done
}
# fail_unreachable MESSAGE: the run fails with the reason DestinationUnreachable.
fail_unreachable() {
  echo "$1" >&2
  printf '{"reason":"DestinationUnreachable","message":"%s"}' "$(printf '%s' "$1" | tr -d '"\\' | tr '\n' ' ' | head -c 3000)" > /dev/termination-log
  exit 1
}
# The snapshot IDs of this run (its `run=` tag; the repository holds one PVC's backups, and for a
# restore the request's PVC is the target, not the source).
run_snapshots() { r snapshots --json --tag "run=$RUN_TAG" 2>/scratch/err | grep -o '"id":"[0-9a-f]\{64\}"' | cut -d'"' -f4; }
"#;

/// Backup: open the repository (or initialise it on first use; a wrong password is reported as
/// such), back up /data, check a subset of the repository's data, report the bytes the backup
/// added and the snapshot's ID. A snapshot whose check fails is forgotten again.
pub const BACKUP_SCRIPT: &str = r#"
# The first contact is bounded (60 s): an endpoint that does not answer fails the run quickly.
R_TIMEOUT=60
if ! r cat config > /dev/null 2> /scratch/err; then
  if grep -q "wrong password" /scratch/err; then fail "wrong password for the restic repository $REPO (spec.restic.passwordSecret)"; fi
  if grep -q -i "dial tcp\|connection refused\|no such host\|i/o timeout\|deadline exceeded\|network is unreachable\|no route to host" /scratch/err || ! grep -q . /scratch/err; then
    fail_unreachable "the restic repository $REPO does not answer: $(grep -v '^$' /scratch/err | head -n 2 | tail -c 600)"
  fi
  if grep -q -i "x509\|tls:\|AccessDenied\|InvalidAccessKeyId\|SignatureDoesNotMatch" /scratch/err; then
    fail "cannot reach the restic repository $REPO: $(grep -v '^$' /scratch/err | head -n 2 | tail -c 600)"
  fi
  if grep -q -i "is there a repository\|does not exist\|no such file\|NoSuchKey\|NoSuchBucket\|404" /scratch/err; then
    r init > /dev/null 2> /scratch/err || fail "cannot initialise the restic repository $REPO: $(tail -c 800 /scratch/err)"
    echo "initialised the restic repository $REPO"
  else
    fail "cannot open the restic repository $REPO: $(tail -c 800 /scratch/err)"
  fi
fi
R_TIMEOUT=
[ -d /data ] || fail "/data is not mounted"
# The absolute path: the snapshot's tree holds data/, which a restore finds again.
r backup --json --host "$RESTIC_HOST" --tag "namespace=$NAMESPACE" --tag "policy=$POLICY" --tag "pvc=$PVC" --tag "run=$RUN_TAG" /data > /scratch/backup.json 2> /scratch/err \
  || fail "restic backup to $REPO failed: $(tail -c 800 /scratch/err)"
summary=$(grep '"message_type":"summary"' /scratch/backup.json | tail -n 1)
short=$(printf '%s' "$summary" | sed -n 's/.*"snapshot_id":"\([0-9a-f]*\)".*/\1/p')
added=$(printf '%s' "$summary" | sed -n 's/.*"data_added":\([0-9]*\).*/\1/p')
processed=$(printf '%s' "$summary" | sed -n 's/.*"total_bytes_processed":\([0-9]*\).*/\1/p')
[ -n "$short" ] || fail "restic backup reported no snapshot: $(tail -c 500 /scratch/backup.json)"
id=$(run_snapshots | grep "^$short" | head -n 1)
[ -n "$id" ] || fail "snapshot $short is not listed in $REPO after the backup"
if ! r check --read-data-subset="$CHECK_SUBSET" > /scratch/check 2>&1; then
  r forget "$id" > /dev/null 2>&1
  fail "restic check after backing up failed (snapshot $short forgotten): $(tail -c 800 /scratch/check)"
fi
echo "snapshot $short of $PVC in $REPO: $processed bytes read, ${added:-0} bytes added; check of $CHECK_SUBSET of the data passed"
printf '{"sizeBytes":%s,"sha256":"%s","verified":true}' "${added:-0}" "$id" > /dev/termination-log
"#;

/// Restore: find the run's snapshot, restore it aside on the target (a full disk or a damaged
/// repository fails here, with the target unchanged), verify what was written, and only then
/// replace the target's contents.
pub const RESTORE_SCRIPT: &str = concat!(
    include_str!("../../restore-swap.sh"),
    r#"case "$REPO" in /*) READ_ONLY_REPO=1 ;; esac
id=$(run_snapshots | head -n 1)
[ -n "$id" ] || fail "no snapshot tagged run=$RUN_TAG in $REPO ($(tail -c 300 /scratch/err)); the target was not touched"
prepare_work
r restore "$id" --verify --target "$staging" > /scratch/restore 2>&1 \
  || { rm -rf "$work"; fail "restic restore of $id failed (is the target large enough?): $(tail -c 800 /scratch/restore); the target's contents were not changed"; }
[ -d "$staging/data" ] || { rm -rf "$work"; fail "snapshot $id holds no /data; the target's contents were not changed"; }
swap_in "$staging/data"
echo "restored snapshot $id from $REPO into /data"
printf '{"sha256":"%s","verified":true}' "$id" > /dev/termination-log
"#
);

/// Prune: forget the run's snapshot and prune the data no snapshot needs any more. "Already gone"
/// is decided from a listing of the repository that succeeded and shows no snapshot of the run,
/// never from an error: a repository that cannot be read (credentials, network, password) fails
/// the prune, and the run's record stays.
pub const PRUNE_SCRIPT: &str = r#"
listing=$(r snapshots --json --tag "run=$RUN_TAG" 2> /scratch/err) \
  || fail "cannot list the snapshots of $REPO to prune run $RUN_TAG: $(grep -v '^$' /scratch/err | tail -n 3 | tail -c 600)"
ids=$(printf '%s' "$listing" | grep -o '"id":"[0-9a-f]\{64\}"' | cut -d'"' -f4)
if [ -z "$ids" ]; then
  echo "no snapshot tagged run=$RUN_TAG in $REPO: nothing to prune"
  exit 0
fi
r forget --prune $ids > /scratch/forget 2>&1 || fail "restic forget --prune failed: $(tail -c 800 /scratch/forget)"
echo "forgot $(echo $ids | wc -w) snapshot(s) tagged run=$RUN_TAG and pruned $REPO"
"#;

/// Verify: the run's snapshot is there, and every byte of the repository's data reads back and
/// matches its hash.
pub const VERIFY_SCRIPT: &str = r#"
report() { printf '{"verified":%s,"message":"%s"}' "$1" "$2" > /dev/termination-log; }
id=$(run_snapshots | head -n 1)
[ -n "$id" ] || { report false "no snapshot tagged run=$RUN_TAG in the repository"; exit 1; }
if ! r check --read-data > /scratch/check 2>&1; then
  report false "restic check --read-data failed: $(tail -n 3 /scratch/check | tr -d '"\\' | tr '\n' ' ' | head -c 600)"
  exit 1
fi
echo "verified snapshot $id: restic check --read-data passed"
printf '{"sha256":"%s","verified":true}' "$id" > /dev/termination-log
"#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResticConfig {
    /// What `restic check --read-data-subset` reads after each backup (`n%` or `n/t`).
    pub check_subset: String,
}

impl Default for ResticConfig {
    fn default() -> Self {
        ResticConfig { check_subset: "10%".into() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    check_subset: Option<String>,
}

pub const CONFIG_SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"properties":{"checkSubset":{"type":"string","pattern":"^([0-9]{1,3}(\\.[0-9]{1,2})?%|[0-9]{1,4}/[0-9]{1,4})$","default":"10%"}}}"#;

fn valid_subset(s: &str) -> bool {
    let digits = |t: &str, max: usize| !t.is_empty() && t.len() <= max && t.bytes().all(|b| b.is_ascii_digit());
    if let Some(percent) = s.strip_suffix('%') {
        let (whole, fraction) = percent.split_once('.').unwrap_or((percent, "0"));
        return digits(whole, 3) && digits(fraction, 2) && whole.parse::<u32>().is_ok_and(|w| (1..=100).contains(&w));
    }
    match s.split_once('/') {
        Some((n, t)) => digits(n, 4) && digits(t, 4) && matches!((n.parse::<u32>(), t.parse::<u32>()), (Ok(n), Ok(t)) if n >= 1 && n <= t),
        None => false,
    }
}

/// Parses and checks the policy's config for this strategy ("" or "{}" means the defaults).
pub fn parse_config(json: &str) -> Result<ResticConfig, String> {
    if json.trim().is_empty() {
        return Ok(ResticConfig::default());
    }
    let raw: RawConfig = serde_json::from_str(json).map_err(|e| format!("restic config: {e}"))?;
    let mut config = ResticConfig::default();
    if let Some(subset) = raw.check_subset {
        if !valid_subset(&subset) {
            return Err(format!("restic config: checkSubset must be a percentage (1% to 100%) or n/t, not {subset:?}"));
        }
        config.check_subset = subset;
    }
    Ok(config)
}

/// Where the repository is, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repository {
    /// On the claim, inside the PVC's own directory mounted as /backup.
    Claim,
    S3 {
        endpoint: String,
        bucket: String,
        prefix: String,
        region: String,
        access_key_var: String,
        secret_key_var: String,
        ca_file: Option<String>,
    },
}

impl Repository {
    fn location(&self) -> String {
        match self {
            Repository::Claim => "/backup/repo".into(),
            Repository::S3 { endpoint, bucket, prefix, .. } => format!("s3:{endpoint}/{bucket}/{prefix}"),
        }
    }
}

/// Everything a plan needs from the request.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub image: &'a str,
    pub namespace: &'a str,
    pub policy: &'a str,
    pub pvc: &'a str,
    pub repository: Repository,
    /// The variable the host puts the repository password in.
    pub password_var: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Backup,
    Restore,
    Prune,
    Verify,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResticJob {
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The run's tag value: how later Jobs find its snapshot.
    pub artifact: String,
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && !s.starts_with(|c: char| c.is_ascii_digit()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A run name as the host makes them (a DNS label): the only artifact this strategy accepts.
fn is_run_tag(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Plans one Job: `run` is the backup run's name (for a backup, the run being made; otherwise the
/// artifact an earlier backup returned).
pub fn plan(target: &Target<'_>, run: &str, action: Action, config: &ResticConfig) -> Result<ResticJob, String> {
    let password_var = target
        .password_var
        .filter(|v| is_env_name(v))
        .ok_or_else(|| "the restic strategy needs the repository password: set spec.restic.passwordSecret".to_string())?;
    if !is_run_tag(run) {
        return Err(format!("{run:?} is not an artifact of the restic strategy (expected the run's name)"));
    }
    let (access_key_var, secret_key_var, ca_file, region) = match &target.repository {
        Repository::Claim => (String::new(), String::new(), String::new(), String::new()),
        Repository::S3 { access_key_var, secret_key_var, ca_file, region, .. } => {
            if !is_env_name(access_key_var) || !is_env_name(secret_key_var) {
                return Err("the host named invalid credential variables".into());
            }
            (access_key_var.clone(), secret_key_var.clone(), ca_file.clone().unwrap_or_default(), region.clone())
        }
    };
    let body = match action {
        Action::Backup => BACKUP_SCRIPT,
        Action::Restore => RESTORE_SCRIPT,
        Action::Prune => PRUNE_SCRIPT,
        Action::Verify => VERIFY_SCRIPT,
    };
    let image = if target.image == BUSYBOX_DEFAULT || target.image.is_empty() { DEFAULT_IMAGE } else { target.image };
    let env = [
        ("REPO", target.repository.location()),
        ("REGION", region),
        ("PASSWORD_VAR", password_var.to_string()),
        ("ACCESS_KEY_VAR", access_key_var),
        ("SECRET_KEY_VAR", secret_key_var),
        ("CA_FILE", ca_file),
        ("RESTIC_HOST", format!("{}.{}", target.pvc, target.namespace)),
        ("NAMESPACE", target.namespace.to_string()),
        ("POLICY", target.policy.to_string()),
        ("PVC", target.pvc.to_string()),
        ("RUN_TAG", run.to_string()),
        ("CHECK_SUBSET", config.check_subset.clone()),
    ];
    Ok(ResticJob {
        image: image.to_string(),
        command: ["/bin/sh", "-c"].into_iter().map(ToString::to_string).chain([format!("{PRELUDE}{body}")]).collect(),
        env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        artifact: run.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(repository: Repository) -> Target<'static> {
        Target { image: "busybox:latest", namespace: "ns", policy: "p", pvc: "data-0", repository, password_var: Some("BACKUP_REPOSITORY_PASSWORD") }
    }

    fn s3() -> Repository {
        Repository::S3 {
            endpoint: "http://10.88.0.1:9000".into(),
            bucket: "backups".into(),
            prefix: "ns/p/data-0".into(),
            region: "us-east-1".into(),
            access_key_var: "AWS_ACCESS_KEY_ID".into(),
            secret_key_var: "AWS_SECRET_ACCESS_KEY".into(),
            ca_file: None,
        }
    }

    fn env<'a>(job: &'a ResticJob, name: &str) -> &'a str {
        job.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("{name}"))
    }

    #[test]
    fn config_defaults_and_errors() {
        assert_eq!(parse_config("").unwrap(), ResticConfig::default());
        assert_eq!(parse_config(r#"{"checkSubset":"2.5%"}"#).unwrap().check_subset, "2.5%");
        assert_eq!(parse_config(r#"{"checkSubset":"1/5"}"#).unwrap().check_subset, "1/5");
        for bad in [r#"{"checkSubset":"0%"}"#, r#"{"checkSubset":"101%"}"#, r#"{"checkSubset":"6/5"}"#, r#"{"checkSubset":"$(x)"}"#, r#"{"other":1}"#] {
            assert!(parse_config(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_pvc_and_destination_has_its_own_repository_and_the_run_is_the_artifact() {
        let claim = plan(&target(Repository::Claim), "p-data-0-29401234", Action::Backup, &ResticConfig::default()).unwrap();
        assert_eq!((env(&claim, "REPO"), claim.artifact.as_str(), claim.image.as_str()), ("/backup/repo", "p-data-0-29401234", DEFAULT_IMAGE));
        assert_eq!(env(&claim, "RESTIC_HOST"), "data-0.ns");
        let remote = plan(&target(s3()), "p-data-0-29401234", Action::Backup, &ResticConfig::default()).unwrap();
        assert_eq!(env(&remote, "REPO"), "s3:http://10.88.0.1:9000/backups/ns/p/data-0");
        assert_eq!(env(&remote, "ACCESS_KEY_VAR"), "AWS_ACCESS_KEY_ID");
        let script = &remote.command[2];
        assert!(script.contains("r init") && script.contains("check --read-data-subset") && script.contains("/dev/termination-log"));
        for action in [Action::Restore, Action::Prune, Action::Verify] {
            assert!(plan(&target(s3()), "p-data-0-29401234", action, &ResticConfig::default()).is_ok());
        }
    }

    #[test]
    fn a_plan_needs_the_password_and_a_run_name() {
        let mut no_password = target(Repository::Claim);
        no_password.password_var = None;
        assert!(plan(&no_password, "run-1", Action::Backup, &ResticConfig::default()).unwrap_err().contains("passwordSecret"));
        for bad in ["", "../x", "a b", "$(rm)", "Run"] {
            assert!(plan(&target(Repository::Claim), bad, Action::Prune, &ResticConfig::default()).is_err(), "{bad}");
        }
        let mut custom = target(Repository::Claim);
        custom.image = "registry.example/restic:0.17";
        assert_eq!(plan(&custom, "run-1", Action::Backup, &ResticConfig::default()).unwrap().image, "registry.example/restic:0.17");
    }
}
