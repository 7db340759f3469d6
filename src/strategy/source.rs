//! Where a custom strategy plugin's bytes come from. Bytes are fetched on every use and the
//! runtime keys compiled plugins by digest, so a new version in a ConfigMap or in the plugin
//! directory is picked up without restarting the operator, and an unchanged one is never
//! recompiled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use crate::error::{Error, Result};

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
        match self {
            PluginLocation::ConfigMap { namespace, name, key } => fetch_configmap(client, namespace, name, key).await,
            PluginLocation::File { dir, file } => read_plugin_file(dir, file).await,
        }
    }
}

async fn fetch_configmap(client: &Client, namespace: &str, name: &str, key: &str) -> Result<Arc<[u8]>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = api
        .get_opt(name)
        .await
        .map_err(|e| Error::PluginSource(format!("reading ConfigMap {namespace}/{name}: {e}")))?
        .ok_or_else(|| {
            Error::PluginSource(format!(
                "ConfigMap {namespace}/{name} not found: create it with `kubectl -n {namespace} create configmap {name} --from-file={key}=plugin.wasm`"
            ))
        })?;
    match cm.binary_data.as_ref().and_then(|d| d.get(key)) {
        Some(bytes) => Ok(Arc::from(bytes.0.as_slice())),
        None => Err(Error::PluginSource(format!(
            "ConfigMap {namespace}/{name} has no binaryData key {key:?} (keys: {})",
            cm.binary_data.as_ref().map(|d| d.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default()
        ))),
    }
}

async fn read_plugin_file(dir: &Path, file: &str) -> Result<Arc<[u8]>> {
    // A plain file name only: a policy cannot read outside the plugin directory.
    if file.is_empty() || file.contains('/') || file.starts_with('.') {
        return Err(Error::PluginSource(format!("plugin file {file:?} must be a plain file name in the plugin directory")));
    }
    let path = dir.join(file);
    tokio::fs::read(&path)
        .await
        .map(Arc::from)
        .map_err(|e| Error::PluginSource(format!("reading {}: {e}", path.display())))
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
        let missing = read_plugin_file(dir.path(), "nope.wasm").await.unwrap_err().to_string();
        assert!(missing.contains("nope.wasm"), "{missing}");
    }
}
