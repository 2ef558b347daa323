//! The allocator: which service holds which address, and how new addresses are chosen.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use hashbrown::{DefaultHashBuilder, HashMap};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::AllocError;
use crate::pool::{Pool, PoolName};
use crate::request::{Family, IpFamilyPolicy, Port, Request, ServiceFamily, ServiceKey};
use crate::space::FreeSpace;
use crate::table::{Entry, KeyId, Keys, ServiceId, ServiceTable, NO_SHARING};

/// The address bookkeeping of the controller.
///
/// Call order: [`Allocator::set_pools`] whenever the configuration changes (it re-maps or
/// releases existing assignments), then per Service either [`Allocator::converge`] (the
/// controller's whole decision, MetalLB's `convergeBalancer`) or the individual operations
/// [`Allocator::assign`] (explicit or existing IPs), [`Allocator::allocate`] (automatic),
/// [`Allocator::allocate_from_pool`] (`metallb.io/address-pool`),
/// [`Allocator::allocate_additional_family`] (PreferDualStack), and [`Allocator::release`] when a
/// Service goes away or stops being a LoadBalancer. Every operation is deterministic: the same
/// sequence of calls gives the same addresses.
#[derive(Clone, Debug, Default)]
pub struct Allocator {
    /// Sorted by name; a pool's index is its id.
    pools: Vec<PoolState>,
    /// Network address of every CIDR of every pool → where it lives. Pools never overlap
    /// (checked by `ironlb-api`), so the CIDR containing an address is the one with the
    /// greatest network address not above it.
    cidrs: BTreeMap<IpAddr, CidrRef>,
    /// Pools with a `serviceAllocation`, in preference order: priority > 0 ascending, then the
    /// others; ties by name.
    pinned_order: Vec<u32>,
    /// Pools with `autoAssign` and no `serviceAllocation`, by name.
    unpinned_order: Vec<u32>,
    services: ServiceTable,
    /// Every address in use → the services on it (all with the same sharing key). A hash map:
    /// only point lookups are made (never iterated for a result), and its cost does not grow
    /// with the number of addresses.
    ips: HashMap<IpAddr, Users, DefaultHashBuilder>,
    /// `(sharing key, address)` for every address in use by services that allow sharing: the
    /// lowest address shareable with a key inside a CIDR is a range query.
    shareable: BTreeSet<(KeyId, IpAddr)>,
    keys: Keys,
}

#[derive(Clone, Debug)]
struct PoolState {
    pool: Pool,
    /// One per CIDR, in declaration order.
    spaces: Vec<FreeSpace>,
    assigned_ipv4: u64,
    assigned_ipv6: u64,
    services: u64,
    capacity: Capacity,
}

#[derive(Clone, Copy, Debug)]
struct CidrRef {
    pool: u32,
    cidr: u32,
}

/// The services on one address. Nearly every address has exactly one, which is stored inline.
#[derive(Clone, Debug)]
enum Users {
    One(ServiceId),
    Many(Box<[ServiceId]>),
}

impl Users {
    fn as_slice(&self) -> &[ServiceId] {
        match self {
            Self::One(id) => std::slice::from_ref(id),
            Self::Many(ids) => ids,
        }
    }

    fn first(&self) -> ServiceId {
        match self {
            Self::One(id) => *id,
            // Invariant: `Many` is never empty (it shrinks back to `One`).
            Self::Many(ids) => ids[0],
        }
    }

    fn with(&self, id: ServiceId) -> Self {
        let mut ids = self.as_slice().to_vec();
        assert!(
            !ids.contains(&id),
            "service {id} added twice to one address"
        );
        ids.push(id);
        Self::Many(ids.into_boxed_slice())
    }

    /// Without `id`; `None` when nobody is left.
    fn without(&self, id: ServiceId) -> Option<Self> {
        let ids: Vec<ServiceId> = self
            .as_slice()
            .iter()
            .copied()
            .filter(|&x| x != id)
            .collect();
        assert_eq!(
            ids.len() + 1,
            self.as_slice().len(),
            "service {id} is not on the address"
        );
        match ids.as_slice() {
            [] => None,
            [one] => Some(Self::One(*one)),
            _ => Some(Self::Many(ids.into_boxed_slice())),
        }
    }
}

/// A pool's size as MetalLB counts it (`poolCount`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// All addresses; `i64::MAX` once a CIDR has 62 or more host bits.
    pub total: i64,
    /// IPv4 addresses.
    pub ipv4: i64,
    /// IPv6 addresses; `i64::MAX` once a CIDR has 62 or more host bits.
    pub ipv6: i64,
}

