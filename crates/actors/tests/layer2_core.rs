//! The layer 2 core's `announceFailed` check: a Service owned here whose L2Advertisement names
//! interfaces of which none has a responder on this node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use ironlb_actors::cluster::Snapshot;
use ironlb_actors::decide::Options;
use ironlb_actors::layer2::Layer2Core;
use ironlb_actors::model::{Endpoints, NodeInfo, ServiceInfo, ServiceKey};
use ironlb_api::config::Config;

fn snapshot(interfaces: &str) -> Snapshot {
    let text = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: node-a}}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: pool-a, namespace: metallb-system}}\nspec: {{addresses: [10.20.0.0/24]}}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: l2, namespace: metallb-system}}\nspec: {{ipAddressPools: [pool-a]{interfaces}}}\n"
    );
    let set = ironlb_api::manifest::load_str(Path::new("test.yaml"), &text).expect("yaml");
    let config = Config::parse(&set.config_inputs()).expect("config");
    let key = ServiceKey::new("default", "web");
    Snapshot {
        config: Some(Arc::new(config)),
        nodes: BTreeMap::from([(
            "node-a".to_owned(),
            NodeInfo {
                name: "node-a".into(),
                ..NodeInfo::default()
            },
        )]),
        services: BTreeMap::from([(
            key.clone(),
            ServiceInfo {
                key: key.clone(),
                ips: vec!["10.20.0.5".parse().expect("ip")],
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
                serving_nodes: BTreeSet::from(["node-a".to_owned()]),
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
        core.reconcile(&snapshot(interfaces), &None, false);
        let missing = core.interfaces_missing(&up(present));
        assert_eq!(
            missing.contains_key(&ServiceKey::new("default", "web")),
            failed,
            "{interfaces} with {present:?}"
        );
    }
}
