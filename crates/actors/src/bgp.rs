//! The BGP announcer core: from a [`Snapshot`], the sessions this node keeps (one per BGPPeer
//! whose `nodeSelectors` match its labels), the routes every session advertises (MetalLB
//! `bgp_controller.go`: per Service [`decide::bgp`], per peer [`decide::routes_for_peer`]), and
//! the `ServiceBGPStatus` this node wants per Service. Pure: `reconcile` returns actions; the
//! `Bgp` actor runs them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use ironlb_announce::bfd;
use ironlb_announce::bgp::driver::PeerConfig;
use ironlb_announce::bgp::message::{Community, Family, LargeCommunity};
use ironlb_announce::bgp::rib::{RouteAttributes, Routes};
use ironlb_announce::bgp::session::{PeerAsn as SessionPeerAsn, SessionConfig};
use ironlb_api::config::model::{
    BfdProfile, BgpCommunity, DynamicAsnMode, Peer, PeerAsn, PeerPassword, PeerTarget,
};
use ironlb_api::config::Config;

use crate::cluster::Snapshot;
use crate::decide::{self, BgpOutcome, Inputs, Options, WithdrawReason};
use crate::model::{Endpoints, ServiceKey};
use crate::status_changes::push_status_changes;

/// Restart time advertised with `enableGracefulRestart` (FRR's default).
pub const GRACEFUL_RESTART_TIME_SECS: u16 = 120;

/// Why a BGPPeer cannot get a session on this node (reported, the session is not started).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerConfigError {
    /// `spec.interface` (unnumbered BGP) needs the FRR modes.
    #[error(
        "BGPPeer {peer}: spec.interface (unnumbered BGP) is not supported by ironlb's speaker"
    )]
    Unnumbered {
        /// The BGPPeer.
        peer: String,
    },
    /// `spec.vrf` needs the FRR modes.
    #[error("BGPPeer {peer}: spec.vrf {vrf:?} is not supported by ironlb's speaker")]
    Vrf {
        /// The BGPPeer.
        peer: String,
        /// The VRF.
        vrf: String,
    },
    /// `spec.routerID` is an IPv6 address; a BGP identifier is 32 bits.
    #[error("BGPPeer {peer}: spec.routerID {router_id} is not an IPv4 address")]
    RouterIdNotIpv4 {
        /// The BGPPeer.
        peer: String,
        /// The value.
        router_id: IpAddr,
    },
    /// `spec.holdTime` / `spec.keepaliveTime` above 65535 s.
    #[error("BGPPeer {peer}: spec.holdTime / spec.keepaliveTime above 65535s")]
    TimerTooLong {
        /// The BGPPeer.
        peer: String,
    },
    /// `spec.bfdProfile` names no BFDProfile.
    #[error("BGPPeer {peer}: spec.bfdProfile {profile:?} does not exist")]
    MissingBfdProfile {
        /// The BGPPeer.
        peer: String,
        /// The profile name.
        profile: String,
    },
}

/// The `ServiceBGPStatus` this node wants for one Service: the peers it intends to advertise
/// it to (MetalLB: session state is not reflected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpStatus {
    /// BGPPeer names, sorted.
    pub peers: Vec<String>,
}

/// What the actor must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BgpAction {
    /// Start the session of BGPPeer `name` (a changed peer is stopped first, as MetalLB).
    Start {
        /// The BGPPeer.
        name: String,
        /// The driver configuration.
        config: Box<PeerConfig>,
    },
    /// Stop the session of BGPPeer `name` (Cease).
    Stop {
        /// The BGPPeer.
        name: String,
    },
    /// Replace the routes of the session of `name`.
    Routes {
        /// The BGPPeer.
        name: String,
        /// Every prefix with its attributes.
        routes: Routes,
    },
    /// Set (Some) or delete (None) this node's `ServiceBGPStatus` of a Service.
    Status(ServiceKey, Option<BgpStatus>),
    /// This node started advertising a Service: Event `nodeAssigned` (protocol bgp).
    Assigned(ServiceKey, Vec<IpAddr>),
    /// A BGPPeer selected for this node cannot be started (reported once per change).
    PeerError(PeerConfigError),
}

