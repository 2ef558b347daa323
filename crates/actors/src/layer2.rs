//! The layer 2 announcer core: from a [`Snapshot`], the gossip view and this node's state, the
//! IPs to announce (per interface selection), the claims to publish and the status to write.
//! Pure: `reconcile` returns actions; the `Layer2` actor runs them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ironlb_announce::l2::proto::election::{election_hash, NodeName};
use ironlb_announce::l2::proto::interfaces::InterfaceSelection;

use crate::cluster::Snapshot;
use crate::decide::{self, Inputs, L2Outcome, MemberView, Members, Options, WithdrawReason};
use crate::model::{Endpoints, ServiceInfo, ServiceKey};
use crate::status_changes::push_status_changes;

/// The status this node wants for one Service it owns (`ServiceL2Status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Status {
    /// The interfaces, when the advertisements restrict them (empty otherwise, as MetalLB).
    pub interfaces: Vec<String>,
}

/// What the actor must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start (or re-scope) announcing `ip`; a new IP starts a gratuitous burst.
    Announce {
        /// The IP.
        ip: IpAddr,
        /// Interfaces.
        selection: InterfaceSelection,
    },
    /// Stop announcing `ip`.
    Withdraw {
        /// The IP.
        ip: IpAddr,
    },
    /// Publish these claims in gossip.
    Claims(BTreeSet<IpAddr>),
    /// Set (Some) or delete (None) this node's `ServiceL2Status` for a Service.
    Status(ServiceKey, Option<L2Status>),
    /// This node became the owner: Event `nodeAssigned`.
    Assigned(ServiceKey, Vec<IpAddr>),
    /// This node gave a Service up to `winner`, which owns it on the other side of a gossip
    /// partition (a split brain resolved through the API).
    PartitionYield {
        /// The Service.
        service: ServiceKey,
        /// The node that keeps it.
        winner: String,
    },
}

/// A speaker Lease renewed less than this long ago means its speaker is alive.
pub const LEASE_FRESH_MAX_MICROS: i64 = 2_500_000;

/// The partition rule (`decisions.md`: two claims on one IP are resolved deterministically;
/// gossip cannot see across a partition, the API can). This node announces `service`; another
/// node that holds a `ServiceL2Status` for it, is not active in this node's gossip view, but
/// renewed its Lease within [`LEASE_FRESH_MAX_MICROS`] and after this node last saw it in
/// gossip (`inactive_since`, wall clock) is alive on the other side of a partition. The side whose gossip sees more alive members keeps the IP; on a tie, the
/// election order of the first IP. Returns the node this one yields to, if any. A dead node
/// renews nothing after it left this node's view, so a survivor never yields to it (not even
/// while its last renewal is still fresh); without the API, Leases go stale and the rule is
/// inactive. The two sides of a partition see disjoint sets of members: when the other holder's
/// alive count and this node's add up to more speakers than are known (gossip view and Leases),
/// its side still sees some of this one (it is restarting with its earlier life's status, or
/// resuming from a stall, not cut off), and gossip, not this rule, decides.
pub fn partition_winner(
    me: &str,
    service: &ServiceInfo,
    members: &BTreeMap<String, MemberView>,
    snapshot: &Snapshot,
    inactive_since: &BTreeMap<String, i64>,
    now_unix_micros: i64,
) -> Option<String> {
    let owners = snapshot.l2_owners.get(&service.key)?;
    let first_ip = *service.ips.first()?;
    let alive = |members: &BTreeMap<String, MemberView>| {
        u32::try_from(members.values().filter(|m| m.active).count()).unwrap_or(u32::MAX)
    };
    let rank = |node: &str, alive_members: u32| {
        (
            Reverse(alive_members),
            election_hash(&NodeName(node.to_owned()), first_ip),
        )
    };
    let my_alive = alive(members);
    let mine = rank(me, my_alive);
    // Counted only for a candidate (rare): the speakers known from gossip or from Leases.
    let disjoint = |theirs: u32| {
        let speakers = members.len()
            + snapshot
                .speaker_leases
                .keys()
                .filter(|node| !members.contains_key(*node))
                .count();
        usize::try_from(theirs.saturating_add(my_alive)).is_ok_and(|sum| sum <= speakers)
    };
    owners
        .iter()
        .filter(|node| node.as_str() != me)
        .filter(|node| !members.get(*node).is_some_and(|m| m.active))
        .filter_map(|node| {
            let lease = snapshot.speaker_leases.get(node)?;
            let since = *inactive_since.get(node)?;
            let age = now_unix_micros.saturating_sub(lease.renewed_unix_micros);
            (age.abs() <= LEASE_FRESH_MAX_MICROS
                && lease.renewed_unix_micros > since
                && disjoint(lease.alive_members))
            .then(|| (rank(node, lease.alive_members), node))
        })
        .filter(|(theirs, _)| *theirs < mine)
        .min()
        .map(|(_, node)| node.clone())
}

