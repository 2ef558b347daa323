//! What a Service asks of the allocator, as plain domain values (no Kubernetes types).
//!
//! `ironlb-api` builds a [`Request`] from a `v1.Service` (annotations, `spec.loadBalancerIP`,
//! `spec.clusterIPs`, `spec.ipFamilyPolicy`, ports, `externalTrafficPolicy`).

use std::fmt;
use std::net::IpAddr;

use ironlb_labels::Labels;
use serde::{Deserialize, Serialize};

use crate::pool::PoolName;

/// A Service's identity: `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceKey {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ServiceKey {
    /// Builds a key from its two parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An IP family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// The other family.
    pub fn other(self) -> Self {
        match self {
            Self::V4 => Self::V6,
            Self::V6 => Self::V4,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // MetalLB's `ipfamily.Family` strings, which appear in its error messages.
        f.write_str(match self {
            Self::V4 => "ipv4",
            Self::V6 => "ipv6",
        })
    }
}

/// The family of a set of addresses: one family, or both (MetalLB's `ipfamily.Family`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ServiceFamily {
    /// Only IPv4.
    V4,
    /// Only IPv6.
    V6,
    /// One IPv4 and one IPv6.
    Dual,
}

impl ServiceFamily {
    /// The single family as a set.
    pub fn single(family: Family) -> Self {
        match family {
            Family::V4 => Self::V4,
            Family::V6 => Self::V6,
        }
    }

    /// Whether `family` is part of this set.
    pub fn includes(self, family: Family) -> bool {
        match self {
            Self::V4 => family == Family::V4,
            Self::V6 => family == Family::V6,
            Self::Dual => true,
        }
    }

    /// The family of one or two addresses, as MetalLB's `ipfamily.ForAddressesIPs`: one address,
    /// or two of different families.
    pub fn of_ips(ips: &[IpAddr]) -> Result<Self, FamilyError> {
        match ips {
            [one] => Ok(Self::single(Family::of(*one))),
            [first, second] if Family::of(*first) != Family::of(*second) => Ok(Self::Dual),
            [first, second] => Err(FamilyError::SameFamily {
                first: *first,
                second: *second,
            }),
            _ => Err(FamilyError::Count { count: ips.len() }),
        }
    }
}

impl fmt::Display for ServiceFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "ipv4",
            Self::V6 => "ipv6",
            Self::Dual => "dual",
        })
    }
}

/// Why a list of addresses has no family.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FamilyError {
    /// Not one or two addresses.
    #[error("invalid number of IPs: {count}")]
    Count {
        /// How many there were.
        count: usize,
    },
    /// Two addresses of the same family.
    #[error("same address family [\"{first}\" \"{second}\"]")]
    SameFamily {
        /// The first address.
        first: IpAddr,
        /// The second address.
        second: IpAddr,
    },
}

/// `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpFamilyPolicy {
    /// One family (the default when unset).
    #[default]
    SingleStack,
    /// Both families when the cluster gave two cluster IPs and a pool can serve both; one
    /// otherwise.
    PreferDualStack,
    /// Both families, from one pool.
    RequireDualStack,
}

/// A port's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        })
    }
}

/// One `(protocol, port)` a Service listens on. Two services may share an IP only if their
/// ports are disjoint (TCP/53 and UDP/53 can coexist).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Port {
    /// The protocol.
    pub protocol: Protocol,
    /// The port number.
    pub port: u16,
}

impl Port {
    /// A TCP port.
    pub fn tcp(port: u16) -> Self {
        Self {
            protocol: Protocol::Tcp,
            port,
        }
    }

    /// A UDP port.
    pub fn udp(port: u16) -> Self {
        Self {
            protocol: Protocol::Udp,
            port,
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol, self.port)
    }
}

/// Everything the allocator needs to know about a Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// `namespace/name`.
    pub service: ServiceKey,
    /// `metadata.labels`, matched against pools' `serviceSelectors`.
    pub labels: Labels,
    /// The family of each `spec.clusterIPs` entry, in order (0, 1 or 2 entries).
    pub cluster_families: Vec<Family>,
    /// The preferred family for `PreferDualStack` fallbacks: IPv6 when `spec.ipFamilies[0]` is
    /// `IPv6`, IPv4 otherwise (MetalLB's rule).
    pub primary_family: Family,
    /// `spec.ipFamilyPolicy`.
    pub policy: IpFamilyPolicy,
    /// `metallb.io/allow-shared-ip`; empty = does not share.
    pub sharing_key: String,
    /// With `externalTrafficPolicy: Local`, the pod selector as `k=v,k2=v2` (sorted); otherwise
    /// empty. Services share an IP only with equal backend keys.
    pub backend_key: String,
    /// `spec.ports` as `(protocol, port)`.
    pub ports: Vec<Port>,
    /// `metallb.io/loadBalancerIPs` or `spec.loadBalancerIP`, already parsed; empty = none.
    pub requested_ips: Vec<IpAddr>,
    /// `metallb.io/address-pool`.
    pub requested_pool: Option<PoolName>,
}

impl Request {
    /// A single-stack IPv4 request with no ports, labels, sharing or explicit IP: a starting
    /// point that tests and callers adjust field by field.
    pub fn new(service: ServiceKey) -> Self {
        Self {
            service,
            labels: Labels::new(),
            cluster_families: vec![Family::V4],
            primary_family: Family::V4,
            policy: IpFamilyPolicy::SingleStack,
            sharing_key: String::new(),
            backend_key: String::new(),
            ports: Vec::new(),
            requested_ips: Vec::new(),
            requested_pool: None,
        }
    }

    /// The family the service needs, from its cluster IPs (MetalLB's `ipfamily.ForService`).
    pub fn service_family(&self) -> Result<ServiceFamily, crate::AllocError> {
        match self.cluster_families.as_slice() {
            [] => Err(crate::AllocError::NoClusterIps),
            [one] => Ok(ServiceFamily::single(*one)),
            [first, second] if first != second => Ok(ServiceFamily::Dual),
            _ => Err(crate::AllocError::ClusterIpFamilies {
                count: self.cluster_families.len(),
            }),
        }
    }
}
