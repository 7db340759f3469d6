//! What a finished Job reports through its container's termination message, and what the host
//! records of it on the Job. Pure: the message is untrusted plugin output, so it is parsed with a
//! size cap and every field is checked and bounded.

use serde::{Deserialize, Serialize};
use crate::base::text::bound;

/// The kubelet keeps at most 4096 bytes of a termination message; the host reads no more.
pub const MAX_REPORT_BYTES: usize = 4096;
/// Bytes of a message kept on the record.
pub const MAX_MESSAGE_BYTES: usize = 512;
/// Sizes beyond what JSON numbers hold exactly are not believed.
const MAX_SIZE_BYTES: u64 = (1 << 53) - 1;

/// A run's report, as checked by the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Why a failed run failed, when the plan's script knows it: one of [`FAILURE_REASONS`]
    /// (anything else is dropped), which becomes the run's and the policy's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The causes a run's own report may name for its failure (a closed set: the report is untrusted
/// plugin output, and a reason becomes a condition's reason).
pub const FAILURE_REASONS: &[&str] = &["DestinationUnreachable"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    size_bytes: Option<serde_json::Value>,
    #[serde(default)]
    sha256: Option<serde_json::Value>,
    #[serde(default)]
    verified: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    reason: Option<serde_json::Value>,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses a termination message. Anything that is not a JSON object within the size cap yields
/// `None`; fields of the wrong type or out of range are dropped, never trusted.
pub fn parse(message: &str) -> Option<Report> {
    if message.len() > MAX_REPORT_BYTES {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(message.trim()).ok()?;
    if !value.is_object() {
        return None;
    }
    let raw: Raw = serde_json::from_value(value).ok()?;
    Some(Report {
        size_bytes: raw.size_bytes.and_then(|v| v.as_u64()).filter(|n| *n <= MAX_SIZE_BYTES),
        sha256: raw.sha256.as_ref().and_then(|v| v.as_str()).filter(|s| is_sha256(s)).map(str::to_ascii_lowercase),
        verified: raw.verified.and_then(|v| v.as_bool()),
        message: raw.message.as_ref().and_then(|v| v.as_str()).map(|m| bound(m, MAX_MESSAGE_BYTES)).unwrap_or_default(),
        reason: raw.reason.as_ref().and_then(|v| v.as_str()).and_then(|r| FAILURE_REASONS.iter().find(|k| **k == r)).map(|r| (*r).to_owned()),
    })
}

/// The record the host keeps on a Job: the report as compact JSON (always small: every field is
/// bounded).
pub fn to_annotation(report: &Report) -> String {
    serde_json::to_string(report).unwrap_or_default()
}

pub fn from_annotation(s: &str) -> Option<Report> {
    parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_parsed_checked_and_bounded() {
        let sum = "a".repeat(64);
        let ok = parse(&format!(r#"{{"sizeBytes":123,"sha256":"{sum}","verified":true}}"#)).expect("report");
        assert_eq!(ok, Report { size_bytes: Some(123), sha256: Some(sum.clone()), verified: Some(true), message: String::new(), reason: None });
        assert_eq!(from_annotation(&to_annotation(&ok)), Some(ok));

        type Case = (&'static str, String, Option<Report>);
        let cases: Vec<Case> = vec![
            ("not json", "backup done".into(), None),
            ("too large", format!(r#"{{"message":"{}"}}"#, "x".repeat(5000)), None),
            ("a list", "[1,2]".into(), None),
            ("wrong types are dropped", r#"{"sizeBytes":"big","sha256":12,"verified":"yes"}"#.into(), Some(Report::default())),
            ("negative size", r#"{"sizeBytes":-1}"#.into(), Some(Report::default())),
            ("size past 2^53", r#"{"sizeBytes":18446744073709551615}"#.into(), Some(Report::default())),
            ("short digest", r#"{"sha256":"abc"}"#.into(), Some(Report::default())),
            (
                "a known failure reason",
                r#"{"reason":"DestinationUnreachable","message":"no answer from s3:9000"}"#.into(),
                Some(Report { reason: Some("DestinationUnreachable".into()), message: "no answer from s3:9000".into(), ..Report::default() }),
            ),
            ("an unknown reason is dropped", r#"{"reason":"Succeeded"}"#.into(), Some(Report::default())),
            (
                "corruption with a reason",
                r#"{"verified":false,"message":"sha256 does not match\nFORGED LOG LINE"}"#.into(),
                Some(Report { verified: Some(false), message: "sha256 does not match FORGED LOG LINE".into(), ..Report::default() }),
            ),
        ];
        for (what, input, want) in cases {
            assert_eq!(parse(&input), want, "{what}");
        }
        let long = parse(&format!(r#"{{"message":"{}"}}"#, "é".repeat(1000))).expect("report");
        assert!(long.message.len() <= MAX_MESSAGE_BYTES && long.message.ends_with('…'), "{}", long.message.len());
    }
}
