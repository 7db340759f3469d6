//! Host bindings for the `backup-strategy` world of `wit/strategy.wit`.
#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    path: "wit",
    world: "backup-strategy",
    additional_derives: [PartialEq],
});

pub use backup::strategy::host;
pub use backup::strategy::types;
