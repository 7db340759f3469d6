//! backup-operator: schedules and runs backups of StatefulSet PersistentVolumeClaims, with backup
//! strategies as sandboxed WebAssembly components.
//!
//! observe → decide ([`decide`], [`schedule`]: pure) → plan ([`strategy`]) → render ([`render`])
//! → apply ([`controller`]).

pub mod api;
pub mod controller;
pub mod decide;
pub mod error;
pub mod render;
pub mod schedule;
pub mod snapshot;
pub mod strategy;

pub use error::{Error, Result};
