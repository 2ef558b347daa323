//! `BGPPeer`: a BGP session to open from the nodes. `v1beta2` is the stored version; `v1beta1`
//! is still read and converted with [`v1beta1::BGPPeer::into_v1beta2`].

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// `metallb.io/v1beta2` BGPPeer (the hub and storage version).
pub mod v1beta2 {
    use k8s_openapi::api::core::v1::SecretReference;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    use crate::crd::{is_empty, is_false};

    /// `spec` of a `BGPPeer`.
    #[derive(
        CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema,
    )]
    #[kube(
        group = "metallb.io",
        version = "v1beta2",
        kind = "BGPPeer",
        plural = "bgppeers",
        singular = "bgppeer",
        namespaced,
        status = "BGPPeerStatus",
        derive = "PartialEq",
        derive = "Default",
        doc = "BGPPeer is the Schema for the peers API.",
        printcolumn(name = "Address", type_ = "string", json_path = ".spec.peerAddress"),
        printcolumn(name = "ASN", type_ = "string", json_path = ".spec.peerASN"),
        printcolumn(name = "BFD Profile", type_ = "string", json_path = ".spec.bfdProfile"),
        printcolumn(
            name = "Multi Hops",
            type_ = "string",
            json_path = ".spec.ebgpMultiHop"
        )
    )]
    #[serde(rename_all = "camelCase")]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "(has(self.peerASN) && self.peerASN != 0) || has(self.dynamicASN)",
            "message": "missing peer ASN and dynamicASN",
            "fieldPath": ".peerASN"
        },
        {
            "rule": "!(has(self.peerASN) && self.peerASN != 0 && has(self.dynamicASN))",
            "message": "both peer ASN and dynamicASN specified",
            "fieldPath": ".dynamicASN"
        },
        {
            "rule": "(has(self.peerAddress) && self.peerAddress != '') || (has(self.interface) && self.interface != '')",
            "message": "peer has no Address or Interface specified",
            "fieldPath": ".peerAddress"
        },
        {
            "rule": "!(has(self.peerAddress) && self.peerAddress != '' && has(self.interface) && self.interface != '')",
            "message": "peer has both Address and Interface specified",
            "fieldPath": ".interface"
        },
        {
            "rule": "!(has(self.ebgpMultiHop) && self.ebgpMultiHop && has(self.peerASN) && self.peerASN == self.myASN)",
            "message": "invalid ebgp-multihop parameter set for an ibgp peer",
            "fieldPath": ".ebgpMultiHop"
        },
        {
            "rule": "!(has(self.password) && self.password != '' && has(self.passwordSecret) && has(self.passwordSecret.name) && self.passwordSecret.name != '')",
            "message": "can not have both password and secret ref set in peer config",
            "fieldPath": ".passwordSecret"
        },
        {
            "rule": "!has(self.holdTime) || (duration(self.holdTime) > duration('-1s') && duration(self.holdTime) < duration('1s')) || duration(self.holdTime) >= duration('3s')",
            "message": "invalid BGPPeer timers: invalid hold time: must be 0 or >=3s",
            "fieldPath": ".holdTime"
        },
        {
            "rule": "has(self.holdTime) || !has(self.keepaliveTime) || duration(self.keepaliveTime) < duration('333333334ns') || duration(self.keepaliveTime) >= duration('1s')",
            "message": "invalid BGPPeer timers: invalid hold time (3 times keepaliveTime): must be 0 or >=3s",
            "fieldPath": ".keepaliveTime"
        },
        {
            "rule": "has(self.holdTime) && has(self.keepaliveTime) ? duration(self.keepaliveTime) <= duration(self.holdTime) : has(self.holdTime) ? duration(self.holdTime) >= duration('0s') : !has(self.keepaliveTime) || duration(self.keepaliveTime) >= duration('0s')",
            "message": "invalid BGPPeer timers: invalid keepaliveTime, must be lower than holdTime",
            "fieldPath": ".keepaliveTime"
        }
    ]))]
    pub struct BGPPeerSpec {
        /// AS number to use for the local end of the session.
        #[serde(rename = "myASN")]
        #[schemars(extend("x-kubernetes-validations" = [{
            "rule": "self != 0",
            "message": "missing local ASN"
        }]))]
        pub my_asn: u32,
        /// AS number to expect from the remote end. Exactly one of `peerASN` and `dynamicASN`.
        #[serde(default, rename = "peerASN", skip_serializing_if = "Option::is_none")]
        pub peer_asn: Option<u32>,
        /// Detect the remote AS number: `internal` (iBGP) or `external` (eBGP).
        #[serde(
            default,
            rename = "dynamicASN",
            skip_serializing_if = "Option::is_none"
        )]
        pub dynamic_asn: Option<DynamicAsnMode>,
        /// Overrides the AS number presented to this peer (`local-as … no-prepend replace-as`).
        #[serde(default, rename = "localASN", skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        pub local_asn: Option<u32>,
        /// Address to dial. Exactly one of `peerAddress` and `interface`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("x-kubernetes-validations" = [{
            "rule": "self == '' || isIP(self)",
            "message": "invalid BGPPeer address"
        }]))]
        pub peer_address: Option<String>,
        /// Interface for unnumbered BGP. Exactly one of `peerAddress` and `interface`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub interface: Option<String>,
        /// Source address for the session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("x-kubernetes-validations" = [{
            "rule": "self == '' || isIP(self)",
            "message": "invalid source IP"
        }]))]
        pub source_address: Option<String>,
        /// Port to dial (default 179).
        #[serde(default = "default_port")]
        #[schemars(range(min = 1, max = 16384))]
        pub peer_port: u16,
        /// Requested BGP hold time (Go duration, e.g. `90s`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hold_time: Option<String>,
        /// Requested BGP keepalive time (Go duration).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub keepalive_time: Option<String>,
        /// Time between connection attempts (Go duration, 1 s to 65535 s, whole seconds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("x-kubernetes-validations" = [
            {
                "rule": "duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535",
                "message": "connect time should be between 1 seconds to 65535"
            },
            {
                "rule": "duration(self).getMilliseconds() % 1000 == 0",
                "message": "connect time should contain a whole number of seconds"
            }
        ]))]
        pub connect_time: Option<String>,
        /// BGP router ID to advertise.
        #[serde(default, rename = "routerID", skip_serializing_if = "Option::is_none")]
        #[schemars(extend("x-kubernetes-validations" = [{
            "rule": "self == '' || isIP(self)",
            "message": "invalid router ID"
        }]))]
        pub router_id: Option<String>,
        /// Nodes that open this session. Empty: every node.
        #[serde(default, skip_serializing_if = "is_empty")]
        pub node_selectors: Vec<LabelSelector>,
        /// TCP MD5 password. Mutually exclusive with `passwordSecret`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub password: Option<String>,
        /// Secret of type `kubernetes.io/basic-auth` whose `password` key is the TCP MD5 password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub password_secret: Option<SecretReference>,
        /// Name of the BFDProfile to run on this session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub bfd_profile: Option<String>,
        /// Enable graceful restart (immutable).
        #[serde(default, skip_serializing_if = "is_false")]
        #[schemars(extend("x-kubernetes-validations" = [{
            "rule": "self == oldSelf",
            "message": "EnableGracefulRestart cannot be changed after creation"
        }]))]
        pub enable_graceful_restart: bool,
        /// Allow the eBGP peer to be more than one hop away.
        #[serde(default, skip_serializing_if = "is_false")]
        pub ebgp_multi_hop: bool,
        /// VRF to open the session in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub vrf: Option<String>,
        /// Deprecated, has no effect (use `dualStackAddressFamily`).
        #[serde(default, rename = "disableMP", skip_serializing_if = "is_false")]
        #[schemars(extend("default" = false))]
        pub disable_mp: bool,
        /// Also carry the other address family over this session.
        #[serde(default, skip_serializing_if = "is_false")]
        #[schemars(extend("default" = false))]
        pub dual_stack_address_family: bool,
    }

    fn default_port() -> u16 {
        179
    }

    /// `spec.dynamicASN`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum DynamicAsnMode {
        /// The peer is in our AS (iBGP).
        Internal,
        /// The peer is in another AS (eBGP).
        External,
    }

    /// `status` of a `BGPPeer` (empty, as MetalLB's).
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    pub struct BGPPeerStatus {}
}

