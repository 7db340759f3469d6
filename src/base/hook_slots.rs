//! How many hooks run at once. A hook runs inside its policy's reconcile for up to its timeout (an
//! hour at most), so without a bound a tenant's slow hooks could hold every reconcile worker and
//! stall every other policy. Hooks take a slot, counted in all and per namespace (the tenancy
//! boundary); a run that finds none free is deferred and retried shortly, never waited for inside
//! the reconcile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The bounds: hooks running at once in all, and in one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookLimits {
    pub total: usize,
    pub per_namespace: usize,
}

impl HookLimits {
    /// At most `total`, and fewer than the reconcile workers (when there are two or more), so that
    /// policies without hooks always find one free.
    pub fn within(total: usize, per_namespace: usize, reconcile_concurrency: usize) -> Self {
        let total = total.min(reconcile_concurrency.saturating_sub(1)).max(1);
        HookLimits { total, per_namespace: per_namespace.clamp(1, total) }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_namespace: HashMap<String, usize>,
}

/// Why a hook could not start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    /// This many of the namespace's hooks are running (its limit).
    Namespace(usize),
    /// This many hooks are running in all (the operator's limit).
    Total(usize),
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Namespace(n) => write!(f, "{n} hooks of this namespace are running (--hook-concurrency-per-namespace)"),
            Busy::Total(n) => write!(f, "{n} hooks are running in all (--hook-concurrency)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HookSlots {
    limits: HookLimits,
    counts: Arc<Mutex<Counts>>,
}

/// A running hook's slot, given back when dropped.
#[derive(Debug)]
pub struct HookSlot {
    namespace: String,
    counts: Arc<Mutex<Counts>>,
}

impl HookSlots {
    pub fn new(limits: HookLimits) -> Self {
        HookSlots { limits, counts: Arc::default() }
    }

    /// A slot for a hook in `namespace`, or why there is none now.
    pub fn try_acquire(&self, namespace: &str) -> Result<HookSlot, Busy> {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let in_namespace = counts.by_namespace.get(namespace).copied().unwrap_or(0);
        if in_namespace >= self.limits.per_namespace {
            return Err(Busy::Namespace(in_namespace));
        }
        if counts.total >= self.limits.total {
            return Err(Busy::Total(counts.total));
        }
        counts.total += 1;
        *counts.by_namespace.entry(namespace.to_owned()).or_insert(0) += 1;
        Ok(HookSlot { namespace: namespace.to_owned(), counts: self.counts.clone() })
    }

    /// Hooks running now.
    pub fn running(&self) -> usize {
        self.counts.lock().map(|c| c.total).unwrap_or(0)
    }
}

impl Drop for HookSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        // Namespaces with no hook running are forgotten: the map stays as small as what runs.
        if let Some(n) = counts.by_namespace.get_mut(&self.namespace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_namespace.remove(&self.namespace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_stay_below_the_reconcile_workers() {
        let cases = [
            // (total, per namespace, reconcile workers) -> (total, per namespace)
            ((16, 4, 48), (16, 4)),
            ((64, 4, 48), (47, 4)),
            ((16, 32, 48), (16, 16)),
            ((16, 4, 2), (1, 1)),
            ((16, 4, 1), (1, 1)),
            ((0, 0, 48), (1, 1)),
        ];
        for ((total, per_namespace, workers), (want_total, want_per_namespace)) in cases {
            let limits = HookLimits::within(total, per_namespace, workers);
            assert_eq!((limits.total, limits.per_namespace), (want_total, want_per_namespace), "{total} {per_namespace} {workers}");
        }
    }

    #[test]
    fn a_namespace_gets_its_share_and_slots_come_back_when_dropped() {
        let slots = HookSlots::new(HookLimits { total: 3, per_namespace: 2 });
        let a1 = slots.try_acquire("a").expect("a's first");
        let a2 = slots.try_acquire("a").expect("a's second");
        assert_eq!(slots.try_acquire("a").expect_err("a is at its limit"), Busy::Namespace(2));
        let b1 = slots.try_acquire("b").expect("b is not held back by a");
        assert_eq!(slots.try_acquire("c").expect_err("all in use"), Busy::Total(3));
        assert_eq!(slots.running(), 3);
        drop(a1);
        let c1 = slots.try_acquire("c").expect("a's slot came back");
        assert_eq!(slots.try_acquire("a").expect_err("total again"), Busy::Total(3));
        drop((a2, b1, c1));
        assert_eq!(slots.running(), 0);
        assert!(slots.counts.lock().expect("lock").by_namespace.is_empty(), "no namespace is remembered once idle");
    }
}