/// The counters MetalLB publishes per pool (metrics and `IPAddressPool.status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolCounters {
    /// Distinct IPv4 addresses in use.
    pub assigned_ipv4: i64,
    /// Distinct IPv6 addresses in use.
    pub assigned_ipv6: i64,
    /// `capacity.ipv4 - assigned_ipv4`.
    pub available_ipv4: i64,
    /// `capacity.ipv6 - assigned_ipv6`.
    pub available_ipv6: i64,
    /// The pool's size.
    pub capacity: Capacity,
    /// Services holding an address of the pool (`metallb_allocator_services_allocated_total`).
    pub services_allocated: u64,
}

/// What [`Allocator::set_pools`] did to existing assignments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolsChanged {
    /// Services whose addresses fall in no pool any more: released, in name order.
    pub released: Vec<(ServiceKey, Vec<IpAddr>)>,
    /// Services whose addresses now fall in another pool: `(service, old pool, new pool)`.
    pub remapped: Vec<(ServiceKey, PoolName, PoolName)>,
    /// Pools beyond [`POOLS_MAX`] (the last by name), not installed.
    pub ignored_pools: Vec<PoolName>,
}

/// The most pools one configuration may hold (a limit on everything: pool ids are 16 bits).
pub const POOLS_MAX: usize = 65_535;

/// One service's current allocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// One address, or two of different families.
    pub ips: Vec<IpAddr>,
    /// The pool they belong to.
    pub pool: PoolName,
}

/// A pool's free addresses found for one request: at most one per family.
#[derive(Clone, Copy, Debug, Default)]
struct Found {
    ipv4: Option<IpAddr>,
    ipv6: Option<IpAddr>,
}

impl Found {
    fn get(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.ipv4,
            Family::V6 => self.ipv6,
        }
    }

    fn set(&mut self, family: Family, ip: IpAddr) {
        match family {
            Family::V4 => self.ipv4 = Some(ip),
            Family::V6 => self.ipv6 = Some(ip),
        }
    }

    /// MetalLB's `selectIPsForFamilyAndPolicy`: the addresses a service gets from this pool.
    fn select(&self, family: ServiceFamily, policy: IpFamilyPolicy) -> Option<Vec<IpAddr>> {
        match (family, self.ipv4, self.ipv6) {
            (ServiceFamily::V4, Some(v4), _) => Some(vec![v4]),
            (ServiceFamily::V6, _, Some(v6)) => Some(vec![v6]),
            (ServiceFamily::Dual, Some(v4), Some(v6)) => Some(vec![v4, v6]),
            (ServiceFamily::Dual, Some(v4), None) if policy == IpFamilyPolicy::PreferDualStack => {
                Some(vec![v4])
            }
            (ServiceFamily::Dual, None, Some(v6)) if policy == IpFamilyPolicy::PreferDualStack => {
                Some(vec![v6])
            }
            _ => None,
        }
    }
}

/// Whether an IPv4 address ends in `.0` or `.255` (MetalLB's `ipConfusesBuggyFirmwares`):
/// such addresses trip the smurf protection of some consumer routers, which drop the traffic.
pub fn ip_confuses_buggy_firmwares(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => matches!(v4.octets()[3], 0 | 255),
        IpAddr::V6(_) => false,
    }
}

/// Whether `pool`'s `serviceAllocation` selects the service: namespaces AND service selectors
/// (MetalLB's `isPoolCompatibleWithService`). A pool without one selects every service.
pub fn pool_selects(pool: &Pool, request: &Request) -> bool {
    let Some(allocation) = pool.allocation() else {
        return true;
    };
    if allocation.namespaces_restricted
        && !allocation.namespaces.contains(&request.service.namespace)
    {
        return false;
    }
    allocation.service_selectors.is_empty()
        || allocation
            .service_selectors
            .iter()
            .any(|selector| selector.matches(&request.labels))
}

/// A pool's size as MetalLB's `poolCount` computes it: a CIDR with 62 or more host bits counts
/// as `i64::MAX` (saturating, where Go would overflow on a second one); with `avoidBuggyIPs`, an
/// IPv4 CIDR of `/24` or shorter loses two addresses per `/24`, a longer one loses each end
/// that is a `.0` or `.255`.
pub fn pool_capacity(pool: &Pool) -> Capacity {
    let mut capacity = Capacity::default();
    for cidr in pool.cidrs() {
        let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
        if host_bits >= 62 {
            capacity.total = i64::MAX;
            capacity.ipv6 = i64::MAX;
            continue;
        }
        let mut size = 1i64 << host_bits;
        if pool.avoid_buggy_ips() {
            if let IpNet::V4(v4) = cidr {
                if v4.prefix_len() <= 24 {
                    size -= 2 * (1i64 << (24 - u32::from(v4.prefix_len())));
                } else {
                    size -= i64::from(ip_confuses_buggy_firmwares(IpAddr::V4(v4.network())));
                    size -= i64::from(ip_confuses_buggy_firmwares(IpAddr::V4(v4.broadcast())));
                }
            }
        }
        capacity.total = capacity.total.saturating_add(size);
        match cidr {
            IpNet::V4(_) => capacity.ipv4 = capacity.ipv4.saturating_add(size),
            IpNet::V6(_) => capacity.ipv6 = capacity.ipv6.saturating_add(size),
        }
    }
    capacity
}

