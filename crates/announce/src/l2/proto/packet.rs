//! Ethernet, ARP, IPv6 and ICMPv6 Neighbor Discovery codecs.
//!
//! Our own `encode`/`decode` rather than pnet's packet types: pnet's NDP option iterator trusts
//! the option length byte (a zero length is not rejected), its accessors do not validate the
//! fixed fields (hardware type, hop limit, checksum) and its errors are `Option`s, while the
//! responder needs one typed error per reason to count drops. The formats are small and fixed,
//! so a hand-written decoder that checks each field in order is shorter than the glue.
//!
//! Decoders take a borrowed `&[u8]` (the receive buffer of the socket) so that the hot path does
//! not copy a frame; they never index without a length check and never panic. Encoders append to
//! a `BytesMut`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

/// EtherType of ARP.
pub const ETHER_TYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHER_TYPE_IPV6: u16 = 0x86dd;
/// IPv6 next-header number of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// ICMPv6 type of a Neighbor Solicitation (RFC 4861 §4.3).
pub const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
/// ICMPv6 type of a Neighbor Advertisement (RFC 4861 §4.4).
pub const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Hop limit every NDP message must carry (RFC 4861 §7.1.1).
pub const NDP_HOP_LIMIT: u8 = 255;
/// Shortest Ethernet frame without FCS; shorter frames are padded with zeros.
pub const ETHERNET_MIN_FRAME_LEN: usize = 60;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Self = Self([0xff; 6]);
    /// 00:00:00:00:00:00, the "unknown" target hardware address of an ARP request.
    pub const ZERO: Self = Self([0; 6]);

    /// The Ethernet multicast address an IPv6 multicast group maps to (RFC 2464 §7).
    pub fn ipv6_multicast(group: Ipv6Addr) -> Self {
        let o = group.octets();
        Self([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    /// True for group (multicast or broadcast) addresses.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for a 33:33:xx:xx:xx:xx IPv6 multicast address.
    pub fn is_ipv6_multicast(self) -> bool {
        self.0[0] == 0x33 && self.0[1] == 0x33
    }

    /// Reads six bytes; `None` when `bytes` is not exactly six long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(bytes).ok().map(Self)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A MAC address string that is not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: want six colon-separated hex octets")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for slot in &mut out {
            let part = parts.next().ok_or_else(|| ParseMacError(s.to_owned()))?;
            if part.len() != 2 {
                return Err(ParseMacError(s.to_owned()));
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| ParseMacError(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError(s.to_owned()));
        }
        Ok(Self(out))
    }
}

/// The layer a truncation was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layer {
    /// The 14-byte Ethernet header.
    Ethernet,
    /// The 28-byte ARP body (Ethernet/IPv4).
    Arp,
    /// The 40-byte IPv6 header.
    Ipv6,
    /// The ICMPv6 NS/NA body.
    Icmpv6,
    /// An NDP option.
    NdpOption,
}

