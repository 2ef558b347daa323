//! Table tests for every configuration rule, MetalLB style: `desc`, input YAML, and either
//! success or an error substring naming `Kind/name: field`.

use std::path::Path;

use ironlb_api::config::{Config, ConfigErrors};
use ironlb_api::manifest::load_str;

const NS: &str = "metallb-system";

fn pool(name: &str, addresses: &str) -> String {
    format!("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  addresses: {addresses}\n")
}

fn pool_spec(name: &str, spec: &str) -> String {
    format!("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {spec}\n")
}

fn l2(name: &str, spec: &str) -> String {
    format!("apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {spec}\n")
}

fn bgp_ad(name: &str, spec: &str) -> String {
    format!("apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {spec}\n")
}

fn peer(name: &str, spec: &str) -> String {
    format!("apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {spec}\n")
}

fn bfd(name: &str, spec: &str) -> String {
    format!("apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {spec}\n")
}

fn community(name: &str, aliases: &str) -> String {
    format!("apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  communities: {aliases}\n")
}

fn node(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {labels}}}\n")
}

fn namespace(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {labels}}}\n")
}

fn secret(name: &str, type_: &str, data: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {NS}}}\ntype: {type_}\ndata: {data}\n")
}

fn join(objects: &[String]) -> String {
    objects.join("---\n")
}

fn parse(yaml: &str) -> Result<Config, ConfigErrors> {
    let set = load_str(Path::new("case.yaml"), yaml).expect("case YAML loads");
    Config::parse(&set.config_inputs())
}

struct Case {
    desc: &'static str,
    input: String,
    /// `None`: valid. `Some(s)`: some rendered error contains `s`.
    want_err: Option<&'static str>,
}

fn case(desc: &'static str, objects: &[String], want_err: Option<&'static str>) -> Case {
    Case {
        desc,
        input: join(objects),
        want_err,
    }
}

