//! Acting for a tenant with the tenant's rights. A BackupPolicy or BackupRestore is a request from
//! whoever may edit it in its namespace; what the operator does for it (exec of hooks, reading the
//! Secrets and ConfigMaps it names, creating its Jobs and VolumeSnapshots, writing the PVCs it
//! restores into) is sent, with `--tenant-impersonation`, as a ServiceAccount of that namespace
//! (`Impersonate-User: system:serviceaccount:<ns>:<name>`), so that RBAC decides, as Flux's
//! multi-tenancy lockdown does. Without it, the operator acts with its own rights, and hooks run
//! only in namespaces a cluster admin labelled [`HOOKS_LABEL`]`=enabled`.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::Client;

use crate::error::{Error, Result};

/// The namespace label that lets policies run hooks when the operator does not impersonate.
pub const HOOKS_LABEL: &str = "backup.example.com/hooks";
/// Tenants' clients kept at once (each is a connection pool); past it the cache starts over.
const MAX_CLIENTS: usize = 512;

/// How the operator acts for tenants.
pub enum Tenancy {
    /// With its own rights.
    Operator,
    /// As a ServiceAccount of the object's namespace: the object's `serviceAccountName`, or
    /// `default_account`.
    Impersonate { base: Box<kube::Config>, default_account: String, clients: Mutex<HashMap<(String, String), Client>>, metrics: std::sync::Arc<crate::telemetry::metrics::Metrics> },
}

impl Tenancy {
    pub fn impersonate(base: kube::Config, default_account: String, metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>) -> Tenancy {
        Tenancy::Impersonate { base: Box::new(base), default_account, clients: Mutex::default(), metrics }
    }

    pub fn impersonating(&self) -> bool {
        match self {
            Tenancy::Operator => false,
            Tenancy::Impersonate { .. } => true,
        }
    }

    /// The ServiceAccount acted as for an object of `namespace` naming `account` (none: the
    /// operator's own identity).
    pub fn account(&self, account: Option<&str>) -> Option<String> {
        match self {
            Tenancy::Operator => None,
            Tenancy::Impersonate { default_account, .. } => Some(account.unwrap_or(default_account).to_owned()),
        }
    }

    /// Who requests are made as, in words (for messages).
    pub fn acting_as(&self, namespace: &str, account: Option<&str>) -> String {
        match self.account(account) {
            Some(sa) => format!("ServiceAccount {namespace}/{sa}"),
            None => "the operator".to_owned(),
        }
    }

    /// The client to act for an object of `namespace` naming `account`.
    pub fn client(&self, operator: &Client, namespace: &str, account: Option<&str>) -> Result<Client> {
        let Tenancy::Impersonate { base, default_account, clients, metrics } = self else { return Ok(operator.clone()) };
        let account = account.unwrap_or(default_account).to_owned();
        let key = (namespace.to_owned(), account.clone());
        let mut clients = clients.lock().map_err(|_| Error::Runtime("the tenants' clients are poisoned".into()))?;
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut config = (**base).clone();
        // The user only: impersonating groups needs a cluster-wide grant, which a namespaced
        // install cannot have; RBAC bindings name the ServiceAccount itself.
        config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{account}"));
        let client = crate::platform::kube_client::counted(config, metrics.clone())?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Whether a namespace lets policies run hooks when the operator acts with its own rights: a
/// cluster admin labelled it [`HOOKS_LABEL`]`=enabled` (editing a policy would otherwise amount
/// to exec in every pod that mounts a matched PVC, for anyone who may edit policies).
pub async fn hooks_enabled(operator: &Client, namespace: &str) -> Result<bool> {
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(operator.clone());
    match api.get_opt(namespace).await {
        Ok(ns) => Ok(ns.is_some_and(|n| n.metadata.labels.as_ref().and_then(|l| l.get(HOOKS_LABEL)).map(String::as_str) == Some("enabled"))),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(Error::Forbidden {
            action: format!("get namespace {namespace} (to read its {HOOKS_LABEL} label)"),
            message: format!("{}; grant the operator get on namespaces, or run it with --tenant-impersonation", s.message),
        }),
        Err(e) => Err(e.into()),
    }
}
