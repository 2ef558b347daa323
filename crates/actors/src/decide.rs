//! Pure decisions: for one Service with an IP, does this node announce it, per protocol, and if
//! not, why (MetalLB's withdraw reasons). No IO, no clock; every input is a value.
//!
//! * [`layer2`] follows `metallb.md` §4.1 with `decisions.md`'s sticky election (the claims
//!   published in gossip go into `ironlb_announce::l2::proto::election::elect`).
//! * [`bgp`] follows §6.1: every node covered by a matching BGPAdvertisement announces.
//! * Both apply §2.5 (serving endpoints, `externalTrafficPolicy`, NetworkUnavailable, the
//!   exclude label) and §2.3 (`--lb-class`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use ironlb_alloc::PoolName;
use ironlb_announce::l2::proto::election::{self, Candidate, Claim, Decision, NodeName};
use ironlb_announce::l2::proto::interfaces::InterfaceSelection;
use ironlb_api::config::model::{BgpAdvertisement, BgpCommunity, L2Advertisement, Peer};
use ironlb_api::config::Config;
use ironlb_labels::{Labels, Selector};

use crate::model::{Endpoints, NodeInfo, Nodes, ServiceInfo};

/// Speaker flags that change decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `--lb-class`: handle only Services of this class (none: only Services without a class).
    pub lb_class: Option<String>,
    /// `--ignore-exclude-lb`.
    pub ignore_exclude_lb: bool,
}

/// Why a node does not announce a Service (MetalLB's reasons, plus ironlb's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum WithdrawReason {
    /// Another node owns it (L2), or no advertisement covers this node (BGP).
    NotOwner,
    /// No endpoint can serve, anywhere.
    NoEndpoints,
    /// `externalTrafficPolicy: Local` and no endpoint can serve on this node.
    NoLocalEndpoints,
    /// No advertisement for the pool selects this node and Service.
    NoMatchingAdvertisement,
    /// `allow-shared-ip` together with an advertisement that has `serviceSelectors`.
    SharedIpWithServiceSelector,
    /// Two BGPAdvertisements give one prefix different LOCAL_PREFs.
    ConflictingAdvertisements,
    /// This node has `NetworkUnavailable=True`.
    NodeNetworkUnavailable,
    /// This node carries the exclude-from-external-load-balancers label.
    NodeLabeledExcludeBalancers,
    /// The Service has no IP yet.
    NoIp,
    /// No pool contains the Service's IPs.
    NoPool,
    /// `spec.loadBalancerClass` is not ours.
    OtherLoadBalancerClass,
    /// This speaker does not know its own Node object (yet).
    UnknownNode,
    /// This node is handing its IPs over (planned shutdown).
    Leaving,
    /// Another node also owns it, on the other side of a gossip partition, and wins the
    /// partition rule (more alive members, then the election order; `layer2`).
    OwnerInOtherPartition,
}

impl WithdrawReason {
    /// MetalLB's spelling (logs, `ironlb status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotOwner => "notOwner",
            Self::NoEndpoints => "noEndpoints",
            Self::NoLocalEndpoints => "noLocalEndpoints",
            Self::NoMatchingAdvertisement => "noMatchingAdvertisement",
            Self::SharedIpWithServiceSelector => "sharedIPWithServiceSelector",
            Self::ConflictingAdvertisements => "conflictingAdvertisements",
            Self::NodeNetworkUnavailable => "nodeNetworkUnavailable",
            Self::NodeLabeledExcludeBalancers => "nodeLabeledExcludeBalancers",
            Self::NoIp => "noIPAllocated",
            Self::NoPool => "noPool",
            Self::OtherLoadBalancerClass => "otherLoadBalancerClass",
            Self::UnknownNode => "unknownNode",
            Self::Leaving => "leaving",
            Self::OwnerInOtherPartition => "ownerInOtherPartition",
        }
    }
}

