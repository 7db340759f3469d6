//! Application-consistent hooks: `spec.hooks.pre` runs in the pod that mounts the PVC (with
//! `pods/exec`) before the backup starts, `spec.hooks.post` after it finished, whenever the pre
//! hook ran (even when it or the backup failed). Which pod and what happened is kept on the run's
//! Job (an annotation), so that the post hook finds the same pod and the run's history entry says
//! what the hooks did.
//!
//! - [`pod_for`]: which running pod and container run a PVC's hooks (pure, from the cache).
//! - [`exec`]: one command in that container, with a timeout and bounded output.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::AttachParams;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::api::{Hook, HookErrorPolicy};

/// The Job annotation holding the run's [`HookRecord`].
pub const ANNOTATION: &str = "backup.example.com/hooks";
/// Bytes of a hook's output kept (stdout and stderr together, the last ones).
pub const MAX_OUTPUT_BYTES: usize = 2048;
/// A hook's default time limit.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 60;

/// What the hooks of one run did, as recorded on its Job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRecord {
    /// The pod and container the hooks ran in (none: they did not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The pre hook's result ("ok in 120 ms", or why it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<String>,
    /// The post hook's result, once it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<String>,
    /// Why the hooks did not run (no running pod mounts the PVC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl HookRecord {
    /// What the run's history entry says about its hooks.
    pub fn note(&self) -> Option<String> {
        if let Some(skipped) = &self.skipped {
            return Some(format!("hooks skipped: {skipped}"));
        }
        let pod = self.pod.as_deref()?;
        let parts: Vec<String> = [("pre", &self.pre), ("post", &self.post)].iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} hook {v}"))).collect();
        (!parts.is_empty()).then(|| format!("{} (pod {pod})", parts.join(", ")))
    }

    /// The annotation's value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The pod and container that run a PVC's hooks: a running pod (not being deleted, not one of the
/// operator's own) that mounts the claim, the first by name; the named container, or the first
/// one that mounts the claim's volume.
pub fn pod_for(pods: &[Pod], claim: &str, container: Option<&str>) -> Option<(String, String)> {
    let mut candidates: Vec<(String, String)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !p.metadata.labels.as_ref().is_some_and(|l| l.contains_key(crate::base::names::LABEL_POLICY)))
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| {
            let spec = p.spec.as_ref()?;
            let volume = spec
                .volumes
                .as_ref()?
                .iter()
                .find(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == claim))?
                .name
                .clone();
            let chosen = match container {
                Some(name) => spec.containers.iter().find(|c| c.name == name)?,
                None => spec
                    .containers
                    .iter()
                    .find(|c| c.volume_mounts.as_ref().is_some_and(|m| m.iter().any(|m| m.name == volume)))
                    .or_else(|| spec.containers.first())?,
            };
            Some((p.metadata.name.clone()?, chosen.name.clone()))
        })
        .collect();
    candidates.sort();
    candidates.into_iter().next()
}

/// How one hook went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// "ok in 120 ms", "exit code 3 after 40 ms: <output>", "timed out after 60 s: <output>".
    pub summary: String,
    pub millis: u128,
    /// RBAC refused the exec (nothing ran).
    pub forbidden: bool,
}

/// Whether a failed pre hook stops the backup.
pub fn stops_backup(hook: &Hook) -> bool {
    match hook.on_error {
        HookErrorPolicy::Fail => true,
        HookErrorPolicy::Continue => false,
    }
}

/// Whether an exec was refused by RBAC: a 403 on the request, or on the connection's upgrade.
fn forbidden(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 403,
        kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(status)) => status.as_u16() == 403,
        _ => false,
    }
}

/// Runs `hook` in the pod's container, within its timeout; never longer.
pub async fn exec(client: &kube::Client, namespace: &str, pod: &str, container: &str, hook: &Hook) -> Outcome {
    let started = std::time::Instant::now();
    let timeout = Duration::from_secs(u64::from(hook.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS)));
    let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    let params = AttachParams::default().container(container).stdin(false).stdout(true).stderr(true);
    let run = async {
        let mut process = api.exec(pod, hook.command.clone(), &params).await.map_err(|e| (forbidden(&e), format!("cannot exec in pod {pod}: {e}")))?;
        let mut output = Vec::new();
        let (mut stdout, mut stderr) = (process.stdout(), process.stderr());
        let (read_out, read_err) = (last_bytes(stdout.as_mut()), last_bytes(stderr.as_mut()));
        let status = process.take_status();
        let (out, err, status) = tokio::join!(read_out, read_err, async {
            match status {
                Some(s) => s.await,
                None => None,
            }
        });
        output.extend_from_slice(&out);
        output.extend_from_slice(&err);
        Ok::<_, (bool, String)>((status, output))
    };
    let elapsed = |started: std::time::Instant| started.elapsed().as_millis();
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Outcome { ok: false, summary: format!("timed out after {} s", timeout.as_secs()), millis: elapsed(started), forbidden: false },
        Ok(Err((forbidden, message))) => Outcome { ok: false, summary: message, millis: elapsed(started), forbidden },
        Ok(Ok((status, output))) => {
            let millis = elapsed(started);
            let output = tail(&output);
            let succeeded = status.as_ref().and_then(|s| s.status.as_deref()) == Some("Success");
            if succeeded {
                return Outcome { ok: true, summary: format!("ok in {millis} ms"), millis, forbidden: false };
            }
            let code = status
                .as_ref()
                .and_then(|s| s.details.as_ref())
                .and_then(|d| d.causes.as_ref())
                .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
                .and_then(|c| c.message.clone());
            let why = match (code, status.and_then(|s| s.message)) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(message)) => message,
                (None, None) => "no exit status".to_owned(),
            };
            let summary = if output.is_empty() { format!("{why} after {millis} ms") } else { format!("{why} after {millis} ms: {output}") };
            Outcome { ok: false, summary, millis, forbidden: false }
        }
    }
}

