//! MetalLB's BGP and BFD metric names (`metallb.md` §6.2, §6.3), label `peer`.
//!
//! prometheus-client appends `_total` to counters; MetalLB's BFD event and packet counters have
//! no such suffix, so they are exposed as gauges that only grow, keeping the names dashboards
//! use.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `peer` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PeerLabel {
    /// `"<addr>:<port>"` for BGP (as MetalLB native), the address for BFD (as FRR).
    pub peer: String,
}

/// BGP session metrics.
#[derive(Clone, Debug, Default)]
pub struct BgpMetrics {
    /// `metallb_bgp_session_up`.
    pub session_up: Family<PeerLabel, Gauge>,
    /// `metallb_bgp_updates_total`.
    pub updates: Family<PeerLabel, Counter>,
    /// `metallb_bgp_announced_prefixes_total`.
    pub announced_prefixes: Family<PeerLabel, Gauge>,
    /// `metallb_bgp_pending_prefixes_total`.
    pub pending_prefixes: Family<PeerLabel, Gauge>,
}

impl BgpMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        metrics.register_into(registry);
        metrics
    }

    /// Registers these metrics (shared handles) in `registry`.
    pub fn register_into(&self, registry: &mut Registry) {
        let metrics = self;
        registry.register(
            "metallb_bgp_session_up",
            "BGP session state (1 is up, 0 is down)",
            metrics.session_up.clone(),
        );
        registry.register(
            "metallb_bgp_updates",
            "Number of BGP UPDATE messages sent",
            metrics.updates.clone(),
        );
        registry.register(
            "metallb_bgp_announced_prefixes_total",
            "Number of prefixes currently being advertised on the BGP session",
            metrics.announced_prefixes.clone(),
        );
        registry.register(
            "metallb_bgp_pending_prefixes_total",
            "Number of prefixes that should be advertised on the BGP session",
            metrics.pending_prefixes.clone(),
        );
    }
}

/// BFD session metrics.
#[derive(Clone, Debug, Default)]
pub struct BfdMetrics {
    /// `metallb_bfd_session_up`.
    pub session_up: Family<PeerLabel, Gauge>,
    /// `metallb_bfd_session_up_events`.
    pub session_up_events: Family<PeerLabel, Gauge>,
    /// `metallb_bfd_session_down_events`.
    pub session_down_events: Family<PeerLabel, Gauge>,
    /// `metallb_bfd_control_packet_input`.
    pub control_packet_input: Family<PeerLabel, Gauge>,
    /// `metallb_bfd_control_packet_output`.
    pub control_packet_output: Family<PeerLabel, Gauge>,
}

impl BfdMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        metrics.register_into(registry);
        metrics
    }

    /// Registers these metrics (shared handles) in `registry`.
    pub fn register_into(&self, registry: &mut Registry) {
        let metrics = self;
        registry.register(
            "metallb_bfd_session_up",
            "BFD session state (1 is up, 0 is down)",
            metrics.session_up.clone(),
        );
        registry.register(
            "metallb_bfd_session_up_events",
            "Number of BFD session up events",
            metrics.session_up_events.clone(),
        );
        registry.register(
            "metallb_bfd_session_down_events",
            "Number of BFD session down events",
            metrics.session_down_events.clone(),
        );
        registry.register(
            "metallb_bfd_control_packet_input",
            "Number of received BFD control packets",
            metrics.control_packet_input.clone(),
        );
        registry.register(
            "metallb_bfd_control_packet_output",
            "Number of sent BFD control packets",
            metrics.control_packet_output.clone(),
        );
    }
}