fn run(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in cases {
        match (parse(&c.input), c.want_err) {
            (Ok(_), None) => {}
            (Err(errors), Some(want)) if errors.to_string().contains(want) => {}
            (Ok(_), Some(want)) => failures.push(format!("{}: valid, want error {want:?}", c.desc)),
            (Err(errors), want) => {
                failures.push(format!("{}: got\n{errors}\nwant {want:?}", c.desc));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn pools() {
    run(vec![
        case("cidr", &[pool("p", "[10.0.0.0/24]")], None),
        case("range with spaces", &[pool("p", "['10.0.0.1 - 10.0.0.6']")], None),
        case("host bits masked", &[pool("p", "[10.0.0.7/24]"), pool("q", "[10.0.1.0/24]")], None),
        case("single address", &[pool("p", "[10.0.0.7/32]")], None),
        case("dual stack", &[pool("p", "[10.0.0.0/24, 'fc00::/64']")], None),
        case("v6 range", &[pool("p", "['fc00::1-fc00::ff']")], None),
        case("no addresses", &[pool("p", "[]")], Some("IPAddressPool/p: spec.addresses: pool has no prefixes defined")),
        case("addresses missing", &[pool_spec("p", "{autoAssign: true}")], Some("IPAddressPool/p: spec.addresses: missing field")),
        case("invalid cidr", &[pool("p", "[10.0.0.0/33]")], Some("IPAddressPool/p: spec.addresses[0]: invalid CIDR")),
        case("bare ip", &[pool("p", "[10.0.0.1]")], Some("IPAddressPool/p: spec.addresses[0]: invalid CIDR")),
        case("backwards range", &[pool("p", "[10.0.0.9-10.0.0.1]")], Some("IPAddressPool/p: spec.addresses[0]: invalid CIDR")),
        case("mixed family range", &[pool("p", "['10.0.0.1-fc00::1']")], Some("IPAddressPool/p: spec.addresses[0]")),
        case(
            "overlap inside a pool",
            &[pool("p", "[10.0.0.0/24, 10.0.0.128/25]")],
            Some("IPAddressPool/p: spec.addresses[1]: CIDR 10.0.0.128/25 overlaps with already defined CIDR 10.0.0.0/24"),
        ),
        case(
            "overlap across pools",
            &[pool("p", "[10.0.0.0/24]"), pool("q", "[10.0.0.64/26]")],
            Some("IPAddressPool/q: spec.addresses[0]: CIDR 10.0.0.64/26 overlaps with already defined CIDR 10.0.0.0/24 in pool \"p\""),
        ),
        case(
            "range overlaps cidr of another pool",
            &[pool("p", "[10.0.0.0/30]"), pool("q", "[10.0.0.3-10.0.0.10]")],
            Some("IPAddressPool/q: spec.addresses[0]: CIDR 10.0.0.3/32 overlaps"),
        ),
        case(
            "same v6 cidr twice",
            &[pool("p", "['fc00::/64']"), pool("q", "['fc00::/64']")],
            Some("IPAddressPool/q: spec.addresses[0]"),
        ),
        case("adjacent pools", &[pool("p", "[10.0.0.0/25]"), pool("q", "[10.0.0.128/25]")], None),
        case(
            "duplicate pool name",
            &[pool("p", "[10.0.0.0/24]"), pool("p", "[10.0.1.0/24]")],
            Some("IPAddressPool/p: metadata.name: duplicate definition of IPAddressPool \"p\""),
        ),
        case(
            "wrong namespace",
            &["apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: default}\nspec: {addresses: [10.0.0.0/24]}\n".to_owned()],
            Some("IPAddressPool/p: metadata.namespace: resource must be created in metallb-system namespace"),
        ),
        case(
            "missing name",
            &["apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {namespace: metallb-system}\nspec: {addresses: [10.0.0.0/24]}\n".to_owned()],
            Some("IPAddressPool/<unnamed>: metadata.name: missing name"),
        ),
    ]);
}

#[test]
fn service_allocation() {
    run(vec![
        case(
            "namespaces and selectors",
            &[pool_spec("p", "{addresses: [10.0.0.0/24], serviceAllocation: {priority: 10, namespaces: [a], namespaceSelectors: [{matchLabels: {team: a}}], serviceSelectors: [{matchExpressions: [{key: tier, operator: In, values: [db]}]}]}}")],
            None,
        ),
        case("empty serviceAllocation", &[pool_spec("p", "{addresses: [10.0.0.0/24], serviceAllocation: {}}")], None),
        case(
            "duplicate namespaces",
            &[pool_spec("p", "{addresses: [10.0.0.0/24], serviceAllocation: {namespaces: [a, a]}}")],
            Some("IPAddressPool/p: spec.serviceAllocation.namespaces: duplicate definition in namespaces field"),
        ),
        case(
            "duplicate namespace selectors",
            &[pool_spec("p", "{addresses: [10.0.0.0/24], serviceAllocation: {namespaceSelectors: [{matchLabels: {a: b}}, {matchLabels: {a: b}}]}}")],
            Some("IPAddressPool/p: spec.serviceAllocation.namespaceSelectors[1]: duplicate definition"),
        ),
        case(
            "duplicate service selectors",
            &[pool_spec("p", "{addresses: [10.0.0.0/24], serviceAllocation: {serviceSelectors: [{matchExpressions: [{key: a, operator: In, values: [x, y]}]}, {matchExpressions: [{key: a, operator: In, values: [y, x]}]}]}}")],
            Some("IPAddressPool/p: spec.serviceAllocation.serviceSelectors[1]: duplicate definition"),
        ),
        case(
            "duplicate expression values",
            &[pool_spec("p", "{addresses: [10.0.0.0/24], serviceAllocation: {namespaceSelectors: [{matchExpressions: [{key: a, operator: In, values: [x, x]}]}]}}")],
            Some("IPAddressPool/p: spec.serviceAllocation.namespaceSelectors[0]: duplicate definition of match expression value"),
        ),
        case(
            "unknown operator",
            &[pool_spec("p", "{addresses: [10.0.0.0/24], serviceAllocation: {serviceSelectors: [{matchExpressions: [{key: a, operator: Maybe, values: [x]}]}]}}")],
            Some("IPAddressPool/p: spec.serviceAllocation.serviceSelectors[0]: invalid label selector"),
        ),
    ]);
}

#[test]
fn namespace_selectors_resolve_to_names() {
    let config = parse(&join(&[
        namespace("a", "{team: red}"),
        namespace("b", "{team: blue}"),
        namespace("c", "{team: red}"),
        pool_spec("p", "{addresses: [10.0.0.0/24], serviceAllocation: {namespaces: [z], namespaceSelectors: [{matchLabels: {team: red}}]}}"),
    ]))
    .unwrap();
    let allocation = config
        .pools()
        .values()
        .next()
        .unwrap()
        .allocation()
        .unwrap()
        .clone();
    let names: Vec<_> = allocation.namespaces.iter().map(String::as_str).collect();
    assert_eq!(names, ["a", "c", "z"]);
    assert!(allocation.namespaces_restricted);
}

#[test]
fn l2_advertisements() {
    run(vec![
        case("all pools", &[pool("p", "[10.0.0.0/24]"), l2("a", "{}")], None),
        case("unknown pool is ignored", &[pool("p", "[10.0.0.0/24]"), l2("a", "{ipAddressPools: [nope]}")], None),
        case(
            "duplicate pools",
            &[pool("p", "[10.0.0.0/24]"), l2("a", "{ipAddressPools: [p, p]}")],
            Some("L2Advertisement/a: spec.ipAddressPools: duplicate definition of ipAddressPools \"p\""),
        ),
        case(
            "duplicate node selectors",
            &[l2("a", "{nodeSelectors: [{matchLabels: {k: v}}, {matchLabels: {k: v}}]}")],
            Some("L2Advertisement/a: spec.nodeSelectors[1]: duplicate definition of spec.nodeSelectors"),
        ),
        case(
            "duplicate pool selectors",
            &[l2("a", "{ipAddressPoolSelectors: [{matchLabels: {k: v}}, {matchLabels: {k: v}}]}")],
            Some("L2Advertisement/a: spec.ipAddressPoolSelectors[1]"),
        ),
        case(
            "duplicate service selectors",
            &[l2("a", "{serviceSelectors: [{matchLabels: {k: v}}, {matchLabels: {k: v}}]}")],
            Some("L2Advertisement/a: spec.serviceSelectors[1]"),
        ),
        case(
            "weight 0",
            &[l2("a", "{preferredNodeSelectors: [{weight: 0, preference: {matchLabels: {k: v}}}]}")],
            Some("L2Advertisement/a: spec.preferredNodeSelectors[0].weight: invalid weight 0"),
        ),
        case(
            "weight 101",
            &[l2("a", "{preferredNodeSelectors: [{weight: 101, preference: {matchLabels: {k: v}}}]}")],
            Some("L2Advertisement/a: spec.preferredNodeSelectors[0].weight"),
        ),
        case("weights 1 and 100", &[l2("a", "{preferredNodeSelectors: [{weight: 1, preference: {matchLabels: {k: v}}}, {weight: 100, preference: {}}]}")], None),
    ]);
}

#[test]
fn l2_advertisement_resolution() {
    let config = parse(&join(&[
        node("n1", "{zone: a, fast: 'yes'}"),
        node("n2", "{zone: a}"),
        node("n3", "{zone: b, fast: 'yes'}"),
        pool_spec("p", "{addresses: [10.0.0.0/24]}"),
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: q, namespace: metallb-system, labels: {l2: 'on'}}\nspec: {addresses: [10.0.1.0/24]}\n".to_owned(),
        pool("r", "[10.0.2.0/24]"),
        l2(
            "a",
            "{ipAddressPools: [p], ipAddressPoolSelectors: [{matchLabels: {l2: 'on'}}], nodeSelectors: [{matchLabels: {zone: a}}], interfaces: [eth0], preferredNodeSelectors: [{weight: 10, preference: {matchLabels: {fast: 'yes'}}}, {weight: 5, preference: {}}]}",
        ),
    ]))
    .unwrap();
    let ad = &config.l2_advertisements()[0];
    let pools: Vec<_> = ad.pools().iter().map(|p| p.0.as_str()).collect();
    assert_eq!(pools, ["p", "q"]);
    let nodes: Vec<_> = ad.nodes().iter().map(String::as_str).collect();
    assert_eq!(nodes, ["n1", "n2"]);
    assert_eq!(ad.preferred_nodes().get("n1"), Some(&15));
    assert_eq!(ad.preferred_nodes().get("n2"), Some(&5));
    assert_eq!(
        ad.preferred_nodes().get("n3"),
        None,
        "n3 is outside the nodeSelectors"
    );
    assert!(ad.interfaces().contains("eth0"));
}

#[test]
fn bgp_advertisements() {
    let p24 = pool("p", "[10.0.0.0/24]");
    let p28 = pool("p", "[10.0.0.0/28]");
    run(vec![
        case("default aggregation", &[p24.clone(), bgp_ad("a", "{}")], None),
        case("/24 pool aggregated to /26", &[p24.clone(), bgp_ad("a", "{aggregationLength: 26}")], None),
        case(
            "/28 pool aggregated to /26",
            &[p28.clone(), bgp_ad("a", "{aggregationLength: 26}")],
            Some("BGPAdvertisement/a: spec.aggregationLength: invalid aggregation length 26: prefix 28 in this pool is more specific than the aggregation length for addresses 10.0.0.0/28"),
        ),
        case(
            "range: shortest summarised prefix counts",
            &[pool("p", "['10.0.0.1-10.0.0.6']"), bgp_ad("a", "{aggregationLength: 30}")],
            Some("BGPAdvertisement/a: spec.aggregationLength: invalid aggregation length 30: prefix 31"),
        ),
        case("range aggregated at its shortest prefix", &[pool("p", "['10.0.0.1-10.0.0.6']"), bgp_ad("a", "{aggregationLength: 31}")], None),
        case(
            "all pools are checked when none is named",
            &[p24.clone(), pool("q", "[10.1.0.0/28]"), bgp_ad("a", "{aggregationLength: 26}")],
            Some("BGPAdvertisement/a: spec.aggregationLength: invalid aggregation length 26: prefix 28"),
        ),
        case("unselected pool is not checked", &[p24.clone(), pool("q", "[10.1.0.0/28]"), bgp_ad("a", "{aggregationLength: 26, ipAddressPools: [p]}")], None),
        case(
            "v6 aggregation against v6 prefix",
            &[pool("p", "['fc00::/64', 10.0.0.0/24]"), bgp_ad("a", "{aggregationLengthV6: 48}")],
            Some("BGPAdvertisement/a: spec.aggregationLengthV6: invalid aggregation length 48: prefix 64"),
        ),
        case("v6 aggregation fine", &[pool("p", "['fc00::/64']"), bgp_ad("a", "{aggregationLengthV6: 64}")], None),
        case("aggregationLength 33", &[p24.clone(), bgp_ad("a", "{aggregationLength: 33}")], Some("BGPAdvertisement/a: spec.aggregationLength: invalid aggregation length 33 for IPv4")),
        case("aggregationLength 0", &[p24.clone(), bgp_ad("a", "{aggregationLength: 0}")], Some("BGPAdvertisement/a: spec.aggregationLength")),
        case("aggregationLengthV6 129", &[p24.clone(), bgp_ad("a", "{aggregationLengthV6: 129}")], Some("BGPAdvertisement/a: spec.aggregationLengthV6: invalid aggregation length 129 for IPv6")),
        case(
            "serviceSelectors with aggregationLength",
            &[p24.clone(), bgp_ad("a", "{aggregationLength: 24, serviceSelectors: [{matchLabels: {a: b}}]}")],
            Some("BGPAdvertisement/a: spec.aggregationLength: serviceSelectors and aggregationLength are mutually exclusive"),
        ),
        case(
            "serviceSelectors with aggregationLengthV6",
            &[p24.clone(), bgp_ad("a", "{aggregationLengthV6: 64, serviceSelectors: [{matchLabels: {a: b}}]}")],
            Some("BGPAdvertisement/a: spec.aggregationLengthV6: serviceSelectors and aggregationLengthV6"),
        ),
        case("serviceSelectors with default lengths", &[p24.clone(), bgp_ad("a", "{aggregationLength: 32, aggregationLengthV6: 128, serviceSelectors: [{matchLabels: {a: b}}]}")], None),
        case("duplicate pools", &[p24.clone(), bgp_ad("a", "{ipAddressPools: [p, p]}")], Some("BGPAdvertisement/a: spec.ipAddressPools: duplicate definition")),
        case("duplicate peers", &[p24.clone(), bgp_ad("a", "{peers: [x, x]}")], Some("BGPAdvertisement/a: spec.peers: duplicate definition of peers \"x\"")),
        case("duplicate node selectors", &[bgp_ad("a", "{nodeSelectors: [{matchLabels: {k: v}}, {matchLabels: {k: v}}]}")], Some("BGPAdvertisement/a: spec.nodeSelectors[1]")),
        case("identical specs, different names", &[p24.clone(), bgp_ad("a", "{}"), bgp_ad("b", "{}")], None),
        case("identical objects", &[p24.clone(), bgp_ad("a", "{}"), bgp_ad("a", "{}")], Some("BGPAdvertisement/a: metadata.name: duplicate definition")),
    ]);
}

#[test]
fn local_pref_conflicts() {
    let p24 = pool("p", "[10.0.0.0/24]");
    let dual = pool("p", "[10.0.0.0/24, 'fc00::/64']");
    let nodes = [node("n1", "{rack: a}"), node("n2", "{rack: b}")];
    run(vec![
        case("same localPref", &[p24.clone(), bgp_ad("a", "{localPref: 100}"), bgp_ad("b", "{localPref: 100, communities: ['1:1']}")], None),
        case(
            "different localPref, same update",
            &[p24.clone(), bgp_ad("a", "{localPref: 100}"), bgp_ad("b", "{localPref: 200, communities: ['1:1']}")],
            Some("BGPAdvertisement/b: spec.localPref: invalid local preference 200: local preference 100 was already set by BGPAdvertisement \"a\""),
        ),
        case("(a) different aggregation length", &[p24.clone(), bgp_ad("a", "{localPref: 100}"), bgp_ad("b", "{localPref: 200, aggregationLength: 24}")], None),
        case(
            "(a) dual-stack pool, only v4 length differs",
            &[dual.clone(), bgp_ad("a", "{localPref: 100}"), bgp_ad("b", "{localPref: 200, aggregationLength: 24}")],
            Some("BGPAdvertisement/b: spec.localPref"),
        ),
        case("(a) dual-stack pool, both lengths differ", &[dual.clone(), bgp_ad("a", "{localPref: 100}"), bgp_ad("b", "{localPref: 200, aggregationLength: 24, aggregationLengthV6: 64}")], None),
        case("(a) v6-only pool, v4 length differs only", &[pool("p", "['fc00::/64']"), bgp_ad("a", "{localPref: 100}"), bgp_ad("b", "{localPref: 200, aggregationLength: 24}")], Some("BGPAdvertisement/b: spec.localPref")),
        case("(b) disjoint peers", &[p24.clone(), bgp_ad("a", "{localPref: 100, peers: [x]}"), bgp_ad("b", "{localPref: 200, peers: [y]}")], None),
        case("(b) overlapping peers", &[p24.clone(), bgp_ad("a", "{localPref: 100, peers: [x, y]}"), bgp_ad("b", "{localPref: 200, peers: [y]}")], Some("BGPAdvertisement/b: spec.localPref")),
        case("(b) one ad for all peers", &[p24.clone(), bgp_ad("a", "{localPref: 100}"), bgp_ad("b", "{localPref: 200, peers: [y]}")], Some("BGPAdvertisement/b: spec.localPref")),
        case(
            "(c) disjoint nodes",
            &[nodes[0].clone(), nodes[1].clone(), p24.clone(), bgp_ad("a", "{localPref: 100, nodeSelectors: [{matchLabels: {rack: a}}]}"), bgp_ad("b", "{localPref: 200, nodeSelectors: [{matchLabels: {rack: b}}]}")],
            None,
        ),
        case(
            "(c) overlapping nodes",
            &[nodes[0].clone(), nodes[1].clone(), p24.clone(), bgp_ad("a", "{localPref: 100}"), bgp_ad("b", "{localPref: 200, nodeSelectors: [{matchLabels: {rack: b}}]}")],
            Some("BGPAdvertisement/b: spec.localPref"),
        ),
        case("(d) service selectors", &[p24.clone(), bgp_ad("a", "{localPref: 100}"), bgp_ad("b", "{localPref: 200, serviceSelectors: [{matchLabels: {a: b}}]}")], None),
        case("different pools", &[p24.clone(), pool("q", "[10.1.0.0/24]"), bgp_ad("a", "{localPref: 100, ipAddressPools: [p]}"), bgp_ad("b", "{localPref: 200, ipAddressPools: [q]}")], None),
    ]);
}

#[test]
fn communities() {
    let p24 = pool("p", "[10.0.0.0/24]");
    run(vec![
        case(
            "legacy and large",
            &[
                p24.clone(),
                bgp_ad("a", "{communities: ['65535:65282', 'large:1:2:3']}"),
            ],
            None,
        ),
        case(
            "alias",
            &[
                p24.clone(),
                community("c", "[{name: no-advertise, value: '65535:65282'}]"),
                bgp_ad("a", "{communities: [no-advertise]}"),
            ],
            None,
        ),
        case(
            "large alias",
            &[
                p24.clone(),
                community("c", "[{name: big, value: 'large:4294967295:0:1'}]"),
                bgp_ad("a", "{communities: [big]}"),
            ],
            None,
        ),
        case(
            "value out of range",
            &[p24.clone(), bgp_ad("a", "{communities: ['70000:1']}")],
            Some("BGPAdvertisement/a: spec.communities[0]: invalid community \"70000:1\""),
        ),
        case(
            "large value out of range",
            &[
                p24.clone(),
                bgp_ad("a", "{communities: ['large:1:2:4294967296']}"),
            ],
            Some("BGPAdvertisement/a: spec.communities[0]"),
        ),
        case(
            "not a number",
            &[p24.clone(), bgp_ad("a", "{communities: ['a:b']}")],
            Some("BGPAdvertisement/a: spec.communities[0]"),
        ),
        case(
            "unknown alias",
            &[p24.clone(), bgp_ad("a", "{communities: [nope]}")],
            Some("BGPAdvertisement/a: spec.communities[0]: invalid community \"nope\""),
        ),
        case(
            "duplicate",
            &[p24.clone(), bgp_ad("a", "{communities: ['1:1', '1:1']}")],
            Some("BGPAdvertisement/a: spec.communities: duplicate definition of community \"1:1\""),
        ),
        case(
            "alias with bad value",
            &[community("c", "[{name: x, value: '1:2:3'}]")],
            Some("Community/c: spec.communities[0].value: parsing community \"x\""),
        ),
        case(
            "alias defined twice across objects",
            &[
                community("c", "[{name: x, value: '1:2'}]"),
                community("d", "[{name: x, value: '1:3'}]"),
            ],
            Some("Community/d: spec.communities[0].name: duplicate definition of community \"x\""),
        ),
    ]);
}

#[test]
fn peers() {
    let basic = "myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1";
    let p = |spec: &str| peer("p", &format!("{{{spec}}}"));
    let with = |extra: &str| peer("p", &format!("{{{basic}, {extra}}}"));
    run(vec![
        case("basic", &[p(basic)], None),
        case("ipv6 session", &[p("myASN: 64500, peerASN: 64501, peerAddress: 'fc00::1'")], None),
        case("4-byte ASN", &[p("myASN: 4200000000, peerASN: 4294967295, peerAddress: 10.0.0.1")], None),
        case("missing myASN value", &[p("myASN: 0, peerASN: 64501, peerAddress: 10.0.0.1")], Some("BGPPeer/p: spec.myASN: missing local ASN")),
        case("missing myASN", &[p("peerASN: 64501, peerAddress: 10.0.0.1")], Some("BGPPeer/p: spec.myASN: missing field")),
        case("no peer ASN", &[p("myASN: 64500, peerAddress: 10.0.0.1")], Some("BGPPeer/p: spec.peerASN: missing peer ASN and dynamicASN")),
        case("dynamic ASN", &[p("myASN: 64500, dynamicASN: external, peerAddress: 10.0.0.1")], None),
        case("both ASN kinds", &[with("dynamicASN: internal")], Some("BGPPeer/p: spec.dynamicASN: both peer ASN and dynamicASN specified")),
        case("ebgpMultiHop on iBGP", &[p("myASN: 64500, peerASN: 64500, peerAddress: 10.0.0.1, ebgpMultiHop: true")], Some("BGPPeer/p: spec.ebgpMultiHop: invalid ebgp-multihop parameter set for an ibgp peer")),
        case("ebgpMultiHop on eBGP", &[with("ebgpMultiHop: true")], None),
        case("no address nor interface", &[p("myASN: 64500, peerASN: 64501")], Some("BGPPeer/p: spec.peerAddress: peer has no Address or Interface specified")),
        case("address and interface", &[with("interface: eth0")], Some("BGPPeer/p: spec.interface: peer has both Address and Interface specified")),
        case("interface only (accepted, unsupported)", &[p("myASN: 64500, peerASN: 64501, interface: eth0")], None),
        case("invalid address", &[p("myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.300")], Some("BGPPeer/p: spec.peerAddress: invalid BGPPeer address")),
        case("invalid source", &[with("sourceAddress: nope")], Some("BGPPeer/p: spec.sourceAddress: invalid source IP")),
        case("invalid router id", &[with("routerID: 1.2.3")], Some("BGPPeer/p: spec.routerID: invalid router ID")),
        case("port 0", &[with("peerPort: 0")], Some("BGPPeer/p: spec.peerPort: invalid port 0")),
        case("port 16385", &[with("peerPort: 16385")], Some("BGPPeer/p: spec.peerPort")),
        case("port 1179", &[with("peerPort: 1179")], None),
        case("localASN 0", &[with("localASN: 0")], Some("BGPPeer/p: spec.localASN")),
        case("localASN", &[with("localASN: 64999")], None),
        case("hold time 90s", &[with("holdTime: 90s")], None),
        case("hold time 0", &[with("holdTime: 0s")], None),
        case("hold time 2s", &[with("holdTime: 2s")], Some("BGPPeer/p: spec.holdTime: invalid BGPPeer timers: invalid hold time")),
        case("hold time 3.5s rounds to 3", &[with("holdTime: 3500ms")], None),
        case("keepalive above hold", &[with("holdTime: 30s, keepaliveTime: 40s")], Some("BGPPeer/p: spec.keepaliveTime: invalid BGPPeer timers: invalid keepaliveTime")),
        case("keepalive only", &[with("keepaliveTime: 20s")], None),
        case("keepalive only, hold would be 1.5s", &[with("keepaliveTime: 500ms")], Some("BGPPeer/p: spec.keepaliveTime: invalid BGPPeer timers: invalid hold time")),
        case("bad duration", &[with("holdTime: ninety")], Some("BGPPeer/p: spec.holdTime: invalid duration")),
        case("connect time", &[with("connectTime: 10s")], None),
        case("connect time fraction", &[with("connectTime: 1500ms")], Some("BGPPeer/p: spec.connectTime")),
        case("connect time too long", &[with("connectTime: 65536s")], Some("BGPPeer/p: spec.connectTime")),
        case("connect time zero", &[with("connectTime: 0s")], Some("BGPPeer/p: spec.connectTime")),
        case("graceful restart, dual stack family, disableMP", &[with("enableGracefulRestart: true, dualStackAddressFamily: true, disableMP: true")], None),
        case("vrf (accepted, unsupported)", &[with("vrf: red")], None),
        case("password", &[with("password: secret")], None),
        case("password with newline", &[with("password: \"a\\nb\"")], Some("BGPPeer/p: spec.password: password contains invalid characters")),
        case("duplicate node selectors", &[with("nodeSelectors: [{matchLabels: {a: b}}, {matchLabels: {a: b}}]")], Some("BGPPeer/p: spec.nodeSelectors[1]")),
        case("dynamicASN bad value", &[p("myASN: 64500, dynamicASN: sideways, peerAddress: 10.0.0.1")], Some("BGPPeer/p: spec")),
    ]);
}

#[test]
fn peer_passwords_and_references() {
    let with = |extra: &str| {
        peer(
            "p",
            &format!("{{myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1, {extra}}}"),
        )
    };
    let good = secret("s", "kubernetes.io/basic-auth", "{password: c2VjcmV0}");
    run(vec![
        case(
            "secret",
            &[
                good.clone(),
                with("passwordSecret: {name: s, namespace: metallb-system}"),
            ],
            None,
        ),
        case(
            "password and secret",
            &[good.clone(), with("password: x, passwordSecret: {name: s}")],
            Some("BGPPeer/p: spec.passwordSecret: can not have both password and secret ref set"),
        ),
        case(
            "missing secret",
            &[with("passwordSecret: {name: s}")],
            Some("BGPPeer/p: spec.passwordSecret: secret ref not found"),
        ),
        case(
            "secret of wrong type",
            &[
                secret("s", "Opaque", "{password: c2VjcmV0}"),
                with("passwordSecret: {name: s}"),
            ],
            Some("BGPPeer/p: spec.passwordSecret: secret type mismatch"),
        ),
        case(
            "secret without password",
            &[
                secret("s", "kubernetes.io/basic-auth", "{username: c2VjcmV0}"),
                with("passwordSecret: {name: s}"),
            ],
            Some("BGPPeer/p: spec.passwordSecret: password not specified"),
        ),
        case(
            "bfd profile",
            &[bfd("b", "{}"), with("bfdProfile: b")],
            None,
        ),
        case(
            "missing bfd profile",
            &[with("bfdProfile: b")],
            Some("BGPPeer/p: spec.bfdProfile: peer p referencing non existing bfd profile b"),
        ),
    ]);
}

#[test]
fn peers_on_a_shared_node() {
    let a = |extra: &str| {
        peer(
            "a",
            &format!("{{myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1{extra}}}"),
        )
    };
    let b = |extra: &str| {
        peer(
            "b",
            &format!("{{myASN: 64500, peerASN: 64502, peerAddress: 10.0.0.2{extra}}}"),
        )
    };
    let nodes = [node("n1", "{rack: a}"), node("n2", "{rack: b}")];
    let on = |rack: &str| format!(", nodeSelectors: [{{matchLabels: {{rack: {rack}}}}}]");
    run(vec![
        case("two peers", &[a(""), b("")], None),
        case("different router IDs", &[a(", routerID: 1.1.1.1"), b(", routerID: 2.2.2.2")], Some("BGPPeer/b: spec.routerID: peer has RouterID 2.2.2.2 different from 1.1.1.1 of peer \"a\"")),
        case("one router ID unset", &[a(", routerID: 1.1.1.1"), b("")], Some("BGPPeer/b: spec.routerID")),
        case(
            "different router IDs on disjoint nodes",
            &[nodes[0].clone(), nodes[1].clone(), a(&format!(", routerID: 1.1.1.1{}", on("a"))), b(&format!(", routerID: 2.2.2.2{}", on("b")))],
            None,
        ),
        case(
            "different router IDs, overlapping nodes",
            &[nodes[0].clone(), nodes[1].clone(), a(", routerID: 1.1.1.1"), b(&format!(", routerID: 2.2.2.2{}", on("b")))],
            Some("BGPPeer/b: spec.routerID"),
        ),
        case(
            "different router IDs, distinct selectors, no Node objects",
            &[a(&format!(", routerID: 1.1.1.1{}", on("a"))), b(&format!(", routerID: 2.2.2.2{}", on("b")))],
            None,
        ),
        case("different myASN", &[a(""), peer("b", "{myASN: 64600, peerASN: 64502, peerAddress: 10.0.0.2}")], Some("BGPPeer/b: spec.myASN: peer has myAsn 64600 different from 64500")),
        case("different myASN in different VRFs", &[a(""), peer("b", "{myASN: 64600, peerASN: 64502, peerAddress: 10.0.0.2, vrf: red}")], None),
        case("same address twice", &[a(""), peer("b", "{myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1, holdTime: 30s}")], Some("BGPPeer/b: spec.peerAddress: peer \"a\" already exists")),
        case("same address in another VRF", &[a(""), peer("b", "{myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1, vrf: red}")], None),
    ]);
}

#[test]
fn bfd_profiles() {
    run(vec![
        case("full profile", &[bfd("b", "{receiveInterval: 10, transmitInterval: 60000, detectMultiplier: 255, echoInterval: 50, echoMode: true, passiveMode: true, minimumTtl: 254}")], None),
        case("receive 9", &[bfd("b", "{receiveInterval: 9}")], Some("BFDProfile/b: spec.receiveInterval: invalid value 9, must be in 10-60000 range")),
        case("transmit 60001", &[bfd("b", "{transmitInterval: 60001}")], Some("BFDProfile/b: spec.transmitInterval")),
        case("echo 5", &[bfd("b", "{echoInterval: 5}")], Some("BFDProfile/b: spec.echoInterval")),
        case("multiplier 1", &[bfd("b", "{detectMultiplier: 1}")], Some("BFDProfile/b: spec.detectMultiplier: invalid value 1, must be in 2-255 range")),
        case("ttl 0", &[bfd("b", "{minimumTtl: 0}")], Some("BFDProfile/b: spec.minimumTtl")),
        case("ttl 255", &[bfd("b", "{minimumTtl: 255}")], Some("BFDProfile/b: spec.minimumTtl")),
        case("duplicate", &[bfd("b", "{}"), bfd("b", "{}")], Some("BFDProfile/b: metadata.name: duplicate definition")),
        case(
            "echo mode with an IPv6 pool",
            &[bfd("b", "{echoMode: true}"), peer("p", "{myASN: 1, peerASN: 2, peerAddress: 10.0.0.1, bfdProfile: b}"), pool("v6", "['fc00::/64']"), bgp_ad("a", "{}")],
            Some("BGPAdvertisement/a: spec.peers: pool v6 has bgpadvertisement a which references peer p which has bfd echo enabled"),
        ),
        case(
            "echo mode with an IPv4 pool",
            &[bfd("b", "{echoMode: true}"), peer("p", "{myASN: 1, peerASN: 2, peerAddress: 10.0.0.1, bfdProfile: b}"), pool("v4", "[10.0.0.0/24]"), bgp_ad("a", "{}")],
            None,
        ),
        case(
            "echo mode, IPv6 pool advertised to other peers",
            &[bfd("b", "{echoMode: true}"), peer("p", "{myASN: 1, peerASN: 2, peerAddress: 10.0.0.1, bfdProfile: b}"), peer("q", "{myASN: 1, peerASN: 3, peerAddress: 10.0.0.2}"), pool("v6", "['fc00::/64']"), bgp_ad("a", "{peers: [q]}")],
            None,
        ),
    ]);
}

#[test]
fn v1beta1_peer_is_converted_and_validated() {
    run(vec![
        case("v1beta1 peer", &["apiVersion: metallb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: old, namespace: metallb-system}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1, nodeSelectors: [{matchLabels: {a: b}}]}\n".to_owned()], None),
        case(
            "v1beta1 peer with iBGP multihop",
            &["apiVersion: metallb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: old, namespace: metallb-system}\nspec: {myASN: 64500, peerASN: 64500, peerAddress: 10.0.0.1, ebgpMultiHop: true}\n".to_owned()],
            Some("BGPPeer/old: spec.ebgpMultiHop"),
        ),
    ]);
}

#[test]
fn every_problem_is_reported_and_transient_ones_are_marked() {
    let errors = parse(&join(&[
        pool("p", "[]"),
        pool("q", "[10.0.0.0/33]"),
        peer("a", "{myASN: 0, peerASN: 1, peerAddress: 10.0.0.1}"),
        peer(
            "b",
            "{myASN: 1, peerASN: 2, peerAddress: 10.0.0.2, bfdProfile: nope}",
        ),
        bgp_ad("c", "{communities: [unknown-alias]}"),
    ]))
    .unwrap_err();
    let rendered: Vec<String> = errors.errors().iter().map(ToString::to_string).collect();
    assert_eq!(rendered.len(), 5, "{rendered:#?}");
    let transient: Vec<_> = errors
        .errors()
        .iter()
        .filter(|e| e.transient)
        .map(|e| format!("{}/{}", e.kind, e.name))
        .collect();
    assert_eq!(transient, ["BGPAdvertisement/c", "BGPPeer/b"]);
    assert!(!errors.all_transient());
    for line in rendered {
        let mut parts = line.splitn(3, ": ");
        let (object, field, message) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert!(object.contains('/'), "{line}");
        assert!(
            field.starts_with("spec") || field.starts_with("metadata"),
            "{line}"
        );
        assert!(!message.is_empty(), "{line}");
    }
}

#[test]
fn unsupported_fields_are_warnings() {
    let config = parse(&join(&[
        peer(
            "v",
            "{myASN: 1, peerASN: 2, peerAddress: 10.0.0.1, vrf: red}",
        ),
        peer("i", "{myASN: 1, peerASN: 2, interface: eth1}"),
        peer(
            "d",
            "{myASN: 1, peerASN: 2, peerAddress: 10.0.0.3, disableMP: true}",
        ),
    ]))
    .unwrap();
    let warnings: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    assert!(
        warnings.iter().any(
            |w| w.starts_with("BGPPeer/v: spec.vrf: ") && w.contains("not supported by ironlb")
        ),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("BGPPeer/i: spec.interface: ")
                && w.contains("not supported by ironlb")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("BGPPeer/d: spec.disableMP: ")),
        "{warnings:#?}"
    );
    let peer = &config.peers()["v"];
    assert_eq!(peer.vrf(), Some("red"));
    assert_eq!(peer.port().get(), 179);
}

#[test]
fn domain_values() {
    let config = parse(&join(&[
        pool_spec("p", "{addresses: ['10.0.0.7/24', 'fc00::-fc00::ff'], autoAssign: false, avoidBuggyIPs: true}"),
        community("c", "[{name: na, value: '65535:65282'}]"),
        bgp_ad("a", "{localPref: 50, communities: [na, 'large:1:2:3'], aggregationLength: 24, aggregationLengthV6: 120}"),
        peer("x", "{myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1, holdTime: 90s}"),
        peer("y", "{myASN: 64500, peerASN: 64502, peerAddress: 10.0.0.2, keepaliveTime: 10s}"),
    ]))
    .unwrap();
    let pool = config.pools().values().next().unwrap();
    let cidrs: Vec<String> = pool.cidrs().iter().map(ToString::to_string).collect();
    assert_eq!(cidrs, ["10.0.0.0/24", "fc00::/120"]);
    assert!(!pool.auto_assign());
    assert!(pool.avoid_buggy_ips());
    let ad = &config.bgp_advertisements()[0];
    assert_eq!(
        (
            ad.aggregation_length_v4(),
            ad.aggregation_length_v6(),
            ad.local_pref()
        ),
        (24, 120, 50)
    );
    let communities: Vec<String> = ad.communities().iter().map(ToString::to_string).collect();
    assert_eq!(communities, ["large:1:2:3", "65535:65282"]);
    let x = config.peers()["x"].timers().unwrap();
    assert_eq!(
        (x.hold_time().as_secs(), x.keepalive_time().as_secs()),
        (90, 30)
    );
    let y = config.peers()["y"].timers().unwrap();
    assert_eq!(
        (y.hold_time().as_secs(), y.keepalive_time().as_secs()),
        (30, 10)
    );
}
