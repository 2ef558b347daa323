//! MetalLB-style table tests for the allocator: each case is a sequence of operations, each
//! with the addresses it must yield or the exact error it must give. They port the behaviour of
//! MetalLB's `TestAssignment`, `TestPoolAllocation`, `TestAllocation`, `TestBuggyIPs`,
//! `TestConfigReload`, `TestAutoAssign` and `TestPoolCount` as `reference/metallb.md` §2–§3
//! describe them, with ironlb's deterministic tie-breaks.

mod common;

use common::*;
use ironlb_alloc::{AllocError, Allocator, IpFamilyPolicy, PoolName, Request};

/// One operation on the allocator.
enum Op {
    Assign(&'static [&'static str]),
    Allocate,
    FromPool(&'static str),
    Additional,
    Release,
}

/// One step: the operation, its service, and what it must give.
struct Step {
    desc: &'static str,
    svc: Request,
    op: Op,
    /// `Ok(addresses)` or `Err(exact error message)`.
    want: Result<&'static [&'static str], &'static str>,
}

fn step(
    desc: &'static str,
    svc: Request,
    op: Op,
    want: Result<&'static [&'static str], &'static str>,
) -> Step {
    Step {
        desc,
        svc,
        op,
        want,
    }
}

fn run(case: &str, allocator: &mut Allocator, steps: Vec<Step>) {
    for step in steps {
        let got: Result<Vec<std::net::IpAddr>, AllocError> = match &step.op {
            Op::Assign(list) => {
                let wanted = ips(list);
                allocator.assign(&step.svc, &wanted).map(|()| wanted)
            }
            Op::Allocate => allocator.allocate(&step.svc),
            Op::FromPool(name) => allocator.allocate_from_pool(&step.svc, &PoolName::from(*name)),
            Op::Additional => allocator
                .allocate_additional_family(&step.svc)
                .map(|ip| allocator.ips(&step.svc.service).unwrap_or_else(|| vec![ip])),
            Op::Release => {
                allocator.release(&step.svc.service);
                Ok(Vec::new())
            }
        };
        allocator.check_invariants();
        match (&got, &step.want) {
            (Ok(got), Ok(want)) => {
                assert_eq!(got, &ips(want), "{case}: {}: addresses", step.desc);
                if !matches!(step.op, Op::Release) {
                    assert_eq!(
                        allocator.ips(&step.svc.service).as_deref(),
                        Some(got.as_slice()),
                        "{case}: {}: state holds the result",
                        step.desc
                    );
                }
            }
            (Err(error), Err(want)) => {
                assert_eq!(&error.to_string(), want, "{case}: {}: error", step.desc)
            }
            (got, want) => panic!("{case}: {}: got {got:?}, want {want:?}", step.desc),
        }
    }
}

