//! A queue served round-robin by tenant (namespace), whose items may wait for a time of their own
//! (a retry's backoff): one tenant's many or failing deliveries never hold the slots another
//! tenant's wait for. Bounded in all and per tenant. Pure: time is passed in.

use std::collections::{BTreeMap, VecDeque};
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
        let tenants: Vec<String> = self.lanes.keys().cloned().collect();
        let start = self.last.as_ref().map_or(0, |last| tenants.iter().position(|t| t > last).unwrap_or(0));
        for tenant in tenants.iter().cycle().skip(start).take(tenants.len()) {
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

    /// When the earliest waiting item becomes ready.
    pub fn next_ready_at(&self) -> Option<Instant> {
        self.lanes.values().flat_map(|l| l.iter().map(|(at, _)| *at)).min()
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
}
