//! The crate's one error type. Every variant says whether it is permanent (a spec or a plugin must
//! change; retrying will not help) and has a bounded label for metrics and condition reasons.

use crate::strategy::check::PlanViolation;

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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{plugin}: {size} bytes is over the {max}-byte limit for a plugin (a ConfigMap holds at most 1 MiB)")]
    PluginTooLarge { plugin: PluginId, size: usize, max: usize },

    #[error("plugin {name:?}: sha256 is {actual}, but the policy pins {expected}")]
    PluginDigestMismatch { name: String, expected: String, actual: String },

    #[error("{plugin}: not a valid WebAssembly component: {message}")]
    PluginInvalid { plugin: PluginId, message: String },

    #[error("{plugin}: does not implement backup:strategy@0.1.0 (built against another WIT version?): {message}")]
    PluginIncompatible { plugin: PluginId, message: String },

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

    #[error("{plugin}: plan refused: {violation}")]
    PlanRefused { plugin: PluginId, violation: PlanViolation },

    #[error("plugin source: {0}")]
    PluginSource(String),

    #[error("plugin runtime: {0}")]
    Runtime(String),

    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    #[error("the VolumeSnapshot API (snapshot.storage.k8s.io/v1) is not installed in this cluster: install the CSI external-snapshotter CRDs and a CSI driver with snapshot support, or use backupStrategy tar")]
    SnapshotApiMissing,

    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// Permanent errors need a change to a spec or a plugin; they are reported, not retried hot.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::PluginTooLarge { .. }
            | Error::PluginDigestMismatch { .. }
            | Error::PluginInvalid { .. }
            | Error::PluginIncompatible { .. }
            | Error::PluginTimeout { .. }
            | Error::PluginMemoryLimit { .. }
            | Error::PluginTrap { .. }
            | Error::PluginConfigInvalid { .. }
            | Error::PluginPlanFailed { .. }
            | Error::PluginUnsupported { .. }
            | Error::PlanRefused { .. }
            | Error::InvalidSpec(_)
            | Error::SnapshotApiMissing => true,
            Error::PluginSource(_) | Error::Runtime(_) | Error::Kube(_) => false,
        }
    }

    /// A bounded label (never the message) for metrics and condition reasons.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::PluginTooLarge { .. } => "PluginTooLarge",
            Error::PluginDigestMismatch { .. } => "PluginDigestMismatch",
            Error::PluginInvalid { .. } => "PluginInvalid",
            Error::PluginIncompatible { .. } => "PluginIncompatible",
            Error::PluginTimeout { .. } => "PluginTimeout",
            Error::PluginMemoryLimit { .. } => "PluginMemoryLimit",
            Error::PluginTrap { .. } => "PluginTrap",
            Error::PluginConfigInvalid { .. } => "PluginConfigInvalid",
            Error::PluginPlanFailed { .. } => "PluginFailed",
            Error::PluginUnsupported { .. } => "PluginUnsupported",
            Error::PlanRefused { .. } => "PlanRefused",
            Error::PluginSource(_) => "PluginSource",
            Error::Runtime(_) => "Runtime",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::SnapshotApiMissing => "SnapshotAPIMissing",
            Error::Kube(_) => "KubeApi",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
