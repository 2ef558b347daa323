//! [`Config::parse`]: every per-object and cross-object rule of MetalLB's `config.For`
//! (frr-k8s mode, see `decisions.md`), collecting every problem instead of stopping at the
//! first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use ironlb_alloc::{parse_address_entry, Pool, PoolName, ServiceAllocation};
use ironlb_labels::{Labels, Selector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::duration::parse_go_duration;
use super::model::{
    Asn, BfdIntervalMs, BfdProfile, BgpAdvertisement, BgpCommunity, BgpTimers, CommunityError,
    ConnectTime, L2Advertisement, Peer, PeerAsn, PeerPassword, PeerPort, PeerTarget,
};
use super::{ConfigError, ConfigErrors, ConfigInputs, ConfigWarning};
use crate::crd;

/// The `type` a Secret referenced by `passwordSecret` must have.
const BASIC_AUTH_SECRET_TYPE: &str = "kubernetes.io/basic-auth";

/// A validated configuration: the pools (as allocator pools), the advertisements, the peers
/// and the BFD profiles, plus warnings for what is accepted but not acted on.
#[derive(Clone, Debug)]
pub struct Config {
    pools: BTreeMap<PoolName, Pool>,
    l2_advertisements: Vec<L2Advertisement>,
    bgp_advertisements: Vec<BgpAdvertisement>,
    peers: BTreeMap<String, Peer>,
    bfd_profiles: BTreeMap<String, BfdProfile>,
    communities: BTreeMap<String, BgpCommunity>,
    warnings: Vec<ConfigWarning>,
}

impl Config {
    /// Pools by name.
    pub fn pools(&self) -> &BTreeMap<PoolName, Pool> {
        &self.pools
    }
    /// L2Advertisements, in input order.
    pub fn l2_advertisements(&self) -> &[L2Advertisement] {
        &self.l2_advertisements
    }
    /// BGPAdvertisements, in input order.
    pub fn bgp_advertisements(&self) -> &[BgpAdvertisement] {
        &self.bgp_advertisements
    }
    /// BGPPeers by name.
    pub fn peers(&self) -> &BTreeMap<String, Peer> {
        &self.peers
    }
    /// BFDProfiles by name.
    pub fn bfd_profiles(&self) -> &BTreeMap<String, BfdProfile> {
        &self.bfd_profiles
    }
    /// Community aliases by name.
    pub fn communities(&self) -> &BTreeMap<String, BgpCommunity> {
        &self.communities
    }
    /// What is accepted but not acted on (unsupported or deprecated fields, references to
    /// objects that do not exist).
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }
    /// The L2Advertisements that apply to `pool`.
    pub fn l2_advertisements_for<'a>(
        &'a self,
        pool: &'a PoolName,
    ) -> impl Iterator<Item = &'a L2Advertisement> + 'a {
        self.l2_advertisements
            .iter()
            .filter(move |advertisement| advertisement.pools.contains(pool))
    }
    /// The BGPAdvertisements that apply to `pool`.
    pub fn bgp_advertisements_for<'a>(
        &'a self,
        pool: &'a PoolName,
    ) -> impl Iterator<Item = &'a BgpAdvertisement> + 'a {
        self.bgp_advertisements
            .iter()
            .filter(move |advertisement| advertisement.pools.contains(pool))
    }

    /// Validates every object and builds the configuration, or returns every problem found.
    pub fn parse(inputs: &ConfigInputs) -> Result<Self, ConfigErrors> {
        let mut parser = Parser::new(inputs);
        parser.check_metadata();
        let bfd_profiles = parser.bfd_profiles();
        let communities = parser.communities();
        let pools = parser.pools();
        let peers = parser.peers(&bfd_profiles);
        parser.check_peers_sharing_nodes(&peers);
        let l2_advertisements = parser.l2_advertisements(&pools);
        let bgp_advertisements = parser.bgp_advertisements(&pools, &peers, &communities);
        parser.check_bfd_echo(&pools, &bgp_advertisements, &peers, &bfd_profiles);
        let Parser {
            mut errors,
            mut warnings,
            ..
        } = parser;
        if !errors.is_empty() {
            errors.sort();
            errors.dedup();
            return Err(ConfigErrors(errors));
        }
        warnings.sort();
        warnings.dedup();
        Ok(Self {
            pools: pools
                .into_iter()
                .map(|(name, parsed)| (name, parsed.pool))
                .collect(),
            l2_advertisements,
            bgp_advertisements: bgp_advertisements
                .into_iter()
                .map(|parsed| parsed.advertisement)
                .collect(),
            peers,
            bfd_profiles,
            communities,
            warnings,
        })
    }
}

/// A pool plus what the advertisement checks need: each `addresses` entry's CIDRs.
struct ParsedPool {
    pool: Pool,
    entries: Vec<(String, Vec<IpNet>)>,
}

impl ParsedPool {
    fn has_v4(&self) -> bool {
        self.pool.has_family(false)
    }
    fn has_v6(&self) -> bool {
        self.pool.has_family(true)
    }
}

struct ParsedBgpAdvertisement {
    advertisement: BgpAdvertisement,
    /// `spec.nodeSelectors` as written (empty = every node), for the node-overlap rule when
    /// no Node objects are known.
    node_selectors: Vec<Selector>,
}

struct Parser<'a> {
    inputs: &'a ConfigInputs,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
    nodes: BTreeMap<String, Labels>,
}

fn name_of(metadata: &ObjectMeta) -> &str {
    metadata.name.as_deref().unwrap_or("<unnamed>")
}

fn labels_of(metadata: &ObjectMeta) -> Labels {
    metadata.labels.clone().unwrap_or_default()
}

/// A selector as a comparable value: labels, and expressions with sorted values.
type SelectorKey = (BTreeMap<String, String>, Vec<(String, String, Vec<String>)>);