/// Reads a stream to its end keeping only its last [`MAX_OUTPUT_BYTES`]: a hook that prints
/// gigabytes costs the operator no more memory than one that prints a line.
async fn last_bytes<R: tokio::io::AsyncRead + Unpin>(stream: Option<&mut R>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(stream) = stream else { return kept };
    let mut chunk = vec![0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > MAX_OUTPUT_BYTES {
                    kept.drain(..kept.len() - MAX_OUTPUT_BYTES);
                }
            }
        }
    }
}

/// The last [`MAX_OUTPUT_BYTES`] of a hook's output, as one line of text.
fn tail(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let text = text.trim();
    let mut start = text.len().saturating_sub(MAX_OUTPUT_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let kept = &text[start..];
    let line: String = kept.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if start > 0 { format!("…{line}") } else { line }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, claim: &str, phase: &str, containers: serde_json::Value, labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": containers, "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn the_hook_pod_is_a_running_pod_mounting_the_claim() {
        let app = json!([{"name": "sidecar"}, {"name": "postgres", "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]}]);
        let pods = vec![
            pod("db-1", "data-db-1", "Running", app.clone(), json!({})),
            pod("db-0", "data-db-0", "Running", app.clone(), json!({})),
            pod("db-0-old", "data-db-0", "Pending", app.clone(), json!({})),
            pod("backup-job-pod", "data-db-0", "Running", app.clone(), json!({"backup-policy": "db"})),
        ];
        // (claim, container asked for, expected pod and container)
        type Case<'a> = (&'a str, Option<&'a str>, Option<(&'a str, &'a str)>);
        let cases: [Case; 5] = [
            ("data-db-0", None, Some(("db-0", "postgres"))),
            ("data-db-0", Some("sidecar"), Some(("db-0", "sidecar"))),
            ("data-db-0", Some("missing"), None),
            ("data-db-1", None, Some(("db-1", "postgres"))),
            ("data-db-2", None, None),
        ];
        for (claim, container, expected) in cases {
            let got = pod_for(&pods, claim, container);
            assert_eq!(got, expected.map(|(p, c)| (p.to_owned(), c.to_owned())), "{claim} {container:?}");
        }
    }

    #[tokio::test]
    async fn a_flood_of_output_is_read_within_the_cap() {
        let flood = vec![b'y'; 10 * 1024 * 1024];
        let mut reader: &[u8] = &flood;
        let kept = last_bytes(Some(&mut reader)).await;
        assert_eq!(kept.len(), MAX_OUTPUT_BYTES);
        assert!(last_bytes::<&[u8]>(None).await.is_empty());
    }

    #[test]
    fn output_keeps_the_end_on_one_line() {
        assert_eq!(tail(b"line 1\nline 2\n"), "line 1 line 2");
        let long = format!("{}END", "x".repeat(10_000));
        let t = tail(long.as_bytes());
        assert!(t.ends_with("END") && t.starts_with('…') && t.len() <= MAX_OUTPUT_BYTES + '…'.len_utf8(), "{}", t.len());
    }

    #[test]
    fn records_round_trip_through_the_annotation() {
        let mut r = HookRecord { pod: Some("db-0".into()), container: Some("postgres".into()), pre: Some("ok in 12 ms".into()), ..HookRecord::default() };
        let text = r.to_annotation();
        assert_eq!(text, r#"{"pod":"db-0","container":"postgres","pre":"ok in 12 ms"}"#);
        assert_eq!(serde_json::from_str::<HookRecord>(&text).unwrap(), r);
        assert_eq!(r.note().as_deref(), Some("pre hook ok in 12 ms (pod db-0)"));
        r.post = Some("exit code 1 after 5 ms: no such table".into());
        assert_eq!(r.note().as_deref(), Some("pre hook ok in 12 ms, post hook exit code 1 after 5 ms: no such table (pod db-0)"));
        let skipped = HookRecord { skipped: Some("no running pod mounts data-db-1".into()), ..HookRecord::default() };
        assert_eq!(skipped.note().as_deref(), Some("hooks skipped: no running pod mounts data-db-1"));
        assert_eq!(HookRecord::default().note(), None);
    }
}