impl fmt::Display for WithdrawReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What gossip says about one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberView {
    /// Alive or suspect (MetalLB counts suspect members too).
    pub active: bool,
    /// Handing its IPs over before it stops.
    pub leaving: bool,
    /// The IPs it announces now.
    pub claims: BTreeSet<IpAddr>,
}

/// The gossip view: `None` means membership is disabled, and every known Node is assumed to run
/// a speaker (MetalLB's fallback).
pub type Members = Option<BTreeMap<String, MemberView>>;

/// Everything a decision reads.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// This node's name.
    pub me: &'a str,
    /// The validated configuration.
    pub config: &'a Config,
    /// Every known Node.
    pub nodes: &'a Nodes,
    /// Flags.
    pub options: &'a Options,
}

/// The layer 2 outcome for one Service on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L2Outcome {
    /// Announce on these interfaces.
    Announce {
        /// The union of the interfaces of the advertisements covering this node.
        interfaces: InterfaceSelection,
        /// How the election went.
        decision: Decision,
    },
    /// Do not announce.
    Withdraw {
        /// Why.
        reason: WithdrawReason,
        /// The owner, when another node won the election.
        owner: Option<String>,
    },
}

impl L2Outcome {
    fn withdraw(reason: WithdrawReason) -> Self {
        Self::Withdraw {
            reason,
            owner: None,
        }
    }
}

/// The checks both protocols share: class, IP, pool, this node's own state, endpoints.
fn common<'a>(
    inputs: &Inputs<'a>,
    service: &ServiceInfo,
    endpoints: &Endpoints,
) -> Result<(&'a PoolName, &'a NodeInfo), WithdrawReason> {
    if service.load_balancer_class != inputs.options.lb_class {
        return Err(WithdrawReason::OtherLoadBalancerClass);
    }
    if service.ips.is_empty() {
        return Err(WithdrawReason::NoIp);
    }
    let pool = pool_for(inputs.config, &service.ips).ok_or(WithdrawReason::NoPool)?;
    let node = inputs
        .nodes
        .get(inputs.me)
        .ok_or(WithdrawReason::UnknownNode)?;
    if node.network_unavailable {
        return Err(WithdrawReason::NodeNetworkUnavailable);
    }
    if node.excluded() && !inputs.options.ignore_exclude_lb {
        return Err(WithdrawReason::NodeLabeledExcludeBalancers);
    }
    if !endpoints.serving_anywhere {
        return Err(WithdrawReason::NoEndpoints);
    }
    Ok((pool, node))
}

/// The pool that contains every IP of the Service (MetalLB's `poolFor`).
pub fn pool_for<'a>(config: &'a Config, ips: &[IpAddr]) -> Option<&'a PoolName> {
    config
        .pools()
        .iter()
        .find(|(_, pool)| ips.iter().all(|ip| pool.contains(*ip)))
        .map(|(name, _)| name)
}

/// The L2Advertisements of `pool` whose `serviceSelectors` match (MetalLB's `adsForService`):
/// not filtered by node, so that every speaker computes the same candidates.
fn l2_ads_for_service<'a>(
    config: &'a Config,
    pool: &'a PoolName,
    service: &ServiceInfo,
) -> Vec<&'a L2Advertisement> {
    config
        .l2_advertisements_for(pool)
        .filter(|ad| selected(ad.service_selectors(), &service.labels))
        .collect()
}

