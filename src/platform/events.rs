//! Kubernetes events of the operator: the events of one reconcile grouped, one per type and
//! reason, so that a run over many PVCs costs one request per reason, not one per PVC (pure);
//! and published by one background task, so that a reconcile never waits for them.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};

/// Events waiting to be published; more are dropped (and counted) rather than held.
const QUEUE: usize = 4096;
/// Events published at once. Few: events are for people, and a minute's burst of runs should
/// spend the API server on the runs' Jobs first.
const CONCURRENCY: usize = 4;

struct Queued {
    reference: ObjectReference,
    event: Event,
}

/// Publishes events in the background, a few at a time, from a bounded queue.
#[derive(Clone)]
pub struct Publisher {
    queue: tokio::sync::mpsc::Sender<Queued>,
    metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>,
}

impl Publisher {
    /// Starts the publishing task (on the current runtime).
    pub fn start(client: Client, controller: &str, runs_first: crate::platform::runs_first::RunsFirst, metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>) -> Publisher {
        let (queue, receiver) = tokio::sync::mpsc::channel::<Queued>(QUEUE);
        let recorder = Recorder::new(client.clone(), Reporter { controller: controller.into(), instance: None });
        let controller = controller.to_owned();
        let queued = futures::stream::unfold(receiver, |mut r| async move { r.recv().await.map(|q| (q, r)) });
        tokio::spawn(queued.for_each_concurrent(CONCURRENCY, move |q| {
            let (recorder, client, controller, runs_first) = (recorder.clone(), client.clone(), controller.clone(), runs_first.clone());
            async move {
                runs_first.wait_turn().await;
                let name = q.reference.name.clone().unwrap_or_default();
                // kube's recorder names an event `<object>.<nanos>`, too long for an object name
                // near the 253-character limit: such events are written directly, named shorter.
                let result = if name.len() > 200 { long_name_event(&client, &controller, &q).await } else { recorder.publish(&q.event, &q.reference).await };
                if let Err(e) = result {
                    tracing::warn!(object = %name, "publishing event {}: {e}", q.event.reason);
                }
            }
        }));
        Publisher { queue, metrics }
    }

    /// Queues an event (its note bounded); never waits.
    pub fn publish(&self, reference: &ObjectReference, type_: EventType, reason: &str, note: String) {
        self.publish_related(reference, None, type_, reason, note);
    }

    /// [`publish`](Self::publish) with a related object (a run's Job): events about different
    /// related objects are kept apart (the API server's event series would otherwise count a
    /// second run's outcome as a repeat of the first's, showing only the first's text).
    pub fn publish_related(&self, reference: &ObjectReference, related: Option<ObjectReference>, type_: EventType, reason: &str, note: String) {
        let event = Event { type_, reason: reason.into(), note: Some(crate::base::text::bound(&note, crate::base::text::MAX_MESSAGE_BYTES)), action: "Reconcile".into(), secondary: related };
        if self.queue.try_send(Queued { reference: reference.clone(), event }).is_err() {
            self.metrics.events_dropped.inc();
        }
    }
}

async fn long_name_event(client: &Client, controller: &str, q: &Queued) -> Result<(), kube::Error> {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    let now = chrono::Utc::now();
    let (name, namespace) = (q.reference.name.clone().unwrap_or_default(), q.reference.namespace.clone().unwrap_or_default());
    let event: K8sEvent = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{}.{:x}", crate::base::names::label_value(&name), now.timestamp_nanos_opt().unwrap_or_default()), "namespace": namespace},
        "eventTime": now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "reason": q.event.reason,
        "note": q.event.note,
        "action": q.event.action,
        "type": match q.event.type_ { EventType::Normal => "Normal", EventType::Warning => "Warning" },
        "regarding": q.reference,
        "related": q.event.secondary,
        "reportingController": controller,
        "reportingInstance": controller,
    }))
    .map_err(kube::Error::SerdeError)?;
    Api::<K8sEvent>::namespaced(client.clone(), &namespace).create(&Default::default(), &event).await.map(|_| ())
}

