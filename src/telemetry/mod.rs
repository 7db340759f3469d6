//! Metrics and the HTTP endpoint that serves them (and the health probes).

pub mod metrics;
pub mod serve;
