//! Table tests of the BGP announcer core: sessions per BGPPeer filtered by `nodeSelectors`,
//! routes per peer (aggregation, communities, LOCAL_PREF, `peers`), `ServiceBGPStatus`, and
//! sessions restarted on a peer change and stopped on removal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use ironlb_actors::bgp::{BgpAction, BgpCore, BgpStatus, PeerConfigError};
use ironlb_actors::cluster::Snapshot;
use ironlb_actors::decide::{Options, WithdrawReason};
use ironlb_actors::model::{Endpoints, NodeInfo, ServiceInfo, ServiceKey};
use ironlb_announce::bgp::message::{Community, LargeCommunity};
use ironlb_announce::bgp::rib::RouteAttributes;
use ironlb_announce::bgp::session::PeerAsn;
use ironlb_api::config::Config;

const BASE: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-a, labels: {zone: east}}
---
apiVersion: v1
kind: Node
metadata: {name: node-b, labels: {zone: west}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: pool-a, namespace: metallb-system}
spec: {addresses: [10.20.0.0/24]}
"#;

fn snapshot(extra: &str, services: &[(&str, &str)]) -> Snapshot {
    let text = format!("{BASE}---\n{extra}");
    let set = ironlb_api::manifest::load_str(Path::new("test.yaml"), &text).expect("yaml");
    let config: Config = match Config::parse(&set.config_inputs()) {
        Ok(config) => config,
        Err(errors) => panic!("config: {errors:?}"),
    };
    let nodes = [("node-a", "east"), ("node-b", "west")]
        .into_iter()
        .map(|(name, zone)| {
            (
                name.to_owned(),
                NodeInfo {
                    name: name.to_owned(),
                    labels: BTreeMap::from([("zone".to_owned(), zone.to_owned())]),
                    ..NodeInfo::default()
                },
            )
        })
        .collect();
    let mut snapshot = Snapshot {
        config: Some(Arc::new(config)),
        nodes,
        synced: true,
        ..Snapshot::default()
    };
    for (name, ip) in services {
        let key = ServiceKey::new("default", *name);
        snapshot.services.insert(
            key.clone(),
            ServiceInfo {
                key: key.clone(),
                ips: vec![ip.parse().expect("ip")],
                labels: BTreeMap::new(),
                traffic_policy_local: false,
                load_balancer_class: None,
                allows_shared_ip: false,
            },
        );
        snapshot.endpoints.insert(
            key,
            Endpoints {
                serving_anywhere: true,
                serving_nodes: BTreeSet::from(["node-a".to_owned(), "node-b".to_owned()]),
            },
        );
    }
    snapshot
}

fn peer(name: &str, address: &str, extra: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec: {{myASN: 64500, peerASN: 64501, peerAddress: {address}{extra}}}\n---\n"
    )
}

fn core() -> BgpCore {
    BgpCore::new("node-a", Options::default(), Duration::from_millis(500))
}

