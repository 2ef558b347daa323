//! Generic JSON storage: objects keyed by (group, resource) then (namespace, name), one global
//! resourceVersion counter and a bounded watch history (reference §6.1, §6.8).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};

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

/// One committed write, as retained for watches.
#[derive(Debug)]
pub(crate) struct HistoryEvent {
    pub(crate) rv: u64,
    pub(crate) storage: Arc<StorageKey>,
    pub(crate) namespace: String,
    pub(crate) event_type: EventType,
    /// The object after the write (for a delete: its last state, with the delete's RV).
    pub(crate) object: Arc<Value>,
    /// The object before the write, if any (for selector transitions).
    pub(crate) previous: Option<Arc<Value>>,
    /// The event line in the stored form, serialised once for every watcher that wants it.
    pub(crate) line: OnceLock<Bytes>,
}

/// `(namespace, name)`; namespace empty for cluster-scoped objects.
pub(crate) type ObjectKey = (String, String);

/// The in-memory state, behind one mutex.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) rv: u64,
    pub(crate) objects: BTreeMap<StorageKey, BTreeMap<ObjectKey, Arc<Value>>>,
    storage_keys: BTreeMap<StorageKey, Arc<StorageKey>>,
    pub(crate) history: VecDeque<Arc<HistoryEvent>>,
    pub(crate) history_max: usize,
    /// Every event with an RV above this one is still in `history`.
    pub(crate) compacted_rv: u64,
    pub(crate) registry: Arc<Registry>,
    pub(crate) services: ServiceAllocator,
    /// Set by deletes, read by the garbage collector.
    pub(crate) deletions_since_gc: bool,
}

impl State {
    pub(crate) fn new(history_max: usize, services: ServiceAllocator) -> Self {
        Self {
            rv: 0,
            objects: BTreeMap::new(),
            storage_keys: BTreeMap::new(),
            history: VecDeque::new(),
            history_max: history_max.max(1),
            compacted_rv: 0,
            registry: Arc::new(Registry::build(&[], 0)),
            services,
            deletions_since_gc: false,
        }
    }

    /// The stored object, if any.
    pub(crate) fn get(
        &self,
        storage: &StorageKey,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Value>> {
        self.objects
            .get(storage)?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a storage key, optionally in one namespace, in key order.
    pub(crate) fn list(&self, storage: &StorageKey, namespace: Option<&str>) -> Vec<Arc<Value>> {
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
    pub(crate) fn put(&mut self, storage: &StorageKey, mut object: Value) -> Arc<Value> {
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
        let object = Arc::new(object);
        let key = self.interned(storage);
        let previous = self
            .objects
            .entry(storage.clone())
            .or_default()
            .insert((namespace.clone(), name), object.clone());
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
            object: object.clone(),
            previous,
            line: OnceLock::new(),
        });
        object
    }

    /// Removes an object; the DELETED event carries its last state with a new RV.
    pub(crate) fn remove(
        &mut self,
        storage: &StorageKey,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Value>> {
        let previous = self
            .objects
            .get_mut(storage)?
            .remove(&(namespace.to_string(), name.to_string()))?;
        self.rv += 1;
        let rv = self.rv;
        let mut last = (*previous).clone();
        metadata_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
        let last = Arc::new(last);
        let key = self.interned(storage);
        self.record(HistoryEvent {
            rv,
            storage: key,
            namespace: namespace.to_string(),
            event_type: EventType::Deleted,
            object: last.clone(),
            previous: Some(previous),
            line: OnceLock::new(),
        });
        self.deletions_since_gc = true;
        Some(last)
    }

    fn record(&mut self, event: HistoryEvent) {
        self.history.push_back(Arc::new(event));
        while self.history.len() > self.history_max {
            if let Some(evicted) = self.history.pop_front() {
                self.compacted_rv = evicted.rv;
            }
        }
    }

    /// Drops the whole watch history (test hook): the next watch from an older RV gets 410.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    /// Events with an RV above `after`, or `Err(oldest)` when some were compacted away.
    pub(crate) fn events_after(&self, after: u64) -> Result<Vec<Arc<HistoryEvent>>, u64> {
        if after < self.compacted_rv {
            return Err(self.compacted_rv);
        }
        let start = self.history.partition_point(|event| event.rv <= after);
        Ok(self.history.range(start..).cloned().collect())
    }
}
