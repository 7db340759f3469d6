//! The operator's own HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (the process
//! serves), `/readyz` (start-up checks passed and the built-in plugins compiled). Plain HTTP/1.1,
//! one request per connection, bounded in size, time and concurrency: it is reachable from the
//! cluster network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Bytes of a request read at most (its request line and headers).
const MAX_REQUEST: usize = 8 * 1024;
const CONNECTIONS: usize = 16;
const TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the operator is ready to serve (set once the start-up checks pass).
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The response to a request line's path: status line and body.
pub fn respond(path: &str, ready: bool, metrics: &super::metrics::Metrics) -> (&'static str, &'static str, String) {
    let text = "text/plain; charset=utf-8";
    match path.split('?').next().unwrap_or("") {
        "/metrics" => ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.encode()),
        "/healthz" | "/livez" => ("200 OK", text, "ok\n".into()),
        "/readyz" if ready => ("200 OK", text, "ok\n".into()),
        "/readyz" => ("503 Service Unavailable", text, "starting\n".into()),
        _ => ("404 Not Found", text, "not found: /metrics, /healthz, /readyz\n".into()),
    }
}

async fn handle(mut stream: tokio::net::TcpStream, readiness: Readiness, metrics: &super::metrics::Metrics) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut read = 0;
    while read < buf.len() && !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf[read..]).await?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let head = String::from_utf8_lossy(&buf[..read]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (status, content_type, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some(path)) => respond(path, readiness.get(), metrics),
        _ => ("400 Bad Request", "text/plain; charset=utf-8", "GET only\n".into()),
    };
    let response = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Serves until the process ends.
pub async fn serve(address: SocketAddr, readiness: Readiness, metrics: Arc<super::metrics::Metrics>) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    // The address as bound (a port 0 becomes the port the kernel chose).
    let address = listener.local_addr().unwrap_or(address);
    tracing::info!(%address, "serving /metrics, /healthz, /readyz");
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    loop {
        let (stream, _) = listener.accept().await?;
        let Ok(permit) = slots.clone().acquire_owned().await else { return Ok(()) };
        let (readiness, metrics) = (readiness.clone(), metrics.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(TIMEOUT, handle(stream, readiness, &metrics)).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let metrics = crate::telemetry::metrics::Metrics::new();
        metrics.leader.set(1);
        assert_eq!(respond("/healthz", false, &metrics).0, "200 OK");
        assert_eq!(respond("/readyz", false, &metrics).0, "503 Service Unavailable");
        assert_eq!(respond("/readyz", true, &metrics).0, "200 OK");
        assert_eq!(respond("/nope", true, &metrics).0, "404 Not Found");
        let (status, _, body) = respond("/metrics?x=1", true, &metrics);
        assert_eq!(status, "200 OK");
        assert!(body.contains("backup_operator_leader 1"), "{body}");
    }
}