/// Does this node announce `service` in layer 2 mode (MetalLB `ShouldAnnounce` with the sticky
/// election)?
pub fn layer2(
    inputs: &Inputs<'_>,
    service: &ServiceInfo,
    endpoints: &Endpoints,
    members: &Members,
    leaving: bool,
) -> L2Outcome {
    let pool = match common(inputs, service, endpoints) {
        Ok((pool, _)) => pool,
        Err(reason) => return L2Outcome::withdraw(reason),
    };
    let ads = l2_ads_for_service(inputs.config, pool, service);
    if service.allows_shared_ip && ads.iter().any(|ad| !ad.service_selectors().is_empty()) {
        return L2Outcome::withdraw(WithdrawReason::SharedIpWithServiceSelector);
    }
    let mine: Vec<&L2Advertisement> = ads
        .iter()
        .copied()
        .filter(|ad| ad.nodes().contains(inputs.me))
        .collect();
    if mine.is_empty() {
        return L2Outcome::withdraw(WithdrawReason::NoMatchingAdvertisement);
    }
    if service.traffic_policy_local && !endpoints.serving_nodes.contains(inputs.me) {
        return L2Outcome::withdraw(WithdrawReason::NoLocalEndpoints);
    }
    if leaving {
        return L2Outcome::withdraw(WithdrawReason::Leaving);
    }
    let (candidates, claims) = l2_candidates(inputs, service, endpoints, members, &ads);
    let result = election::elect(&service.ips, &candidates, &claims);
    match result.owner {
        Some(owner) if owner.0 == inputs.me => L2Outcome::Announce {
            interfaces: interfaces_of(&mine),
            decision: result.decision,
        },
        owner => L2Outcome::Withdraw {
            reason: WithdrawReason::NotOwner,
            owner: owner.map(|o| o.0),
        },
    }
}

/// The election's candidates and claims (MetalLB's `speakersForAds`, filtered by eligibility).
fn l2_candidates(
    inputs: &Inputs<'_>,
    service: &ServiceInfo,
    endpoints: &Endpoints,
    members: &Members,
    ads: &[&L2Advertisement],
) -> (Vec<Candidate>, Vec<Claim>) {
    let names: BTreeSet<&String> = match members {
        Some(members) => inputs
            .nodes
            .keys()
            .filter(|name| name.as_str() == inputs.me || members.contains_key(*name))
            .collect(),
        None => inputs.nodes.keys().collect(),
    };
    let mut candidates = Vec::new();
    let mut claims = Vec::new();
    for name in names {
        let Some(node) = inputs.nodes.get(name) else {
            continue;
        };
        let member = members.as_ref().and_then(|m| m.get(name));
        // This node is alive by definition; `layer2` handled its own `leaving`.
        let is_me = name == inputs.me;
        let alive = is_me || members.is_none() || member.is_some_and(|m| m.active);
        let leaving = !is_me && member.is_some_and(|m| m.leaving);
        let eligible = !node.network_unavailable
            && (inputs.options.ignore_exclude_lb || !node.excluded())
            && ads.iter().any(|ad| ad.nodes().contains(name))
            && (!service.traffic_policy_local || endpoints.serving_nodes.contains(name))
            && !leaving;
        let preference: i64 = ads
            .iter()
            .filter_map(|ad| ad.preferred_nodes().get(name))
            .sum();
        candidates.push(Candidate {
            node: NodeName(name.clone()),
            alive,
            eligible,
            preference: u64::try_from(preference).unwrap_or(0),
        });
        if let Some(member) = member {
            for ip in member
                .claims
                .intersection(&service.ips.iter().copied().collect())
            {
                claims.push(Claim {
                    node: NodeName(name.clone()),
                    ip: *ip,
                });
            }
        }
    }
    (candidates, claims)
}

/// The union of the interfaces of `ads`; any ad without interfaces means all.
fn interfaces_of(ads: &[&L2Advertisement]) -> InterfaceSelection {
    let mut names = BTreeSet::new();
    for ad in ads {
        if ad.interfaces().is_empty() {
            return InterfaceSelection::All;
        }
        names.extend(ad.interfaces().iter().cloned());
    }
    InterfaceSelection::Only(names)
}

/// One prefix to advertise over BGP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BgpRoute {
    /// `ip` masked to the advertisement's aggregation length.
    pub prefix: IpNet,
    /// LOCAL_PREF.
    pub local_pref: u32,
    /// Communities (sorted).
    pub communities: BTreeSet<BgpCommunity>,
    /// Peer names it goes to; empty means every peer.
    pub peers: BTreeSet<String>,
    /// The advertisement it comes from.
    pub advertisement: String,
}

