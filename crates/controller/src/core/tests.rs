//! Table tests of the core with object builders and the real allocator ([`AllocatorIpam`]), no
//! API server.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use ironlb_alloc::{Pool, PoolName};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Service, ServiceSpec, ServiceStatus,
};
use kube::api::ObjectMeta;

use super::*;
use crate::ipam::{AllocatorIpam, ControllerConfig};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

type TestConfig = ControllerConfig;

/// An auto-assign pool of exactly `ips`, allocated in that order.
fn pool(name: &str, ips: &[&str]) -> Pool {
    pool_with(name, ips, true)
}

/// A pool that only Services asking for it by name or IP get addresses from.
fn manual_pool(name: &str, ips: &[&str]) -> Pool {
    pool_with(name, ips, false)
}

fn pool_with(name: &str, ips: &[&str], auto_assign: bool) -> Pool {
    let cidrs = ips.iter().map(|text| IpNet::from(ip(text))).collect();
    Pool::new(PoolName::from(name), cidrs, auto_assign, false, None).unwrap()
}

/// Builds Services field by field.
#[derive(Clone)]
struct ServiceBuilder {
    service: Service,
}

fn mk_service(namespace: &str, name: &str) -> ServiceBuilder {
    ServiceBuilder {
        service: Service {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                cluster_ips: Some(vec!["10.96.0.10".into()]),
                ..ServiceSpec::default()
            }),
            status: None,
        },
    }
}

impl ServiceBuilder {
    fn spec(&mut self) -> &mut ServiceSpec {
        self.service.spec.get_or_insert_with(ServiceSpec::default)
    }

    fn type_(mut self, type_: &str) -> Self {
        self.spec().type_ = Some(type_.into());
        self
    }

    fn cluster_ips(mut self, ips: &[&str]) -> Self {
        self.spec().cluster_ips = Some(ips.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    fn policy(mut self, policy: &str) -> Self {
        self.spec().ip_family_policy = Some(policy.into());
        self
    }

    fn class(mut self, class: &str) -> Self {
        self.spec().load_balancer_class = Some(class.into());
        self
    }

    fn rv(mut self, rv: &str) -> Self {
        self.service.metadata.resource_version = Some(rv.into());
        self
    }

    fn annotation(mut self, key: &str, value: &str) -> Self {
        self.service
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    /// Status ingress with `ipMode: VIP`, as a real apiserver returns it, plus the pool
    /// annotation the controller writes with it.
    fn assigned(self, pool: &str, ips: &[&str]) -> Self {
        let mut built = self.annotation(crate::view::ANNOTATION_ALLOCATED_FROM_POOL, pool);
        built.service.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(
                    ips.iter()
                        .map(|ip| LoadBalancerIngress {
                            ip: Some((*ip).to_owned()),
                            ip_mode: Some("VIP".into()),
                            ..LoadBalancerIngress::default()
                        })
                        .collect(),
                ),
            }),
            conditions: None,
        });
        built
    }

    fn view(self) -> ServiceView {
        ServiceView::from_service(&self.service).unwrap()
    }

    fn input(self) -> Input<TestConfig> {
        Input::ServiceApplied(Box::new(self.view()))
    }
}

fn config(pools: Vec<Pool>) -> Input<TestConfig> {
    Input::Config(ConfigUpdate {
        result: Ok(ControllerConfig { pools }),
        legacy_configmap: None,
    })
}

fn core() -> Core<AllocatorIpam> {
    Core::new(
        AllocatorIpam::default(),
        CoreOptions {
            load_balancer_class: None,
            namespace: "metallb-system".into(),
        },
    )
}

fn drain(core: &mut Core<AllocatorIpam>) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

fn writes(actions: &[Action]) -> BTreeMap<String, (Vec<IpAddr>, Option<String>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::WriteStatus(w) => Some((
                w.key.to_string(),
                (w.status.ips.clone(), w.status.pool.clone()),
            )),
            _ => None,
        })
        .collect()
}

fn reasons(actions: &[Action]) -> Vec<(String, &'static str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(ServiceEvent {
                object: EventObject::Service { key, .. },
                reason,
                ..
            }) => Some((key.to_string(), *reason)),
            _ => None,
        })
        .collect()
}

fn assigned(ips: &[&str], pool: &str) -> (Vec<IpAddr>, Option<String>) {
    (ips.iter().map(|s| ip(s)).collect(), Some(pool.to_owned()))
}

