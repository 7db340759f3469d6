//! backup-operator: schedules and runs backups of StatefulSet PersistentVolumeClaims, with backup
//! strategies as sandboxed WebAssembly components.
//!
//! The folders are the layers, bottom first; a file imports only from its own layer or below
//! (`tests/layers.rs` checks it):
//! - [`base`]: names, labels, message bounds, conditions, fair queues: the shared vocabulary.
//! - [`api`]: the CRDs. [`telemetry`]: metrics and their HTTP endpoint.
//! - [`strategy`]: the wasm host that asks plugins for plans. [`error`]: the crate error.
//! - [`platform`]: the Kubernetes side: client, shared watches, events, status writes, leases.
//! - [`runs`], [`hooks`], [`notify`]: what a run is made of and what it does.
//! - [`context`]: what the controllers share.
//! - [`policy`] (observe → decide → apply → status) and [`restore`], side by side.
//! - [`operator`]: starts both controllers; [`plugin_cli`]: the plugin author's commands.

pub mod api;
pub mod base;
pub mod context;
pub mod error;
pub mod hooks;
pub mod notify;
pub mod operator;
pub mod platform;
pub mod plugin_cli;
pub mod policy;
pub mod restore;
pub mod runs;
pub mod strategy;
pub mod telemetry;

pub use error::{Error, Result};
