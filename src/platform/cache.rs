//! The objects reconciles read, kept in reflector stores fed by one watch each and shared with
//! the controllers' triggers: a reconcile reads PVCs, Jobs, pods, VolumeSnapshots, restores and
//! the Job controller's pod-refusal events from memory instead of listing them from the API server. Pods are kept without what the
//! operator never reads (managed fields, annotations, container specs), so memory grows with the
//! number of pods by a few hundred bytes each.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt, TryStreamExt};

use crate::platform::cache_index::{Index, KeyFn};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::BackupRestore;
use crate::error::{Error, Result};
use crate::base::names::{LABEL_KIND, LABEL_POLICY_UID};

/// Events buffered per subscriber of a shared watch before the watch waits for it.
const BUFFER: usize = 1024;

/// Read-only views of the watched objects.
#[derive(Clone)]
pub struct Caches {
    pub pvcs: Store<PersistentVolumeClaim>,
    /// The operator's own Jobs (every kind: backup, prune, verify, cleanup, restore).
    pub jobs: Store<Job>,
    /// Every pod in scope, trimmed ([`trim_pod`]).
    pub pods: Store<Pod>,
    /// The policies' VolumeSnapshots, when the API was there at start-up.
    pub snapshots: Option<Store<DynamicObject>>,
    /// BackupRestores, when their CRD was installed at start-up: kept untyped and parsed one by
    /// one, so that one object the operator cannot read never fails the watch's list.
    pub restores: Option<Store<DynamicObject>>,
    /// The Job controller's `FailedCreate` events (a Job's pods refused by admission or quota):
    /// the only place such a refusal shows. Few, and they expire with the API server's event TTL.
    pub failed_creates: Store<Event>,
    /// Jobs by namespace and policy uid (label).
    jobs_by_policy: Index<Job>,
    /// PVCs by namespace and label pair ([`pvc_keys`]).
    pvcs_by_label: Index<PersistentVolumeClaim>,
    /// Pods by namespace and policy uid (label): the runs' pods.
    pods_by_policy: Index<Pod>,
    /// Pods by namespace and the claims they mount.
    pods_by_claim: Index<Pod>,
}

fn policy_uid<K: kube::Resource>(o: &K) -> Vec<String> {
    o.meta().labels.as_ref().and_then(|l| l.get(LABEL_POLICY_UID)).cloned().into_iter().collect()
}

/// The key under which every PVC of a namespace is found.
const ALL_PVCS: &str = "*";

/// A PVC's index keys: [`ALL_PVCS`] and `key=value` for each label.
fn pvc_keys(p: &PersistentVolumeClaim) -> Vec<String> {
    std::iter::once(ALL_PVCS.to_owned()).chain(p.labels().iter().map(|(k, v)| format!("{k}={v}"))).collect()
}

/// For each requirement of a selector that names values (a `matchLabels` pair, an `In`
/// expression), the index keys of which a matching PVC has at least one.
fn candidate_keys(selector: &LabelSelector) -> Vec<Vec<String>> {
    let pairs = selector.match_labels.iter().flatten().map(|(k, v)| vec![format!("{k}={v}")]);
    let ins = selector
        .match_expressions
        .iter()
        .flatten()
        .filter(|e| e.operator == "In")
        .map(|e| e.values.iter().flatten().map(|v| format!("{}={v}", e.key)).collect());
    pairs.chain(ins).collect()
}

/// The names of the PVCs with the keys of the selector's rarest requirement.
fn candidate_names(index: &Index<PersistentVolumeClaim>, namespace: &str, selector: &LabelSelector) -> std::collections::BTreeSet<String> {
    let rarest = candidate_keys(selector).into_iter().min_by_key(|keys| keys.iter().map(|key| index.count(namespace, key)).sum::<usize>());
    let keys = rarest.unwrap_or_else(|| vec![ALL_PVCS.to_owned()]);
    keys.iter().flat_map(|key| index.names(namespace, key)).collect()
}

fn claims(p: &Pod) -> Vec<String> {
    p.spec.iter().flat_map(|s| s.volumes.iter().flatten()).filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone())).collect()
}

/// The change streams the policy controller triggers on, one subscription each.
pub struct PolicyTriggers {
    pub jobs: Changes<Job>,
    pub pods: Changes<Pod>,
    pub pvcs: Changes<PersistentVolumeClaim>,
    pub failed_creates: Changes<Event>,
    /// The snapshots' own watch (its store is filled as the policy controller reads it).
    pub snapshots: Option<futures::stream::BoxStream<'static, Result<DynamicObject, watcher::Error>>>,
    /// Restores that start or finish (they hold their policy's backups).
    pub restores: Option<Changes<DynamicObject>>,
}

