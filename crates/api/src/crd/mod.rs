//! The `metallb.io` custom resources, as `kube::CustomResource` derives.
//!
//! Field names, defaults and schema markers follow MetalLB's `api/v1beta1` and `api/v1beta2`
//! packages so that existing manifests deserialize unchanged and [`crds`] generates CRDs an API
//! server accepts. These are wire types: they may hold values that the configuration parser
//! (`crate::config`) rejects.

// Several `printcolumn(...)` arguments of `#[kube]` repeat `type_ = "string"`; clippy reads
// them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::crd::merge_crds;
use kube::CustomResourceExt;

pub mod bfd_profile;
pub mod bgp_advertisement;
pub mod bgp_peer;
pub mod community;
pub mod ip_address_pool;
pub mod l2_advertisement;
pub mod status;

pub use bfd_profile::{BFDProfile, BFDProfileSpec, BFDProfileStatus};
pub use bgp_advertisement::{BGPAdvertisement, BGPAdvertisementSpec, BGPAdvertisementStatus};
pub use bgp_peer::v1beta2::{BGPPeer, BGPPeerSpec, BGPPeerStatus, DynamicAsnMode};
pub use community::{Community, CommunityAlias, CommunitySpec, CommunityStatus};
pub use ip_address_pool::{
    IPAddressPool, IPAddressPoolSpec, IPAddressPoolStatus, ServiceAllocation,
};
pub use l2_advertisement::{
    L2Advertisement, L2AdvertisementSpec, L2AdvertisementStatus, PreferredNodeSelector,
};
pub use status::{
    ConfigurationResult, ConfigurationState, ConfigurationStateSpec, ConfigurationStateStatus,
    InterfaceInfo, ServiceBGPStatus, ServiceBGPStatusSpec, ServiceBGPStatusStatus, ServiceL2Status,
    ServiceL2StatusSpec, ServiceL2StatusStatus,
};

/// The API group of every kind here.
pub const GROUP: &str = "metallb.io";

/// The warning the API server returns for requests to `metallb.io/v1beta1` BGPPeers.
pub const BGP_PEER_V1BETA1_WARNING: &str = "v1beta1 is deprecated, please use v1beta2";

/// Every `metallb.io` CustomResourceDefinition, in a stable order (by plural name).
///
/// `bgppeers.metallb.io` serves `v1beta2` (storage) and `v1beta1` (deprecated, with
/// [`BGP_PEER_V1BETA1_WARNING`]).
pub fn crds() -> Vec<CustomResourceDefinition> {
    // Invariant: both inputs come from derives of the same group, kind and scope, each with one
    // version, and "v1beta2" is one of them; `merge_crds` can only fail on those.
    let bgp_peers = merge_crds(
        vec![bgp_peer::v1beta1::BGPPeer::crd(), BGPPeer::crd()],
        "v1beta2",
    )
    .expect("the two BGPPeer CRDs merge");
    let mut crds = vec![
        BFDProfile::crd(),
        BGPAdvertisement::crd(),
        bgp_peers,
        Community::crd(),
        ConfigurationState::crd(),
        IPAddressPool::crd(),
        L2Advertisement::crd(),
        ServiceBGPStatus::crd(),
        ServiceL2Status::crd(),
    ];
    // MetalLB's `spec` fields are `omitempty`: an object without `spec` is valid (an
    // L2Advertisement with no spec announces every pool from every node).
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            let schema = version
                .schema
                .as_mut()
                .and_then(|schema| schema.open_api_v3_schema.as_mut());
            if let Some(required) = schema.and_then(|schema| schema.required.as_mut()) {
                required.retain(|field| field != "spec");
            }
        }
    }
    crds
}

/// `serde(skip_serializing_if)` helper for lists that are omitted when empty, as Go's
/// `omitempty` does.
pub(crate) fn is_empty<T>(list: &[T]) -> bool {
    list.is_empty()
}

