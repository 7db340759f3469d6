//! Where a custom strategy plugin's bytes come from. Bytes are fetched on every use and the
//! runtime keys compiled plugins by digest, so a new version in a ConfigMap or in the plugin
//! directory is picked up without restarting the operator, and an unchanged one is never
//! recompiled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use super::error::{Error, Result};

/// A custom plugin's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginLocation {
    /// `binaryData[key]` of a ConfigMap in the policy's namespace.
    ConfigMap { namespace: String, name: String, key: String },
    /// A file in the operator's `--plugin-dir` (typically a mounted ConfigMap).
    File { dir: PathBuf, file: String },
}

impl PluginLocation {
    /// A name for logs, errors and the plugin's identity.
    pub fn display_name(&self) -> String {
        match self {
            PluginLocation::ConfigMap { namespace, name, key } => format!("configmap/{namespace}/{name}[{key}]"),
            PluginLocation::File { file, .. } => format!("plugin-dir/{file}"),
        }
    }

    pub async fn fetch(&self, client: &Client) -> Result<Arc<[u8]>> {
        self.fetch_versioned(client).await.map(|(bytes, _)| bytes)
    }

    /// The bytes and a version of them (the ConfigMap's resourceVersion, the file's size and
    /// modification time): the same version is the same bytes, which need no hashing again.
    pub async fn fetch_versioned(&self, client: &Client) -> Result<(Arc<[u8]>, String)> {
        match self {
            PluginLocation::ConfigMap { namespace, name, key } => fetch_configmap(client, namespace, name, key).await,
            PluginLocation::File { dir, file } => {
                let bytes = read_plugin_file(dir, file).await?;
                let modified = std::fs::metadata(dir.join(file)).ok().and_then(|m| m.modified().ok());
                let nanos = modified.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
                let version = format!("{}:{nanos}", bytes.len());
                Ok((bytes, version))
            }
        }
    }
}

async fn fetch_configmap(client: &Client, namespace: &str, name: &str, key: &str) -> Result<(Arc<[u8]>, String)> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    // Reading can fail for a while (the API server); a ConfigMap that is not there, or holds the
    // plugin in the wrong place, needs the user: that is a permanent error with the fix in it.
    let cm = api
        .get_opt(name)
        .await
        .map_err(|e| Error::PluginSource(format!("reading ConfigMap {namespace}/{name}: {e}")))?
        .ok_or_else(|| {
            Error::PluginNotFound(format!(
                "ConfigMap {namespace}/{name} not found: create it with `kubectl -n {namespace} create configmap {name} --from-file={key}=plugin.wasm`"
            ))
        })?;
    if let Some(bytes) = cm.binary_data.as_ref().and_then(|d| d.get(key)) {
        let version = cm.metadata.resource_version.clone().unwrap_or_default();
        return Ok((Arc::from(bytes.0.as_slice()), version));
    }
    if cm.data.as_ref().is_some_and(|d| d.contains_key(key)) {
        return Err(Error::PluginNotFound(format!(
            "ConfigMap {namespace}/{name} has {key:?} under data (text), not binaryData: a component is binary; recreate it with `kubectl -n {namespace} create configmap {name} --from-file={key}=plugin.wasm`"
        )));
    }
    let keys: Vec<String> = cm.binary_data.iter().flatten().map(|(k, _)| k.clone()).chain(cm.data.iter().flatten().map(|(k, _)| k.clone())).collect();
    Err(Error::PluginNotFound(format!(
        "ConfigMap {namespace}/{name} has no binaryData key {key:?} (its keys: {}): fix spec.plugin.configMapRef.key",
        if keys.is_empty() { "none".to_owned() } else { keys.join(", ") }
    )))
}

/// Largest plugin file read (a ConfigMap holds at most 1 MiB).
const MAX_PLUGIN_FILE_BYTES: u64 = 1024 * 1024;
/// Longest plugin file name (a ConfigMap key's limit).
const MAX_FILE_NAME: usize = 253;

async fn read_plugin_file(dir: &Path, file: &str) -> Result<Arc<[u8]>> {
    // A plain file name only: a policy cannot read outside the plugin directory.
    let plain = !file.is_empty() && file.len() <= MAX_FILE_NAME && !file.starts_with('.') && file.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !plain {
        let shown: String = file.chars().take(80).collect();
        return Err(Error::PluginNotFound(format!("plugin file {shown:?} must be a plain file name in the plugin directory (at most {MAX_FILE_NAME} of A-Z a-z 0-9 . _ -, not starting with a dot)")));
    }
    let path = dir.join(file);
    // A mounted ConfigMap's files are symlinks into a `..data` directory of the same mount; any
    // other link, a FIFO (which would block the read) or a directory is refused before reading.
    let link = tokio::fs::symlink_metadata(&path).await;
    let meta = match link {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::PluginNotFound(format!("plugin file {file:?} is not in the plugin directory {}", dir.display())));
        }
        Err(e) => return Err(Error::PluginSource(format!("reading {}: {e}", path.display()))),
        Ok(m) if m.file_type().is_symlink() => {
            let target = tokio::fs::read_link(&path).await.unwrap_or_default();
            if target.is_absolute() || !target.starts_with("..data") {
                return Err(Error::PluginNotFound(format!("plugin file {file:?} is a symbolic link to {}, which is refused", target.display())));
            }
            tokio::fs::metadata(&path).await.map_err(|e| Error::PluginNotFound(format!("plugin file {file:?}: {e}")))?
        }
        Ok(m) => m,
    };
    if !meta.is_file() {
        return Err(Error::PluginNotFound(format!("plugin file {file:?} is not a regular file")));
    }
    // Where it really is, after every link (the `..data` link of a ConfigMap mount included):
    // inside the plugin directory, or refused.
    let real = tokio::fs::canonicalize(&path).await.map_err(|e| Error::PluginNotFound(format!("plugin file {file:?}: {e}")))?;
    let real_dir = tokio::fs::canonicalize(dir).await.map_err(|e| Error::PluginSource(format!("the plugin directory {}: {e}", dir.display())))?;
    if !real.starts_with(&real_dir) {
        return Err(Error::PluginNotFound(format!("plugin file {file:?} resolves outside the plugin directory {}, which is refused", dir.display())));
    }
    if meta.len() > MAX_PLUGIN_FILE_BYTES {
        return Err(Error::PluginNotFound(format!("plugin file {file:?} is {} bytes, over the 1 MiB limit for a plugin", meta.len())));
    }
    tokio::fs::read(&path).await.map(Arc::from).map_err(|e| Error::PluginSource(format!("reading {}: {e}", path.display())))
}

