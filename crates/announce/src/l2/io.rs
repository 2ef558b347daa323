//! The thin layer 2 driver: netlink discovery, AF_PACKET sockets, the schedule's timer.
//!
//! Everything that decides lives in [`super::proto`]; this module turns socket reads, netlink
//! events and timer fires into calls on the cores and runs what they return.

pub mod driver;
pub mod netlink;
pub mod socket;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::proto::packet::MacAddr;

/// Something the driver reports to its caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum L2Event {
    /// A responder started on an interface.
    InterfaceUp {
        /// Interface name.
        interface: String,
        /// Its MAC.
        mac: MacAddr,
    },
    /// A responder stopped.
    InterfaceDown {
        /// Interface name.
        interface: String,
        /// Why (skip reason or "gone").
        reason: String,
    },
    /// An interface is not used (reported when its reason changes).
    InterfaceSkipped {
        /// Interface name.
        interface: String,
        /// The skip reason.
        reason: String,
    },
    /// A request was answered (only when verbose).
    Answered {
        /// Interface name.
        interface: String,
        /// The announced IP.
        ip: IpAddr,
        /// Who asked.
        requester: MacAddr,
    },
    /// A gratuitous ARP / unsolicited NA was sent (only when verbose).
    GratuitousSent {
        /// Interface name.
        interface: String,
        /// The announced IP.
        ip: IpAddr,
        /// Frames sent (2 for ARP, 1 for NA).
        frames: usize,
    },
    /// Another MAC claims one of our IPs.
    DuplicateAnswer {
        /// Interface name.
        interface: String,
        /// The announced IP.
        ip: IpAddr,
        /// The other MAC.
        mac: MacAddr,
    },
    /// A frame addressed to the responder was dropped as broken (only when verbose).
    Dropped {
        /// Interface name.
        interface: String,
        /// The drop reason.
        reason: String,
    },
    /// An owned IP has no eligible interface among its selection.
    NoInterface {
        /// The announced IP.
        ip: IpAddr,
    },
    /// A socket or netlink operation failed.
    Error {
        /// Interface name, or empty for the driver.
        interface: String,
        /// What failed.
        message: String,
    },
}
