//! The sticky election: tables for the rules, properties for determinism and stability.

use std::net::IpAddr;

use ironlb_announce::l2::proto::election::{
    elect, election_hash, Candidate, Claim, Decision, NodeName,
};
use proptest::prelude::*;

fn candidate(node: &str, preference: u64) -> Candidate {
    Candidate {
        node: node.into(),
        alive: true,
        eligible: true,
        preference,
    }
}

fn claim(node: &str, ip: &str) -> Claim {
    Claim {
        node: node.into(),
        ip: ip.parse().unwrap(),
    }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

/// MetalLB's order for a fresh election, computed independently of `elect`.
fn metallb_first(service_ips: &[IpAddr], candidates: &[Candidate]) -> Option<NodeName> {
    let mut usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.alive && c.eligible)
        .collect();
    usable.sort_by(|a, b| {
        b.preference.cmp(&a.preference).then_with(|| {
            election_hash(&a.node, service_ips[0]).cmp(&election_hash(&b.node, service_ips[0]))
        })
    });
    usable.first().map(|c| c.node.clone())
}

#[test]
fn hash_is_sha256_of_node_hash_ip() {
    // Expected values from `printf 'node-a#10.0.0.1' | sha256sum` (and the IPv6 one).
    for (ip, want) in [
        (
            "10.0.0.1",
            "dd41591fe8f31f9f38e297fe9892a8eff47892ea017c4167619a62f366fb8149",
        ),
        (
            "fd00::1",
            "f636056279a4112baae8493a7eb0db3d57714abf3d5262867ddbd07aab31c453",
        ),
    ] {
        let hash = election_hash(&"node-a".into(), ip.parse().unwrap());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want, "{ip}");
    }
}

#[test]
fn election_table() {
    let vip = ips(&["10.0.0.100"]);
    let three = vec![candidate("a", 0), candidate("b", 0), candidate("c", 0)];
    let fresh = metallb_first(&vip, &three).unwrap();
    let other = three
        .iter()
        .map(|c| c.node.clone())
        .find(|n| *n != fresh)
        .unwrap();

    let result = elect(&vip, &three, &[]);
    assert_eq!(
        (result.owner.clone(), result.decision),
        (Some(fresh.clone()), Decision::Fresh),
        "fresh = MetalLB order"
    );

    let result = elect(&vip, &three, &[claim(&other.0, "10.0.0.100")]);
    assert_eq!(
        (result.owner, result.decision),
        (Some(other.clone()), Decision::Sticky),
        "claim is sticky"
    );

    let mut dead = three.clone();
    dead.iter_mut().find(|c| c.node == other).unwrap().alive = false;
    let result = elect(&vip, &dead, &[claim(&other.0, "10.0.0.100")]);
    assert_eq!(
        result.owner,
        metallb_first(&vip, &dead),
        "dead claimant loses"
    );

    let mut ineligible = three.clone();
    ineligible
        .iter_mut()
        .find(|c| c.node == other)
        .unwrap()
        .eligible = false;
    let result = elect(&vip, &ineligible, &[claim(&other.0, "10.0.0.100")]);
    assert_ne!(
        result.owner,
        Some(other.clone()),
        "ineligible claimant loses"
    );

    let mut preferred = three.clone();
    preferred.push(candidate("d", 10));
    let result = elect(&vip, &preferred, &[claim(&other.0, "10.0.0.100")]);
    assert_eq!(
        (result.owner, result.decision),
        (
            Some("d".into()),
            Decision::Preempted {
                previous: vec![other.clone()]
            }
        ),
        "strictly higher preference takes over"
    );

    let result = elect(
        &vip,
        &three,
        &[
            claim("a", "10.0.0.100"),
            claim("b", "10.0.0.100"),
            claim("c", "10.0.0.100"),
        ],
    );
    assert_eq!(
        result.owner,
        Some(fresh.clone()),
        "conflict resolved by the election order"
    );
    let Decision::ConflictResolved { losers } = result.decision else {
        panic!("conflict")
    };
    assert_eq!(losers.len(), 2);

    let result = elect(
        &ips(&["10.0.0.100", "fd00::100"]),
        &three,
        &[claim(&other.0, "fd00::100")],
    );
    assert_eq!(
        result.owner,
        Some(other.clone()),
        "a claim on any of the service's IPs counts"
    );

    assert_eq!(elect(&[], &three, &[]).owner, None, "no IP");
    assert_eq!(elect(&vip, &[], &[]).owner, None, "no candidate");
    let all_dead: Vec<Candidate> = three
        .iter()
        .map(|c| Candidate {
            alive: false,
            ..c.clone()
        })
        .collect();
    assert_eq!(
        elect(&vip, &all_dead, &[claim("a", "10.0.0.100")]).decision,
        Decision::NoOwner
    );
}

