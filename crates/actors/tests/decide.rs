//! Table tests of the pure decisions, in the spirit of MetalLB's speaker tables
//! (`TestShouldAnnounceEPSlices`, `TestClusterPolicy`, `TestShouldAnnouncePreferredNodeFailover`,
//! `TestL2SharedIPWithServiceSelectors`, `TestShouldAnnounceExcludeLB`, `TestBGPSpeakerEPSlices`,
//! `TestNodeSelectors`, `TestPeersForService`, `TestCheckBGPAdvConflicts`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use ironlb_actors::decide::{
    self, BgpOutcome, Inputs, L2Outcome, MemberView, Members, Options, WithdrawReason,
};
use ironlb_actors::model::{Endpoints, NodeInfo, Nodes, ServiceInfo, ServiceKey, EXCLUDE_LB_LABEL};
use ironlb_announce::l2::proto::interfaces::InterfaceSelection;
use ironlb_api::config::Config;

const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-a, labels: {zone: east, kubernetes.io/hostname: node-a}}
---
apiVersion: v1
kind: Node
metadata: {name: node-b, labels: {zone: east, kubernetes.io/hostname: node-b}}
---
apiVersion: v1
kind: Node
metadata: {name: node-c, labels: {zone: west, kubernetes.io/hostname: node-c}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: pool-a, namespace: metallb-system}
spec: {addresses: [10.20.0.0/24, "fc00::/120"]}
"#;

fn config(extra: &str) -> Config {
    let text = format!("{NODES}---\n{extra}");
    let set = ironlb_api::manifest::load_str(Path::new("test.yaml"), &text).expect("yaml");
    match Config::parse(&set.config_inputs()) {
        Ok(config) => config,
        Err(errors) => panic!("config: {errors:?}"),
    }
}

fn nodes() -> Nodes {
    ["node-a", "node-b", "node-c"]
        .iter()
        .map(|name| {
            let zone = if *name == "node-c" { "west" } else { "east" };
            let labels = [
                ("zone".to_owned(), zone.to_owned()),
                ("kubernetes.io/hostname".to_owned(), (*name).to_owned()),
            ]
            .into_iter()
            .collect();
            (
                (*name).to_owned(),
                NodeInfo {
                    name: (*name).to_owned(),
                    labels,
                    ..NodeInfo::default()
                },
            )
        })
        .collect()
}

fn service(ip: &str) -> ServiceInfo {
    ServiceInfo {
        key: ServiceKey::new("default", "web"),
        ips: ip
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("ip"))
            .collect(),
        labels: BTreeMap::from([("app".to_owned(), "web".to_owned())]),
        traffic_policy_local: false,
        load_balancer_class: None,
        allows_shared_ip: false,
    }
}

fn endpoints(nodes: &[&str]) -> Endpoints {
    Endpoints {
        serving_anywhere: !nodes.is_empty(),
        serving_nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
    }
}

fn members(alive: &[&str]) -> Members {
    Some(
        alive
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    MemberView {
                        active: true,
                        ..MemberView::default()
                    },
                )
            })
            .collect(),
    )
}

const L2_ALL: &str = r#"
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2, namespace: metallb-system}
spec: {ipAddressPools: [pool-a]}
"#;

/// The owner of `svc` as every node computes it (each from its own point of view).
fn l2_owners(
    config: &Config,
    nodes: &Nodes,
    svc: &ServiceInfo,
    eps: &Endpoints,
    members: &Members,
    options: &Options,
) -> Vec<String> {
    let mut owners = Vec::new();
    // Only live nodes run a speaker.
    let live = nodes
        .keys()
        .filter(|name| members.as_ref().is_none_or(|m| m.contains_key(*name)));
    for me in live {
        let inputs = Inputs {
            me,
            config,
            nodes,
            options,
        };
        if let L2Outcome::Announce { .. } = decide::layer2(&inputs, svc, eps, members, false) {
            owners.push(me.clone());
        }
    }
    owners
}

fn l2_reason(
    config: &Config,
    nodes: &Nodes,
    me: &str,
    svc: &ServiceInfo,
    eps: &Endpoints,
    members: &Members,
    options: &Options,
) -> Option<WithdrawReason> {
    let inputs = Inputs {
        me,
        config,
        nodes,
        options,
    };
    match decide::layer2(&inputs, svc, eps, members, false) {
        L2Outcome::Announce { .. } => None,
        L2Outcome::Withdraw { reason, .. } => Some(reason),
    }
}