/// Why a frame could not be decoded. Each variant is one counted drop reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the layer needs.
    #[error("{layer:?} truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Layer being decoded.
        layer: Layer,
        /// Bytes the layer needs.
        needed: usize,
        /// Bytes that were there.
        available: usize,
    },
    /// Neither ARP nor IPv6 (not an error of the sender, just not ours).
    #[error("ether type {0:#06x} is neither ARP nor IPv6")]
    OtherEtherType(u16),
    /// ARP hardware type other than Ethernet (1).
    #[error("ARP hardware type {0} is not Ethernet")]
    ArpHardwareType(u16),
    /// ARP protocol type other than IPv4.
    #[error("ARP protocol type {0:#06x} is not IPv4")]
    ArpProtocolType(u16),
    /// ARP address lengths other than 6 and 4.
    #[error("ARP address lengths {hardware}/{protocol}, want 6/4")]
    ArpAddressLengths {
        /// Hardware address length byte.
        hardware: u8,
        /// Protocol address length byte.
        protocol: u8,
    },
    /// ARP operation other than request (1) or reply (2).
    #[error("ARP operation {0} is neither request nor reply")]
    ArpOperation(u16),
    /// IPv6 header whose version nibble is not 6.
    #[error("IP version {0} in an IPv6 ether type")]
    Ipv6Version(u8),
    /// IPv6 payload length larger than the bytes received.
    #[error("IPv6 payload length {declared} but {available} bytes follow the header")]
    Ipv6PayloadLength {
        /// Payload length field.
        declared: u16,
        /// Bytes after the header.
        available: usize,
    },
    /// IPv6 packet that is not ICMPv6 directly after the header (not ours).
    #[error("IPv6 next header {0} is not ICMPv6")]
    NotIcmpv6(u8),
    /// ICMPv6 message that is neither NS nor NA (not ours).
    #[error("ICMPv6 type {0} is neither NS nor NA")]
    NotNdp(u8),
    /// NDP message with a hop limit other than 255: it crossed a router (RFC 4861 §7.1.1).
    #[error("NDP hop limit {0}, want 255")]
    NdpHopLimit(u8),
    /// NDP message with a non-zero ICMP code.
    #[error("NDP ICMP code {0}, want 0")]
    NdpCode(u8),
    /// ICMPv6 checksum mismatch.
    #[error("ICMPv6 checksum {found:#06x}, computed {computed:#06x}")]
    Icmpv6Checksum {
        /// Checksum in the packet.
        found: u16,
        /// Checksum computed over the pseudo-header and message.
        computed: u16,
    },
    /// Target address is multicast (RFC 4861 §7.1.1).
    #[error("NDP target {0} is multicast")]
    NdpTargetMulticast(Ipv6Addr),
    /// An option with length zero (RFC 4861 §4.6: "nodes MUST silently discard").
    #[error("NDP option type {0} has length 0")]
    NdpOptionZeroLength(u8),
    /// A link-layer address option whose length is not 8 bytes on Ethernet.
    #[error("NDP link-layer option type {option_type} is {len} bytes, want 8")]
    NdpLinkLayerOptionLength {
        /// Option type (1 source, 2 target).
        option_type: u8,
        /// Option length in bytes.
        len: usize,
    },
    /// A DAD solicitation (unspecified source) that carries a source link-layer option.
    #[error("NS from the unspecified address carries a source link-layer option")]
    NdpDadWithSourceLla,
}

impl DecodeError {
    /// A stable, low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "truncated",
            Self::OtherEtherType(_) => "other_ether_type",
            Self::ArpHardwareType(_) => "arp_hardware_type",
            Self::ArpProtocolType(_) => "arp_protocol_type",
            Self::ArpAddressLengths { .. } => "arp_address_lengths",
            Self::ArpOperation(_) => "arp_operation",
            Self::Ipv6Version(_) => "ipv6_version",
            Self::Ipv6PayloadLength { .. } => "ipv6_payload_length",
            Self::NotIcmpv6(_) => "not_icmpv6",
            Self::NotNdp(_) => "not_ndp",
            Self::NdpHopLimit(_) => "ndp_hop_limit",
            Self::NdpCode(_) => "ndp_code",
            Self::Icmpv6Checksum { .. } => "icmpv6_checksum",
            Self::NdpTargetMulticast(_) => "ndp_target_multicast",
            Self::NdpOptionZeroLength(_) => "ndp_option_zero_length",
            Self::NdpLinkLayerOptionLength { .. } => "ndp_link_layer_option_length",
            Self::NdpDadWithSourceLla => "ndp_dad_with_source_lla",
        }
    }

    /// True when the frame is well-formed but simply not ARP/NDP (expected on a shared socket).
    pub fn is_foreign(&self) -> bool {
        matches!(
            self,
            Self::OtherEtherType(_) | Self::NotIcmpv6(_) | Self::NotNdp(_)
        )
    }
}

fn take(buf: &[u8], len: usize, layer: Layer) -> Result<(&[u8], &[u8]), DecodeError> {
    if buf.len() < len {
        return Err(DecodeError::Truncated {
            layer,
            needed: len,
            available: buf.len(),
        });
    }
    Ok(buf.split_at(len))
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    // Callers pass slices whose length was checked by `take`; `get` keeps this panic-free anyway.
    match (bytes.get(at), bytes.get(at + 1)) {
        (Some(&hi), Some(&lo)) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    }
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// Ethernet II header.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Destination MAC (6 octets)                    |
/// +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                               |                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+      Source MAC (6 octets)    +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          EtherType            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EthernetHeader {
    /// Destination MAC.
    pub destination: MacAddr,
    /// Source MAC.
    pub source: MacAddr,
    /// EtherType.
    pub ether_type: u16,
}

impl EthernetHeader {
    /// Header length.
    pub const LEN: usize = 14;

