//! Start-up checks: wait for the API server (with backoff, logging progress), then make sure the
//! CRD is served and the operator may read policies. Only a missing CRD or a missing permission
//! stops the operator, each with a message that says what to do; anything else (the API server
//! down, a TLS or network error) is waited out.

use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, Client};

use crate::api::BackupPolicy;

const GROUP_VERSION: &str = "backup.example.com/v1alpha1";
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Why the operator cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("the BackupPolicy CRD is not installed ({GROUP_VERSION} has no backuppolicies): `make install` or `kubectl apply -f config/crd/`")]
    CrdMissing,
    #[error("not allowed to {verb} {resource}{scope}: {message} (apply config/rbac/, or config/namespaced/ for a one-namespace install)")]
    Forbidden { verb: &'static str, resource: &'static str, scope: String, message: String },
}

/// What a failed request means at start-up.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Fatal(StartupError),
    /// Wait and try again; the text says what went wrong, in words.
    Retry(String),
}

fn classify(e: &kube::Error, verb: &'static str, resource: &'static str, scope: &str) -> Outcome {
    match e {
        kube::Error::Api(s) if s.code == 404 => Outcome::Fatal(StartupError::CrdMissing),
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => {
            Outcome::Fatal(StartupError::Forbidden { verb, resource, scope: scope.to_owned(), message: s.message.clone() })
        }
        other => {
            let text = other.to_string();
            let lower = text.to_ascii_lowercase();
            let what = if lower.contains("certificate") || lower.contains("tls") {
                "TLS error talking to the API server (check its CA in the kubeconfig or service account)"
            } else {
                "the API server is not reachable yet"
            };
            Outcome::Retry(format!("{what}: {text}"))
        }
    }
}

/// Waits until the API server answers, then checks the CRD (through discovery) and the permission
/// to list policies in the operator's scope.
pub async fn check(client: &Client, namespace: Option<&str>) -> Result<(), StartupError> {
    let scope = namespace.map_or_else(|| " in all namespaces".to_owned(), |ns| format!(" in namespace {ns}"));
    let mut delay = Duration::from_secs(1);
    loop {
        let outcome = match client.list_api_group_resources(GROUP_VERSION).await {
            Ok(list) if list.resources.iter().any(|r| r.name == "backuppolicies") => {
                let api: Api<BackupPolicy> = match namespace {
                    Some(ns) => Api::namespaced(client.clone(), ns),
                    None => Api::all(client.clone()),
                };
                match api.list(&ListParams::default().limit(1)).await {
                    Ok(_) => return Ok(()),
                    Err(e) => classify(&e, "list", "backuppolicies.backup.example.com", &scope),
                }
            }
            Ok(_) => Outcome::Fatal(StartupError::CrdMissing),
            Err(e) => classify(&e, "discover", GROUP_VERSION, ""),
        };
        match outcome {
            Outcome::Fatal(e) => return Err(e),
            Outcome::Retry(why) => {
                tracing::warn!(retry_in = ?delay, "waiting for the API server: {why}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            serde_json::from_value(serde_json::json!({"status": "Failure", "message": message, "reason": "", "code": code}))
                .expect("status"),
        )
    }

    #[test]
    fn only_a_missing_crd_or_permission_is_fatal() {
        assert_eq!(classify(&api_error(404, "not found"), "discover", GROUP_VERSION, ""), Outcome::Fatal(StartupError::CrdMissing));
        let Outcome::Fatal(forbidden) = classify(&api_error(403, "backuppolicies is forbidden"), "list", "backuppolicies.backup.example.com", " in all namespaces")
        else {
            panic!("403 is fatal")
        };
        let text = forbidden.to_string();
        assert!(text.contains("not allowed to list backuppolicies.backup.example.com in all namespaces") && text.contains("config/rbac"), "{text}");
        assert!(matches!(classify(&api_error(503, "etcd is down"), "list", "x", ""), Outcome::Retry(_)));
        let tls = kube::Error::Service("invalid peer certificate: UnknownIssuer".into());
        let Outcome::Retry(why) = classify(&tls, "discover", GROUP_VERSION, "") else { panic!("TLS is waited out") };
        assert!(why.starts_with("TLS error"), "{why}");
    }
}
