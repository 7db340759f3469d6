//! The crate error: the wasm host's ([`crate::strategy::Error`]) wrapped, and the controllers' own.
//! Every variant says whether it is permanent (a spec or a plugin must change; retrying will not
//! help); [`Error::classify`] is the one place an error becomes a condition reason, a retry
//! policy and a bounded message.

use crate::base::text::MAX_MESSAGE_BYTES;
pub use crate::strategy::error::PluginId;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plugin's, or finding it: the wasm host's own error.
    #[error(transparent)]
    Strategy(#[from] crate::strategy::Error),

    #[error("the pre hook failed for {pvc}: {message}")]
    HookFailed { pvc: String, message: String },

    /// No hook slot is free (see `hook_slots`): the run waits a few seconds, nothing failed.
    #[error("the hooks of {pvc} wait: {busy}")]
    HooksBusy { pvc: String, busy: crate::base::hook_slots::Busy },

    /// The API server refused to create one of the operator's objects (a quota, an admission
    /// webhook, RBAC, an invalid object): the run fails with the server's words; the next run
    /// tries again.
    #[error("the API server refused to create {object} ({code}): {message}")]
    Refused { object: String, code: u16, message: String },

    /// RBAC refused what the operator did for a tenant (as the tenant's ServiceAccount with
    /// `--tenant-impersonation`, or with its own rights).
    #[error("not allowed to {action}: {message}")]
    Forbidden { action: String, message: String },

    /// A policy with hooks in a namespace where hooks are not enabled.
    #[error("{0}")]
    HooksForbidden(String),

    #[error("plugin runtime: {0}")]
    Runtime(String),

    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    #[error("invalid spec.pvcSelector: {0}")]
    InvalidSelector(String),

    #[error("the VolumeSnapshot API (snapshot.storage.k8s.io/v1) is not installed in this cluster: install the CSI external-snapshotter CRDs and a CSI driver with snapshot support, or use backupStrategy tar")]
    SnapshotApiMissing,

    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

}

impl Error {
    /// Permanent errors need a change to a spec or a plugin; they are reported, not retried hot.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Strategy(e) => e.is_permanent(),
            Error::HookFailed { .. }
            | Error::InvalidSpec(_)
            | Error::InvalidSelector(_)
            | Error::Refused { .. }
            | Error::Forbidden { .. }
            | Error::HooksForbidden(_)
            | Error::SnapshotApiMissing => true,
            Error::HooksBusy { .. } | Error::Runtime(_) | Error::Kube(_) => false,
        }
    }

    /// The one place an error becomes what users see: the condition reason (also the reason of a
    /// failed run's history entry and of its Warning event), whether retrying can help, and the
    /// message, bounded.
    pub fn classify(&self) -> Classified {
        let reason = match self {
            Error::Strategy(e) => e.reason(),
            Error::HookFailed { .. } => "HookFailed",
            Error::HooksBusy { .. } => "HooksBusy",
            Error::Refused { .. } => "JobRefused",
            Error::Forbidden { .. } => "Forbidden",
            Error::HooksForbidden(_) => "HooksForbidden",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::InvalidSelector(_) => "InvalidSelector",
            Error::SnapshotApiMissing => "SnapshotAPIMissing",
            Error::Runtime(_) => "Runtime",
            Error::Kube(_) => "KubeApi",
        };
        let retry = match self {
            Error::HooksBusy { .. } => Retry::Soon,
            _ if self.is_permanent() => Retry::AwaitChange,
            _ => Retry::Backoff,
        };
        Classified { reason, retry, message: crate::base::text::bound(&self.to_string(), MAX_MESSAGE_BYTES) }
    }

    /// A bounded label (never the message) for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Strategy(e) => e.metric_label(),
            Error::HookFailed { .. } => "HookFailed",
            Error::HooksBusy { .. } => "HooksBusy",
            Error::Refused { .. } => "JobRefused",
            Error::Forbidden { .. } => "Forbidden",
            Error::HooksForbidden(_) => "HooksForbidden",
            Error::Runtime(_) => "Runtime",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::InvalidSelector(_) => "InvalidSelector",
            Error::SnapshotApiMissing => "SnapshotAPIMissing",
            Error::Kube(_) => "KubeApi",
        }
    }

    /// The same error again (errors are not `Clone`: kube's are not): for an error that applies to
    /// several PVCs, or a failed digest remembered.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Strategy(e) => Error::Strategy(e.clone()),
            Error::Kube(k) => Error::Runtime(format!("Kubernetes API: {k}")),
            Error::Runtime(m) => Error::Runtime(m.clone()),
            Error::InvalidSpec(m) => Error::InvalidSpec(m.clone()),
            Error::InvalidSelector(m) => Error::InvalidSelector(m.clone()),
            Error::SnapshotApiMissing => Error::SnapshotApiMissing,
            Error::HookFailed { pvc, message } => Error::HookFailed { pvc: pvc.clone(), message: message.clone() },
            Error::HooksBusy { pvc, busy } => Error::HooksBusy { pvc: pvc.clone(), busy: busy.clone() },
            Error::Refused { object, code, message } => Error::Refused { object: object.clone(), code: *code, message: message.clone() },
            Error::Forbidden { action, message } => Error::Forbidden { action: action.clone(), message: message.clone() },
            Error::HooksForbidden(m) => Error::HooksForbidden(m.clone()),
        }
    }
}

