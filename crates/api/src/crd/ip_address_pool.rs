//! `IPAddressPool` (`metallb.io/v1beta1`): the addresses the controller hands out.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::is_empty;

/// `spec` of an `IPAddressPool`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "IPAddressPool",
    plural = "ipaddresspools",
    singular = "ipaddresspool",
    namespaced,
    status = "IPAddressPoolStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "IPAddressPool represents a pool of IP addresses that can be allocated to LoadBalancer services.",
    printcolumn(
        name = "Auto Assign",
        type_ = "boolean",
        json_path = ".spec.autoAssign"
    ),
    printcolumn(
        name = "Avoid Buggy IPs",
        type_ = "boolean",
        json_path = ".spec.avoidBuggyIPs"
    ),
    printcolumn(name = "Addresses", type_ = "string", json_path = ".spec.addresses")
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// CIDRs (`192.168.1.0/24`, `fc00::/64`) or ranges (`192.168.1.10-192.168.1.20`) to
    /// assign from. IPv4 and IPv6 may be mixed in one pool.
    ///
    /// Each entry is checked by the API server (CEL): a CIDR, or two IPs of one family joined
    /// by `-` (spaces around them allowed). The bounds (5000 entries of at most 128 characters)
    /// keep the rules within Kubernetes' CEL cost budget; a range of the longest IPv6 spellings
    /// is 91 characters.
    #[schemars(extend(
        "maxItems" = ADDRESSES_MAX_ITEMS,
        "x-kubernetes-validations" = [{
            "rule": "size(self) > 0",
            "message": "pool has no prefixes defined"
        }],
        "items" = {
            "type": "string",
            "maxLength": ADDRESS_MAX_LENGTH,
            "x-kubernetes-validations": [
                {
                    "rule": "self.contains('-') || isCIDR(self)",
                    "messageExpression": "'invalid CIDR ' + strings.quote(self) + ': must be a CIDR (192.168.1.0/24) or a range (192.168.1.10-192.168.1.20)'",
                    "message": "invalid CIDR: must be a CIDR (192.168.1.0/24) or a range (192.168.1.10-192.168.1.20)"
                },
                {
                    "rule": "!self.contains('-') || (isIP(self.substring(0, self.indexOf('-')).trim()) && isIP(self.substring(self.indexOf('-') + 1).trim()) && self.substring(0, self.indexOf('-')).contains(':') == self.substring(self.indexOf('-') + 1).contains(':'))",
                    "messageExpression": "'invalid IP range ' + strings.quote(self) + ': start and end must be IP addresses of the same family'",
                    "message": "invalid IP range: start and end must be IP addresses of the same family"
                }
            ]
        }
    ))]
    pub addresses: Vec<String>,
    /// Whether the pool is used for automatic assignment (default true). When false, only a
    /// requested IP or the `metallb.io/address-pool` annotation uses it.
    #[serde(default = "default_true")]
    pub auto_assign: bool,
    /// Skip every IPv4 address ending in `.0` or `.255`.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// Which services may use this pool, and with what priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocation>,
}

/// Most entries in `spec.addresses` (a bound for the CEL cost estimate; MetalLB has none).
pub const ADDRESSES_MAX_ITEMS: u32 = 5000;

/// Longest entry in `spec.addresses` (a bound for the CEL cost estimate).
pub const ADDRESS_MAX_LENGTH: u32 = 128;

fn default_true() -> bool {
    true
}

/// `spec.serviceAllocation`: restricts a pool to some namespaces and services.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Lower is preferred; 0 or unset is the lowest priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Namespaces whose services may use the pool.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces, by label, whose services may use the pool.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Services, by label, that may use the pool (any selector matches).
    #[serde(default, skip_serializing_if = "is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}

/// `status` of an `IPAddressPool`, written by the controller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolStatus {
    /// IPv4 addresses assigned to services.
    #[serde(rename = "assignedIPv4")]
    pub assigned_ipv4: i64,
    /// IPv6 addresses assigned to services.
    #[serde(rename = "assignedIPv6")]
    pub assigned_ipv6: i64,
    /// IPv4 addresses still available.
    #[serde(rename = "availableIPv4")]
    pub available_ipv4: i64,
    /// IPv6 addresses still available.
    #[serde(rename = "availableIPv6")]
    pub available_ipv6: i64,
}
