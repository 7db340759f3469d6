//! Container image references as the container runtime reads them, and the operator's image
//! allowlist matched on them: a registry and a repository path, never a string prefix (the prefix
//! `busybox:` also matched the registry host `busybox:5000`). Pure.

/// Docker Hub, as references without a registry mean it.
const DOCKER_HUB: &str = "docker.io";
/// Longest reference the host accepts (a Job's image field is not bounded by the API server).
const MAX_REFERENCE: usize = 512;

/// A parsed, normalised image reference: `registry/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `docker.io` for references without one (`index.docker.io` too).
    pub registry: String,
    /// The repository path; `library/<name>` for a one-component Docker Hub name.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

fn is_path_component(c: &str) -> bool {
    // [a-z0-9]+ with single separators (., _, __, or runs of -) between alphanumerics.
    let bytes = c.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && matches!(bytes[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|s| s == b'-');
        if !ok || i == start {
            return false;
        }
    }
    true
}

fn is_registry(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !label.starts_with('-') && !label.ends_with('-')
        });
    host_ok && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_tag(t: &str) -> bool {
    !t.is_empty() && t.len() <= 128 && t.as_bytes()[0] != b'.' && t.as_bytes()[0] != b'-' && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_digest(d: &str) -> bool {
    d.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty() && alg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'.' | b'_' | b'-')) && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

impl ImageRef {
    /// Parses a reference as the runtime does: the first component is a registry when it has a
    /// `.` or a `:` or is `localhost`; otherwise the image is on Docker Hub.
    pub fn parse(reference: &str) -> Result<ImageRef, String> {
        let bad = |why: &str| Err(format!("image {:?} is not a valid reference: {why}", reference.chars().take(80).collect::<String>()));
        if reference.is_empty() || reference.len() > MAX_REFERENCE || reference.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return bad("empty, too long, or with spaces");
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) if is_digest(d) => (r, Some(d.to_owned())),
            Some(_) => return bad("the digest is not algorithm:hex"),
            None => (reference, None),
        };
        // A tag is what follows the last ':' after the last '/' (a registry's port has a '/' after it).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_owned())),
            None => (rest, None),
        };
        if let Some(t) = &tag
            && !is_tag(t)
        {
            return bad("the tag is not valid");
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                if !is_registry(first) {
                    return bad("the registry is not host[:port]");
                }
                (first.to_ascii_lowercase(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        if path.is_empty() || !path.split('/').all(is_path_component) {
            return bad("the repository path is not lowercase components");
        }
        let registry = if registry == "index.docker.io" { DOCKER_HUB.to_owned() } else { registry };
        let path = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
        Ok(ImageRef { registry, path, tag, digest })
    }
}

/// One entry of `--image-allowlist`: a registry and repository (`busybox`, `docker.io/library/busybox`,
/// `registry.example.com/backup/restic`), optionally pinned to a tag or a digest, or a repository
/// path prefix ending in `/` (`registry.example.com/backup/`: every repository below it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedImage {
    registry: String,
    path: String,
    /// Every repository below `path` (the entry ended in `/`).
    below: bool,
    tag: Option<String>,
    digest: Option<String>,
}

impl AllowedImage {
    pub fn parse(entry: &str) -> Result<AllowedImage, String> {
        let entry = entry.trim();
        // `busybox:` (any tag of busybox), as earlier releases' prefix examples wrote it.
        let entry = entry.strip_suffix(':').unwrap_or(entry);
        if let Some(dir) = entry.strip_suffix('/') {
            // A directory of repositories: parsed as a repository of that path.
            let r = ImageRef::parse(dir).map_err(|e| format!("--image-allowlist entry {entry:?}: {e}"))?;
            if r.tag.is_some() || r.digest.is_some() {
                return Err(format!("--image-allowlist entry {entry:?}: a directory has no tag or digest"));
            }
            // `registry.example.com/` names a whole registry: `dir` parsed as a Docker Hub name.
            let whole_registry = !dir.contains('/') && (dir.contains(['.', ':']) || dir == "localhost");
            return Ok(if whole_registry {
                AllowedImage { registry: dir.to_ascii_lowercase(), path: String::new(), below: true, tag: None, digest: None }
            } else {
                AllowedImage { registry: r.registry, path: r.path, below: true, tag: None, digest: None }
            });
        }
        let r = ImageRef::parse(entry).map_err(|e| format!("--image-allowlist entry {entry:?}: {e}"))?;
        Ok(AllowedImage { registry: r.registry, path: r.path, below: false, tag: r.tag, digest: r.digest })
    }