fn arb_candidates() -> impl Strategy<Value = Vec<Candidate>> {
    proptest::collection::btree_map(0u8..12, (any::<bool>(), any::<bool>(), 0u64..3), 1..10)
        .prop_map(|map| {
            map.into_iter()
                .map(|(id, (alive, eligible, preference))| Candidate {
                    node: NodeName(format!("node-{id}")),
                    alive: alive || id % 3 == 0,
                    eligible: eligible || id % 2 == 0,
                    preference,
                })
                .collect()
        })
}

fn arb_ips() -> impl Strategy<Value = Vec<IpAddr>> {
    proptest::collection::vec(
        prop_oneof![Just("10.0.0.100"), Just("10.0.0.101"), Just("fd00::100")],
        1..3,
    )
    .prop_map(|list| list.into_iter().map(|ip| ip.parse().unwrap()).collect())
}

/// The claims of a converged cluster: the owner (if any) claims every IP of the service.
fn steady_claims(
    service_ips: &[IpAddr],
    candidates: &[Candidate],
) -> (Option<NodeName>, Vec<Claim>) {
    let owner = elect(service_ips, candidates, &[]).owner;
    let claims = owner
        .iter()
        .flat_map(|node| {
            service_ips.iter().map(move |ip| Claim {
                node: node.clone(),
                ip: *ip,
            })
        })
        .collect();
    (owner, claims)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Every node sees the inputs in its own order and still picks the same owner.
    #[test]
    fn same_inputs_same_owner(
        service_ips in arb_ips(),
        candidates in arb_candidates(),
        claimants in proptest::collection::vec(0usize..10, 0..4),
        seed in any::<u64>(),
    ) {
        let claims: Vec<Claim> = claimants
            .iter()
            .filter_map(|i| candidates.get(*i))
            .map(|c| Claim { node: c.node.clone(), ip: service_ips[0] })
            .collect();
        let expected = elect(&service_ips, &candidates, &claims);
        let mut shuffled_candidates = candidates.clone();
        let mut shuffled_claims = claims.clone();
        // A deterministic permutation per seed (rotation plus reversal).
        let rotate = (seed as usize) % shuffled_candidates.len().max(1);
        shuffled_candidates.rotate_left(rotate);
        if seed & 1 == 1 { shuffled_candidates.reverse(); shuffled_claims.reverse(); }
        if !shuffled_claims.is_empty() {
            let rotate = (seed as usize >> 8) % shuffled_claims.len();
            shuffled_claims.rotate_left(rotate);
        }
        prop_assert_eq!(elect(&service_ips, &shuffled_candidates, &shuffled_claims), expected.clone());
        // Without claims, the owner is MetalLB's first candidate.
        prop_assert_eq!(elect(&service_ips, &candidates, &[]).owner, metallb_first(&service_ips, &candidates));
        // The owner is always usable.
        if let Some(owner) = &expected.owner {
            prop_assert!(candidates.iter().any(|c| &c.node == owner && c.alive && c.eligible));
        }
    }

    /// Adding a node never moves an IP unless the newcomer has a strictly higher preference.
    #[test]
    fn adding_a_node_is_sticky(
        service_ips in arb_ips(),
        candidates in arb_candidates(),
        preference in 0u64..4,
    ) {
        let (owner, claims) = steady_claims(&service_ips, &candidates);
        let mut grown = candidates.clone();
        grown.push(Candidate { node: "newcomer".into(), alive: true, eligible: true, preference });
        let after = elect(&service_ips, &grown, &claims).owner;
        match &owner {
            Some(owner_name) => {
                let owner_preference = candidates.iter().find(|c| &c.node == owner_name).unwrap().preference;
                if preference > owner_preference {
                    prop_assert_eq!(after, Some(NodeName::from("newcomer")));
                } else {
                    prop_assert_eq!(after, owner.clone());
                }
            }
            None => prop_assert_eq!(after, Some(NodeName::from("newcomer"))),
        }
    }

    /// Removing (or killing) a node moves only the IPs it owned.
    #[test]
    fn removing_a_node_moves_only_its_ips(
        service_ips in arb_ips(),
        candidates in arb_candidates(),
        victim in 0usize..10,
        kill_instead in any::<bool>(),
    ) {
        let (owner, claims) = steady_claims(&service_ips, &candidates);
        let victim = victim % candidates.len();
        let victim_name = candidates[victim].node.clone();
        let mut shrunk = candidates.clone();
        if kill_instead { shrunk[victim].alive = false; } else { shrunk.remove(victim); }
        let after = elect(&service_ips, &shrunk, &claims).owner;
        if owner.as_ref() == Some(&victim_name) {
            prop_assert_ne!(after.clone(), Some(victim_name));
            prop_assert_eq!(after, metallb_first(&service_ips, &shrunk));
        } else {
            prop_assert_eq!(after, owner);
        }
    }
}
