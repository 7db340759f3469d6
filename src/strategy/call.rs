//! Calling a plugin: one fresh store per call with the call's limits, on a blocking thread within
//! the call slots; what it returns is checked ([`super::check`]) before anyone sees it.

use std::sync::Arc;

use wasmtime::{Store, Trap};

use super::bindings::types::{ArtifactRequest, BackupRequest, Destination, Plan, PlanError};
use super::bindings::BackupStrategy;
use super::check::{PlanPurpose, check_destination, check_plan};
use super::bindings::BackupStrategyPre;
use super::epoch::EPOCH_TICK;
use super::error::{Error, PluginId, Result};
use super::host::truncate;
use super::host::HostState;
use super::runtime::{CallLimits, MAX_MESSAGE_BYTES, PlanRequest, Plugin, PluginLimits, StrategyRuntime};

impl StrategyRuntime {
    pub(super) fn limits(&self, overrides: Option<&PluginLimits>) -> CallLimits {
        let max = &self.inner.config;
        let o = overrides.copied().unwrap_or_default();
        CallLimits {
            memory_bytes: o.memory_limit_bytes.unwrap_or(max.memory_limit_bytes).min(max.memory_limit_bytes),
            deadline: o.deadline.unwrap_or(max.deadline).min(max.deadline),
        }
    }

