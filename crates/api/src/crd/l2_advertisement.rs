//! `L2Advertisement` (`metallb.io/v1beta1`): which pools are announced by ARP/NDP, from where.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::is_empty;

/// `spec` of an `L2Advertisement`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "L2Advertisement",
    plural = "l2advertisements",
    singular = "l2advertisement",
    namespaced,
    status = "L2AdvertisementStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "L2Advertisement allows to advertise the LoadBalancer IPs provided by the selected pools via L2.",
    printcolumn(
        name = "IPAddressPools",
        type_ = "string",
        json_path = ".spec.ipAddressPools"
    ),
    printcolumn(
        name = "IPAddressPool Selectors",
        type_ = "string",
        json_path = ".spec.ipAddressPoolSelectors"
    ),
    printcolumn(name = "Interfaces", type_ = "string", json_path = ".spec.interfaces"),
    printcolumn(
        name = "Node Selectors",
        type_ = "string",
        json_path = ".spec.nodeSelectors",
        priority = 10
    )
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Pools to announce, by name. With `ipAddressPoolSelectors` empty too: every pool.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub ip_address_pools: Vec<String>,
    /// Pools to announce, by label.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that may announce. Empty: every node.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// Interfaces to announce from. Empty: every interface.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub interfaces: Vec<String>,
    /// Services to announce, by label (any selector matches). Empty: every service.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub service_selectors: Vec<LabelSelector>,
    /// Soft preferences for the announcing node.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub preferred_node_selectors: Vec<PreferredNodeSelector>,
}

/// One weighted node preference of an `L2Advertisement`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferredNodeSelector {
    /// Added to the score of every node the preference matches.
    #[schemars(range(min = 1, max = 100))]
    pub weight: i32,
    /// The nodes this preference applies to.
    pub preference: LabelSelector,
}

/// `status` of an `L2Advertisement` (empty, as MetalLB's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct L2AdvertisementStatus {}