#[test]
fn should_announce_ep_slices() {
    // (desc, service ip, etp local, endpoints on nodes, alive members, expected owner count,
    //  expected reason on node-a if it does not announce)
    struct Case {
        desc: &'static str,
        ip: &'static str,
        local: bool,
        eps: Vec<&'static str>,
        alive: Vec<&'static str>,
        owners: Vec<&'static str>,
    }
    let config = config(L2_ALL);
    let nodes = nodes();
    let cases = vec![
        Case {
            desc: "no endpoints: nobody",
            ip: "10.20.0.1",
            local: false,
            eps: vec![],
            alive: vec!["node-a", "node-b", "node-c"],
            owners: vec![],
        },
        Case {
            desc: "cluster policy, endpoint on c: exactly one owner",
            ip: "10.20.0.1",
            local: false,
            eps: vec!["node-c"],
            alive: vec!["node-a", "node-b", "node-c"],
            owners: vec!["*"],
        },
        Case {
            desc: "local policy: only the node with the endpoint",
            ip: "10.20.0.1",
            local: true,
            eps: vec!["node-b"],
            alive: vec!["node-a", "node-b", "node-c"],
            owners: vec!["node-b"],
        },
        Case {
            desc: "local policy, endpoint node dead: nobody",
            ip: "10.20.0.1",
            local: true,
            eps: vec!["node-b"],
            alive: vec!["node-a", "node-c"],
            owners: vec![],
        },
        Case {
            desc: "ip outside every pool: nobody",
            ip: "192.0.2.1",
            local: false,
            eps: vec!["node-a"],
            alive: vec!["node-a", "node-b", "node-c"],
            owners: vec![],
        },
        Case {
            desc: "no ip: nobody",
            ip: "",
            local: false,
            eps: vec!["node-a"],
            alive: vec!["node-a", "node-b", "node-c"],
            owners: vec![],
        },
        Case {
            desc: "dual stack: one owner for both ips",
            ip: "10.20.0.7,fc00::7",
            local: false,
            eps: vec!["node-a"],
            alive: vec!["node-a", "node-b", "node-c"],
            owners: vec!["*"],
        },
    ];
    for case in cases {
        let mut svc = service(case.ip);
        svc.traffic_policy_local = case.local;
        let eps = endpoints(&case.eps);
        let owners = l2_owners(
            &config,
            &nodes,
            &svc,
            &eps,
            &members(&case.alive),
            &Options::default(),
        );
        if case.owners == vec!["*"] {
            assert_eq!(owners.len(), 1, "{}: {owners:?}", case.desc);
        } else {
            assert_eq!(owners, case.owners, "{}", case.desc);
        }
    }
}

#[test]
fn withdraw_reasons() {
    let config = config(L2_ALL);
    let mut nodes = nodes();
    let all = members(&["node-a", "node-b", "node-c"]);
    let svc = service("10.20.0.1");
    let options = Options::default();
    assert_eq!(
        l2_reason(
            &config,
            &nodes,
            "node-a",
            &svc,
            &endpoints(&[]),
            &all,
            &options
        ),
        Some(WithdrawReason::NoEndpoints)
    );
    let mut local = svc.clone();
    local.traffic_policy_local = true;
    assert_eq!(
        l2_reason(
            &config,
            &nodes,
            "node-a",
            &local,
            &endpoints(&["node-b"]),
            &all,
            &options
        ),
        Some(WithdrawReason::NoLocalEndpoints)
    );
    let mut classy = svc.clone();
    classy.load_balancer_class = Some("other".into());
    assert_eq!(
        l2_reason(
            &config,
            &nodes,
            "node-a",
            &classy,
            &endpoints(&["node-a"]),
            &all,
            &options
        ),
        Some(WithdrawReason::OtherLoadBalancerClass)
    );
    let ours = Options {
        lb_class: Some("other".into()),
        ..Options::default()
    };
    assert_ne!(
        l2_reason(
            &config,
            &nodes,
            "node-a",
            &classy,
            &endpoints(&["node-a"]),
            &all,
            &ours
        ),
        Some(WithdrawReason::OtherLoadBalancerClass)
    );
    assert_eq!(
        l2_reason(
            &config,
            &nodes,
            "node-a",
            &svc,
            &endpoints(&["node-a"]),
            &all,
            &ours
        ),
        Some(WithdrawReason::OtherLoadBalancerClass),
        "--lb-class set: services without a class are not ours"
    );
    assert_eq!(
        l2_reason(
            &config,
            &nodes,
            "node-x",
            &svc,
            &endpoints(&["node-a"]),
            &all,
            &options
        ),
        Some(WithdrawReason::UnknownNode)
    );
    if let Some(node) = nodes.get_mut("node-a") {
        node.network_unavailable = true;
    }
    assert_eq!(
        l2_reason(
            &config,
            &nodes,
            "node-a",
            &svc,
            &endpoints(&["node-a"]),
            &all,
            &options
        ),
        Some(WithdrawReason::NodeNetworkUnavailable)
    );
}

