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

/// A host name as rules compare it: lowercase, without the trailing dot of a fully qualified name
/// (`LOCALHOST.` is `localhost`).
pub fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl AddressRules {
    /// Why `host`, resolved to `ip`, may not be reached; `None` when it may. An IPv6 address that
    /// carries an IPv4 one (mapped, compatible, NAT64, 6to4, Teredo) is judged by that too.
    pub fn refusal(&self, host: &str, ip: IpAddr) -> Option<String> {
        let ip = canonical(ip);
        let host = normalize_host(host);
        let carried = carried_v4(ip);
        let allowed = |a: &IpAddr| self.allow_cidrs.iter().any(|n| n.contains(a));
        if self.allow_hosts.iter().any(|h| normalize_host(h) == host) || (allowed(&ip) && carried.iter().all(|v4| allowed(&IpAddr::V4(*v4)))) {
            return None;
        }
        let denied = |a: &IpAddr| self.deny_cidrs.iter().any(|n| n.contains(a));
        let judged = std::iter::once(ip).chain(carried.iter().map(|v4| IpAddr::V4(*v4)));
        let kind = judged
            .filter(|a| !allowed(a))
            .find_map(|a| {
                let k = if denied(&a) { Some("an address of the Kubernetes API server or a denied range") } else { kind(a) }?;
                Some(if a == ip { k.to_owned() } else { format!("an IPv6 form of {a}, {k}") })
            })?;
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

/// The well-known NAT64 prefix (RFC 6052): 64:ff9b::a.b.c.d reaches a.b.c.d.
const NAT64_WELL_KNOWN: [u16; 6] = [0x64, 0xff9b, 0, 0, 0, 0];

/// The IPv4 addresses an IPv6 address carries and may reach through a translator or a tunnel:
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`), 6to4 (`2002:AABB:CCDD::`), Teredo
/// (`2001:0:SSSS:SSSS::` with the client's address inverted in the last 32 bits).
fn carried_v4(ip: IpAddr) -> Vec<std::net::Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return Vec::new() };
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if (s[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback()) || s[..6] == NAT64_WELL_KNOWN {
        vec![v4(s[6], s[7])]
    } else if s[0] == 0x2002 {
        vec![v4(s[1], s[2])]
    } else if s[0] == 0x2001 && s[1] == 0 {
        vec![v4(s[2], s[3]), v4(!s[6], !s[7])]
    } else {
        Vec::new()
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
            } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
                Some("a local-use NAT64 address (64:ff9b:1::/48)")
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
        // IPv4 inside IPv6: each form of an internal address is refused, naming what it carries.
        let forms = [
            ("::127.0.0.1", "127.0.0.1", "loopback"),
            ("::10.0.0.1", "10.0.0.1", "private"),
            ("64:ff9b::127.0.0.1", "127.0.0.1", "loopback"),
            ("64:ff9b::10.0.0.1", "10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "169.254.169.254", "link-local"),
            ("2002:7f00:1::", "127.0.0.1", "loopback"),
            ("2002:0a00:0001::1", "10.0.0.1", "private"),
            // Teredo: server 65.54.227.120, client 10.0.0.1 (inverted: f5ff:fffe).
            ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1", "private"),
            ("::ffff:10.0.0.1", "10.0.0.1", "private"),
        ];
        for (ip, carried, word) in forms {
            let message = rules.refusal("x", ip.parse().unwrap()).unwrap_or_else(|| panic!("{ip} allowed"));
            assert!(message.contains(word) && message.contains(carried), "{ip}: {message}");
        }
        assert!(rules.refusal("x", "64:ff9b:1::1".parse().unwrap()).unwrap().contains("NAT64"));
        // Public addresses in those forms stay allowed.
        for ip in ["64:ff9b::5db8:d822", "2002:5db8:d822::1", "::93.184.216.34"] {
            assert_eq!(rules.refusal("x", ip.parse().unwrap()), None, "{ip}");
        }
        // Names are compared as rules read them: a trailing dot or capitals change nothing.
        for host in ["localhost.", "LOCALHOST", "LocalHost."] {
            assert!(rules.refusal(host, "127.0.0.1".parse().unwrap()).unwrap().contains("--notification-allow-host=localhost"), "{host}");
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
        assert_eq!(rules.refusal("receiver.internal.", "192.168.0.9".parse().unwrap()), None);
        // An allowed range admits an IPv6 form only when what it carries is allowed too.
        assert!(rules.refusal("x", "64:ff9b::10.89.0.7".parse().unwrap()).is_some());
        assert!(rules.refusal("pod", "10.89.0.7".parse().unwrap()).is_some());
    }
}