    /// Decodes the header and returns the payload after it.
    pub fn decode(buf: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let (head, rest) = take(buf, Self::LEN, Layer::Ethernet)?;
        Ok((
            Self {
                destination: MacAddr(array(head, 0)),
                source: MacAddr(array(head, 6)),
                ether_type: be16(head, 12),
            },
            rest,
        ))
    }

    /// Appends the header.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.destination.0);
        buf.put_slice(&self.source.0);
        buf.put_u16(self.ether_type);
    }
}

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArpOperation {
    /// 1: who-has.
    Request,
    /// 2: is-at.
    Reply,
}

/// An ARP packet for Ethernet and IPv4 (RFC 826).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Hardware type = 1           |   Protocol type = 0x0800      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  HLEN = 6     |  PLEN = 4     |   Operation (1 req, 2 reply)  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Sender hardware address (6) | Sender protocol address (4)    |
/// |  Target hardware address (6) | Target protocol address (4)    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArpPacket {
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub sender_mac: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    /// Body length for Ethernet/IPv4.
    pub const LEN: usize = 28;

    /// Decodes an ARP body (trailing padding is ignored).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (body, _padding) = take(buf, Self::LEN, Layer::Arp)?;
        let hardware_type = be16(body, 0);
        if hardware_type != 1 {
            return Err(DecodeError::ArpHardwareType(hardware_type));
        }
        let protocol_type = be16(body, 2);
        if protocol_type != 0x0800 {
            return Err(DecodeError::ArpProtocolType(protocol_type));
        }
        let (hardware, protocol) = (array::<1>(body, 4)[0], array::<1>(body, 5)[0]);
        if hardware != 6 || protocol != 4 {
            return Err(DecodeError::ArpAddressLengths { hardware, protocol });
        }
        let operation = match be16(body, 6) {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => return Err(DecodeError::ArpOperation(other)),
        };
        Ok(Self {
            operation,
            sender_mac: MacAddr(array(body, 8)),
            sender_ip: Ipv4Addr::from(array::<4>(body, 14)),
            target_mac: MacAddr(array(body, 18)),
            target_ip: Ipv4Addr::from(array::<4>(body, 24)),
        })
    }

    /// Appends the body.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u16(1);
        buf.put_u16(0x0800);
        buf.put_u8(6);
        buf.put_u8(4);
        buf.put_u16(match self.operation {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
        });
        buf.put_slice(&self.sender_mac.0);
        buf.put_slice(&self.sender_ip.octets());
        buf.put_slice(&self.target_mac.0);
        buf.put_slice(&self.target_ip.octets());
    }
}

/// The fixed IPv6 header (RFC 8200 §3), as far as NDP needs it.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Traffic Class |           Flow Label                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Payload Length        |  Next Header  |   Hop Limit   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Source Address (16)                        |
/// |                 Destination Address (16)                      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Header {
    /// Next header (58 for ICMPv6).
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source address.
    pub source: Ipv6Addr,
    /// Destination address.
    pub destination: Ipv6Addr,
}

impl Ipv6Header {
    /// Header length.
    pub const LEN: usize = 40;

    /// Decodes the header and returns exactly the payload (link-layer padding dropped).
    pub fn decode(buf: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let (head, rest) = take(buf, Self::LEN, Layer::Ipv6)?;
        let version = array::<1>(head, 0)[0] >> 4;
        if version != 6 {
            return Err(DecodeError::Ipv6Version(version));
        }
        let declared = be16(head, 4);
        let payload = rest
            .get(..usize::from(declared))
            .ok_or(DecodeError::Ipv6PayloadLength {
                declared,
                available: rest.len(),
            })?;
        Ok((
            Self {
                next_header: array::<1>(head, 6)[0],
                hop_limit: array::<1>(head, 7)[0],
                source: Ipv6Addr::from(array::<16>(head, 8)),
                destination: Ipv6Addr::from(array::<16>(head, 24)),
            },
            payload,
        ))
    }

    /// Appends the header for a payload of `payload_len` bytes.
    pub fn encode(&self, payload_len: u16, buf: &mut BytesMut) {
        buf.put_u32(0x6000_0000);
        buf.put_u16(payload_len);
        buf.put_u8(self.next_header);
        buf.put_u8(self.hop_limit);
        buf.put_slice(&self.source.octets());
        buf.put_slice(&self.destination.octets());
    }
}