/// A fingerprint of the plugin directory's files (name, size, modification time), to notice a new
/// plugin version without reading every file. A ConfigMap mount swaps a symlink, which changes it.
pub fn dir_fingerprint(dir: &Path) -> Vec<(String, u64, Option<std::time::SystemTime>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let meta = std::fs::metadata(e.path()).ok()?;
            meta.is_file().then(|| (e.file_name().to_string_lossy().into_owned(), meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

/// Yields whenever the plugin directory's fingerprint changes, checking every `every`.
pub fn watch_dir(dir: PathBuf, every: std::time::Duration) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold(dir_fingerprint(&dir), move |last| {
        let dir = dir.clone();
        async move {
            loop {
                tokio::time::sleep(every).await;
                let now = dir_fingerprint(&dir);
                if now != last {
                    tracing::info!(dir = %dir.display(), "plugin directory changed");
                    return Some(((), now));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_changed_plugin_file_is_noticed() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("p.wasm"), b"v1").expect("write");
        let mut changes = Box::pin(watch_dir(dir.path().to_path_buf(), std::time::Duration::from_millis(20)));
        let before = dir_fingerprint(dir.path());
        std::fs::write(dir.path().join("p.wasm"), b"version 2").expect("write");
        assert_ne!(dir_fingerprint(dir.path()), before);
        tokio::time::timeout(std::time::Duration::from_secs(10), changes.next()).await.expect("change noticed").expect("stream item");
    }

    #[tokio::test]
    async fn plugin_files_stay_inside_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("p.wasm"), b"bytes").expect("write");
        assert_eq!(&*read_plugin_file(dir.path(), "p.wasm").await.expect("read"), b"bytes");
        for bad in ["../etc/passwd", "sub/p.wasm", ".hidden", ""] {
            assert!(read_plugin_file(dir.path(), bad).await.is_err(), "{bad}");
        }
        let missing = read_plugin_file(dir.path(), "nope.wasm").await.unwrap_err();
        assert!(matches!(&missing, Error::PluginNotFound(m) if m.contains("nope.wasm")), "{missing}");
        // Not regular files, links out of the directory, and oversized files are refused before reading.
        std::fs::create_dir(dir.path().join("a-dir")).expect("mkdir");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.wasm")).expect("symlink");
        assert!(std::process::Command::new("mkfifo").arg(dir.path().join("fifo.wasm")).status().expect("mkfifo").success());
        std::fs::write(dir.path().join("huge.wasm"), vec![0u8; 1024 * 1024 + 1]).expect("write");
        for (bad, want) in [("a-dir", "not a regular file"), ("link.wasm", "symbolic link"), ("fifo.wasm", "not a regular file"), ("huge.wasm", "1 MiB")] {
            let err = read_plugin_file(dir.path(), bad).await.unwrap_err();
            assert!(matches!(&err, Error::PluginNotFound(m) if m.contains(want)), "{bad}: {err}");
        }
        // A mounted ConfigMap's own links are followed.
        std::fs::create_dir(dir.path().join("..data")).expect("mkdir");
        std::fs::write(dir.path().join("..data/cm.wasm"), b"cm bytes").expect("write");
        std::os::unix::fs::symlink("..data/cm.wasm", dir.path().join("cm.wasm")).expect("symlink");
        assert_eq!(&*read_plugin_file(dir.path(), "cm.wasm").await.expect("read"), b"cm bytes");
        // ... but not when `..data` itself leads out of the directory.
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret.wasm"), b"not yours").expect("write");
        let other = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), other.path().join("..data")).expect("symlink");
        std::os::unix::fs::symlink("..data/secret.wasm", other.path().join("out.wasm")).expect("symlink");
        let err = read_plugin_file(other.path(), "out.wasm").await.unwrap_err();
        assert!(matches!(&err, Error::PluginNotFound(m) if m.contains("outside the plugin directory") && !m.contains("not yours")), "{err}");
        // A name longer than a ConfigMap key, or with other characters, is refused as such.
        for bad in ["x".repeat(300), "a b.wasm".into(), "p.wasm\n".into()] {
            let err = read_plugin_file(dir.path(), &bad).await.unwrap_err();
            assert!(matches!(&err, Error::PluginNotFound(m) if m.contains("plain file name")), "{err}");
        }
    }
}
