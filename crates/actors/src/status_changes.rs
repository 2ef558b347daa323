//! The status actions both announcer cores derive from their per-Service status maps.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::ServiceKey;

/// Appends to `actions` what turns the status objects wanted last time (`old`) into those
/// wanted now (`new`): `status(key, None)` for every Service that lost its status, then, in
/// key order, `status(key, Some(entry))` for every new or changed one, preceded by
/// `assigned(key, ips_of(key))` (the `nodeAssigned` Event) when the Service had none.
pub(crate) fn push_status_changes<S, A>(
    old: &BTreeMap<ServiceKey, S>,
    new: &BTreeMap<ServiceKey, S>,
    ips_of: impl Fn(&ServiceKey) -> Vec<IpAddr>,
    assigned: impl Fn(ServiceKey, Vec<IpAddr>) -> A,
    status: impl Fn(ServiceKey, Option<S>) -> A,
    actions: &mut Vec<A>,
) where
    S: Clone + PartialEq,
{
    for key in old.keys() {
        if !new.contains_key(key) {
            actions.push(status(key.clone(), None));
        }
    }
    for (key, entry) in new {
        if old.get(key) != Some(entry) {
            if !old.contains_key(key) {
                actions.push(assigned(key.clone(), ips_of(key)));
            }
            actions.push(status(key.clone(), Some(entry.clone())));
        }
    }
}