/// The NDP options we understand; others are skipped (RFC 4861 §4.6 says to ignore them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NdpOptions {
    /// Source Link-Layer Address (type 1).
    pub source_lla: Option<MacAddr>,
    /// Target Link-Layer Address (type 2).
    pub target_lla: Option<MacAddr>,
}

/// NDP option type of the Source Link-Layer Address.
pub const NDP_OPTION_SOURCE_LLA: u8 = 1;
/// NDP option type of the Target Link-Layer Address.
pub const NDP_OPTION_TARGET_LLA: u8 = 2;

impl NdpOptions {
    /// Decodes the option list that fills `buf`.
    ///
    /// ```text
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |     Type      |    Length     |    Link-Layer Address ...     |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    /// `Length` counts units of 8 bytes, including the type and length bytes.
    pub fn decode(mut buf: &[u8]) -> Result<Self, DecodeError> {
        let mut options = Self::default();
        // Each iteration consumes at least 8 bytes, so the loop is bounded by the buffer.
        while !buf.is_empty() {
            let (head, _) = take(buf, 2, Layer::NdpOption)?;
            let option_type = array::<1>(head, 0)[0];
            let len = usize::from(array::<1>(head, 1)[0]) * 8;
            if len == 0 {
                return Err(DecodeError::NdpOptionZeroLength(option_type));
            }
            let (option, rest) = take(buf, len, Layer::NdpOption)?;
            buf = rest;
            let slot = match option_type {
                NDP_OPTION_SOURCE_LLA => &mut options.source_lla,
                NDP_OPTION_TARGET_LLA => &mut options.target_lla,
                _ => continue,
            };
            if len != 8 {
                return Err(DecodeError::NdpLinkLayerOptionLength { option_type, len });
            }
            // RFC 4861 does not say which of two copies wins; the first one is kept.
            if slot.is_none() {
                *slot = Some(MacAddr(array(option, 2)));
            }
        }
        Ok(options)
    }

    /// Appends the options.
    pub fn encode(&self, buf: &mut BytesMut) {
        for (option_type, mac) in [
            (NDP_OPTION_SOURCE_LLA, self.source_lla),
            (NDP_OPTION_TARGET_LLA, self.target_lla),
        ] {
            if let Some(mac) = mac {
                buf.put_u8(option_type);
                buf.put_u8(1);
                buf.put_slice(&mac.0);
            }
        }
    }

    fn encoded_len(&self) -> usize {
        8 * (usize::from(self.source_lla.is_some()) + usize::from(self.target_lla.is_some()))
    }
}

/// A Neighbor Solicitation or Advertisement (the ICMPv6 body).
///
/// ```text
/// NS (type 135)                            NA (type 136)
/// +-------+-------+---------------+        +-------+-------+---------------+
/// | Type  | Code  |   Checksum    |        | Type  | Code  |   Checksum    |
/// +-------+-------+---------------+        +-+-+-+---------+---------------+
/// |          Reserved             |        |R|S|O|    Reserved             |
/// +-------------------------------+        +-+-+-+-------------------------+
/// |     Target Address (16)       |        |     Target Address (16)       |
/// +-------------------------------+        +-------------------------------+
/// |   Options ...                          |   Options ...
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NdpMessage {
    /// Neighbor Solicitation.
    Solicitation {
        /// Address being resolved.
        target: Ipv6Addr,
        /// Options.
        options: NdpOptions,
    },
    /// Neighbor Advertisement.
    Advertisement {
        /// R: sender is a router.
        router: bool,
        /// S: sent in response to a solicitation.
        solicited: bool,
        /// O: override an existing cache entry.
        override_entry: bool,
        /// Address being advertised.
        target: Ipv6Addr,
        /// Options.
        options: NdpOptions,
    },
}

impl NdpMessage {
    /// ICMPv6 header + reserved/flags + target.
    pub const MIN_LEN: usize = 24;

    /// The target address.
    pub fn target(&self) -> Ipv6Addr {
        match self {
            Self::Solicitation { target, .. } | Self::Advertisement { target, .. } => *target,
        }
    }