    pub fn admits(&self, image: &ImageRef) -> bool {
        let path = if self.below {
            self.path.is_empty() || image.path.strip_prefix(&self.path).is_some_and(|rest| rest.starts_with('/'))
        } else {
            image.path == self.path
        };
        image.registry == self.registry
            && path
            && self.tag.as_ref().is_none_or(|t| image.tag.as_ref() == Some(t))
            && self.digest.as_ref().is_none_or(|d| image.digest.as_ref() == Some(d))
    }
}

/// Whether an image may run under the allowlist (empty: every valid reference).
pub fn allowed(allowlist: &[AllowedImage], image: &str) -> bool {
    match ImageRef::parse(image) {
        Ok(r) => allowlist.is_empty() || allowlist.iter().any(|a| a.admits(&r)),
        Err(_) => allowlist.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_read_as_the_runtime_reads_them() {
        let r = |s: &str| ImageRef::parse(s).map(|r| (r.registry, r.path, r.tag, r.digest));
        let s = |x: &str| Some(x.to_owned());
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(r("busybox"), Ok(("docker.io".into(), "library/busybox".into(), None, None)));
        assert_eq!(r("busybox:latest"), Ok(("docker.io".into(), "library/busybox".into(), s("latest"), None)));
        assert_eq!(r("index.docker.io/restic/restic:0.14.0"), Ok(("docker.io".into(), "restic/restic".into(), s("0.14.0"), None)));
        assert_eq!(r("busybox:5000/evil/pwn:1"), Ok(("busybox:5000".into(), "evil/pwn".into(), s("1"), None)));
        assert_eq!(r("localhost/x"), Ok(("localhost".into(), "x".into(), None, None)));
        assert_eq!(r(&format!("registry.example.com:443/a/b:v1@{digest}")), Ok(("registry.example.com:443".into(), "a/b".into(), s("v1"), Some(digest.clone()))));
        for bad in ["", "Busybox", "busybox:", "a b", "busybox:latest:x", "a//b", "-a/b", "registry.example.com/", "x@sha256:12", "a/B"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_allowlist_matches_registry_and_repository_never_a_prefix_of_text() {
        let list = |entries: &[&str]| entries.iter().map(|e| AllowedImage::parse(e).expect("entry")).collect::<Vec<_>>();
        let digest = format!("sha256:{}", "b".repeat(64));
        let pinned = format!("busybox@{digest}");
        // (allowlist, image, allowed)
        let cases: Vec<(Vec<&str>, String, bool)> = vec![
            (vec!["busybox:"], "busybox:latest".into(), true),
            (vec!["busybox:"], "busybox:5000/evil/pwn:1".into(), false),
            (vec!["busybox"], "busybox:5000/evil/pwn:1".into(), false),
            (vec!["busybox"], "docker.io/library/busybox:1.36".into(), true),
            (vec!["busybox"], "busyboxx:latest".into(), false),
            (vec!["busybox"], "evil/busybox".into(), false),
            (vec!["busybox:1.36"], "busybox:latest".into(), false),
            (vec!["busybox:1.36"], "busybox:1.36".into(), true),
            (vec![&pinned], pinned.clone(), true),
            (vec![&pinned], "busybox:latest".into(), false),
            (vec!["registry.example.com/backup/"], "registry.example.com/backup/restic:1".into(), true),
            (vec!["registry.example.com/backup/"], "registry.example.com/backupx/restic:1".into(), false),
            (vec!["registry.example.com/backup/"], "registry.example.com/backup".into(), false),
            (vec!["registry.example.com/"], "registry.example.com/any/thing:1".into(), true),
            (vec!["registry.example.com/"], "registry.example.com.evil.io/any:1".into(), false),
            (vec!["restic/restic"], "restic/restic:0.14.0".into(), true),
            (vec![], "anything/at:all".into(), true),
            (vec!["busybox"], "not a reference".into(), false),
        ];
        for (entries, image, want) in cases {
            assert_eq!(allowed(&list(&entries), &image), want, "{entries:?} {image}");
        }
        assert!(AllowedImage::parse("registry.example.com/backup/:v1").is_err());
    }
}