/// The change streams the restore controller triggers on.
pub struct RestoreTriggers {
    pub jobs: Changes<Job>,
    /// Its own objects, when the BackupRestore CRD was installed at start-up.
    pub restores: Option<Changes<DynamicObject>>,
}

/// The change streams of both controllers.
pub struct Triggers {
    pub policy: PolicyTriggers,
    pub restore: RestoreTriggers,
}

/// One subscriber's stream of the objects a shared watch changed, read from the store when the
/// subscriber gets to them. kube's own `ReflectHandle` answers `Pending` without arranging a
/// wake-up when an announced object is gone from the store by then (a pod created and deleted,
/// a Job pruned), and a controller polls its triggers through a `SelectAll`, which polls a stream
/// again only when that stream woke it: one such object silenced that trigger for good (the
/// "lost trigger" of a run's pod). This stream skips such objects and reads on.
pub struct Changes<K: kube::Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    refs: tokio::sync::mpsc::Receiver<ObjectRef<K>>,
    store: Store<K>,
}

impl<K: kube::Resource + Clone + 'static> Stream for Changes<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    type Item = Arc<K>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Arc<K>>> {
        loop {
            match self.refs.poll_recv(cx) {
                Poll::Ready(Some(r)) => {
                    if let Some(object) = self.store.get(&r) {
                        return Poll::Ready(Some(object));
                    }
                    // Gone since it was announced: nothing to trigger on; read the next one.
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Announces to every subscriber what one watch event changed, once the store holds it: an
/// applied object, or every object after a (re)list. Waits for a subscriber whose buffer is full.
async fn announce<K>(event: &watcher::Event<K>, store: &Store<K>, dyntype: &K::DynamicType, subscribers: &[tokio::sync::mpsc::Sender<ObjectRef<K>>])
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let refs: Vec<ObjectRef<K>> = match event {
        watcher::Event::Apply(o) => vec![ObjectRef::from_obj_with(o, dyntype.clone())],
        watcher::Event::InitDone => store.state().iter().map(|o| ObjectRef::from_obj_with(&**o, dyntype.clone())).collect(),
        watcher::Event::Delete(_) | watcher::Event::Init | watcher::Event::InitApply(_) => Vec::new(),
    };
    for r in refs {
        for s in subscribers {
            // A subscriber that went away (its controller stopped) is not waited for.
            let _ = s.send(r.clone()).await;
        }
    }
}

/// Keeps what the operator reads of a pod: its name, namespace and labels, its volumes' claims,
/// node and containers' names and images, and its status.
pub fn trim_pod(mut pod: Pod) -> Pod {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    if let Some(spec) = pod.spec.as_mut() {
        for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            *c = k8s_openapi::api::core::v1::Container { name: std::mem::take(&mut c.name), image: c.image.take(), ..Default::default() };
        }
        for v in spec.volumes.iter_mut().flatten() {
            let claim = v.persistent_volume_claim.take();
            *v = k8s_openapi::api::core::v1::Volume { name: std::mem::take(&mut v.name), persistent_volume_claim: claim, ..Default::default() };
        }
        spec.affinity = None;
        spec.tolerations = None;
    }
    pod
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One shared watch: a store, its driver (spawned), and `subscribers` change streams.
fn shared<K>(
    api: Api<K>,
    dyntype: K::DynamicType,
    config: watcher::Config,
    subscribers: usize,
    modify: impl FnMut(&mut K) + Send + 'static,
    indexes: Vec<Index<K>>,
) -> (Store<K>, Vec<Changes<K>>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let writer = reflector::store::Writer::new(dyntype.clone());
    let reader = writer.as_reader();
    let (senders, changes): (Vec<_>, Vec<_>) = (0..subscribers)
        .map(|_| {
            let (tx, rx) = tokio::sync::mpsc::channel(BUFFER);
            (tx, Changes { refs: rx, store: reader.clone() })
        })
        .unzip();
    let indexed = watcher(api, config).default_backoff().modify(modify).inspect_ok(move |event| {
        for index in &indexes {
            index.apply(event);
        }
    });
    let store = reader.clone();
    let driver = async move {
        let mut events = std::pin::pin!(reflector::reflector(writer, indexed));
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => announce(&event, &store, &dyntype, &senders).await,
                Err(e) => tracing::warn!("watch: {e}"),
            }
        }
    };
    tokio::spawn(driver);
    (reader, changes)
}

fn one<K>(mut handles: Vec<K>) -> Result<K> {
    handles.pop().ok_or_else(|| Error::Runtime("a shared watch without subscribers".into()))
}

