//! The Kubernetes client: kube's default stack with every request counted by verb and resource
//! (`backup_operator_kubernetes_requests_total`), so that the API work per run is measurable in
//! production, not only in the scale benchmark.

use kube::Client;
use tower::util::MapRequestLayer;

/// Resources the operator uses; any other path is counted as `other`, so labels stay bounded.
const RESOURCES: &[&str] = &[
    "backuppolicies",
    "backuprestores",
    "configmaps",
    "customresourcedefinitions",
    "events",
    "jobs",
    "leases",
    "persistentvolumeclaims",
    "pods",
    "volumesnapshots",
    "selfsubjectaccessreviews",
];

/// The verb (get, list, watch, create, patch, update, delete) and resource (with `/status` for the
/// status subresource) of a request to the API server.
pub fn classify(method: &http::Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/group/version/...
    let rest: &[&str] = match segments.first() {
        Some(&"api") => segments.get(2..).unwrap_or(&[]),
        Some(&"apis") => segments.get(3..).unwrap_or(&[]),
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, named, sub) = match rest {
        [r] => (*r, false, None),
        [r, _name] => (*r, true, None),
        [r, _name, sub, ..] => (*r, true, Some(*sub)),
        [] => ("", false, None),
    };
    let known = RESOURCES.iter().find(|k| **k == resource).copied();
    let resource = match (known, sub) {
        (Some(r), Some("status")) => format!("{r}/status"),
        (Some(r), _) => r.to_owned(),
        (None, _) => "other".to_owned(),
    };
    let watch = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PATCH => "patch",
        http::Method::PUT => "update",
        http::Method::DELETE => "delete",
        _ => "other",
    };
    (verb, resource)
}

/// A client from the environment's configuration (in-cluster or kubeconfig) whose requests are counted.
pub async fn from_env(metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>) -> kube::Result<Client> {
    let config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    counted(config, metrics)
}

/// A counted client for a configuration.
pub fn counted(config: kube::Config, metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>) -> kube::Result<Client> {
    let layer = MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
        let (verb, resource) = classify(request.method(), request.uri().path(), request.uri().query());
        metrics.requests.get_or_create(&crate::telemetry::metrics::RequestLabels { verb: verb.to_owned(), resource }).inc();
        request
    });
    Ok(kube::client::ClientBuilder::try_from(config)?.with_layer(&layer).build())
}

/// Whether a 404 from a write means that the object is gone. A custom resource's endpoints answer
/// 404 for a moment while its CRD is updated, so the object is read back (by name, the same uid)
/// before a write to it is given up; an error reading it counts as not gone (the write is retried).
pub async fn really_gone<K>(api: &kube::Api<K>, name: &str, uid: Option<&str>) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(Some(object)) => object.meta().uid.as_deref() != uid,
        Ok(None) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn requests_are_classified_by_verb_and_resource() {
        let table: &[(Method, &str, Option<&str>, &str, &str)] = &[
            (Method::GET, "/api/v1/namespaces/a/persistentvolumeclaims", Some("watch=true&resourceVersion=5"), "watch", "persistentvolumeclaims"),
            (Method::GET, "/api/v1/namespaces/a/persistentvolumeclaims", Some("limit=500"), "list", "persistentvolumeclaims"),
            (Method::GET, "/api/v1/pods", None, "list", "pods"),
            (Method::GET, "/api/v1/namespaces/a/configmaps/plugin", None, "get", "configmaps"),
            (Method::PATCH, "/apis/batch/v1/namespaces/a/jobs/run-1", Some("fieldManager=backup-operator&force=true"), "patch", "jobs"),
            (Method::PATCH, "/apis/backup.example.com/v1alpha1/namespaces/a/backuppolicies/p/status", None, "patch", "backuppolicies/status"),
            (Method::POST, "/apis/events.k8s.io/v1/namespaces/a/events", None, "create", "events"),
            (Method::DELETE, "/apis/batch/v1/namespaces/a/jobs/x", None, "delete", "jobs"),
            (Method::PUT, "/apis/coordination.k8s.io/v1/namespaces/a/leases/l", None, "update", "leases"),
            (Method::GET, "/apis/example.org/v1/namespaces/a/secrets-of-someone/x", None, "get", "other"),
            (Method::GET, "/version", None, "list", "other"),
            (Method::GET, "/apis/backup.example.com/v1alpha1", None, "list", "other"),
        ];
        for (method, path, query, verb, resource) in table {
            assert_eq!(classify(method, path, *query), (*verb, resource.to_string()), "{method} {path}");
        }
    }
}
