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
    pub communities: Vec<CommunityAlias>,
}

/// One alias: `name` stands for `value` (`AA:NN` or `large:A:B:C`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommunityAlias {
    /// The alias, usable in `BGPAdvertisement.spec.communities`.
    #[serde(default)]
    pub name: String,
    /// The community value.
    #[serde(default)]
    pub value: String,
}

/// `status` of a `Community` (empty, as MetalLB's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommunityStatus {}