/// The BackupRestore kind, untyped: each object is parsed on its own ([`parse_restore`]).
pub fn restore_resource() -> ApiResource {
    ApiResource::erase::<BackupRestore>(&())
}

/// A restore as the operator reads it, or why it cannot.
pub fn parse_restore(object: &DynamicObject) -> std::result::Result<BackupRestore, serde_json::Error> {
    serde_json::to_value(object).and_then(serde_json::from_value)
}

/// Starts the watches. `namespace` limits them to one namespace.
pub fn start(client: &Client, namespace: Option<&str>, snapshots_api: bool, restores_api: bool) -> Result<(Caches, Triggers)> {
    let pvcs_by_label = Index::new(pvc_keys as KeyFn<PersistentVolumeClaim>);
    let (pvcs, pvc_triggers) = shared(api::<PersistentVolumeClaim>(client, namespace), (), watcher::Config::default(), 1, |p| {
        p.metadata.managed_fields = None;
    }, vec![pvcs_by_label.clone()]);
    let jobs_by_policy = Index::new(policy_uid as KeyFn<Job>);
    let (jobs, mut job_triggers) = shared(api::<Job>(client, namespace), (), watcher::Config::default().labels(LABEL_KIND), 2, |j| {
        j.metadata.managed_fields = None;
    }, vec![jobs_by_policy.clone()]);
    let (pods_by_policy, pods_by_claim) = (Index::new(policy_uid as KeyFn<Pod>), Index::new(claims as KeyFn<Pod>));
    let (pods, pod_triggers) = shared(api::<Pod>(client, namespace), (), watcher::Config::default(), 1, |p: &mut Pod| {
        *p = trim_pod(std::mem::take(p));
    }, vec![pods_by_policy.clone(), pods_by_claim.clone()]);
    let failed_create = watcher::Config::default().fields("involvedObject.kind=Job,reason=FailedCreate");
    let (failed_creates, failed_create_triggers) = shared(api::<Event>(client, namespace), (), failed_create, 1, |e| {
        e.metadata.managed_fields = None;
    }, Vec::new());
    let (restores, restore_triggers) = if restores_api {
        let resource = restore_resource();
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let (store, mut handles) = shared(api, resource, watcher::Config::default(), 2, |r: &mut DynamicObject| {
            r.metadata.managed_fields = None;
        }, Vec::new());
        let main = handles.pop().ok_or_else(|| Error::Runtime("a shared watch without subscribers".into()))?;
        (Some(store), Some((one(handles)?, main)))
    } else {
        (None, None)
    };
    let (snapshots, snapshot_triggers) = if snapshots_api {
        let resource: ApiResource = crate::base::names::volume_snapshot_resource();
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let writer = reflector::store::Writer::new(resource);
        let reader = writer.as_reader();
        let stream = watcher(api, watcher::Config::default().labels(LABEL_POLICY_UID))
            .default_backoff()
            .modify(|s: &mut DynamicObject| s.metadata.managed_fields = None)
            .reflect(writer)
            .touched_objects()
            .boxed();
        (Some(reader), Some(stream))
    } else {
        (None, None)
    };
    let caches = Caches { pvcs, jobs, pods, snapshots, restores, failed_creates, jobs_by_policy, pvcs_by_label, pods_by_policy, pods_by_claim };
    let restore_jobs = job_triggers.pop().ok_or_else(|| Error::Runtime("a shared watch without subscribers".into()))?;
    let (policy_restores, restores) = match restore_triggers {
        Some((policy, restore)) => (Some(policy), Some(restore)),
        None => (None, None),
    };
    let triggers = Triggers {
        policy: PolicyTriggers {
            jobs: one(job_triggers)?,
            pods: one(pod_triggers)?,
            pvcs: one(pvc_triggers)?,
            failed_creates: one(failed_create_triggers)?,
            snapshots: snapshot_triggers,
            restores: policy_restores,
        },
        restore: RestoreTriggers { jobs: restore_jobs, restores },
    };
    Ok((caches, triggers))
}

impl Caches {
    /// Waits until every store fed by its own task has its first complete list. Called once, by
    /// one task, before the controllers start: a store's readiness wakes only one waiter at a time.
    pub async fn ready(&self) -> Result<()> {
        let dropped = |_| Error::Runtime("a watch stopped".into());
        self.pvcs.wait_until_ready().await.map_err(dropped)?;
        self.jobs.wait_until_ready().await.map_err(dropped)?;
        self.pods.wait_until_ready().await.map_err(dropped)?;
        self.failed_creates.wait_until_ready().await.map_err(dropped)?;
        if let Some(r) = &self.restores {
            r.wait_until_ready().await.map_err(dropped)?;
        }
        Ok(())
    }

