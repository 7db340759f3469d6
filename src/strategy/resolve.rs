//! A policy's strategy: which plugin (built-in or custom), its config and its limits.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::{Client, ResourceExt};

use super::builtin::BuiltinStrategy;
use super::source::PluginLocation;
use super::{Plugin, PluginLimits, StrategyRuntime};
use crate::api::{BackupPolicy, BackupStrategyKind};
use super::error::{Error, Result};

/// Loads (or finds, by digest) the policy's plugin.
pub async fn plugin(policy: &BackupPolicy, client: &Client, runtime: &StrategyRuntime, plugin_dir: Option<&Path>) -> Result<Arc<Plugin>> {
    let pinned = policy.spec.plugin.as_ref().and_then(|p| p.sha256.as_deref());
    // The built-ins' bytes never change: their version is the operator's own.
    let builtin = |b: BuiltinStrategy| (b.name().to_owned(), Arc::from(b.wasm()), env!("CARGO_PKG_VERSION").to_owned());
    let (name, bytes, version) = match policy.spec.backup_strategy {
        BackupStrategyKind::Tar => builtin(BuiltinStrategy::Tar),
        BackupStrategyKind::Snapshot => builtin(BuiltinStrategy::Snapshot),
        BackupStrategyKind::Restic => builtin(BuiltinStrategy::Restic),
        BackupStrategyKind::Custom => {
            let spec = policy.spec.plugin.as_ref().ok_or_else(|| {
                Error::InvalidSpec("backupStrategy custom needs spec.plugin.configMapRef or spec.plugin.file".into())
            })?;
            let location = match (&spec.config_map_ref, &spec.file, plugin_dir) {
                (Some(r), None, _) => PluginLocation::ConfigMap { namespace: policy.namespace().unwrap_or_default(), name: r.name.clone(), key: r.key.clone() },
                (None, Some(file), Some(dir)) => PluginLocation::File { dir: dir.to_path_buf(), file: file.clone() },
                (None, Some(_), None) => return Err(Error::InvalidSpec("spec.plugin.file needs the operator to run with --plugin-dir".into())),
                _ => return Err(Error::InvalidSpec("spec.plugin needs exactly one of configMapRef and file".into())),
            };
            let (bytes, version) = location.fetch_versioned(client).await?;
            (location.display_name(), bytes, version)
        }
    };
    runtime.load_versioned(&policy.namespace().unwrap_or_default(), &name, &version, bytes, pinned).await
}

/// The policy's opaque plugin config as JSON ("{}" when unset).
pub fn config(policy: &BackupPolicy) -> String {
    policy.spec.plugin.as_ref().and_then(|p| p.config.as_ref()).map_or_else(|| "{}".into(), ToString::to_string)
}

pub fn limits(policy: &BackupPolicy) -> Option<PluginLimits> {
    let l = policy.spec.plugin.as_ref()?.limits.as_ref()?;
    Some(PluginLimits { memory_limit_bytes: l.memory_bytes, deadline: l.timeout_millis.map(Duration::from_millis) })
}

/// `name@sha256-prefix`, as objects and history entries name the plugin.
/// The plugin as the policy's status shows it.
pub fn status(plugin: &Plugin) -> crate::api::PluginStatus {
    crate::api::PluginStatus {
        source: plugin.id.name.clone(),
        name: plugin.description.name.clone(),
        version: plugin.description.version.clone(),
        sha256: plugin.id.digest.clone(),
    }
}

pub fn label(plugin: &Plugin) -> String {
    format!("{}@{}", plugin.id.name, plugin.id.digest.get(..12).unwrap_or(&plugin.id.digest))
}
