//! The ARP/NDP responder of one interface: a frame in, a reply, an event or a drop reason out.
//!
//! Rules (MetalLB `internal/layer2/{arp,ndp}.go`, see `reference/metallb.md` §4.2, plus the
//! departures of issue 6):
//!
//! * Frames we sent ourselves (a packet socket also sees outgoing frames) are dropped first.
//! * ARP requests are answered only when the Ethernet destination is broadcast or our MAC and
//!   the target IP is announced on this interface. The reply is unicast to the requester.
//! * NS are answered when the target is announced here: with a Source Link-Layer Address option
//!   to that address (Solicited=1, Override=0, Target LLA = our MAC, as MetalLB); **without**
//!   the option (RFC 4861 §7.2.4 allows it; MetalLB drops those) unicast to the IPv6 source and
//!   the frame's Ethernet source; from the unspecified address (duplicate address detection of
//!   our IP by someone else) to ff02::1 with Solicited=0, Override=1, which defends the IP.
//! * An ARP reply, a gratuitous ARP request or an NA that claims one of our announced IPs with
//!   another MAC is a [`Outcome::DuplicateAnswer`]: split brain or a foreign device.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::packet::{
    solicited_node_group, ArpOperation, ArpPacket, DecodeError, EthernetHeader, Frame, Ipv6Header,
    MacAddr, NdpMessage, NdpOptions, ALL_NODES, ETHER_TYPE_ARP, ETHER_TYPE_IPV6, NDP_HOP_LIMIT,
    NEXT_HEADER_ICMPV6,
};

/// What the responder knows about its interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceIdentity {
    /// Interface name, for events.
    pub name: String,
    /// The interface's MAC: the address we answer with.
    pub mac: MacAddr,
    /// The interface's IPv6 link-local address (informational: our NAs are sent from the
    /// target address, as the kernel does).
    pub link_local: Option<Ipv6Addr>,
}

/// The result of a frame that was not dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A request for an announced IP; send `frame`.
    Reply {
        /// The announced IP that was asked for.
        ip: IpAddr,
        /// Who asked (ARP sender hardware address / NS source link-layer or Ethernet source).
        requester: MacAddr,
        /// The reply to transmit.
        frame: Frame,
    },
    /// Another MAC claims one of our announced IPs.
    DuplicateAnswer {
        /// The announced IP.
        ip: IpAddr,
        /// The other MAC.
        mac: MacAddr,
    },
}

/// Why a frame was not answered. Each variant is counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// The frame did not decode (includes well-formed frames that are not ARP/NDP).
    #[error("undecodable frame: {0}")]
    Malformed(#[from] DecodeError),
    /// Our own outgoing frame, looped back to the packet socket.
    #[error("own frame")]
    OwnFrame,
    /// Ethernet destination is neither broadcast, IPv6 multicast, nor our MAC.
    #[error("ethernet destination {0} is not for us")]
    EthernetDestinationNotUs(MacAddr),
    /// A request or solicitation for an IP not announced on this interface.
    #[error("{0} is not announced on this interface")]
    NotAnnounced(IpAddr),
    /// An ARP reply or NA that does not conflict with us.
    #[error("answer ignored")]
    AnswerIgnored,
    /// An NS whose IPv6 destination is neither the target's solicited-node group nor the target.
    #[error("NS for {target} sent to {destination}")]
    SolicitationDestination {
        /// The NS target.
        target: Ipv6Addr,
        /// Its IPv6 destination.
        destination: Ipv6Addr,
    },
}

impl DropReason {
    /// A stable, low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed(error) => error.label(),
            Self::OwnFrame => "own_frame",
            Self::EthernetDestinationNotUs(_) => "ethernet_destination_not_us",
            Self::NotAnnounced(_) => "not_announced",
            Self::AnswerIgnored => "answer_ignored",
            Self::SolicitationDestination { .. } => "ns_destination",
        }
    }

    /// True for traffic that is simply not ours (other protocols, other IPs, our own frames);
    /// false for frames that were addressed to an ARP/NDP responder but are broken.
    pub fn is_expected(&self) -> bool {
        match self {
            Self::Malformed(error) => error.is_foreign(),
            Self::OwnFrame
            | Self::NotAnnounced(_)
            | Self::AnswerIgnored
            | Self::EthernetDestinationNotUs(_) => true,
            Self::SolicitationDestination { .. } => false,
        }
    }
}

/// The responder of one interface.
///
/// It is a pure function of its configuration and one frame: [`Responder::handle_frame`] keeps no
/// state between frames, so the driver can call it from the receive loop without locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responder {
    interface: InterfaceIdentity,
    announced: BTreeSet<IpAddr>,
}

impl Responder {
    /// A responder that announces nothing yet.
    pub fn new(interface: InterfaceIdentity) -> Self {
        Self {
            interface,
            announced: BTreeSet::new(),
        }
    }

    /// The interface.
    pub fn interface(&self) -> &InterfaceIdentity {
        &self.interface
    }

    /// Replaces the interface facts (MAC or link-local changed).
    pub fn set_interface(&mut self, interface: InterfaceIdentity) {
        self.interface = interface;
    }

    /// Replaces the set of IPs announced on this interface.
    pub fn set_announced(&mut self, announced: BTreeSet<IpAddr>) {
        self.announced = announced;
    }

    /// The IPs announced on this interface.
    pub fn announced(&self) -> &BTreeSet<IpAddr> {
        &self.announced
    }