/// The BGP outcome for one Service on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BgpOutcome {
    /// Advertise these routes.
    Announce(Vec<BgpRoute>),
    /// Do not advertise.
    Withdraw(WithdrawReason),
}

/// Does this node advertise `service` over BGP, and with which routes (MetalLB
/// `bgp_controller.ShouldAnnounce` + `SetBalancer`)?
pub fn bgp(inputs: &Inputs<'_>, service: &ServiceInfo, endpoints: &Endpoints) -> BgpOutcome {
    let pool = match common(inputs, service, endpoints) {
        Ok((pool, _)) => pool,
        Err(reason) => return BgpOutcome::Withdraw(reason),
    };
    if service.traffic_policy_local && !endpoints.serving_nodes.contains(inputs.me) {
        return BgpOutcome::Withdraw(WithdrawReason::NoLocalEndpoints);
    }
    let ads: Vec<&BgpAdvertisement> = inputs
        .config
        .bgp_advertisements_for(pool)
        .filter(|ad| selected(ad.service_selectors(), &service.labels))
        .collect();
    if ads.is_empty() {
        return BgpOutcome::Withdraw(WithdrawReason::NoMatchingAdvertisement);
    }
    let mine: Vec<&BgpAdvertisement> = ads
        .into_iter()
        .filter(|ad| ad.nodes().contains(inputs.me))
        .collect();
    if mine.is_empty() {
        return BgpOutcome::Withdraw(WithdrawReason::NotOwner);
    }
    let mut routes = Vec::new();
    let mut local_prefs: BTreeMap<IpNet, u32> = BTreeMap::new();
    for ip in &service.ips {
        for ad in &mine {
            let length = match ip {
                IpAddr::V4(_) => ad.aggregation_length_v4(),
                IpAddr::V6(_) => ad.aggregation_length_v6(),
            };
            let Ok(prefix) = IpNet::new(*ip, length).map(|net| net.trunc()) else {
                continue;
            };
            if let Some(previous) = local_prefs.insert(prefix, ad.local_pref()) {
                if previous != ad.local_pref() {
                    return BgpOutcome::Withdraw(WithdrawReason::ConflictingAdvertisements);
                }
            }
            routes.push(BgpRoute {
                prefix,
                local_pref: ad.local_pref(),
                communities: ad.communities().clone(),
                peers: ad.peers().clone(),
                advertisement: ad.name().to_owned(),
            });
        }
    }
    routes.sort();
    BgpOutcome::Announce(routes)
}

/// The BGPPeers this node keeps a session with: `nodeSelectors` empty or matching its labels.
pub fn peers_for_node<'a>(config: &'a Config, node: &NodeInfo) -> Vec<&'a Peer> {
    config
        .peers()
        .values()
        .filter(|peer| selected(peer.node_selectors(), &node.labels))
        .collect()
}

/// Whether an object with `selectors` selects `labels`: MetalLB's rule for the selector lists
/// of advertisements and peers, where an empty list selects everything and otherwise any one
/// matching selector does.
fn selected(selectors: &[Selector], labels: &Labels) -> bool {
    selectors.is_empty() || selectors.iter().any(|selector| selector.matches(labels))
}

/// The routes that go to `peer` (advertisements with no `peers`, or naming it), merged by
/// prefix: communities united, as MetalLB's sessions de-duplicate.
pub fn routes_for_peer(routes: &[BgpRoute], peer: &str) -> BTreeMap<IpNet, BgpRoute> {
    let mut merged: BTreeMap<IpNet, BgpRoute> = BTreeMap::new();
    for route in routes
        .iter()
        .filter(|r| r.peers.is_empty() || r.peers.contains(peer))
    {
        merged
            .entry(route.prefix)
            .and_modify(|existing| {
                existing
                    .communities
                    .extend(route.communities.iter().cloned());
            })
            .or_insert_with(|| route.clone());
    }
    merged
}