    /// Decodes an ICMPv6 NS or NA, checking the rules of RFC 4861 §7.1 that do not need state.
    pub fn decode(ip: &Ipv6Header, buf: &[u8]) -> Result<Self, DecodeError> {
        if ip.next_header != NEXT_HEADER_ICMPV6 {
            return Err(DecodeError::NotIcmpv6(ip.next_header));
        }
        let (head, _) = take(buf, 4, Layer::Icmpv6)?;
        let icmp_type = array::<1>(head, 0)[0];
        if icmp_type != ICMPV6_NEIGHBOR_SOLICITATION && icmp_type != ICMPV6_NEIGHBOR_ADVERTISEMENT {
            return Err(DecodeError::NotNdp(icmp_type));
        }
        let (fixed, options) = take(buf, Self::MIN_LEN, Layer::Icmpv6)?;
        if ip.hop_limit != NDP_HOP_LIMIT {
            return Err(DecodeError::NdpHopLimit(ip.hop_limit));
        }
        let code = array::<1>(fixed, 1)[0];
        if code != 0 {
            return Err(DecodeError::NdpCode(code));
        }
        let found = be16(fixed, 2);
        let computed = icmpv6_checksum(ip.source, ip.destination, buf);
        // A correct checksum field makes the sum over the whole message (checksum included)
        // come out as 0; `computed` is what the field would be with the field itself zeroed.
        if computed != 0 {
            let expected = icmpv6_checksum_with_zeroed_field(ip.source, ip.destination, buf);
            return Err(DecodeError::Icmpv6Checksum {
                found,
                computed: expected,
            });
        }
        let target = Ipv6Addr::from(array::<16>(fixed, 8));
        if target.is_multicast() {
            return Err(DecodeError::NdpTargetMulticast(target));
        }
        let options = NdpOptions::decode(options)?;
        if icmp_type == ICMPV6_NEIGHBOR_SOLICITATION {
            if ip.source.is_unspecified() && options.source_lla.is_some() {
                return Err(DecodeError::NdpDadWithSourceLla);
            }
            return Ok(Self::Solicitation { target, options });
        }
        let flags = array::<1>(fixed, 4)[0];
        Ok(Self::Advertisement {
            router: flags & 0x80 != 0,
            solicited: flags & 0x40 != 0,
            override_entry: flags & 0x20 != 0,
            target,
            options,
        })
    }

    /// Encoded length of the ICMPv6 message.
    pub fn encoded_len(&self) -> usize {
        let options = match self {
            Self::Solicitation { options, .. } | Self::Advertisement { options, .. } => options,
        };
        Self::MIN_LEN + options.encoded_len()
    }

    /// Appends the ICMPv6 message with its checksum computed for `source` → `destination`.
    pub fn encode(&self, source: Ipv6Addr, destination: Ipv6Addr, buf: &mut BytesMut) {
        let start = buf.len();
        let (icmp_type, flags, target, options) = match *self {
            Self::Solicitation { target, options } => {
                (ICMPV6_NEIGHBOR_SOLICITATION, 0, target, options)
            }
            Self::Advertisement {
                router,
                solicited,
                override_entry,
                target,
                options,
            } => (
                ICMPV6_NEIGHBOR_ADVERTISEMENT,
                (u8::from(router) << 7)
                    | (u8::from(solicited) << 6)
                    | (u8::from(override_entry) << 5),
                target,
                options,
            ),
        };
        buf.put_u8(icmp_type);
        buf.put_u8(0);
        buf.put_u16(0); // checksum, back-patched below
        buf.put_u8(flags);
        buf.put_slice(&[0, 0, 0]);
        buf.put_slice(&target.octets());
        options.encode(buf);
        let checksum = icmpv6_checksum(source, destination, buf.get(start..).unwrap_or_default());
        if let Some(field) = buf.get_mut(start + 2..start + 4) {
            field.copy_from_slice(&checksum.to_be_bytes());
        }
    }
}

/// One's-complement checksum over the IPv6 pseudo-header and `message` as it is.
///
/// Returns 0 for a message whose checksum field is correct.
pub fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        let mut chunks = bytes.chunks_exact(2);
        for pair in &mut chunks {
            sum += u64::from(be16(pair, 0));
        }
        if let [last] = chunks.remainder() {
            sum += u64::from(*last) << 8;
        }
    };
    add(&source.octets());
    add(&destination.octets());
    // Upper-layer length (32 bits) then three zero bytes and the next header.
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    add(&len.to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Invariant: the loop above folded `sum` into 16 bits.
    !(sum as u16)
}

fn icmpv6_checksum_with_zeroed_field(
    source: Ipv6Addr,
    destination: Ipv6Addr,
    message: &[u8],
) -> u16 {
    let mut copy = message.to_vec();
    if let Some(field) = copy.get_mut(2..4) {
        field.copy_from_slice(&[0, 0]);
    }
    icmpv6_checksum(source, destination, &copy)
}