impl Allocator {
    /// An allocator with no pools and no assignment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the pools. Existing assignments are kept when all their addresses still fall
    /// in one pool (re-mapped if that pool changed), and released otherwise; no other check is
    /// made here: [`Allocator::converge`] re-checks each service against the new configuration
    /// (serviceAllocation, sharing), as MetalLB's controller does after `SetPools`.
    ///
    /// Pools must have unique names and no overlapping CIDRs (`ironlb-api` guarantees both);
    /// a duplicate name keeps the first pool, and pools beyond [`POOLS_MAX`] are ignored and
    /// reported.
    pub fn set_pools(&mut self, pools: Vec<Pool>) -> PoolsChanged {
        let mut old: Vec<(Entry, PoolName)> = Vec::with_capacity(self.services.len());
        for (_, entry) in self.services.iter() {
            let pool = self.pool_name(u32::from(entry.pool)).clone();
            old.push((entry.clone(), pool));
        }
        old.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let old_keys: Vec<(String, String)> = old
            .iter()
            .map(|(entry, _)| {
                let (sharing, backend) = self.keys.get(entry.key);
                (sharing.to_owned(), backend.to_owned())
            })
            .collect();

        let ignored_pools = self.install_pools(pools);

        let mut changed = PoolsChanged {
            ignored_pools,
            ..PoolsChanged::default()
        };
        for ((entry, old_pool), (sharing, backend)) in old.into_iter().zip(old_keys) {
            let ips: Vec<IpAddr> = entry.ip_list().collect();
            match self.pool_index_for(&ips) {
                None => changed.released.push((entry.service_key(), ips)),
                Some(pool) => {
                    let new_pool = self.pool_name(pool).clone();
                    if new_pool != old_pool {
                        changed
                            .remapped
                            .push((entry.service_key(), old_pool, new_pool));
                    }
                    self.insert(&entry.name, &sharing, &backend, entry.ports, &ips, pool);
                }
            }
        }
        changed
    }

    fn install_pools(&mut self, mut pools: Vec<Pool>) -> Vec<PoolName> {
        pools.sort_by(|a, b| a.name().cmp(b.name()));
        pools.dedup_by(|later, earlier| later.name() == earlier.name());
        let ignored: Vec<PoolName> = pools
            .iter()
            .skip(POOLS_MAX)
            .map(|pool| pool.name().clone())
            .collect();
        pools.truncate(POOLS_MAX);
        self.services.clear();
        self.ips.clear();
        self.shareable.clear();
        self.keys = Keys::default();
        self.cidrs.clear();
        self.pools = pools
            .into_iter()
            .map(|pool| PoolState {
                spaces: pool
                    .cidrs()
                    .iter()
                    .map(|cidr| FreeSpace::new(*cidr, pool.avoid_buggy_ips()))
                    .collect(),
                capacity: pool_capacity(&pool),
                pool,
                assigned_ipv4: 0,
                assigned_ipv6: 0,
                services: 0,
            })
            .collect();
        for (pool_index, state) in self.pools.iter().enumerate() {
            for (cidr_index, cidr) in state.pool.cidrs().iter().enumerate() {
                self.cidrs.insert(
                    cidr.network(),
                    CidrRef {
                        pool: u32::try_from(pool_index).expect("fewer than 2^32 pools"),
                        cidr: u32::try_from(cidr_index).expect("fewer than 2^32 CIDRs"),
                    },
                );
            }
        }
        let mut pinned: Vec<u32> = (0..self.pools.len())
            .filter(|&i| self.pools[i].pool.allocation().is_some())
            .map(|i| u32::try_from(i).expect("fewer than 2^32 pools"))
            .collect();
        // Priority 1 first … priority 0 (unset) last; ties by name (the pool order).
        pinned.sort_by_key(|&i| {
            let priority = self.pools[i as usize]
                .pool
                .allocation()
                .map_or(0, |allocation| allocation.priority);
            (priority <= 0, priority, i)
        });
        self.pinned_order = pinned;
        self.unpinned_order = (0..self.pools.len())
            .filter(|&i| {
                let pool = &self.pools[i].pool;
                pool.auto_assign() && pool.allocation().is_none()
            })
            .map(|i| u32::try_from(i).expect("fewer than 2^32 pools"))
            .collect();
        ignored
    }