fn cleared() -> (Vec<IpAddr>, Option<String>) {
    (Vec::new(), None)
}

/// A synced core with `pools` and `services`, drained.
fn running(pools: Vec<Pool>, services: Vec<ServiceBuilder>) -> (Core<AllocatorIpam>, Vec<Action>) {
    let mut core = core();
    core.handle(config(pools));
    for service in services {
        core.handle(service.input());
    }
    core.handle(Input::Synced);
    let actions = drain(&mut core);
    (core, actions)
}

#[test]
fn nothing_happens_before_sync_and_config() {
    let mut core = core();
    core.handle(mk_service("ns", "a").input());
    assert!(drain(&mut core).is_empty(), "no config, not synced");
    core.handle(Input::Synced);
    assert!(drain(&mut core).is_empty(), "synced but no config");
    core.handle(config(vec![pool("p", &["10.0.0.1"])]));
    let actions = drain(&mut core);
    assert_eq!(writes(&actions)["ns/a"], assigned(&["10.0.0.1"], "p"));
    assert!(actions.contains(&Action::Ready));
}

#[test]
fn allocation_on_create_and_events() {
    let (mut core, _) = running(vec![pool("p", &["10.0.0.1", "10.0.0.2"])], vec![]);
    core.handle(mk_service("ns", "a").input());
    let actions = drain(&mut core);
    assert_eq!(writes(&actions)["ns/a"], assigned(&["10.0.0.1"], "p"));
    assert_eq!(reasons(&actions), vec![("ns/a".to_owned(), "IPAllocated")]);
    let message = actions.iter().find_map(|a| match a {
        Action::Event(e) => Some(e.message.clone()),
        _ => None,
    });
    assert_eq!(message.as_deref(), Some("Assigned IP [\"10.0.0.1\"]"));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::PoolCounters(c) if c["p"].assigned_ipv4 == 1)));
}

