//! Status conditions as every controller of the operator writes them.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::text::{MAX_MESSAGE_BYTES, bound};
use super::time::to_time;

/// Upserts a condition, keeping its transition time when its status does not change.
pub fn set_condition(conditions: &mut Vec<Condition>, type_: &str, status: bool, reason: &str, message: String, generation: Option<i64>, now: DateTime<Utc>) {
    let status = if status { "True" } else { "False" }.to_owned();
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| to_time(now));
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message: bound(&message, MAX_MESSAGE_BYTES),
        observed_generation: generation,
        last_transition_time: transition,
    });
}
