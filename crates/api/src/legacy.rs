//! MetalLB's legacy ConfigMap (`config`, key `config`, ≤ v0.12) and its conversion into the
//! `metallb.io` objects, by the rules of MetalLB's offline converter `configmaptocrs`:
//! pools keep their (normalised) names, layer-2 pools get `l2advertisement<N>`, every BGP
//! advertisement becomes `bgpadvertisement<N>` (an empty one for a BGP pool without any),
//! peers become `peer<N>` (`v1beta2`), `bgp-communities` becomes one `Community` named
//! `communities`, and BFD profiles keep their (normalised) names. Names are normalised by
//! turning `_` into `-` and upper case into lower case.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use serde::{Deserialize, Serialize};

use crate::config::duration::{format_go_duration, parse_go_duration};
use crate::config::{ConfigError, ConfigInputs, DEFAULT_NAMESPACE};
use crate::crd::{
    BFDProfile, BFDProfileSpec, BGPAdvertisement, BGPAdvertisementSpec, BGPPeer, BGPPeerSpec,
    Community, CommunityAlias, CommunitySpec, IPAddressPool, IPAddressPoolSpec, L2Advertisement,
    L2AdvertisementSpec,
};

/// The ConfigMap name and data key MetalLB ≤ v0.12 read.
pub const LEGACY_CONFIG_MAP_NAME: &str = "config";

/// Whether `map` is the legacy configuration: named `config`, with a `config` key, in the
/// MetalLB namespace (or with no namespace set).
pub fn is_legacy_config(map: &ConfigMap) -> bool {
    let in_namespace = map
        .metadata
        .namespace
        .as_deref()
        .is_none_or(|namespace| namespace == DEFAULT_NAMESPACE);
    map.metadata.name.as_deref() == Some(LEGACY_CONFIG_MAP_NAME)
        && in_namespace
        && map
            .data
            .as_ref()
            .is_some_and(|data| data.contains_key(LEGACY_CONFIG_MAP_NAME))
}

/// The objects a legacy ConfigMap converts into.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LegacyResources {
    /// One per `address-pools` entry.
    pub pools: Vec<IPAddressPool>,
    /// One per `layer2` pool.
    pub l2_advertisements: Vec<L2Advertisement>,
    /// One per BGP advertisement (or per BGP pool without any).
    pub bgp_advertisements: Vec<BGPAdvertisement>,
    /// One per peer.
    pub bgp_peers: Vec<BGPPeer>,
    /// One per BFD profile.
    pub bfd_profiles: Vec<BFDProfile>,
    /// At most one, named `communities`.
    pub communities: Vec<Community>,
}

impl LegacyResources {
    /// Appends the converted objects to `inputs`.
    pub fn extend_inputs(self, inputs: &mut ConfigInputs) {
        inputs.pools.extend(self.pools);
        inputs.l2_advertisements.extend(self.l2_advertisements);
        inputs.bgp_advertisements.extend(self.bgp_advertisements);
        inputs.bgp_peers.extend(self.bgp_peers);
        inputs.bfd_profiles.extend(self.bfd_profiles);
        inputs.communities.extend(self.communities);
    }

    /// Every object as multi-document YAML (pools, L2 and BGP advertisements, peers, BFD
    /// profiles, communities), ready for `kubectl apply -f -`.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        let mut documents = Vec::new();
        for pool in &self.pools {
            documents.push(serde_yaml::to_string(pool)?);
        }
        for advertisement in &self.l2_advertisements {
            documents.push(serde_yaml::to_string(advertisement)?);
        }
        for advertisement in &self.bgp_advertisements {
            documents.push(serde_yaml::to_string(advertisement)?);
        }
        for peer in &self.bgp_peers {
            documents.push(serde_yaml::to_string(peer)?);
        }
        for profile in &self.bfd_profiles {
            documents.push(serde_yaml::to_string(profile)?);
        }
        for community in &self.communities {
            documents.push(serde_yaml::to_string(community)?);
        }
        Ok(documents.join("---\n"))
    }
}