#[test]
fn table_single_service_outcomes() {
    struct Case {
        desc: &'static str,
        service: ServiceBuilder,
        want_write: Option<(Vec<IpAddr>, Option<String>)>,
        want_reasons: Vec<&'static str>,
    }
    let cases = [
        Case {
            desc: "not a load balancer, no status: nothing to write",
            service: mk_service("ns", "s").type_("ClusterIP"),
            want_write: None,
            want_reasons: vec![],
        },
        Case {
            desc: "status already shown with ipMode VIP: no write",
            service: mk_service("ns", "s").assigned("p", &["10.0.0.2"]),
            want_write: None,
            want_reasons: vec![],
        },
        Case {
            desc: "status ip without the pool annotation: the annotation is added",
            service: mk_service("ns", "s")
                .assigned("p", &["10.0.0.2"])
                .annotation(crate::view::ANNOTATION_ALLOCATED_FROM_POOL, "wrong"),
            want_write: Some(assigned(&["10.0.0.2"], "p")),
            want_reasons: vec![],
        },
        Case {
            desc: "status ip outside every pool: cleared then reallocated",
            service: mk_service("ns", "s").assigned("p", &["192.168.0.1"]),
            want_write: Some(assigned(&["10.0.0.1"], "p")),
            want_reasons: vec!["ClearAssignment", "IPAllocated"],
        },
        Case {
            desc: "requested ip",
            service: mk_service("ns", "s").annotation("metallb.io/loadBalancerIPs", "10.0.0.3"),
            want_write: Some(assigned(&["10.0.0.3"], "p")),
            want_reasons: vec!["IPAllocated"],
        },
        Case {
            desc: "requested ip changed: reallocated",
            service: mk_service("ns", "s")
                .assigned("p", &["10.0.0.2"])
                .annotation("metallb.io/loadBalancerIPs", "10.0.0.3"),
            want_write: Some(assigned(&["10.0.0.3"], "p")),
            want_reasons: vec!["IPAllocated"],
        },
        Case {
            desc: "unparseable request: warning, status left alone",
            service: mk_service("ns", "s").annotation("metallb.io/loadBalancerIPs", "nope"),
            want_write: None,
            want_reasons: vec!["LoadBalancerFailed"],
        },
        Case {
            desc: "requested ip of the wrong family",
            service: mk_service("ns", "s").annotation("metallb.io/loadBalancerIPs", "fc00::1"),
            want_write: None,
            want_reasons: vec!["AllocationFailed"],
        },
        Case {
            desc: "pool annotation",
            service: mk_service("ns", "s").annotation("metallb.io/address-pool", "q"),
            want_write: Some(assigned(&["10.1.0.1"], "q")),
            want_reasons: vec!["IPAllocated"],
        },
        Case {
            desc: "pool annotation differs from current pool: reallocated",
            service: mk_service("ns", "s")
                .assigned("p", &["10.0.0.2"])
                .annotation("metallb.io/address-pool", "q"),
            want_write: Some(assigned(&["10.1.0.1"], "q")),
            want_reasons: vec!["IPAllocated"],
        },
        Case {
            desc: "unknown pool",
            service: mk_service("ns", "s").annotation("metallb.io/address-pool", "nope"),
            want_write: None,
            want_reasons: vec!["AllocationFailed"],
        },
        Case {
            desc: "no cluster ip: nothing",
            service: mk_service("ns", "s").cluster_ips(&[]),
            want_write: None,
            want_reasons: vec![],
        },
        Case {
            desc: "RequireDualStack with one cluster ip",
            service: mk_service("ns", "s").policy("RequireDualStack"),
            want_write: None,
            want_reasons: vec!["not enough clusterips"],
        },
        Case {
            desc: "dual stack written IPv4 first",
            service: mk_service("ns", "s")
                .policy("RequireDualStack")
                .cluster_ips(&["fd00::10", "10.96.0.10"]),
            want_write: Some(assigned(&["10.0.0.1", "fc00::1"], "p")),
            want_reasons: vec!["IPAllocated"],
        },
        Case {
            desc: "PreferDualStack with one ip gets the other family from the same pool",
            service: mk_service("ns", "s")
                .policy("PreferDualStack")
                .cluster_ips(&["10.96.0.10", "fd00::10"])
                .assigned("p", &["10.0.0.2"]),
            want_write: Some(assigned(&["10.0.0.2", "fc00::1"], "p")),
            want_reasons: vec!["IPAllocated"],
        },
        Case {
            desc: "lb family differs from cluster family: reallocated",
            service: mk_service("ns", "s").assigned("p", &["fc00::1"]),
            want_write: Some(assigned(&["10.0.0.1"], "p")),
            want_reasons: vec!["IPAllocated"],
        },
        Case {
            desc: "deprecated annotation warns when the status changes",
            service: mk_service("ns", "s").annotation("metallb.universe.tf/address-pool", "p"),
            want_write: Some(assigned(&["10.0.0.1"], "p")),
            want_reasons: vec!["IPAllocated", "deprecatedAnnotation"],
        },
        Case {
            desc: "other load balancer class: ignored",
            service: mk_service("ns", "s").class("other"),
            want_write: None,
            want_reasons: vec![],
        },
    ];
    for case in cases {
        let pools = vec![
            pool("p", &["10.0.0.1", "10.0.0.2", "10.0.0.3", "fc00::1"]),
            manual_pool("q", &["10.1.0.1"]),
        ];
        let (_, actions) = running(pools, vec![case.service]);
        let got_writes = writes(&actions);
        assert_eq!(
            got_writes.get("ns/s").cloned(),
            case.want_write,
            "{}",
            case.desc
        );
        let got: Vec<&str> = reasons(&actions).into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, case.want_reasons, "{}", case.desc);
    }
}

#[test]
fn restart_assigns_held_ips_before_pending_services() {
    // "a-new" sorts first but must not take "z-old"'s address.
    let (core, actions) = running(
        vec![pool("p", &["10.0.0.1", "10.0.0.2"])],
        vec![
            mk_service("ns", "a-new"),
            mk_service("ns", "z-old").assigned("p", &["10.0.0.1"]),
        ],
    );
    let got = writes(&actions);
    assert_eq!(got.get("ns/z-old"), None, "held IP kept, nothing to write");
    assert_eq!(got["ns/a-new"], assigned(&["10.0.0.2"], "p"));
    assert_eq!(
        core.ipam().ips_of(&ServiceKey::new("ns", "z-old")),
        vec![ip("10.0.0.1")]
    );
}