#[test]
fn exclude_lb_label_and_network_unavailable_remove_candidates() {
    let config = config(L2_ALL);
    let all = members(&["node-a", "node-b", "node-c"]);
    let svc = service("10.20.0.1");
    let eps = endpoints(&["node-a", "node-b", "node-c"]);
    let base = l2_owners(&config, &nodes(), &svc, &eps, &all, &Options::default());
    assert_eq!(base.len(), 1);
    let owner = base[0].clone();
    for mark in ["exclude", "unavailable"] {
        let mut nodes = nodes();
        let node = nodes.get_mut(&owner).expect("owner");
        if mark == "exclude" {
            node.labels.insert(EXCLUDE_LB_LABEL.into(), String::new());
        } else {
            node.network_unavailable = true;
        }
        let owners = l2_owners(&config, &nodes, &svc, &eps, &all, &Options::default());
        assert_eq!(owners.len(), 1, "{mark}");
        assert_ne!(owners[0], owner, "{mark}: the marked node gives the IP up");
        if mark == "exclude" {
            let ignore = Options {
                ignore_exclude_lb: true,
                ..Options::default()
            };
            let owners = l2_owners(&config, &nodes, &svc, &eps, &all, &ignore);
            assert_eq!(owners, vec![owner.clone()], "--ignore-exclude-lb");
        }
    }
}