/// `metallb.io/v1beta1` BGPPeer: deprecated, served and converted to [`v1beta2`].
pub mod v1beta1 {
    use std::collections::BTreeMap;

    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    use crate::crd::{is_empty, is_false};

    /// `spec` of a `v1beta1` `BGPPeer`.
    #[derive(
        CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema,
    )]
    #[kube(
        group = "metallb.io",
        version = "v1beta1",
        kind = "BGPPeer",
        plural = "bgppeers",
        singular = "bgppeer",
        namespaced,
        status = "BGPPeerStatus",
        derive = "PartialEq",
        derive = "Default",
        deprecated = "v1beta1 is deprecated, please use v1beta2",
        doc = "BGPPeer is the Schema for the peers API.",
        printcolumn(name = "Address", type_ = "string", json_path = ".spec.peerAddress"),
        printcolumn(name = "ASN", type_ = "string", json_path = ".spec.peerASN"),
        printcolumn(name = "BFD Profile", type_ = "string", json_path = ".spec.bfdProfile"),
        printcolumn(
            name = "Multi Hops",
            type_ = "string",
            json_path = ".spec.ebgpMultiHop"
        )
    )]
    #[serde(rename_all = "camelCase")]
    pub struct BGPPeerSpec {
        /// AS number to use for the local end of the session.
        #[serde(rename = "myASN")]
        pub my_asn: u32,
        /// AS number to expect from the remote end.
        #[serde(rename = "peerASN")]
        pub peer_asn: u32,
        /// Address to dial.
        pub peer_address: String,
        /// Source address for the session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub source_address: Option<String>,
        /// Port to dial.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 0, max = 16384))]
        pub peer_port: Option<u16>,
        /// Requested BGP hold time (Go duration).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hold_time: Option<String>,
        /// Requested BGP keepalive time (Go duration).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub keepalive_time: Option<String>,
        /// BGP router ID to advertise.
        #[serde(default, rename = "routerID", skip_serializing_if = "Option::is_none")]
        pub router_id: Option<String>,
        /// Nodes that open this session (the legacy selector form).
        #[serde(default, skip_serializing_if = "is_empty")]
        pub node_selectors: Vec<NodeSelector>,
        /// TCP MD5 password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub password: Option<String>,
        /// Name of the BFDProfile to run on this session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub bfd_profile: Option<String>,
        /// Allow the eBGP peer to be more than one hop away.
        #[serde(default, skip_serializing_if = "is_false")]
        pub ebgp_multi_hop: bool,
    }

    /// The legacy node selector of `v1beta1` peers.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct NodeSelector {
        /// Labels that must all be set to these values.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub match_labels: BTreeMap<String, String>,
        /// Requirements that must all hold.
        #[serde(default, skip_serializing_if = "is_empty")]
        pub match_expressions: Vec<MatchExpression>,
    }

    /// One requirement of a legacy node selector.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    pub struct MatchExpression {
        /// The label key.
        pub key: String,
        /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
        pub operator: String,
        /// The values (at least one).
        #[schemars(length(min = 1))]
        pub values: Vec<String>,
    }

    /// `status` of a `v1beta1` `BGPPeer` (empty).
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    pub struct BGPPeerStatus {}
}