#[test]
fn invalid_service_cannot_steal_from_valid_one_on_restart() {
    // "a-moved" holds an IP outside the pool; its reallocation must not take "b-held"'s IP.
    let (_, actions) = running(
        vec![pool("p", &["10.0.0.1", "10.0.0.2"])],
        vec![
            mk_service("ns", "a-moved").assigned("p", &["192.168.0.1"]),
            mk_service("ns", "b-held").assigned("p", &["10.0.0.1"]),
        ],
    );
    let got = writes(&actions);
    assert_eq!(got["ns/a-moved"], assigned(&["10.0.0.2"], "p"));
    assert_eq!(got.get("ns/b-held"), None);
}

#[test]
fn delete_releases_and_pending_service_gets_the_ip() {
    let (mut core, actions) = running(
        vec![pool("p", &["10.0.0.1"])],
        vec![mk_service("ns", "a"), mk_service("ns", "b")],
    );
    assert_eq!(writes(&actions)["ns/a"], assigned(&["10.0.0.1"], "p"));
    assert!(reasons(&actions).contains(&("ns/b".to_owned(), "AllocationFailed")));
    core.handle(Input::ServiceDeleted(ServiceKey::new("ns", "a")));
    let actions = drain(&mut core);
    assert_eq!(writes(&actions)["ns/b"], assigned(&["10.0.0.1"], "p"));
}

#[test]
fn type_change_releases_and_reprocesses() {
    let (mut core, _) = running(
        vec![pool("p", &["10.0.0.1"])],
        vec![
            mk_service("ns", "a").assigned("p", &["10.0.0.1"]),
            mk_service("ns", "b"),
        ],
    );
    core.handle(
        mk_service("ns", "a")
            .assigned("p", &["10.0.0.1"])
            .type_("ClusterIP")
            .rv("2")
            .input(),
    );
    let got = writes(&drain(&mut core));
    assert_eq!(got["ns/a"], cleared());
    assert_eq!(got["ns/b"], assigned(&["10.0.0.1"], "p"));
}

#[test]
fn no_second_write_for_the_same_resource_version() {
    let (mut core, actions) = running(vec![pool("p", &["10.0.0.1"])], vec![mk_service("ns", "a")]);
    assert_eq!(writes(&actions).len(), 1);
    // The same object again (a reprocess while the write is in flight): no duplicate.
    core.handle(mk_service("ns", "a").input());
    assert!(writes(&drain(&mut core)).is_empty());
    // The written object comes back with ipMode added: nothing more to write.
    core.handle(
        mk_service("ns", "a")
            .assigned("p", &["10.0.0.1"])
            .rv("2")
            .input(),
    );
    assert!(writes(&drain(&mut core)).is_empty());
    // Someone wipes the status: rewritten.
    core.handle(mk_service("ns", "a").rv("3").input());
    assert_eq!(
        writes(&drain(&mut core))["ns/a"],
        assigned(&["10.0.0.1"], "p")
    );
}

#[test]
fn invalid_config_keeps_the_last_good_one() {
    let (mut core, _) = running(
        vec![pool("p", &["10.0.0.1"])],
        vec![mk_service("ns", "a").assigned("p", &["10.0.0.1"])],
    );
    core.handle(Input::Config(ConfigUpdate {
        result: Err(vec!["IPAddressPool/p: spec.addresses: bad".into()]),
        legacy_configmap: None,
    }));
    let actions = drain(&mut core);
    assert!(writes(&actions).is_empty(), "services untouched");
    assert!(actions.contains(&Action::ConfigMetrics {
        loaded: true,
        stale: true
    }));
    assert!(actions.contains(&Action::ConfigurationState(ConfigState {
        errors: vec!["IPAddressPool/p: spec.addresses: bad".into()]
    })));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Event(ServiceEvent {
            object: EventObject::ConfigurationState { .. },
            warning: true,
            ..
        })
    )));
    // A new service still gets served from the last good configuration.
    core.handle(config(vec![pool("p", &["10.0.0.1", "10.0.0.2"])]));
    core.handle(mk_service("ns", "b").input());
    let actions = drain(&mut core);
    assert_eq!(writes(&actions)["ns/b"], assigned(&["10.0.0.2"], "p"));
    assert!(actions.contains(&Action::ConfigMetrics {
        loaded: true,
        stale: false
    }));
    assert!(actions.contains(&Action::ConfigurationState(ConfigState::default())));
}

