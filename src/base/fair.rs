//! Shared work served fairly by tenant (namespace): a queue served round-robin whose items may
//! wait for a time of their own (a retry's backoff), bounded in all and per tenant
//! ([`FairQueue`], pure: time is passed in), and slots handed out round-robin among the tenants
//! waiting for one ([`FairSlots`]). One tenant's many or failing deliveries, or its compile bombs,
//! never hold the slots another tenant waits for for more than one item's time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

pub struct FairQueue<T> {
    lanes: BTreeMap<String, VecDeque<(Instant, T)>>,
    /// The tenant served last: the next pop starts after it.
    last: Option<String>,
    len: usize,
    capacity: usize,
    per_tenant: usize,
}

impl<T> FairQueue<T> {
    pub fn new(capacity: usize, per_tenant: usize) -> Self {
        FairQueue { lanes: BTreeMap::new(), last: None, len: 0, capacity, per_tenant }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `item` for `tenant`, ready at `ready_at`; gives it back when the queue or the
    /// tenant's share of it is full.
    pub fn push(&mut self, tenant: &str, ready_at: Instant, item: T) -> Result<(), T> {
        if self.len >= self.capacity || self.lanes.get(tenant).is_some_and(|l| l.len() >= self.per_tenant) {
            return Err(item);
        }
        self.lanes.entry(tenant.to_owned()).or_default().push_back((ready_at, item));
        self.len += 1;
        Ok(())
    }

    /// The next item ready at `now`: from the first tenant after the one served last that has
    /// one ready (its earliest queued ready item).
    pub fn pop_ready(&mut self, now: Instant) -> Option<T> {
        self.pop_ready_if(now, |_| true)
    }

    /// [`pop_ready`](Self::pop_ready) among the tenants `may` serve now (a tenant at its share
    /// of the workers waits).
    pub fn pop_ready_if(&mut self, now: Instant, may: impl Fn(&str) -> bool) -> Option<T> {
        let tenants: Vec<String> = self.lanes.keys().cloned().collect();
        let start = self.last.as_ref().map_or(0, |last| tenants.iter().position(|t| t > last).unwrap_or(0));
        for tenant in tenants.iter().cycle().skip(start).take(tenants.len()).filter(|t| may(t)) {
            let Some(lane) = self.lanes.get_mut(tenant) else { continue };
            let Some(i) = lane.iter().position(|(at, _)| *at <= now) else { continue };
            let (_, item) = lane.remove(i)?;
            if lane.is_empty() {
                self.lanes.remove(tenant);
            }
            self.len -= 1;
            self.last = Some(tenant.clone());
            return Some(item);
        }
        None
    }

    /// Counts `tenant` as served last (it was served without queuing): the next pop starts
    /// after it.
    pub fn served(&mut self, tenant: &str) {
        self.last = Some(tenant.to_owned());
    }

    /// When the earliest waiting item becomes ready.
    pub fn next_ready_at(&self) -> Option<Instant> {
        self.next_ready_at_if(|_| true)
    }

    /// When the earliest waiting item of a tenant `may` serve becomes ready.
    pub fn next_ready_at_if(&self, may: impl Fn(&str) -> bool) -> Option<Instant> {
        self.lanes.iter().filter(|(t, _)| may(t)).flat_map(|(_, l)| l.iter().map(|(at, _)| *at)).min()
    }
}

/// `n` slots for work of any tenant; when one frees, the next tenant in turn among those waiting
/// gets it (a semaphore that is first come, first served would give it to whoever queued most).
pub struct FairSlots {
    state: Mutex<SlotState>,
}

struct SlotState {
    free: usize,
    waiting: FairQueue<tokio::sync::oneshot::Sender<()>>,
}

/// A slot, given back when dropped.
pub struct Slot {
    slots: std::sync::Arc<FairSlots>,
}

impl FairSlots {
    pub fn new(n: usize) -> FairSlots {
        FairSlots { state: Mutex::new(SlotState { free: n.max(1), waiting: FairQueue::new(usize::MAX, usize::MAX) }) }
    }

    /// Waits for a slot for `tenant`.
    pub async fn acquire(self: &std::sync::Arc<Self>, tenant: &str) -> Slot {
        let receiver = {
            let Ok(mut state) = self.state.lock() else { return Slot { slots: self.clone() } };
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                // Its turn, as if it had queued: when the slot frees, another tenant waiting
                // goes first.
                state.waiting.served(tenant);
                return Slot { slots: self.clone() };
            }
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let _ = state.waiting.push(tenant, Instant::now(), sender);
            receiver
        };
        // A closed channel means the slots are gone with the operator: go on without one.
        let _ = receiver.await;
        Slot { slots: self.clone() }
    }

