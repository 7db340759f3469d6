//! An index of a watched kind by namespace and a key taken from each object (a label's value, the
//! claims a pod mounts), kept from the same watch events as the kind's store: a reconcile finds
//! its policy's Jobs and pods without scanning every Job and pod of the cluster.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use kube::Resource;
use kube::runtime::watcher;

/// (namespace, key) → names of the objects with that key.
type Entries = HashMap<(String, String), BTreeSet<String>>;
/// (namespace, name) → the object's keys.
type KeysOf = HashMap<(String, String), Vec<String>>;

#[derive(Default)]
struct Inner {
    entries: Entries,
    /// (namespace, name) → the object's keys, to remove them when it changes or goes.
    keys_of: KeysOf,
    /// A relist in progress: the index it builds replaces this one when it is complete.
    relisting: Option<(Entries, KeysOf)>,
}

/// The keys of one object, for example the value of a label.
pub type KeyFn<K> = fn(&K) -> Vec<String>;

/// An index of objects of kind `K` by namespace and key.
#[derive(Clone)]
pub struct Index<K> {
    keys: KeyFn<K>,
    inner: Arc<Mutex<Inner>>,
}

fn insert(entries: &mut Entries, keys_of: &mut KeysOf, ns: &str, name: &str, keys: Vec<String>) {
    for key in &keys {
        entries.entry((ns.to_owned(), key.clone())).or_default().insert(name.to_owned());
    }
    if !keys.is_empty() {
        keys_of.insert((ns.to_owned(), name.to_owned()), keys);
    }
}

fn remove(entries: &mut Entries, keys_of: &mut KeysOf, ns: &str, name: &str) {
    for key in keys_of.remove(&(ns.to_owned(), name.to_owned())).unwrap_or_default() {
        let slot = (ns.to_owned(), key);
        if let Some(names) = entries.get_mut(&slot) {
            names.remove(name);
            if names.is_empty() {
                entries.remove(&slot);
            }
        }
    }
}

impl<K: Resource> Index<K> {
    pub fn new(keys: KeyFn<K>) -> Self {
        Index { keys, inner: Arc::default() }
    }

    /// Follows one watch event, as the store does.
    pub fn apply(&self, event: &watcher::Event<K>) {
        let Ok(mut guard) = self.inner.lock() else { return };
        let inner = &mut *guard;
        let id = |o: &K| (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default());
        match event {
            watcher::Event::Apply(o) => {
                let (ns, name) = id(o);
                remove(&mut inner.entries, &mut inner.keys_of, &ns, &name);
                insert(&mut inner.entries, &mut inner.keys_of, &ns, &name, (self.keys)(o));
            }
            watcher::Event::Delete(o) => {
                let (ns, name) = id(o);
                remove(&mut inner.entries, &mut inner.keys_of, &ns, &name);
            }
            watcher::Event::Init => inner.relisting = Some(Default::default()),
            watcher::Event::InitApply(o) => {
                let (ns, name) = id(o);
                if let Some((entries, keys_of)) = inner.relisting.as_mut() {
                    insert(entries, keys_of, &ns, &name, (self.keys)(o));
                }
            }
            watcher::Event::InitDone => {
                if let Some((entries, keys_of)) = inner.relisting.take() {
                    inner.entries = entries;
                    inner.keys_of = keys_of;
                }
            }
        }
    }

    /// How many objects of the namespace have the key.
    pub fn count(&self, namespace: &str, key: &str) -> usize {
        let Ok(inner) = self.inner.lock() else { return 0 };
        inner.entries.get(&(namespace.to_owned(), key.to_owned())).map_or(0, BTreeSet::len)
    }

    /// The names of the objects of `namespace` with `key`.
    pub fn names(&self, namespace: &str, key: &str) -> Vec<String> {
        let Ok(inner) = self.inner.lock() else { return Vec::new() };
        inner.entries.get(&(namespace.to_owned(), key.to_owned())).map(|n| n.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::Job;

    fn job(ns: &str, name: &str, policy: Option<&str>) -> Job {
        let mut job = Job::default();
        job.metadata.namespace = Some(ns.into());
        job.metadata.name = Some(name.into());
        job.metadata.labels = policy.map(|p| [("policy".to_owned(), p.to_owned())].into());
        job
    }

    fn by_policy(j: &Job) -> Vec<String> {
        j.metadata.labels.as_ref().and_then(|l| l.get("policy")).cloned().into_iter().collect()
    }

    #[test]
    fn the_index_follows_changes_deletions_and_relists() {
        let index = Index::new(by_policy as KeyFn<Job>);
        use watcher::Event::*;
        // (event, namespace, key) -> names
        let steps: Vec<(watcher::Event<Job>, &str, &str, Vec<&str>)> = vec![
            (Apply(job("a", "j1", Some("p1"))), "a", "p1", vec!["j1"]),
            (Apply(job("a", "j2", Some("p1"))), "a", "p1", vec!["j1", "j2"]),
            (Apply(job("b", "j1", Some("p1"))), "a", "p1", vec!["j1", "j2"]),
            (Apply(job("a", "j2", Some("p2"))), "a", "p1", vec!["j1"]),
            (Apply(job("a", "j1", None)), "a", "p1", vec![]),
            (Delete(job("a", "j2", Some("p2"))), "a", "p2", vec![]),
            (Init, "b", "p1", vec!["j1"]),
            (InitApply(job("b", "j9", Some("p1"))), "b", "p1", vec!["j1"]),
            (InitDone, "b", "p1", vec!["j9"]),
        ];
        for (i, (event, ns, key, names)) in steps.into_iter().enumerate() {
            index.apply(&event);
            assert_eq!(index.names(ns, key), names, "step {i}");
        }
        let inner = index.inner.lock().expect("lock");
        assert_eq!((inner.entries.len(), inner.keys_of.len()), (1, 1), "nothing is left behind");
    }
}