    /// Handles one received Ethernet frame.
    pub fn handle_frame(&self, bytes: &[u8]) -> Result<Outcome, DropReason> {
        let frame = Frame::decode(bytes)?;
        if frame.ethernet().source == self.interface.mac {
            return Err(DropReason::OwnFrame);
        }
        match frame {
            Frame::Arp { ethernet, arp } => self.handle_arp(&ethernet, &arp),
            Frame::Ndp {
                ethernet,
                ip,
                message,
            } => self.handle_ndp(&ethernet, &ip, &message),
        }
    }

    fn is_announced(&self, ip: IpAddr) -> bool {
        self.announced.contains(&ip)
    }

    fn handle_arp(
        &self,
        ethernet: &EthernetHeader,
        arp: &ArpPacket,
    ) -> Result<Outcome, DropReason> {
        let mac = self.interface.mac;
        match arp.operation {
            ArpOperation::Reply => {
                let ip = IpAddr::V4(arp.sender_ip);
                if self.is_announced(ip) && arp.sender_mac != mac {
                    return Ok(Outcome::DuplicateAnswer {
                        ip,
                        mac: arp.sender_mac,
                    });
                }
                Err(DropReason::AnswerIgnored)
            }
            ArpOperation::Request => {
                if ethernet.destination != MacAddr::BROADCAST && ethernet.destination != mac {
                    return Err(DropReason::EthernetDestinationNotUs(ethernet.destination));
                }
                let ip = IpAddr::V4(arp.target_ip);
                if !self.is_announced(ip) {
                    return Err(DropReason::NotAnnounced(ip));
                }
                // A gratuitous request for our IP from another MAC: someone else claims it.
                if arp.sender_ip == arp.target_ip && arp.sender_mac != mac {
                    return Ok(Outcome::DuplicateAnswer {
                        ip,
                        mac: arp.sender_mac,
                    });
                }
                let requester = if arp.sender_mac.is_multicast() || arp.sender_mac == MacAddr::ZERO
                {
                    ethernet.source
                } else {
                    arp.sender_mac
                };
                let frame = Frame::Arp {
                    ethernet: EthernetHeader {
                        destination: requester,
                        source: mac,
                        ether_type: ETHER_TYPE_ARP,
                    },
                    arp: ArpPacket {
                        operation: ArpOperation::Reply,
                        sender_mac: mac,
                        sender_ip: arp.target_ip,
                        target_mac: arp.sender_mac,
                        target_ip: arp.sender_ip,
                    },
                };
                Ok(Outcome::Reply {
                    ip,
                    requester,
                    frame,
                })
            }
        }
    }

    fn handle_ndp(
        &self,
        ethernet: &EthernetHeader,
        ip: &Ipv6Header,
        message: &NdpMessage,
    ) -> Result<Outcome, DropReason> {
        let mac = self.interface.mac;
        match *message {
            NdpMessage::Advertisement {
                target, options, ..
            } => {
                let claimed_by = options.target_lla.unwrap_or(ethernet.source);
                if self.is_announced(IpAddr::V6(target)) && claimed_by != mac {
                    return Ok(Outcome::DuplicateAnswer {
                        ip: IpAddr::V6(target),
                        mac: claimed_by,
                    });
                }
                Err(DropReason::AnswerIgnored)
            }
            NdpMessage::Solicitation { target, options } => {
                let dst = ethernet.destination;
                if dst != mac && dst != MacAddr::BROADCAST && !dst.is_ipv6_multicast() {
                    return Err(DropReason::EthernetDestinationNotUs(dst));
                }
                if !self.is_announced(IpAddr::V6(target)) {
                    return Err(DropReason::NotAnnounced(IpAddr::V6(target)));
                }
                if ip.destination != solicited_node_group(target) && ip.destination != target {
                    return Err(DropReason::SolicitationDestination {
                        target,
                        destination: ip.destination,
                    });
                }
                // The kernel answers from the target address itself, and `ndisc6` only accepts
                // an NA whose source is the target, so we do the same (MetalLB uses the
                // link-local address, which `ndisc6` ignores).
                let source = target;
                let reply_options = NdpOptions {
                    source_lla: None,
                    target_lla: Some(mac),
                };
                let (requester, eth_destination, ip_destination, solicited, override_entry) =
                    if ip.source.is_unspecified() {
                        // Duplicate address detection by someone else: defend the address.
                        (
                            ethernet.source,
                            MacAddr::ipv6_multicast(ALL_NODES),
                            ALL_NODES,
                            false,
                            true,
                        )
                    } else {
                        let requester = options.source_lla.unwrap_or(ethernet.source);
                        (requester, requester, ip.source, true, false)
                    };
                let frame = Frame::Ndp {
                    ethernet: EthernetHeader {
                        destination: eth_destination,
                        source: mac,
                        ether_type: ETHER_TYPE_IPV6,
                    },
                    ip: Ipv6Header {
                        next_header: NEXT_HEADER_ICMPV6,
                        hop_limit: NDP_HOP_LIMIT,
                        source,
                        destination: ip_destination,
                    },
                    message: NdpMessage::Advertisement {
                        router: false,
                        solicited,
                        override_entry,
                        target,
                        options: reply_options,
                    },
                };
                Ok(Outcome::Reply {
                    ip: IpAddr::V6(target),
                    requester,
                    frame,
                })
            }
        }
    }
}