#[test]
fn pool_removal_reallocates() {
    let (mut core, _) = running(
        vec![pool("p", &["10.0.0.1"]), pool("q", &["10.1.0.1"])],
        vec![mk_service("ns", "a").assigned("p", &["10.0.0.1"])],
    );
    core.handle(config(vec![pool("q", &["10.1.0.1"])]));
    let actions = drain(&mut core);
    assert_eq!(writes(&actions)["ns/a"], assigned(&["10.1.0.1"], "q"));
    assert_eq!(
        reasons(&actions),
        vec![
            ("ns/a".to_owned(), "ClearAssignment"),
            ("ns/a".to_owned(), "IPAllocated")
        ]
    );
}

#[test]
fn pool_removal_without_room_clears_status() {
    let (mut core, _) = running(
        vec![pool("p", &["10.0.0.1"]), pool("q", &["10.1.0.1"])],
        vec![mk_service("ns", "a").assigned("p", &["10.0.0.1"])],
    );
    core.handle(config(vec![manual_pool("q", &["10.1.0.1"])]));
    let actions = drain(&mut core);
    assert_eq!(writes(&actions)["ns/a"], cleared());
    assert!(reasons(&actions).contains(&("ns/a".to_owned(), "AllocationFailed")));
}

#[test]
fn load_balancer_class_filter() {
    let mut core = Core::new(
        AllocatorIpam::default(),
        CoreOptions {
            load_balancer_class: Some("ironlb".into()),
            namespace: "metallb-system".into(),
        },
    );
    core.handle(config(vec![pool("p", &["10.0.0.1", "10.0.0.2"])]));
    core.handle(mk_service("ns", "mine").class("ironlb").input());
    core.handle(mk_service("ns", "classless").input());
    core.handle(mk_service("ns", "other").class("other").input());
    core.handle(Input::Synced);
    let got = writes(&drain(&mut core));
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["ns/mine"]);
}

#[test]
fn allocation_key_change_reprocesses_pending_services() {
    let (mut core, _) = running(
        vec![pool("p", &["10.0.0.1"])],
        vec![
            mk_service("ns", "a").assigned("p", &["10.0.0.1"]),
            mk_service("ns", "b"),
        ],
    );
    core.handle(
        mk_service("ns", "a")
            .assigned("p", &["10.0.0.1"])
            .annotation("metallb.io/allow-shared-ip", "k")
            .rv("2")
            .input(),
    );
    let actions = drain(&mut core);
    // "b" was converged again (it fails again: it has no sharing key).
    assert!(reasons(&actions).contains(&("ns/b".to_owned(), "AllocationFailed")));
}

#[test]
fn legacy_configmap_warns_once() {
    let mut core = core();
    let notice = LegacyNotice {
        namespace: "metallb-system".into(),
        name: "config".into(),
        replacement_objects: vec!["IPAddressPool/default".into()],
    };
    for _ in 0..2 {
        core.handle(Input::Config(ConfigUpdate {
            result: Ok(ControllerConfig {
                pools: vec![pool("default", &["10.0.0.1"])],
            }),
            legacy_configmap: Some(notice.clone()),
        }));
    }
    let actions = drain(&mut core);
    let legacy = actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Event(ServiceEvent {
                    object: EventObject::ConfigMap { .. },
                    ..
                })
            )
        })
        .count();
    assert_eq!(legacy, 1);
}

#[test]
fn full_pass_converges_one_service_at_a_time() {
    let mut core = core();
    core.handle(config(vec![pool(
        "p",
        &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
    )]));
    for name in ["a", "b", "c"] {
        core.handle(mk_service("ns", name).input());
    }
    core.handle(Input::Synced);
    // After the configuration's actions, the first is "a"'s: the others are not converged
    // yet, so a caller that waits on each action (a bounded channel) bounds what is queued.
    let mut first = core.poll_action();
    while matches!(
        first,
        Some(Action::ConfigurationState(_) | Action::ConfigMetrics { .. })
    ) {
        first = core.poll_action();
    }
    assert!(
        matches!(&first, Some(Action::Event(ServiceEvent { object: EventObject::Service { key, .. }, .. })) if key.name == "a"),
        "{first:?}"
    );
    assert_eq!(core.work.len(), 2, "b and c wait");
    assert!(core.actions.len() <= 1, "only a's write is queued");
    let rest = drain(&mut core);
    assert_eq!(writes(&rest).len(), 3);
    assert!(rest.contains(&Action::Ready));
}
