//! The snapshot strategy's planning logic in plain Rust, free of the WIT glue.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// The VolumeSnapshotClass; `None` uses the cluster's default class.
    pub snapshot_class: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    snapshot_class: Option<String>,
}

pub const CONFIG_SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"properties":{"snapshotClass":{"type":"string","maxLength":253}}}"#;

/// A DNS-1123 subdomain, as Kubernetes requires of object names.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

pub fn parse_config(json: &str) -> Result<SnapshotConfig, String> {
    if json.trim().is_empty() {
        return Ok(SnapshotConfig::default());
    }
    let raw: RawConfig = serde_json::from_str(json).map_err(|e| format!("snapshot config: {e}"))?;
    if let Some(class) = &raw.snapshot_class
        && !is_dns_subdomain(class)
    {
        return Err(format!("snapshot config: snapshotClass {class:?} is not a valid VolumeSnapshotClass name"));
    }
    Ok(SnapshotConfig { snapshot_class: raw.snapshot_class })
}

/// 32-bit FNV-1a: a stable, dependency-free hash to keep shortened names unique.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// `<policy>-<pvc>-<stamp>`, shortened with a hash of the full name to fit 63 characters.
pub fn snapshot_name(policy: &str, pvc: &str, stamp: &str) -> String {
    const MAX: usize = 63;
    let full = format!("{policy}-{pvc}-{stamp}");
    if full.len() <= MAX {
        return full;
    }
    let hash = format!("{:08x}", fnv1a(&full));
    let keep = MAX - stamp.len() - hash.len() - 2;
    let head: String = format!("{policy}-{pvc}").chars().take(keep).collect();
    format!("{}-{hash}-{stamp}", head.trim_end_matches(['-', '.']))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPlan {
    pub class: Option<String>,
    pub name: String,
    pub labels: Vec<(String, String)>,
}

pub fn plan_backup(policy: &str, pvc: &str, stamp: &str, config: &SnapshotConfig) -> SnapshotPlan {
    SnapshotPlan {
        class: config.snapshot_class.clone(),
        name: snapshot_name(policy, pvc, stamp),
        labels: [("backup-policy", policy), ("pvc", pvc)].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_stay_unique() {
        assert_eq!(snapshot_name("db-backup", "data-db-0", "20261129t010000z"), "db-backup-data-db-0-20261129t010000z");
        let long_a = snapshot_name(&"p".repeat(60), "data-db-0", "20261129t010000z");
        let long_b = snapshot_name(&"p".repeat(60), "data-db-1", "20261129t010000z");
        assert!(long_a.len() <= 63 && long_b.len() <= 63, "{long_a} {long_b}");
        assert_ne!(long_a, long_b);
        assert!(long_a.ends_with("-20261129t010000z"));
    }

    #[test]
    fn config() {
        assert_eq!(parse_config("{}").unwrap(), SnapshotConfig::default());
        assert_eq!(parse_config(r#"{"snapshotClass":"csi-snap"}"#).unwrap().snapshot_class.as_deref(), Some("csi-snap"));
        assert!(parse_config(r#"{"snapshotClass":"Not_Valid"}"#).unwrap_err().contains("not a valid"));
        assert!(parse_config(r#"{"class":"x"}"#).unwrap_err().contains("unknown field"));
    }
}