/// Per-Service result kept for metrics and `ironlb status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    /// The Service's IPs.
    pub ips: Vec<IpAddr>,
    /// Announced by this node.
    pub announced: bool,
    /// Why not, otherwise.
    pub reason: Option<WithdrawReason>,
    /// The owner this node computed, when it is another node.
    pub owner: Option<String>,
}

/// The core.
#[derive(Debug)]
pub struct Layer2Core {
    me: String,
    /// When (wall clock, µs) each node not active in gossip was first seen so (partition rule).
    inactive_since: BTreeMap<String, i64>,
    options: Options,
    announced: BTreeMap<IpAddr, InterfaceSelection>,
    status: BTreeMap<ServiceKey, L2Status>,
    services: BTreeMap<ServiceKey, ServiceState>,
}

impl Layer2Core {
    /// The core of node `me`.
    pub fn new(me: impl Into<String>, options: Options) -> Self {
        Self {
            me: me.into(),
            inactive_since: BTreeMap::new(),
            options,
            announced: BTreeMap::new(),
            status: BTreeMap::new(),
            services: BTreeMap::new(),
        }
    }

    /// The IPs announced now.
    pub fn announced(&self) -> &BTreeMap<IpAddr, InterfaceSelection> {
        &self.announced
    }

    /// The per-Service results of the last reconcile.
    pub fn services(&self) -> &BTreeMap<ServiceKey, ServiceState> {
        &self.services
    }

    /// [`Self::reconcile_at`] without a wall clock: the partition rule is off.
    pub fn reconcile(
        &mut self,
        snapshot: &Snapshot,
        members: &Members,
        leaving: bool,
    ) -> Vec<Action> {
        self.reconcile_at(snapshot, members, leaving, None)
    }

