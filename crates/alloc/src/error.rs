//! Why an allocation was refused.
//!
//! Each variant's `Display` reproduces MetalLB's message where MetalLB has one, so events and
//! logs read the same to operators; the fields keep the context so callers can match on it.

use std::fmt;
use std::net::IpAddr;

use crate::pool::PoolName;
use crate::request::{Family, Port, ServiceFamily, ServiceKey};

/// An allocation error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// No pool contains all the addresses (or one of them is a `.0`/`.255` of an
    /// `avoidBuggyIPs` pool).
    #[error("{} is not allowed in config", GoList(ips))]
    NotInAnyPool {
        /// The addresses asked for.
        ips: Vec<IpAddr>,
    },
    /// The pool's `serviceAllocation` does not select this service.
    #[error("pool {pool} not compatible for ip assignment")]
    PoolNotCompatible {
        /// The pool holding the addresses.
        pool: PoolName,
    },
    /// More than two addresses.
    #[error("more than two addresses {}", GoList(ips))]
    TooManyIps {
        /// The addresses asked for.
        ips: Vec<IpAddr>,
    },
    /// No address at all was given to assign.
    #[error("no IP to assign")]
    NoIps,
    /// Two addresses of the same family.
    #[error("\"{first}\" \"{second}\" has the same family")]
    SameFamily {
        /// The first address.
        first: IpAddr,
        /// The second address.
        second: IpAddr,
    },
    /// The address is used by a service whose `allow-shared-ip` is empty.
    #[error("can't change sharing key for \"{service}\", address also in use by {}: existing service does not allow sharing", Names(in_use_by))]
    ExistingDoesNotShare {
        /// The service asking.
        service: ServiceKey,
        /// The contested address.
        ip: IpAddr,
        /// The services already on it.
        in_use_by: Vec<ServiceKey>,
    },
    /// The address is in use and this service's `allow-shared-ip` is empty.
    #[error("can't change sharing key for \"{service}\", address also in use by {}: new service does not allow sharing", Names(in_use_by))]
    NewDoesNotShare {
        /// The service asking.
        service: ServiceKey,
        /// The contested address.
        ip: IpAddr,
        /// The services already on it.
        in_use_by: Vec<ServiceKey>,
    },
    /// Both share, with different keys.
    #[error("can't change sharing key for \"{service}\", address also in use by {}: sharing key \"{requested}\" does not match existing sharing key \"{existing}\"", Names(in_use_by))]
    SharingKeyMismatch {
        /// The service asking.
        service: ServiceKey,
        /// The contested address.
        ip: IpAddr,
        /// The key of the service asking.
        requested: String,
        /// The key of the services already on the address.
        existing: String,
        /// The services already on it.
        in_use_by: Vec<ServiceKey>,
    },
    /// Same sharing key, but different backends (`externalTrafficPolicy: Local` with different
    /// pod selectors). The message's wording is MetalLB's.
    #[error("can't change sharing key for \"{service}\", address also in use by {}: backend key \"{requested}\" does not match existing sharing key \"{existing}\"", Names(in_use_by))]
    BackendKeyMismatch {
        /// The service asking.
        service: ServiceKey,
        /// The contested address.
        ip: IpAddr,
        /// The backend key of the service asking.
        requested: String,
        /// The backend key of the services already on the address.
        existing: String,
        /// The services already on it.
        in_use_by: Vec<ServiceKey>,
    },
    /// Another service on the address already uses this `(protocol, port)`.
    #[error("port {port} is already in use on \"{ip}\"")]
    PortInUse {
        /// The port.
        port: Port,
        /// The contested address.
        ip: IpAddr,
        /// The service holding the port.
        holder: ServiceKey,
    },
    /// `metallb.io/address-pool` names a pool that does not exist.
    #[error("unknown pool \"{pool}\"")]
    UnknownPool {
        /// The pool asked for.
        pool: PoolName,
    },
    /// The pool has no address left for the family the service needs.
    #[error("no available IPs in pool {pool} for {family} IPFamily")]
    NoAvailableIpsInPool {
        /// The pool.
        pool: PoolName,
        /// The family needed.
        family: ServiceFamily,
    },
    /// No pool could serve the service.
    #[error("no available IPs")]
    NoAvailableIps,
    /// The requested IPs' family differs from the service's cluster IP family.
    #[error(
        "requested loadBalancer IP(s) {} does not match the ipFamily of the service",
        GoList(ips)
    )]
    RequestedFamilyMismatch {
        /// The requested addresses.
        ips: Vec<IpAddr>,
    },
    /// The requested IPs are not in the requested pool.
    #[error(
        "requested loadBalancer IP(s) {} is not compatible with requested address pool {pool}",
        GoList(ips)
    )]
    RequestedPoolMismatch {
        /// The requested addresses.
        ips: Vec<IpAddr>,
        /// The requested pool.
        pool: PoolName,
    },
    /// The requested IPs are not one address, or two of different families.
    #[error("invalid requested loadBalancer IPs {}: {reason}", GoList(ips))]
    RequestedIpsInvalid {
        /// The requested addresses.
        ips: Vec<IpAddr>,
        /// What is wrong with them.
        reason: crate::request::FamilyError,
    },
    /// The service already holds addresses of another family than it needs.
    #[error("IP for wrong family assigned alloc {allocated} service family {service}")]
    WrongFamilyAssigned {
        /// The family held.
        allocated: ServiceFamily,
        /// The family needed.
        service: ServiceFamily,
    },
    /// `RequireDualStack` with fewer than two cluster IPs.
    #[error("Service requires dual stack but not enough clusterips ({count})")]
    NotEnoughClusterIps {
        /// How many cluster IPs the service has.
        count: usize,
    },
    /// The service has no cluster IP, so its family is unknown.
    #[error("no ClusterIPs: can't determine the service's IP family")]
    NoClusterIps,
    /// The cluster IPs are not one address or two of different families.
    #[error("invalid ClusterIPs: {count} addresses that are not one per family")]
    ClusterIpFamilies {
        /// How many cluster IPs there are.
        count: usize,
    },
    /// No pool is configured at all.
    #[error("no IPAddressPool is configured")]
    NoPools,
    /// An operation that needs an existing allocation found none.
    #[error("service \"{service}\" holds no IP")]
    NotAllocated {
        /// The service.
        service: ServiceKey,
    },
    /// PreferDualStack already holds both families.
    #[error("service already holds an {family} address")]
    FamilyAlreadyHeld {
        /// The family.
        family: Family,
    },
    /// A bug: the decision and the allocator's bookkeeping disagree (the controller reports it
    /// as MetalLB's `InternalError`).
    #[error(
        "internal error: \"{service}\" was given {} but holds {}",
        GoList(decided),
        GoList(held)
    )]
    Inconsistent {
        /// The service.
        service: ServiceKey,
        /// The addresses the decision arrived at.
        decided: Vec<IpAddr>,
        /// The addresses the allocator holds for the service.
        held: Vec<IpAddr>,
    },
}

/// Formats addresses as Go's `%q` formats a `[]net.IP`: `["1.2.3.4" "fc00::1"]`.
struct GoList<'a>(&'a [IpAddr]);

impl fmt::Display for GoList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (index, ip) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            write!(f, "\"{ip}\"")?;
        }
        f.write_str("]")
    }
}

/// Formats service keys joined by commas.
struct Names<'a>(&'a [ServiceKey]);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, name) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{name}")?;
        }
        Ok(())
    }
}
