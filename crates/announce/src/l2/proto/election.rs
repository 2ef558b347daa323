//! Who announces a service's IPs in layer 2 mode: a pure, sticky election.
//!
//! Every node runs [`elect`] on the same inputs and gets the same owner, whatever order the
//! inputs come in (candidates and claims are put in `BTreeMap`s/`BTreeSet`s first).
//!
//! * **Fresh election** (no usable claim): MetalLB's `sortL2Candidates` order: preference score
//!   descending, then `sha256(node + "#" + first IP)` ascending, compared as bytes.
//! * **Sticky** (`decisions.md`): a node that claims one of the service's IPs keeps it while it
//!   is alive and eligible, unless a node with a strictly higher preference is alive and
//!   eligible. So adding a node never moves an IP unless the new node has a higher preference,
//!   and removing a node moves only the IPs it owned.
//! * **Two claims** (split brain, or a handover in flight): among the claimants with the top
//!   preference, the one first in the election order wins; the result says who lost so the
//!   caller can count it.
//!
//! Only the *first* IP enters the hash, so the order of `service_ips` matters (it is the order of
//! the Service's ingress list): dual-stack IPs and services sharing an IP land on one node.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ring::digest;
use serde::{Deserialize, Serialize};

/// A Kubernetes node name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeName(pub String);

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&str> for NodeName {
    fn from(name: &str) -> Self {
        Self(name.to_owned())
    }
}

/// A node that could announce the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The node.
    pub node: NodeName,
    /// Alive according to gossip.
    pub alive: bool,
    /// Eligible: covered by an L2Advertisement's node selectors, not NetworkUnavailable, not
    /// labelled exclude-from-external-load-balancers, has a local endpoint for
    /// `externalTrafficPolicy: Local`.
    pub eligible: bool,
    /// Sum of the `preferredNodeSelectors` weights that match the node.
    pub preference: u64,
}

/// A node's published claim: "I announce `ip`".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Claim {
    /// The claiming node.
    pub node: NodeName,
    /// The IP it announces.
    pub ip: IpAddr,
}

/// How the owner was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// No usable node (or no IP): nobody announces.
    NoOwner,
    /// No usable claim: MetalLB's order.
    Fresh,
    /// The only usable top-preference claimant keeps the IP.
    Sticky,
    /// A claimant exists but a node with a strictly higher preference takes the IP.
    Preempted {
        /// The claimants that lose the IP.
        previous: Vec<NodeName>,
    },
    /// Several usable nodes claim the IP; the election order picked one.
    ConflictResolved {
        /// The claimants that must withdraw.
        losers: Vec<NodeName>,
    },
}

/// The result of an election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Election {
    /// The node that announces, if any.
    pub owner: Option<NodeName>,
    /// Why.
    pub decision: Decision,
}

/// `sha256(node + "#" + ip)`, MetalLB's tie breaker.
pub fn election_hash(node: &NodeName, ip: IpAddr) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(node.0.as_bytes());
    context.update(b"#");
    context.update(ip.to_string().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// Total election order: preference descending, hash ascending, name last (only if two names
/// had the same hash).
type OrderKey<'a> = (Reverse<u64>, [u8; 32], &'a NodeName);

/// Elects the owner of a service with IPs `service_ips` (ingress order).
///
/// Duplicate candidate entries for one node are merged conservatively (alive and eligible only
/// if every entry says so, the lowest preference) so that the result cannot depend on order.
pub fn elect(service_ips: &[IpAddr], candidates: &[Candidate], claims: &[Claim]) -> Election {
    let no_owner = Election {
        owner: None,
        decision: Decision::NoOwner,
    };
    let Some(&first_ip) = service_ips.first() else {
        return no_owner;
    };
    let mut merged: BTreeMap<&NodeName, (bool, u64)> = BTreeMap::new();
    for candidate in candidates {
        let usable = candidate.alive && candidate.eligible;
        merged
            .entry(&candidate.node)
            .and_modify(|(was_usable, preference)| {
                *was_usable &= usable;
                *preference = (*preference).min(candidate.preference);
            })
            .or_insert((usable, candidate.preference));
    }
    let usable: BTreeMap<&NodeName, u64> = merged
        .into_iter()
        .filter(|(_, (usable, _))| *usable)
        .map(|(node, (_, preference))| (node, preference))
        .collect();
    let mut ordered: Vec<OrderKey<'_>> = usable
        .iter()
        .map(|(node, preference)| (Reverse(*preference), election_hash(node, first_ip), *node))
        .collect();
    ordered.sort();
    let Some(&(Reverse(top_preference), _, first)) = ordered.first() else {
        return no_owner;
    };
    let ips: BTreeSet<&IpAddr> = service_ips.iter().collect();
    let claimants: BTreeSet<&NodeName> = claims
        .iter()
        .filter(|claim| ips.contains(&claim.ip))
        .map(|claim| &claim.node)
        .collect();
    let usable_claimants: Vec<&NodeName> = ordered
        .iter()
        .map(|(_, _, node)| *node)
        .filter(|node| claimants.contains(node))
        .collect();
    let top_claimant = ordered
        .iter()
        .find(|(Reverse(preference), _, node)| {
            *preference == top_preference && claimants.contains(node)
        })
        .map(|(_, _, node)| *node);
    match top_claimant {
        Some(owner) => {
            let losers: Vec<NodeName> = usable_claimants
                .iter()
                .filter(|node| **node != owner)
                .map(|node| (*node).clone())
                .collect();
            let decision = if losers.is_empty() {
                Decision::Sticky
            } else {
                Decision::ConflictResolved { losers }
            };
            Election {
                owner: Some(owner.clone()),
                decision,
            }
        }
        None if usable_claimants.is_empty() => Election {
            owner: Some(first.clone()),
            decision: Decision::Fresh,
        },
        None => Election {
            owner: Some(first.clone()),
            decision: Decision::Preempted {
                previous: usable_claimants.into_iter().cloned().collect(),
            },
        },
    }
}