    /// Recomputes everything. `leaving`: this node hands over (it keeps what it announces until
    /// [`Self::handover_done`], and takes nothing new).
    /// `now_unix_micros`: the wall clock, for the freshness of the speakers' Leases
    /// ([`partition_winner`]); `None` turns the partition rule off.
    pub fn reconcile_at(
        &mut self,
        snapshot: &Snapshot,
        members: &Members,
        leaving: bool,
        now_unix_micros: Option<i64>,
    ) -> Vec<Action> {
        let Some(config) = snapshot.config.as_deref() else {
            return Vec::new();
        };
        if let (Some(view), Some(now)) = (members.as_ref(), now_unix_micros) {
            self.note_inactive(view, snapshot, now);
        }
        let inputs = Inputs {
            me: &self.me,
            config,
            nodes: &snapshot.nodes,
            options: &self.options,
        };
        // Gossip's member list leaves this node out, so its own claims (what it announces now)
        // are added here: without them the owner would run a fresh election for its own IPs
        // and give them up to any joining node that wins the hash order (not sticky).
        let members: Members = members.as_ref().map(|members| {
            let mut members = members.clone();
            let me = members.entry(self.me.clone()).or_default();
            me.active = true;
            me.claims = self.announced.keys().copied().collect();
            members
        });
        let members = &members;
        let empty = Endpoints::default();
        let mut wanted: BTreeMap<IpAddr, InterfaceSelection> = BTreeMap::new();
        let mut status: BTreeMap<ServiceKey, L2Status> = BTreeMap::new();
        let mut services = BTreeMap::new();
        let mut yields = Vec::new();
        for (key, service) in &snapshot.services {
            let endpoints = snapshot.endpoints.get(key).unwrap_or(&empty);
            let recovered = self.claims_from_status(service, members, snapshot);
            let members = recovered.as_ref().unwrap_or(members);
            let mut outcome = decide::layer2(&inputs, service, endpoints, members, false);
            if let (L2Outcome::Announce { .. }, Some(view), Some(now)) =
                (&outcome, members.as_ref(), now_unix_micros)
            {
                if let Some(winner) =
                    partition_winner(&self.me, service, view, snapshot, &self.inactive_since, now)
                {
                    let already = self
                        .services
                        .get(key)
                        .is_some_and(|s| s.reason == Some(WithdrawReason::OwnerInOtherPartition));
                    if !already {
                        yields.push(Action::PartitionYield {
                            service: key.clone(),
                            winner: winner.clone(),
                        });
                    }
                    outcome = L2Outcome::Withdraw {
                        reason: WithdrawReason::OwnerInOtherPartition,
                        owner: Some(winner),
                    };
                }
            }
            let state = match outcome {
                L2Outcome::Announce { interfaces, .. } => {
                    for ip in &service.ips {
                        let merged = match (wanted.remove(ip), &interfaces) {
                            (Some(InterfaceSelection::All), _) | (_, InterfaceSelection::All) => {
                                InterfaceSelection::All
                            }
                            (
                                Some(InterfaceSelection::Only(mut a)),
                                InterfaceSelection::Only(b),
                            ) => {
                                a.extend(b.iter().cloned());
                                InterfaceSelection::Only(a)
                            }
                            (None, selection) => selection.clone(),
                        };
                        wanted.insert(*ip, merged);
                    }
                    let names = match &interfaces {
                        InterfaceSelection::All => Vec::new(),
                        InterfaceSelection::Only(names) => names.iter().cloned().collect(),
                    };
                    status.insert(key.clone(), L2Status { interfaces: names });
                    ServiceState {
                        ips: service.ips.clone(),
                        announced: true,
                        reason: None,
                        owner: None,
                    }
                }
                L2Outcome::Withdraw { reason, owner } => ServiceState {
                    ips: service.ips.clone(),
                    announced: false,
                    reason: Some(reason),
                    owner,
                },
            };
            services.insert(key.clone(), state);
        }
        if leaving {
            // Hand over: keep what we announce (successors take it), take nothing new.
            wanted.retain(|ip, _| self.announced.contains_key(ip));
            status.retain(|key, _| self.status.contains_key(key));
        }
        let mut actions = yields;
        for ip in self.announced.keys() {
            if !wanted.contains_key(ip) {
                actions.push(Action::Withdraw { ip: *ip });
            }
        }
        for (ip, selection) in &wanted {
            if self.announced.get(ip) != Some(selection) {
                actions.push(Action::Announce {
                    ip: *ip,
                    selection: selection.clone(),
                });
            }
        }
        let claims_changed = self.announced.keys().ne(wanted.keys());
        if claims_changed {
            actions.push(Action::Claims(wanted.keys().copied().collect()));
        }
        push_status_changes(
            &self.status,
            &status,
            |key| {
                snapshot
                    .services
                    .get(key)
                    .map(|s| s.ips.clone())
                    .unwrap_or_default()
            },
            Action::Assigned,
            Action::Status,
            &mut actions,
        );
        self.announced = wanted;
        self.status = status;
        self.services = services;
        actions
    }

