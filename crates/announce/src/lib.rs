//! Announcing service IPs to the network.
//!
//! Owns the wire formats and state machines that make a LAN or a router send a service IP's
//! traffic to this node: layer 2 ([`l2`]: ARP/NDP codecs, responder, gratuitous ARP schedule,
//! sticky owner election, interface discovery), BGP ([`bgp`]: messages, session FSM,
//! Adj-RIB-Out) and BFD ([`bfd`]). Each protocol keeps its sans-IO core (time and bytes in,
//! actions out) apart from the thin driver that owns the socket.
//!
//! It does not own deciding *which* services to announce (the speaker) nor Kubernetes types.

pub mod bfd;
pub mod bgp;
pub mod l2;
