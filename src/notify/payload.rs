//! The bodies of webhook requests, one per format (pure). Every text field is bounded so that a
//! request stays small whatever a run's message says.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::api::{NotificationEvent, WebhookFormat};

/// Bytes of the message carried in a notification.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// What happened, as plain data: the same for every format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub event: NotificationEvent,
    pub namespace: String,
    pub policy: String,
    /// The PVC, for events about one (all but Missed).
    pub pvc: Option<String>,
    /// The destination's name ("" for a policy without spec.destinations).
    pub destination: Option<String>,
    /// The run's name (its Job or VolumeSnapshot), when there is a run.
    pub run: Option<String>,
    pub scheduled_time: Option<DateTime<Utc>>,
    /// When the operator saw it happen.
    pub time: DateTime<Utc>,
    pub message: String,
    pub artifact: Option<String>,
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
}

impl Notification {
    /// Identifies the notification for receivers that deduplicate (CloudEvents `id`): at most one
    /// is sent per run (or scheduled time) and event.
    pub fn id(&self) -> String {
        let what = self.run.clone().or_else(|| self.scheduled_time.map(|t| t.timestamp().to_string())).unwrap_or_default();
        format!("{}/{}/{}/{}", self.namespace, self.policy, what, event_name(self.event))
    }
}

pub fn event_name(event: NotificationEvent) -> &'static str {
    match event {
        NotificationEvent::Succeeded => "Succeeded",
        NotificationEvent::Failed => "Failed",
        NotificationEvent::Missed => "Missed",
        NotificationEvent::Skipped => "Skipped",
        NotificationEvent::Corrupted => "Corrupted",
        NotificationEvent::PruneFailed => "PruneFailed",
        NotificationEvent::PluginFailed => "PluginFailed",
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The generic JSON document (also the `data` of a CloudEvent).
pub fn generic(n: &Notification) -> Value {
    json!({
        "version": "backup.example.com/notification/v1",
        "event": event_name(n.event),
        "namespace": n.namespace,
        "policy": n.policy,
        "pvc": n.pvc,
        "destination": n.destination,
        "run": n.run,
        "scheduledTime": n.scheduled_time.map(rfc3339),
        "time": rfc3339(n.time),
        "result": event_name(n.event),
        "message": crate::base::text::bound(&n.message, MAX_MESSAGE_BYTES),
        "artifact": n.artifact,
        "sizeBytes": n.size_bytes,
        "sha256": n.sha256,
    })
}

/// Slack's incoming-webhook message: one line of text (`&`, `<`, `>` escaped as Slack asks).
pub fn slack(n: &Notification) -> Value {
    let icon = match n.event {
        NotificationEvent::Succeeded => ":white_check_mark:",
        NotificationEvent::Skipped | NotificationEvent::Missed => ":warning:",
        NotificationEvent::Failed | NotificationEvent::Corrupted | NotificationEvent::PruneFailed | NotificationEvent::PluginFailed => ":x:",
    };
    let subject = match (&n.pvc, &n.run) {
        (Some(pvc), Some(run)) => format!(" {pvc}, run {run}"),
        (Some(pvc), None) => format!(" {pvc}"),
        _ => String::new(),
    };
    let text = format!(
        "{icon} backup {}/{}{subject}: {} — {}",
        n.namespace,
        n.policy,
        event_name(n.event),
        crate::base::text::bound(&n.message, MAX_MESSAGE_BYTES)
    );
    json!({ "text": text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;") })
}

/// A CloudEvents 1.0 event in the structured JSON mode.
pub fn cloudevent(n: &Notification) -> Value {
    json!({
        "specversion": "1.0",
        "type": format!("com.example.backup.{}", event_name(n.event).to_ascii_lowercase()),
        "source": format!("/apis/backup.example.com/v1alpha1/namespaces/{}/backuppolicies/{}", n.namespace, n.policy),
        "id": n.id(),
        "time": rfc3339(n.time),
        "subject": n.pvc,
        "datacontenttype": "application/json",
        "data": generic(n),
    })
}

/// The request body and its content type.
pub fn body(format: WebhookFormat, n: &Notification) -> (Vec<u8>, &'static str) {
    let (value, content_type) = match format {
        WebhookFormat::Generic => (generic(n), "application/json"),
        WebhookFormat::Slack => (slack(n), "application/json"),
        WebhookFormat::CloudEvents => (cloudevent(n), "application/cloudevents+json; charset=utf-8"),
    };
    (serde_json::to_vec(&value).unwrap_or_default(), content_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Notification {
        Notification {
            event: NotificationEvent::Failed,
            namespace: "prod".into(),
            policy: "db".into(),
            pvc: Some("data-db-0".into()),
            destination: Some(String::new()),
            run: Some("db-data-db-0-29401260".into()),
            scheduled_time: Some("2026-11-29T01:00:00Z".parse().unwrap()),
            time: "2026-11-29T01:00:42Z".parse().unwrap(),
            message: "tar: <short read> & more".into(),
            artifact: None,
            size_bytes: None,
            sha256: None,
        }
    }

    #[test]
    fn each_format_carries_the_documented_fields() {
        let n = failed();
        let cases: [(WebhookFormat, &str, &str, &str); 3] = [
            (WebhookFormat::Generic, "application/json", "/run", "db-data-db-0-29401260"),
            (WebhookFormat::Slack, "application/json", "/text", ":x: backup prod/db data-db-0, run db-data-db-0-29401260: Failed — tar: &lt;short read&gt; &amp; more"),
            (WebhookFormat::CloudEvents, "application/cloudevents+json; charset=utf-8", "/id", "prod/db/db-data-db-0-29401260/Failed"),
        ];
        for (format, content_type, pointer, expected) in cases {
            let (bytes, ct) = body(format, &n);
            assert_eq!(ct, content_type, "{format:?}");
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v.pointer(pointer).and_then(Value::as_str), Some(expected), "{format:?}: {v}");
        }
        let g = generic(&n);
        for (field, value) in [("event", "Failed"), ("result", "Failed"), ("namespace", "prod"), ("policy", "db"), ("pvc", "data-db-0"), ("scheduledTime", "2026-11-29T01:00:00Z")] {
            assert_eq!(g[field], value, "{field}");
        }
        let ce = cloudevent(&n);
        assert_eq!(ce["type"], "com.example.backup.failed");
        assert_eq!(ce["source"], "/apis/backup.example.com/v1alpha1/namespaces/prod/backuppolicies/db");
        assert_eq!(ce["data"], g);
    }

    #[test]
    fn messages_are_bounded() {
        let mut n = failed();
        n.message = "x".repeat(100_000);
        for format in [WebhookFormat::Generic, WebhookFormat::Slack, WebhookFormat::CloudEvents] {
            assert!(body(format, &n).0.len() < 4 * 1024, "{format:?}");
        }
    }
}
