//! Layer 2 metrics, with MetalLB's names.
//!
//! MetalLB's Go client exposes its layer 2 counters without a `_total` suffix
//! (`metallb_layer2_requests_received{ip="…"}`), and dashboards query those names. prometheus-client
//! appends `_total` to every counter sample, so the three MetalLB families are monotonic gauges
//! (only ever incremented): the sample names match MetalLB's exactly and `rate()` works on them.
//! ironlb's own counters keep the OpenMetrics `_total` form.

use std::net::IpAddr;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `ip` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IpLabel {
    /// The service IP.
    pub ip: String,
}

/// The `reason` label of dropped frames.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A [`super::proto::responder::DropReason::label`].
    pub reason: String,
}

/// The counters of the layer 2 announcer. Cloning shares the counters.
#[derive(Debug, Clone, Default)]
pub struct L2Metrics {
    /// Requests (ARP request / NS) received for an announced IP.
    pub requests_received: Family<IpLabel, Gauge>,
    /// Replies sent.
    pub responses_sent: Family<IpLabel, Gauge>,
    /// Gratuitous ARP / unsolicited NA frames sent.
    pub gratuitous_sent: Family<IpLabel, Gauge>,
    /// Answers for one of our IPs from another MAC.
    pub duplicate_answers: Family<IpLabel, Counter>,
    /// Frames dropped by the responder that were addressed to it but broken.
    pub frames_dropped: Family<ReasonLabel, Counter>,
}

impl L2Metrics {
    /// Fresh counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers every counter in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "metallb_layer2_requests_received",
            "Number of layer2 requests received for owned IPs",
            self.requests_received.clone(),
        );
        registry.register(
            "metallb_layer2_responses_sent",
            "Number of layer2 responses sent for owned IPs",
            self.responses_sent.clone(),
        );
        registry.register(
            "metallb_layer2_gratuitous_sent",
            "Number of gratuitous layer2 packets sent for owned IPs",
            self.gratuitous_sent.clone(),
        );
        registry.register(
            "ironlb_layer2_duplicate_answers",
            "ARP replies or neighbor advertisements for an owned IP from another MAC",
            self.duplicate_answers.clone(),
        );
        registry.register(
            "ironlb_layer2_frames_dropped",
            "Malformed ARP/NDP frames dropped by the responder, by reason",
            self.frames_dropped.clone(),
        );
    }

    /// The metric of `family` for `ip`.
    pub fn ip<M: Default + Clone>(family: &Family<IpLabel, M>, ip: IpAddr) -> M {
        family
            .get_or_create(&IpLabel { ip: ip.to_string() })
            .clone()
    }

    /// Counts a dropped frame.
    pub fn dropped(&self, reason: &'static str) {
        self.frames_dropped
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
