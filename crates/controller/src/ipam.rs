//! The real [`Ipam`]: `ironlb_alloc::Allocator` driven with requests built from Services, and
//! the configuration parsed from the watched objects.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ironlb_alloc::{Allocator, Converged, Pool, Request};

use crate::core::{ConfigUpdate, Ipam, PoolCounters};
use crate::run::RawConfig;
use crate::view::ServiceKey;

/// What the controller keeps of a validated configuration: the pools, in configuration order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Every `IPAddressPool`, validated.
    pub pools: Vec<Pool>,
}

/// `ironlb_alloc::Allocator` as the core's [`Ipam`].
#[derive(Debug, Default)]
pub struct AllocatorIpam {
    allocator: Allocator,
}

impl AllocatorIpam {
    /// The allocator, for inspection.
    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }
}

impl Ipam for AllocatorIpam {
    type Config = ControllerConfig;

    fn set_config(&mut self, config: &ControllerConfig) {
        let changed = self.allocator.set_pools(config.pools.clone());
        for (service, ips) in &changed.released {
            tracing::info!(service = %service, ?ips, op = "setPools", "addresses left every pool, released");
        }
        for (service, old, new) in &changed.remapped {
            tracing::info!(service = %service, %old, %new, op = "setPools", "addresses moved to another pool");
        }
    }

    fn has_pools(&self) -> bool {
        self.allocator.has_pools()
    }

    fn assign(&mut self, request: &Request, ips: &[IpAddr]) -> Result<String, String> {
        self.allocator
            .assign(request, ips)
            .map_err(|error| error.to_string())?;
        self.allocator
            .pool_of(&request.service)
            .map(|pool| pool.0.clone())
            .ok_or_else(|| "assigned addresses hold no pool".to_owned())
    }

    fn converge(&mut self, request: &Request, current: &[IpAddr]) -> Converged {
        self.allocator.converge(request, current)
    }

    fn release(&mut self, key: &ServiceKey) {
        self.allocator.release(key);
    }

    fn pool_of(&self, key: &ServiceKey) -> Option<String> {
        self.allocator.pool_of(key).map(|pool| pool.0.clone())
    }

    fn ips_of(&self, key: &ServiceKey) -> Vec<IpAddr> {
        self.allocator.ips(key).unwrap_or_default()
    }

    fn counters(&self) -> BTreeMap<String, PoolCounters> {
        let clamp = |value: i64| u64::try_from(value).unwrap_or(0);
        self.allocator
            .pools()
            .filter_map(|pool| {
                let counters = self.allocator.pool_counters(pool.name())?;
                Some((
                    pool.name().0.clone(),
                    PoolCounters {
                        assigned_ipv4: clamp(counters.assigned_ipv4),
                        assigned_ipv6: clamp(counters.assigned_ipv6),
                        available_ipv4: clamp(counters.available_ipv4),
                        available_ipv6: clamp(counters.available_ipv6),
                        services: counters.services_allocated,
                    },
                ))
            })
            .collect()
    }
}

/// Parses the watched objects into the controller's configuration.
pub fn parse_config(raw: &RawConfig) -> ConfigUpdate<ControllerConfig> {
    crate::config::parse(raw)
}