    /// The pools, by name.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter().map(|state| &state.pool)
    }

    /// Whether any pool is configured.
    pub fn has_pools(&self) -> bool {
        !self.pools.is_empty()
    }

    fn pool_name(&self, index: u32) -> &PoolName {
        self.pools[index as usize].pool.name()
    }

    fn pool_index(&self, name: &PoolName) -> Option<u32> {
        self.pools
            .binary_search_by(|state| state.pool.name().cmp(name))
            .ok()
            .map(|i| u32::try_from(i).expect("fewer than 2^32 pools"))
    }

    fn cidr_for(&self, ip: IpAddr) -> Option<CidrRef> {
        let (_, &cidr) = self.cidrs.range(..=ip).next_back()?;
        let space = &self.pools[cidr.pool as usize].spaces[cidr.cidr as usize];
        space.offset(ip).map(|_| cidr)
    }

    /// The pool holding every address (MetalLB's `poolFor`): all in one pool, none a `.0` or
    /// `.255` of an `avoidBuggyIPs` pool.
    fn pool_index_for(&self, ips: &[IpAddr]) -> Option<u32> {
        let mut found = None;
        for &ip in ips {
            let cidr = self.cidr_for(ip)?;
            let pool = &self.pools[cidr.pool as usize].pool;
            if pool.avoid_buggy_ips() && ip_confuses_buggy_firmwares(ip) {
                return None;
            }
            match found {
                None => found = Some(cidr.pool),
                Some(pool) if pool == cidr.pool => {}
                Some(_) => return None,
            }
        }
        found
    }

    /// The pool that holds all of `ips`, if one does.
    pub fn pool_for(&self, ips: &[IpAddr]) -> Option<&PoolName> {
        self.pool_index_for(ips).map(|index| self.pool_name(index))
    }

    /// The addresses a service holds, if any.
    pub fn ips(&self, service: &ServiceKey) -> Option<Vec<IpAddr>> {
        let id = self.services.find(&service.to_string())?;
        Some(self.services.get(id).ip_list().collect())
    }

    /// The pool a service's addresses come from, if it holds any.
    pub fn pool_of(&self, service: &ServiceKey) -> Option<&PoolName> {
        let id = self.services.find(&service.to_string())?;
        Some(self.pool_name(u32::from(self.services.get(id).pool)))
    }

    /// A service's allocation, if any.
    pub fn assignment(&self, service: &ServiceKey) -> Option<Assignment> {
        let id = self.services.find(&service.to_string())?;
        let entry = self.services.get(id);
        Some(Assignment {
            ips: entry.ip_list().collect(),
            pool: self.pool_name(u32::from(entry.pool)).clone(),
        })
    }

    /// Every allocation, by service name.
    pub fn assignments(&self) -> BTreeMap<ServiceKey, Assignment> {
        self.services
            .iter()
            .map(|(_, entry)| {
                (
                    entry.service_key(),
                    Assignment {
                        ips: entry.ip_list().collect(),
                        pool: self.pool_name(u32::from(entry.pool)).clone(),
                    },
                )
            })
            .collect()
    }

    /// How many services hold addresses.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether no service holds an address.
    pub fn is_empty(&self) -> bool {
        self.services.len() == 0
    }

    /// The counters of a pool, or `None` for an unknown pool.
    pub fn pool_counters(&self, pool: &PoolName) -> Option<PoolCounters> {
        let state = &self.pools[self.pool_index(pool)? as usize];
        let assigned_ipv4 = i64::try_from(state.assigned_ipv4).unwrap_or(i64::MAX);
        let assigned_ipv6 = i64::try_from(state.assigned_ipv6).unwrap_or(i64::MAX);
        Some(PoolCounters {
            assigned_ipv4,
            assigned_ipv6,
            available_ipv4: state.capacity.ipv4.saturating_sub(assigned_ipv4),
            available_ipv6: state.capacity.ipv6.saturating_sub(assigned_ipv6),
            capacity: state.capacity,
            services_allocated: state.services,
        })
    }

    /// Gives `ips` to the service, checking everything MetalLB's `Assign` checks, in its order:
    /// the addresses lie in one pool (not on a buggy address of an `avoidBuggyIPs` pool), the
    /// pool's `serviceAllocation` selects the service, at most two addresses of different
    /// families, and the sharing rules on every address. On success any previous allocation
    /// of the service is replaced.
    pub fn assign(&mut self, request: &Request, ips: &[IpAddr]) -> Result<(), AllocError> {
        if ips.is_empty() {
            return Err(AllocError::NoIps);
        }
        let pool = self
            .pool_index_for(ips)
            .ok_or_else(|| AllocError::NotInAnyPool { ips: ips.to_vec() })?;
        if !pool_selects(&self.pools[pool as usize].pool, request) {
            return Err(AllocError::PoolNotCompatible {
                pool: self.pool_name(pool).clone(),
            });
        }
        match ips {
            [_] => {}
            [first, second] if Family::of(*first) == Family::of(*second) => {
                return Err(AllocError::SameFamily {
                    first: *first,
                    second: *second,
                })
            }
            [_, _] => {}
            _ => return Err(AllocError::TooManyIps { ips: ips.to_vec() }),
        }
        let name = request.service.to_string();
        let self_id = self.services.find(&name);
        for &ip in ips {
            self.check_sharing(self_id, ip, request)?;
        }
        let ports = sorted_ports(&request.ports);
        if let Some(id) = self_id {
            self.unassign(id);
        }
        self.insert(
            &name,
            &request.sharing_key,
            &request.backend_key,
            ports,
            ips,
            pool,
        );
        Ok(())
    }

    /// MetalLB's `checkSharing`: may the service use `ip` next to its current users?
    fn check_sharing(
        &self,
        self_id: Option<ServiceId>,
        ip: IpAddr,
        request: &Request,
    ) -> Result<(), AllocError> {
        let Some(users) = self.ips.get(&ip) else {
            return Ok(());
        };
        let others = || -> Vec<ServiceKey> {
            let mut names: Vec<ServiceKey> = users
                .as_slice()
                .iter()
                .filter(|&&id| Some(id) != self_id)
                .map(|&id| self.services.get(id).service_key())
                .collect();
            names.sort();
            names
        };
        let existing_key = self.services.get(users.first()).key;
        let (existing_sharing, existing_backend) = self.keys.get(existing_key);
        let conflict = if existing_sharing.is_empty() {
            Some(0)
        } else if request.sharing_key.is_empty() {
            Some(1)
        } else if existing_sharing != request.sharing_key {
            Some(2)
        } else if existing_backend != request.backend_key {
            Some(3)
        } else {
            None
        };
        if let Some(kind) = conflict {
            // The one exception: the service is the only user, so its key may change in place.
            let in_use_by = others();
            if !in_use_by.is_empty() {
                let service = request.service.clone();
                return Err(match kind {
                    0 => AllocError::ExistingDoesNotShare {
                        service,
                        ip,
                        in_use_by,
                    },
                    1 => AllocError::NewDoesNotShare {
                        service,
                        ip,
                        in_use_by,
                    },
                    2 => AllocError::SharingKeyMismatch {
                        service,
                        ip,
                        requested: request.sharing_key.clone(),
                        existing: existing_sharing.to_owned(),
                        in_use_by,
                    },
                    _ => AllocError::BackendKeyMismatch {
                        service,
                        ip,
                        requested: request.backend_key.clone(),
                        existing: existing_backend.to_owned(),
                        in_use_by,
                    },
                });
            }
        }
        for &port in &request.ports {
            for &user in users.as_slice() {
                if Some(user) == self_id {
                    continue;
                }
                let entry = self.services.get(user);
                if entry.ports.binary_search(&port).is_ok() {
                    return Err(AllocError::PortInUse {
                        port,
                        ip,
                        holder: entry.service_key(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether none of `ports` is used on `ip` by a service other than `self_id`.
    fn ports_free(&self, ip: IpAddr, ports: &[Port], self_id: Option<ServiceId>) -> bool {
        let Some(users) = self.ips.get(&ip) else {
            return true;
        };
        users.as_slice().iter().all(|&user| {
            Some(user) == self_id || {
                let held = &self.services.get(user).ports;
                ports.iter().all(|port| held.binary_search(port).is_err())
            }
        })
    }

    /// Records an allocation without checks (callers checked, or restore a checked state). The
    /// service must hold nothing.
    fn insert(
        &mut self,
        name: &str,
        sharing: &str,
        backend: &str,
        ports: Box<[Port]>,
        ips: &[IpAddr],
        pool: u32,
    ) {
        assert!(!ips.is_empty() && ips.len() <= 2, "one or two addresses");
        // Callers release the service's previous allocation first (the table asserts it).
        let key = self.keys.acquire(sharing, backend);
        let id = self.services.insert(Entry {
            name: Box::from(name),
            pool: u16::try_from(pool).expect("at most POOLS_MAX pools"),
            key,
            ips: [ips.first().copied(), ips.get(1).copied()],
            ports,
        });
        for &ip in ips {
            let cidr = self
                .cidr_for(ip)
                .expect("an assigned address lies in a CIDR");
            assert_eq!(cidr.pool, pool, "an assigned address lies in its pool");
            match self.ips.entry(ip) {
                hashbrown::hash_map::Entry::Occupied(mut users) => {
                    assert_ne!(key, NO_SHARING, "only sharing services share {ip}");
                    assert_eq!(
                        self.services.get(users.get().first()).key,
                        key,
                        "services on {ip} have one sharing key"
                    );
                    let more = users.get().with(id);
                    users.insert(more);
                }
                hashbrown::hash_map::Entry::Vacant(vacant) => {
                    let state = &mut self.pools[pool as usize];
                    let space = &mut state.spaces[cidr.cidr as usize];
                    let offset = space.offset(ip).expect("checked by cidr_for");
                    assert!(space.take(offset), "a new address {ip} was free");
                    match ip {
                        IpAddr::V4(_) => state.assigned_ipv4 += 1,
                        IpAddr::V6(_) => state.assigned_ipv6 += 1,
                    }
                    vacant.insert(Users::One(id));
                }
            }
            if key != NO_SHARING {
                self.shareable.insert((key, ip));
            }
        }
        self.pools[pool as usize].services += 1;
    }

    fn unassign(&mut self, id: ServiceId) {
        let entry = self.services.remove(id);
        for ip in entry.ip_list() {
            let users = self.ips.get_mut(&ip).expect("a held address is in use");
            match users.without(id) {
                Some(rest) => *users = rest,
                None => {
                    self.ips.remove(&ip);
                    let cidr = self.cidr_for(ip).expect("a held address lies in a CIDR");
                    let state = &mut self.pools[cidr.pool as usize];
                    let space = &mut state.spaces[cidr.cidr as usize];
                    space.give_back(space.offset(ip).expect("checked by cidr_for"));
                    match ip {
                        IpAddr::V4(_) => state.assigned_ipv4 -= 1,
                        IpAddr::V6(_) => state.assigned_ipv6 -= 1,
                    }
                    if entry.key != NO_SHARING {
                        assert!(self.shareable.remove(&(entry.key, ip)), "shareable entry");
                    }
                }
            }
        }
        let state = &mut self.pools[usize::from(entry.pool)];
        state.services -= 1;
        self.keys.release(entry.key);
    }

    /// Frees the service's addresses. Returns whether it held any.
    pub fn release(&mut self, service: &ServiceKey) -> bool {
        match self.services.find(&service.to_string()) {
            Some(id) => {
                self.unassign(id);
                true
            }
            None => false,
        }
    }

    /// The lowest address of one CIDR the service may take: the lowest free one, or a lower
    /// one already used under the same sharing and backend keys with disjoint ports.
    fn ip_from_cidr(
        &mut self,
        cidr: CidrRef,
        key: Option<KeyId>,
        ports: &[Port],
        self_id: Option<ServiceId>,
    ) -> Option<IpAddr> {
        let space = &mut self.pools[cidr.pool as usize].spaces[cidr.cidr as usize];
        let lowest_free = space.lowest_free().map(|offset| space.ip(offset));
        let (first, last) = (space.first_ip(), space.last_ip());
        if let Some(key) = key.filter(|&key| key != NO_SHARING) {
            for &(_, ip) in self.shareable.range((key, first)..=(key, last)) {
                if lowest_free.is_some_and(|free| ip > free) {
                    break;
                }
                if self.ports_free(ip, ports, self_id) {
                    return Some(ip);
                }
            }
        }
        lowest_free
    }

    /// One address per needed family from a pool (MetalLB's `getFreeIPsFromPool`): CIDRs in
    /// declaration order, the first that yields an address wins for its family.
    fn free_ips_from_pool(
        &mut self,
        pool: u32,
        need: ServiceFamily,
        request: &Request,
        self_id: Option<ServiceId>,
    ) -> Found {
        let key = self.keys.find(&request.sharing_key, &request.backend_key);
        self.free_ips_with_key(pool, need, key, &request.ports, self_id)
    }

    /// [`Self::free_ips_from_pool`] with the request's key id already looked up.
    fn free_ips_with_key(
        &mut self,
        pool: u32,
        need: ServiceFamily,
        key: Option<KeyId>,
        ports: &[Port],
        self_id: Option<ServiceId>,
    ) -> Found {
        let mut found = Found::default();
        let cidr_count = self.pools[pool as usize].spaces.len();
        for cidr in 0..cidr_count {
            let family = match self.pools[pool as usize].pool.cidrs()[cidr] {
                IpNet::V4(_) => Family::V4,
                IpNet::V6(_) => Family::V6,
            };
            if !need.includes(family) || found.get(family).is_some() {
                continue;
            }
            let cidr_ref = CidrRef {
                pool,
                cidr: u32::try_from(cidr).expect("fewer than 2^32 CIDRs"),
            };
            if let Some(ip) = self.ip_from_cidr(cidr_ref, key, ports, self_id) {
                found.set(family, ip);
            }
        }
        found
    }

    /// MetalLB's `Allocate`: keeps (re-assigns) an existing allocation; otherwise tries the
    /// pinned pools (a `serviceAllocation` selecting the service, `autoAssign`), by priority
    /// then name, then the `autoAssign` pools without `serviceAllocation`, by name.
    pub fn allocate(&mut self, request: &Request) -> Result<Vec<IpAddr>, AllocError> {
        let name = request.service.to_string();
        if let Some(id) = self.services.find(&name) {
            let ips: Vec<IpAddr> = self.services.get(id).ip_list().collect();
            self.assign(request, &ips)?;
            return Ok(ips);
        }
        let family = request.service_family()?;
        let pinned: Vec<u32> = self
            .pinned_order
            .iter()
            .copied()
            .filter(|&i| {
                let pool = &self.pools[i as usize].pool;
                pool.auto_assign() && pool_selects(pool, request)
            })
            .collect();
        if let Ok(ips) = self.allocate_from_candidates(&pinned, request, family) {
            return Ok(ips);
        }
        let unpinned = self.unpinned_order.clone();
        self.allocate_from_candidates(&unpinned, request, family)
    }

    /// MetalLB's `findBestPoolForService` + `allocateFromPools`: the first pool that serves the
    /// service's family (both for dual-stack); for PreferDualStack, failing that, the first
    /// pool with an address of the primary family, then of the other.
    fn allocate_from_candidates(
        &mut self,
        candidates: &[u32],
        request: &Request,
        family: ServiceFamily,
    ) -> Result<Vec<IpAddr>, AllocError> {
        let prefer_dual =
            request.policy == IpFamilyPolicy::PreferDualStack && family == ServiceFamily::Dual;
        let primary = request.primary_family;
        let mut primary_candidate = None;
        let mut secondary_candidate = None;
        let mut chosen = None;
        let key = self.keys.find(&request.sharing_key, &request.backend_key);
        for &pool in candidates {
            let found = self.free_ips_with_key(pool, family, key, &request.ports, None);
            let complete = match family {
                ServiceFamily::V4 => found.ipv4.is_some(),
                ServiceFamily::V6 => found.ipv6.is_some(),
                ServiceFamily::Dual => found.ipv4.is_some() && found.ipv6.is_some(),
            };
            if complete {
                chosen = Some(found);
                break;
            }
            if !prefer_dual {
                continue;
            }
            if found.get(primary).is_some() && primary_candidate.is_none() {
                primary_candidate = Some(found);
            }
            if found.get(primary.other()).is_some() && secondary_candidate.is_none() {
                secondary_candidate = Some(found);
            }
        }
        let found = chosen
            .or(primary_candidate)
            .or(secondary_candidate)
            .ok_or(AllocError::NoAvailableIps)?;
        let ips = found
            .select(family, request.policy)
            .ok_or(AllocError::NoAvailableIps)?;
        self.assign(request, &ips)
            .map_err(|_| AllocError::NoAvailableIps)?;
        Ok(ips)
    }

    /// MetalLB's `AllocateFromPool` (`metallb.io/address-pool`): keeps an existing allocation
    /// of the right family; otherwise takes the lowest addresses of the named pool, whatever
    /// its `autoAssign`, provided its `serviceAllocation` selects the service.
    pub fn allocate_from_pool(
        &mut self,
        request: &Request,
        pool_name: &PoolName,
    ) -> Result<Vec<IpAddr>, AllocError> {
        let name = request.service.to_string();
        if let Some(id) = self.services.find(&name) {
            let ips: Vec<IpAddr> = self.services.get(id).ip_list().collect();
            let held = ServiceFamily::of_ips(&ips)
                .map_err(|_| AllocError::TooManyIps { ips: ips.clone() })?;
            let family = request.service_family()?;
            if request.policy != IpFamilyPolicy::PreferDualStack && held != family {
                return Err(AllocError::WrongFamilyAssigned {
                    allocated: held,
                    service: family,
                });
            }
            self.assign(request, &ips)?;
            return Ok(ips);
        }
        let family = request.service_family()?;
        let pool = self
            .pool_index(pool_name)
            .ok_or_else(|| AllocError::UnknownPool {
                pool: pool_name.clone(),
            })?;
        let found = self.free_ips_from_pool(pool, family, request, None);
        let ips = found.select(family, request.policy).ok_or_else(|| {
            AllocError::NoAvailableIpsInPool {
                pool: pool_name.clone(),
                family,
            }
        })?;
        self.assign(request, &ips)?;
        Ok(ips)
    }

    /// MetalLB's `AllocateFromPoolForAdditionalFamily`: a PreferDualStack service holding one
    /// address gets one of the other family from the same pool. Returns the new address.
    pub fn allocate_additional_family(&mut self, request: &Request) -> Result<IpAddr, AllocError> {
        let name = request.service.to_string();
        let id = self
            .services
            .find(&name)
            .ok_or_else(|| AllocError::NotAllocated {
                service: request.service.clone(),
            })?;
        let entry = self.services.get(id);
        let pool = u32::from(entry.pool);
        let existing = match entry.ips {
            [Some(ip), None] => ip,
            [Some(ip), Some(_)] | [None, Some(ip)] => {
                return Err(AllocError::FamilyAlreadyHeld {
                    family: Family::of(ip).other(),
                })
            }
            [None, None] => unreachable!("an entry holds at least one address"),
        };
        let additional = Family::of(existing).other();
        let found =
            self.free_ips_from_pool(pool, ServiceFamily::single(additional), request, Some(id));
        let ip = found
            .get(additional)
            .ok_or_else(|| AllocError::NoAvailableIpsInPool {
                pool: self.pool_name(pool).clone(),
                family: ServiceFamily::single(additional),
            })?;
        self.assign(request, &[existing, ip])?;
        Ok(ip)
    }

    /// Checks every internal invariant, panicking with a message on the first broken one.
    /// O(services + addresses): for tests, fuzzing and debug builds, not the hot path.
    pub fn check_invariants(&self) {
        let mut recount: Vec<(u64, u64, u64)> = vec![(0, 0, 0); self.pools.len()];
        for (id, entry) in self.services.iter() {
            assert_eq!(self.services.find(&entry.name), Some(id), "name index");
            let ips: Vec<IpAddr> = entry.ip_list().collect();
            assert!(
                !ips.is_empty() && ips.len() <= 2,
                "{}: 1–2 addresses",
                entry.name
            );
            if let [a, b] = ips.as_slice() {
                assert_ne!(Family::of(*a), Family::of(*b), "{}: families", entry.name);
            }
            assert_eq!(
                self.pool_index_for(&ips),
                Some(u32::from(entry.pool)),
                "{}: addresses inside its pool",
                entry.name
            );
            for ip in &ips {
                let users = self.ips.get(ip).expect("held address is in use");
                assert!(
                    users.as_slice().contains(&id),
                    "{}: user of {ip}",
                    entry.name
                );
            }
            recount[usize::from(entry.pool)].2 += 1;
            assert!(
                entry.key == NO_SHARING || self.keys.holders(entry.key) > 0,
                "key alive"
            );
        }
        for (ip, users) in &self.ips {
            let ids = users.as_slice();
            assert!(!ids.is_empty(), "{ip}: no users");
            if let Users::Many(many) = users {
                assert!(many.len() >= 2, "{ip}: Many holds at least two");
            }
            let key = self.services.get(ids[0]).key;
            for (index, &id) in ids.iter().enumerate() {
                let entry = self.services.get(id);
                assert!(
                    entry.ip_list().any(|held| held == *ip),
                    "{ip}: back-reference"
                );
                assert_eq!(entry.key, key, "{ip}: all users have one sharing key");
                for &other in &ids[index + 1..] {
                    assert_ne!(id, other, "{ip}: duplicate user");
                    let other_ports = &self.services.get(other).ports;
                    assert!(
                        entry
                            .ports
                            .iter()
                            .all(|port| other_ports.binary_search(port).is_err()),
                        "{ip}: two services share a port"
                    );
                }
            }
            if ids.len() > 1 {
                assert_ne!(
                    key, NO_SHARING,
                    "{ip}: shared by services that do not share"
                );
            }
            assert_eq!(
                self.shareable.contains(&(key, *ip)),
                key != NO_SHARING,
                "{ip}: shareable index"
            );
            let cidr = self.cidr_for(*ip).expect("used address lies in a CIDR");
            let space = &self.pools[cidr.pool as usize].spaces[cidr.cidr as usize];
            assert!(
                !space.is_free(space.offset(*ip).expect("inside")),
                "{ip}: used address is not free"
            );
            match ip {
                IpAddr::V4(_) => recount[cidr.pool as usize].0 += 1,
                IpAddr::V6(_) => recount[cidr.pool as usize].1 += 1,
            }
        }
        for &(key, ip) in &self.shareable {
            let users = self.ips.get(&ip).expect("shareable address is in use");
            assert_eq!(self.services.get(users.first()).key, key, "{ip}: key");
        }
        for (state, (ipv4, ipv6, services)) in self.pools.iter().zip(recount) {
            let name = state.pool.name();
            assert_eq!(state.assigned_ipv4, ipv4, "{name}: assigned IPv4 counter");
            assert_eq!(state.assigned_ipv6, ipv6, "{name}: assigned IPv6 counter");
            assert_eq!(state.services, services, "{name}: services counter");
        }
        let live_keys: BTreeSet<KeyId> = self
            .services
            .iter()
            .map(|(_, entry)| entry.key)
            .filter(|&key| key != NO_SHARING)
            .collect();
        assert_eq!(live_keys.len(), self.keys.live(), "interned keys all held");
    }

    /// How many free intervals all CIDRs hold (for the benchmark and the README's claims).
    pub fn free_intervals(&self) -> usize {
        self.pools
            .iter()
            .flat_map(|state| state.spaces.iter())
            .map(FreeSpace::intervals)
            .sum()
    }
}

fn sorted_ports(ports: &[Port]) -> Box<[Port]> {
    let mut ports = ports.to_vec();
    ports.sort();
    ports.dedup();
    ports.into_boxed_slice()
}
