//! Generic JSON storage: objects keyed by (group, resource) then (namespace, name), one global
//! resourceVersion counter and a bounded watch history (reference §6.1, §6.8).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use serde_json::{json, Value};

use crate::meta::metadata_mut;
use crate::registry::{Registry, StorageKey};
use crate::service::ServiceAllocator;

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One stored object: its serialised stored form plus the few metadata fields the server
/// reads without decoding it (garbage collection, namespace checks).
///
/// Objects are kept as JSON bytes, not as parsed `serde_json::Value`s: a Service is about 1 KiB
/// of JSON but 6–8 KiB as a `Value` tree, and GET, LIST and watch events of the stored form are
/// served from these bytes without re-encoding.
#[derive(Debug)]
pub(crate) struct Stored {
    /// The stored form (keys sorted, as serde_json's map keeps them), resourceVersion included.
    pub(crate) json: Bytes,
    /// `metadata.uid` (empty when absent).
    pub(crate) uid: Box<str>,
    /// `metadata.ownerReferences[*].uid` (`""` for a reference without one).
    pub(crate) owner_uids: Box<[Box<str>]>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub(crate) deleting: bool,
}

impl Stored {
    /// Encodes an object.
    pub(crate) fn encode(object: &Value) -> Self {
        let json = Bytes::from(serde_json::to_vec(object).unwrap_or_default());
        let meta = object.get("metadata");
        let uid = meta
            .and_then(|m| m.get("uid"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .into();
        let owner_uids = meta
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .map(|owners| {
                owners
                    .iter()
                    .map(|o| o.get("uid").and_then(Value::as_str).unwrap_or_default())
                    .map(Into::into)
                    .collect()
            })
            .unwrap_or_default();
        let deleting = meta.and_then(|m| m.get("deletionTimestamp")).is_some();
        Self {
            json,
            uid,
            owner_uids,
            deleting,
        }
    }

    /// Decodes the object. The bytes were produced by [`Stored::encode`], so this cannot fail
    /// short of memory corruption; `null` is returned then rather than panicking.
    pub(crate) fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// Whether the stored JSON starts with this `apiVersion` and `kind`, i.e. is already the
    /// form a client of that version wants (keys are sorted, so both come first unless the
    /// kind has a field sorting before `apiVersion`, such as core Events' `action`).
    pub(crate) fn has_prefix(&self, prefix: &[u8]) -> bool {
        !prefix.is_empty() && self.json.starts_with(prefix)
    }
}

/// The JSON prefix `{"apiVersion":"…","kind":"…",` of an object in the given form.
pub(crate) fn view_prefix(api_version: &str, kind: &str) -> Vec<u8> {
    let mut prefix = b"{\"apiVersion\":".to_vec();
    prefix.extend_from_slice(Value::from(api_version).to_string().as_bytes());
    prefix.extend_from_slice(b",\"kind\":");
    prefix.extend_from_slice(Value::from(kind).to_string().as_bytes());
    prefix.push(b',');
    prefix
}

/// One committed write, as retained for watches.
#[derive(Debug)]
pub(crate) struct HistoryEvent {
    pub(crate) rv: u64,
    pub(crate) storage: Arc<StorageKey>,
    pub(crate) namespace: String,
    pub(crate) event_type: EventType,
    /// The object after the write (for a delete: its last state, with the delete's RV).
    pub(crate) object: Arc<Stored>,
    /// The object before the write, if any (for selector transitions).
    pub(crate) previous: Option<Arc<Stored>>,
    /// The event line in the stored form, built once for every watcher that wants it.
    pub(crate) line: OnceLock<Bytes>,
}

/// `(namespace, name)`; namespace empty for cluster-scoped objects.
pub(crate) type ObjectKey = (String, String);

/// A committed object: the stored bytes and the decoded value they were made from.
#[derive(Debug)]
pub(crate) struct Committed {
    pub(crate) stored: Arc<Stored>,
    pub(crate) value: Value,
}

/// The watch history: the last committed events, in resourceVersion order.
///
/// It has its own lock, taken by writers (inside the state lock, only to append) and by watch
/// tasks (alone, to copy out what they have not sent), so watchers never wait for a write's
/// admission, defaulting and encoding.
#[derive(Debug)]
pub(crate) struct History {
    events: VecDeque<Arc<HistoryEvent>>,
    max: usize,
    /// Every event with an RV above this one is still in `events`.
    compacted_rv: u64,
    /// The RV of the last recorded event (the store's RV).
    rv: u64,
}

impl History {
    fn new(max: usize) -> Self {
        Self {
            events: VecDeque::new(),
            max: max.max(1),
            compacted_rv: 0,
            rv: 0,
        }
    }

    fn record(&mut self, event: HistoryEvent) {
        self.rv = self.rv.max(event.rv);
        self.events.push_back(Arc::new(event));
        while self.events.len() > self.max {
            if let Some(evicted) = self.events.pop_front() {
                self.compacted_rv = evicted.rv;
            }
        }
    }

    /// Drops every event (test hook): the next watch from an older RV gets 410.
    pub(crate) fn compact(&mut self) {
        self.events.clear();
        self.events.shrink_to_fit();
        self.compacted_rv = self.rv;
    }

    /// Events with an RV above `after` and the latest RV, or `Err(oldest)` when some were
    /// compacted away.
    pub(crate) fn events_after(&self, after: u64) -> Result<(Vec<Arc<HistoryEvent>>, u64), u64> {
        if after < self.compacted_rv {
            return Err(self.compacted_rv);
        }
        let start = self.events.partition_point(|event| event.rv <= after);
        Ok((self.events.range(start..).cloned().collect(), self.rv))
    }
}

/// A shared history with poison recovery (every append leaves it consistent).
#[derive(Clone, Debug)]
pub(crate) struct SharedHistory(Arc<Mutex<History>>);

impl SharedHistory {
    pub(crate) fn lock(&self) -> MutexGuard<'_, History> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The in-memory state, behind one mutex.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) rv: u64,
    pub(crate) objects: BTreeMap<StorageKey, BTreeMap<ObjectKey, Arc<Stored>>>,
    storage_keys: BTreeMap<StorageKey, Arc<StorageKey>>,
    pub(crate) history: SharedHistory,
    pub(crate) registry: Arc<Registry>,
    pub(crate) services: ServiceAllocator,
    /// Set by deletes, read by the garbage collector.
    pub(crate) deletions_since_gc: bool,
    /// Set by writes the in-process controllers act on (deletes, objects being deleted,
    /// Namespaces, CRDs); cleared when they run. Other writes do not wake them.
    pub(crate) controllers_due: bool,
}

impl State {
    pub(crate) fn new(history_max: usize, services: ServiceAllocator) -> Self {
        Self {
            rv: 0,
            objects: BTreeMap::new(),
            storage_keys: BTreeMap::new(),
            history: SharedHistory(Arc::new(Mutex::new(History::new(history_max)))),
            registry: Arc::new(Registry::build(&[], 0)),
            services,
            deletions_since_gc: false,
            controllers_due: false,
        }
    }

    /// The stored object, if any.
    pub(crate) fn get(
        &self,
        storage: &StorageKey,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Stored>> {
        self.objects
            .get(storage)?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// The stored object, decoded.
    pub(crate) fn get_value(
        &self,
        storage: &StorageKey,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        self.get(storage, namespace, name)
            .map(|stored| stored.value())
    }

    /// Objects of a storage key, optionally in one namespace, in key order.
    pub(crate) fn list(&self, storage: &StorageKey, namespace: Option<&str>) -> Vec<Arc<Stored>> {
        let Some(objects) = self.objects.get(storage) else {
            return Vec::new();
        };
        match namespace {
            Some(namespace) => objects
                .range((namespace.to_string(), String::new())..)
                .take_while(|((ns, _), _)| ns == namespace)
                .map(|(_, object)| object.clone())
                .collect(),
            None => objects.values().cloned().collect(),
        }
    }

    /// `(key, object)` of a storage key, optionally in one namespace, in key order.
    pub(crate) fn entries<'a>(
        &'a self,
        storage: &StorageKey,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Arc<Stored>)> + 'a {
        let objects = self.objects.get(storage);
        let start = (namespace.unwrap_or_default().to_string(), String::new());
        objects
            .into_iter()
            .flat_map(move |objects| objects.range(start.clone()..))
            .take_while(move |((ns, _), _)| namespace.is_none_or(|wanted| ns == wanted))
    }

    /// Objects of a storage key, decoded.
    pub(crate) fn list_values(&self, storage: &StorageKey, namespace: Option<&str>) -> Vec<Value> {
        self.list(storage, namespace)
            .iter()
            .map(|stored| stored.value())
            .collect()
    }

    /// Number of stored objects of every kind.
    pub(crate) fn object_count(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    fn interned(&mut self, storage: &StorageKey) -> Arc<StorageKey> {
        self.storage_keys
            .entry(storage.clone())
            .or_insert_with(|| Arc::new(storage.clone()))
            .clone()
    }

    /// Stores `object` (creating or replacing) with the next resourceVersion.
    pub(crate) fn put(&mut self, storage: &StorageKey, mut object: Value) -> Committed {
        self.rv += 1;
        let rv = self.rv;
        let meta = metadata_mut(&mut object);
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let stored = Arc::new(Stored::encode(&object));
        if stored.deleting || storage.1 == "namespaces" || storage.1 == "customresourcedefinitions"
        {
            self.controllers_due = true;
        }
        let key = self.interned(storage);
        let previous = self
            .objects
            .entry(storage.clone())
            .or_default()
            .insert((namespace.clone(), name), stored.clone());
        let event_type = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(HistoryEvent {
            rv,
            storage: key,
            namespace,
            event_type,
            object: stored.clone(),
            previous,
            line: OnceLock::new(),
        });
        Committed {
            stored,
            value: object,
        }
    }

    /// Removes an object; the DELETED event carries its last state with a new RV.
    pub(crate) fn remove(
        &mut self,
        storage: &StorageKey,
        namespace: &str,
        name: &str,
    ) -> Option<Committed> {
        let previous = self
            .objects
            .get_mut(storage)?
            .remove(&(namespace.to_string(), name.to_string()))?;
        self.rv += 1;
        let rv = self.rv;
        let mut last = previous.value();
        metadata_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
        let stored = Arc::new(Stored::encode(&last));
        let key = self.interned(storage);
        self.record(HistoryEvent {
            rv,
            storage: key,
            namespace: namespace.to_string(),
            event_type: EventType::Deleted,
            object: stored.clone(),
            previous: Some(previous),
            line: OnceLock::new(),
        });
        self.deletions_since_gc = true;
        self.controllers_due = true;
        Some(Committed {
            stored,
            value: last,
        })
    }

    fn record(&mut self, event: HistoryEvent) {
        self.history.lock().record(event);
    }

    /// Drops the whole watch history (test hook): the next watch from an older RV gets 410.
    pub(crate) fn compact(&mut self) {
        self.history.lock().compact();
    }
}
