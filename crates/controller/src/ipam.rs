//! The real [`Ipam`]: `ironlb_alloc::Allocator` driven with requests built from Services, and
//! the configuration parsed from the watched objects.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ironlb_alloc::{Allocator, Pool, PoolName, Request};

use crate::core::{ConfigUpdate, Ipam, PoolCounters, Requested};
use crate::run::RawConfig;
use crate::view::{ServiceKey, ServiceView};

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

fn alloc_key(key: &ServiceKey) -> ironlb_alloc::ServiceKey {
    ironlb_alloc::ServiceKey::new(key.namespace.clone(), key.name.clone())
}

fn request(view: &ServiceView) -> Result<&Request, String> {
    view.request.as_ref().map_err(Clone::clone)
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

    fn requested(&self, view: &ServiceView) -> Result<Requested, String> {
        let request = request(view)?;
        Ok(Requested {
            ips: request.requested_ips.clone(),
            pool: request.requested_pool.as_ref().map(|pool| pool.0.clone()),
        })
    }

    fn allocation_key(&self, view: &ServiceView) -> String {
        match request(view) {
            Ok(request) => format!("{}\u{0}{}", request.backend_key, request.sharing_key),
            Err(_) => String::new(),
        }
    }

    fn assign(&mut self, view: &ServiceView, ips: &[IpAddr]) -> Result<String, String> {
        let request = request(view)?;
        self.allocator
            .assign(request, ips)
            .map_err(|error| error.to_string())?;
        self.pool_of(&view.key)
            .ok_or_else(|| "assigned addresses hold no pool".to_owned())
    }

    fn allocate(&mut self, view: &ServiceView) -> Result<(String, Vec<IpAddr>), String> {
        let request = request(view)?;
        let ips = self
            .allocator
            .allocate(request)
            .map_err(|error| error.to_string())?;
        let pool = self
            .pool_of(&view.key)
            .ok_or_else(|| "allocated addresses hold no pool".to_owned())?;
        Ok((pool, ips))
    }

    fn allocate_from_pool(
        &mut self,
        view: &ServiceView,
        pool: &str,
    ) -> Result<Vec<IpAddr>, String> {
        let request = request(view)?;
        self.allocator
            .allocate_from_pool(request, &PoolName::from(pool))
            .map_err(|error| error.to_string())
    }

    fn allocate_additional_family(&mut self, view: &ServiceView) -> Result<IpAddr, String> {
        let request = request(view)?;
        self.allocator
            .allocate_additional_family(request)
            .map_err(|error| error.to_string())
    }

    fn release(&mut self, key: &ServiceKey) {
        self.allocator.release(&alloc_key(key));
    }

    fn pool_of(&self, key: &ServiceKey) -> Option<String> {
        self.allocator
            .pool_of(&alloc_key(key))
            .map(|pool| pool.0.clone())
    }

    fn ips_of(&self, key: &ServiceKey) -> Vec<IpAddr> {
        self.allocator.ips(&alloc_key(key)).unwrap_or_default()
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
