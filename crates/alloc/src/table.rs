//! Compact per-service and per-key storage.
//!
//! Services live in a slab (`Vec` of slots, ids reused) with a hash index from name to id that
//! stores only the 4-byte id: the name itself is stored once, in the slot. Nothing here is
//! iterated in hash order; iteration goes through the slab and callers sort by name.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::request::{Port, ServiceKey};

/// Index of a service in the slab.
pub(crate) type ServiceId = u32;

/// Index of an interned `(sharing key, backend key)`; [`NO_SHARING`] for services whose
/// `allow-shared-ip` is empty.
pub(crate) type KeyId = u32;

/// The key id of a service that does not share.
pub(crate) const NO_SHARING: KeyId = 0;

/// One service's allocation.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// `namespace/name`.
    pub(crate) name: Box<str>,
    /// Index of the pool in the allocator's pool list (at most [`crate::POOLS_MAX`] pools, so
    /// 16 bits; it keeps the entry at 72 bytes).
    pub(crate) pool: u16,
    pub(crate) key: KeyId,
    /// One or two addresses; the second slot is `None` for single-stack.
    pub(crate) ips: [Option<IpAddr>; 2],
    /// Sorted, deduplicated.
    pub(crate) ports: Box<[Port]>,
}

impl Entry {
    pub(crate) fn ip_list(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ips.iter().flatten().copied()
    }

    pub(crate) fn service_key(&self) -> ServiceKey {
        name_to_key(&self.name)
    }
}

/// `namespace/name` back to a key (a namespace never contains `/`).
pub(crate) fn name_to_key(name: &str) -> ServiceKey {
    match name.split_once('/') {
        Some((namespace, name)) => ServiceKey::new(namespace, name),
        None => ServiceKey::new("", name),
    }
}

/// Slots per slab chunk. Chunks are allocated whole, so a growing table wastes at most one
/// chunk instead of half a doubled `Vec`.
const CHUNK: usize = 1024;

/// The services, by id and by name.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServiceTable {
    /// Fixed-capacity chunks of `CHUNK` slots; id `i` lives in chunk `i / CHUNK`.
    chunks: Vec<Vec<Option<Entry>>>,
    slot_count: usize,
    vacant: Vec<ServiceId>,
    index: HashTable<ServiceId>,
    /// foldhash with a per-process random seed: fast, and the order of the table is never
    /// observed.
    hasher: DefaultHashBuilder,
    len: usize,
}

impl ServiceTable {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn find(&self, name: &str) -> Option<ServiceId> {
        let hash = self.hasher.hash_one(name);
        self.index
            .find(hash, |&id| self.slot(id).name.as_ref() == name)
            .copied()
    }

    pub(crate) fn get(&self, id: ServiceId) -> &Entry {
        self.slot(id)
    }

    fn slot(&self, id: ServiceId) -> &Entry {
        // Invariant: ids handed out by `insert` point at occupied slots until `remove`.
        slot_in(&self.chunks, id).expect("service id points at an occupied slot")
    }

    fn slot_mut(&mut self, id: ServiceId) -> &mut Option<Entry> {
        let index = id as usize;
        &mut self.chunks[index / CHUNK][index % CHUNK]
    }

    pub(crate) fn insert(&mut self, entry: Entry) -> ServiceId {
        assert!(
            self.find(&entry.name).is_none(),
            "service {} inserted twice",
            entry.name
        );
        let hash = self.hasher.hash_one(entry.name.as_ref());
        let id = match self.vacant.pop() {
            Some(id) => {
                *self.slot_mut(id) = Some(entry);
                id
            }
            None => {
                let id = ServiceId::try_from(self.slot_count).expect("fewer than 2^32 services");
                if self.slot_count.is_multiple_of(CHUNK) {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                }
                self.chunks
                    .last_mut()
                    .expect("a chunk with room exists")
                    .push(Some(entry));
                self.slot_count += 1;
                id
            }
        };
        let Self {
            chunks,
            index,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, id, |&other| {
            let name = slot_in(chunks, other).map_or("", |e| e.name.as_ref());
            hasher.hash_one(name)
        });
        self.len += 1;
        id
    }

    pub(crate) fn remove(&mut self, id: ServiceId) -> Entry {
        let hash = self.hasher.hash_one(self.slot(id).name.as_ref());
        match self.index.find_entry(hash, |&other| other == id) {
            Ok(found) => {
                found.remove();
            }
            Err(_) => panic!("service id {id} missing from the name index"),
        }
        let entry = self
            .slot_mut(id)
            .take()
            .expect("service id points at an occupied slot");
        self.vacant.push(id);
        self.len -= 1;
        entry
    }

    /// Every `(id, entry)`, in slab order (not a stable order: callers sort by name).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ServiceId, &Entry)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(id, slot)| {
                slot.as_ref()
                    .map(|entry| (ServiceId::try_from(id).unwrap_or(ServiceId::MAX), entry))
            })
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.slot_count = 0;
        self.vacant.clear();
        self.index.clear();
        self.len = 0;
    }
}

fn slot_in(chunks: &[Vec<Option<Entry>>], id: ServiceId) -> Option<&Entry> {
    let index = id as usize;
    chunks.get(index / CHUNK)?.get(index % CHUNK)?.as_ref()
}

