//! One webhook request: resolve, check every address against the rules, connect to a checked
//! address (the name is not resolved again, so DNS cannot swap in another address after the
//! check), TLS verified against the system's CA certificates for https, one POST over HTTP/1.1,
//! the answer's status and at most [`MAX_RESPONSE_BYTES`] of its body. Redirects are not followed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::address::AddressRules;

/// Bytes of a response read (and discarded).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Bytes of a webhook URL.
pub const MAX_URL_BYTES: usize = 2048;

/// Why a request did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The URL is not one the operator sends to (syntax, scheme); not retried.
    Invalid(String),
    /// The address rules refuse it; not retried.
    Refused(String),
    /// The receiver answered with a status that retrying will not change (4xx but 408 and 429,
    /// or a redirect); not retried.
    Rejected(String),
    /// Worth another try: cannot resolve, connect, TLS, timeouts, 5xx, 408, 429.
    Transient(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Invalid(m) | Failure::Refused(m) | Failure::Rejected(m) | Failure::Transient(m) => m,
        }
    }
}

/// A parsed webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query.
    pub path: String,
}

/// Parses and checks a webhook URL's shape (http or https, a host, no credentials in it).
pub fn parse(url: &str) -> Result<Target, Failure> {
    let url = url.trim();
    if url.len() > MAX_URL_BYTES {
        return Err(Failure::Invalid(format!("the webhook URL is longer than {MAX_URL_BYTES} bytes")));
    }
    let parsed = url::Url::parse(url).map_err(|e| Failure::Invalid(format!("the webhook URL does not parse: {e}")))?;
    let https = match parsed.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(Failure::Invalid(format!("the webhook URL's scheme is {other:?}: only http and https are sent to"))),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Failure::Invalid("the webhook URL carries user information: put a token in its path or query instead".into()));
    }
    let host = match parsed.host() {
        // Resolved and judged as rules compare names: `LOCALHOST.` is `localhost`.
        Some(url::Host::Domain(d)) => super::address::normalize_host(d),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(Failure::Invalid("the webhook URL has no host".into())),
    };
    let port = parsed.port_or_known_default().unwrap_or(if https { 443 } else { 80 });
    let mut path = parsed.path().to_owned();
    if let Some(q) = parsed.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok(Target { https, host, port, path })
}

/// The host's addresses, each checked: all must be allowed (a name that resolves to one public
/// and one internal address is refused).
pub async fn resolve(target: &Target, rules: &AddressRules, timeout: Duration) -> Result<Vec<SocketAddr>, Failure> {
    let lookup = tokio::time::timeout(timeout, tokio::net::lookup_host((target.host.as_str(), target.port)))
        .await
        .map_err(|_| Failure::Transient(format!("resolving {} took longer than {} s", target.host, timeout.as_secs())))?
        .map_err(|e| Failure::Transient(format!("cannot resolve {}: {e}", target.host)))?;
    let addresses: Vec<SocketAddr> = lookup.take(16).collect();
    if addresses.is_empty() {
        return Err(Failure::Transient(format!("{} has no address", target.host)));
    }
    for a in &addresses {
        if let Some(refusal) = rules.refusal(&target.host, a.ip()) {
            return Err(Failure::Refused(refusal));
        }
    }
    Ok(addresses)
}

/// The TLS client configuration: the system's CA certificates (plus `SSL_CERT_FILE`).
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth());
    Arc::new(config)
}