#[test]
fn assignment() {
    use IpFamilyPolicy::RequireDualStack;
    let mut allocator = Allocator::new();
    allocator.set_pools(pools(vec![
        pool("test", &["1.2.3.4/31", "1000::4/127"]),
        pool("test2", &["1.2.4.0/24"]).buggy(),
        pool("other", &["5.6.7.8/32"]),
    ]));
    let steps = vec![
        step("s1 takes an IP", svc("s1"), Op::Assign(&["1.2.3.4"]), Ok(&["1.2.3.4"])),
        step("s1 again is idempotent", svc("s1"), Op::Assign(&["1.2.3.4"]), Ok(&["1.2.3.4"])),
        step(
            "s2 cannot take s1's IP without sharing",
            svc("s2"),
            Op::Assign(&["1.2.3.4"]),
            Err("can't change sharing key for \"default/s2\", address also in use by default/s1: existing service does not allow sharing"),
        ),
        step("s2 takes the other IP", svc("s2"), Op::Assign(&["1.2.3.5"]), Ok(&["1.2.3.5"])),
        step("s1 releases", svc("s1"), Op::Release, Ok(&[])),
        step("s2 moves to the freed IP", svc("s2"), Op::Assign(&["1.2.3.4"]), Ok(&["1.2.3.4"])),
        step(
            "IP outside every pool",
            svc("s3"),
            Op::Assign(&["1.2.3.6"]),
            Err("[\"1.2.3.6\"] is not allowed in config"),
        ),
        step(
            ".0 of an avoidBuggyIPs pool",
            svc("s3"),
            Op::Assign(&["1.2.4.0"]),
            Err("[\"1.2.4.0\"] is not allowed in config"),
        ),
        step(
            ".255 of an avoidBuggyIPs pool",
            svc("s3"),
            Op::Assign(&["1.2.4.255"]),
            Err("[\"1.2.4.255\"] is not allowed in config"),
        ),
        step("ordinary address of that pool", svc("s3"), Op::Assign(&["1.2.4.1"]), Ok(&["1.2.4.1"])),
        step(
            "sharing: first user",
            svc("s4").share("k").ports(&["TCP/80"]),
            Op::Assign(&["1.2.3.5"]),
            Ok(&["1.2.3.5"]),
        ),
        step(
            "sharing: same key, same port",
            svc("s5").share("k").ports(&["TCP/80"]),
            Op::Assign(&["1.2.3.5"]),
            Err("port TCP/80 is already in use on \"1.2.3.5\""),
        ),
        step(
            "sharing: same key, same number on UDP",
            svc("s5").share("k").ports(&["UDP/80"]),
            Op::Assign(&["1.2.3.5"]),
            Ok(&["1.2.3.5"]),
        ),
        step(
            "sharing: other key",
            svc("s6").share("other").ports(&["TCP/443"]),
            Op::Assign(&["1.2.3.5"]),
            Err("can't change sharing key for \"default/s6\", address also in use by default/s4,default/s5: sharing key \"other\" does not match existing sharing key \"k\""),
        ),
        step(
            "sharing: new service does not share",
            svc("s6").ports(&["TCP/443"]),
            Op::Assign(&["1.2.3.5"]),
            Err("can't change sharing key for \"default/s6\", address also in use by default/s4,default/s5: new service does not allow sharing"),
        ),
        step(
            "sharing: other backend key",
            svc("s6").share("k").backend("app=x").ports(&["TCP/443"]),
            Op::Assign(&["1.2.3.5"]),
            Err("can't change sharing key for \"default/s6\", address also in use by default/s4,default/s5: backend key \"app=x\" does not match existing sharing key \"\""),
        ),
        step(
            "a sharer cannot change its key while others use the IP",
            svc("s4").share("new").ports(&["TCP/80"]),
            Op::Assign(&["1.2.3.5"]),
            Err("can't change sharing key for \"default/s4\", address also in use by default/s5: sharing key \"new\" does not match existing sharing key \"k\""),
        ),
        step("s5 leaves", svc("s5"), Op::Release, Ok(&[])),
        step(
            "the only user may change its key in place",
            svc("s4").share("new").ports(&["TCP/80"]),
            Op::Assign(&["1.2.3.5"]),
            Ok(&["1.2.3.5"]),
        ),
        step(
            "and stop sharing",
            svc("s4").ports(&["TCP/80"]),
            Op::Assign(&["1.2.3.5"]),
            Ok(&["1.2.3.5"]),
        ),
        step(
            "dual-stack pair from one pool",
            svc("d1").dual(RequireDualStack),
            Op::Assign(&["1.2.3.4", "1000::4"]),
            Err("can't change sharing key for \"default/d1\", address also in use by default/s2: existing service does not allow sharing"),
        ),
        step("s2 leaves", svc("s2"), Op::Release, Ok(&[])),
        step(
            "dual-stack pair",
            svc("d1").dual(RequireDualStack),
            Op::Assign(&["1.2.3.4", "1000::4"]),
            Ok(&["1.2.3.4", "1000::4"]),
        ),
        step(
            "two of one family",
            svc("d2").dual(RequireDualStack),
            Op::Assign(&["1000::5", "1000::4"]),
            Err("\"1000::5\" \"1000::4\" has the same family"),
        ),
        step(
            "three addresses",
            svc("d2").dual(RequireDualStack),
            Op::Assign(&["1.2.3.4", "1000::4", "1000::5"]),
            Err("more than two addresses [\"1.2.3.4\" \"1000::4\" \"1000::5\"]"),
        ),
        step(
            "pair across two pools",
            svc("d2").dual(RequireDualStack),
            Op::Assign(&["5.6.7.8", "1000::5"]),
            Err("[\"5.6.7.8\" \"1000::5\"] is not allowed in config"),
        ),
    ];
    run("assignment", &mut allocator, steps);
}