/// Interned `(sharing key, backend key)` pairs with reference counts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Keys {
    /// sharing key → backend key → id (nested so lookups borrow `&str`, no allocation).
    by_value: BTreeMap<Box<str>, BTreeMap<Box<str>, KeyId>>,
    live: usize,
    /// Slot `id - 1` holds key `id`.
    values: Vec<Option<KeyValue>>,
    vacant: Vec<KeyId>,
}

#[derive(Clone, Debug)]
struct KeyValue {
    sharing: Box<str>,
    backend: Box<str>,
    holders: u64,
}

impl Keys {
    /// The id of a pair, if some service holds it.
    pub(crate) fn find(&self, sharing: &str, backend: &str) -> Option<KeyId> {
        if sharing.is_empty() {
            return Some(NO_SHARING);
        }
        self.by_value.get(sharing)?.get(backend).copied()
    }

    /// Takes a reference on a pair, interning it if new.
    pub(crate) fn acquire(&mut self, sharing: &str, backend: &str) -> KeyId {
        if sharing.is_empty() {
            return NO_SHARING;
        }
        if let Some(id) = self.find(sharing, backend) {
            self.value_mut(id).holders += 1;
            return id;
        }
        let value = KeyValue {
            sharing: Box::from(sharing),
            backend: Box::from(backend),
            holders: 1,
        };
        let id = match self.vacant.pop() {
            Some(id) => {
                self.values[(id - 1) as usize] = Some(value);
                id
            }
            None => {
                self.values.push(Some(value));
                KeyId::try_from(self.values.len()).expect("fewer than 2^32 sharing keys")
            }
        };
        self.by_value
            .entry(Box::from(sharing))
            .or_default()
            .insert(Box::from(backend), id);
        self.live += 1;
        id
    }

    /// Drops a reference taken by [`Keys::acquire`].
    pub(crate) fn release(&mut self, id: KeyId) {
        if id == NO_SHARING {
            return;
        }
        let value = self.value_mut(id);
        assert!(value.holders > 0, "sharing key {id} released too often");
        value.holders -= 1;
        if value.holders == 0 {
            let value = self.values[(id - 1) as usize]
                .take()
                .expect("checked above");
            if let Some(backends) = self.by_value.get_mut(&value.sharing) {
                backends.remove(&value.backend);
                if backends.is_empty() {
                    self.by_value.remove(&value.sharing);
                }
            }
            self.live -= 1;
            self.vacant.push(id);
        }
    }

    /// `(sharing, backend)` of an id; empty strings for [`NO_SHARING`].
    pub(crate) fn get(&self, id: KeyId) -> (&str, &str) {
        if id == NO_SHARING {
            return ("", "");
        }
        let value = self.values[(id - 1) as usize]
            .as_ref()
            .expect("key id points at a live key");
        (&value.sharing, &value.backend)
    }

    fn value_mut(&mut self, id: KeyId) -> &mut KeyValue {
        self.values[(id - 1) as usize]
            .as_mut()
            .expect("key id points at a live key")
    }

    /// How many services hold `id` (for invariant checks).
    pub(crate) fn holders(&self, id: KeyId) -> u64 {
        if id == NO_SHARING {
            return 0;
        }
        self.values[(id - 1) as usize]
            .as_ref()
            .map_or(0, |value| value.holders)
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: usize) -> Entry {
        Entry {
            name: format!("ns/svc-{index}").into_boxed_str(),
            pool: 0,
            key: NO_SHARING,
            ips: [None, None],
            ports: Box::new([]),
        }
    }

    #[test]
    fn slab_across_chunks() {
        let mut table = ServiceTable::default();
        let count = 3 * CHUNK + 5;
        let ids: Vec<ServiceId> = (0..count).map(|i| table.insert(entry(i))).collect();
        assert_eq!(table.len(), count);
        for (index, &id) in ids.iter().enumerate() {
            assert_eq!(table.find(&format!("ns/svc-{index}")), Some(id));
            assert_eq!(table.get(id).name.as_ref(), format!("ns/svc-{index}"));
        }
        for index in (0..count).step_by(3) {
            let removed = table.remove(ids[index]);
            assert_eq!(removed.name.as_ref(), format!("ns/svc-{index}"));
            assert_eq!(table.find(&removed.name), None);
        }
        // Vacant ids are reused, and every live entry is found by id and by name.
        let again = table.insert(entry(count));
        assert!(ids.contains(&again));
        let live: Vec<(ServiceId, String)> = table
            .iter()
            .map(|(id, entry)| (id, entry.name.to_string()))
            .collect();
        assert_eq!(live.len(), table.len());
        for (id, name) in live {
            assert_eq!(table.find(&name), Some(id));
        }
    }

    #[test]
    fn keys_are_reference_counted() {
        let mut keys = Keys::default();
        assert_eq!(keys.acquire("", "x"), NO_SHARING);
        let first = keys.acquire("k", "");
        let second = keys.acquire("k", "app=a");
        assert_ne!(first, second);
        assert_eq!(keys.acquire("k", ""), first);
        assert_eq!(keys.get(second), ("k", "app=a"));
        assert_eq!(keys.live(), 2);
        keys.release(first);
        assert_eq!(keys.find("k", ""), Some(first));
        keys.release(first);
        assert_eq!(keys.find("k", ""), None);
        assert_eq!(keys.live(), 1);
        keys.release(second);
        assert_eq!(keys.live(), 0);
    }
}
