//! The snapshot strategy's planning logic in plain Rust, free of the WIT glue.

use alloc::format;
use alloc::string::String;
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPlan {
    pub class: Option<String>,
    /// Extra labels; the host adds the policy's own and names the snapshot after the run.
    pub labels: Vec<(String, String)>,
}

pub fn plan_backup(config: &SnapshotConfig) -> SnapshotPlan {
    SnapshotPlan { class: config.snapshot_class.clone(), labels: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config() {
        assert_eq!(parse_config("{}").unwrap(), SnapshotConfig::default());
        assert_eq!(parse_config(r#"{"snapshotClass":"csi-snap"}"#).unwrap().snapshot_class.as_deref(), Some("csi-snap"));
        assert!(parse_config(r#"{"snapshotClass":"Not_Valid"}"#).unwrap_err().contains("not a valid"));
        assert!(parse_config(r#"{"class":"x"}"#).unwrap_err().contains("unknown field"));
    }
}
