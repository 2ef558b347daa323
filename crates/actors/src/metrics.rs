//! The speaker's metrics (MetalLB's names where MetalLB has one) and health flags.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use ironlb_announce::bgp::driver::Metrics as BgpDriverMetrics;
use ironlb_announce::l2::metrics::L2Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `metallb_speaker_announced`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnnouncedLabels {
    /// `namespace/name`.
    pub service: String,
    /// `layer2` or `bgp`.
    pub protocol: String,
    /// This node.
    pub node: String,
    /// The IP.
    pub ip: String,
}

/// Labels naming a child actor.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChildLabels {
    /// The child's role (`layer2`, `membership`, …).
    pub child: String,
}

/// Every metric of one speaker.
#[derive(Debug, Default)]
pub struct SpeakerMetrics {
    /// `metallb_speaker_announced{service,protocol,node,ip}` = 1 while announced.
    pub announced: Family<AnnouncedLabels, Gauge>,
    /// `metallb_k8s_client_updates_total`: watch events applied.
    pub updates: Counter,
    /// `metallb_k8s_client_update_errors_total`: watch and write errors.
    pub update_errors: Counter,
    /// `metallb_k8s_client_config_loaded_bool`.
    pub config_loaded: Gauge,
    /// `metallb_k8s_client_config_stale_bool`.
    pub config_stale: Gauge,
    /// `ironlb_speaker_api_reachable_bool`: 0 while the watches fail (announcing continues
    /// from the last known state).
    pub api_reachable: Gauge,
    /// `ironlb_speaker_reconciles_total{child}`: reconciles run by `layer2` and `bgp` (change
    /// signals coalesce, so this grows far slower than the watch events).
    pub reconciles: Family<ChildLabels, Counter>,
    /// `ironlb_speaker_child_restarts_total{child}`.
    pub restarts: Family<ChildLabels, Counter>,
    /// `ironlb_speaker_partition_yields_total`: Services given up to their owner on the other
    /// side of a gossip partition (split brains resolved through the API).
    pub partition_yields: Counter,
    /// `ironlb_speaker_status_writes_total`.
    pub status_writes: Counter,
    /// The layer 2 responder metrics (`metallb_layer2_*`).
    pub layer2: L2Metrics,
    /// The BGP and BFD session metrics (`metallb_bgp_*`, `metallb_bfd_*`).
    pub bgp: BgpDriverMetrics,
    /// The gossip membership metrics (`ironlb_gossip_*`), shared by every life of the
    /// `Membership` actor.
    pub gossip: ironlb_gossip::GossipMetrics,
    ready: AtomicBool,
}

impl SpeakerMetrics {
    /// Registers everything.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        registry.register(
            "metallb_speaker_announced",
            "Services being announced from this node",
            self.announced.clone(),
        );
        registry.register(
            "metallb_k8s_client_updates",
            "Number of k8s object updates that have been processed",
            self.updates.clone(),
        );
        registry.register(
            "metallb_k8s_client_update_errors",
            "Number of k8s object updates that failed for some reason",
            self.update_errors.clone(),
        );
        registry.register(
            "metallb_k8s_client_config_loaded_bool",
            "1 if the MetalLB configuration was successfully loaded at least once",
            self.config_loaded.clone(),
        );
        registry.register(
            "metallb_k8s_client_config_stale_bool",
            "1 if running on a stale configuration, because the latest config failed to load",
            self.config_stale.clone(),
        );
        registry.register(
            "ironlb_speaker_api_reachable_bool",
            "0 while the API server cannot be watched (announcing continues from the last state)",
            self.api_reachable.clone(),
        );
        registry.register(
            "ironlb_speaker_reconciles",
            "Reconciles run by the layer2 and bgp actors",
            self.reconciles.clone(),
        );
        registry.register(
            "ironlb_speaker_child_restarts",
            "Child actors restarted by the supervisor",
            self.restarts.clone(),
        );
        registry.register(
            "ironlb_speaker_partition_yields",
            "Services given up to their owner on the other side of a gossip partition",
            self.partition_yields.clone(),
        );
        registry.register(
            "ironlb_speaker_status_writes",
            "ServiceL2Status writes and deletes done",
            self.status_writes.clone(),
        );
        self.layer2.register(&mut registry);
        self.bgp.bgp.register_into(&mut registry);
        self.bgp.bfd.register_into(&mut registry);
        self.gossip.register(&mut registry);
        registry
    }

    /// Replaces the `metallb_speaker_announced` series of one protocol: `now` holds the
    /// (service, ip) pairs announced now, `previous` those set last time (updated in place).
    pub fn replace_announced(
        &self,
        protocol: &str,
        node: &str,
        now: BTreeSet<(String, IpAddr)>,
        previous: &mut BTreeSet<(String, IpAddr)>,
    ) {
        let labels = |(service, ip): &(String, IpAddr)| AnnouncedLabels {
            service: service.clone(),
            protocol: protocol.to_owned(),
            node: node.to_owned(),
            ip: ip.to_string(),
        };
        for gone in previous.difference(&now) {
            self.announced.remove(&labels(gone));
        }
        for entry in &now {
            self.announced.get_or_create(&labels(entry)).set(1);
        }
        *previous = now;
    }

    /// Counts one reconcile of `child` (`layer2`, `bgp`).
    pub fn count_reconcile(&self, child: &str) {
        count_child(&self.reconciles, child);
    }

    /// Counts one restart of `child` (a [`Role`](crate::tree::Role) name, or
    /// `bgp-session/<BGPPeer>`).
    pub fn count_restart(&self, child: &str) {
        count_child(&self.restarts, child);
    }

    /// `/readyz`: the first cluster snapshot is in.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Marks ready.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
}

/// Adds one to the series of `child` in `family`.
fn count_child(family: &Family<ChildLabels, Counter>, child: &str) {
    family
        .get_or_create(&ChildLabels {
            child: child.to_owned(),
        })
        .inc();
}