fn started(actions: &[BgpAction]) -> BTreeSet<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            BgpAction::Start { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn stopped(actions: &[BgpAction]) -> BTreeSet<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            BgpAction::Stop { name } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn net(text: &str) -> IpNet {
    text.parse().expect("prefix")
}

const AD_ALL: &str = "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: all, namespace: metallb-system}\nspec: {ipAddressPools: [pool-a]}\n---\n";

#[test]
fn peers_are_filtered_by_node_selectors() {
    let cases: [(&str, &[&str]); 3] = [
        ("", &["p1"]),
        (", nodeSelectors: [{matchLabels: {zone: east}}]", &["p1"]),
        (", nodeSelectors: [{matchLabels: {zone: west}}]", &[]),
    ];
    for (selector, expected) in cases {
        let text = format!("{}{AD_ALL}", peer("p1", "10.0.0.1", selector));
        let mut core = core();
        let actions = core.reconcile(&snapshot(&text, &[("web", "10.20.0.5")]));
        let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(started(&actions), expected, "selector {selector:?}");
        assert_eq!(
            core.sessions().keys().cloned().collect::<BTreeSet<_>>(),
            expected
        );
    }
}

#[test]
fn routes_carry_aggregation_communities_local_pref_and_respect_peers() {
    let text = format!(
        "{}{}{}",
        peer("p1", "10.0.0.1", ""),
        peer("p2", "10.0.0.2", ""),
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: agg, namespace: metallb-system}\nspec: {ipAddressPools: [pool-a], aggregationLength: 24, localPref: 150, communities: [\"65000:7\", \"large:1:2:3\"], peers: [p1]}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: host, namespace: metallb-system}\nspec: {ipAddressPools: [pool-a], communities: [\"65000:9\"]}\n"
    );
    let mut core = core();
    let actions = core.reconcile(&snapshot(
        &text,
        &[("web", "10.20.0.5"), ("db", "10.20.0.9")],
    ));
    let p1 = &core.routes()["p1"];
    let p2 = &core.routes()["p2"];
    // p1 gets the /24 aggregate (both Services, one prefix) and both host routes.
    let aggregate = &p1[&net("10.20.0.0/24")];
    assert_eq!(
        aggregate,
        &RouteAttributes {
            local_pref: Some(150),
            communities: BTreeSet::from([Community((65000 << 16) | 7)]),
            large_communities: BTreeSet::from([LargeCommunity {
                global: 1,
                local1: 2,
                local2: 3
            }]),
        }
    );
    assert_eq!(p1.len(), 3, "{p1:?}");
    // LOCAL_PREF 0 (unset) is not sent.
    assert_eq!(p1[&net("10.20.0.5/32")].local_pref, None);
    // p2 is not named by `agg`: host routes only.
    assert_eq!(
        p2.keys().copied().collect::<Vec<_>>(),
        vec![net("10.20.0.5/32"), net("10.20.0.9/32")]
    );
    assert!(actions.contains(&BgpAction::Status(
        ServiceKey::new("default", "web"),
        Some(BgpStatus {
            peers: vec!["p1".into(), "p2".into()]
        })
    )));
    assert!(actions
        .iter()
        .any(|a| matches!(a, BgpAction::Assigned(key, _) if key.name == "db")));
}

#[test]
fn peer_change_restarts_removal_stops_and_status_follows() {
    let two = format!(
        "{}{}{AD_ALL}",
        peer("p1", "10.0.0.1", ""),
        peer("p2", "10.0.0.2", "")
    );
    let mut core = core();
    let actions = core.reconcile(&snapshot(&two, &[("web", "10.20.0.5")]));
    assert_eq!(
        started(&actions),
        BTreeSet::from(["p1".into(), "p2".into()])
    );
    // Same input: nothing to do.
    assert!(core
        .reconcile(&snapshot(&two, &[("web", "10.20.0.5")]))
        .is_empty());
    // p2 changes its hold time: stopped and started again, with its routes.
    let changed = format!(
        "{}{}{AD_ALL}",
        peer("p1", "10.0.0.1", ""),
        peer("p2", "10.0.0.2", ", holdTime: 9s")
    );
    let actions = core.reconcile(&snapshot(&changed, &[("web", "10.20.0.5")]));
    assert_eq!(stopped(&actions), BTreeSet::from(["p2".into()]));
    assert_eq!(started(&actions), BTreeSet::from(["p2".into()]));
    assert_eq!(core.sessions()["p2"].session.hold_time_secs, 9);
    assert!(actions.iter().any(
        |a| matches!(a, BgpAction::Routes { name, routes } if name == "p2" && routes.len() == 1)
    ));
    // p2 removed: stopped; the status names p1 only.
    let one = format!("{}{AD_ALL}", peer("p1", "10.0.0.1", ""));
    let actions = core.reconcile(&snapshot(&one, &[("web", "10.20.0.5")]));
    assert_eq!(stopped(&actions), BTreeSet::from(["p2".into()]));
    assert!(started(&actions).is_empty());
    assert!(actions.contains(&BgpAction::Status(
        ServiceKey::new("default", "web"),
        Some(BgpStatus {
            peers: vec!["p1".into()]
        })
    )));
    // The Service goes: its routes are withdrawn and its status deleted.
    let actions = core.reconcile(&snapshot(&one, &[]));
    assert!(actions.contains(&BgpAction::Status(ServiceKey::new("default", "web"), None)));
    assert!(actions.iter().any(
        |a| matches!(a, BgpAction::Routes { name, routes } if name == "p1" && routes.is_empty())
    ));
}

#[test]
fn no_advertisement_for_this_node_is_not_owner() {
    let text = format!(
        "{}apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: west, namespace: metallb-system}}\nspec: {{ipAddressPools: [pool-a], nodeSelectors: [{{matchLabels: {{zone: west}}}}]}}\n",
        peer("p1", "10.0.0.1", "")
    );
    let mut core = core();
    core.reconcile(&snapshot(&text, &[("web", "10.20.0.5")]));
    let state = &core.services()[&ServiceKey::new("default", "web")];
    assert!(state.peers.is_empty());
    assert_eq!(state.reason, Some(WithdrawReason::NotOwner));
    assert!(core.routes()["p1"].is_empty());
}

#[test]
fn peer_settings_map_to_the_driver() {
    let text = format!(
        "{}{}apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {{name: fast, namespace: metallb-system}}\nspec: {{receiveInterval: 100, transmitInterval: 200, detectMultiplier: 5}}\n---\n{AD_ALL}",
        peer(
            "p1",
            "10.0.0.1",
            ", peerPort: 1179, bfdProfile: fast, password: secret, routerID: 10.9.9.9, enableGracefulRestart: true"
        ),
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: dyn, namespace: metallb-system}\nspec: {myASN: 64500, dynamicASN: internal, peerAddress: 10.0.0.3, routerID: 10.9.9.9}\n---\n",
    );
    let mut core = core();
    core.reconcile(&snapshot(&text, &[]));
    let p1 = &core.sessions()["p1"];
    assert_eq!(p1.peer, "10.0.0.1:1179".parse().expect("addr"));
    assert_eq!(p1.password.as_deref(), Some("secret"));
    assert_eq!(p1.session.peer_asn, PeerAsn::Fixed(64501));
    assert_eq!(p1.session.router_id, Some("10.9.9.9".parse().expect("id")));
    assert_eq!(p1.session.graceful_restart_secs, Some(120));
    assert_eq!(p1.session.shutdown_wait, Duration::from_millis(500));
    let bfd = p1.bfd.as_ref().expect("bfd");
    assert_eq!(bfd.required_min_rx, Duration::from_millis(100));
    assert_eq!(bfd.desired_min_tx, Duration::from_millis(200));
    assert_eq!(bfd.detect_multiplier, 5);
    assert_eq!(core.sessions()["dyn"].session.peer_asn, PeerAsn::Internal);
    assert!(core.sessions()["dyn"].bfd.is_none());
}

#[test]
fn unsupported_peers_are_reported_not_started() {
    let text = format!("{}{AD_ALL}", peer("p1", "10.0.0.1", ", vrf: red"));
    let mut core = core();
    let actions = core.reconcile(&snapshot(&text, &[]));
    assert!(started(&actions).is_empty());
    assert!(actions.iter().any(|a| matches!(
        a,
        BgpAction::PeerError(PeerConfigError::Vrf { peer, .. }) if peer == "p1"
    )));
    // Reported once, not on every reconcile.
    assert!(core.reconcile(&snapshot(&text, &[])).is_empty());
}