/// `serde(skip_serializing_if)` helper for `false` booleans (Go's `omitempty`).
pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Checks the rules of a structural schema that a derive can break: every node has a type
    /// (or is int-or-string / preserves unknown fields), no `$ref`, no type inside `anyOf`,
    /// `oneOf`, `allOf` or `not`, arrays have `items`, objects do not mix `properties` and
    /// `additionalProperties`.
    fn check_structural(path: &str, schema: &Value, problems: &mut Vec<String>) {
        let Some(object) = schema.as_object() else {
            problems.push(format!("{path}: not an object"));
            return;
        };
        if object.contains_key("$ref") {
            problems.push(format!("{path}: $ref"));
        }
        let special = object.contains_key("x-kubernetes-int-or-string")
            || object.contains_key("x-kubernetes-preserve-unknown-fields");
        match object.get("type").and_then(Value::as_str) {
            None if !special => problems.push(format!("{path}: no type")),
            Some("array") if !object.contains_key("items") => {
                problems.push(format!("{path}: array without items"));
            }
            Some("object")
                if object.contains_key("properties")
                    && object.contains_key("additionalProperties") =>
            {
                problems.push(format!("{path}: properties and additionalProperties"));
            }
            _ => {}
        }
        for keyword in ["anyOf", "oneOf", "allOf", "not"] {
            let Some(branches) = object.get(keyword) else {
                continue;
            };
            let branches = branches
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![branches.clone()]);
            for branch in branches {
                for forbidden in [
                    "type",
                    "properties",
                    "items",
                    "additionalProperties",
                    "default",
                ] {
                    if branch.get(forbidden).is_some() {
                        problems.push(format!("{path}.{keyword}: {forbidden} inside"));
                    }
                }
            }
        }
        if let Some(properties) = object.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                check_structural(&format!("{path}.{name}"), property, problems);
            }
        }
        if let Some(items) = object.get("items") {
            check_structural(&format!("{path}[]"), items, problems);
        }
        if let Some(additional) = object.get("additionalProperties").filter(|v| v.is_object()) {
            check_structural(&format!("{path}{{}}"), additional, problems);
        }
    }

    #[test]
    fn every_crd_has_expected_names_and_structural_schema() {
        let want = [
            ("bfdprofiles", "BFDProfile", "bfdprofile"),
            ("bgpadvertisements", "BGPAdvertisement", "bgpadvertisement"),
            ("bgppeers", "BGPPeer", "bgppeer"),
            ("communities", "Community", "community"),
            (
                "configurationstates",
                "ConfigurationState",
                "configurationstate",
            ),
            ("ipaddresspools", "IPAddressPool", "ipaddresspool"),
            ("l2advertisements", "L2Advertisement", "l2advertisement"),
            ("servicebgpstatuses", "ServiceBGPStatus", "servicebgpstatus"),
            ("servicel2statuses", "ServiceL2Status", "servicel2status"),
        ];
        let crds = crds();
        assert_eq!(crds.len(), want.len());
        for (crd, (plural, kind, singular)) in crds.iter().zip(want) {
            let json = serde_json::to_value(crd).unwrap();
            let yaml = serde_yaml::to_string(crd).unwrap();
            assert!(yaml.contains(&format!("kind: {kind}")), "{kind}");
            assert_eq!(
                crd.metadata.name.as_deref(),
                Some(&*format!("{plural}.metallb.io"))
            );
            assert_eq!(crd.spec.group, GROUP);
            assert_eq!(crd.spec.scope, "Namespaced");
            assert_eq!(crd.spec.names.plural, plural);
            assert_eq!(crd.spec.names.kind, kind);
            assert_eq!(crd.spec.names.singular.as_deref(), Some(singular));
            for version in &crd.spec.versions {
                let status = version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref());
                assert!(
                    status.is_some(),
                    "{kind} {}: status subresource",
                    version.name
                );
                let schema = &json["spec"]["versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|v| v["name"] == version.name.as_str())
                    .unwrap()["schema"]["openAPIV3Schema"];
                let mut problems = Vec::new();
                check_structural(kind, schema, &mut problems);
                assert!(
                    problems.is_empty(),
                    "{kind} {}: {problems:#?}",
                    version.name
                );
                assert!(schema["properties"]["spec"].is_object(), "{kind}: spec");
                assert!(schema["properties"]["status"].is_object(), "{kind}: status");
                let required = schema["required"].as_array().cloned().unwrap_or_default();
                assert!(
                    !required.contains(&"spec".into()),
                    "{kind}: spec is optional"
                );
            }
        }
    }

    #[test]
    fn bgp_peer_serves_both_versions() {
        let crds = crds();
        let peers = crds
            .iter()
            .find(|c| c.spec.names.kind == "BGPPeer")
            .unwrap();
        let versions: Vec<_> = peers
            .spec
            .versions
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.served,
                    v.storage,
                    v.deprecated,
                    v.deprecation_warning.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            versions,
            vec![
                ("v1beta2", true, true, None, None),
                (
                    "v1beta1",
                    true,
                    false,
                    Some(true),
                    Some(BGP_PEER_V1BETA1_WARNING)
                ),
            ]
        );
    }

    fn number(value: &Value) -> i64 {
        value.as_f64().unwrap() as i64
    }

    #[test]
    fn schema_markers_match_metallb() {
        let crds = serde_json::to_value(crds()).unwrap();
        let spec_of = |kind: &str, version: &str| {
            crds.as_array()
                .unwrap()
                .iter()
                .find(|c| c["spec"]["names"]["kind"] == kind)
                .and_then(|c| {
                    c["spec"]["versions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|v| v["name"] == version)
                        .cloned()
                })
                .unwrap()["schema"]["openAPIV3Schema"]["properties"]["spec"]
                .clone()
        };
        let pool = spec_of("IPAddressPool", "v1beta1");
        assert_eq!(pool["required"], serde_json::json!(["addresses"]));
        assert_eq!(pool["properties"]["autoAssign"]["default"], true);
        assert!(pool["properties"]["avoidBuggyIPs"].is_object());
        let peer = spec_of("BGPPeer", "v1beta2");
        assert_eq!(number(&peer["properties"]["peerPort"]["default"]), 179);
        assert_eq!(number(&peer["properties"]["peerPort"]["maximum"]), 16384);
        assert_eq!(number(&peer["properties"]["peerPort"]["minimum"]), 1);
        assert_eq!(
            peer["properties"]["dynamicASN"]["enum"],
            serde_json::json!(["internal", "external"])
        );
        assert_eq!(
            peer["properties"]["enableGracefulRestart"]["x-kubernetes-validations"][0]["rule"],
            "self == oldSelf"
        );
        assert_eq!(peer["required"], serde_json::json!(["myASN"]));
        let old_peer = spec_of("BGPPeer", "v1beta1");
        assert_eq!(
            old_peer["required"],
            serde_json::json!(["myASN", "peerASN", "peerAddress"])
        );
        let bfd = spec_of("BFDProfile", "v1beta1");
        assert_eq!(number(&bfd["properties"]["detectMultiplier"]["minimum"]), 2);
        assert_eq!(
            number(&bfd["properties"]["detectMultiplier"]["maximum"]),
            255
        );
        assert_eq!(number(&bfd["properties"]["minimumTtl"]["maximum"]), 254);
        let advertisement = spec_of("BGPAdvertisement", "v1beta1");
        assert_eq!(
            number(&advertisement["properties"]["aggregationLength"]["default"]),
            32
        );
        assert_eq!(
            number(&advertisement["properties"]["aggregationLength"]["minimum"]),
            1
        );
        assert_eq!(
            number(&advertisement["properties"]["aggregationLengthV6"]["default"]),
            128
        );
        assert!(advertisement["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("serviceSelectors"));
        let l2 = spec_of("L2Advertisement", "v1beta1");
        let weight = &l2["properties"]["preferredNodeSelectors"]["items"]["properties"]["weight"];
        assert_eq!(
            (number(&weight["minimum"]), number(&weight["maximum"])),
            (1, 100)
        );
    }

    #[test]
    fn v1beta1_peer_converts_to_v1beta2() {
        let old: bgp_peer::v1beta1::BGPPeer = serde_yaml::from_str(
            "apiVersion: metallb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: p, namespace: metallb-system}\n\
             spec:\n  myASN: 64500\n  peerASN: 64501\n  peerAddress: 10.0.0.1\n  holdTime: 90s\n  \
             nodeSelectors:\n  - matchLabels: {a: b}\n    matchExpressions:\n    - {key: c, operator: In, values: [d]}\n",
        )
        .unwrap();
        let new = old.into_v1beta2();
        assert_eq!(new.metadata.name.as_deref(), Some("p"));
        assert_eq!(new.spec.my_asn, 64500);
        assert_eq!(new.spec.peer_asn, Some(64501));
        assert_eq!(new.spec.peer_address.as_deref(), Some("10.0.0.1"));
        assert_eq!(new.spec.peer_port, 179);
        assert_eq!(new.spec.hold_time.as_deref(), Some("90s"));
        let selector = &new.spec.node_selectors[0];
        assert_eq!(selector.match_labels.as_ref().unwrap()["a"], "b");
        let expression = &selector.match_expressions.as_ref().unwrap()[0];
        assert_eq!(
            (expression.key.as_str(), expression.operator.as_str()),
            ("c", "In")
        );
    }
}