/// Whether retrying an error can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A spec, a plugin or the cluster must change: report it and wait for that change.
    AwaitChange,
    /// Transient (the API server, the runtime): retry with backoff.
    Backoff,
    /// Waiting for a shared slot that frees up as others finish: retry in a few seconds, without
    /// counting it as a failure.
    Soon,
}

/// An error as users see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub reason: &'static str,
    pub retry: Retry,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of creating `object` (for example "Job db-data-0-29412"): a refusal the API
    /// server will repeat (400, 403, 422: a quota, an admission webhook, RBAC, an invalid object)
    /// is [`Error::Refused`]; anything else stays an API error and is retried.
    pub fn creating(object: String, e: kube::Error) -> Error {
        match e {
            kube::Error::Api(s) if s.code == 403 && is_rbac_denial(&s.message) => Error::Forbidden { action: format!("create {object}"), message: s.message },
            kube::Error::Api(s) if matches!(s.code, 400 | 403 | 422) => Error::Refused { object, code: s.code, message: s.message },
            e => Error::Kube(e),
        }
    }

    /// An error of `action` (for example "get Secret \"creds\""): RBAC's refusal is
    /// [`Error::Forbidden`], naming the action; anything else stays an API error.
    pub fn acting(action: String, e: kube::Error) -> Error {
        match e {
            kube::Error::Api(s) if s.code == 403 => Error::Forbidden { action, message: s.message },
            e => Error::Kube(e),
        }
    }
}

/// Whether a 403's message is RBAC's ("User \"x\" cannot create resource \"jobs\" ..."), not a
/// quota's or an admission webhook's (which are refusals of the object, not of the requester).
fn is_rbac_denial(message: &str) -> bool {
    message.contains(" cannot ") && message.contains("resource \"")
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Error as S;
    use crate::strategy::check::PlanViolation;

    fn id() -> PluginId {
        PluginId { name: "p".into(), digest: "0".repeat(64) }
    }

    #[test]
    fn every_error_maps_to_one_reason_and_retry_policy() {
        let cases: Vec<(Error, &str, Retry)> = vec![
            (Error::Strategy(S::PluginInvalid { plugin: id(), message: "x".into() }), "PluginInvalid", Retry::AwaitChange),
            (Error::Strategy(S::PluginConfigInvalid { plugin: id(), message: "x".into() }), "PluginInvalid", Retry::AwaitChange),
            (Error::Strategy(S::PluginIncompatible { plugin: id(), found: "backup:strategy@0.1.0".into(), message: "x".into() }), "PluginIncompatible", Retry::AwaitChange),
            (Error::Strategy(S::PluginTimeout { plugin: id(), limit_ms: 5 }), "PluginTimeout", Retry::AwaitChange),
            (Error::Strategy(S::PluginTrap { plugin: id(), message: "x".into() }), "PluginFailed", Retry::AwaitChange),
            (Error::Strategy(S::PlanRefused { plugin: id(), violation: PlanViolation::Privileged }), "PlanRefused", Retry::AwaitChange),
            (Error::InvalidSpec("x".into()), "InvalidSpec", Retry::AwaitChange),
            (Error::InvalidSelector("x".into()), "InvalidSelector", Retry::AwaitChange),
            (Error::SnapshotApiMissing, "SnapshotAPIMissing", Retry::AwaitChange),
            (Error::Runtime("x".into()), "Runtime", Retry::Backoff),
            (Error::HooksBusy { pvc: "data-db-0".into(), busy: crate::base::hook_slots::Busy::Namespace(4) }, "HooksBusy", Retry::Soon),
            (Error::Strategy(S::PluginNotFound("x".into())), "PluginNotFound", Retry::AwaitChange),
            (Error::Strategy(S::PluginSource("API timeout".into())), "PluginSource", Retry::Backoff),
            (Error::Refused { object: "Job x".into(), code: 403, message: "exceeded quota".into() }, "JobRefused", Retry::AwaitChange),
            (Error::Forbidden { action: "create Job x".into(), message: "cannot".into() }, "Forbidden", Retry::AwaitChange),
            (Error::HooksForbidden("x".into()), "HooksForbidden", Retry::AwaitChange),
        ];
        for (error, reason, retry) in cases {
            let c = error.classify();
            assert_eq!((c.reason, c.retry), (reason, retry), "{error}");
        }
        let long = Error::Strategy(S::PluginPlanFailed { plugin: id(), message: "x".repeat(5000) }).classify();
        assert!(long.message.len() <= MAX_MESSAGE_BYTES, "{}", long.message.len());
        let incompatible = Error::Strategy(S::PluginIncompatible { plugin: id(), found: "backup:strategy@0.1.0".into(), message: "m".into() }).to_string();
        assert!(incompatible.contains("backup:strategy@0.1.0") && incompatible.contains("backup:strategy@0.3.0"), "{incompatible}");
    }
}