#[test]
fn pool_allocation() {
    use IpFamilyPolicy::{PreferDualStack, RequireDualStack};
    let mut allocator = Allocator::new();
    allocator.set_pools(pools(vec![
        pool("test", &["1.2.3.4/31"]),
        pool("test-v6", &["1000::4/127"]),
        pool("dual", &["2.0.0.0/32", "2000::/127"]),
        pool("manual", &["3.0.0.0/31"]).manual(),
        pool("ns-only", &["4.0.0.0/31"]).namespaces(&["team-a"]),
        pool("labelled", &["4.1.0.0/31"]).selector("tier=gold"),
    ]));
    let steps = vec![
        step(
            "s1 lowest",
            svc("s1"),
            Op::FromPool("test"),
            Ok(&["1.2.3.4"]),
        ),
        step(
            "s1 again keeps",
            svc("s1"),
            Op::FromPool("test"),
            Ok(&["1.2.3.4"]),
        ),
        step(
            "s2 next",
            svc("s2").share("k").ports(&["TCP/80"]),
            Op::FromPool("test"),
            Ok(&["1.2.3.5"]),
        ),
        step(
            "pool full",
            svc("s3"),
            Op::FromPool("test"),
            Err("no available IPs in pool test for ipv4 IPFamily"),
        ),
        step(
            "full pool still shares with a compatible key",
            svc("s4").share("k").ports(&["TCP/443"]),
            Op::FromPool("test"),
            Ok(&["1.2.3.5"]),
        ),
        step(
            "but not on a used port",
            svc("s5").share("k").ports(&["TCP/80"]),
            Op::FromPool("test"),
            Err("no available IPs in pool test for ipv4 IPFamily"),
        ),
        step("s1 releases", svc("s1"), Op::Release, Ok(&[])),
        step(
            "s3 gets the freed IP",
            svc("s3"),
            Op::FromPool("test"),
            Ok(&["1.2.3.4"]),
        ),
        step(
            "unknown pool",
            svc("s6"),
            Op::FromPool("nope"),
            Err("unknown pool \"nope\""),
        ),
        step(
            "v6 pool",
            svc("s6").v6(),
            Op::FromPool("test-v6"),
            Ok(&["1000::4"]),
        ),
        step(
            "v4 service from a v6 pool",
            svc("s7"),
            Op::FromPool("test-v6"),
            Err("no available IPs in pool test-v6 for ipv4 IPFamily"),
        ),
        step(
            "RequireDualStack from a dual pool",
            svc("d1").dual(RequireDualStack),
            Op::FromPool("dual"),
            Ok(&["2.0.0.0", "2000::"]),
        ),
        step(
            "RequireDualStack, pool out of IPv4",
            svc("d2").dual(RequireDualStack),
            Op::FromPool("dual"),
            Err("no available IPs in pool dual for dual IPFamily"),
        ),
        step(
            "PreferDualStack takes what is left",
            svc("d2").dual(PreferDualStack),
            Op::FromPool("dual"),
            Ok(&["2000::1"]),
        ),
        step(
            "PreferDualStack from a single-stack pool",
            svc("d3").dual(PreferDualStack),
            Op::FromPool("test-v6"),
            Ok(&["1000::5"]),
        ),
        step(
            "autoAssign=false pool by name",
            svc("s8"),
            Op::FromPool("manual"),
            Ok(&["3.0.0.0"]),
        ),
        step(
            "namespace-restricted pool, other namespace",
            svc("other/s9"),
            Op::FromPool("ns-only"),
            Err("pool ns-only not compatible for ip assignment"),
        ),
        step(
            "namespace-restricted pool, its namespace",
            svc("team-a/s9"),
            Op::FromPool("ns-only"),
            Ok(&["4.0.0.0"]),
        ),
        step(
            "service selector does not match",
            svc("s10").label("tier", "bronze"),
            Op::FromPool("labelled"),
            Err("pool labelled not compatible for ip assignment"),
        ),
        step(
            "service selector matches",
            svc("s10").label("tier", "gold"),
            Op::FromPool("labelled"),
            Ok(&["4.1.0.0"]),
        ),
    ];
    run("pool_allocation", &mut allocator, steps);
}