/// A decoded frame the layer-2 responder cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Ethernet + ARP.
    Arp {
        /// Ethernet header.
        ethernet: EthernetHeader,
        /// ARP body.
        arp: ArpPacket,
    },
    /// Ethernet + IPv6 + ICMPv6 NS/NA.
    Ndp {
        /// Ethernet header.
        ethernet: EthernetHeader,
        /// IPv6 header.
        ip: Ipv6Header,
        /// NS or NA.
        message: NdpMessage,
    },
}

impl Frame {
    /// Decodes an Ethernet frame carrying ARP or NDP.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (ethernet, payload) = EthernetHeader::decode(buf)?;
        match ethernet.ether_type {
            ETHER_TYPE_ARP => Ok(Self::Arp {
                ethernet,
                arp: ArpPacket::decode(payload)?,
            }),
            ETHER_TYPE_IPV6 => {
                let (ip, payload) = Ipv6Header::decode(payload)?;
                let message = NdpMessage::decode(&ip, payload)?;
                Ok(Self::Ndp {
                    ethernet,
                    ip,
                    message,
                })
            }
            other => Err(DecodeError::OtherEtherType(other)),
        }
    }

    /// Appends the whole frame, padded to the Ethernet minimum.
    pub fn encode(&self, buf: &mut BytesMut) {
        let start = buf.len();
        match self {
            Self::Arp { ethernet, arp } => {
                ethernet.encode(buf);
                arp.encode(buf);
            }
            Self::Ndp {
                ethernet,
                ip,
                message,
            } => {
                ethernet.encode(buf);
                let len = u16::try_from(message.encoded_len()).unwrap_or(u16::MAX);
                ip.encode(len, buf);
                message.encode(ip.source, ip.destination, buf);
            }
        }
        let written = buf.len() - start;
        if written < ETHERNET_MIN_FRAME_LEN {
            buf.put_bytes(0, ETHERNET_MIN_FRAME_LEN - written);
        }
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self) -> BytesMut {
        let mut buf = BytesMut::with_capacity(96);
        self.encode(&mut buf);
        buf
    }

    /// The Ethernet header.
    pub fn ethernet(&self) -> &EthernetHeader {
        match self {
            Self::Arp { ethernet, .. } | Self::Ndp { ethernet, .. } => ethernet,
        }
    }
}

/// The solicited-node multicast group of `address` (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX.
pub fn solicited_node_group(address: Ipv6Addr) -> Ipv6Addr {
    let o = address.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// All-nodes multicast ff02::1.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The two gratuitous ARP frames MetalLB sends per burst: a request and a reply, both with
/// sender = target = `ip`, target hardware = broadcast, to ff:ff:ff:ff:ff:ff.
pub fn gratuitous_arp(mac: MacAddr, ip: Ipv4Addr) -> [Frame; 2] {
    let ethernet = EthernetHeader {
        destination: MacAddr::BROADCAST,
        source: mac,
        ether_type: ETHER_TYPE_ARP,
    };
    let arp = |operation| ArpPacket {
        operation,
        sender_mac: mac,
        sender_ip: ip,
        target_mac: MacAddr::BROADCAST,
        target_ip: ip,
    };
    [
        Frame::Arp {
            ethernet,
            arp: arp(ArpOperation::Request),
        },
        Frame::Arp {
            ethernet,
            arp: arp(ArpOperation::Reply),
        },
    ]
}

/// An unsolicited NA for `target` to ff02::1 with Override=1, Solicited=0 and our MAC as the
/// target link-layer address. `source` is the interface's link-local address when it has one.
pub fn unsolicited_advertisement(mac: MacAddr, source: Ipv6Addr, target: Ipv6Addr) -> Frame {
    Frame::Ndp {
        ethernet: EthernetHeader {
            destination: MacAddr::ipv6_multicast(ALL_NODES),
            source: mac,
            ether_type: ETHER_TYPE_IPV6,
        },
        ip: Ipv6Header {
            next_header: NEXT_HEADER_ICMPV6,
            hop_limit: NDP_HOP_LIMIT,
            source,
            destination: ALL_NODES,
        },
        message: NdpMessage::Advertisement {
            router: false,
            solicited: false,
            override_entry: true,
            target,
            options: NdpOptions {
                source_lla: None,
                target_lla: Some(mac),
            },
        },
    }
}
