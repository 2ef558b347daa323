//! Everything [`Config::parse`](super::Config::parse) reads.

use k8s_openapi::api::core::v1::{Namespace, Node, Secret};

use super::ConfigError;
use crate::crd::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement,
};

/// The namespace MetalLB (and ironlb) read their configuration from by default.
pub const DEFAULT_NAMESPACE: &str = "metallb-system";

/// The objects a configuration is built from. `v1beta1` BGPPeers are converted to `v1beta2`
/// before they land here.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigInputs {
    /// The namespace the `metallb.io` objects must live in.
    pub namespace: String,
    /// `IPAddressPool`s.
    pub pools: Vec<IPAddressPool>,
    /// `L2Advertisement`s.
    pub l2_advertisements: Vec<L2Advertisement>,
    /// `BGPAdvertisement`s.
    pub bgp_advertisements: Vec<BGPAdvertisement>,
    /// `BGPPeer`s (`v1beta2`).
    pub bgp_peers: Vec<BGPPeer>,
    /// `BFDProfile`s.
    pub bfd_profiles: Vec<BFDProfile>,
    /// `Community` alias sets.
    pub communities: Vec<Community>,
    /// Namespaces, for `serviceAllocation.namespaceSelectors`.
    pub namespaces: Vec<Namespace>,
    /// Nodes, for every `nodeSelectors`.
    pub nodes: Vec<Node>,
    /// Secrets, for `BGPPeer.spec.passwordSecret` (only those in `namespace` are used).
    pub secrets: Vec<Secret>,
    /// Problems found before parsing (objects that did not decode, a legacy ConfigMap that did
    /// not convert); [`Config::parse`](super::Config::parse) reports them with its own.
    pub problems: Vec<ConfigError>,
}

impl Default for ConfigInputs {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            pools: Vec::new(),
            l2_advertisements: Vec::new(),
            bgp_advertisements: Vec::new(),
            bgp_peers: Vec::new(),
            bfd_profiles: Vec::new(),
            communities: Vec::new(),
            namespaces: Vec::new(),
            nodes: Vec::new(),
            secrets: Vec::new(),
            problems: Vec::new(),
        }
    }
}

impl ConfigInputs {
    /// True when no `metallb.io` configuration object is present.
    pub fn has_no_metallb_objects(&self) -> bool {
        self.pools.is_empty()
            && self.l2_advertisements.is_empty()
            && self.bgp_advertisements.is_empty()
            && self.bgp_peers.is_empty()
            && self.bfd_profiles.is_empty()
            && self.communities.is_empty()
    }
}
