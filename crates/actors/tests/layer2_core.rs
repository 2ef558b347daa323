//! The layer 2 core: the `announceFailed` check (a Service owned here whose L2Advertisement
//! names interfaces of which none has a responder on this node) and claims recovered from
//! `ServiceL2Status` when gossip has none.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use ironlb_actors::cluster::Snapshot;
use ironlb_actors::decide::{MemberView, Options};
use ironlb_actors::layer2::Layer2Core;
use ironlb_actors::model::{Endpoints, NodeInfo, ServiceInfo, ServiceKey};
use ironlb_announce::l2::proto::election::{election_hash, NodeName};
use ironlb_api::config::Config;

fn snapshot(interfaces: &str) -> Snapshot {
    snapshot_with(interfaces, "10.20.0.5")
}

fn snapshot_with(interfaces: &str, ip: &str) -> Snapshot {
    let text = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: node-a}}\n---\napiVersion: v1\nkind: Node\nmetadata: {{name: node-b}}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: pool-a, namespace: metallb-system}}\nspec: {{addresses: [10.20.0.0/24]}}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: l2, namespace: metallb-system}}\nspec: {{ipAddressPools: [pool-a]{interfaces}}}\n"
    );
    let set = ironlb_api::manifest::load_str(Path::new("test.yaml"), &text).expect("yaml");
    let config = Config::parse(&set.config_inputs()).expect("config");
    let key = ServiceKey::new("default", "web");
    Snapshot {
        config: Some(Arc::new(config)),
        nodes: ["node-a", "node-b"]
            .into_iter()
            .map(|name| {
                (
                    name.to_owned(),
                    NodeInfo {
                        name: name.into(),
                        ..NodeInfo::default()
                    },
                )
            })
            .collect(),
        services: BTreeMap::from([(
            key.clone(),
            ServiceInfo {
                key: key.clone(),
                ips: vec![ip.parse().expect("ip")],
                labels: BTreeMap::new(),
                traffic_policy_local: false,
                load_balancer_class: None,
                allows_shared_ip: false,
            },
        )]),
        endpoints: BTreeMap::from([(
            key,
            Endpoints {
                serving_anywhere: true,
                serving_nodes: BTreeSet::from(["node-a".to_owned(), "node-b".to_owned()]),
            },
        )]),
        synced: true,
        ..Snapshot::default()
    }
}

#[test]
fn announce_failed_when_no_named_interface_is_up() {
    let up = |names: &[&str]| {
        names
            .iter()
            .map(|n| (*n).to_owned())
            .collect::<BTreeSet<_>>()
    };
    let cases: [(&str, &[&str], bool); 4] = [
        (", interfaces: [eth9]", &["eth0"], true),
        (", interfaces: [eth9]", &["eth0", "eth9"], false),
        (", interfaces: [eth8, eth9]", &["eth8"], false),
        ("", &[], false),
    ];
    for (interfaces, present, failed) in cases {
        let mut core = Layer2Core::new("node-a", Options::default());
        let view = Some(BTreeMap::from([(
            "node-b".to_owned(),
            MemberView {
                active: false,
                ..MemberView::default()
            },
        )]));
        core.reconcile(&snapshot(interfaces), &view, false);
        let missing = core.interfaces_missing(&up(present));
        assert_eq!(
            missing.contains_key(&ServiceKey::new("default", "web")),
            failed,
            "{interfaces} with {present:?}"
        );
    }
}

/// A node that starts while the owner's gossip state has not reached it keeps the owner that
/// holds the `ServiceL2Status` (sticky), even where it would win a fresh election.
#[test]
fn status_holder_counts_as_claimant_when_gossip_has_no_claims() {
    // An IP for which node-a wins a fresh election against node-b.
    let ip = (1..=254)
        .map(|last| format!("10.20.0.{last}"))
        .find(|ip| {
            let ip = ip.parse().expect("ip");
            election_hash(&NodeName("node-a".into()), ip)
                < election_hash(&NodeName("node-b".into()), ip)
        })
        .expect("some IP favours node-a");
    let view = |claims: &[&str]| {
        Some(BTreeMap::from([(
            "node-b".to_owned(),
            MemberView {
                active: true,
                claims: claims.iter().map(|c| c.parse().expect("ip")).collect(),
                ..MemberView::default()
            },
        )]))
    };
    let key = ServiceKey::new("default", "web");
    let announced = |snapshot: &Snapshot, members| {
        let mut core = Layer2Core::new("node-a", Options::default());
        core.reconcile(snapshot, &members, false);
        core.services()[&key].announced
    };
    let plain = snapshot_with("", &ip);
    assert!(announced(&plain, view(&[])), "fresh election: node-a");
    let mut held = plain.clone();
    held.l2_owners
        .insert(key.clone(), BTreeSet::from(["node-b".to_owned()]));
    assert!(
        !announced(&held, view(&[])),
        "node-b holds the status: sticky"
    );
    // node-b's own status only: once gossip carries claims, gossip decides.
    assert!(!announced(&held, view(&[ip.as_str()])));
    let mut own = plain.clone();
    own.l2_owners
        .insert(key.clone(), BTreeSet::from(["node-a".to_owned()]));
    assert!(
        announced(&own, view(&[])),
        "this node's own stale status adds nothing"
    );
}
