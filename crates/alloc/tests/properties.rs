//! Property tests: random operation sequences over a small configuration. After every
//! operation, checked from the outside (public API only) and from the inside
//! (`check_invariants`):
//! - no address is held by two services unless both share with the same key and backend key
//!   and use disjoint ports;
//! - every held address lies in its pool (and is not a buggy address of an avoidBuggyIPs pool);
//! - the pool counters equal a recount;
//! - release + re-allocate is deterministic (two copies give the same answer), and replaying
//!   the whole sequence gives the same state.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use common::*;
use ironlb_alloc::{
    ip_confuses_buggy_firmwares, Allocator, Family, IpFamilyPolicy, Pool, PoolName, Request,
    ServiceKey,
};
use proptest::prelude::*;

const SERVICES: [&str; 8] = [
    "a/s0", "a/s1", "a/s2", "a/s3", "b/s4", "b/s5", "b/s6", "b/s7",
];
const ADDRESSES: [&str; 10] = [
    "10.0.0.0",
    "10.0.0.1",
    "10.0.0.7",
    "10.0.1.255",
    "10.0.2.0",
    "10.0.2.1",
    "fd00::",
    "fd00::1",
    "172.16.0.1",
    "9.9.9.9",
];
const POOLS: [&str; 5] = ["small", "buggy", "dual", "manual", "pinned"];

