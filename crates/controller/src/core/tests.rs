//! Table tests of the core with object builders and a small in-test allocator, no API server.
//! The real allocator is exercised through [`crate::ipam`] in `tests/`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Service, ServiceSpec, ServiceStatus,
};
use kube::api::ObjectMeta;

use super::*;

/// A pool for the test allocator: a name, its addresses in order, autoAssign.
#[derive(Clone, Debug, PartialEq)]
struct TestPool {
    name: &'static str,
    ips: Vec<IpAddr>,
    auto_assign: bool,
}

type TestConfig = Vec<TestPool>;

/// The smallest allocator with MetalLB's observable rules that the flow needs: one pool per
/// service, lowest free address first, no sharing.
#[derive(Debug, Default)]
struct TestIpam {
    pools: TestConfig,
    held: BTreeMap<ServiceKey, (String, Vec<IpAddr>)>,
}

impl TestIpam {
    fn pool_holding(&self, ips: &[IpAddr]) -> Option<&TestPool> {
        self.pools
            .iter()
            .find(|p| ips.iter().all(|ip| p.ips.contains(ip)))
    }

    fn used_by_other(&self, key: &ServiceKey, ip: IpAddr) -> bool {
        self.held
            .iter()
            .any(|(k, (_, ips))| k != key && ips.contains(&ip))
    }

    fn take(&mut self, view: &ServiceView, pool: &TestPool) -> Option<Vec<IpAddr>> {
        let mut ips = Vec::new();
        let families: Vec<bool> = match view.family_policy {
            FamilyPolicy::SingleStack => vec![view.cluster_ips.first()?.is_ipv6()],
            _ => view.cluster_ips.iter().map(IpAddr::is_ipv6).collect(),
        };
        for ipv6 in families {
            let free = pool
                .ips
                .iter()
                .find(|ip| ip.is_ipv6() == ipv6 && !self.used_by_other(&view.key, **ip))?;
            ips.push(*free);
        }
        self.held
            .insert(view.key.clone(), (pool.name.to_owned(), ips.clone()));
        Some(ips)
    }
}

impl Ipam for TestIpam {
    type Config = TestConfig;

    fn set_config(&mut self, config: &TestConfig) {
        self.pools = config.clone();
        let pools = self.pools.clone();
        self.held.retain(|_, (pool, ips)| {
            pools
                .iter()
                .any(|p| p.name == pool && ips.iter().all(|ip| p.ips.contains(ip)))
        });
    }

    fn has_pools(&self) -> bool {
        !self.pools.is_empty()
    }

    fn requested(&self, view: &ServiceView) -> Result<Requested, String> {
        let request = view.request.as_ref().map_err(Clone::clone)?;
        Ok(Requested {
            ips: request.requested_ips.clone(),
            pool: request.requested_pool.as_ref().map(|pool| pool.0.clone()),
        })
    }

    fn allocation_key(&self, view: &ServiceView) -> String {
        view.request
            .as_ref()
            .map(|request| request.sharing_key.clone())
            .unwrap_or_default()
    }

    fn assign(&mut self, view: &ServiceView, ips: &[IpAddr]) -> Result<String, String> {
        let pool = self
            .pool_holding(ips)
            .ok_or_else(|| "not allowed in config".to_owned())?
            .name;
        if ips.iter().any(|ip| self.used_by_other(&view.key, *ip)) {
            return Err("address in use".to_owned());
        }
        self.held
            .insert(view.key.clone(), (pool.to_owned(), ips.to_vec()));
        Ok(pool.to_owned())
    }

    fn allocate(&mut self, view: &ServiceView) -> Result<(String, Vec<IpAddr>), String> {
        for pool in self.pools.clone().iter().filter(|p| p.auto_assign) {
            if let Some(ips) = self.take(view, pool) {
                return Ok((pool.name.to_owned(), ips));
            }
        }
        Err("no available IPs".to_owned())
    }

    fn allocate_from_pool(
        &mut self,
        view: &ServiceView,
        pool: &str,
    ) -> Result<Vec<IpAddr>, String> {
        let found = self
            .pools
            .iter()
            .find(|p| p.name == pool)
            .cloned()
            .ok_or_else(|| format!("unknown pool \"{pool}\""))?;
        self.take(view, &found)
            .ok_or_else(|| format!("no available IPs in pool {pool}"))
    }

    fn allocate_additional_family(&mut self, view: &ServiceView) -> Result<IpAddr, String> {
        let (pool, ips) = self.held.get(&view.key).cloned().ok_or("none")?;
        let want_ipv6 = !ips.first().ok_or("none")?.is_ipv6();
        let pool = self.pools.iter().find(|p| p.name == pool).ok_or("gone")?;
        let ip = *pool
            .ips
            .iter()
            .find(|ip| ip.is_ipv6() == want_ipv6 && !self.used_by_other(&view.key, **ip))
            .ok_or("no address of the other family")?;
        if let Some((_, held)) = self.held.get_mut(&view.key) {
            held.push(ip);
        }
        Ok(ip)
    }

    fn release(&mut self, key: &ServiceKey) {
        self.held.remove(key);
    }

    fn pool_of(&self, key: &ServiceKey) -> Option<String> {
        self.held.get(key).map(|(pool, _)| pool.clone())
    }

    fn ips_of(&self, key: &ServiceKey) -> Vec<IpAddr> {
        self.held
            .get(key)
            .map(|(_, ips)| ips.clone())
            .unwrap_or_default()
    }

    fn counters(&self) -> BTreeMap<String, PoolCounters> {
        self.pools
            .iter()
            .map(|p| {
                let used = self
                    .held
                    .values()
                    .filter(|(pool, _)| pool == p.name)
                    .count();
                let used = u64::try_from(used).unwrap_or(u64::MAX);
                (
                    p.name.to_owned(),
                    PoolCounters {
                        assigned_ipv4: used,
                        services: used,
                        available_ipv4: u64::try_from(p.ips.len()).unwrap_or(0) - used,
                        ..PoolCounters::default()
                    },
                )
            })
            .collect()
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn pool(name: &'static str, ips: &[&str]) -> TestPool {
    TestPool {
        name,
        ips: ips.iter().map(|s| ip(s)).collect(),
        auto_assign: true,
    }
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

fn config(pools: Vec<TestPool>) -> Input<TestConfig> {
    Input::Config(ConfigUpdate {
        result: Ok(pools),
        legacy_configmap: None,
    })
}

fn core() -> Core<TestIpam> {
    Core::new(
        TestIpam::default(),
        CoreOptions {
            load_balancer_class: None,
            namespace: "metallb-system".into(),
        },
    )
}

fn drain(core: &mut Core<TestIpam>) -> Vec<Action> {
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
fn running(pools: Vec<TestPool>, services: Vec<ServiceBuilder>) -> (Core<TestIpam>, Vec<Action>) {
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
            TestPool {
                auto_assign: false,
                ..pool("q", &["10.1.0.1"])
            },
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
    core.handle(config(vec![TestPool {
        auto_assign: false,
        ..pool("q", &["10.1.0.1"])
    }]));
    let actions = drain(&mut core);
    assert_eq!(writes(&actions)["ns/a"], cleared());
    assert!(reasons(&actions).contains(&("ns/a".to_owned(), "AllocationFailed")));
}

#[test]
fn load_balancer_class_filter() {
    let mut core = Core::new(
        TestIpam::default(),
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
    // "b" was converged again (it fails again: the test allocator does not share).
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
            result: Ok(vec![pool("default", &["10.0.0.1"])]),
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
