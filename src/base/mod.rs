//! The bottom layer: vocabulary every other layer shares (names, labels, annotations, message
//! bounds, conditions) and small building blocks with no knowledge of the rest (fair queues,
//! slots, quantities). Imports nothing of the crate.

pub mod conditions;
pub mod fair;
pub mod hook_slots;
pub mod names;
pub mod quantity;
pub mod text;
pub mod time;