fn config(variant: u8) -> Vec<Pool> {
    match variant % 3 {
        0 => pools(vec![
            pool("small", &["10.0.0.0/30"]),
            pool("buggy", &["10.0.1.254-10.0.2.1"]).buggy(),
            pool("dual", &["10.0.3.0/31", "fd00::/64"]),
            pool("manual", &["172.16.0.0/30"]).manual(),
            pool("pinned", &["10.0.4.0/31"])
                .namespaces(&["b"])
                .priority(1),
        ]),
        // "small" grows, "buggy" loses avoidBuggyIPs, "pinned" moves.
        1 => pools(vec![
            pool("small", &["10.0.0.0/29"]),
            pool("buggy", &["10.0.1.254-10.0.2.1"]),
            pool("dual", &["10.0.3.0/31", "fd00::/64"]),
            pool("manual", &["172.16.0.0/30"]).manual(),
            pool("pinned", &["10.0.5.0/31"]).namespaces(&["a"]),
        ]),
        // Pools removed and renamed.
        _ => pools(vec![
            pool("small2", &["10.0.0.0/31"]),
            pool("dual", &["fd00::/64"]),
        ]),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Allocate(usize),
    Assign(usize, Vec<usize>),
    FromPool(usize, usize),
    Additional(usize),
    Release(usize),
    Converge(usize, Vec<usize>),
    SetPools(u8),
}

#[derive(Clone, Debug)]
struct Shape {
    share: u8,
    backend: u8,
    ports: u8,
    family: u8,
}

fn request(service: usize, shape: &Shape) -> Request {
    let mut request = svc(SERVICES[service % SERVICES.len()]);
    request.sharing_key = ["", "k1", "k2"][usize::from(shape.share % 3)].to_owned();
    request.backend_key = ["", "app=x"][usize::from(shape.backend % 2)].to_owned();
    let all = ["TCP/80", "TCP/443", "UDP/53"];
    let ports: Vec<&str> = all
        .iter()
        .enumerate()
        .filter(|(index, _)| shape.ports & (1 << index) != 0)
        .map(|(_, port)| *port)
        .collect();
    request = request.ports(&ports);
    match shape.family % 4 {
        0 => request,
        1 => request.v6(),
        2 => request.dual(IpFamilyPolicy::PreferDualStack),
        _ => request.dual(IpFamilyPolicy::RequireDualStack),
    }
}

fn op_strategy() -> impl Strategy<Value = (Op, Shape)> {
    let service = 0..SERVICES.len();
    let addresses = prop::collection::vec(0..ADDRESSES.len(), 1..=2);
    let op = prop_oneof![
        4 => service.clone().prop_map(Op::Allocate),
        2 => (service.clone(), addresses.clone()).prop_map(|(s, a)| Op::Assign(s, a)),
        2 => (service.clone(), 0..POOLS.len()).prop_map(|(s, p)| Op::FromPool(s, p)),
        1 => service.clone().prop_map(Op::Additional),
        2 => service.clone().prop_map(Op::Release),
        2 => (service, prop::collection::vec(0..ADDRESSES.len(), 0..=2))
            .prop_map(|(s, a)| Op::Converge(s, a)),
        1 => (0u8..3).prop_map(Op::SetPools),
    ];
    let shape =
        (0u8..3, 0u8..2, 0u8..8, 0u8..4).prop_map(|(share, backend, ports, family)| Shape {
            share,
            backend,
            ports,
            family,
        });
    (op, shape)
}

/// Applies one op; records the request of every service that holds addresses afterwards.
fn apply(
    allocator: &mut Allocator,
    requests: &mut BTreeMap<ServiceKey, Request>,
    op: &Op,
    shape: &Shape,
) -> String {
    let pick = |list: &[usize]| -> Vec<IpAddr> { list.iter().map(|&i| ip(ADDRESSES[i])).collect() };
    let outcome = match op {
        Op::SetPools(variant) => {
            let changed = allocator.set_pools(config(*variant));
            format!("{changed:?}")
        }
        Op::Release(service) => {
            let request = request(*service, shape);
            format!("{}", allocator.release(&request.service))
        }
        _ => {
            let (service, result) = match op {
                Op::Allocate(service) => {
                    let request = request(*service, shape);
                    let result = allocator.allocate(&request);
                    (request, format!("{result:?}"))
                }
                Op::Assign(service, list) => {
                    let request = request(*service, shape);
                    let result = allocator.assign(&request, &pick(list));
                    (request, format!("{result:?}"))
                }
                Op::FromPool(service, pool) => {
                    let request = request(*service, shape);
                    let result =
                        allocator.allocate_from_pool(&request, &PoolName::from(POOLS[*pool]));
                    (request, format!("{result:?}"))
                }
                Op::Additional(service) => {
                    let request = request(*service, shape);
                    let result = allocator.allocate_additional_family(&request);
                    (request, format!("{result:?}"))
                }
                Op::Converge(service, list) => {
                    let request = request(*service, shape);
                    let result = allocator.converge(&request, &pick(list));
                    (request, format!("{:?}", result.result))
                }
                Op::SetPools(_) | Op::Release(_) => unreachable!("handled above"),
            };
            // A successful operation stores the request's keys and ports with the service.
            if !result.starts_with("Err") {
                requests.insert(service.service.clone(), service);
            }
            result
        }
    };
    requests.retain(|service, _| allocator.ips(service).is_some());
    outcome
}

/// The invariants, checked through the public API only.
fn check_outside(allocator: &Allocator, requests: &BTreeMap<ServiceKey, Request>) {
    let assignments = allocator.assignments();
    let mut users: BTreeMap<IpAddr, Vec<&ServiceKey>> = BTreeMap::new();
    let mut recount: BTreeMap<PoolName, (i64, i64, u64)> = BTreeMap::new();
    for (service, assignment) in &assignments {
        assert_eq!(
            allocator.pool_for(&assignment.ips),
            Some(&assignment.pool),
            "{service}: addresses inside its pool"
        );
        let pool = allocator
            .pools()
            .find(|pool| pool.name() == &assignment.pool)
            .expect("pool exists");
        for ip in &assignment.ips {
            assert!(pool.contains(*ip), "{service}: {ip} in {}", pool.name());
            assert!(
                !(pool.avoid_buggy_ips() && ip_confuses_buggy_firmwares(*ip)),
                "{service}: {ip} is buggy"
            );
            users.entry(*ip).or_default().push(service);
        }
        recount.entry(assignment.pool.clone()).or_default().2 += 1;
    }
    for (ip, holders) in &users {
        let pool = allocator
            .pool_for(&[*ip])
            .expect("held address in a pool")
            .clone();
        let entry = recount.entry(pool).or_default();
        match Family::of(*ip) {
            Family::V4 => entry.0 += 1,
            Family::V6 => entry.1 += 1,
        }
        for (index, first) in holders.iter().enumerate() {
            for second in &holders[index + 1..] {
                let a = &requests[*first];
                let b = &requests[*second];
                assert!(!a.sharing_key.is_empty(), "{ip}: {first} does not share");
                assert_eq!(a.sharing_key, b.sharing_key, "{ip}: keys");
                assert_eq!(a.backend_key, b.backend_key, "{ip}: backend keys");
                let ports: BTreeSet<_> = a.ports.iter().collect();
                assert!(
                    b.ports.iter().all(|port| !ports.contains(port)),
                    "{ip}: ports"
                );
            }
        }
    }
    for pool in allocator.pools() {
        let counters = allocator.pool_counters(pool.name()).expect("known pool");
        let (ipv4, ipv6, services) = recount.get(pool.name()).copied().unwrap_or_default();
        assert_eq!(
            counters.assigned_ipv4,
            ipv4,
            "{}: IPv4 recount",
            pool.name()
        );
        assert_eq!(
            counters.assigned_ipv6,
            ipv6,
            "{}: IPv6 recount",
            pool.name()
        );
        assert_eq!(
            counters.services_allocated,
            services,
            "{}: services",
            pool.name()
        );
        assert_eq!(
            counters.available_ipv4,
            counters.capacity.ipv4 - ipv4,
            "{}: available",
            pool.name()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold(ops in prop::collection::vec(op_strategy(), 1..60)) {
        let mut allocator = Allocator::new();
        allocator.set_pools(config(0));
        let mut requests = BTreeMap::new();
        let mut outcomes = Vec::new();
        for (op, shape) in &ops {
            outcomes.push(apply(&mut allocator, &mut requests, op, shape));
            allocator.check_invariants();
            check_outside(&allocator, &requests);

            // Release + re-allocate is deterministic: two copies agree.
            if let Op::Allocate(service) = op {
                let request = request(*service, shape);
                let mut first = allocator.clone();
                let mut second = allocator.clone();
                first.release(&request.service);
                second.release(&request.service);
                prop_assert_eq!(first.allocate(&request), second.allocate(&request));
                prop_assert_eq!(first.assignments(), second.assignments());
                first.check_invariants();
            }
        }
        // Replaying the sequence gives the same outcomes and the same state.
        let mut replay = Allocator::new();
        replay.set_pools(config(0));
        let mut replay_requests = BTreeMap::new();
        for ((op, shape), outcome) in ops.iter().zip(&outcomes) {
            let again = apply(&mut replay, &mut replay_requests, op, shape);
            prop_assert_eq!(&again, outcome);
        }
        prop_assert_eq!(replay.assignments(), allocator.assignments());
    }
}
