//! Prometheus metrics (`ironlb_gossip_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::seal::DropReason;

type Labels = [(&'static str, &'static str); 1];

/// Counters and gauges of one member. Cheap to clone (shared atomics).
#[derive(Debug, Clone, Default)]
pub struct GossipMetrics {
    /// `ironlb_gossip_members{state}`: members we know, by state (`alive`, `suspect`, `down`, `left`).
    pub members: Family<Labels, Gauge>,
    /// `ironlb_gossip_detections_total{event}`: membership events (`up`, `suspect`, `alive`, `down`, `left`).
    pub detections: Family<Labels, Counter>,
    /// `ironlb_gossip_sent_bytes_total`.
    pub sent_bytes: Counter,
    /// `ironlb_gossip_sent_datagrams_total`.
    pub sent_datagrams: Counter,
    /// `ironlb_gossip_received_bytes_total`.
    pub received_bytes: Counter,
    /// `ironlb_gossip_received_datagrams_total`.
    pub received_datagrams: Counter,
    /// `ironlb_gossip_dropped_total{reason}`: datagrams dropped before the protocol.
    pub dropped: Family<Labels, Counter>,
}

impl GossipMetrics {
    /// Registers every metric under the `ironlb_gossip` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("ironlb_gossip");
        registry.register("members", "Members known, by state", self.members.clone());
        registry.register(
            "detections",
            "Membership events, by event",
            self.detections.clone(),
        );
        registry.register(
            "sent_bytes",
            "UDP payload bytes sent",
            self.sent_bytes.clone(),
        );
        registry.register(
            "sent_datagrams",
            "Datagrams sent",
            self.sent_datagrams.clone(),
        );
        registry.register(
            "received_bytes",
            "UDP payload bytes received",
            self.received_bytes.clone(),
        );
        registry.register(
            "received_datagrams",
            "Datagrams received",
            self.received_datagrams.clone(),
        );
        registry.register(
            "dropped",
            "Datagrams dropped before the protocol, by reason",
            self.dropped.clone(),
        );
        for reason in DropReason::ALL {
            let _ = self.dropped.get_or_create(&[("reason", reason.as_str())]);
        }
    }

    /// How many datagrams were dropped for `reason`.
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.dropped
            .get_or_create(&[("reason", reason.as_str())])
            .get()
    }

    pub(crate) fn drop_datagram(&self, reason: DropReason) {
        self.dropped
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    pub(crate) fn detection(&self, event: &'static str) {
        self.detections.get_or_create(&[("event", event)]).inc();
    }

    pub(crate) fn set_members(&self, state: &'static str, count: usize) {
        self.members
            .get_or_create(&[("state", state)])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}