/// Events in the order their (type, reason) first appeared; several notes of one reason become
/// one note, "N events: first; second; … (and K more)", at most `max` bytes.
pub fn group(queued: Vec<(EventType, String, String)>, max: usize) -> Vec<(EventType, String, String)> {
    let mut groups: Vec<(EventType, String, Vec<String>)> = Vec::new();
    for (type_, reason, note) in queued {
        match groups.iter_mut().find(|(t, r, _)| *t == type_ && *r == reason) {
            Some((_, _, notes)) => notes.push(note),
            None => groups.push((type_, reason, vec![note])),
        }
    }
    groups
        .into_iter()
        .map(|(type_, reason, notes)| {
            let note = match notes.as_slice() {
                [one] => crate::base::text::bound(one, max),
                many => joined(many, max),
            };
            (type_, reason, note)
        })
        .collect()
}

/// "N events: a; b; … (and K more)" within `max` bytes: whole notes only, as many as fit.
fn joined(notes: &[String], max: usize) -> String {
    let head = format!("{} events: ", notes.len());
    let mut out = head.clone();
    for (i, note) in notes.iter().enumerate() {
        let rest = notes.len() - i - 1;
        let tail = if rest > 0 { format!(" (and {rest} more)") } else { String::new() };
        let sep = if i == 0 { "" } else { "; " };
        if out.len() + sep.len() + note.len() + tail.len() > max {
            // The first note is cut to fit rather than left out.
            if i == 0 {
                let more = format!(" (and {} more)", notes.len() - 1);
                let room = max.saturating_sub(head.len() + more.len());
                return format!("{head}{}{more}", crate::base::text::bound(note, room));
            }
            return format!("{out} (and {} more)", notes.len() - i);
        }
        out.push_str(sep);
        out.push_str(note);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: EventType, reason: &str, note: &str) -> (EventType, String, String) {
        (t, reason.to_owned(), note.to_owned())
    }

    #[test]
    fn one_event_per_type_and_reason_with_the_notes_that_fit() {
        use EventType::{Normal, Warning};
        let many: Vec<_> = (0..1000).map(|i| ev(Normal, "RunStarted", &format!("data-{i}: run r-{i} started (tar@abc)"))).collect();
        type Case = (&'static str, Vec<(EventType, String, String)>, Vec<(EventType, &'static str, &'static str)>);
        let cases: Vec<Case> = vec![
            ("nothing", vec![], vec![]),
            ("one", vec![ev(Normal, "RunStarted", "a: started")], vec![(Normal, "RunStarted", "a: started")]),
            (
                "two reasons keep their order",
                vec![ev(Warning, "PluginFailed", "b: boom"), ev(Normal, "RunStarted", "a: started"), ev(Normal, "RunStarted", "c: started")],
                vec![(Warning, "PluginFailed", "b: boom"), (Normal, "RunStarted", "2 events: a: started; c: started")],
            ),
            (
                "same reason, two types",
                vec![ev(Normal, "X", "n"), ev(Warning, "X", "w")],
                vec![(Normal, "X", "n"), (Warning, "X", "w")],
            ),
        ];
        for (what, queued, want) in cases {
            let got = group(queued, 512);
            let got: Vec<(EventType, &str, &str)> = got.iter().map(|(t, r, n)| (*t, r.as_str(), n.as_str())).collect();
            assert_eq!(got, want, "{what}");
        }
        let got = group(many, 512);
        assert_eq!(got.len(), 1);
        let note = &got[0].2;
        assert!(note.len() <= 512, "{}", note.len());
        assert!(note.starts_with("1000 events: data-0: run r-0 started (tar@abc); data-1: "), "{note}");
        assert!(note.ends_with(" more)"), "{note}");
        let shown = note.matches(" started (tar@abc)").count();
        assert!(note.contains(&format!("(and {} more)", 1000 - shown)), "{note}");
        let huge = group(vec![ev(Normal, "R", &"x".repeat(2000)), ev(Normal, "R", "y")], 100);
        assert!(huge[0].2.len() <= 100 && huge[0].2.starts_with("2 events: xxx") && huge[0].2.ends_with("(and 1 more)"), "{}", huge[0].2);
    }
}
