//! The controller's Prometheus metrics, under MetalLB's names (`metallb.md` §7.6).
//!
//! `metallb_allocator_services_allocated_total` is really set here (MetalLB registers it and
//! never sets it; `decisions.md`).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::core::PoolCounters;

/// The label set of the per-pool gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    /// The pool's name.
    pub pool: String,
}

type PoolGauge = Family<PoolLabel, Gauge<i64, AtomicI64>>;

/// Every metric the controller exports. Cloning shares the underlying values.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    addresses_total: PoolGauge,
    ipv4_addresses_total: PoolGauge,
    ipv6_addresses_total: PoolGauge,
    addresses_in_use_total: PoolGauge,
    ipv4_addresses_in_use_total: PoolGauge,
    ipv6_addresses_in_use_total: PoolGauge,
    services_allocated_total: PoolGauge,
    /// `metallb_k8s_client_updates_total`: configuration updates and object writes.
    pub updates: Counter,
    /// `metallb_k8s_client_update_errors_total`: failed updates.
    pub update_errors: Counter,
    /// `metallb_k8s_client_config_loaded_bool`: a configuration was loaded at least once.
    pub config_loaded: Gauge,
    /// `metallb_k8s_client_config_stale_bool`: the last configuration seen did not parse and the
    /// controller runs on the one before.
    pub config_stale: Gauge,
}

impl Metrics {
    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let pool_gauges: [(&str, &str, &PoolGauge); 7] = [
            (
                "metallb_allocator_addresses_total",
                "Number of usable IP addresses, per pool",
                &self.addresses_total,
            ),
            (
                "metallb_allocator_ipv4_addresses_total",
                "Number of usable IPv4 addresses, per pool",
                &self.ipv4_addresses_total,
            ),
            (
                "metallb_allocator_ipv6_addresses_total",
                "Number of usable IPv6 addresses, per pool",
                &self.ipv6_addresses_total,
            ),
            (
                "metallb_allocator_addresses_in_use_total",
                "Number of IP addresses in use, per pool",
                &self.addresses_in_use_total,
            ),
            (
                "metallb_allocator_ipv4_addresses_in_use_total",
                "Number of IPv4 addresses in use, per pool",
                &self.ipv4_addresses_in_use_total,
            ),
            (
                "metallb_allocator_ipv6_addresses_in_use_total",
                "Number of IPv6 addresses in use, per pool",
                &self.ipv6_addresses_in_use_total,
            ),
            (
                "metallb_allocator_services_allocated_total",
                "Number of services with an allocation, per pool",
                &self.services_allocated_total,
            ),
        ];
        for (name, help, gauge) in pool_gauges {
            registry.register(name, help, gauge.clone());
        }
        // prometheus-client appends `_total` to counters.
        registry.register(
            "metallb_k8s_client_updates",
            "Number of k8s object updates that have been processed.",
            self.updates.clone(),
        );
        registry.register(
            "metallb_k8s_client_update_errors",
            "Number of k8s object updates that failed for some reason.",
            self.update_errors.clone(),
        );
        registry.register(
            "metallb_k8s_client_config_loaded_bool",
            "1 if the MetalLB configuration was successfully loaded at least once.",
            self.config_loaded.clone(),
        );
        registry.register(
            "metallb_k8s_client_config_stale_bool",
            "1 if running on a stale configuration, because the latest config failed to load.",
            self.config_stale.clone(),
        );
    }

    /// Sets the per-pool gauges from the allocator's counters; pools that disappeared are removed.
    pub fn set_pools(&self, counters: &BTreeMap<String, PoolCounters>) {
        for family in [
            &self.addresses_total,
            &self.ipv4_addresses_total,
            &self.ipv6_addresses_total,
            &self.addresses_in_use_total,
            &self.ipv4_addresses_in_use_total,
            &self.ipv6_addresses_in_use_total,
            &self.services_allocated_total,
        ] {
            family.clear();
        }
        for (pool, c) in counters {
            let label = PoolLabel { pool: pool.clone() };
            let set = |family: &PoolGauge, value: u64| {
                family
                    .get_or_create(&label)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            };
            set(
                &self.addresses_total,
                c.available_ipv4
                    .saturating_add(c.available_ipv6)
                    .saturating_add(c.assigned_ipv4)
                    .saturating_add(c.assigned_ipv6),
            );
            set(
                &self.ipv4_addresses_total,
                c.available_ipv4.saturating_add(c.assigned_ipv4),
            );
            set(
                &self.ipv6_addresses_total,
                c.available_ipv6.saturating_add(c.assigned_ipv6),
            );
            set(
                &self.addresses_in_use_total,
                c.assigned_ipv4.saturating_add(c.assigned_ipv6),
            );
            set(&self.ipv4_addresses_in_use_total, c.assigned_ipv4);
            set(&self.ipv6_addresses_in_use_total, c.assigned_ipv6);
            set(&self.services_allocated_total, c.services);
        }
    }
}

/// Renders `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}
