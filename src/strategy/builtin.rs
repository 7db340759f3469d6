//! The built-in strategies, compiled from `plugins/` by `build.rs` and embedded in the binary.

/// A strategy that ships with the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinStrategy {
    Tar,
    Snapshot,
    Restic,
}

static TAR_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/backup_strategy_tar.wasm"));
static SNAPSHOT_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/backup_strategy_snapshot.wasm"));
static RESTIC_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/backup_strategy_restic.wasm"));

impl BuiltinStrategy {
    pub const ALL: [BuiltinStrategy; 3] = [BuiltinStrategy::Tar, BuiltinStrategy::Snapshot, BuiltinStrategy::Restic];

    pub fn name(self) -> &'static str {
        match self {
            BuiltinStrategy::Tar => "tar",
            BuiltinStrategy::Snapshot => "snapshot",
            BuiltinStrategy::Restic => "restic",
        }
    }

    /// The component's bytes.
    pub fn wasm(self) -> &'static [u8] {
        match self {
            BuiltinStrategy::Tar => TAR_WASM,
            BuiltinStrategy::Snapshot => SNAPSHOT_WASM,
            BuiltinStrategy::Restic => RESTIC_WASM,
        }
    }
}
