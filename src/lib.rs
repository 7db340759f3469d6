//! backup-operator: schedules and runs backups of StatefulSet PersistentVolumeClaims, with backup
//! strategies as sandboxed WebAssembly components.

pub mod error;
pub mod render;
pub mod strategy;

pub use error::{Error, Result};