impl v1beta1::BGPPeer {
    /// Converts to the stored `v1beta2` form, field by field (MetalLB's `ConvertTo`).
    ///
    /// A `peerPort` left unset (or 0) becomes the `v1beta2` default 179, as the API server's
    /// defaulting would do on the converted object.
    pub fn into_v1beta2(self) -> v1beta2::BGPPeer {
        let spec = self.spec;
        let mut metadata = self.metadata;
        // The converted object carries the new apiVersion; fields that only make sense for the
        // stored version (status) are empty in both.
        metadata.managed_fields = None;
        v1beta2::BGPPeer {
            metadata,
            spec: v1beta2::BGPPeerSpec {
                my_asn: spec.my_asn,
                peer_asn: (spec.peer_asn != 0).then_some(spec.peer_asn),
                peer_address: Some(spec.peer_address),
                source_address: spec.source_address,
                peer_port: spec.peer_port.filter(|port| *port != 0).unwrap_or(179),
                hold_time: spec.hold_time,
                keepalive_time: spec.keepalive_time,
                router_id: spec.router_id,
                node_selectors: spec
                    .node_selectors
                    .into_iter()
                    .map(label_selector_from_v1beta1)
                    .collect(),
                password: spec.password,
                bfd_profile: spec.bfd_profile,
                ebgp_multi_hop: spec.ebgp_multi_hop,
                ..v1beta2::BGPPeerSpec::default()
            },
            status: None,
        }
    }
}

fn label_selector_from_v1beta1(selector: v1beta1::NodeSelector) -> LabelSelector {
    let match_labels: BTreeMap<String, String> = selector.match_labels;
    LabelSelector {
        match_labels: (!match_labels.is_empty()).then_some(match_labels),
        match_expressions: (!selector.match_expressions.is_empty()).then(|| {
            selector
                .match_expressions
                .into_iter()
                .map(|expression| LabelSelectorRequirement {
                    key: expression.key,
                    operator: expression.operator,
                    values: Some(expression.values),
                })
                .collect()
        }),
    }
}
