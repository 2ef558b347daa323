//! The per-object rules of the generated CRDs (`x-kubernetes-validations`), run for real: the
//! API stand-in starts in-process with `ironlb_api::crds()` (what `ironlb crds` prints and
//! `deploy/crds/metallb.io.yaml` holds), each case creates one object over HTTP, and a bad one
//! must get 422 with a cause naming the field and the message of the controller's check.

use std::time::Duration;

use ironlb_apiserver::{Config, Server, ServerHandle};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NAMESPACE: &str = "metallb-system";

/// One create: the answer's status and JSON body.
struct Answer {
    status: u16,
    body: Value,
}

/// POSTs `body` to `path` with HTTP/1.0 (so the answer is not chunked) and reads it all.
async fn post(handle: &ServerHandle, path: &str, body: &Value) -> Answer {
    let payload = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        handle.addr(),
        payload.len()
    );
    let mut stream = TcpStream::connect(handle.addr())
        .await
        .unwrap_or_else(|error| panic!("connect: {error}"));
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|error| panic!("write: {error}"));
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("no answer to POST {path}"))
        .unwrap_or_else(|error| panic!("read: {error}"));
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// A stand-in with the metallb.io CRDs and the `metallb-system` namespace.
async fn start() -> ServerHandle {
    let crds = ironlb_api::crds()
        .into_iter()
        .map(|crd| serde_json::to_value(crd).unwrap_or(Value::Null))
        .collect();
    let handle = Server::start(Config {
        crds,
        ..Config::default()
    })
    .await
    .unwrap_or_else(|error| panic!("the stand-in refused the CRDs: {error}"));
    let namespace = post(
        &handle,
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    .await;
    assert_eq!(namespace.status, 201, "{}", namespace.body);
    handle
}

/// What a case expects.
enum Want {
    /// Stored (201).
    Created,
    /// Refused (422) with a cause on this field whose message contains this text.
    Refused(&'static str, &'static str),
}

struct Case {
    desc: &'static str,
    spec: Value,
    want: Want,
}

fn case(desc: &'static str, spec: Value, want: Want) -> Case {
    Case { desc, spec, want }
}

use Want::{Created, Refused};

/// Creates each case's object (named `case-<index>`) and checks the answer.
async fn run(handle: &ServerHandle, version: &str, kind: &str, plural: &str, cases: &[Case]) {
    let path = format!("/apis/metallb.io/{version}/namespaces/{NAMESPACE}/{plural}");
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let name = format!("{plural}-{index}");
        let object = json!({
            "apiVersion": format!("metallb.io/{version}"),
            "kind": kind,
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": case.spec,
        });
        let answer = post(handle, &path, &object).await;
        let causes: Vec<(String, String)> = answer.body["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|cause| {
                (
                    cause["field"].as_str().unwrap_or_default().to_owned(),
                    cause["message"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let ok = match case.want {
            Created => answer.status == 201,
            Refused(field, message) => {
                answer.status == 422
                    && causes
                        .iter()
                        .any(|(f, m)| f == field && m.contains(message))
            }
        };
        if !ok {
            failures.push(format!(
                "{kind} {:?}: got {} {causes:?} {}",
                case.desc,
                answer.status,
                answer.body["message"].as_str().unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn ip_address_pool_addresses() {
    let handle = start().await;
    let pool = |addresses: Value| json!({ "addresses": addresses });
    let cases = [
        case("IPv4 CIDR", pool(json!(["192.168.1.0/24"])), Created),
        case("IPv6 CIDR", pool(json!(["fc00:f853:ccd:e799::/124"])), Created),
        case("host bits set (masked, as Go)", pool(json!(["192.168.1.7/24"])), Created),
        case("a single address", pool(json!(["10.0.0.1/32", "fc00::1/128"])), Created),
        case("IPv4 range", pool(json!(["192.168.10.0-192.168.10.255"])), Created),
        case("range with spaces", pool(json!(["192.168.10.0 - 192.168.10.255"])), Created),
        case("IPv6 range", pool(json!(["fc00::10-fc00::20"])), Created),
        case("dual-stack pool", pool(json!(["10.1.0.0/24", "fc00:1::/120"])), Created),
        case(
            "no addresses",
            pool(json!([])),
            Refused("spec.addresses", "pool has no prefixes defined"),
        ),
        case(
            "not a CIDR",
            pool(json!(["10.0.0.0/24", "192.168.1.0"])),
            Refused("spec.addresses[1]", "invalid CIDR \"192.168.1.0\": must be a CIDR"),
        ),
        case(
            "prefix length too long",
            pool(json!(["10.0.0.0/33"])),
            Refused("spec.addresses[0]", "invalid CIDR \"10.0.0.0/33\""),
        ),
        case(
            "leading zeros (Go refuses them too)",
            pool(json!(["010.0.0.0/8"])),
            Refused("spec.addresses[0]", "invalid CIDR"),
        ),
        case(
            "IPv4-mapped IPv6 (Kubernetes' isCIDR refuses it, Go accepted it)",
            pool(json!(["::ffff:192.0.2.0/120"])),
            Refused("spec.addresses[0]", "invalid CIDR"),
        ),
        case(
            "prefix length with a leading zero (refused by Kubernetes, not by Go)",
            pool(json!(["10.0.0.0/08"])),
            Refused("spec.addresses[0]", "invalid CIDR"),
        ),
        case(
            "IPv4-mapped IPv6 range",
            pool(json!(["::ffff:192.0.2.1-::ffff:192.0.2.9"])),
            Refused("spec.addresses[0]", "invalid IP range"),
        ),
        case(
            "spaces around a CIDR (Go's ParseCIDR refuses them)",
            pool(json!([" 10.0.0.0/8"])),
            Refused("spec.addresses[0]", "invalid CIDR"),
        ),
        case(
            "range end is not an IP",
            pool(json!(["10.0.0.1-10.0.0"])),
            Refused(
                "spec.addresses[0]",
                "invalid IP range \"10.0.0.1-10.0.0\": start and end must be IP addresses of the same family",
            ),
        ),
        case(
            "range of CIDRs",
            pool(json!(["10.0.0.0/24-10.0.1.0/24"])),
            Refused("spec.addresses[0]", "invalid IP range"),
        ),
        case(
            "range of two families",
            pool(json!(["10.0.0.1-fc00::1"])),
            Refused("spec.addresses[0]", "same family"),
        ),
        case(
            "three ends",
            pool(json!(["10.0.0.1-10.0.0.2-10.0.0.3"])),
            Refused("spec.addresses[0]", "invalid IP range"),
        ),
        case(
            "entry longer than 128 characters",
            pool(json!([format!("{}10.0.0.1-10.0.0.2", " ".repeat(120))])),
            Refused("spec.addresses[0]", "may not be longer than 128"),
        ),
    ];
    run(
        &handle,
        "v1beta1",
        "IPAddressPool",
        "ipaddresspools",
        &cases,
    )
    .await;
}

#[tokio::test]
async fn bgp_peer_rules() {
    let handle = start().await;
    let peer = |extra: Value| {
        let mut spec = json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1"});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                if value.is_null() {
                    spec.remove(key);
                } else {
                    spec.insert(key.clone(), value.clone());
                }
            }
        }
        spec
    };
    let cases = [
        case("plain", peer(json!({})), Created),
        case(
            "IPv6 peer",
            peer(json!({"peerAddress": "2001:db8::1"})),
            Created,
        ),
        case(
            "unnumbered",
            peer(json!({"peerAddress": null, "interface": "eth1"})),
            Created,
        ),
        case(
            "dynamic ASN",
            peer(json!({"peerASN": null, "dynamicASN": "external"})),
            Created,
        ),
        case(
            "source address and router ID",
            peer(json!({"sourceAddress": "10.0.0.2", "routerID": "10.255.0.1"})),
            Created,
        ),
        case(
            "myASN 0",
            peer(json!({"myASN": 0})),
            Refused("spec.myASN", "missing local ASN"),
        ),
        case(
            "no peer ASN",
            peer(json!({"peerASN": null})),
            Refused("spec.peerASN", "missing peer ASN and dynamicASN"),
        ),
        case(
            "peer ASN 0 counts as none",
            peer(json!({"peerASN": 0})),
            Refused("spec.peerASN", "missing peer ASN and dynamicASN"),
        ),
        case(
            "both ASN kinds",
            peer(json!({"dynamicASN": "internal"})),
            Refused("spec.dynamicASN", "both peer ASN and dynamicASN specified"),
        ),
        case(
            "no address, no interface",
            peer(json!({"peerAddress": null})),
            Refused(
                "spec.peerAddress",
                "peer has no Address or Interface specified",
            ),
        ),
        case(
            "empty address counts as none",
            peer(json!({"peerAddress": ""})),
            Refused(
                "spec.peerAddress",
                "peer has no Address or Interface specified",
            ),
        ),
        case(
            "address and interface",
            peer(json!({"interface": "eth1"})),
            Refused(
                "spec.interface",
                "peer has both Address and Interface specified",
            ),
        ),
        case(
            "address not an IP",
            peer(json!({"peerAddress": "router.example"})),
            Refused("spec.peerAddress", "invalid BGPPeer address"),
        ),
        case(
            "IPv4-mapped IPv6 address",
            peer(json!({"peerAddress": "::ffff:10.0.0.1"})),
            Refused("spec.peerAddress", "invalid BGPPeer address"),
        ),
        case(
            "source address not an IP",
            peer(json!({"sourceAddress": "10.0.0.256"})),
            Refused("spec.sourceAddress", "invalid source IP"),
        ),
        case(
            "router ID not an IP",
            peer(json!({"routerID": "1.2.3"})),
            Refused("spec.routerID", "invalid router ID"),
        ),
        case(
            "eBGP multi-hop on an iBGP peer",
            peer(json!({"peerASN": 64500, "ebgpMultiHop": true})),
            Refused(
                "spec.ebgpMultiHop",
                "invalid ebgp-multihop parameter set for an ibgp peer",
            ),
        ),
        case(
            "eBGP multi-hop on an eBGP peer",
            peer(json!({"ebgpMultiHop": true})),
            Created,
        ),
        case(
            "password and secret",
            peer(json!({"password": "x", "passwordSecret": {"name": "s"}})),
            Refused(
                "spec.passwordSecret",
                "can not have both password and secret ref set in peer config",
            ),
        ),
        case("password only", peer(json!({"password": "x"})), Created),
        case("hold time 90s", peer(json!({"holdTime": "90s"})), Created),
        case("hold time 0", peer(json!({"holdTime": "0s"})), Created),
        case(
            "hold time 1m30s",
            peer(json!({"holdTime": "1m30s"})),
            Created,
        ),
        case(
            "hold and keepalive",
            peer(json!({"holdTime": "9s", "keepaliveTime": "3s"})),
            Created,
        ),
        case(
            "keepalive only",
            peer(json!({"keepaliveTime": "1s"})),
            Created,
        ),
        case(
            "hold time 2s",
            peer(json!({"holdTime": "2s"})),
            Refused("spec.holdTime", "invalid hold time: must be 0 or >=3s"),
        ),
        case(
            "hold time 2.9s rounds down to 2s",
            peer(json!({"holdTime": "2.9s", "keepaliveTime": "1s"})),
            Refused("spec.holdTime", "invalid hold time: must be 0 or >=3s"),
        ),
        case(
            "keepalive 500ms alone makes a 1.5s hold time",
            peer(json!({"keepaliveTime": "500ms"})),
            Refused("spec.keepaliveTime", "must be 0 or >=3s"),
        ),
        case(
            "keepalive 300ms alone makes a 0.9s hold time (0 once rounded)",
            peer(json!({"keepaliveTime": "300ms"})),
            Created,
        ),
        case(
            "keepalive above hold",
            peer(json!({"holdTime": "3s", "keepaliveTime": "4s"})),
            Refused(
                "spec.keepaliveTime",
                "invalid keepaliveTime, must be lower than holdTime",
            ),
        ),
        case(
            "connect time 10s",
            peer(json!({"connectTime": "10s"})),
            Created,
        ),
        case(
            "connect time 500ms",
            peer(json!({"connectTime": "500ms"})),
            Refused(
                "spec.connectTime",
                "connect time should be between 1 seconds to 65535",
            ),
        ),
        case(
            "connect time 1.5s",
            peer(json!({"connectTime": "1.5s"})),
            Refused(
                "spec.connectTime",
                "connect time should contain a whole number of seconds",
            ),
        ),
        case(
            "connect time 65536s",
            peer(json!({"connectTime": "65536s"})),
            Refused(
                "spec.connectTime",
                "connect time should be between 1 seconds to 65535",
            ),
        ),
    ];
    run(&handle, "v1beta2", "BGPPeer", "bgppeers", &cases).await;
}

#[tokio::test]
async fn community_values() {
    let handle = start().await;
    let aliases = |value: &str| json!({"communities": [{"name": "alias", "value": value}]});
    let cases = [
        case("legacy", aliases("65535:65282"), Created),
        case(
            "legacy with leading zeros",
            aliases("0064500:0001"),
            Created,
        ),
        case("large", aliases("large:4294967295:1:2"), Created),
        case(
            "legacy above 16 bits",
            aliases("65536:1"),
            Refused(
                "spec.communities[0].value",
                "invalid community value \"65536:1\": AA:NN takes two 16-bit numbers",
            ),
        ),
        case(
            "large above 32 bits",
            aliases("large:4294967296:1:2"),
            Refused("spec.communities[0].value", "invalid community value"),
        ),
        case(
            "three legacy parts",
            aliases("1:2:3"),
            Refused("spec.communities[0].value", "invalid community value"),
        ),
        case(
            "large with two parts",
            aliases("large:1:2"),
            Refused("spec.communities[0].value", "invalid community value"),
        ),
        case(
            "sign (Go's ParseUint refuses it)",
            aliases("+1:2"),
            Refused("spec.communities[0].value", "invalid community value"),
        ),
        case(
            "not a community",
            aliases("no-export"),
            Refused("spec.communities[0].value", "invalid community value"),
        ),
    ];
    run(&handle, "v1beta1", "Community", "communities", &cases).await;
}

#[tokio::test]
async fn bgp_advertisement_aggregation_lengths() {
    let handle = start().await;
    let cases = [
        case("defaults", json!({}), Created),
        case(
            "both set",
            json!({"aggregationLength": 24, "aggregationLengthV6": 64}),
            Created,
        ),
        case(
            "IPv4 at its bounds",
            json!({"aggregationLength": 32, "aggregationLengthV6": 0}),
            Created,
        ),
        case(
            "IPv4 above 32",
            json!({"aggregationLength": 33}),
            Refused(
                "spec.aggregationLength",
                "invalid aggregation length 33 for IPv4: must be between 1 and 32",
            ),
        ),
        case(
            "IPv4 0 (the schema minimum)",
            json!({"aggregationLength": 0}),
            Refused("spec.aggregationLength", "greater than or equal to 1"),
        ),
        case(
            "IPv6 above 128",
            json!({"aggregationLengthV6": 129}),
            Refused(
                "spec.aggregationLengthV6",
                "invalid aggregation length 129 for IPv6: must be between 0 and 128",
            ),
        ),
        case(
            "IPv6 negative",
            json!({"aggregationLengthV6": -1}),
            Refused("spec.aggregationLengthV6", "must be between 0 and 128"),
        ),
    ];
    run(
        &handle,
        "v1beta1",
        "BGPAdvertisement",
        "bgpadvertisements",
        &cases,
    )
    .await;
}
