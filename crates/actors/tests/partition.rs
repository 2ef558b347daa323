//! The partition rule of the layer 2 core (`layer2::partition_winner`): a node that announces a
//! Service yields to another holder of its `ServiceL2Status` only when that holder is out of its
//! gossip view but alive through the API (fresh Lease) and ranks first (more alive members,
//! then the election order).

use std::collections::{BTreeMap, BTreeSet};

use ironlb_actors::cluster::{Snapshot, SpeakerLease};
use ironlb_actors::decide::MemberView;
use ironlb_actors::layer2::{partition_winner, LEASE_FRESH_MAX_MICROS};
use ironlb_actors::model::{ServiceInfo, ServiceKey};
use ironlb_announce::l2::proto::election::{election_hash, NodeName};

const NOW: i64 = 1_000_000_000_000;

fn service() -> ServiceInfo {
    ServiceInfo {
        key: ServiceKey::new("default", "web"),
        ips: vec!["192.168.1.240".parse().expect("ip")],
        labels: BTreeMap::new(),
        traffic_policy_local: false,
        load_balancer_class: None,
        allows_shared_ip: false,
    }
}

/// `view`: node → active, as this node's gossip sees it (itself included).
fn members(view: &[(&str, bool)]) -> BTreeMap<String, MemberView> {
    view.iter()
        .map(|(name, active)| {
            (
                (*name).to_owned(),
                MemberView {
                    active: *active,
                    ..MemberView::default()
                },
            )
        })
        .collect()
}

/// `owners`: holders of a ServiceL2Status; `leases`: node → (age µs, alive members).
fn snapshot(owners: &[&str], leases: &[(&str, i64, u32)]) -> Snapshot {
    Snapshot {
        l2_owners: BTreeMap::from([(
            ServiceKey::new("default", "web"),
            owners
                .iter()
                .map(|n| (*n).to_owned())
                .collect::<BTreeSet<_>>(),
        )]),
        speaker_leases: leases
            .iter()
            .map(|(node, age, alive)| {
                (
                    (*node).to_owned(),
                    SpeakerLease {
                        renewed_unix_micros: NOW - age,
                        alive_members: *alive,
                    },
                )
            })
            .collect(),
        ..Snapshot::default()
    }
}

#[test]
fn partition_rule_table() {
    let ip = "192.168.1.240".parse().expect("ip");
    let hash = |n: &str| election_hash(&NodeName(n.to_owned()), ip);
    // The election order of two nodes, for the tie cases.
    let (first, second) = if hash("node-a") < hash("node-c") {
        ("node-a", "node-c")
    } else {
        ("node-c", "node-a")
    };
    let fresh = 500_000;
    let stale = LEASE_FRESH_MAX_MICROS + 1;
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, bool)>,
        Vec<&'a str>,
        Vec<(&'a str, i64, u32)>,
        Option<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "minority side (node-c alone) yields to the majority owner",
            "node-c",
            vec![("node-c", true), ("node-a", false), ("node-b", false)],
            vec!["node-a", "node-c"],
            vec![("node-a", fresh, 2)],
            Some("node-a"),
        ),
        (
            "majority side keeps it",
            "node-a",
            vec![("node-a", true), ("node-b", true), ("node-c", false)],
            vec!["node-a", "node-c"],
            vec![("node-c", fresh, 1)],
            None,
        ),
        (
            "a node killed 2 s ago: its last renewal (2.1 s ago) predates its leaving the view",
            "node-c",
            vec![("node-c", true), ("node-a", false), ("node-b", false)],
            vec!["node-a", "node-c"],
            vec![("node-a", 2_100_000, 3)],
            None,
        ),
        (
            "a dead owner's Lease is stale: never yield to a corpse",
            "node-c",
            vec![("node-c", true), ("node-a", false), ("node-b", false)],
            vec!["node-a", "node-c"],
            vec![("node-a", stale, 2)],
            None,
        ),
        (
            "the other owner is in our gossip view: gossip decides, not this rule",
            "node-c",
            vec![("node-c", true), ("node-a", true)],
            vec!["node-a", "node-c"],
            vec![("node-a", fresh, 3)],
            None,
        ),
        (
            "no Lease at all (API down or unknown node): inactive",
            "node-c",
            vec![("node-c", true), ("node-a", false)],
            vec!["node-a", "node-c"],
            vec![],
            None,
        ),
        (
            "nobody else holds a status",
            "node-c",
            vec![("node-c", true), ("node-a", false)],
            vec!["node-c"],
            vec![("node-a", fresh, 2)],
            None,
        ),
        (
            "a restarting holder (earlier life's status, fresh Lease) that sees our side: sides overlap, no yield",
            "node-c",
            vec![("node-c", true), ("node-a", false), ("node-b", true)],
            vec!["node-a", "node-c"],
            vec![("node-a", fresh, 3)],
            None,
        ),
        (
            "the same counts across a clean partition of four: disjoint sides, yield",
            "node-c",
            vec![
                ("node-c", true),
                ("node-a", false),
                ("node-b", false),
                ("node-d", false),
            ],
            vec!["node-a", "node-c"],
            vec![("node-a", fresh, 3)],
            Some("node-a"),
        ),
        (
            "tie on alive members: the election order's second yields",
            second,
            vec![(second, true), (first, false)],
            vec![first, second],
            vec![(first, fresh, 1)],
            Some(first),
        ),
        (
            "tie on alive members: the election order's first keeps",
            first,
            vec![(first, true), (second, false)],
            vec![first, second],
            vec![(second, fresh, 1)],
            None,
        ),
    ];
    for (name, me, view, owners, leases, expected) in cases {
        // Every node out of the view left it 2 s ago.
        let since: BTreeMap<String, i64> = view
            .iter()
            .filter(|(_, active)| !active)
            .map(|(name, _)| ((*name).to_owned(), NOW - 2_000_000))
            .collect();
        let got = partition_winner(
            me,
            &service(),
            &members(&view),
            &snapshot(&owners, &leases),
            &since,
            NOW,
        );
        assert_eq!(got.as_deref(), expected, "{name}");
    }
}
