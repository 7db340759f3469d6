//! The policy's status, built from the decision and the runs as they stand after this reconcile
//! (pure; [`crate::platform::status_writer`] writes it).

use chrono::{DateTime, Utc};

use crate::api::{BackupPolicyStatus, DestinationStatus, PluginStatus, RunStatus, to_time};
use crate::policy::observed::ObservedDestination;
use crate::runs::observed::ObservedRun;
use crate::policy::readiness::Readiness;
use crate::error::Classified;
use crate::base::text::MAX_MESSAGE_BYTES;
use crate::base::text::bound;
use crate::base::conditions::set_condition;

/// What the status says, as plain data.
pub struct Summary<'a> {
    pub namespace: &'a str,
    pub policy: &'a str,
    pub last_schedule_time: Option<DateTime<Utc>>,
    pub last_verify_time: Option<DateTime<Utc>>,
    pub next_schedule_time: Option<DateTime<Utc>>,
    pub runs: &'a [ObservedRun],
    /// The policy's destinations (named ones get a status entry each).
    pub destinations: &'a [ObservedDestination],
    pub readiness: Readiness,
    /// A plugin or spec problem found outside any run (loading, config validation).
    pub plugin_error: Option<Classified>,
    /// The plugin loaded in this reconcile, if one was (otherwise the status keeps the last one).
    pub plugin: Option<PluginStatus>,
    /// The notification targets' problems; `None` for a policy without targets.
    pub notifications: Option<Vec<crate::notify::TargetProblem>>,
    pub suspended: bool,
    pub generation: Option<i64>,
    pub now: DateTime<Utc>,
}

/// The Ready condition: a problem with the plugin or the spec first, then what the runs say.
pub fn ready(s: &Summary<'_>) -> (bool, String, String) {
    if let Some(e) = &s.plugin_error {
        return (false, e.reason.to_owned(), e.message.clone());
    }
    match s.readiness.not_ready {
        Some(not_ready) => (false, s.readiness.reason.clone().unwrap_or_else(|| not_ready.reason().to_owned()), s.readiness.message.clone()),
        None => (true, "Scheduled".to_owned(), s.readiness.message.clone()),
    }
}

pub fn build(previous: &BackupPolicyStatus, s: &Summary<'_>) -> BackupPolicyStatus {
    let mut conditions = previous.conditions.clone();
    let (is_ready, reason, message) = ready(s);
    set_condition(&mut conditions, "Ready", is_ready, &reason, message, s.generation, s.now);
    let (suspended_reason, suspended_message) =
        if s.suspended { ("Suspended", "spec.suspend is true: no new runs") } else { ("Active", "runs start on schedule") };
    set_condition(&mut conditions, "Suspended", s.suspended, suspended_reason, suspended_message.into(), s.generation, s.now);
    match &s.notifications {
        None => conditions.retain(|c| c.type_ != "Notifications"),
        Some(problems) => match problems.first() {
            None => set_condition(&mut conditions, "Notifications", true, "Configured", "every target's URL is allowed".into(), s.generation, s.now),
            Some(first) => {
                let message = problems.iter().map(|p| format!("target {}: {}", p.target, p.message)).collect::<Vec<_>>().join("; ");
                set_condition(&mut conditions, "Notifications", false, first.reason, message, s.generation, s.now);
            }
        },
    }
    BackupPolicyStatus {
        last_schedule_time: s.last_schedule_time.map(to_time),
        last_successful_time: crate::runs::observed::last_success(s.runs).map(to_time),
        next_schedule_time: s.next_schedule_time.map(to_time),
        last_verify_time: s.last_verify_time.map(to_time),
        backup_history: crate::runs::observed::history(s.namespace, s.policy, s.runs),
        plugin: s.plugin.clone().or_else(|| previous.plugin.clone()),
        destinations: destinations(s.destinations, s.runs),
        conditions,
        observed_generation: s.generation,
    }
}

/// Per named destination: its newest success, the backups it holds, and what is wrong with it (its
/// own problem, or its newest finished run's failure).
pub fn destinations(destinations: &[ObservedDestination], runs: &[ObservedRun]) -> Vec<DestinationStatus> {
    destinations
        .iter()
        .filter(|d| !d.name.is_empty())
        .map(|d| {
            let own: Vec<&ObservedRun> = runs.iter().filter(|r| r.destination == d.name).collect();
            let succeeded: Vec<&&ObservedRun> = own.iter().filter(|r| r.status == RunStatus::Succeeded).collect();
            let newest_finished = own
                .iter()
                .filter(|r| matches!(r.status, RunStatus::Succeeded | RunStatus::Failed))
                .max_by_key(|r| (r.scheduled, r.completion));
            let message = match (&d.problem, newest_finished) {
                (Some((_, message)), _) => message.clone(),
                (None, Some(r)) if r.status == RunStatus::Failed => format!("latest run {} failed: {}", r.name, r.message),
                (None, _) => String::new(),
            };
            DestinationStatus {
                name: d.name.clone(),
                last_successful_time: succeeded.iter().filter_map(|r| r.completion.or(r.scheduled)).max().map(to_time),
                backups: u32::try_from(succeeded.len()).unwrap_or(u32::MAX),
                message: bound(&message, MAX_MESSAGE_BYTES),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::from_time;

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-29T00:00:00Z").expect("t").with_timezone(&Utc);
        let t1 = t0 + chrono::Duration::minutes(5);
        let mut c = Vec::new();
        set_condition(&mut c, "Ready", true, "Scheduled", "ok".into(), Some(1), t0);
        set_condition(&mut c, "Ready", true, "Scheduled", "still ok".into(), Some(2), t1);
        assert_eq!((c.len(), from_time(&c[0].last_transition_time), c[0].message.as_str()), (1, Some(t0), "still ok"));
        set_condition(&mut c, "Ready", false, "BackupFailed", "no".into(), Some(2), t1);
        assert_eq!((c[0].status.as_str(), from_time(&c[0].last_transition_time)), ("False", Some(t1)));
        set_condition(&mut c, "Ready", false, "BackupFailed", "x".repeat(5000), Some(2), t1);
        assert!(c[0].message.len() <= MAX_MESSAGE_BYTES, "messages are bounded");
    }
}
