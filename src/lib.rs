//! backup-operator: schedules and runs backups of StatefulSet PersistentVolumeClaims, with backup
//! strategies as sandboxed WebAssembly components.
//!
//! observe ([`observe`]) → decide ([`decide`], [`schedule`]: pure) → plan ([`strategy`]) → render
//! ([`render`], [`runs`]) → apply ([`controller`], [`runs`]) → status ([`status`]). Restores
//! ([`restore`]) follow the same shape.

pub mod api;
pub mod cache;
pub mod cache_index;
pub mod controller;
pub mod decide;
pub mod destination;
pub mod error;
pub mod hook_slots;
pub mod hooks;
pub mod events;
pub mod fair;
pub mod kube_client;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod observe;
pub mod plugin_cli;
pub mod quantity;
pub mod render;
pub mod restore;
pub mod runs;
pub mod runs_first;
pub mod schedule;
pub mod serve;
pub mod startup;
pub mod status;
pub mod status_writer;
pub mod strategy;
pub mod tenancy;
pub mod watch_stream;

pub use error::{Error, Result};