/// Per-Service result kept for metrics and `ironlb status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpServiceState {
    /// The Service's IPs.
    pub ips: Vec<IpAddr>,
    /// The BGPPeers it is advertised to from this node (empty: not advertised).
    pub peers: BTreeSet<String>,
    /// Why not, when it is not advertised.
    pub reason: Option<WithdrawReason>,
}

/// The core of one node.
#[derive(Debug)]
pub struct BgpCore {
    me: String,
    options: Options,
    shutdown_wait: Duration,
    sessions: BTreeMap<String, PeerConfig>,
    routes: BTreeMap<String, Routes>,
    status: BTreeMap<ServiceKey, BgpStatus>,
    services: BTreeMap<ServiceKey, BgpServiceState>,
    errors: BTreeSet<PeerConfigError>,
}

impl PartialOrd for PeerConfigError {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PeerConfigError {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl BgpCore {
    /// The core of node `me`; `shutdown_wait` is how long routes carry GRACEFUL_SHUTDOWN in a
    /// planned stop before they are withdrawn.
    pub fn new(me: impl Into<String>, options: Options, shutdown_wait: Duration) -> Self {
        Self {
            me: me.into(),
            options,
            shutdown_wait,
            sessions: BTreeMap::new(),
            routes: BTreeMap::new(),
            status: BTreeMap::new(),
            services: BTreeMap::new(),
            errors: BTreeSet::new(),
        }
    }

    /// The sessions wanted now, by BGPPeer name.
    pub fn sessions(&self) -> &BTreeMap<String, PeerConfig> {
        &self.sessions
    }

    /// The routes of every session.
    pub fn routes(&self) -> &BTreeMap<String, Routes> {
        &self.routes
    }

    /// The per-Service results of the last reconcile.
    pub fn services(&self) -> &BTreeMap<ServiceKey, BgpServiceState> {
        &self.services
    }