#[test]
fn automatic_allocation() {
    use IpFamilyPolicy::{PreferDualStack, RequireDualStack};
    let mut allocator = Allocator::new();
    allocator.set_pools(pools(vec![
        // Names chosen so that name order and priority order differ.
        pool("b-plain", &["10.0.1.0/31"]),
        pool("a-plain", &["10.0.0.0/31"]),
        pool("z-manual", &["10.0.9.0/24"]).manual(),
        pool("p-zero", &["10.1.0.0/32"]).namespaces(&["pinned"]),
        pool("p-two", &["10.1.2.0/32"])
            .namespaces(&["pinned"])
            .priority(2),
        pool("p-one", &["10.1.1.0/32"])
            .namespaces(&["pinned"])
            .priority(1),
        pool("p-one-b", &["10.1.1.8/32"])
            .namespaces(&["pinned"])
            .priority(1),
        pool("gold", &["10.2.0.0/32"])
            .selector("tier=gold")
            .namespaces(&["pinned", "shop"]),
        pool("v6", &["fd00::/127"]),
        pool("v4-only", &["10.3.0.0/32"]).namespaces(&["dual"]),
        pool("v6-only", &["fd03::/128"]).namespaces(&["dual"]),
        pool("both", &["10.4.0.0/32", "fd04::/128"]).namespaces(&["dual2"]),
    ]));
    let steps = vec![
        step(
            "unpinned pools by name",
            svc("s1"),
            Op::Allocate,
            Ok(&["10.0.0.0"]),
        ),
        step(
            "lowest address next",
            svc("s2"),
            Op::Allocate,
            Ok(&["10.0.0.1"]),
        ),
        step(
            "next pool by name",
            svc("s3"),
            Op::Allocate,
            Ok(&["10.0.1.0"]),
        ),
        step(
            "allocate keeps an existing allocation",
            svc("s1"),
            Op::Allocate,
            Ok(&["10.0.0.0"]),
        ),
        step(
            "last unpinned address",
            svc("s4"),
            Op::Allocate,
            Ok(&["10.0.1.1"]),
        ),
        step(
            "autoAssign=false is never used automatically",
            svc("s5"),
            Op::Allocate,
            Err("no available IPs"),
        ),
        step(
            "priority 1 first, ties by name",
            svc("pinned/a"),
            Op::Allocate,
            Ok(&["10.1.1.0"]),
        ),
        step(
            "then the other priority 1",
            svc("pinned/b"),
            Op::Allocate,
            Ok(&["10.1.1.8"]),
        ),
        step(
            "then priority 2",
            svc("pinned/c"),
            Op::Allocate,
            Ok(&["10.1.2.0"]),
        ),
        step(
            "then priority 0 last",
            svc("pinned/d"),
            Op::Allocate,
            Ok(&["10.1.0.0"]),
        ),
        step(
            "selector AND namespace",
            svc("pinned/e").label("tier", "gold"),
            Op::Allocate,
            Ok(&["10.2.0.0"]),
        ),
        step("s1 releases", svc("s1"), Op::Release, Ok(&[])),
        step(
            "pinned pools full: fall back to unpinned ones",
            svc("pinned/f"),
            Op::Allocate,
            Ok(&["10.0.0.0"]),
        ),
        step(
            "pinned and unpinned full",
            svc("pinned/g"),
            Op::Allocate,
            Err("no available IPs"),
        ),
        step(
            "IPv6 service",
            svc("s6").v6(),
            Op::Allocate,
            Ok(&["fd00::"]),
        ),
        step(
            "RequireDualStack needs one pool with both",
            svc("dual/r").dual(RequireDualStack),
            Op::Allocate,
            Err("no available IPs"),
        ),
        step(
            "PreferDualStack falls back to the primary family's pool",
            svc("dual/p").dual(PreferDualStack),
            Op::Allocate,
            Ok(&["10.3.0.0"]),
        ),
        step(
            "PreferDualStack with IPv6 primary",
            svc("dual/q").dual_v6_first(PreferDualStack),
            Op::Allocate,
            Ok(&["fd03::"]),
        ),
        step(
            "PreferDualStack gets both from a dual pool",
            svc("dual2/p").dual(PreferDualStack),
            Op::Allocate,
            Ok(&["10.4.0.0", "fd04::"]),
        ),
    ];
    run("automatic_allocation", &mut allocator, steps);
}

