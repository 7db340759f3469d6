//! Host bindings for the `backup-strategy` world of `wit/strategy.wit`.
#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    path: "wit",
    world: "backup-strategy",
    additional_derives: [PartialEq],
});

pub use backup::strategy::host;
pub use backup::strategy::types;

impl types::PodPrivileges {
    /// Nothing beyond a plain pod, not even root.
    pub fn none() -> Self {
        types::PodPrivileges {
            privileged: false,
            add_capabilities: Vec::new(),
            host_network: false,
            host_pid: false,
            host_ipc: false,
            automount_service_account_token: false,
            host_paths: Vec::new(),
            run_as_root: false,
        }
    }
}