    /// Records when each node that holds a `ServiceL2Status` or is known to gossip was first
    /// seen inactive; forgets nodes seen active again.
    fn note_inactive(
        &mut self,
        view: &BTreeMap<String, MemberView>,
        snapshot: &Snapshot,
        now: i64,
    ) {
        let holders = snapshot.l2_owners.values().flatten();
        let known: BTreeSet<&String> = view.keys().chain(holders).collect();
        self.inactive_since
            .retain(|node, _| known.contains(node) && !view.get(node).is_some_and(|m| m.active));
        for node in known {
            if node != &self.me && !view.get(node).is_some_and(|m| m.active) {
                self.inactive_since.entry(node.clone()).or_insert(now);
            }
        }
    }

    /// Claims the API knows and gossip does not (yet): when this node does not announce
    /// `service` and no member's gossip claims cover its IPs, another node that holds its
    /// `ServiceL2Status` and is active (not leaving) in gossip is taken to claim them. A node that
    /// starts while the others' gossip state has not reached it therefore keeps the current
    /// owner (sticky) instead of electing afresh and taking the IP back. Returns the view with
    /// those claims added, or `None` when nothing is added.
    fn claims_from_status(
        &self,
        service: &ServiceInfo,
        members: &Members,
        snapshot: &Snapshot,
    ) -> Option<Members> {
        let view = members.as_ref()?;
        let holders = snapshot.l2_owners.get(&service.key)?;
        if service.ips.iter().any(|ip| self.announced.contains_key(ip)) {
            return None;
        }
        let claimed = view
            .values()
            .any(|m| m.active && service.ips.iter().any(|ip| m.claims.contains(ip)));
        if claimed {
            return None;
        }
        let mut recovered = view.clone();
        let mut added = false;
        for holder in holders.iter().filter(|h| h.as_str() != self.me) {
            if let Some(member) = recovered.get_mut(holder) {
                if member.active && !member.leaving {
                    member.claims.extend(service.ips.iter().copied());
                    added = true;
                }
            }
        }
        added.then_some(Some(recovered))
    }

    /// The Services this node owns whose advertisements name interfaces of which none is up
    /// here (MetalLB's `announceFailed`), with their first IP. `up`: the interfaces the
    /// responders run on.
    pub fn interfaces_missing(&self, up: &BTreeSet<String>) -> BTreeMap<ServiceKey, IpAddr> {
        self.status
            .iter()
            .filter(|(_, status)| {
                !status.interfaces.is_empty()
                    && status.interfaces.iter().all(|name| !up.contains(name))
            })
            .filter_map(|(key, _)| {
                let ip = self.services.get(key)?.ips.first()?;
                Some((key.clone(), *ip))
            })
            .collect()
    }

    /// During a handover: true once every IP this node announces is claimed by another active
    /// member (the successors have taken over), or there is nothing left.
    pub fn handover_done(&self, members: &Members) -> bool {
        let Some(members) = members else {
            return true;
        };
        self.announced.keys().all(|ip| {
            members
                .iter()
                .any(|(name, m)| name != &self.me && m.active && m.claims.contains(ip))
        })
    }

    /// Withdraws everything and deletes this node's status objects (end of a handover, or
    /// shutdown).
    pub fn withdraw_all(&mut self) -> Vec<Action> {
        let mut actions: Vec<Action> = self
            .announced
            .keys()
            .map(|ip| Action::Withdraw { ip: *ip })
            .collect();
        actions.push(Action::Claims(BTreeSet::new()));
        // This node no longer owns anything: its ServiceL2Status objects go too.
        actions.extend(
            self.status
                .keys()
                .map(|key| Action::Status(key.clone(), None)),
        );
        self.announced.clear();
        self.status.clear();
        actions
    }
}