#[test]
fn buggy_ips() {
    let mut allocator = Allocator::new();
    allocator.set_pools(pools(vec![
        pool("a", &["1.2.3.0/31"]).buggy(),
        pool("b", &["1.2.4.254/31"]).buggy(),
        pool("c", &["1.2.5.0/31"]),
        pool("d", &["1.2.6.255-1.2.7.1"]).buggy(),
    ]));
    let steps = vec![
        step(".0 skipped", svc("s1"), Op::FromPool("a"), Ok(&["1.2.3.1"])),
        step(
            "nothing left",
            svc("s2"),
            Op::FromPool("a"),
            Err("no available IPs in pool a for ipv4 IPFamily"),
        ),
        step(
            ".254 is fine",
            svc("s3"),
            Op::FromPool("b"),
            Ok(&["1.2.4.254"]),
        ),
        step(
            ".255 skipped",
            svc("s4"),
            Op::FromPool("b"),
            Err("no available IPs in pool b for ipv4 IPFamily"),
        ),
        step(
            "without avoidBuggyIPs .0 is allocatable",
            svc("s5"),
            Op::FromPool("c"),
            Ok(&["1.2.5.0"]),
        ),
        step(
            "range across a /24 boundary skips .255 and .0",
            svc("s6"),
            Op::FromPool("d"),
            Ok(&["1.2.7.1"]),
        ),
        step(
            "explicit .0 refused",
            svc("s7"),
            Op::Assign(&["1.2.3.0"]),
            Err("[\"1.2.3.0\"] is not allowed in config"),
        ),
    ];
    run("buggy_ips", &mut allocator, steps);
}

#[test]
fn additional_family() {
    use IpFamilyPolicy::PreferDualStack;
    let mut allocator = Allocator::new();
    allocator.set_pools(pools(vec![pool("dual", &["1.0.0.0/31", "fd00::/127"])]));
    let steps = vec![
        step(
            "one family held",
            svc("s1").dual(PreferDualStack),
            Op::Assign(&["1.0.0.1"]),
            Ok(&["1.0.0.1"]),
        ),
        step(
            "adds IPv6 from the same pool",
            svc("s1").dual(PreferDualStack),
            Op::Additional,
            Ok(&["1.0.0.1", "fd00::"]),
        ),
        step(
            "already both",
            svc("s1").dual(PreferDualStack),
            Op::Additional,
            Err("service already holds an ipv6 address"),
        ),
        step(
            "nothing held",
            svc("s2").dual(PreferDualStack),
            Op::Additional,
            Err("service \"default/s2\" holds no IP"),
        ),
    ];
    run("additional_family", &mut allocator, steps);
}

