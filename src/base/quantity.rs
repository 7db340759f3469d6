//! Kubernetes resource quantities, as far as the operator reads them (PVC capacity, a
//! snapshot's restoreSize). Pure.

/// Bytes of a quantity like `64Mi`, `1Gi`, `500M` or `1024`.
pub fn parse_bytes(q: &str) -> Option<u64> {
    let units: [(&str, u64); 10] = [
        ("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40), ("Pi", 1 << 50),
        ("k", 1_000), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000), ("P", 1_000_000_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().ok()?.checked_mul(factor);
        }
    }
    q.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_bytes("64Mi"), Some(64 << 20));
        assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("1.5Gi"), None);
        assert_eq!(parse_bytes("99999999999Pi"), None, "overflow is no size");
    }
}
