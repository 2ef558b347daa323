//! Builders shared by the allocator's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::net::IpAddr;

use ironlb_alloc::{
    parse_address_entry, Family, IpFamilyPolicy, Pool, PoolName, Port, Protocol, Request,
    ServiceAllocation, ServiceKey,
};
use ironlb_labels::Selector;

pub fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

pub fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|text| ip(text)).collect()
}

pub fn key(text: &str) -> ServiceKey {
    let (namespace, name) = text.split_once('/').unwrap_or(("default", text));
    ServiceKey::new(namespace, name)
}

/// A pool builder.
pub struct P {
    name: &'static str,
    addresses: Vec<&'static str>,
    auto_assign: bool,
    avoid_buggy: bool,
    allocation: Option<ServiceAllocation>,
}

pub fn pool(name: &'static str, addresses: &[&'static str]) -> P {
    P {
        name,
        addresses: addresses.to_vec(),
        auto_assign: true,
        avoid_buggy: false,
        allocation: None,
    }
}

impl P {
    pub fn manual(mut self) -> Self {
        self.auto_assign = false;
        self
    }

    pub fn buggy(mut self) -> Self {
        self.avoid_buggy = true;
        self
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.allocation
            .get_or_insert_with(Default::default)
            .priority = priority;
        self
    }

    pub fn namespaces(mut self, namespaces: &[&str]) -> Self {
        let allocation = self.allocation.get_or_insert_with(Default::default);
        allocation.namespaces = namespaces
            .iter()
            .map(|n| n.to_string())
            .collect::<BTreeSet<_>>();
        allocation.namespaces_restricted = true;
        self
    }

    pub fn selector(mut self, selector: &str) -> Self {
        let allocation = self.allocation.get_or_insert_with(Default::default);
        allocation
            .service_selectors
            .push(Selector::parse(selector).unwrap());
        self
    }

    pub fn build(self) -> Pool {
        let cidrs = self
            .addresses
            .iter()
            .flat_map(|entry| parse_address_entry(entry).unwrap())
            .collect();
        Pool::new(
            PoolName::from(self.name),
            cidrs,
            self.auto_assign,
            self.avoid_buggy,
            self.allocation,
        )
        .unwrap()
    }
}

pub fn pools(list: Vec<P>) -> Vec<Pool> {
    list.into_iter().map(P::build).collect()
}

/// A request builder: IPv4 single-stack service `ns/name` by default.
pub fn svc(name: &str) -> Request {
    Request::new(key(name))
}

pub trait RequestExt {
    fn ports(self, ports: &[&str]) -> Self;
    fn share(self, key: &str) -> Self;
    fn backend(self, key: &str) -> Self;
    fn v6(self) -> Self;
    fn dual(self, policy: IpFamilyPolicy) -> Self;
    fn dual_v6_first(self, policy: IpFamilyPolicy) -> Self;
    fn prefer_single(self, family: Family) -> Self;
    fn label(self, key: &str, value: &str) -> Self;
    fn want_ips(self, list: &[&str]) -> Self;
    fn want_pool(self, name: &str) -> Self;
}

impl RequestExt for Request {
    fn ports(mut self, ports: &[&str]) -> Self {
        self.ports = ports
            .iter()
            .map(|text| {
                let (protocol, port) = text.split_once('/').unwrap();
                Port {
                    protocol: match protocol {
                        "TCP" => Protocol::Tcp,
                        "UDP" => Protocol::Udp,
                        _ => Protocol::Sctp,
                    },
                    port: port.parse().unwrap(),
                }
            })
            .collect();
        self
    }

    fn share(mut self, key: &str) -> Self {
        self.sharing_key = key.to_owned();
        self
    }

    fn backend(mut self, key: &str) -> Self {
        self.backend_key = key.to_owned();
        self
    }

    fn v6(mut self) -> Self {
        self.cluster_families = vec![Family::V6];
        self.primary_family = Family::V6;
        self
    }

    fn dual(mut self, policy: IpFamilyPolicy) -> Self {
        self.cluster_families = vec![Family::V4, Family::V6];
        self.policy = policy;
        self
    }

    fn dual_v6_first(mut self, policy: IpFamilyPolicy) -> Self {
        self.cluster_families = vec![Family::V6, Family::V4];
        self.primary_family = Family::V6;
        self.policy = policy;
        self
    }

    fn prefer_single(mut self, family: Family) -> Self {
        self.cluster_families = vec![family];
        self.primary_family = family;
        self.policy = IpFamilyPolicy::PreferDualStack;
        self
    }

    fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    fn want_ips(mut self, list: &[&str]) -> Self {
        self.requested_ips = ips(list);
        self
    }

    fn want_pool(mut self, name: &str) -> Self {
        self.requested_pool = Some(PoolName::from(name));
        self
    }
}