#[test]
fn config_reload() {
    let mut allocator = Allocator::new();
    allocator.set_pools(pools(vec![
        pool("p", &["1.2.3.0/30"]),
        pool("q", &["1.2.4.0/30"]),
    ]));
    allocator.assign(&svc("s1"), &ips(&["1.2.3.0"])).unwrap();
    allocator.assign(&svc("s2"), &ips(&["1.2.3.1"])).unwrap();
    allocator
        .assign(&svc("s3").share("k").ports(&["TCP/1"]), &ips(&["1.2.4.1"]))
        .unwrap();
    allocator
        .assign(&svc("s4").share("k").ports(&["TCP/2"]), &ips(&["1.2.4.1"]))
        .unwrap();

    struct Case {
        desc: &'static str,
        pools: Vec<P>,
        released: Vec<&'static str>,
        remapped: Vec<(&'static str, &'static str, &'static str)>,
        held: Vec<(&'static str, &'static str, &'static str)>,
    }
    let cases = vec![
        Case {
            desc: "same config changes nothing",
            pools: vec![pool("p", &["1.2.3.0/30"]), pool("q", &["1.2.4.0/30"])],
            released: vec![],
            remapped: vec![],
            held: vec![("s1", "1.2.3.0", "p"), ("s3", "1.2.4.1", "q")],
        },
        Case {
            desc: "pool renamed: re-mapped, addresses kept, sharing kept",
            pools: vec![pool("p2", &["1.2.3.0/30"]), pool("q", &["1.2.4.0/30"])],
            released: vec![],
            remapped: vec![("s1", "p", "p2"), ("s2", "p", "p2")],
            held: vec![("s1", "1.2.3.0", "p2"), ("s4", "1.2.4.1", "q")],
        },
        Case {
            desc: "avoidBuggyIPs turned on: the .0 holder is released",
            pools: vec![
                pool("p2", &["1.2.3.0/30"]).buggy(),
                pool("q", &["1.2.4.0/30"]),
            ],
            released: vec!["s1"],
            remapped: vec![],
            held: vec![("s2", "1.2.3.1", "p2")],
        },
        Case {
            desc: "pool removed: its services are released",
            pools: vec![pool("q", &["1.2.4.0/30"])],
            released: vec!["s2"],
            remapped: vec![],
            held: vec![("s3", "1.2.4.1", "q"), ("s4", "1.2.4.1", "q")],
        },
        Case {
            desc: "pool shrinks below a shared address",
            pools: vec![pool("q", &["1.2.4.0/32"])],
            released: vec!["s3", "s4"],
            remapped: vec![],
            held: vec![],
        },
    ];
    for case in cases {
        let changed = allocator.set_pools(pools(case.pools));
        allocator.check_invariants();
        let released: Vec<String> = changed
            .released
            .iter()
            .map(|(service, _)| service.name.clone())
            .collect();
        assert_eq!(released, case.released, "{}: released", case.desc);
        let remapped: Vec<(String, String, String)> = changed
            .remapped
            .iter()
            .map(|(service, from, to)| (service.name.clone(), from.0.clone(), to.0.clone()))
            .collect();
        let want: Vec<(String, String, String)> = case
            .remapped
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(remapped, want, "{}: remapped", case.desc);
        for (service, address, pool) in case.held {
            let assignment = allocator.assignment(&key(service)).expect(case.desc);
            assert_eq!(assignment.ips, ips(&[address]), "{}: {service}", case.desc);
            assert_eq!(assignment.pool.0, pool, "{}: {service} pool", case.desc);
        }
    }
    assert!(allocator.is_empty());
}

#[test]
fn pool_count() {
    struct Case {
        desc: &'static str,
        pool: P,
        want: (i64, i64, i64),
    }
    let max = i64::MAX;
    let cases = vec![
        Case {
            desc: "/24",
            pool: pool("p", &["1.2.3.0/24"]),
            want: (256, 256, 0),
        },
        Case {
            desc: "/24 buggy",
            pool: pool("p", &["1.2.3.0/24"]).buggy(),
            want: (254, 254, 0),
        },
        Case {
            desc: "/16 buggy",
            pool: pool("p", &["1.2.0.0/16"]).buggy(),
            want: (65024, 65024, 0),
        },
        Case {
            desc: "/31 at .0 buggy",
            pool: pool("p", &["1.2.3.0/31"]).buggy(),
            want: (1, 1, 0),
        },
        Case {
            desc: "/31 at .254 buggy",
            pool: pool("p", &["1.2.3.254/31"]).buggy(),
            want: (1, 1, 0),
        },
        Case {
            desc: "/30 mid buggy",
            pool: pool("p", &["1.2.3.4/30"]).buggy(),
            want: (4, 4, 0),
        },
        Case {
            desc: "/32",
            pool: pool("p", &["1.2.3.4/32"]),
            want: (1, 1, 0),
        },
        Case {
            desc: "range",
            pool: pool("p", &["1.2.3.1-1.2.3.6"]),
            want: (6, 6, 0),
        },
        Case {
            desc: "v6 /120 buggy unaffected",
            pool: pool("p", &["fd00::/120"]).buggy(),
            want: (256, 0, 256),
        },
        Case {
            desc: "v6 /64 counts as MaxInt64",
            pool: pool("p", &["fd00::/64"]),
            want: (max, 0, max),
        },
        Case {
            desc: "v6 /66 is 2^62: MaxInt64",
            pool: pool("p", &["fd00::/66"]),
            want: (max, 0, max),
        },
        Case {
            desc: "v6 /67",
            pool: pool("p", &["fd00::/67"]),
            want: (1 << 61, 0, 1 << 61),
        },
        Case {
            desc: "two huge CIDRs saturate",
            pool: pool("p", &["fd00::/64", "fd01::/64", "1.0.0.0/30"]),
            want: (max, 4, max),
        },
        Case {
            desc: "dual-stack",
            pool: pool("p", &["1.2.3.0/30", "fd00::/126"]),
            want: (8, 4, 4),
        },
    ];
    for case in cases {
        let built = case.pool.build();
        let capacity = ironlb_alloc::pool_capacity(&built);
        assert_eq!(
            (capacity.total, capacity.ipv4, capacity.ipv6),
            case.want,
            "{}",
            case.desc
        );
    }
}

#[test]
fn pool_counters() {
    use IpFamilyPolicy::RequireDualStack;
    let mut allocator = Allocator::new();
    allocator.set_pools(pools(vec![pool("p", &["1.2.3.0/30", "fd00::/64"]).buggy()]));
    let name = PoolName::from("p");
    let before = allocator.pool_counters(&name).unwrap();
    assert_eq!(before.assigned_ipv4, 0);
    assert_eq!(before.available_ipv4, 3);
    assert_eq!(before.available_ipv6, i64::MAX);
    allocator
        .allocate(&svc("a").share("k").ports(&["TCP/1"]))
        .unwrap();
    allocator
        .allocate(&svc("b").share("k").ports(&["TCP/2"]))
        .unwrap();
    allocator
        .allocate(&svc("c").dual(RequireDualStack))
        .unwrap();
    let after = allocator.pool_counters(&name).unwrap();
    assert_eq!(after.assigned_ipv4, 2, "a and b share one address");
    assert_eq!(after.available_ipv4, 1);
    assert_eq!(after.assigned_ipv6, 1);
    assert_eq!(after.available_ipv6, i64::MAX - 1);
    assert_eq!(after.services_allocated, 3);
    assert!(allocator.pool_counters(&PoolName::from("nope")).is_none());
}
