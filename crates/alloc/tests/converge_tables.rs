//! Table tests for [`Allocator::converge`]: the controller's decision for one Service
//! (`reference/metallb.md` §2.2, §2.4, §2.6).

mod common;

use common::*;
use ironlb_alloc::{
    AllocError, Allocator, ClearReason, ConvergeEvent, Family, IpFamilyPolicy, Request,
};

struct Case {
    desc: &'static str,
    svc: Request,
    current: &'static [&'static str],
    /// `Ok((addresses, pool))` or `Err(exact message)`.
    want: Result<(&'static [&'static str], &'static str), &'static str>,
    /// A predicate on the events.
    events: fn(&[ConvergeEvent]) -> bool,
}

fn any(_: &[ConvergeEvent]) -> bool {
    true
}

fn allocated(events: &[ConvergeEvent]) -> bool {
    matches!(events, [ConvergeEvent::IpAllocated { .. }])
}

fn none(events: &[ConvergeEvent]) -> bool {
    events.is_empty()
}

fn setup() -> Allocator {
    let mut allocator = Allocator::new();
    allocator.set_pools(pools(vec![
        pool("default", &["192.168.1.0/30"]),
        pool("dual", &["10.0.0.0/31", "fd00::/127"]).namespaces(&["dual"]),
        pool("manual", &["172.16.0.0/30"]).manual(),
        pool("v6", &["fd01::/127"]),
    ]));
    allocator
}

