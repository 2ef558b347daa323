//! The fuzz stand-in (no nightly toolchain here, so no cargo-fuzz run): property tests that
//! feed arbitrary text and arbitrary, schema-shaped objects through the YAML → Config path
//! and the address, duration and community parsers, and require that nothing panics.

use std::path::Path;

use ironlb_alloc::parse_address_entry;
use ironlb_api::config::duration::parse_go_duration;
use ironlb_api::config::model::BgpCommunity;
use ironlb_api::config::Config;
use ironlb_api::manifest::load_str;
use proptest::prelude::*;

/// Runs the whole offline path; any outcome but a panic is fine.
fn check(text: &str) {
    if let Ok(set) = load_str(Path::new("fuzz.yaml"), text) {
        let _ = Config::parse(&set.config_inputs());
    }
}

/// Scalars that hit the interesting edges of every field.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("4294967296".to_owned()),
        Just("65535".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("''".to_owned()),
        Just("10.0.0.0/24".to_owned()),
        Just("'10.0.0.1 - 10.0.0.9'".to_owned()),
        Just("'fc00::/64'".to_owned()),
        Just("'::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'".to_owned()),
        Just("0.0.0.0/0".to_owned()),
        Just("'65535:65282'".to_owned()),
        Just("'large:1:2:3'".to_owned()),
        Just("90s".to_owned()),
        Just("1h2m3.5s".to_owned()),
        Just("internal".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("[{matchLabels: {a: b}}]".to_owned()),
        Just("[{matchExpressions: [{key: a, operator: In, values: [x, x]}]}]".to_owned()),
        (0u32..200).prop_map(|n| n.to_string()),
        "[a-z0-9:./-]{0,12}".prop_map(|s| format!("'{s}'")),
    ]
}

const FIELDS: &[&str] = &[
    "addresses",
    "autoAssign",
    "avoidBuggyIPs",
    "serviceAllocation",
    "ipAddressPools",
    "ipAddressPoolSelectors",
    "nodeSelectors",
    "serviceSelectors",
    "interfaces",
    "preferredNodeSelectors",
    "aggregationLength",
    "aggregationLengthV6",
    "localPref",
    "communities",
    "peers",
    "myASN",
    "peerASN",
    "dynamicASN",
    "localASN",
    "peerAddress",
    "interface",
    "sourceAddress",
    "peerPort",
    "holdTime",
    "keepaliveTime",
    "connectTime",
    "routerID",
    "password",
    "passwordSecret",
    "bfdProfile",
    "ebgpMultiHop",
    "vrf",
    "receiveInterval",
    "detectMultiplier",
    "echoMode",
    "minimumTtl",
];

const KINDS: &[(&str, &str)] = &[
    ("metallb.io/v1beta1", "IPAddressPool"),
    ("metallb.io/v1beta1", "L2Advertisement"),
    ("metallb.io/v1beta1", "BGPAdvertisement"),
    ("metallb.io/v1beta2", "BGPPeer"),
    ("metallb.io/v1beta1", "BGPPeer"),
    ("metallb.io/v1beta1", "BFDProfile"),
    ("metallb.io/v1beta1", "Community"),
];

/// One object of a known kind with a few fields set to edge values.
fn object() -> impl Strategy<Value = String> {
    (
        0..KINDS.len(),
        "[a-c]{1,2}",
        proptest::collection::vec((0..FIELDS.len(), scalar()), 0..6),
    )
        .prop_map(|(kind, name, fields)| {
            let (api_version, kind) = KINDS[kind];
            let mut text = format!(
                "apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec:\n  addresses: [10.0.0.0/28]\n"
            );
            for (field, value) in fields {
                if FIELDS[field] != "addresses" {
                    text.push_str(&format!("  {}: {value}\n", FIELDS[field]));
                }
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        check(&text);
    }

    #[test]
    fn arbitrary_objects_never_panic(objects in proptest::collection::vec(object(), 1..8)) {
        check(&objects.join("---\n"));
    }

    #[test]
    fn address_entries_never_panic(text in "[0-9a-f:./ -]{0,48}") {
        let _ = parse_address_entry(&text);
    }

    #[test]
    fn durations_and_communities_never_panic(text in "[0-9a-zµ.:+-]{0,24}") {
        let _ = parse_go_duration(&text);
        let _ = text.parse::<BgpCommunity>();
    }
}