/// The `config` document of the legacy ConfigMap.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyConfig {
    #[serde(default)]
    peers: Vec<LegacyPeer>,
    #[serde(default, rename = "bgp-communities")]
    bgp_communities: BTreeMap<String, String>,
    #[serde(default, rename = "address-pools")]
    address_pools: Vec<LegacyPool>,
    #[serde(default, rename = "bfd-profiles")]
    bfd_profiles: Vec<LegacyBfdProfile>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LegacyPeer {
    #[serde(default)]
    my_asn: u32,
    #[serde(default)]
    peer_asn: u32,
    #[serde(default)]
    peer_address: String,
    #[serde(default)]
    source_address: Option<String>,
    #[serde(default)]
    peer_port: Option<u16>,
    #[serde(default)]
    hold_time: Option<String>,
    #[serde(default)]
    keepalive_time: Option<String>,
    #[serde(default)]
    router_id: Option<String>,
    #[serde(default)]
    node_selectors: Vec<LegacyNodeSelector>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    bfd_profile: Option<String>,
    #[serde(default)]
    ebgp_multihop: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LegacyNodeSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<LegacyMatchExpression>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyMatchExpression {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LegacyPool {
    #[serde(default)]
    name: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    avoid_buggy_ips: bool,
    #[serde(default)]
    auto_assign: Option<bool>,
    #[serde(default)]
    bgp_advertisements: Vec<LegacyBgpAdvertisement>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LegacyBgpAdvertisement {
    #[serde(default)]
    aggregation_length: Option<i32>,
    #[serde(default)]
    aggregation_length_v6: Option<i32>,
    #[serde(default)]
    localpref: Option<u32>,
    #[serde(default)]
    communities: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LegacyBfdProfile {
    #[serde(default)]
    name: String,
    #[serde(default)]
    receive_interval: Option<u32>,
    #[serde(default)]
    transmit_interval: Option<u32>,
    #[serde(default)]
    detect_multiplier: Option<u32>,
    #[serde(default)]
    echo_interval: Option<u32>,
    #[serde(default)]
    echo_mode: bool,
    #[serde(default)]
    passive_mode: bool,
    #[serde(default)]
    minimum_ttl: Option<u32>,
}

/// `_` → `-`, upper case → lower case: how `configmaptocrs` makes names Kubernetes accepts.
pub fn normalize_name(name: &str) -> String {
    name.replace('_', "-").to_lowercase()
}

/// Converts the legacy ConfigMap into the equivalent objects, in the ConfigMap's namespace.
pub fn convert_config_map(map: &ConfigMap) -> Result<LegacyResources, ConfigError> {
    let name = map.metadata.name.clone().unwrap_or_default();
    let error = |field: &str, message: String| ConfigError::new("ConfigMap", &name, field, message);
    let text = map
        .data
        .as_ref()
        .and_then(|data| data.get(LEGACY_CONFIG_MAP_NAME))
        .ok_or_else(|| error("data.config", "missing".to_owned()))?;
    let namespace = map
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let config: LegacyConfig = serde_yaml::from_str(text).map_err(|parse_error| {
        error(
            "data.config",
            format!("not a valid configuration: {parse_error}"),
        )
    })?;
    convert(&config, &namespace).map_err(|(field, message)| error(&field, message))
}

fn meta(name: String, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_owned()),
        ..ObjectMeta::default()
    }
}

fn convert(config: &LegacyConfig, namespace: &str) -> Result<LegacyResources, (String, String)> {
    let mut resources = LegacyResources::default();
    for pool in &config.address_pools {
        let pool_name = normalize_name(&pool.name);
        resources.pools.push(IPAddressPool {
            metadata: meta(pool_name.clone(), namespace),
            spec: IPAddressPoolSpec {
                addresses: pool.addresses.clone(),
                auto_assign: pool.auto_assign.unwrap_or(true),
                avoid_buggy_ips: pool.avoid_buggy_ips,
                service_allocation: None,
            },
            status: None,
        });
        if pool.protocol == "layer2" {
            let number = resources.l2_advertisements.len() + 1;
            resources.l2_advertisements.push(L2Advertisement {
                metadata: meta(format!("l2advertisement{number}"), namespace),
                spec: L2AdvertisementSpec {
                    ip_address_pools: vec![pool_name.clone()],
                    ..L2AdvertisementSpec::default()
                },
                status: None,
            });
        }
        if pool.protocol == "bgp" {
            let advertisements = if pool.bgp_advertisements.is_empty() {
                vec![LegacyBgpAdvertisement::default()]
            } else {
                pool.bgp_advertisements.clone()
            };
            for advertisement in advertisements {
                let number = resources.bgp_advertisements.len() + 1;
                resources.bgp_advertisements.push(BGPAdvertisement {
                    metadata: meta(format!("bgpadvertisement{number}"), namespace),
                    spec: BGPAdvertisementSpec {
                        aggregation_length: advertisement.aggregation_length,
                        aggregation_length_v6: advertisement.aggregation_length_v6,
                        local_pref: advertisement.localpref,
                        communities: advertisement.communities,
                        ip_address_pools: vec![pool_name.clone()],
                        ..BGPAdvertisementSpec::default()
                    },
                    status: None,
                });
            }
        }
    }
    for (index, peer) in config.peers.iter().enumerate() {
        let field = |name: &str| format!("data.config: peers[{index}].{name}");
        let duration =
            |text: &Option<String>, name: &str| -> Result<Option<String>, (String, String)> {
                text.as_deref()
                    .map(|text| {
                        parse_go_duration(text)
                            .map(format_go_duration)
                            .map_err(|parse_error| (field(name), parse_error.to_string()))
                    })
                    .transpose()
            };
        resources.bgp_peers.push(BGPPeer {
            metadata: meta(format!("peer{}", index + 1), namespace),
            spec: BGPPeerSpec {
                my_asn: peer.my_asn,
                peer_asn: (peer.peer_asn != 0).then_some(peer.peer_asn),
                peer_address: Some(peer.peer_address.clone()),
                source_address: peer.source_address.clone(),
                peer_port: peer.peer_port.filter(|port| *port != 0).unwrap_or(179),
                hold_time: duration(&peer.hold_time, "hold-time")?,
                keepalive_time: duration(&peer.keepalive_time, "keepalive-time")?,
                router_id: peer.router_id.clone(),
                node_selectors: peer.node_selectors.iter().map(label_selector).collect(),
                password: peer.password.clone(),
                bfd_profile: peer.bfd_profile.as_deref().map(normalize_name),
                ebgp_multi_hop: peer.ebgp_multihop,
                ..BGPPeerSpec::default()
            },
            status: None,
        });
    }
    if !config.bgp_communities.is_empty() {
        resources.communities.push(Community {
            metadata: meta("communities".to_owned(), namespace),
            spec: CommunitySpec {
                communities: config
                    .bgp_communities
                    .iter()
                    .map(|(name, value)| CommunityAlias {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            },
            status: None,
        });
    }
    for profile in &config.bfd_profiles {
        resources.bfd_profiles.push(BFDProfile {
            metadata: meta(normalize_name(&profile.name), namespace),
            spec: BFDProfileSpec {
                receive_interval: profile.receive_interval,
                transmit_interval: profile.transmit_interval,
                detect_multiplier: profile.detect_multiplier,
                echo_interval: profile.echo_interval,
                echo_mode: Some(profile.echo_mode),
                passive_mode: Some(profile.passive_mode),
                minimum_ttl: profile.minimum_ttl,
            },
            status: None,
        });
    }
    Ok(resources)
}

fn label_selector(selector: &LegacyNodeSelector) -> LabelSelector {
    LabelSelector {
        match_labels: (!selector.match_labels.is_empty()).then(|| selector.match_labels.clone()),
        match_expressions: (!selector.match_expressions.is_empty()).then(|| {
            selector
                .match_expressions
                .iter()
                .map(|expression| LabelSelectorRequirement {
                    key: expression.key.clone(),
                    operator: expression.operator.clone(),
                    values: (!expression.values.is_empty()).then(|| expression.values.clone()),
                })
                .collect()
        }),
    }
}