fn selector_key(selector: &LabelSelector) -> SelectorKey {
    let expressions = selector
        .match_expressions
        .iter()
        .flatten()
        .map(|expression| {
            let mut values = expression.values.clone().unwrap_or_default();
            values.sort();
            (expression.key.clone(), expression.operator.clone(), values)
        })
        .collect();
    (
        selector.match_labels.clone().unwrap_or_default(),
        expressions,
    )
}

/// Converts a `metav1.LabelSelector`.
fn to_selector(selector: &LabelSelector) -> Result<Selector, String> {
    let labels = selector.match_labels.iter().flatten();
    let expressions = selector
        .match_expressions
        .iter()
        .flatten()
        .map(|expression| {
            (
                expression.key.as_str(),
                expression.operator.as_str(),
                expression.values.clone().unwrap_or_default(),
            )
        });
    Selector::from_parts(
        labels.map(|(key, value)| (key.as_str(), value.as_str())),
        expressions,
    )
    .map_err(|error| error.to_string())
}

/// The first duplicate in `values`, if any.
fn first_duplicate<T: Ord>(values: impl IntoIterator<Item = T>) -> Option<T> {
    let mut seen = BTreeSet::new();
    for value in values {
        if seen.contains(&value) {
            return Some(value);
        }
        seen.insert(value);
    }
    None
}

impl<'a> Parser<'a> {
    fn new(inputs: &'a ConfigInputs) -> Self {
        let nodes = inputs
            .nodes
            .iter()
            .filter_map(|node| {
                let name = node.metadata.name.clone()?;
                Some((name, labels_of(&node.metadata)))
            })
            .collect();
        Self {
            inputs,
            errors: inputs.problems.clone(),
            warnings: Vec::new(),
            nodes,
        }
    }

    fn error(
        &mut self,
        kind: &str,
        name: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors
            .push(ConfigError::new(kind, name, field, message));
    }

    fn transient(
        &mut self,
        kind: &str,
        name: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors
            .push(ConfigError::new(kind, name, field, message).transient());
    }

    fn warn(
        &mut self,
        kind: &str,
        name: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.warnings.push(ConfigWarning {
            kind: kind.to_owned(),
            name: name.to_owned(),
            field: field.into(),
            message: message.into(),
        });
    }