    fn release(&self) {
        let Ok(mut state) = self.state.lock() else { return };
        // The next tenant in turn whose waiter is still there gets the slot.
        while let Some(next) = state.waiting.pop_ready(Instant::now() + std::time::Duration::from_secs(3600)) {
            if next.send(()).is_ok() {
                return;
            }
        }
        state.free += 1;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tenants_are_served_in_turn_and_waiting_items_wait() {
        let now = Instant::now();
        let mut q = FairQueue::new(100, 10);
        // One tenant with six deliveries queued first, another with one queued after them.
        for i in 0..6 {
            q.push("noisy", now, format!("noisy-{i}")).expect("room");
        }
        q.push("quiet", now, "quiet-0".to_owned()).expect("room");
        let first_two: Vec<String> = (0..2).filter_map(|_| q.pop_ready(now)).collect();
        assert!(first_two.contains(&"quiet-0".to_owned()), "the quiet tenant is served within one round: {first_two:?}");
        // A retry waits for its time, and does not stop the others.
        let mut q = FairQueue::new(100, 10);
        q.push("a", now + Duration::from_secs(30), "a-retry".to_owned()).expect("room");
        q.push("b", now, "b-0".to_owned()).expect("room");
        assert_eq!(q.pop_ready(now).as_deref(), Some("b-0"));
        assert_eq!(q.pop_ready(now), None);
        assert_eq!(q.next_ready_at(), Some(now + Duration::from_secs(30)));
        assert_eq!(q.pop_ready(now + Duration::from_secs(30)).as_deref(), Some("a-retry"));
        assert!(q.is_empty());
    }

    #[test]
    fn the_queue_is_bounded_in_all_and_per_tenant() {
        let now = Instant::now();
        let mut q = FairQueue::new(5, 3);
        for i in 0..3 {
            q.push("a", now, i).expect("room");
        }
        assert_eq!(q.push("a", now, 3), Err(3), "a tenant's share is full");
        q.push("b", now, 10).expect("room");
        q.push("c", now, 20).expect("room");
        assert_eq!(q.push("d", now, 30), Err(30), "the queue is full");
        assert_eq!(q.len(), 5);
        let order: Vec<i32> = std::iter::from_fn(|| q.pop_ready(now)).collect();
        assert_eq!(order, [0, 10, 20, 1, 2]);
    }

    #[test]
    fn a_tenant_at_its_share_waits_and_others_are_served() {
        let now = Instant::now();
        let mut q = FairQueue::new(16, 16);
        for i in 0..3 {
            q.push("noisy", now, format!("noisy-{i}")).expect("room");
        }
        q.push("quiet", now + std::time::Duration::from_secs(5), "quiet-0".to_owned()).expect("room");
        let busy = |t: &str| t != "noisy";
        assert_eq!(q.pop_ready_if(now, busy), None, "noisy is at its share, quiet's item is not ready");
        assert_eq!(q.next_ready_at_if(busy), Some(now + std::time::Duration::from_secs(5)), "no wake-up for noisy's items");
        assert_eq!(q.pop_ready_if(now + std::time::Duration::from_secs(5), busy).as_deref(), Some("quiet-0"));
        assert_eq!(q.pop_ready_if(now, |_| true).as_deref(), Some("noisy-0"));
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_next_tenant_in_turn() {
        let slots = std::sync::Arc::new(FairSlots::new(1));
        let held = slots.acquire("bombs").await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Four compiles of one tenant queue first, then one of another tenant.
        for (i, tenant) in ["bombs", "bombs", "bombs", "bombs", "team"].into_iter().enumerate() {
            let (slots, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = slots.acquire(tenant).await;
                order.lock().expect("order").push(format!("{tenant}-{i}"));
            }));
            tokio::task::yield_now().await;
        }
        drop(held);
        for t in tasks {
            t.await.expect("task");
        }
        let order = order.lock().expect("order").clone();
        // The slot held by "bombs" (taken without queuing) frees first to "team", although
        // "bombs" queued first and sorts first.
        let team = order.iter().position(|o| o == "team-4").expect("served");
        assert_eq!(team, 0, "the other tenant waits only for the compile under way: {order:?}");
    }
}