#[test]
fn converge_table() {
    use IpFamilyPolicy::{PreferDualStack, RequireDualStack};
    let cases = vec![
        Case {
            desc: "new service, automatic",
            svc: svc("a"),
            current: &[],
            want: Ok((&["192.168.1.0"], "default")),
            events: allocated,
        },
        Case {
            desc: "existing status kept",
            svc: svc("a"),
            current: &["192.168.1.2"],
            want: Ok((&["192.168.1.2"], "default")),
            events: none,
        },
        Case {
            desc: "status outside every pool: ClearAssignment then a new IP",
            svc: svc("a"),
            current: &["9.9.9.9"],
            want: Ok((&["192.168.1.0"], "default")),
            events: |events| {
                matches!(
                    events,
                    [
                        ConvergeEvent::ClearAssignment {
                            error: AllocError::NotInAnyPool { .. },
                            ..
                        },
                        ConvergeEvent::IpAllocated { .. }
                    ]
                )
            },
        },
        Case {
            desc: "pool annotation differs from current pool",
            svc: svc("a").want_pool("manual"),
            current: &["192.168.1.2"],
            want: Ok((&["172.16.0.0"], "manual")),
            events: |events| {
                matches!(
                    events.first(),
                    Some(ConvergeEvent::Cleared {
                        reason: ClearReason::DifferentPoolRequested,
                        ..
                    })
                )
            },
        },
        Case {
            desc: "requested IP differs from current",
            svc: svc("a").want_ips(&["192.168.1.3"]),
            current: &["192.168.1.2"],
            want: Ok((&["192.168.1.3"], "default")),
            events: |events| {
                matches!(
                    events.first(),
                    Some(ConvergeEvent::Cleared {
                        reason: ClearReason::DifferentIpsRequested,
                        ..
                    })
                )
            },
        },
        Case {
            desc: "requested IP in a manual pool",
            svc: svc("a").want_ips(&["172.16.0.3"]),
            current: &[],
            want: Ok((&["172.16.0.3"], "manual")),
            events: allocated,
        },
        Case {
            desc: "requested IP and pool disagree",
            svc: svc("a").want_ips(&["172.16.0.3"]).want_pool("default"),
            current: &[],
            want: Err("requested loadBalancer IP(s) [\"172.16.0.3\"] is not compatible with requested address pool default"),
            events: any,
        },
        Case {
            desc: "requested IP of the wrong family",
            svc: svc("a").want_ips(&["fd01::1"]),
            current: &[],
            want: Err("requested loadBalancer IP(s) [\"fd01::1\"] does not match the ipFamily of the service"),
            events: any,
        },
        Case {
            desc: "requested IPs of one family",
            svc: svc("a").want_ips(&["192.168.1.1", "192.168.1.2"]),
            current: &[],
            want: Err("invalid requested loadBalancer IPs [\"192.168.1.1\" \"192.168.1.2\"]: same address family [\"192.168.1.1\" \"192.168.1.2\"]"),
            events: any,
        },
        Case {
            desc: "RequireDualStack with one cluster IP",
            svc: {
                let mut request = svc("dual/r");
                request.policy = RequireDualStack;
                request
            },
            current: &[],
            want: Err("Service requires dual stack but not enough clusterips (1)"),
            events: any,
        },
        Case {
            desc: "no cluster IP",
            svc: {
                let mut request = svc("a");
                request.cluster_families.clear();
                request
            },
            current: &[],
            want: Err("no ClusterIPs: can't determine the service's IP family"),
            events: any,
        },
        Case {
            desc: "IPv4 status on an IPv6 service: family changed, re-allocated",
            svc: svc("a").v6(),
            current: &["192.168.1.2"],
            want: Ok((&["fd01::"], "v6")),
            events: |events| {
                matches!(
                    events.first(),
                    Some(ConvergeEvent::Cleared {
                        reason: ClearReason::FamilyChanged,
                        ..
                    })
                )
            },
        },
        Case {
            desc: "PreferDualStack holding one address gets the other family",
            svc: svc("dual/p").dual(PreferDualStack),
            current: &["10.0.0.1"],
            want: Ok((&["10.0.0.1", "fd00::"], "dual")),
            events: |events| matches!(events, [ConvergeEvent::AdditionalIpAllocated { .. }]),
        },
        Case {
            desc: "PreferDualStack holding the one requested address gets no other family",
            svc: svc("dual/p").dual(PreferDualStack).want_ips(&["10.0.0.1"]),
            current: &["10.0.0.1"],
            want: Ok((&["10.0.0.1"], "dual")),
            events: none,
        },
        Case {
            desc: "PreferDualStack with one cluster IP stays single",
            svc: svc("dual/p").prefer_single(Family::V4),
            current: &["10.0.0.1"],
            want: Ok((&["10.0.0.1"], "dual")),
            events: none,
        },
        Case {
            desc: "PreferDualStack from a single-stack pool: additional fails, keeps one",
            svc: svc("p").dual(PreferDualStack),
            current: &["192.168.1.1"],
            want: Ok((&["192.168.1.1"], "default")),
            events: |events| matches!(events, [ConvergeEvent::AdditionalAssignFailed { .. }]),
        },
        Case {
            desc: "serviceAllocation no longer selects the service",
            svc: svc("other/x"),
            current: &["10.0.0.0"],
            want: Ok((&["192.168.1.0"], "default")),
            events: |events| {
                matches!(
                    events.first(),
                    Some(ConvergeEvent::ClearAssignment {
                        error: AllocError::PoolNotCompatible { .. },
                        ..
                    })
                )
            },
        },
    ];
    for case in cases {
        let mut allocator = setup();
        let converged = allocator.converge(&case.svc, &ips(case.current));
        allocator.check_invariants();
        match (&converged.result, &case.want) {
            (Ok(got), Ok((want_ips, want_pool))) => {
                assert_eq!(got.ips, ips(want_ips), "{}", case.desc);
                assert_eq!(got.pool.0, *want_pool, "{}", case.desc);
            }
            (Err(error), Err(want)) => {
                assert_eq!(&error.to_string(), want, "{}", case.desc);
                assert!(
                    allocator.ips(&case.svc.service).is_none(),
                    "{}: released",
                    case.desc
                );
            }
            (got, want) => panic!("{}: got {got:?}, want {want:?}", case.desc),
        }
        assert!(
            (case.events)(&converged.events),
            "{}: events {:?}",
            case.desc,
            converged.events
        );
    }
}

#[test]
fn no_pools() {
    let mut allocator = Allocator::new();
    let converged = allocator.converge(&svc("a"), &[]);
    assert_eq!(converged.result, Err(AllocError::NoPools));
}

#[test]
fn existing_first_keeps_addresses() {
    // A restart: services with status are replayed first, so a new service cannot steal them.
    let mut allocator = setup();
    let kept = allocator.converge(&svc("old"), &ips(&["192.168.1.0"]));
    assert_eq!(kept.result.unwrap().ips, ips(&["192.168.1.0"]));
    let new = allocator.converge(&svc("new"), &[]);
    assert_eq!(new.result.unwrap().ips, ips(&["192.168.1.1"]));
}