    /// The PVCs of a namespace that `selector` may match (the caller checks each): those with its
    /// rarest required label pair, or every PVC of the namespace when it requires none. A policy's
    /// reconcile costs what it selects, not what the namespace holds.
    pub fn pvc_candidates(&self, namespace: &str, selector: &LabelSelector) -> Vec<Arc<PersistentVolumeClaim>> {
        candidate_names(&self.pvcs_by_label, namespace, selector)
            .iter().filter_map(|name| self.pvcs.get(&reflector::ObjectRef::new(name).within(namespace))).collect()
    }

    pub fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.pvcs.get(&reflector::ObjectRef::new(name).within(namespace))
    }

    pub fn pods_in(&self, namespace: &str) -> Vec<Pod> {
        self.pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace)).into_iter().map(|p| (*p).clone()).collect()
    }

    /// The pods a policy's reconcile reads: its runs' pods (labelled with its uid) and the pods
    /// that mount one of `claims`. Only these are copied, so a reconcile costs what the policy
    /// has, not what the namespace has.
    pub fn pods_of_policy(&self, namespace: &str, policy_uid: &str, claims: &std::collections::BTreeSet<String>) -> Vec<Pod> {
        let mut names: std::collections::BTreeSet<String> = self.pods_by_policy.names(namespace, policy_uid).into_iter().collect();
        for claim in claims {
            names.extend(self.pods_by_claim.names(namespace, claim));
        }
        names.iter().filter_map(|name| self.pods.get(&reflector::ObjectRef::new(name).within(namespace))).map(|p| (*p).clone()).collect()
    }

    /// The pods that mount a claim (any phase), for its hooks.
    pub fn pods_mounting(&self, namespace: &str, claim: &str) -> Vec<Pod> {
        let names = self.pods_by_claim.names(namespace, claim);
        names.iter().filter_map(|name| self.pods.get(&reflector::ObjectRef::new(name).within(namespace))).map(|p| (*p).clone()).collect()
    }

    /// The Jobs of a namespace labelled with a policy's uid.
    pub fn jobs_of_policy(&self, namespace: &str, policy_uid: &str) -> Vec<Job> {
        let names = self.jobs_by_policy.names(namespace, policy_uid);
        names.iter().filter_map(|name| self.jobs.get(&reflector::ObjectRef::new(name).within(namespace))).map(|j| (*j).clone()).collect()
    }

    /// `FailedCreate` events of the named Jobs of a namespace.
    pub fn failed_creates_of(&self, namespace: &str, jobs: &std::collections::BTreeSet<&str>) -> Vec<Event> {
        self.failed_creates
            .state_filter(|e| e.involved_object.namespace.as_deref() == Some(namespace) && e.involved_object.name.as_deref().is_some_and(|n| jobs.contains(n)))
            .into_iter()
            .map(|e| (*e).clone())
            .collect()
    }

    pub fn job(&self, namespace: &str, name: &str) -> Option<Job> {
        self.jobs.get(&reflector::ObjectRef::new(name).within(namespace)).map(|j| (*j).clone())
    }

    /// The restores of a namespace that the operator can read (one it cannot is failed by the
    /// restore controller and holds nothing).
    pub fn restores_in(&self, namespace: &str) -> Vec<BackupRestore> {
        let Some(store) = &self.restores else { return Vec::new() };
        store.state_filter(|r| r.metadata.namespace.as_deref() == Some(namespace)).iter().filter_map(|r| parse_restore(r).ok()).collect()
    }

    /// The policy's VolumeSnapshots, from the store when the API was watched from the start and
    /// the store has its first list (the policy controller fills it as it runs); `None` otherwise.
    pub fn snapshots_of(&self, namespace: &str, policy_uid: &str) -> Option<Vec<DynamicObject>> {
        use futures::FutureExt;
        let store = self.snapshots.as_ref()?;
        store.wait_until_ready().now_or_never()?.ok()?;
        Some(
            store
                .state_filter(|s| s.metadata.namespace.as_deref() == Some(namespace) && s.labels().get(LABEL_POLICY_UID).map(String::as_str) == Some(policy_uid))
                .into_iter()
                .map(|s| (*s).clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"namespace": "a", "name": name}})).expect("pod")
    }

    /// A pod announced, then deleted before the controller read it (a run's pod replaced, a Job
    /// pruned), and then another pod's change: what a controller's trigger selector gets.
    fn events() -> Vec<watcher::Event<Pod>> {
        vec![watcher::Event::Apply(pod("gone")), watcher::Event::Delete(pod("gone")), watcher::Event::Apply(pod("changed"))]
    }

    #[tokio::test]
    async fn kubes_shared_handle_goes_silent_after_an_object_deleted_before_it_was_read() {
        // The cause of the lost trigger: kube's ReflectHandle answers Pending for the deleted pod
        // without arranging a wake-up, and a controller's SelectAll then never polls it again.
        let (_reader, writer) = reflector::store_shared::<Pod>(16);
        let handle = writer.subscribe().expect("subscriber");
        let driven: Vec<_> = futures::stream::iter(events().into_iter().map(Ok::<_, watcher::Error>)).reflect_shared(writer).collect().await;
        assert_eq!(driven.len(), 3);
        let mut triggers = futures::stream::select_all([handle.boxed()]);
        assert!(futures::poll!(triggers.next()).is_pending());
        assert!(futures::poll!(triggers.next()).is_pending(), "the change of `changed` is never delivered");
    }

    #[tokio::test]
    async fn a_change_after_an_object_deleted_before_it_was_read_still_triggers() {
        let mut writer = reflector::store::Writer::<Pod>::new(());
        let store = writer.as_reader();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        for event in events() {
            writer.apply_watcher_event(&event);
            announce(&event, &store, &(), std::slice::from_ref(&tx)).await;
        }
        let mut triggers = futures::stream::select_all([Changes { refs: rx, store }.boxed()]);
        let got = futures::poll!(triggers.next());
        assert!(matches!(&got, std::task::Poll::Ready(Some(p)) if p.metadata.name.as_deref() == Some("changed")), "{got:?}");
        assert!(futures::poll!(triggers.next()).is_pending(), "nothing else was announced");
    }

    fn pvc(ns: &str, name: &str, labels: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({"metadata": {"namespace": ns, "name": name, "labels": labels}})).expect("pvc")
    }

    #[test]
    fn a_selector_reads_the_claims_of_its_rarest_requirement_only() {
        let index = Index::new(pvc_keys as KeyFn<PersistentVolumeClaim>);
        let mut claims: Vec<PersistentVolumeClaim> = (0..50).map(|i| pvc("a", &format!("data-{i}"), serde_json::json!({"app": "db", "index": i.to_string()}))).collect();
        claims.push(pvc("a", "web-0", serde_json::json!({"app": "web"})));
        claims.push(pvc("a", "bare", serde_json::json!({})));
        claims.push(pvc("b", "data-0", serde_json::json!({"app": "db", "index": "0"})));
        for c in &claims {
            index.apply(&watcher::Event::Apply(c.clone()));
        }
        let selector = |v: serde_json::Value| -> LabelSelector { serde_json::from_value(v).expect("selector") };
        let names = |v: serde_json::Value| candidate_names(&index, "a", &selector(v)).into_iter().collect::<Vec<_>>();
        let cases: Vec<(&str, serde_json::Value, Vec<&str>)> = vec![
            ("the rarer pair of two", serde_json::json!({"matchLabels": {"app": "db", "index": "7"}}), vec!["data-7"]),
            ("an In expression: each value", serde_json::json!({"matchExpressions": [{"key": "index", "operator": "In", "values": ["1", "2"]}]}), vec!["data-1", "data-2"]),
            ("In rarer than a pair", serde_json::json!({"matchLabels": {"app": "db"}, "matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}), vec!["web-0"]),
            ("only Exists: the namespace", serde_json::json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}), vec![]),
            ("empty: the namespace", serde_json::json!({}), vec![]),
            ("no such label", serde_json::json!({"matchLabels": {"app": "cache"}}), vec![]),
        ];
        for (what, sel, want) in cases {
            let got = names(sel);
            if what.ends_with("the namespace") {
                assert_eq!(got.len(), 52, "{what}");
                assert!(got.contains(&"bare".to_owned()), "{what}");
            } else {
                assert_eq!(got, want, "{what}");
            }
        }
        // A claim that loses its label leaves that key; one deleted leaves the index.
        index.apply(&watcher::Event::Apply(pvc("a", "data-7", serde_json::json!({"app": "db"}))));
        assert!(names(serde_json::json!({"matchLabels": {"index": "7"}})).is_empty());
        index.apply(&watcher::Event::Delete(pvc("a", "web-0", serde_json::json!({"app": "web"}))));
        assert!(names(serde_json::json!({"matchLabels": {"app": "web"}})).is_empty());
        assert_eq!(candidate_names(&index, "b", &selector(serde_json::json!({"matchLabels": {"index": "0"}}))).len(), 1, "namespaces apart");
    }
}
