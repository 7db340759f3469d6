//! A webhook receiver pod for notification tests (busybox httpd with a CGI script that records
//! every request), and reading what it got.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::PostParams;
use serde_json::{Value, json};

use super::TestNamespace;
use super::operator::{LIMIT, poll};

/// The receiver: httpd on port 8080; `record` keeps each request's query, content type and body;
/// `list` prints them, one per line. While /tmp/down exists, httpd is stopped.
const RECEIVER: &str = r#"mkdir -p /www/cgi-bin /www/requests
cat > /www/cgi-bin/record <<'END'
#!/bin/sh
f=/www/requests/$(date +%s)-$$-$RANDOM
head -c "${CONTENT_LENGTH:-0}" > "$f.tmp"
printf '%s\t%s\t%s' "$QUERY_STRING" "$CONTENT_TYPE" "$(date +%s)" > "$f.meta"
mv "$f.tmp" "$f.body"
printf 'Content-Type: text/plain\r\n\r\nok\n'
END
cat > /www/cgi-bin/list <<'END'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
for f in /www/requests/*.body; do [ -e "$f" ] || continue; printf '%s\t' "$(cat "${f%.body}.meta")"; tr -d '\n' < "$f"; echo; done
END
chmod +x /www/cgi-bin/record /www/cgi-bin/list
while :; do
  if [ -e /tmp/down ]; then sleep 0.2; continue; fi
  httpd -f -p 8080 -h /www & pid=$!
  while [ ! -e /tmp/down ] && kill -0 $pid 2>/dev/null; do sleep 0.2; done
  kill $pid 2>/dev/null; wait $pid
done"#;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Received {
    pub format: String,
    pub content_type: String,
    /// When the receiver got it (Unix seconds).
    pub arrived: i64,
    pub body: Value,
}

pub async fn start_receiver(ns: &TestNamespace) -> String {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "receiver", "labels": {"app": "receiver"}},
        "spec": {"containers": [{"name": "httpd", "image": "busybox:latest", "imagePullPolicy": "IfNotPresent",
                                 "command": ["/bin/sh", "-c", RECEIVER]}],
                 "terminationGracePeriodSeconds": 0}
    }))
    .expect("pod");
    ns.api::<Pod>().create(&PostParams::default(), &pod).await.expect("receiver pod");
    super::wait_condition(ns.api::<Pod>(), "receiver", "receiver running", LIMIT, kube::runtime::conditions::is_pod_running()).await;
    let pod = ns.api::<Pod>().get("receiver").await.expect("pod");
    let ip = pod.status.and_then(|s| s.pod_ip).expect("pod IP");
    poll("the receiver answering", LIMIT, || async { received(&ip).map(|_| ()) }).await;
    ip
}

/// The receiver's requests, through its `list` script (plain HTTP from the node); `None` while it
/// does not answer.
pub fn received(ip: &str) -> Option<Vec<Received>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&format!("{ip}:8080").parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /cgi-bin/list HTTP/1.0\r\nHost: receiver\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let body = response.split_once("\r\n\r\n")?.1;
    Some(
        body.lines()
            .filter_map(|line| {
                let mut parts = line.splitn(4, '\t');
                let (query, content_type, arrived, body) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
                Some(Received {
                    format: query.strip_prefix("format=").unwrap_or(query).to_owned(),
                    content_type: content_type.to_owned(),
                    arrived: arrived.parse().ok()?,
                    body: serde_json::from_str(body).unwrap_or(Value::Null),
                })
            })
            .collect(),
    )
}

/// The run and event a request is about, whatever its format.
pub fn about(r: &Received) -> (String, String) {
    let field = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match r.format.as_str() {
        "generic" => (field(&r.body["run"]), field(&r.body["event"])),
        "cloudevents" => (field(&r.body["data"]["run"]), field(&r.body["data"]["event"])),
        // ":white_check_mark: backup <ns>/<policy> <pvc>, run <run>: <event> — <message>"
        _ => {
            let text = r.body["text"].as_str().unwrap_or_default();
            let (run, rest) = text.split_once(", run ").and_then(|(_, t)| t.split_once(": ")).unwrap_or_default();
            (run.to_owned(), rest.split(' ').next().unwrap_or_default().to_owned())
        }
    }
}

pub fn counts(all: &[Received]) -> BTreeMap<(String, String, String), usize> {
    let mut counts = BTreeMap::new();
    for r in all {
        let (run, event) = about(r);
        *counts.entry((r.format.clone(), run, event)).or_default() += 1;
    }
    counts
}

pub async fn url_secret(ns: &TestNamespace, name: &str, url: &str) {
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {"url": url}})).expect("secret");
    ns.api::<Secret>().create(&PostParams::default(), &secret).await.expect("secret");
}

pub fn target(name: &str, secret: &str, format: &str, events: &[&str]) -> Value {
    json!({"name": name, "events": events, "webhook": {"urlSecret": {"name": secret, "key": "url"}, "format": format}})
}

