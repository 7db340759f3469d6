//! The wasm host's errors: what went wrong with a plugin (its bytes, its compile, a call, its
//! plan) or with finding it. The crate error wraps them ([`crate::error::Error::Strategy`]);
//! each says here whether it is permanent and which condition reason it shows as.

use super::WIT_PACKAGE;
use super::check::PlanViolation;

/// Which plugin an error is about: its name and the sha256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginId {
    pub name: String,
    pub digest: String,
}

impl std::fmt::Display for PluginId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = self.digest.get(..12).unwrap_or(&self.digest);
        write!(f, "plugin {:?} (sha256 {short})", self.name)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{plugin}: {size} bytes is over the {max}-byte limit for a plugin (a ConfigMap holds at most 1 MiB)")]
    PluginTooLarge { plugin: PluginId, size: usize, max: usize },

    #[error("plugin {name:?}: sha256 is {actual}, but the policy pins {expected}")]
    PluginDigestMismatch { name: String, expected: String, actual: String },

    #[error("{plugin}: not a valid WebAssembly component: {message}")]
    PluginInvalid { plugin: PluginId, message: String },

    #[error("{plugin}: refused before compiling: {message} (see the plugin limits in docs/plugins.md)")]
    PluginTooComplex { plugin: PluginId, message: String },

    #[error("{plugin}: compiling was stopped: {message}")]
    PluginCompileTimeout { plugin: PluginId, message: String },

    #[error("{plugin}: the compiler ran out of memory: {message}")]
    PluginCompileMemory { plugin: PluginId, message: String },

    #[error("{plugin}: built for {found}, but this operator needs {WIT_PACKAGE}: rebuild it against wit/ of this release ({message})")]
    PluginIncompatible { plugin: PluginId, found: String, message: String },

    #[error("{plugin}: stopped after exceeding its {limit_ms} ms deadline")]
    PluginTimeout { plugin: PluginId, limit_ms: u64 },

    #[error("{plugin}: stopped after trying to grow its memory past {limit_bytes} bytes")]
    PluginMemoryLimit { plugin: PluginId, limit_bytes: u64 },

    #[error("{plugin}: trapped: {message}")]
    PluginTrap { plugin: PluginId, message: String },

    #[error("{plugin}: rejected the config: {message}")]
    PluginConfigInvalid { plugin: PluginId, message: String },

    #[error("{plugin}: {message}")]
    PluginPlanFailed { plugin: PluginId, message: String },

    #[error("{plugin}: does not support {action}")]
    PluginUnsupported { plugin: PluginId, action: &'static str },

    #[error("{plugin}: cannot write to destination {destination:?}: {message}")]
    UnsupportedDestination { plugin: PluginId, destination: String, message: String },

    #[error("{plugin}: plan refused: {violation}")]
    PlanRefused { plugin: PluginId, violation: PlanViolation },

    #[error("plugin source: {0}")]
    PluginSource(String),

    #[error("{0}")]
    PluginNotFound(String),

    /// A policy whose plugin cannot be named as written (custom without a plugin, a file
    /// without --plugin-dir).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    /// The host itself failed (a task panicked, a lock was poisoned): transient.
    #[error("plugin runtime: {0}")]
    Runtime(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Permanent errors need a change to a spec or a plugin; reading a plugin's source and the
    /// host's own failures are transient.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::PluginSource(_) | Error::Runtime(_) => false,
            Error::PluginTooLarge { .. }
            | Error::PluginDigestMismatch { .. }
            | Error::PluginInvalid { .. }
            | Error::PluginTooComplex { .. }
            | Error::PluginCompileTimeout { .. }
            | Error::PluginCompileMemory { .. }
            | Error::PluginIncompatible { .. }
            | Error::PluginTimeout { .. }
            | Error::PluginMemoryLimit { .. }
            | Error::PluginTrap { .. }
            | Error::PluginConfigInvalid { .. }
            | Error::PluginPlanFailed { .. }
            | Error::PluginUnsupported { .. }
            | Error::UnsupportedDestination { .. }
            | Error::PlanRefused { .. }
            | Error::PluginNotFound(_)
            | Error::InvalidSpec(_) => true,
        }
    }

    /// The condition reason (and a failed run's).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::PluginTooLarge { .. }
            | Error::PluginDigestMismatch { .. }
            | Error::PluginInvalid { .. }
            | Error::PluginTooComplex { .. }
            | Error::PluginConfigInvalid { .. } => "PluginInvalid",
            Error::PluginIncompatible { .. } => "PluginIncompatible",
            Error::PluginTimeout { .. } => "PluginTimeout",
            Error::PluginCompileTimeout { .. } => "PluginCompileTimeout",
            Error::PluginCompileMemory { .. } => "PluginCompileMemory",
            Error::PluginMemoryLimit { .. } | Error::PluginTrap { .. } | Error::PluginPlanFailed { .. } | Error::PluginUnsupported { .. } => {
                "PluginFailed"
            }
            Error::UnsupportedDestination { .. } => "UnsupportedDestination",
            Error::PlanRefused { .. } => "PlanRefused",
            Error::PluginSource(_) => "PluginSource",
            Error::PluginNotFound(_) => "PluginNotFound",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Runtime(_) => "Runtime",
        }
    }

    /// A bounded label (never the message) for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::PluginTooLarge { .. } => "PluginTooLarge",
            Error::PluginDigestMismatch { .. } => "PluginDigestMismatch",
            Error::PluginInvalid { .. } => "PluginInvalid",
            Error::PluginTooComplex { .. } => "PluginTooComplex",
            Error::PluginCompileTimeout { .. } => "PluginCompileTimeout",
            Error::PluginCompileMemory { .. } => "PluginCompileMemory",
            Error::PluginIncompatible { .. } => "PluginIncompatible",
            Error::PluginTimeout { .. } => "PluginTimeout",
            Error::PluginMemoryLimit { .. } => "PluginMemoryLimit",
            Error::PluginTrap { .. } => "PluginTrap",
            Error::PluginConfigInvalid { .. } => "PluginConfigInvalid",
            Error::PluginPlanFailed { .. } => "PluginFailed",
            Error::PluginUnsupported { .. } => "PluginUnsupported",
            Error::UnsupportedDestination { .. } => "UnsupportedDestination",
            Error::PlanRefused { .. } => "PlanRefused",
            Error::PluginSource(_) => "PluginSource",
            Error::PluginNotFound(_) => "PluginNotFound",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Runtime(_) => "Runtime",
        }
    }
}