#[test]
fn node_selectors_limit_candidates_and_interfaces_are_united() {
    let config = config(
        r#"
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: west-only, namespace: metallb-system}
spec:
  ipAddressPools: [pool-a]
  nodeSelectors: [{matchLabels: {zone: west}}]
  interfaces: [eth1]
"#,
    );
    let nodes = nodes();
    let all = members(&["node-a", "node-b", "node-c"]);
    let eps = endpoints(&["node-a"]);
    for ip in ["10.20.0.1", "10.20.0.2", "10.20.0.3", "10.20.0.4"] {
        let svc = service(ip);
        assert_eq!(
            l2_owners(&config, &nodes, &svc, &eps, &all, &Options::default()),
            vec!["node-c".to_owned()],
            "{ip}"
        );
        assert_eq!(
            l2_reason(
                &config,
                &nodes,
                "node-a",
                &svc,
                &eps,
                &all,
                &Options::default()
            ),
            Some(WithdrawReason::NoMatchingAdvertisement)
        );
        let inputs = Inputs {
            me: "node-c",
            config: &config,
            nodes: &nodes,
            options: &Options::default(),
        };
        match decide::layer2(&inputs, &svc, &eps, &all, false) {
            L2Outcome::Announce { interfaces, .. } => assert_eq!(
                interfaces,
                InterfaceSelection::Only(BTreeSet::from(["eth1".to_owned()]))
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn service_selectors_and_shared_ip() {
    let config = config(
        r#"
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: for-web, namespace: metallb-system}
spec:
  ipAddressPools: [pool-a]
  serviceSelectors: [{matchLabels: {app: web}}]
"#,
    );
    let nodes = nodes();
    let all = members(&["node-a", "node-b", "node-c"]);
    let eps = endpoints(&["node-a"]);
    let svc = service("10.20.0.1");
    assert_eq!(
        l2_owners(&config, &nodes, &svc, &eps, &all, &Options::default()).len(),
        1
    );
    let mut other = svc.clone();
    other.labels.insert("app".into(), "db".into());
    assert_eq!(
        l2_reason(
            &config,
            &nodes,
            "node-a",
            &other,
            &eps,
            &all,
            &Options::default()
        ),
        Some(WithdrawReason::NoMatchingAdvertisement)
    );
    // TestL2SharedIPWithServiceSelectors: allow-shared-ip + an ad with serviceSelectors.
    let mut shared = svc.clone();
    shared.allows_shared_ip = true;
    for me in ["node-a", "node-b", "node-c"] {
        assert_eq!(
            l2_reason(
                &config,
                &nodes,
                me,
                &shared,
                &eps,
                &all,
                &Options::default()
            ),
            Some(WithdrawReason::SharedIpWithServiceSelector)
        );
    }
}

#[test]
fn preferred_nodes_and_failover() {
    // TestShouldAnnouncePreferredNodeFailover: the preferred node wins while alive; when it dies
    // the IP moves; when it returns it takes the IP back (strictly higher preference).
    let config = config(
        r#"
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: prefer-c, namespace: metallb-system}
spec:
  ipAddressPools: [pool-a]
  preferredNodeSelectors:
  - weight: 50
    preference: {matchLabels: {zone: west}}
"#,
    );
    let nodes = nodes();
    let eps = endpoints(&["node-a", "node-b", "node-c"]);
    let svc = service("10.20.0.9");
    let all = members(&["node-a", "node-b", "node-c"]);
    assert_eq!(
        l2_owners(&config, &nodes, &svc, &eps, &all, &Options::default()),
        vec!["node-c".to_owned()]
    );
    let without_c = members(&["node-a", "node-b"]);
    let owners: Vec<String> = ["node-a", "node-b"]
        .iter()
        .filter(|me| {
            let inputs = Inputs {
                me,
                config: &config,
                nodes: &nodes,
                options: &Options::default(),
            };
            matches!(
                decide::layer2(&inputs, &svc, &eps, &without_c, false),
                L2Outcome::Announce { .. }
            )
        })
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(owners.len(), 1);
    // The survivor claims the IP; node-c comes back and preempts it.
    let mut back = members(&["node-a", "node-b", "node-c"]).expect("members");
    back.get_mut(&owners[0])
        .expect("owner")
        .claims
        .insert("10.20.0.9".parse().expect("ip"));
    assert_eq!(
        l2_owners(
            &config,
            &nodes,
            &svc,
            &eps,
            &Some(back),
            &Options::default()
        ),
        vec!["node-c".to_owned()]
    );
}

#[test]
fn sticky_claims_and_leaving_members() {
    let config = config(L2_ALL);
    let nodes = nodes();
    let eps = endpoints(&["node-a"]);
    let svc = service("10.20.0.3");
    let ip: IpAddr = "10.20.0.3".parse().expect("ip");
    let fresh = l2_owners(
        &config,
        &nodes,
        &svc,
        &eps,
        &members(&["node-a", "node-b", "node-c"]),
        &Options::default(),
    );
    assert_eq!(fresh.len(), 1);
    // Any other node that claims the IP keeps it (a returning node does not take it back).
    for claimant in ["node-a", "node-b", "node-c"] {
        let mut view = members(&["node-a", "node-b", "node-c"]).expect("members");
        view.get_mut(claimant).expect("claimant").claims.insert(ip);
        assert_eq!(
            l2_owners(
                &config,
                &nodes,
                &svc,
                &eps,
                &Some(view.clone()),
                &Options::default()
            ),
            vec![claimant.to_owned()],
            "sticky to {claimant}"
        );
        // A leaving claimant hands over to someone else.
        view.get_mut(claimant).expect("claimant").leaving = true;
        let owners: Vec<String> = l2_owners(
            &config,
            &nodes,
            &svc,
            &eps,
            &Some(view),
            &Options::default(),
        )
        .into_iter()
        .filter(|o| o != claimant)
        .collect();
        assert_eq!(owners.len(), 1, "successor of leaving {claimant}");
    }
}

#[test]
fn membership_disabled_uses_every_node() {
    // TestUsableNodesEPSlicesWithSpeakerlistDisabled: no gossip → every known Node is a candidate.
    let config = config(L2_ALL);
    let nodes = nodes();
    let eps = endpoints(&["node-a"]);
    let svc = service("10.20.0.5");
    let owners = l2_owners(&config, &nodes, &svc, &eps, &None, &Options::default());
    let alive = l2_owners(
        &config,
        &nodes,
        &svc,
        &eps,
        &members(&["node-a", "node-b", "node-c"]),
        &Options::default(),
    );
    assert_eq!(owners, alive);
}

const BGP: &str = r#"
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: east-router, namespace: metallb-system}
spec:
  myASN: 64500
  peerASN: 64501
  peerAddress: 192.0.2.1
  nodeSelectors: [{matchLabels: {zone: east}}]
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: any-router, namespace: metallb-system}
spec: {myASN: 64500, peerASN: 64502, peerAddress: 192.0.2.2}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: all, namespace: metallb-system}
spec: {ipAddressPools: [pool-a]}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: aggregated-east, namespace: metallb-system}
spec:
  ipAddressPools: [pool-a]
  aggregationLength: 24
  aggregationLengthV6: 120
  localPref: 100
  peers: [east-router]
  nodeSelectors: [{matchLabels: {zone: east}}]