    /// Names present, unique per kind, and in the configured namespace (MetalLB's webhooks
    /// reject objects elsewhere; its reconcilers never see them).
    fn check_metadata(&mut self) {
        let inputs = self.inputs;
        let groups: [(&str, Vec<&ObjectMeta>); 6] = [
            (
                "IPAddressPool",
                inputs.pools.iter().map(|o| &o.metadata).collect(),
            ),
            (
                "L2Advertisement",
                inputs
                    .l2_advertisements
                    .iter()
                    .map(|o| &o.metadata)
                    .collect(),
            ),
            (
                "BGPAdvertisement",
                inputs
                    .bgp_advertisements
                    .iter()
                    .map(|o| &o.metadata)
                    .collect(),
            ),
            (
                "BGPPeer",
                inputs.bgp_peers.iter().map(|o| &o.metadata).collect(),
            ),
            (
                "BFDProfile",
                inputs.bfd_profiles.iter().map(|o| &o.metadata).collect(),
            ),
            (
                "Community",
                inputs.communities.iter().map(|o| &o.metadata).collect(),
            ),
        ];
        for (kind, metadatas) in groups {
            let mut seen = BTreeSet::new();
            for metadata in metadatas {
                let name = name_of(metadata);
                match metadata.name.as_deref() {
                    None | Some("") => self.error(kind, name, "metadata.name", "missing name"),
                    Some(name) if !seen.insert(name) => self.error(
                        kind,
                        name,
                        "metadata.name",
                        format!("duplicate definition of {kind} {name:?}"),
                    ),
                    Some(_) => {}
                }
                if let Some(namespace) = metadata.namespace.as_deref() {
                    if namespace != inputs.namespace {
                        self.error(
                            kind,
                            name,
                            "metadata.namespace",
                            format!(
                                "resource must be created in {} namespace, not {namespace:?}",
                                inputs.namespace
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Checks a list of selectors: each converts, no duplicate selector, no duplicate
    /// expression or expression value inside one. Returns the converted selectors, or `None`
    /// after recording the problems.
    fn selectors(
        &mut self,
        kind: &str,
        name: &str,
        field: &str,
        selectors: &[LabelSelector],
    ) -> Option<Vec<Selector>> {
        let before = self.errors.len();
        let mut converted = Vec::new();
        let mut seen = BTreeSet::new();
        for (index, selector) in selectors.iter().enumerate() {
            let item = format!("{field}[{index}]");
            for expression in selector.match_expressions.iter().flatten() {
                if let Some(value) = first_duplicate(expression.values.iter().flatten()) {
                    self.error(
                        kind,
                        name,
                        &item,
                        format!("duplicate definition of match expression value in label selector {value:?}"),
                    );
                }
            }
            let key = selector_key(selector);
            if let Some(expression) = first_duplicate(key.1.iter()) {
                self.error(
                    kind,
                    name,
                    &item,
                    format!(
                        "duplicate definition of match expressions {:?}",
                        expression.0
                    ),
                );
            }
            if !seen.insert(key) {
                self.error(
                    kind,
                    name,
                    &item,
                    format!("duplicate definition of {field}"),
                );
            }
            match to_selector(selector) {
                Ok(selector) => converted.push(selector),
                Err(message) => self.error(
                    kind,
                    name,
                    &item,
                    format!("invalid label selector: {message}"),
                ),
            }
        }
        (self.errors.len() == before).then_some(converted)
    }

    /// The known nodes any of `selectors` matches; every known node when there are none.
    fn nodes_matching(&self, selectors: &[Selector]) -> BTreeSet<String> {
        self.nodes
            .iter()
            .filter(|(_, labels)| {
                selectors.is_empty() || selectors.iter().any(|selector| selector.matches(labels))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn duplicates(
        &mut self,
        kind: &str,
        name: &str,
        field: &str,
        what: &str,
        values: &[String],
    ) -> bool {
        if let Some(value) = first_duplicate(values.iter()) {
            self.error(
                kind,
                name,
                field,
                format!("duplicate definition of {what} {value:?}"),
            );
            return true;
        }
        false
    }

    fn bfd_profiles(&mut self) -> BTreeMap<String, BfdProfile> {
        const KIND: &str = "BFDProfile";
        let mut profiles = BTreeMap::new();
        for object in &self.inputs.bfd_profiles {
            let name = name_of(&object.metadata);
            let spec = &object.spec;
            let before = self.errors.len();
            let interval = |parser: &mut Self, field: &str, value: Option<u32>| {
                value.and_then(|ms| {
                    let parsed = BfdIntervalMs::new(ms);
                    if parsed.is_none() {
                        parser.error(
                            KIND,
                            name,
                            field,
                            format!("invalid value {ms}, must be in 10-60000 range"),
                        );
                    }
                    parsed
                })
            };
            let receive_interval = interval(self, "spec.receiveInterval", spec.receive_interval);
            let transmit_interval = interval(self, "spec.transmitInterval", spec.transmit_interval);
            let echo_interval = interval(self, "spec.echoInterval", spec.echo_interval);
            let small = |parser: &mut Self, field: &str, value: Option<u32>, min: u32, max: u32| {
                value.and_then(|value| {
                    let parsed = (min..=max)
                        .contains(&value)
                        .then(|| u8::try_from(value).ok())
                        .flatten();
                    if parsed.is_none() {
                        parser.error(
                            KIND,
                            name,
                            field,
                            format!("invalid value {value}, must be in {min}-{max} range"),
                        );
                    }
                    parsed
                })
            };
            let detect_multiplier = small(
                self,
                "spec.detectMultiplier",
                spec.detect_multiplier,
                2,
                255,
            );
            let minimum_ttl = small(self, "spec.minimumTtl", spec.minimum_ttl, 1, 254);
            if self.errors.len() == before && !name.is_empty() {
                profiles.insert(
                    name.to_owned(),
                    BfdProfile {
                        name: name.to_owned(),
                        receive_interval,
                        transmit_interval,
                        detect_multiplier,
                        echo_interval,
                        echo_mode: spec.echo_mode.unwrap_or(false),
                        passive_mode: spec.passive_mode.unwrap_or(false),
                        minimum_ttl,
                    },
                );
            }
        }
        profiles
    }

    fn communities(&mut self) -> BTreeMap<String, BgpCommunity> {
        let mut aliases = BTreeMap::new();
        for object in &self.inputs.communities {
            let name = name_of(&object.metadata);
            for (index, alias) in object.spec.communities.iter().enumerate() {
                let field = format!("spec.communities[{index}]");
                if alias.name.is_empty() {
                    self.error(
                        "Community",
                        name,
                        format!("{field}.name"),
                        "missing alias name",
                    );
                    continue;
                }
                match alias.value.parse::<BgpCommunity>() {
                    Err(error) => self.error(
                        "Community",
                        name,
                        format!("{field}.value"),
                        format!("parsing community {:?}: {error}", alias.name),
                    ),
                    Ok(value) => {
                        if aliases.insert(alias.name.clone(), value).is_some() {
                            self.error(
                                "Community",
                                name,
                                format!("{field}.name"),
                                format!("duplicate definition of community {:?}", alias.name),
                            );
                        }
                    }
                }
            }
        }
        aliases
    }

    fn pools(&mut self) -> BTreeMap<PoolName, ParsedPool> {
        const KIND: &str = "IPAddressPool";
        let mut pools: BTreeMap<PoolName, ParsedPool> = BTreeMap::new();
        // Every CIDR accepted so far, with its pool: no CIDR may overlap another anywhere.
        let mut all_cidrs: Vec<(IpNet, String)> = Vec::new();
        for object in &self.inputs.pools {
            let name = name_of(&object.metadata);
            let spec = &object.spec;
            let before = self.errors.len();
            if spec.addresses.is_empty() {
                self.error(KIND, name, "spec.addresses", "pool has no prefixes defined");
            }
            let mut entries = Vec::new();
            let mut pool_cidrs: Vec<(IpNet, String)> = Vec::new();
            for (index, entry) in spec.addresses.iter().enumerate() {
                let field = format!("spec.addresses[{index}]");
                match parse_address_entry(entry) {
                    Err(error) => self.error(
                        KIND,
                        name,
                        &field,
                        format!("invalid CIDR {entry:?}: {error}"),
                    ),
                    Ok(cidrs) => {
                        for cidr in &cidrs {
                            let clash = pool_cidrs
                                .iter()
                                .map(|(other, _)| (other, name))
                                .chain(all_cidrs.iter().map(|(other, pool)| (other, pool.as_str())))
                                .find(|(other, _)| overlap(cidr, other));
                            if let Some((other, other_pool)) = clash {
                                self.error(
                                    KIND,
                                    name,
                                    &field,
                                    format!("CIDR {cidr} overlaps with already defined CIDR {other} in pool {other_pool:?}"),
                                );
                            }
                            pool_cidrs.push((*cidr, name.to_owned()));
                        }
                        entries.push((entry.clone(), cidrs));
                    }
                }
            }
            let allocation = spec
                .service_allocation
                .as_ref()
                .and_then(|allocation| self.service_allocation(name, allocation));
            if self.errors.len() != before || object.metadata.name.is_none() {
                continue;
            }
            let cidrs: Vec<IpNet> = entries
                .iter()
                .flat_map(|(_, cidrs)| cidrs.clone())
                .collect();
            match Pool::new(
                PoolName::from(name),
                cidrs,
                spec.auto_assign,
                spec.avoid_buggy_ips,
                allocation,
            ) {
                Err(error) => self.error(KIND, name, "spec.addresses", error.to_string()),
                Ok(pool) => {
                    all_cidrs.extend(pool_cidrs);
                    pools
                        .entry(PoolName::from(name))
                        .or_insert(ParsedPool { pool, entries });
                }
            }
        }
        pools
    }

    fn service_allocation(
        &mut self,
        name: &str,
        allocation: &crd::ServiceAllocation,
    ) -> Option<ServiceAllocation> {
        const KIND: &str = "IPAddressPool";
        let before = self.errors.len();
        if let Some(namespace) = first_duplicate(allocation.namespaces.iter()) {
            self.error(
                KIND,
                name,
                "spec.serviceAllocation.namespaces",
                format!("duplicate definition in namespaces field {namespace:?}"),
            );
        }
        let namespace_selectors = self.selectors(
            KIND,
            name,
            "spec.serviceAllocation.namespaceSelectors",
            &allocation.namespace_selectors,
        );
        let service_selectors = self.selectors(
            KIND,
            name,
            "spec.serviceAllocation.serviceSelectors",
            &allocation.service_selectors,
        );
        if self.errors.len() != before {
            return None;
        }
        let namespace_selectors = namespace_selectors.unwrap_or_default();
        let mut namespaces: BTreeSet<String> = allocation.namespaces.iter().cloned().collect();
        for namespace in &self.inputs.namespaces {
            let Some(namespace_name) = namespace.metadata.name.as_deref() else {
                continue;
            };
            let labels = labels_of(&namespace.metadata);
            if namespace_selectors
                .iter()
                .any(|selector| selector.matches(&labels))
            {
                namespaces.insert(namespace_name.to_owned());
            }
        }
        Some(ServiceAllocation {
            priority: allocation.priority.unwrap_or(0),
            namespaces,
            namespaces_restricted: !allocation.namespaces.is_empty()
                || !allocation.namespace_selectors.is_empty(),
            service_selectors: service_selectors.unwrap_or_default(),
        })
    }

    fn duration(
        &mut self,
        name: &str,
        field: &str,
        text: Option<&str>,
    ) -> Result<Option<Duration>, ()> {
        let Some(text) = text else {
            return Ok(None);
        };
        match parse_go_duration(text) {
            Ok(duration) => Ok(Some(duration)),
            Err(error) => {
                self.error("BGPPeer", name, field, error.to_string());
                Err(())
            }
        }
    }

    fn peers(&mut self, bfd_profiles: &BTreeMap<String, BfdProfile>) -> BTreeMap<String, Peer> {
        let mut peers = BTreeMap::new();
        for object in &self.inputs.bgp_peers {
            if let Some(peer) = self.peer(object, bfd_profiles) {
                peers.entry(peer.name.clone()).or_insert(peer);
            }
        }
        peers
    }

    fn peer(
        &mut self,
        object: &crd::BGPPeer,
        bfd_profiles: &BTreeMap<String, BfdProfile>,
    ) -> Option<Peer> {
        const KIND: &str = "BGPPeer";
        let name = name_of(&object.metadata);
        let spec = &object.spec;
        let before = self.errors.len();
        let my_asn = Asn::new(spec.my_asn);
        if my_asn.is_none() {
            self.error(KIND, name, "spec.myASN", "missing local ASN");
        }
        let peer_asn = match (spec.peer_asn.filter(|asn| *asn != 0), spec.dynamic_asn) {
            (None, None) => {
                self.error(
                    KIND,
                    name,
                    "spec.peerASN",
                    "missing peer ASN and dynamicASN",
                );
                None
            }
            (Some(_), Some(_)) => {
                self.error(
                    KIND,
                    name,
                    "spec.dynamicASN",
                    "both peer ASN and dynamicASN specified",
                );
                None
            }
            (Some(asn), None) => Asn::new(asn).map(PeerAsn::Fixed),
            (None, Some(mode)) => Some(PeerAsn::Dynamic(mode)),
        };
        if spec.ebgp_multi_hop && spec.peer_asn == Some(spec.my_asn) {
            self.error(
                KIND,
                name,
                "spec.ebgpMultiHop",
                "invalid ebgp-multihop parameter set for an ibgp peer",
            );
        }
        let local_asn = spec.local_asn.and_then(|asn| {
            let parsed = Asn::new(asn);
            if parsed.is_none() {
                self.error(
                    KIND,
                    name,
                    "spec.localASN",
                    "must be between 1 and 4294967295",
                );
            }
            parsed
        });
        let address = spec.peer_address.as_deref().filter(|a| !a.is_empty());
        let interface = spec.interface.as_deref().filter(|i| !i.is_empty());
        let target = match (address, interface) {
            (None, None) => {
                self.error(
                    KIND,
                    name,
                    "spec.peerAddress",
                    "peer has no Address or Interface specified",
                );
                None
            }
            (Some(_), Some(_)) => {
                self.error(
                    KIND,
                    name,
                    "spec.interface",
                    "peer has both Address and Interface specified",
                );
                None
            }
            (Some(address), None) => match address.parse::<IpAddr>() {
                Ok(ip) => Some(PeerTarget::Address(ip)),
                Err(_) => {
                    self.error(
                        KIND,
                        name,
                        "spec.peerAddress",
                        format!("invalid BGPPeer address {address:?}"),
                    );
                    None
                }
            },
            (None, Some(interface)) => {
                if interface.contains(['\n', '\r']) {
                    self.error(
                        KIND,
                        name,
                        "spec.interface",
                        "interface contains invalid characters",
                    );
                    None
                } else {
                    Some(PeerTarget::Interface(interface.to_owned()))
                }
            }
        };
        let port = PeerPort::new(spec.peer_port);
        if port.is_none() {
            self.error(
                KIND,
                name,
                "spec.peerPort",
                format!(
                    "invalid port {}: must be between 1 and {}",
                    spec.peer_port,
                    PeerPort::MAX
                ),
            );
        }
        let hold_time = self.duration(name, "spec.holdTime", spec.hold_time.as_deref());
        let keepalive_time =
            self.duration(name, "spec.keepaliveTime", spec.keepalive_time.as_deref());
        let timers = match (hold_time, keepalive_time) {
            (Ok(hold), Ok(keepalive)) => match BgpTimers::new(hold, keepalive) {
                Ok(timers) => timers,
                Err(error) => {
                    let field = if hold.is_some() {
                        "spec.holdTime"
                    } else {
                        "spec.keepaliveTime"
                    };
                    let field = match error {
                        super::model::TimerError::KeepaliveAboveHold { .. } => "spec.keepaliveTime",
                        _ => field,
                    };
                    self.error(
                        KIND,
                        name,
                        field,
                        format!("invalid BGPPeer timers: {error}"),
                    );
                    None
                }
            },
            _ => None,
        };
        let connect_time =
            match self.duration(name, "spec.connectTime", spec.connect_time.as_deref()) {
                Ok(Some(duration)) => {
                    let parsed = ConnectTime::new(duration);
                    if parsed.is_none() {
                        self.error(
                            KIND,
                            name,
                            "spec.connectTime",
                            "connect time should be between 1 seconds to 65535 and whole seconds",
                        );
                    }
                    parsed
                }
                _ => None,
            };
        let ip = |parser: &mut Self, field: &str, what: &str, text: Option<&str>| {
            text.filter(|text| !text.is_empty())
                .and_then(|text| match text.parse::<IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        parser.error(KIND, name, field, format!("invalid {what} {text:?}"));
                        None
                    }
                })
        };
        let router_id = ip(
            self,
            "spec.routerID",
            "router ID",
            spec.router_id.as_deref(),
        );
        let source_address = ip(
            self,
            "spec.sourceAddress",
            "source IP",
            spec.source_address.as_deref(),
        );
        let node_selectors = self
            .selectors(KIND, name, "spec.nodeSelectors", &spec.node_selectors)
            .unwrap_or_default();
        let password = self.peer_password(name, spec);
        if spec
            .vrf
            .as_deref()
            .is_some_and(|vrf| vrf.contains(['\n', '\r']))
        {
            self.error(
                KIND,
                name,
                "spec.vrf",
                "VRF name contains invalid characters",
            );
        }
        let bfd_profile = spec.bfd_profile.as_deref().filter(|p| !p.is_empty());
        if let Some(profile) = bfd_profile {
            if !bfd_profiles.contains_key(profile) {
                self.transient(
                    KIND,
                    name,
                    "spec.bfdProfile",
                    format!("peer {name} referencing non existing bfd profile {profile}"),
                );
            }
        }
        if self.errors.len() != before {
            return None;
        }
        if spec.vrf.as_deref().is_some_and(|vrf| !vrf.is_empty()) {
            self.warn(
                KIND,
                name,
                "spec.vrf",
                "VRFs are not supported by ironlb yet: the session is not opened",
            );
        }
        if interface.is_some() {
            self.warn(
                KIND,
                name,
                "spec.interface",
                "unnumbered BGP (interface) is not supported by ironlb yet: the session is not opened",
            );
        }
        if spec.disable_mp {
            self.warn(
                KIND,
                name,
                "spec.disableMP",
                "disableMP is deprecated and has no effect, use dualStackAddressFamily",
            );
        }
        let nodes = self.nodes_matching(&node_selectors);
        let node_selectors = if node_selectors.is_empty() {
            vec![Selector::everything()]
        } else {
            node_selectors
        };
        Some(Peer {
            name: name.to_owned(),
            my_asn: my_asn?,
            peer_asn: peer_asn?,
            local_asn,
            target: target?,
            source_address,
            port: port?,
            timers,
            connect_time,
            router_id,
            node_selectors,
            nodes,
            password,
            bfd_profile: bfd_profile.map(str::to_owned),
            enable_graceful_restart: spec.enable_graceful_restart,
            ebgp_multi_hop: spec.ebgp_multi_hop,
            vrf: spec.vrf.clone().filter(|vrf| !vrf.is_empty()),
            dual_stack_address_family: spec.dual_stack_address_family,
            disable_mp: spec.disable_mp,
        })
    }

    fn peer_password(&mut self, name: &str, spec: &crd::BGPPeerSpec) -> Option<PeerPassword> {
        const KIND: &str = "BGPPeer";
        let inline = spec.password.as_deref().filter(|p| !p.is_empty());
        let secret_name = spec
            .password_secret
            .as_ref()
            .and_then(|reference| reference.name.as_deref())
            .filter(|n| !n.is_empty());
        if inline.is_some() && secret_name.is_some() {
            self.error(
                KIND,
                name,
                "spec.passwordSecret",
                "can not have both password and secret ref set in peer config",
            );
            return None;
        }
        if let Some(password) = inline {
            if password.contains(['\n', '\r']) {
                self.error(
                    KIND,
                    name,
                    "spec.password",
                    "password contains invalid characters",
                );
                return None;
            }
            return Some(PeerPassword::Inline(password.to_owned()));
        }
        let secret_name = secret_name?;
        let namespace = &self.inputs.namespace;
        let secret = self.inputs.secrets.iter().find(|secret| {
            secret.metadata.name.as_deref() == Some(secret_name)
                && secret
                    .metadata
                    .namespace
                    .as_deref()
                    .is_none_or(|ns| ns == namespace)
        });
        let Some(secret) = secret else {
            self.transient(
                KIND,
                name,
                "spec.passwordSecret",
                format!("secret ref not found for peer config: Secret {secret_name:?} in namespace {namespace:?}"),
            );
            return None;
        };
        if secret.type_.as_deref() != Some(BASIC_AUTH_SECRET_TYPE) {
            self.error(
                KIND,
                name,
                "spec.passwordSecret",
                format!("secret type mismatch on Secret {secret_name:?}, type {BASIC_AUTH_SECRET_TYPE:?} is expected"),
            );
            return None;
        }
        let password = secret
            .data
            .as_ref()
            .and_then(|data| data.get("password"))
            .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|data| data.get("password").cloned())
            });
        let Some(password) = password else {
            self.error(
                KIND,
                name,
                "spec.passwordSecret",
                format!("password not specified in the secret {secret_name:?}"),
            );
            return None;
        };
        if password.contains(['\n', '\r']) {
            self.error(
                KIND,
                name,
                "spec.passwordSecret",
                "password secret contains invalid characters",
            );
            return None;
        }
        Some(PeerPassword::FromSecret {
            secret: secret_name.to_owned(),
            password,
        })
    }

    /// frr-k8s runs one BGP instance per node: peers opened from the same node must agree on
    /// routerID and (per VRF) myASN, and must not repeat an address or interface per VRF.
    fn check_peers_sharing_nodes(&mut self, peers: &BTreeMap<String, Peer>) {
        const KIND: &str = "BGPPeer";
        // Input order, so the later object carries the error.
        let ordered: Vec<&Peer> = self
            .inputs
            .bgp_peers
            .iter()
            .filter_map(|object| peers.get(name_of(&object.metadata)))
            .collect();
        let no_known_nodes = self.nodes.is_empty();
        for (index, later) in ordered.iter().enumerate() {
            for earlier in &ordered[..index] {
                if !share_a_node(earlier, later, no_known_nodes) {
                    continue;
                }
                if earlier.router_id != later.router_id {
                    self.error(
                        KIND,
                        &later.name,
                        "spec.routerID",
                        format!(
                            "peer has RouterID {} different from {} of peer {:?} on the same node, all RouterID must be equal",
                            display_ip(later.router_id),
                            display_ip(earlier.router_id),
                            earlier.name
                        ),
                    );
                }
                if earlier.target == later.target && earlier.vrf == later.vrf {
                    self.error(
                        KIND,
                        &later.name,
                        "spec.peerAddress",
                        format!("peer {:?} already exists on the same node with the same address and VRF", earlier.name),
                    );
                }
                if earlier.my_asn != later.my_asn && earlier.vrf == later.vrf {
                    self.error(
                        KIND,
                        &later.name,
                        "spec.myASN",
                        format!(
                            "peer has myAsn {} different from {} of peer {:?} on the same node, all myAsn must be equal for the same VRF",
                            later.my_asn, earlier.my_asn, earlier.name
                        ),
                    );
                }
            }
        }
    }

    /// Pools an advertisement selects: by name (existing only, as MetalLB), by label, or all.
    fn selected_pools<P>(
        &mut self,
        kind: &str,
        name: &str,
        names: &[String],
        selectors: &[Selector],
        pools: &BTreeMap<PoolName, P>,
    ) -> BTreeSet<PoolName> {
        if names.is_empty() && selectors.is_empty() {
            return pools.keys().cloned().collect();
        }
        let mut selected = BTreeSet::new();
        for pool in names {
            let pool = PoolName::from(pool.as_str());
            if pools.contains_key(&pool) {
                selected.insert(pool);
            } else {
                self.warn(
                    kind,
                    name,
                    "spec.ipAddressPools",
                    format!("IPAddressPool {pool:?} does not exist"),
                );
            }
        }
        for object in &self.inputs.pools {
            let labels = labels_of(&object.metadata);
            let pool = PoolName::from(name_of(&object.metadata));
            if pools.contains_key(&pool)
                && selectors.iter().any(|selector| selector.matches(&labels))
            {
                selected.insert(pool);
            }
        }
        selected
    }

    fn l2_advertisements(
        &mut self,
        pools: &BTreeMap<PoolName, ParsedPool>,
    ) -> Vec<L2Advertisement> {
        const KIND: &str = "L2Advertisement";
        let mut advertisements = Vec::new();
        for object in &self.inputs.l2_advertisements {
            let name = name_of(&object.metadata);
            let spec = &object.spec;
            let before = self.errors.len();
            self.duplicates(
                KIND,
                name,
                "spec.ipAddressPools",
                "ipAddressPools",
                &spec.ip_address_pools,
            );
            let pool_selectors = self.selectors(
                KIND,
                name,
                "spec.ipAddressPoolSelectors",
                &spec.ip_address_pool_selectors,
            );
            let node_selectors =
                self.selectors(KIND, name, "spec.nodeSelectors", &spec.node_selectors);
            let service_selectors =
                self.selectors(KIND, name, "spec.serviceSelectors", &spec.service_selectors);
            let mut preferences = Vec::new();
            for (index, preferred) in spec.preferred_node_selectors.iter().enumerate() {
                let field = format!("spec.preferredNodeSelectors[{index}]");
                if !(1..=100).contains(&preferred.weight) {
                    self.error(
                        KIND,
                        name,
                        format!("{field}.weight"),
                        format!(
                            "invalid weight {}: must be between 1 and 100",
                            preferred.weight
                        ),
                    );
                }
                match to_selector(&preferred.preference) {
                    Ok(selector) => preferences.push((selector, i64::from(preferred.weight))),
                    Err(message) => self.error(
                        KIND,
                        name,
                        format!("{field}.preference"),
                        format!("invalid label selector: {message}"),
                    ),
                }
            }
            if self.errors.len() != before {
                continue;
            }
            let (Some(pool_selectors), Some(node_selectors), Some(mut service_selectors)) =
                (pool_selectors, node_selectors, service_selectors)
            else {
                continue;
            };
            let nodes = self.nodes_matching(&node_selectors);
            let mut preferred_nodes = BTreeMap::new();
            for node in &nodes {
                let Some(labels) = self.nodes.get(node) else {
                    continue;
                };
                let score: i64 = preferences
                    .iter()
                    .filter(|(selector, _)| selector.matches(labels))
                    .map(|(_, weight)| weight)
                    .sum();
                if score > 0 {
                    preferred_nodes.insert(node.clone(), score);
                }
            }
            service_selectors.sort();
            let pools =
                self.selected_pools(KIND, name, &spec.ip_address_pools, &pool_selectors, pools);
            advertisements.push(L2Advertisement {
                name: name.to_owned(),
                pools,
                nodes,
                interfaces: spec.interfaces.iter().cloned().collect(),
                service_selectors,
                preferred_nodes,
            });
        }
        advertisements
    }

    fn bgp_advertisements(
        &mut self,
        pools: &BTreeMap<PoolName, ParsedPool>,
        peers: &BTreeMap<String, Peer>,
        communities: &BTreeMap<String, BgpCommunity>,
    ) -> Vec<ParsedBgpAdvertisement> {
        const KIND: &str = "BGPAdvertisement";
        let mut advertisements: Vec<ParsedBgpAdvertisement> = Vec::new();
        for object in &self.inputs.bgp_advertisements {
            let name = name_of(&object.metadata);
            let spec = &object.spec;
            let before = self.errors.len();
            self.duplicates(
                KIND,
                name,
                "spec.ipAddressPools",
                "ipAddressPools",
                &spec.ip_address_pools,
            );
            self.duplicates(
                KIND,
                name,
                "spec.communities",
                "community",
                &spec.communities,
            );
            self.duplicates(KIND, name, "spec.peers", "peers", &spec.peers);
            let pool_selectors = self.selectors(
                KIND,
                name,
                "spec.ipAddressPoolSelectors",
                &spec.ip_address_pool_selectors,
            );
            let node_selectors =
                self.selectors(KIND, name, "spec.nodeSelectors", &spec.node_selectors);
            let service_selectors =
                self.selectors(KIND, name, "spec.serviceSelectors", &spec.service_selectors);
            if !spec.service_selectors.is_empty() {
                if spec.aggregation_length.is_some_and(|length| length != 32) {
                    self.error(KIND, name, "spec.aggregationLength", "serviceSelectors and aggregationLength are mutually exclusive, both cannot be set");
                }
                if spec
                    .aggregation_length_v6
                    .is_some_and(|length| length != 128)
                {
                    self.error(KIND, name, "spec.aggregationLengthV6", "serviceSelectors and aggregationLengthV6 are mutually exclusive, both cannot be set");
                }
            }
            let length_v4 = spec.aggregation_length.unwrap_or(32);
            let aggregation_length_v4 = u8::try_from(length_v4)
                .ok()
                .filter(|length| (1..=32).contains(length));
            if aggregation_length_v4.is_none() {
                self.error(
                    KIND,
                    name,
                    "spec.aggregationLength",
                    format!(
                        "invalid aggregation length {length_v4} for IPv4: must be between 1 and 32"
                    ),
                );
            }
            let length_v6 = spec.aggregation_length_v6.unwrap_or(128);
            let aggregation_length_v6 =
                u8::try_from(length_v6).ok().filter(|length| *length <= 128);
            if aggregation_length_v6.is_none() {
                self.error(KIND, name, "spec.aggregationLengthV6", format!("invalid aggregation length {length_v6} for IPv6: must be between 0 and 128"));
            }
            let mut parsed_communities = BTreeSet::new();
            for (index, text) in spec.communities.iter().enumerate() {
                let field = format!("spec.communities[{index}]");
                if let Some(value) = communities.get(text) {
                    parsed_communities.insert(*value);
                    continue;
                }
                match text.parse::<BgpCommunity>() {
                    Ok(value) => {
                        parsed_communities.insert(value);
                    }
                    Err(error @ CommunityError::Value(_)) => {
                        self.error(
                            KIND,
                            name,
                            field,
                            format!("invalid community {text:?}: {error}"),
                        );
                    }
                    // Not shaped like a community: an alias whose Community may appear later.
                    Err(error) => self.transient(
                        KIND,
                        name,
                        field,
                        format!("invalid community {text:?}: {error}"),
                    ),
                }
            }
            for peer in &spec.peers {
                if !peers.contains_key(peer) {
                    self.warn(
                        KIND,
                        name,
                        "spec.peers",
                        format!("BGPPeer {peer:?} does not exist"),
                    );
                }
            }
            if self.errors.len() != before {
                continue;
            }
            let (
                Some(pool_selectors),
                Some(node_selectors),
                Some(mut service_selectors),
                Some(aggregation_length_v4),
                Some(aggregation_length_v6),
            ) = (
                pool_selectors,
                node_selectors,
                service_selectors,
                aggregation_length_v4,
                aggregation_length_v6,
            )
            else {
                continue;
            };
            service_selectors.sort();
            let selected =
                self.selected_pools(KIND, name, &spec.ip_address_pools, &pool_selectors, pools);
            let no_known_nodes = self.nodes.is_empty();
            let advertisement = BgpAdvertisement {
                name: name.to_owned(),
                pools: selected,
                aggregation_length_v4,
                aggregation_length_v6,
                local_pref: spec.local_pref.unwrap_or(0),
                communities: parsed_communities,
                nodes: self.nodes_matching(&node_selectors),
                peers: spec.peers.iter().cloned().collect(),
                service_selectors,
            };
            let before_pools = self.errors.len();
            for pool_name in &advertisement.pools {
                let Some(pool) = pools.get(pool_name) else {
                    continue;
                };
                self.check_aggregation(&advertisement, pool_name, pool);
                if !advertisement.service_selectors.is_empty() {
                    continue;
                }
                for earlier in &advertisements {
                    let nodes_overlap = if no_known_nodes {
                        node_selectors.is_empty()
                            || earlier.node_selectors.is_empty()
                            || node_selectors == earlier.node_selectors
                    } else {
                        !advertisement
                            .nodes
                            .is_disjoint(&earlier.advertisement.nodes)
                    };
                    let earlier = &earlier.advertisement;
                    if !earlier.pools.contains(pool_name) || !earlier.service_selectors.is_empty() {
                        continue;
                    }
                    if !local_prefs_compatible(&advertisement, earlier, pool, nodes_overlap) {
                        self.error(
                            KIND,
                            name,
                            "spec.localPref",
                            format!(
                                "invalid local preference {}: local preference {} was already set by BGPAdvertisement {:?} for the same type of BGP update on pool \"{pool_name}\". Check existing BGP advertisements with common pools and aggregation lengths",
                                advertisement.local_pref, earlier.local_pref, earlier.name
                            ),
                        );
                    }
                }
            }
            if self.errors.len() != before_pools {
                continue;
            }
            // MetalLB rejects two fully identical objects (name included); identical names are
            // already reported by `check_metadata`.
            advertisements.push(ParsedBgpAdvertisement {
                advertisement,
                node_selectors,
            });
        }
        advertisements
    }

    /// Each `addresses` entry must be announceable with the advertisement's aggregation
    /// length: its shortest prefix must not be longer than the aggregation length.
    fn check_aggregation(
        &mut self,
        advertisement: &BgpAdvertisement,
        pool_name: &PoolName,
        pool: &ParsedPool,
    ) {
        for (entry, cidrs) in &pool.entries {
            let Some(first) = cidrs.first() else {
                continue;
            };
            let (length, field) = match first {
                IpNet::V4(_) => (
                    advertisement.aggregation_length_v4,
                    "spec.aggregationLength",
                ),
                IpNet::V6(_) => (
                    advertisement.aggregation_length_v6,
                    "spec.aggregationLengthV6",
                ),
            };
            let lowest = cidrs.iter().map(IpNet::prefix_len).min().unwrap_or(0);
            if length < lowest {
                self.error(
                    "BGPAdvertisement",
                    &advertisement.name,
                    field,
                    format!(
                        "invalid aggregation length {length}: prefix {lowest} in this pool is more specific than the aggregation length for addresses {entry} (IPAddressPool \"{pool_name}\")"
                    ),
                );
            }
        }
    }

    /// BFD echo mode cannot run on a session that advertises an IPv6 pool.
    fn check_bfd_echo(
        &mut self,
        pools: &BTreeMap<PoolName, ParsedPool>,
        advertisements: &[ParsedBgpAdvertisement],
        peers: &BTreeMap<String, Peer>,
        bfd_profiles: &BTreeMap<String, BfdProfile>,
    ) {
        for ParsedBgpAdvertisement { advertisement, .. } in advertisements {
            for pool_name in &advertisement.pools {
                if !pools.get(pool_name).is_some_and(ParsedPool::has_v6) {
                    continue;
                }
                for peer in peers.values() {
                    if !advertisement.peers.is_empty() && !advertisement.peers.contains(&peer.name)
                    {
                        continue;
                    }
                    let echo = peer
                        .bfd_profile
                        .as_ref()
                        .and_then(|profile| bfd_profiles.get(profile))
                        .is_some_and(|profile| profile.echo_mode);
                    if echo {
                        self.error(
                            "BGPAdvertisement",
                            &advertisement.name,
                            "spec.peers",
                            format!(
                                "pool {pool_name} has bgpadvertisement {} which references peer {} which has bfd echo enabled, which is not possible",
                                advertisement.name, peer.name
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn display_ip(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "<unset>".to_owned(), |ip| ip.to_string())
}

/// Whether two peers are opened from at least one common node. With no Node objects given
/// (an offline check of manifests alone), peers are assumed to share a node when either
/// selects every node or both use the same selectors.
fn share_a_node(a: &Peer, b: &Peer, no_known_nodes: bool) -> bool {
    if no_known_nodes {
        let everything = |peer: &Peer| peer.node_selectors.iter().any(Selector::is_everything);
        return everything(a) || everything(b) || a.node_selectors == b.node_selectors;
    }
    !a.nodes.is_disjoint(&b.nodes)
}

/// MetalLB's `BGPAdvertisementsHaveCompatibleLocalPref`: two advertisements of one pool may
/// set different LOCAL_PREFs only when they cannot produce the same update: (a) different
/// aggregation lengths for every family the pool holds, (b) disjoint non-empty peer lists,
/// (c) disjoint node sets (`nodes_overlap` is computed by the caller, which knows whether
/// Node objects were given). (d), service selectors, is handled by the caller.
fn local_prefs_compatible(
    new: &BgpAdvertisement,
    old: &BgpAdvertisement,
    pool: &ParsedPool,
    nodes_overlap: bool,
) -> bool {
    if new.local_pref == old.local_pref {
        return true;
    }
    let (has_v4, has_v6) = (pool.has_v4(), pool.has_v6());
    let differ_v4 = new.aggregation_length_v4 != old.aggregation_length_v4;
    let differ_v6 = new.aggregation_length_v6 != old.aggregation_length_v6;
    let aggregation_differs = match (has_v4, has_v6) {
        (false, false) => true,
        (true, false) => differ_v4,
        (false, true) => differ_v6,
        (true, true) => differ_v4 && differ_v6,
    };
    if aggregation_differs {
        return true;
    }
    if !new.peers.is_empty() && !old.peers.is_empty() && new.peers.is_disjoint(&old.peers) {
        return true;
    }
    !nodes_overlap
}
