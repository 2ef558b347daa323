//! The small state each node publishes (claims, leaving flag, protocol version) and the table of
//! everyone's latest state, shared between the core and the two hooks foca calls (codec, broadcasts).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use foca::{BroadcastHandler, Invalidates, State};

use crate::identity::{FocaId, MemberId, NodeName};
use crate::pages::{state_digest, StateDigest, INLINE_CLAIMS_MAX};
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

/// One complete version of one member's state. Newer means: larger incarnation, then larger
/// version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateRecord {
    pub(crate) member: MemberId,
    pub(crate) version: u64,
    pub(crate) state: NodeState,
    /// How the owner pages its claims (`None`: inline, at most [`INLINE_CLAIMS_MAX`]).
    pub(crate) paged: Option<PagedHeader>,
}

impl StateRecord {
    pub(crate) fn order(&self) -> (u64, u64) {
        (self.member.incarnation, self.version)
    }

    /// The record as gossiped: inline claims, or the summary of its pages.
    pub(crate) fn summary(&self) -> Summary {
        Summary {
            member: self.member.clone(),
            version: self.version,
            leaving: self.state.leaving,
            protocol_version: self.state.protocol_version,
            claims: match &self.paged {
                None => SummaryClaims::Inline(self.state.claims.clone()),
                Some(header) => SummaryClaims::Paged(header.clone()),
            },
        }
    }
}

/// The summary of a paged claim set (see [`crate::pages`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PagedHeader {
    pub(crate) total: u32,
    pub(crate) page_count: u16,
    pub(crate) digest: StateDigest,
}

impl PagedHeader {
    pub(crate) fn of(claims: &BTreeSet<IpAddr>, page_count: u16) -> Option<Self> {
        (claims.len() > INLINE_CLAIMS_MAX).then(|| Self {
            total: u32::try_from(claims.len()).unwrap_or(u32::MAX),
            page_count,
            digest: state_digest(claims),
        })
    }
}

/// The claims part of a gossiped state record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SummaryClaims {
    Inline(BTreeSet<IpAddr>),
    Paged(PagedHeader),
}

/// A state record as gossiped (broadcasts, sync pages): complete when inline, else a summary whose
/// pages are pulled from the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) member: MemberId,
    pub(crate) version: u64,
    pub(crate) leaving: bool,
    pub(crate) protocol_version: u16,
    pub(crate) claims: SummaryClaims,
}

impl Summary {
    pub(crate) fn order(&self) -> (u64, u64) {
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
    /// Paged summaries newer than the complete record we hold: their pages must be pulled.
    pub(crate) pending: BTreeMap<NodeName, Summary>,
    /// Names whose pending summary changed since the core last looked.
    pub(crate) pull_needed: BTreeSet<NodeName>,
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
        if self
            .pending
            .get(&record.member.name)
            .is_some_and(|pending| pending.order() <= record.order())
        {
            self.pending.remove(&record.member.name);
        }
        self.changed.insert(record.member.name.clone());
        self.states.insert(record.member.name.clone(), record);
        true
    }

    /// Applies a gossiped record from another member: an inline one at once, a paged one as
    /// pending (the core pulls its pages). Returns whether it was news.
    pub(crate) fn apply_summary(&mut self, summary: Summary) -> bool {
        let name = summary.member.name.clone();
        if name.is_placeholder() || self.local.as_ref() == Some(&name) {
            return false;
        }
        let order = summary.order();
        if self.states.get(&name).is_some_and(|r| r.order() >= order)
            || self.pending.get(&name).is_some_and(|s| s.order() >= order)
        {
            return false;
        }
        match summary.claims {
            SummaryClaims::Inline(claims) => self.apply_record(
                StateRecord {
                    member: summary.member,
                    version: summary.version,
                    state: NodeState {
                        claims,
                        leaving: summary.leaving,
                        protocol_version: summary.protocol_version,
                    },
                    paged: None,
                },
                false,
            ),
            SummaryClaims::Paged(_) => {
                if !self.pending.contains_key(&name) && self.pending.len() >= STATES_MAX {
                    return false;
                }
                self.pending.insert(name.clone(), summary);
                self.pull_needed.insert(name);
                true
            }
        }
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
            Item::State(summary) => {
                let key = BroadcastKey::State {
                    name: summary.member.name.clone(),
                    incarnation: summary.member.incarnation,
                    version: summary.version,
                };
                if sender.is_none() {
                    // Our own record: the core stored the complete version before broadcasting.
                    return Ok(Some(key));
                }
                Ok(shared.apply_summary(summary).then_some(key))
            }
            Item::Goodbye(id) => {
                let key = BroadcastKey::Goodbye(id.clone());
                Ok(shared.apply_goodbye(id).then_some(key))
            }
        }
    }
}