/// POSTs `body` to `target` at one of its checked `addresses`; returns the status on 2xx.
pub async fn post(
    target: &Target,
    addresses: &[SocketAddr],
    body: Vec<u8>,
    content_type: &str,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<u16, Failure> {
    tokio::time::timeout(timeout, post_inner(target, addresses, body, content_type, tls))
        .await
        .map_err(|_| Failure::Transient(format!("no answer from {} within {} s", target.host, timeout.as_secs())))?
}

async fn post_inner(target: &Target, addresses: &[SocketAddr], body: Vec<u8>, content_type: &str, tls: Arc<rustls::ClientConfig>) -> Result<u16, Failure> {
    let mut last = None;
    let mut stream = None;
    for a in addresses {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(format!("cannot connect to {} ({a}): {e}", target.host)),
        }
    }
    let Some(stream) = stream else { return Err(Failure::Transient(last.unwrap_or_else(|| format!("{} has no address", target.host)))) };
    let host_header = if (target.https && target.port == 443) || (!target.https && target.port == 80) {
        target.host.clone()
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let request = hyper::Request::post(&target.path)
        .header(hyper::header::HOST, host_header)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::USER_AGENT, concat!("backup-operator/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Failure::Invalid(format!("cannot build the request: {e}")))?;
    let response = if target.https {
        let name = rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|e| Failure::Invalid(format!("{}: {e}", target.host)))?;
        let tls_stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, stream)
            .await
            .map_err(|e| Failure::Transient(format!("TLS with {}: {e}", target.host)))?;
        send(TokioIo::new(tls_stream), request, &target.host).await?
    } else {
        send(TokioIo::new(stream), request, &target.host).await?
    };
    let status = response.status().as_u16();
    // Read (a bounded part of) the answer, so that the receiver sees its response taken.
    let _ = Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect().await;
    match status {
        200..=299 => Ok(status),
        300..=399 => Err(Failure::Rejected(format!("{} answered {status}: redirects are not followed", target.host))),
        408 | 429 | 500..=599 => Err(Failure::Transient(format!("{} answered {status}", target.host))),
        _ => Err(Failure::Rejected(format!("{} answered {status}", target.host))),
    }
}

async fn send<I>(io: I, request: hyper::Request<Full<Bytes>>, host: &str) -> Result<hyper::Response<hyper::body::Incoming>, Failure>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| Failure::Transient(format!("HTTP with {host}: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await.map_err(|e| Failure::Transient(format!("HTTP with {host}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_and_shapes_refused() {
        let t = parse("https://hooks.example.com/services/T0/B0/xyz?a=1").unwrap();
        assert_eq!(t, Target { https: true, host: "hooks.example.com".into(), port: 443, path: "/services/T0/B0/xyz?a=1".into() });
        assert_eq!(parse("http://10.88.0.5:8080/cgi-bin/record").unwrap().port, 8080);
        assert_eq!(parse("http://[::1]:9/").unwrap().host, "::1");
        for bad in ["ftp://example.com/", "file:///etc/passwd", "http://user:pw@example.com/", "not a url", "gopher://x"] {
            assert!(matches!(parse(bad), Err(Failure::Invalid(_))), "{bad}");
        }
        assert!(matches!(parse(&format!("https://example.com/{}", "a".repeat(3000))), Err(Failure::Invalid(_))));
    }

    #[tokio::test]
    async fn every_resolved_address_is_checked() {
        let rules = AddressRules::default();
        let loopback = parse("http://localhost:8080/").unwrap();
        assert!(matches!(resolve(&loopback, &rules, Duration::from_secs(5)).await, Err(Failure::Refused(m)) if m.contains("loopback")));
        // A fully qualified name in capitals is the same name, refused the same way.
        let dotted = parse("http://LOCALHOST.:8080/").unwrap();
        assert_eq!(dotted.host, "localhost");
        assert!(matches!(resolve(&dotted, &rules, Duration::from_secs(5)).await, Err(Failure::Refused(m)) if m.contains("loopback")));
        let metadata = parse("http://169.254.169.254/latest/meta-data/").unwrap();
        assert!(matches!(resolve(&metadata, &rules, Duration::from_secs(5)).await, Err(Failure::Refused(m)) if m.contains("link-local")));
        let allowed = AddressRules { allow_cidrs: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()], ..AddressRules::default() };
        assert!(resolve(&loopback, &allowed, Duration::from_secs(5)).await.is_ok());
    }

    /// A redirect is an answer, not a new destination: the target behind it is never contacted.
    #[tokio::test]
    async fn redirects_are_not_followed_and_statuses_classified() {
        for (status, expect_ok, retry) in [(204, true, false), (302, false, false), (404, false, false), (429, false, true), (503, false, true)] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let answer = format!("HTTP/1.1 {status} X\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                s.write_all(answer.as_bytes()).await.unwrap();
            });
            let target = parse(&format!("http://127.0.0.1:{}/hook", addr.port())).unwrap();
            let got = post(&target, &[addr], b"{}".to_vec(), "application/json", tls_config(), Duration::from_secs(5)).await;
            server.await.unwrap();
            match got {
                Ok(s) => assert!(expect_ok && s == status),
                Err(Failure::Transient(_)) => assert!(retry, "{status}"),
                Err(Failure::Rejected(m)) => assert!(!expect_ok && !retry, "{status}: {m}"),
                Err(other) => panic!("{status}: {other:?}"),
            }
        }
    }
}