"#;

fn bgp_outcome(
    config: &Config,
    nodes: &Nodes,
    me: &str,
    svc: &ServiceInfo,
    eps: &Endpoints,
) -> BgpOutcome {
    let options = Options::default();
    let inputs = Inputs {
        me,
        config,
        nodes,
        options: &options,
    };
    decide::bgp(&inputs, svc, eps)
}

#[test]
fn bgp_speaker_ep_slices_and_node_selectors() {
    let config = config(BGP);
    let nodes = nodes();
    let svc = service("10.20.0.5");
    // Cluster policy: every node with an ad announces if any endpoint exists.
    for me in ["node-a", "node-b", "node-c"] {
        assert!(matches!(
            bgp_outcome(&config, &nodes, me, &svc, &endpoints(&["node-a"])),
            BgpOutcome::Announce(_)
        ));
        assert_eq!(
            bgp_outcome(&config, &nodes, me, &svc, &endpoints(&[])),
            BgpOutcome::Withdraw(WithdrawReason::NoEndpoints)
        );
    }
    // Local policy: only nodes with a local endpoint.
    let mut local = svc.clone();
    local.traffic_policy_local = true;
    assert!(matches!(
        bgp_outcome(&config, &nodes, "node-a", &local, &endpoints(&["node-a"])),
        BgpOutcome::Announce(_)
    ));
    assert_eq!(
        bgp_outcome(&config, &nodes, "node-b", &local, &endpoints(&["node-a"])),
        BgpOutcome::Withdraw(WithdrawReason::NoLocalEndpoints)
    );
    // Routes: node-a (east) gets the /32 to every peer and the /24 to east-router only.
    let BgpOutcome::Announce(routes) =
        bgp_outcome(&config, &nodes, "node-a", &svc, &endpoints(&["node-a"]))
    else {
        panic!("announce")
    };
    let to_east = decide::routes_for_peer(&routes, "east-router");
    let to_any = decide::routes_for_peer(&routes, "any-router");
    assert_eq!(
        to_east.keys().map(|p| p.to_string()).collect::<Vec<_>>(),
        vec!["10.20.0.0/24", "10.20.0.5/32"]
    );
    assert_eq!(
        to_any.keys().map(|p| p.to_string()).collect::<Vec<_>>(),
        vec!["10.20.0.5/32"]
    );
    let BgpOutcome::Announce(west) =
        bgp_outcome(&config, &nodes, "node-c", &svc, &endpoints(&["node-a"]))
    else {
        panic!("announce")
    };
    assert_eq!(west.len(), 1, "node-c is not selected by aggregated-east");
    // Peers by node selector (TestNodeSelectors).
    let peers = |me: &str| -> Vec<String> {
        decide::peers_for_node(&config, &nodes[me])
            .iter()
            .map(|p| p.name().to_owned())
            .collect()
    };
    assert_eq!(peers("node-a"), vec!["any-router", "east-router"]);
    assert_eq!(peers("node-c"), vec!["any-router"]);
}

#[test]
fn bgp_exclude_label_and_conflicts() {
    let config = config(BGP);
    let mut nodes = nodes();
    let svc = service("10.20.0.5");
    if let Some(node) = nodes.get_mut("node-b") {
        node.labels.insert(EXCLUDE_LB_LABEL.into(), "true".into());
    }
    assert_eq!(
        bgp_outcome(&config, &nodes, "node-b", &svc, &endpoints(&["node-a"])),
        BgpOutcome::Withdraw(WithdrawReason::NodeLabeledExcludeBalancers)
    );
    // TestCheckBGPAdvConflicts: `Config::parse` already rejects two LOCAL_PREFs for one
    // prefix, so `decide::bgp`'s own check is defensive and cannot be reached from valid input.
}
