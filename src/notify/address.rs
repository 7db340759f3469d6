//! Which addresses a webhook may reach (pure). A policy is a tenant's request and a webhook is
//! sent by a privileged component, so by default nothing inside the cluster or the node is
//! reachable: loopback, link-local (cloud metadata services), private and shared ranges (where
//! cluster services, pods and nodes live), multicast and unspecified addresses, and the API
//! server's own addresses. The operator's flags allow ranges or host names explicitly.

use std::net::IpAddr;

use ipnet::IpNet;

/// The operator's rules (`--notification-allow-cidr`, `--notification-allow-host`; the API
/// server's addresses are denied as well).
#[derive(Debug, Clone, Default)]
pub struct AddressRules {
    pub allow_cidrs: Vec<IpNet>,
    /// Host names allowed whatever they resolve to (exact, case-insensitive).
    pub allow_hosts: Vec<String>,
    /// Denied even if public: the API server's addresses and `--notification-deny-cidr`.
    pub deny_cidrs: Vec<IpNet>,
}

impl AddressRules {
    /// Why `host`, resolved to `ip`, may not be reached; `None` when it may.
    pub fn refusal(&self, host: &str, ip: IpAddr) -> Option<String> {
        let ip = canonical(ip);
        if self.allow_hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) || self.allow_cidrs.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        let kind = if self.deny_cidrs.iter().any(|n| n.contains(&ip)) { Some("an address of the Kubernetes API server or a denied range") } else { kind(ip) }?;
        let single = match ip {
            IpAddr::V4(_) => format!("{ip}/32"),
            IpAddr::V6(_) => format!("{ip}/128"),
        };
        let by_host = if host.parse::<IpAddr>().is_ok() { String::new() } else { format!(" or --notification-allow-host={host}") };
        Some(format!("{host} resolves to {ip}, {kind}: refused unless the operator allows it with --notification-allow-cidr={single}{by_host}"))
    }
}

/// The addresses of the API server this operator talks to (from its kubeconfig or in-cluster
/// configuration), to deny even when public.
pub async fn api_server_addresses() -> Vec<IpNet> {
    let Ok(config) = kube::Config::infer().await else { return Vec::new() };
    let Some(host) = config.cluster_url.host() else { return Vec::new() };
    let port = config.cluster_url.port_u16().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(addresses) => addresses.map(|a| IpNet::from(canonical(a.ip()))).collect(),
        Err(_) => Vec::new(),
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        IpAddr::V4(_) => ip,
    }
}

fn kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_link_local() {
                Some("a link-local address (cloud metadata services live there)")
            } else if v4.is_private() {
                Some("a private address (cluster services, pods and nodes live there)")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("a shared address (100.64.0.0/10)")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("an unspecified address")
            } else if v4.is_multicast() || v4.is_broadcast() || o[0] >= 240 {
                Some("a multicast or reserved address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("an unspecified address")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("a link-local address (cloud metadata services live there)")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("a unique local address (cluster services, pods and nodes live there)")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let rules = AddressRules { deny_cidrs: vec!["203.0.113.10/32".parse().unwrap()], ..AddressRules::default() };
        let cases: [(&str, &str, Option<&str>); 15] = [
            ("hooks.example.com", "93.184.216.34", None),
            ("hooks.example.com", "2606:2800:220:1:248:1893:25c8:1946", None),
            ("localhost", "127.0.0.1", Some("loopback")),
            ("localhost", "::1", Some("loopback")),
            ("metadata.google.internal", "169.254.169.254", Some("link-local")),
            ("x", "fe80::1", Some("link-local")),
            ("svc", "10.96.0.1", Some("private")),
            ("pod", "172.16.4.2", Some("private")),
            ("node", "192.168.1.1", Some("private")),
            ("cgnat", "100.64.0.1", Some("shared")),
            ("ula", "fd00::1", Some("unique local")),
            ("mapped", "::ffff:127.0.0.1", Some("loopback")),
            ("zero", "0.0.0.0", Some("unspecified")),
            ("mcast", "224.0.0.1", Some("multicast")),
            ("kubernetes", "203.0.113.10", Some("API server")),
        ];
        for (host, ip, refused) in cases {
            let got = rules.refusal(host, ip.parse().unwrap());
            match (refused, &got) {
                (None, None) => {}
                (Some(word), Some(message)) => assert!(message.contains(word) && message.contains("--notification-allow-cidr"), "{host} {ip}: {message}"),
                _ => panic!("{host} {ip}: {got:?}"),
            }
        }
        let loopback = rules.refusal("localhost", "127.0.0.1".parse().unwrap()).unwrap();
        assert!(loopback.ends_with("--notification-allow-cidr=127.0.0.1/32 or --notification-allow-host=localhost"), "{loopback}");
        let literal = rules.refusal("10.1.2.3", "10.1.2.3".parse().unwrap()).unwrap();
        assert!(!literal.contains("allow-host"), "{literal}");
    }

    #[test]
    fn flags_allow_ranges_and_hosts() {
        let rules = AddressRules {
            allow_cidrs: vec!["10.88.0.0/16".parse().unwrap()],
            allow_hosts: vec!["receiver.internal".into()],
            deny_cidrs: vec![],
        };
        assert_eq!(rules.refusal("pod", "10.88.0.7".parse().unwrap()), None);
        assert_eq!(rules.refusal("Receiver.Internal", "192.168.0.9".parse().unwrap()), None);
        assert!(rules.refusal("pod", "10.89.0.7".parse().unwrap()).is_some());
    }
}
