//! The small state each node publishes (claims, leaving flag, protocol version) and the table of
//! everyone's latest state, shared between the core and the two hooks foca calls (codec, broadcasts).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use foca::{BroadcastHandler, Invalidates, State};

use crate::identity::{FocaId, MemberId, NodeName};
use crate::wire::{decode_item, DecodeError, Item};

/// What a node publishes about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeState {
    /// The service IPs this node announces now (used by the election for stickiness and to detect
    /// split brain).
    pub claims: BTreeSet<IpAddr>,
    /// The node is handing its IPs over before it stops.
    pub leaving: bool,
    /// The gossip protocol version the node speaks.
    pub protocol_version: u16,
}

/// One version of one member's state. Newer means: larger incarnation, then larger version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateRecord {
    pub(crate) member: MemberId,
    pub(crate) version: u64,
    pub(crate) state: NodeState,
}

impl StateRecord {
    fn order(&self) -> (u64, u64) {
        (self.member.incarnation, self.version)
    }
}

/// A member whose liveness or incarnation foca may just have changed (seen in a decoded datagram).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) id: MemberId,
    pub(crate) swim_incarnation: u16,
    pub(crate) state: State,
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Our own name: records about it from others are ignored.
    pub(crate) local: Option<NodeName>,
    pub(crate) states: BTreeMap<NodeName, StateRecord>,
    /// Names whose state changed since the core last looked.
    pub(crate) changed: BTreeSet<NodeName>,
    /// Lives that said goodbye (graceful leave).
    pub(crate) departed: BTreeSet<MemberId>,
    pub(crate) observed: Vec<Observed>,
    /// Bound on `observed` between two drains.
    pub(crate) observed_overflow: bool,
}

const OBSERVED_MAX: usize = 4096;
/// Most state records kept (one per node name).
pub(crate) const STATES_MAX: usize = 8192;
/// Most lives remembered as departed.
const DEPARTED_MAX: usize = 4096;

impl Shared {
    /// Stores `record` if it is newer than what we hold; returns whether it was.
    pub(crate) fn apply_record(&mut self, record: StateRecord, from_self: bool) -> bool {
        if record.member.name.is_placeholder() {
            return false;
        }
        if !from_self && self.local.as_ref() == Some(&record.member.name) {
            return false;
        }
        match self.states.get(&record.member.name) {
            Some(existing) if existing.order() >= record.order() => return false,
            None if self.states.len() >= STATES_MAX => return false,
            _ => {}
        }
        self.changed.insert(record.member.name.clone());
        self.states.insert(record.member.name.clone(), record);
        true
    }

    pub(crate) fn apply_goodbye(&mut self, id: MemberId) -> bool {
        if self.departed.len() >= DEPARTED_MAX {
            // Forget the oldest lives first (smallest incarnation, then name).
            let oldest = self
                .departed
                .iter()
                .min_by_key(|id| (id.incarnation, id.name.clone()))
                .cloned();
            if let Some(oldest) = oldest {
                self.departed.remove(&oldest);
            }
        }
        self.departed.insert(id)
    }
}

/// The shared table; a mutex because foca owns the codec and the broadcast handler.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedHandle(Arc<Mutex<Shared>>);

impl SharedHandle {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic elsewhere cannot leave the table half-written in a way that matters here.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn observe(&self, id: &MemberId, swim_incarnation: u16, state: State) {
        let mut shared = self.lock();
        if shared.observed.len() >= OBSERVED_MAX {
            shared.observed_overflow = true;
            return;
        }
        shared.observed.push(Observed {
            id: id.clone(),
            swim_incarnation,
            state,
        });
    }
}

/// Identifies a custom broadcast so foca can drop the stale ones it is still disseminating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BroadcastKey {
    State {
        name: NodeName,
        incarnation: u64,
        version: u64,
    },
    Goodbye(MemberId),
}

impl Invalidates for BroadcastKey {
    fn invalidates(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::State {
                    name,
                    incarnation,
                    version,
                },
                Self::State {
                    name: other_name,
                    incarnation: other_incarnation,
                    version: other_version,
                },
            ) => name == other_name && (incarnation, version) >= (other_incarnation, other_version),
            (Self::Goodbye(id), Self::Goodbye(other_id)) => id == other_id,
            _ => false,
        }
    }
}

/// foca's custom broadcast hook: decides whether an item is news worth passing on.
pub(crate) struct StateHandler {
    pub(crate) shared: SharedHandle,
}

impl BroadcastHandler<FocaId> for StateHandler {
    type Key = BroadcastKey;
    type Error = DecodeError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&FocaId>,
    ) -> Result<Option<BroadcastKey>, DecodeError> {
        let mut shared = self.shared.lock();
        match decode_item(data)? {
            Item::State(record) => {
                let key = BroadcastKey::State {
                    name: record.member.name.clone(),
                    incarnation: record.member.incarnation,
                    version: record.version,
                };
                Ok(shared.apply_record(record, sender.is_none()).then_some(key))
            }
            Item::Goodbye(id) => {
                let key = BroadcastKey::Goodbye(id.clone());
                Ok(shared.apply_goodbye(id).then_some(key))
            }
        }
    }
}
