//! `Community` (`metallb.io/v1beta1`): named aliases for BGP community values.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::is_empty;

/// `spec` of a `Community`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "Community",
    plural = "communities",
    singular = "community",
    namespaced,
    status = "CommunityStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Community is a collection of aliases for communities. Users can define named aliases to be used in the BGPPeer CRD."
)]
pub struct CommunitySpec {
    /// The aliases.
    #[serde(default, skip_serializing_if = "is_empty")]
    #[schemars(extend("maxItems" = COMMUNITIES_MAX_ITEMS))]
    pub communities: Vec<CommunityAlias>,
}

/// One alias: `name` stands for `value` (`AA:NN` or `large:A:B:C`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommunityAlias {
    /// The alias, usable in `BGPAdvertisement.spec.communities`.
    #[serde(default)]
    pub name: String,
    /// The community value.
    ///
    /// Checked by the API server (CEL): two 16-bit numbers `AA:NN`, or `large:` and three
    /// 32-bit numbers. The bounds (1000 aliases, values of at most 64 characters) keep the rule
    /// within Kubernetes' CEL cost budget; the longest value without leading zeros is 38
    /// characters.
    #[serde(default)]
    #[schemars(extend(
        "maxLength" = COMMUNITY_VALUE_MAX_LENGTH,
        "x-kubernetes-validations" = [{
            "rule": "self.startsWith('large:') ? self.matches('^large:[0-9]+:[0-9]+:[0-9]+$') && self.split(':').all(part, part == 'large' || int(part) <= 4294967295) : self.matches('^[0-9]+:[0-9]+$') && self.split(':').all(part, int(part) <= 65535)",
            "messageExpression": "'invalid community value ' + strings.quote(self) + ': AA:NN takes two 16-bit numbers, large:A:B:C three 32-bit numbers'",
            "message": "invalid community value: AA:NN takes two 16-bit numbers, large:A:B:C three 32-bit numbers"
        }]
    ))]
    pub value: String,
}

/// Most aliases in one `Community` (a bound for the CEL cost estimate; MetalLB has none).
pub const COMMUNITIES_MAX_ITEMS: u32 = 1000;

/// Longest `value` of an alias (a bound for the CEL cost estimate).
pub const COMMUNITY_VALUE_MAX_LENGTH: u32 = 64;

/// `status` of a `Community` (empty, as MetalLB's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommunityStatus {}
