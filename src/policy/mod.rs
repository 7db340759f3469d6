//! The BackupPolicy controller: watch wiring ([`watch`]), one reconcile ([`reconcile`]): observe
//! ([`observe`]) → decide ([`decide`], [`schedule`], [`readiness`]: pure) → apply ([`apply`],
//! [`start`], [`children`]) → status ([`status`]).

pub mod apply;
pub mod children;
pub mod decide;
pub mod observe;
pub mod observed;
pub mod readiness;
pub mod reconcile;
pub mod schedule;
pub mod start;
pub mod status;
pub mod target;
pub mod watch;
