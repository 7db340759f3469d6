//! A Kubernetes API server in memory, for unit tests of what a reconcile does (which objects are
//! applied, patched, created and deleted, in which order) in milliseconds and without a cluster.
//! It keeps objects by path, answers server-side applies and merge patches by merging the body
//! into what it holds, creates on POST, deletes on DELETE, and records every request.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use kube::client::Body;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: String,
    pub body: serde_json::Value,
}

/// The fake server's state: objects by path, and the requests in order.
#[derive(Default)]
pub struct State {
    pub objects: BTreeMap<String, serde_json::Value>,
    pub requests: Vec<Request>,
    uids: u64,
}

/// A client of a fresh fake server, and a handle on what the server holds and saw.
pub fn client() -> (kube::Client, Arc<Mutex<State>>) {
    let state = Arc::new(Mutex::new(State::default()));
    let served = state.clone();
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let state = served.clone();
        async move { Ok::<_, Infallible>(answer(&state, request).await) }
    });
    (kube::Client::new(service, "default"), state)
}

/// Puts an object where a GET of `path` finds it.
pub fn insert(state: &Mutex<State>, path: &str, object: serde_json::Value) {
    if let Ok(mut s) = state.lock() {
        s.objects.insert(path.to_owned(), object);
    }
}

/// The requests so far, as "METHOD path" lines (events left out: they are published in the
/// background, in their own order).
pub fn calls(state: &Mutex<State>) -> Vec<String> {
    state
        .lock()
        .map(|s| s.requests.iter().filter(|r| !r.path.contains("/events")).map(|r| format!("{} {}", r.method, r.path)).collect())
        .unwrap_or_default()
}

/// The body of the first request with this method and path.
pub fn body(state: &Mutex<State>, method: &str, path: &str) -> Option<serde_json::Value> {
    state.lock().ok()?.requests.iter().find(|r| r.method == method && r.path == path).map(|r| r.body.clone())
}

fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn response(code: u16, body: &serde_json::Value) -> http::Response<Body> {
    let mut r = http::Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn status(code: u16, reason: &str, message: &str) -> http::Response<Body> {
    response(code, &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code}))
}

async fn answer(state: &Mutex<State>, request: http::Request<Body>) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    let path = parts.uri.path().to_owned();
    let Ok(mut s) = state.lock() else { return status(500, "InternalError", "poisoned") };
    s.requests.push(Request { method: parts.method.to_string(), path: path.clone(), query: parts.uri.query().unwrap_or("").to_owned(), body: body.clone() });
    match parts.method.as_str() {
        "GET" => match s.objects.get(&path) {
            Some(o) => response(200, o),
            None => status(404, "NotFound", &format!("{path} not found")),
        },
        "PATCH" => {
            s.uids += 1;
            let uid = format!("uid-{}", s.uids);
            let object = s.objects.entry(path.clone()).or_insert_with(|| {
                serde_json::json!({"metadata": {"uid": uid, "creationTimestamp": "2026-11-29T00:00:00Z"}})
            });
            merge(object, &body);
            response(200, object)
        }
        "POST" => {
            let name = body.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or("generated").to_owned();
            s.objects.insert(format!("{path}/{name}"), body.clone());
            response(201, &body)
        }
        "DELETE" => match s.objects.remove(&path) {
            Some(o) => response(200, &o),
            None => status(404, "NotFound", &format!("{path} not found")),
        },
        _ => status(405, "MethodNotAllowed", "not in the fake"),
    }
}