    /// Recomputes sessions, routes and status from `snapshot`.
    pub fn reconcile(&mut self, snapshot: &Snapshot) -> Vec<BgpAction> {
        let Some(config) = snapshot.config.as_deref() else {
            return Vec::new();
        };
        let mut sessions = BTreeMap::new();
        let mut errors = BTreeSet::new();
        if let Some(node) = snapshot.nodes.get(&self.me) {
            for peer in decide::peers_for_node(config, node) {
                match peer_config(peer, config, self.shutdown_wait) {
                    Ok(peer_config) => {
                        sessions.insert(peer.name().to_owned(), peer_config);
                    }
                    Err(error) => {
                        errors.insert(error);
                    }
                }
            }
        }
        let inputs = Inputs {
            me: &self.me,
            config,
            nodes: &snapshot.nodes,
            options: &self.options,
        };
        let empty = Endpoints::default();
        let mut routes: BTreeMap<String, BTreeMap<IpNet, RouteAttributes>> = sessions
            .keys()
            .map(|name| (name.clone(), BTreeMap::new()))
            .collect();
        let mut status = BTreeMap::new();
        let mut services = BTreeMap::new();
        for (key, service) in &snapshot.services {
            let endpoints = snapshot.endpoints.get(key).unwrap_or(&empty);
            let (peers, reason) = match decide::bgp(&inputs, service, endpoints) {
                BgpOutcome::Announce(service_routes) => {
                    let mut peers = BTreeSet::new();
                    for (name, peer_routes) in &mut routes {
                        let wanted = decide::routes_for_peer(&service_routes, name);
                        if wanted.is_empty() {
                            continue;
                        }
                        peers.insert(name.clone());
                        for (prefix, route) in wanted {
                            let attributes = route_attributes(&route);
                            peer_routes
                                .entry(prefix)
                                .and_modify(|existing| merge(existing, &attributes))
                                .or_insert(attributes);
                        }
                    }
                    let reason = peers.is_empty().then_some(WithdrawReason::NotOwner);
                    (peers, reason)
                }
                BgpOutcome::Withdraw(reason) => (BTreeSet::new(), Some(reason)),
            };
            if !peers.is_empty() {
                status.insert(
                    key.clone(),
                    BgpStatus {
                        peers: peers.iter().cloned().collect(),
                    },
                );
            }
            services.insert(
                key.clone(),
                BgpServiceState {
                    ips: service.ips.clone(),
                    peers,
                    reason,
                },
            );
        }
        let routes: BTreeMap<String, Routes> = routes
            .into_iter()
            .map(|(name, routes)| (name, Arc::new(routes)))
            .collect();
        let mut actions = Vec::new();
        for error in &errors {
            if !self.errors.contains(error) {
                actions.push(BgpAction::PeerError(error.clone()));
            }
        }
        for (name, old) in &self.sessions {
            if sessions.get(name) != Some(old) {
                actions.push(BgpAction::Stop { name: name.clone() });
            }
        }
        for (name, new) in &sessions {
            let restarted = self.sessions.get(name) != Some(new);
            if restarted {
                actions.push(BgpAction::Start {
                    name: name.clone(),
                    config: Box::new(new.clone()),
                });
            }
            let peer_routes = routes.get(name).cloned().unwrap_or_default();
            if restarted || self.routes.get(name) != Some(&peer_routes) {
                actions.push(BgpAction::Routes {
                    name: name.clone(),
                    routes: peer_routes,
                });
            }
        }
        push_status_changes(
            &self.status,
            &status,
            |key| {
                services
                    .get(key)
                    .map(|s: &BgpServiceState| s.ips.clone())
                    .unwrap_or_default()
            },
            BgpAction::Assigned,
            BgpAction::Status,
            &mut actions,
        );
        self.sessions = sessions;
        self.routes = routes;
        self.status = status;
        self.services = services;
        self.errors = errors;
        actions
    }
}

impl BgpCore {
    /// After a planned stop: nothing is advertised any more, so this node's
    /// `ServiceBGPStatus` objects are deleted.
    pub fn withdraw_all(&mut self) -> Vec<BgpAction> {
        let actions = self
            .status
            .keys()
            .map(|key| BgpAction::Status(key.clone(), None))
            .collect();
        self.status.clear();
        for state in self.services.values_mut() {
            state.peers.clear();
        }
        actions
    }
}

/// Two Services (or advertisements) yield the same prefix: communities are united, the first
/// LOCAL_PREF stays (Services iterate in `namespace/name` order, so the result is stable).
fn merge(existing: &mut RouteAttributes, other: &RouteAttributes) {
    existing
        .communities
        .extend(other.communities.iter().copied());
    existing
        .large_communities
        .extend(other.large_communities.iter().copied());
    if existing.local_pref.is_none() {
        existing.local_pref = other.local_pref;
    }
}

/// The attributes of one decided route: LOCAL_PREF 0 means unset (MetalLB/FRR only set it
/// when ≠ 0), communities split into RFC 1997 and RFC 8092 ones.
pub fn route_attributes(route: &decide::BgpRoute) -> RouteAttributes {
    let mut attributes = RouteAttributes {
        local_pref: (route.local_pref != 0).then_some(route.local_pref),
        ..RouteAttributes::default()
    };
    for community in &route.communities {
        match *community {
            BgpCommunity::Legacy { high, low } => {
                attributes
                    .communities
                    .insert(Community((u32::from(high) << 16) | u32::from(low)));
            }
            BgpCommunity::Large {
                global,
                local1,
                local2,
            } => {
                attributes.large_communities.insert(LargeCommunity {
                    global,
                    local1,
                    local2,
                });
            }
        }
    }
    attributes
}

/// The BFD timers of a `BFDProfile` (unset values are FRR's defaults, 300 ms × 3).
pub fn bfd_config(profile: &BfdProfile) -> bfd::session::Config {
    let defaults = bfd::session::Config::default();
    let interval = |value: Option<ironlb_api::config::model::BfdIntervalMs>, default: Duration| {
        value.map_or(default, |ms| Duration::from_millis(u64::from(ms.get())))
    };
    bfd::session::Config {
        desired_min_tx: interval(profile.transmit_interval(), defaults.desired_min_tx),
        required_min_rx: interval(profile.receive_interval(), defaults.required_min_rx),
        detect_multiplier: profile
            .detect_multiplier()
            .unwrap_or(defaults.detect_multiplier),
        passive: profile.passive_mode(),
    }
}

/// The driver configuration of one `BGPPeer` (MetalLB's native speaker semantics plus what the
/// FRR modes add: dynamic ASN, local ASN, BFD, graceful restart, families).
pub fn peer_config(
    peer: &Peer,
    config: &Config,
    shutdown_wait: Duration,
) -> Result<PeerConfig, PeerConfigError> {
    let name = peer.name().to_owned();
    let address = match peer.target() {
        PeerTarget::Address(address) => *address,
        PeerTarget::Interface(_) => return Err(PeerConfigError::Unnumbered { peer: name }),
    };
    if let Some(vrf) = peer.vrf().filter(|vrf| !vrf.is_empty()) {
        return Err(PeerConfigError::Vrf {
            peer: name,
            vrf: vrf.to_owned(),
        });
    }
    let peer_asn = match peer.peer_asn() {
        PeerAsn::Fixed(asn) => SessionPeerAsn::Fixed(asn.get()),
        PeerAsn::Dynamic(DynamicAsnMode::Internal) => SessionPeerAsn::Internal,
        PeerAsn::Dynamic(DynamicAsnMode::External) => SessionPeerAsn::External,
    };
    let local_asn = peer.local_asn().unwrap_or(peer.my_asn()).get();
    let mut session = SessionConfig::new(local_asn, peer_asn);
    session.router_id = match peer.router_id() {
        None => None,
        Some(IpAddr::V4(id)) => Some(id),
        Some(other) => {
            return Err(PeerConfigError::RouterIdNotIpv4 {
                peer: name,
                router_id: other,
            })
        }
    };
    if let Some(timers) = peer.timers() {
        let secs = |d: Duration| u16::try_from(d.as_secs());
        let (Ok(hold), Ok(keepalive)) = (secs(timers.hold_time()), secs(timers.keepalive_time()))
        else {
            return Err(PeerConfigError::TimerTooLong { peer: name });
        };
        session.hold_time_secs = hold;
        session.keepalive_secs = Some(keepalive);
    }
    if let Some(connect) = peer.connect_time() {
        session.connect_timeout = Duration::from_secs(u64::from(connect.secs()));
    }
    session.graceful_restart_secs = peer
        .enable_graceful_restart()
        .then_some(GRACEFUL_RESTART_TIME_SECS);
    session.shutdown_wait = shutdown_wait;
    // FRR activates the family of the peer's address, both with dualStackAddressFamily.
    session.families = if peer.dual_stack_address_family() {
        [Family::Ipv4Unicast, Family::Ipv6Unicast].into()
    } else if address.is_ipv4() {
        [Family::Ipv4Unicast].into()
    } else {
        [Family::Ipv6Unicast].into()
    };
    let bfd = match peer.bfd_profile() {
        None => None,
        Some(profile) => match config.bfd_profiles().get(profile) {
            Some(profile) => Some(bfd_config(profile)),
            None => {
                return Err(PeerConfigError::MissingBfdProfile {
                    peer: name,
                    profile: profile.to_owned(),
                })
            }
        },
    };
    let password = peer.password().map(|password| match password {
        PeerPassword::Inline(text) => text.clone(),
        PeerPassword::FromSecret { password, .. } => password.clone(),
    });
    Ok(PeerConfig {
        session,
        peer: SocketAddr::new(address, peer.port().get()),
        source: peer.source_address(),
        password,
        ebgp_multihop: peer.ebgp_multi_hop(),
        bfd,
    })
}