    /// One call in a fresh store: instantiate from the pre-instantiated component, run `f`.
    pub(super) fn call_raw<R>(
        &self,
        id: &PluginId,
        pre: &BackupStrategyPre<HostState>,
        limits: CallLimits,
        f: impl FnOnce(&BackupStrategy, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R> {
        let output = super::wasi::GuestOutput::default();
        let state = HostState {
            plugin: id.name.clone(),
            memory_limit: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            memory_denied: false,
            log_lines: 0,
            wasi: super::wasi::context(&output),
            table: wasmtime::component::ResourceTable::new(),
            output,
        };
        let _in_flight = self.inner.ticker.enter();
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| s);
        let ticks = limits.deadline.as_micros().div_ceil(EPOCH_TICK.as_micros()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        let result = pre.instantiate(&mut store).and_then(|bindings| f(&bindings, &mut store));
        store.data_mut().flush_output();
        result.map_err(|e| {
            if store.data().memory_denied {
                Error::PluginMemoryLimit { plugin: id.clone(), limit_bytes: limits.memory_bytes }
            } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                Error::PluginTimeout { plugin: id.clone(), limit_ms: u64::try_from(limits.deadline.as_millis()).unwrap_or(u64::MAX) }
            } else {
                Error::PluginTrap { plugin: id.clone(), message: truncate(format!("{e:#}"), MAX_MESSAGE_BYTES) }
            }
        })
    }

    pub(super) fn plugin_result<T>(plugin: &Plugin, result: std::result::Result<T, PlanError>) -> Result<T> {
        Self::plugin_result_at(plugin, "", result)
    }

    /// A plugin's answer; `destination` names the destination the request was for.
    pub(super) fn plugin_result_at<T>(plugin: &Plugin, destination: &str, result: std::result::Result<T, PlanError>) -> Result<T> {
        let id = || plugin.id.clone();
        result.map_err(|e| match e {
            PlanError::UnsupportedDestination(m) => {
                Error::UnsupportedDestination { plugin: id(), destination: destination.to_owned(), message: truncate(m, MAX_MESSAGE_BYTES) }
            }
            PlanError::InvalidConfig(m) => Error::PluginConfigInvalid { plugin: id(), message: truncate(m, MAX_MESSAGE_BYTES) },
            PlanError::UnsupportedVolume(m) | PlanError::Failed(m) => {
                Error::PluginPlanFailed { plugin: id(), message: truncate(m, MAX_MESSAGE_BYTES) }
            }
            PlanError::Unsupported(action) => Error::PluginUnsupported {
                plugin: id(),
                action: match action {
                    super::bindings::types::Action::Backup => "backup",
                    super::bindings::types::Action::Restore => "restore",
                    super::bindings::types::Action::Prune => "prune",
                    super::bindings::types::Action::Verify => "verify",
                },
            },
        })
    }

    pub(super) fn checked(&self, plugin: &Plugin, plan: Plan, purpose: PlanPurpose) -> Result<Plan> {
        check_plan(&plan, purpose, &self.inner.config.plan_policy)
            .map_err(|violation| Error::PlanRefused { plugin: plugin.id.clone(), violation })?;
        Ok(plan)
    }

    pub fn validate_config_blocking(&self, plugin: &Plugin, limits: Option<&PluginLimits>, config: &str) -> Result<()> {
        let result = self.call_raw(&plugin.id, &plugin.pre, self.limits(limits), |b, store| {
            b.backup_strategy_strategy().call_validate_config(store, config)
        })?;
        Self::plugin_result(plugin, result)
    }

    /// One planning call: run it, turn the plugin's error into ours, check the plan for `purpose`.
    pub(super) fn plan_blocking(
        &self,
        plugin: &Plugin,
        limits: Option<&PluginLimits>,
        purpose: PlanPurpose,
        destination: &Destination,
        call: impl FnOnce(&BackupStrategy, &mut Store<HostState>) -> wasmtime::Result<std::result::Result<Plan, PlanError>>,
    ) -> Result<Plan> {
        let started = std::time::Instant::now();
        let planned = self
            .call_raw(&plugin.id, &plugin.pre, self.limits(limits), call)
            .and_then(|result| Self::plugin_result_at(plugin, &destination.name, result))
            .and_then(|plan| self.checked(plugin, plan, purpose))
            .and_then(|plan| {
                check_destination(&plan, destination).map_err(|violation| Error::PlanRefused { plugin: plugin.id.clone(), violation })?;
                Ok(plan)
            });
        let outcome = match &planned {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        self.inner.config.metrics.plugin_call(&plugin.id.name, outcome, started.elapsed());
        planned
    }

    /// Asks for a plan without checking it, on the calling thread: the command-line runner shows a
    /// plan and the host's verdict on it separately. The plugin's own errors are ours as usual.
    pub fn plan_unchecked_blocking(&self, plugin: &Plugin, request: &PlanRequest) -> Result<Plan> {
        let destination = match request {
            PlanRequest::Backup(r) => &r.policy.destination,
            PlanRequest::Restore(r) | PlanRequest::Prune(r) | PlanRequest::Verify(r) => &r.policy.destination,
        };
        self.call_raw(&plugin.id, &plugin.pre, self.limits(None), |b, store| {
            let s = b.backup_strategy_strategy();
            match request {
                PlanRequest::Backup(r) => s.call_plan_backup(store, r),
                PlanRequest::Restore(r) => s.call_plan_restore(store, r),
                PlanRequest::Prune(r) => s.call_plan_prune(store, r),
                PlanRequest::Verify(r) => s.call_plan_verify(store, r),
            }
        })
        .and_then(|result| Self::plugin_result_at(plugin, &destination.name, result))
    }

    /// Plans one backup and checks the plan; on the calling thread.
    pub fn plan_backup_blocking(&self, plugin: &Plugin, limits: Option<&PluginLimits>, request: &BackupRequest) -> Result<Plan> {
        self.plan_blocking(plugin, limits, PlanPurpose::Backup, &request.policy.destination, |b, store| b.backup_strategy_strategy().call_plan_backup(store, request))
    }

    pub fn plan_restore_blocking(&self, plugin: &Plugin, limits: Option<&PluginLimits>, request: &ArtifactRequest) -> Result<Plan> {
        self.plan_blocking(plugin, limits, PlanPurpose::Restore, &request.policy.destination, |b, store| b.backup_strategy_strategy().call_plan_restore(store, request))
    }

    pub fn plan_prune_blocking(&self, plugin: &Plugin, limits: Option<&PluginLimits>, request: &ArtifactRequest) -> Result<Plan> {
        self.plan_blocking(plugin, limits, PlanPurpose::Prune, &request.policy.destination, |b, store| b.backup_strategy_strategy().call_plan_prune(store, request))
    }

    pub fn plan_verify_blocking(&self, plugin: &Plugin, limits: Option<&PluginLimits>, request: &ArtifactRequest) -> Result<Plan> {
        self.plan_blocking(plugin, limits, PlanPurpose::Verify, &request.policy.destination, |b, store| b.backup_strategy_strategy().call_plan_verify(store, request))
    }

    pub async fn validate_config(&self, plugin: Arc<Plugin>, limits: Option<PluginLimits>, config: String) -> Result<()> {
        let this = self.clone();
        self.run_blocking(move || this.validate_config_blocking(&plugin, limits.as_ref(), &config)).await
    }

    pub async fn plan_backup(&self, plugin: Arc<Plugin>, limits: Option<PluginLimits>, request: BackupRequest) -> Result<Plan> {
        let this = self.clone();
        self.run_blocking(move || this.plan_backup_blocking(&plugin, limits.as_ref(), &request)).await
    }

    pub async fn plan_restore(&self, plugin: Arc<Plugin>, limits: Option<PluginLimits>, request: ArtifactRequest) -> Result<Plan> {
        let this = self.clone();
        self.run_blocking(move || this.plan_restore_blocking(&plugin, limits.as_ref(), &request)).await
    }

    pub async fn plan_prune(&self, plugin: Arc<Plugin>, limits: Option<PluginLimits>, request: ArtifactRequest) -> Result<Plan> {
        let this = self.clone();
        self.run_blocking(move || this.plan_prune_blocking(&plugin, limits.as_ref(), &request)).await
    }

    pub async fn plan_verify(&self, plugin: Arc<Plugin>, limits: Option<PluginLimits>, request: ArtifactRequest) -> Result<Plan> {
        let this = self.clone();
        self.run_blocking(move || this.plan_verify_blocking(&plugin, limits.as_ref(), &request)).await
    }
}
