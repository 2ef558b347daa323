//! The controllers that run inside the stand-in (reference §1): namespace deletion, CRD
//! cleanup, and ownerReference garbage collection. Each pass is one synchronous function over
//! the locked state; a task calls it after writes and on a timer.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::{delete_locked, rebuild_registry};
use crate::meta::{finalizers, meta_str, metadata_mut};
use crate::registry::{ResourceInfo, StorageKey, Strategy};
use crate::store::State;

/// Upper bound on objects removed per pass, so one pass never holds the lock for long.
const DELETIONS_PER_PASS_MAX: usize = 2_000;

/// Runs every controller once. Returns whether anything changed.
pub(crate) fn run_once(state: &mut State) -> bool {
    let before = state.rv;
    finalize_namespaces(state);
    finalize_crds(state);
    purge_unserved(state);
    if state.deletions_since_gc {
        state.deletions_since_gc = false;
        collect_garbage(state);
    }
    state.rv != before
}

fn info_for(state: &State, storage: &StorageKey) -> Option<Arc<ResourceInfo>> {
    let infos = state.registry.by_storage(storage);
    // Prefer the storage form's own view (core events, the CRD's storage version).
    infos
        .iter()
        .find(|info| {
            info.strategy != Strategy::EventsV1
                && info
                    .custom
                    .as_ref()
                    .is_none_or(|c| c.storage_version == info.version)
        })
        .cloned()
        .or_else(|| infos.first().cloned())
}

fn finalize_namespaces(state: &mut State) {
    let key: StorageKey = (String::new(), "namespaces".into());
    let terminating: Vec<String> = state
        .entries(&key, None)
        .filter(|(_, ns)| ns.deleting)
        .map(|((_, name), _)| name.clone())
        .collect();
    let mut budget = DELETIONS_PER_PASS_MAX;
    for namespace in terminating {
        let mut remaining = 0;
        let storages: Vec<StorageKey> = state.objects.keys().cloned().collect();
        for storage in storages {
            let Some(info) = info_for(state, &storage) else {
                continue;
            };
            if !info.namespaced {
                continue;
            }
            let names: Vec<String> = state
                .entries(&storage, Some(&namespace))
                .map(|((_, name), _)| name.clone())
                .collect();
            for name in names {
                remaining += 1;
                if budget == 0 {
                    continue;
                }
                budget -= 1;
                let _ = delete_locked(
                    state,
                    &info,
                    &namespace,
                    &name,
                    &json!({"propagationPolicy": "Background"}),
                    false,
                );
                if state.get(&storage, &namespace, &name).is_none() {
                    remaining -= 1;
                }
            }
        }
        if remaining == 0 {
            state.remove(&key, "", &namespace);
        }
    }
}

fn finalize_crds(state: &mut State) {
    let key: StorageKey = (
        "apiextensions.k8s.io".into(),
        "customresourcedefinitions".into(),
    );
    let deleting: Vec<Value> = state
        .list(&key, None)
        .into_iter()
        .filter(|crd| crd.deleting)
        .map(|crd| crd.value())
        .collect();
    for crd in deleting {
        let group = crd
            .get("spec")
            .and_then(|s| s.get("group"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plural = crd
            .get("spec")
            .and_then(|s| s.get("names"))
            .and_then(|n| n.get("plural"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let storage: StorageKey = (group.to_string(), plural.to_string());
        let mut remaining = 0;
        if let Some(info) = info_for(state, &storage) {
            let keys: Vec<(String, String)> = state
                .entries(&storage, None)
                .map(|(key, _)| key.clone())
                .collect();
            for (namespace, name) in keys {
                let _ = delete_locked(state, &info, &namespace, &name, &json!({}), false);
                if state.get(&storage, &namespace, &name).is_some() {
                    remaining += 1;
                }
            }
        }
        if remaining == 0 {
            let crd_name = meta_str(&crd, "name").unwrap_or_default().to_string();
            let kept: Vec<String> = finalizers(&crd)
                .into_iter()
                .filter(|f| f != "customresourcecleanup.apiextensions.k8s.io")
                .collect();
            if kept.is_empty() {
                state.remove(&key, "", &crd_name);
            } else {
                let mut updated = crd.clone();
                metadata_mut(&mut updated).insert("finalizers".into(), json!(kept));
                state.put(&key, updated);
            }
            rebuild_registry(state);
        }
    }
}

/// Objects whose kind is no longer served (their CRD was removed with its finalizer cleared by
/// hand) are dropped without events.
fn purge_unserved(state: &mut State) {
    let served = state.registry.storage_keys();
    state.objects.retain(|storage, _| served.contains(storage));
}

/// Deletes objects all of whose owners are gone (Background propagation).
///
/// It runs after every burst of deletes with the state locked, so it looks up only the uids
/// that dependents name: one pass over the object headers to find dependents (usually few),
/// one to see which of their owners still exist; no set of every uid is built.
fn collect_garbage(state: &mut State) {
    let mut dependents = Vec::new();
    let mut wanted: BTreeMap<&str, bool> = BTreeMap::new();
    for (storage, objects) in &state.objects {
        for ((namespace, name), object) in objects {
            if object.owner_uids.is_empty() || object.deleting {
                continue;
            }
            for uid in &*object.owner_uids {
                wanted.insert(uid, false);
            }
            dependents.push((storage, namespace, name, object));
        }
    }
    if dependents.is_empty() {
        return;
    }
    for object in state.objects.values().flat_map(BTreeMap::values) {
        if let Some(found) = wanted.get_mut(&*object.uid) {
            *found = true;
        }
    }
    // An owner reference without a uid has "" here, which no object has: gone.
    let orphans: Vec<(StorageKey, String, String)> = dependents
        .into_iter()
        .filter(|(_, _, _, object)| {
            object
                .owner_uids
                .iter()
                .all(|uid| uid.is_empty() || !wanted.get(&**uid).copied().unwrap_or(false))
        })
        .map(|(storage, namespace, name, _)| (storage.clone(), namespace.clone(), name.clone()))
        .collect();
    for (storage, namespace, name) in orphans.into_iter().take(DELETIONS_PER_PASS_MAX) {
        if let Some(info) = info_for(state, &storage) {
            let _ = delete_locked(
                state,
                &info,
                &namespace,
                &name,
                &json!({"propagationPolicy": "Background"}),
                false,
            );
        }
    }
}
