//! Times as Kubernetes objects carry them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// A chrono time as a Kubernetes `Time` (k8s-openapi uses jiff). Times outside jiff's range
/// (years -9999..=9999) cannot occur here: they come from the clock and cron schedules.
pub fn to_time(t: chrono::DateTime<chrono::Utc>) -> Time {
    let nanos = i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0);
    Time(k8s_openapi::jiff::Timestamp::new(t.timestamp(), nanos).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

/// A Kubernetes `Time` as a chrono time.
pub fn from_time(t: &Time) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.0.as_second(), u32::try_from(t.0.subsec_nanosecond()).unwrap_or(0))
}
