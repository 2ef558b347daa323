//! Prometheus metrics (`ironlb_gossip_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::seal::DropReason;

type Labels = [(&'static str, &'static str); 1];

/// The `result` label values of `ironlb_gossip_claim_pulls_total`.
const PULL_RESULTS: [&str; 4] = ["requested", "completed", "inconsistent", "abandoned"];

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
    /// `ironlb_gossip_claim_pulls_total{result}`: pulls of another member's claim pages
    /// (`requested`: a request sent, retries included; `completed`; `inconsistent`: the pages did
    /// not add up and every page is asked for; `abandoned`: the owner died, left or never answered).
    pub claim_pulls: Family<Labels, Counter>,
    /// `ironlb_gossip_claim_pages_sent_total`: claim pages sent in answer to pulls.
    pub claim_pages_sent: Counter,
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
        registry.register(
            "claim_pulls",
            "Pulls of other members' claim pages, by result",
            self.claim_pulls.clone(),
        );
        for result in PULL_RESULTS {
            let _ = self.claim_pulls.get_or_create(&[("result", result)]);
        }
        registry.register(
            "claim_pages_sent",
            "Claim pages sent in answer to pulls",
            self.claim_pages_sent.clone(),
        );
    }

    /// How many claim pulls ended with `result` (see [`GossipMetrics::claim_pulls`]).
    pub fn claim_pull_count(&self, result: &'static str) -> u64 {
        self.claim_pulls.get_or_create(&[("result", result)]).get()
    }

    pub(crate) fn claim_pull(&self, result: &'static str) {
        self.claim_pulls.get_or_create(&[("result", result)]).inc();
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
