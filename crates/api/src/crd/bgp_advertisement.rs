//! `BGPAdvertisement` (`metallb.io/v1beta1`): how pools are announced over BGP.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::is_empty;

/// `spec` of a `BGPAdvertisement`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "BGPAdvertisement",
    plural = "bgpadvertisements",
    singular = "bgpadvertisement",
    namespaced,
    status = "BGPAdvertisementStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "BGPAdvertisement allows to advertise the IPs coming from the selected IPAddressPools via BGP, setting the parameters of the BGP Advertisement.",
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
    printcolumn(name = "Peers", type_ = "string", json_path = ".spec.peers"),
    printcolumn(
        name = "Node Selectors",
        type_ = "string",
        json_path = ".spec.nodeSelectors",
        priority = 10
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.serviceSelectors) || size(self.serviceSelectors) == 0 || ((!has(self.aggregationLength) || self.aggregationLength == 32) && (!has(self.aggregationLengthV6) || self.aggregationLengthV6 == 128))",
    "message": "serviceSelectors can't be used in combination with aggregationLength or aggregationLengthV6 other than the default"
}]))]
pub struct BGPAdvertisementSpec {
    /// Prefix length of the announced IPv4 aggregate (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        range(min = 1),
        extend(
            "default" = 32,
            "x-kubernetes-validations" = [{
                "rule": "self <= 32",
                "messageExpression": "'invalid aggregation length ' + string(self) + ' for IPv4: must be between 1 and 32'",
                "message": "invalid aggregation length for IPv4: must be between 1 and 32"
            }]
        )
    )]
    pub aggregation_length: Option<i32>,
    /// Prefix length of the announced IPv6 aggregate (default 128).
    #[serde(
        default,
        rename = "aggregationLengthV6",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend(
        "default" = 128,
        "x-kubernetes-validations" = [{
            "rule": "self >= 0 && self <= 128",
            "messageExpression": "'invalid aggregation length ' + string(self) + ' for IPv6: must be between 0 and 128'",
            "message": "invalid aggregation length for IPv6: must be between 0 and 128"
        }]
    ))]
    pub aggregation_length_v6: Option<i32>,
    /// LOCAL_PREF attribute, sent to iBGP peers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// Communities: `AA:NN`, `large:A:B:C`, or the name of an alias in a `Community`.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub communities: Vec<String>,
    /// Pools to announce, by name. With `ipAddressPoolSelectors` empty too: every pool.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub ip_address_pools: Vec<String>,
    /// Pools to announce, by label.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that announce (next hops). Empty: every node.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// BGPPeer names to announce to. Empty: every peer.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub peers: Vec<String>,
    /// Services to announce, by label (any selector matches). Empty: every service.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}

/// `status` of a `BGPAdvertisement` (empty, as MetalLB's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BGPAdvertisementStatus {}
