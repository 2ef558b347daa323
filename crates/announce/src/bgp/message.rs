//! BGP-4 messages (RFC 4271) with the extensions ironlb speaks: capabilities (RFC 5492),
//! multiprotocol IPv4/IPv6 unicast (RFC 4760), 4-octet AS numbers (RFC 6793), graceful restart
//! (RFC 4724), route refresh (RFC 2918), communities (RFC 1997) and large communities (RFC 8092).
//!
//! Pure `encode` / `decode` over `bytes`. Every decode failure is a [`DecodeError`] named after
//! the RFC error subcode it maps to, and `Notification::from(error)` is the NOTIFICATION the RFC
//! prescribes for it. Nothing here panics on wire input: every read is bounds-checked.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// Length of the fixed header: marker (16), length (2), type (1).
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended-message capability (RFC 8654), which ironlb never sends.
pub const MESSAGE_LEN_MAX: usize = 4096;
/// The 2-octet stand-in for a 4-octet ASN (RFC 6793).
pub const AS_TRANS: u16 = 23456;
/// Smallest OPEN: header, version, my AS, hold time, identifier, optional parameters length.
const OPEN_LEN_MIN: usize = HEADER_LEN + 10;
/// Smallest UPDATE: header plus both 2-octet length fields.
const UPDATE_LEN_MIN: usize = HEADER_LEN + 4;
/// Smallest NOTIFICATION: header, code and subcode.
const NOTIFICATION_LEN_MIN: usize = HEADER_LEN + 2;
/// ROUTE-REFRESH: header, AFI, reserved, SAFI.
const ROUTE_REFRESH_LEN: usize = HEADER_LEN + 4;

const TYPE_OPEN: u8 = 1;
const TYPE_UPDATE: u8 = 2;
const TYPE_NOTIFICATION: u8 = 3;
const TYPE_KEEPALIVE: u8 = 4;
const TYPE_ROUTE_REFRESH: u8 = 5;

const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_PARTIAL: u8 = 0x20;
const FLAG_EXTENDED_LENGTH: u8 = 0x10;

const ATTR_ORIGIN: u8 = 1;
const ATTR_AS_PATH: u8 = 2;
const ATTR_NEXT_HOP: u8 = 3;
const ATTR_MULTI_EXIT_DISC: u8 = 4;
const ATTR_LOCAL_PREF: u8 = 5;
const ATTR_ATOMIC_AGGREGATE: u8 = 6;
const ATTR_COMMUNITIES: u8 = 8;
const ATTR_MP_REACH_NLRI: u8 = 14;
const ATTR_MP_UNREACH_NLRI: u8 = 15;
const ATTR_AS4_PATH: u8 = 17;
const ATTR_LARGE_COMMUNITIES: u8 = 32;

const AFI_IPV4: u16 = 1;
const AFI_IPV6: u16 = 2;
const SAFI_UNICAST: u8 = 1;

const CAPABILITY_MULTIPROTOCOL: u8 = 1;
const CAPABILITY_ROUTE_REFRESH: u8 = 2;
const CAPABILITY_GRACEFUL_RESTART: u8 = 64;
const CAPABILITY_FOUR_OCTET_ASN: u8 = 65;
const OPTIONAL_PARAMETER_CAPABILITIES: u8 = 2;

/// How the peer encodes AS numbers in AS_PATH: negotiated from both OPENs (RFC 6793).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecContext {
    /// Both sides advertised the 4-octet ASN capability.
    pub four_octet_asn: bool,
}

/// The address families ironlb speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    /// AFI 1, SAFI 1.
    Ipv4Unicast,
    /// AFI 2, SAFI 1.
    Ipv6Unicast,
}

impl Family {
    /// Both families, in a fixed order.
    pub const ALL: [Self; 2] = [Self::Ipv4Unicast, Self::Ipv6Unicast];

    /// The (AFI, SAFI) pair on the wire.
    pub fn afi_safi(self) -> (u16, u8) {
        match self {
            Self::Ipv4Unicast => (AFI_IPV4, SAFI_UNICAST),
            Self::Ipv6Unicast => (AFI_IPV6, SAFI_UNICAST),
        }
    }

    /// The family of an (AFI, SAFI) pair, if ironlb knows it.
    pub fn from_afi_safi(afi: u16, safi: u8) -> Option<Self> {
        match (afi, safi) {
            (AFI_IPV4, SAFI_UNICAST) => Some(Self::Ipv4Unicast),
            (AFI_IPV6, SAFI_UNICAST) => Some(Self::Ipv6Unicast),
            _ => None,
        }
    }

    /// The family a prefix belongs to.
    pub fn of(prefix: &IpNet) -> Self {
        match prefix {
            IpNet::V4(_) => Self::Ipv4Unicast,
            IpNet::V6(_) => Self::Ipv6Unicast,
        }
    }
}

/// A message could not be decoded. Each variant is named after the NOTIFICATION error code and
/// subcode (RFC 4271 §4.5, §6) that answers it; see `From<DecodeError> for Notification`.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Message Header Error / Connection Not Synchronized: the marker is not all ones.
    #[error("message header error: connection not synchronized (bad marker)")]
    ConnectionNotSynchronized,
    /// Message Header Error / Bad Message Length.
    #[error("message header error: bad message length {length}")]
    BadMessageLength {
        /// The length field of the header.
        length: u16,
    },
    /// Message Header Error / Bad Message Type.
    #[error("message header error: bad message type {message_type}")]
    BadMessageType {
        /// The type field of the header.
        message_type: u8,
    },
    /// OPEN Message Error without a specific subcode: a truncated optional parameter or
    /// capability.
    #[error("open message error: malformed optional parameters")]
    MalformedOpen,
    /// OPEN Message Error / Unsupported Version Number.
    #[error("open message error: unsupported version number {version}")]
    UnsupportedVersionNumber {
        /// The version the peer sent.
        version: u8,
    },
    /// OPEN Message Error / Bad BGP Identifier (zero).
    #[error("open message error: bad BGP identifier")]
    BadBgpIdentifier,
    /// OPEN Message Error / Unsupported Optional Parameter.
    #[error("open message error: unsupported optional parameter {parameter_type}")]
    UnsupportedOptionalParameter {
        /// The optional parameter type.
        parameter_type: u8,
    },
    /// OPEN Message Error / Unacceptable Hold Time (1 or 2 seconds).
    #[error("open message error: unacceptable hold time {hold_time_secs} s")]
    UnacceptableHoldTime {
        /// The hold time the peer proposed.
        hold_time_secs: u16,
    },
    /// UPDATE Message Error / Malformed Attribute List.
    #[error("update message error: malformed attribute list")]
    MalformedAttributeList,
    /// UPDATE Message Error / Unrecognized Well-known Attribute.
    #[error("update message error: unrecognized well-known attribute {type_code}")]
    UnrecognizedWellKnownAttribute {
        /// The attribute type code.
        type_code: u8,
        /// The whole attribute (flags, type, length, value), the NOTIFICATION data.
        attribute: Vec<u8>,
    },
    /// UPDATE Message Error / Missing Well-known Attribute.
    #[error("update message error: missing well-known attribute {type_code}")]
    MissingWellKnownAttribute {
        /// The type code of the missing attribute.
        type_code: u8,
    },
    /// UPDATE Message Error / Attribute Flags Error.
    #[error("update message error: attribute flags error on attribute {type_code}")]
    AttributeFlagsError {
        /// The attribute type code.
        type_code: u8,
        /// The whole attribute.
        attribute: Vec<u8>,
    },
    /// UPDATE Message Error / Attribute Length Error.
    #[error("update message error: attribute length error on attribute {type_code}")]
    AttributeLengthError {
        /// The attribute type code.
        type_code: u8,
        /// The whole attribute.
        attribute: Vec<u8>,
    },
    /// UPDATE Message Error / Invalid ORIGIN Attribute.
    #[error("update message error: invalid origin {origin}")]
    InvalidOriginAttribute {
        /// The origin value.
        origin: u8,
        /// The whole attribute.
        attribute: Vec<u8>,
    },
    /// UPDATE Message Error / Optional Attribute Error (MP_REACH/MP_UNREACH content).
    #[error("update message error: optional attribute error on attribute {type_code}")]
    OptionalAttributeError {
        /// The attribute type code.
        type_code: u8,
        /// The whole attribute.
        attribute: Vec<u8>,
    },
    /// UPDATE Message Error / Invalid Network Field (withdrawn routes or NLRI).
    #[error("update message error: invalid network field")]
    InvalidNetworkField,
    /// UPDATE Message Error / Malformed AS_PATH.
    #[error("update message error: malformed AS_PATH")]
    MalformedAsPath,
    /// ROUTE-REFRESH Message Error / Invalid Message Length (RFC 7313).
    #[error("route-refresh message error: invalid message length {length}")]
    InvalidRouteRefreshLength {
        /// The length field of the header.
        length: u16,
    },
}

/// NOTIFICATION error codes (RFC 4271 §4.5 and later RFCs).
pub mod error_code {
    /// Message Header Error.
    pub const MESSAGE_HEADER: u8 = 1;
    /// OPEN Message Error.
    pub const OPEN_MESSAGE: u8 = 2;
    /// UPDATE Message Error.
    pub const UPDATE_MESSAGE: u8 = 3;
    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// Cease.
    pub const CEASE: u8 = 6;
    /// ROUTE-REFRESH Message Error (RFC 7313).
    pub const ROUTE_REFRESH_MESSAGE: u8 = 7;
}

/// Cease subcodes (RFC 4486, RFC 9384).
pub mod cease {
    /// Administrative Shutdown.
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    /// Connection Collision Resolution.
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    /// BFD Down (RFC 9384).
    pub const BFD_DOWN: u8 = 10;
}

/// NOTIFICATION message (RFC 4271 §4.5).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Error code    | Error subcode |   Data (variable)             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Error code ([`error_code`]).
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Diagnostic data.
    pub data: Vec<u8>,
}

impl Notification {
    /// A NOTIFICATION without data.
    pub fn new(code: u8, subcode: u8) -> Self {
        Self {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    /// Hold Timer Expired.
    pub fn hold_timer_expired() -> Self {
        Self::new(error_code::HOLD_TIMER_EXPIRED, 0)
    }

    /// OPEN Message Error / Bad Peer AS, with the 2-octet AS the peer sent as data.
    pub fn bad_peer_as(my_as: u16) -> Self {
        Self {
            code: error_code::OPEN_MESSAGE,
            subcode: 2,
            data: my_as.to_be_bytes().to_vec(),
        }
    }

    /// Finite State Machine Error for a message received in the given state (RFC 6608
    /// subcodes: 1 OpenSent, 2 OpenConfirm, 3 Established).
    pub fn fsm_error(subcode: u8) -> Self {
        Self::new(error_code::FSM, subcode)
    }

    /// Cease with a subcode from [`cease`].
    pub fn cease(subcode: u8) -> Self {
        Self::new(error_code::CEASE, subcode)
    }

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u8(self.code);
        buf.put_u8(self.subcode);
        // Invariant: the encoder truncates data so the whole message fits in 4096 bytes.
        let room = MESSAGE_LEN_MAX - NOTIFICATION_LEN_MIN;
        buf.put_slice(&self.data[..self.data.len().min(room)]);
    }

    fn decode_body(body: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(body);
        let code = reader
            .u8()
            .ok_or(DecodeError::BadMessageLength { length: 0 })?;
        let subcode = reader
            .u8()
            .ok_or(DecodeError::BadMessageLength { length: 0 })?;
        Ok(Self {
            code,
            subcode,
            data: reader.rest().to_vec(),
        })
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = match self.code {
            error_code::MESSAGE_HEADER => "message header error",
            error_code::OPEN_MESSAGE => "open message error",
            error_code::UPDATE_MESSAGE => "update message error",
            error_code::HOLD_TIMER_EXPIRED => "hold timer expired",
            error_code::FSM => "finite state machine error",
            error_code::CEASE => "cease",
            error_code::ROUTE_REFRESH_MESSAGE => "route-refresh message error",
            _ => "unknown error",
        };
        write!(f, "{code} ({}/{})", self.code, self.subcode)
    }
}

impl From<DecodeError> for Notification {
    fn from(error: DecodeError) -> Self {
        use error_code::{MESSAGE_HEADER, OPEN_MESSAGE, ROUTE_REFRESH_MESSAGE, UPDATE_MESSAGE};
        let with = |code, subcode, data: Vec<u8>| Self {
            code,
            subcode,
            data,
        };
        match error {
            DecodeError::ConnectionNotSynchronized => with(MESSAGE_HEADER, 1, Vec::new()),
            DecodeError::BadMessageLength { length } => {
                with(MESSAGE_HEADER, 2, length.to_be_bytes().to_vec())
            }
            DecodeError::BadMessageType { message_type } => {
                with(MESSAGE_HEADER, 3, vec![message_type])
            }
            DecodeError::MalformedOpen => with(OPEN_MESSAGE, 0, Vec::new()),
            // The data is the largest version we support (RFC 4271 §6.2).
            DecodeError::UnsupportedVersionNumber { .. } => with(OPEN_MESSAGE, 1, vec![0, 4]),
            DecodeError::BadBgpIdentifier => with(OPEN_MESSAGE, 3, Vec::new()),
            DecodeError::UnsupportedOptionalParameter { .. } => with(OPEN_MESSAGE, 4, Vec::new()),
            DecodeError::UnacceptableHoldTime { .. } => with(OPEN_MESSAGE, 6, Vec::new()),
            DecodeError::MalformedAttributeList => with(UPDATE_MESSAGE, 1, Vec::new()),
            DecodeError::UnrecognizedWellKnownAttribute { attribute, .. } => {
                with(UPDATE_MESSAGE, 2, attribute)
            }
            DecodeError::MissingWellKnownAttribute { type_code } => {
                with(UPDATE_MESSAGE, 3, vec![type_code])
            }
            DecodeError::AttributeFlagsError { attribute, .. } => {
                with(UPDATE_MESSAGE, 4, attribute)
            }
            DecodeError::AttributeLengthError { attribute, .. } => {
                with(UPDATE_MESSAGE, 5, attribute)
            }
            DecodeError::InvalidOriginAttribute { attribute, .. } => {
                with(UPDATE_MESSAGE, 6, attribute)
            }
            DecodeError::OptionalAttributeError { attribute, .. } => {
                with(UPDATE_MESSAGE, 9, attribute)
            }
            DecodeError::InvalidNetworkField => with(UPDATE_MESSAGE, 10, Vec::new()),
            DecodeError::MalformedAsPath => with(UPDATE_MESSAGE, 11, Vec::new()),
            DecodeError::InvalidRouteRefreshLength { length } => {
                with(ROUTE_REFRESH_MESSAGE, 1, length.to_be_bytes().to_vec())
            }
        }
    }
}

/// A BGP message.
// Messages are transient (one decoded at a time, then consumed): boxing UPDATE would cost an
// allocation per message for no memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// OPEN (type 1).
    Open(Open),
    /// UPDATE (type 2).
    Update(Update),
    /// NOTIFICATION (type 3).
    Notification(Notification),
    /// KEEPALIVE (type 4).
    Keepalive,
    /// ROUTE-REFRESH (type 5, RFC 2918).
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// Appends the encoded message (header included) to `buf`.
    ///
    /// ```text
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                     Marker (16 octets of 0xff)                |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |          Length               |      Type     |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    pub fn encode(&self, context: &CodecContext, buf: &mut BytesMut) {
        let start = buf.len();
        buf.put_slice(&[0xff; 16]);
        buf.put_u16(0); // back-patched below
        let message_type = match self {
            Self::Open(_) => TYPE_OPEN,
            Self::Update(_) => TYPE_UPDATE,
            Self::Notification(_) => TYPE_NOTIFICATION,
            Self::Keepalive => TYPE_KEEPALIVE,
            Self::RouteRefresh(_) => TYPE_ROUTE_REFRESH,
        };
        buf.put_u8(message_type);
        match self {
            Self::Open(open) => open.encode_body(buf),
            Self::Update(update) => update.encode_body(context, buf),
            Self::Notification(notification) => notification.encode_body(buf),
            Self::Keepalive => {}
            Self::RouteRefresh(refresh) => refresh.encode_body(buf),
        }
        let length = buf.len() - start;
        // Invariant: callers keep messages within 4096 bytes (the Adj-RIB-Out packs UPDATEs to
        // fit; the other messages are small by construction). Checked in debug builds.
        debug_assert!(
            length <= MESSAGE_LEN_MAX,
            "encoded message of {length} bytes"
        );
        let length_field = u16::try_from(length).unwrap_or(u16::MAX);
        buf[start + 16..start + 18].copy_from_slice(&length_field.to_be_bytes());
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self, context: &CodecContext) -> BytesMut {
        let mut buf = BytesMut::new();
        self.encode(context, &mut buf);
        buf
    }

    /// Takes one message off the front of a TCP stream buffer. `Ok(None)` means not enough bytes
    /// yet (tokio's `Decoder` contract); an error means the stream must be closed with the
    /// matching NOTIFICATION.
    pub fn decode_frame(
        buf: &mut BytesMut,
        context: &CodecContext,
    ) -> Result<Option<Self>, DecodeError> {
        let Some(length) = frame_length(buf)? else {
            return Ok(None);
        };
        if buf.len() < length {
            return Ok(None);
        }
        let frame = buf.split_to(length);
        Self::decode(&frame, context).map(Some)
    }

    /// Decodes exactly one whole message (header included).
    pub fn decode(frame: &[u8], context: &CodecContext) -> Result<Self, DecodeError> {
        let length = frame_length(frame)?.ok_or(DecodeError::BadMessageLength {
            length: u16::try_from(frame.len()).unwrap_or(u16::MAX),
        })?;
        let length_field = u16::try_from(length).unwrap_or(u16::MAX);
        if frame.len() != length {
            return Err(DecodeError::BadMessageLength {
                length: length_field,
            });
        }
        let bad_length = DecodeError::BadMessageLength {
            length: length_field,
        };
        let message_type = frame.get(18).copied().ok_or(bad_length.clone())?;
        let body = frame.get(HEADER_LEN..).ok_or(bad_length.clone())?;
        match message_type {
            TYPE_OPEN if length < OPEN_LEN_MIN => Err(bad_length),
            TYPE_OPEN => Open::decode_body(body).map(Self::Open),
            TYPE_UPDATE if length < UPDATE_LEN_MIN => Err(bad_length),
            TYPE_UPDATE => Update::decode_body(body, context).map(Self::Update),
            TYPE_NOTIFICATION if length < NOTIFICATION_LEN_MIN => Err(bad_length),
            TYPE_NOTIFICATION => Notification::decode_body(body).map(Self::Notification),
            TYPE_KEEPALIVE if length != HEADER_LEN => Err(bad_length),
            TYPE_KEEPALIVE => Ok(Self::Keepalive),
            TYPE_ROUTE_REFRESH if length != ROUTE_REFRESH_LEN => {
                Err(DecodeError::InvalidRouteRefreshLength {
                    length: length_field,
                })
            }
            TYPE_ROUTE_REFRESH => RouteRefresh::decode_body(body).map(Self::RouteRefresh),
            other => Err(DecodeError::BadMessageType {
                message_type: other,
            }),
        }
    }
}

/// Checks the marker and the length field; `Ok(None)` if fewer than 19 bytes are present.
fn frame_length(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header.iter().take(16).any(|byte| *byte != 0xff) {
        return Err(DecodeError::ConnectionNotSynchronized);
    }
    let length = u16::from_be_bytes([header[16], header[17]]);
    if usize::from(length) < HEADER_LEN || usize::from(length) > MESSAGE_LEN_MAX {
        return Err(DecodeError::BadMessageLength { length });
    }
    Ok(Some(usize::from(length)))
}

/// OPEN message (RFC 4271 §4.2), capabilities in optional parameter 2 (RFC 5492).
///
/// ```text
/// +-+-+-+-+-+-+-+-+
/// |    Version    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     My Autonomous System      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Hold Time           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         BGP Identifier                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Opt Parm Len  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |             Optional Parameters (variable)                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    /// The 2-octet AS (AS_TRANS when the real one does not fit).
    pub my_as: u16,
    /// Proposed hold time: 0 or at least 3.
    pub hold_time_secs: u16,
    /// BGP Identifier, non-zero.
    pub bgp_identifier: Ipv4Addr,
    /// Capabilities, in the order they were sent.
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// The sender's real ASN: the 4-octet capability if present, else `my_as`.
    pub fn asn(&self) -> u32 {
        self.four_octet_asn().unwrap_or(u32::from(self.my_as))
    }

    /// The 4-octet ASN capability, if sent.
    pub fn four_octet_asn(&self) -> Option<u32> {
        self.capabilities
            .iter()
            .find_map(|capability| match capability {
                Capability::FourOctetAsn(asn) => Some(*asn),
                _ => None,
            })
    }

    /// The multiprotocol families the sender supports. Without any MP capability, a speaker
    /// supports IPv4 unicast only (RFC 4760 §8).
    pub fn families(&self) -> Vec<Family> {
        let mut families: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|capability| match capability {
                Capability::MultiProtocol { afi, safi } => Family::from_afi_safi(*afi, *safi),
                _ => None,
            })
            .collect();
        if !self
            .capabilities
            .iter()
            .any(|c| matches!(c, Capability::MultiProtocol { .. }))
        {
            families.push(Family::Ipv4Unicast);
        }
        families.sort();
        families.dedup();
        families
    }

    /// The graceful restart capability, if sent.
    pub fn graceful_restart(&self) -> Option<&GracefulRestart> {
        self.capabilities
            .iter()
            .find_map(|capability| match capability {
                Capability::GracefulRestart(restart) => Some(restart),
                _ => None,
            })
    }

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u8(4);
        buf.put_u16(self.my_as);
        buf.put_u16(self.hold_time_secs);
        buf.put_slice(&self.bgp_identifier.octets());
        if self.capabilities.is_empty() {
            buf.put_u8(0);
            return;
        }
        let mut capabilities = BytesMut::new();
        for capability in &self.capabilities {
            capability.encode(&mut capabilities);
        }
        // One optional parameter carries every capability; it must fit in 255 bytes, which the
        // capabilities ironlb sends always do.
        let parameter_len = u8::try_from(capabilities.len()).unwrap_or(u8::MAX);
        buf.put_u8(parameter_len.saturating_add(2));
        buf.put_u8(OPTIONAL_PARAMETER_CAPABILITIES);
        buf.put_u8(parameter_len);
        buf.put_slice(&capabilities[..usize::from(parameter_len)]);
    }

    fn decode_body(body: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(body);
        let truncated = DecodeError::MalformedOpen;
        let version = reader.u8().ok_or(truncated.clone())?;
        if version != 4 {
            return Err(DecodeError::UnsupportedVersionNumber { version });
        }
        let my_as = reader.u16().ok_or(truncated.clone())?;
        let hold_time_secs = reader.u16().ok_or(truncated.clone())?;
        if hold_time_secs == 1 || hold_time_secs == 2 {
            return Err(DecodeError::UnacceptableHoldTime { hold_time_secs });
        }
        let bgp_identifier = Ipv4Addr::from(reader.u32().ok_or(truncated.clone())?);
        if bgp_identifier.is_unspecified() {
            return Err(DecodeError::BadBgpIdentifier);
        }
        let parameters_len = reader.u8().ok_or(truncated.clone())?;
        let parameters = reader
            .take(usize::from(parameters_len))
            .ok_or(truncated.clone())?;
        if !reader.rest().is_empty() {
            return Err(truncated);
        }
        let mut parameters = Reader::new(parameters);
        let mut capabilities = Vec::new();
        while !parameters.rest().is_empty() {
            let parameter_type = parameters.u8().ok_or(truncated.clone())?;
            let length = parameters.u8().ok_or(truncated.clone())?;
            let value = parameters
                .take(usize::from(length))
                .ok_or(truncated.clone())?;
            if parameter_type != OPTIONAL_PARAMETER_CAPABILITIES {
                return Err(DecodeError::UnsupportedOptionalParameter { parameter_type });
            }
            let mut value = Reader::new(value);
            while !value.rest().is_empty() {
                capabilities.push(Capability::decode(&mut value)?);
            }
        }
        Ok(Self {
            my_as,
            hold_time_secs,
            bgp_identifier,
            capabilities,
        })
    }
}

/// A capability (RFC 5492): code, length, value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Capability {
    /// Multiprotocol extensions (code 1, RFC 4760).
    MultiProtocol {
        /// Address family identifier.
        afi: u16,
        /// Subsequent address family identifier.
        safi: u8,
    },
    /// Route refresh (code 2, RFC 2918).
    RouteRefresh,
    /// Graceful restart (code 64, RFC 4724).
    GracefulRestart(GracefulRestart),
    /// 4-octet AS number support, carrying the real ASN (code 65, RFC 6793).
    FourOctetAsn(u32),
    /// Any other capability, kept verbatim.
    Unknown {
        /// Capability code.
        code: u8,
        /// Capability value.
        value: Vec<u8>,
    },
}

impl Capability {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Self::MultiProtocol { afi, safi } => {
                buf.put_slice(&[CAPABILITY_MULTIPROTOCOL, 4]);
                buf.put_u16(*afi);
                buf.put_u8(0);
                buf.put_u8(*safi);
            }
            Self::RouteRefresh => buf.put_slice(&[CAPABILITY_ROUTE_REFRESH, 0]),
            Self::GracefulRestart(restart) => {
                buf.put_u8(CAPABILITY_GRACEFUL_RESTART);
                let length = 2 + 4 * restart.families.len().min(63);
                buf.put_u8(u8::try_from(length).unwrap_or(u8::MAX));
                let mut flags_and_time = restart.restart_time_secs & 0x0fff;
                if restart.restart_state {
                    flags_and_time |= 0x8000;
                }
                if restart.notification {
                    flags_and_time |= 0x4000;
                }
                buf.put_u16(flags_and_time);
                for family in restart.families.iter().take(63) {
                    buf.put_u16(family.afi);
                    buf.put_u8(family.safi);
                    buf.put_u8(if family.forwarding_preserved { 0x80 } else { 0 });
                }
            }
            Self::FourOctetAsn(asn) => {
                buf.put_slice(&[CAPABILITY_FOUR_OCTET_ASN, 4]);
                buf.put_u32(*asn);
            }
            Self::Unknown { code, value } => {
                let length = value.len().min(255);
                buf.put_u8(*code);
                buf.put_u8(u8::try_from(length).unwrap_or(u8::MAX));
                buf.put_slice(&value[..length]);
            }
        }
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let malformed = DecodeError::MalformedOpen;
        let code = reader.u8().ok_or(malformed.clone())?;
        let length = reader.u8().ok_or(malformed.clone())?;
        let value = reader.take(usize::from(length)).ok_or(malformed.clone())?;
        let mut value_reader = Reader::new(value);
        let capability = match code {
            CAPABILITY_MULTIPROTOCOL if length == 4 => {
                let afi = value_reader.u16().ok_or(malformed.clone())?;
                let _reserved = value_reader.u8();
                let safi = value_reader.u8().ok_or(malformed.clone())?;
                Self::MultiProtocol { afi, safi }
            }
            CAPABILITY_ROUTE_REFRESH if length == 0 => Self::RouteRefresh,
            CAPABILITY_GRACEFUL_RESTART if length >= 2 && (length - 2) % 4 == 0 => {
                let flags_and_time = value_reader.u16().ok_or(malformed.clone())?;
                let mut families = Vec::new();
                while !value_reader.rest().is_empty() {
                    let afi = value_reader.u16().ok_or(malformed.clone())?;
                    let safi = value_reader.u8().ok_or(malformed.clone())?;
                    let flags = value_reader.u8().ok_or(malformed.clone())?;
                    families.push(GracefulRestartFamily {
                        afi,
                        safi,
                        forwarding_preserved: flags & 0x80 != 0,
                    });
                }
                Self::GracefulRestart(GracefulRestart {
                    restart_state: flags_and_time & 0x8000 != 0,
                    notification: flags_and_time & 0x4000 != 0,
                    restart_time_secs: flags_and_time & 0x0fff,
                    families,
                })
            }
            CAPABILITY_FOUR_OCTET_ASN if length == 4 => {
                Self::FourOctetAsn(value_reader.u32().ok_or(malformed.clone())?)
            }
            CAPABILITY_MULTIPROTOCOL
            | CAPABILITY_ROUTE_REFRESH
            | CAPABILITY_GRACEFUL_RESTART
            | CAPABILITY_FOUR_OCTET_ASN => return Err(malformed),
            code => Self::Unknown {
                code,
                value: value.to_vec(),
            },
        };
        Ok(capability)
    }
}

/// Graceful restart capability value (RFC 4724 §3; the N bit is RFC 8538).
///
/// ```text
/// +--------------------------------------------------+
/// | Restart Flags (4 bits)                           |
/// +--------------------------------------------------+
/// | Restart Time in seconds (12 bits)                |
/// +--------------------------------------------------+
/// | AFI (16 bits) | SAFI (8 bits) | Flags for AFI (8) |  repeated
/// +--------------------------------------------------+
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GracefulRestart {
    /// R bit: the sender has restarted.
    pub restart_state: bool,
    /// N bit: graceful notification support (RFC 8538).
    pub notification: bool,
    /// Restart time, 12 bits.
    pub restart_time_secs: u16,
    /// Families whose forwarding state the sender preserves across a restart.
    pub families: Vec<GracefulRestartFamily>,
}

/// One family in the graceful restart capability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GracefulRestartFamily {
    /// Address family identifier.
    pub afi: u16,
    /// Subsequent address family identifier.
    pub safi: u8,
    /// F bit: forwarding state preserved.
    pub forwarding_preserved: bool,
}

/// ROUTE-REFRESH message (RFC 2918).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRefresh {
    /// Address family identifier.
    pub afi: u16,
    /// Reserved octet (the subtype of RFC 7313).
    pub subtype: u8,
    /// Subsequent address family identifier.
    pub safi: u8,
}

impl RouteRefresh {
    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u16(self.afi);
        buf.put_u8(self.subtype);
        buf.put_u8(self.safi);
    }

    fn decode_body(body: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(body);
        let error = DecodeError::InvalidRouteRefreshLength {
            length: ROUTE_REFRESH_LEN as u16,
        };
        Ok(Self {
            afi: reader.u16().ok_or(error.clone())?,
            subtype: reader.u8().ok_or(error.clone())?,
            safi: reader.u8().ok_or(error)?,
        })
    }
}

/// ORIGIN attribute value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Origin {
    /// 0.
    Igp,
    /// 1.
    Egp,
    /// 2.
    Incomplete,
}

/// A segment of AS_PATH or AS4_PATH.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AsSegment {
    /// Segment type: 1 AS_SET, 2 AS_SEQUENCE, 3 AS_CONFED_SEQUENCE, 4 AS_CONFED_SET.
    pub segment_type: u8,
    /// 1 to 255 AS numbers.
    pub asns: Vec<u32>,
}

/// AS_SEQUENCE segment type.
pub const AS_SEQUENCE: u8 = 2;

/// A community (RFC 1997): high 16 bits the AS, low 16 bits the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Community(pub u32);

impl Community {
    /// GRACEFUL_SHUTDOWN, 65535:0 (RFC 8326).
    pub const GRACEFUL_SHUTDOWN: Self = Self(0xFFFF_0000);
    /// NO_EXPORT, 65535:65281.
    pub const NO_EXPORT: Self = Self(0xFFFF_FF01);
    /// NO_ADVERTISE, 65535:65282.
    pub const NO_ADVERTISE: Self = Self(0xFFFF_FF02);
    /// NO_EXPORT_SUBCONFED, 65535:65283.
    pub const NO_EXPORT_SUBCONFED: Self = Self(0xFFFF_FF03);
    /// NO_PEER, 65535:65284 (RFC 3765).
    pub const NO_PEER: Self = Self(0xFFFF_FF04);
    /// BLACKHOLE, 65535:666 (RFC 7999).
    pub const BLACKHOLE: Self = Self(0xFFFF_029A);
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

/// A large community (RFC 8092): global administrator, two local data parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LargeCommunity {
    /// Global administrator (an ASN).
    pub global: u32,
    /// Local data part 1.
    pub local1: u32,
    /// Local data part 2.
    pub local2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global, self.local1, self.local2)
    }
}

/// MP_REACH_NLRI (RFC 4760 §3) for a family ironlb knows.
///
/// ```text
/// +---------------------------------------------------------+
/// | Address Family Identifier (2 octets)                    |
/// | Subsequent Address Family Identifier (1 octet)          |
/// | Length of Next Hop Network Address (1 octet)            |
/// | Network Address of Next Hop (variable)                  |
/// | Reserved (1 octet)                                      |
/// | Network Layer Reachability Information (variable)       |
/// +---------------------------------------------------------+
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MpReach {
    /// The family of the next hops and NLRI.
    pub family: Family,
    /// One next hop, or for IPv6 a global and a link-local one.
    pub next_hops: Vec<IpAddr>,
    /// Reachable prefixes.
    pub nlri: Vec<IpNet>,
}

/// MP_UNREACH_NLRI (RFC 4760 §4) for a family ironlb knows. Empty `withdrawn` is End-of-RIB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MpUnreach {
    /// The family of the withdrawn prefixes.
    pub family: Family,
    /// Withdrawn prefixes.
    pub withdrawn: Vec<IpNet>,
}

/// A path attribute ironlb does not interpret, kept verbatim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawAttribute {
    /// Attribute flags (the extended-length bit is recomputed on encode).
    pub flags: u8,
    /// Attribute type code.
    pub type_code: u8,
    /// Attribute value.
    pub value: Vec<u8>,
}

/// The path attributes of an UPDATE.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathAttributes {
    /// ORIGIN (type 1, well-known mandatory).
    pub origin: Option<Origin>,
    /// AS_PATH (type 2, well-known mandatory), in the negotiated ASN width.
    pub as_path: Option<Vec<AsSegment>>,
    /// NEXT_HOP (type 3, well-known, mandatory with IPv4 NLRI).
    pub next_hop: Option<Ipv4Addr>,
    /// MULTI_EXIT_DISC (type 4).
    pub multi_exit_disc: Option<u32>,
    /// LOCAL_PREF (type 5, iBGP only).
    pub local_pref: Option<u32>,
    /// ATOMIC_AGGREGATE (type 6).
    pub atomic_aggregate: bool,
    /// COMMUNITIES (type 8); `None` when absent.
    pub communities: Option<Vec<Community>>,
    /// MP_REACH_NLRI (type 14).
    pub mp_reach: Option<MpReach>,
    /// MP_UNREACH_NLRI (type 15).
    pub mp_unreach: Option<MpUnreach>,
    /// AS4_PATH (type 17), always 4-octet.
    pub as4_path: Option<Vec<AsSegment>>,
    /// LARGE_COMMUNITY (type 32); `None` when absent.
    pub large_communities: Option<Vec<LargeCommunity>>,
    /// Attributes not interpreted (AGGREGATOR, ORIGINATOR_ID …), in received order.
    pub other: Vec<RawAttribute>,
}

/// UPDATE message (RFC 4271 §4.3).
///
/// ```text
/// +-----------------------------------------------------+
/// |   Withdrawn Routes Length (2 octets)                |
/// |   Withdrawn Routes (variable)                       |
/// |   Total Path Attribute Length (2 octets)            |
/// |   Path Attributes (variable)                        |
/// |   Network Layer Reachability Information (variable) |
/// +-----------------------------------------------------+
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// Withdrawn IPv4 prefixes.
    pub withdrawn: Vec<Ipv4Net>,
    /// Path attributes.
    pub attributes: PathAttributes,
    /// Reachable IPv4 prefixes.
    pub nlri: Vec<Ipv4Net>,
}

impl Update {
    /// The End-of-RIB marker for a family (RFC 4724 §2).
    pub fn end_of_rib(family: Family) -> Self {
        match family {
            Family::Ipv4Unicast => Self::default(),
            Family::Ipv6Unicast => Self {
                attributes: PathAttributes {
                    mp_unreach: Some(MpUnreach {
                        family,
                        withdrawn: Vec::new(),
                    }),
                    ..PathAttributes::default()
                },
                ..Self::default()
            },
        }
    }

    /// The family this UPDATE is End-of-RIB for, if it is one.
    pub fn is_end_of_rib(&self) -> Option<Family> {
        if *self == Self::end_of_rib(Family::Ipv4Unicast) {
            return Some(Family::Ipv4Unicast);
        }
        if *self == Self::end_of_rib(Family::Ipv6Unicast) {
            return Some(Family::Ipv6Unicast);
        }
        None
    }

    fn encode_body(&self, context: &CodecContext, buf: &mut BytesMut) {
        let withdrawn_start = buf.len();
        buf.put_u16(0);
        for prefix in &self.withdrawn {
            encode_prefix(&IpNet::V4(*prefix), buf);
        }
        back_patch_u16(buf, withdrawn_start);
        let attributes_start = buf.len();
        buf.put_u16(0);
        self.attributes.encode(context, buf);
        back_patch_u16(buf, attributes_start);
        for prefix in &self.nlri {
            encode_prefix(&IpNet::V4(*prefix), buf);
        }
    }

    fn decode_body(body: &[u8], context: &CodecContext) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(body);
        let withdrawn_len = reader.u16().ok_or(DecodeError::MalformedAttributeList)?;
        let withdrawn = reader
            .take(usize::from(withdrawn_len))
            .ok_or(DecodeError::MalformedAttributeList)?;
        let withdrawn = decode_prefixes(withdrawn, Family::Ipv4Unicast)
            .ok_or(DecodeError::InvalidNetworkField)?;
        let attributes_len = reader.u16().ok_or(DecodeError::MalformedAttributeList)?;
        let attributes = reader
            .take(usize::from(attributes_len))
            .ok_or(DecodeError::MalformedAttributeList)?;
        let attributes = PathAttributes::decode(attributes, context)?;
        let nlri = decode_prefixes(reader.rest(), Family::Ipv4Unicast)
            .ok_or(DecodeError::InvalidNetworkField)?;
        let only_v4 = |prefixes: Vec<IpNet>| -> Vec<Ipv4Net> {
            prefixes
                .into_iter()
                .filter_map(|prefix| match prefix {
                    IpNet::V4(prefix) => Some(prefix),
                    IpNet::V6(_) => None,
                })
                .collect()
        };
        let update = Self {
            withdrawn: only_v4(withdrawn),
            attributes,
            nlri: only_v4(nlri),
        };
        update.check_mandatory()?;
        Ok(update)
    }

    /// RFC 4271 §6.3: an UPDATE that carries reachability must carry ORIGIN, AS_PATH and (for
    /// IPv4 NLRI) NEXT_HOP.
    fn check_mandatory(&self) -> Result<(), DecodeError> {
        let reaches = !self.nlri.is_empty() || self.attributes.mp_reach.is_some();
        if !reaches {
            return Ok(());
        }
        let missing = |type_code| Err(DecodeError::MissingWellKnownAttribute { type_code });
        if self.attributes.origin.is_none() {
            return missing(ATTR_ORIGIN);
        }
        if self.attributes.as_path.is_none() {
            return missing(ATTR_AS_PATH);
        }
        if !self.nlri.is_empty() && self.attributes.next_hop.is_none() {
            return missing(ATTR_NEXT_HOP);
        }
        Ok(())
    }
}

impl PathAttributes {
    fn encode(&self, context: &CodecContext, buf: &mut BytesMut) {
        const WELL_KNOWN: u8 = FLAG_TRANSITIVE;
        const OPTIONAL_TRANSITIVE: u8 = FLAG_OPTIONAL | FLAG_TRANSITIVE;
        if let Some(origin) = self.origin {
            let value = match origin {
                Origin::Igp => 0,
                Origin::Egp => 1,
                Origin::Incomplete => 2,
            };
            encode_attribute(buf, WELL_KNOWN, ATTR_ORIGIN, &[value]);
        }
        if let Some(path) = &self.as_path {
            let mut value = BytesMut::new();
            encode_as_path(path, context.four_octet_asn, &mut value);
            encode_attribute(buf, WELL_KNOWN, ATTR_AS_PATH, &value);
        }
        if let Some(next_hop) = self.next_hop {
            encode_attribute(buf, WELL_KNOWN, ATTR_NEXT_HOP, &next_hop.octets());
        }
        if let Some(med) = self.multi_exit_disc {
            encode_attribute(buf, FLAG_OPTIONAL, ATTR_MULTI_EXIT_DISC, &med.to_be_bytes());
        }
        if let Some(local_pref) = self.local_pref {
            encode_attribute(buf, WELL_KNOWN, ATTR_LOCAL_PREF, &local_pref.to_be_bytes());
        }
        if self.atomic_aggregate {
            encode_attribute(buf, WELL_KNOWN, ATTR_ATOMIC_AGGREGATE, &[]);
        }
        if let Some(communities) = &self.communities {
            let value: Vec<u8> = communities.iter().flat_map(|c| c.0.to_be_bytes()).collect();
            encode_attribute(buf, OPTIONAL_TRANSITIVE, ATTR_COMMUNITIES, &value);
        }
        if let Some(reach) = &self.mp_reach {
            let mut value = BytesMut::new();
            let (afi, safi) = reach.family.afi_safi();
            value.put_u16(afi);
            value.put_u8(safi);
            let next_hop_start = value.len();
            value.put_u8(0);
            for next_hop in &reach.next_hops {
                match next_hop {
                    IpAddr::V4(address) => value.put_slice(&address.octets()),
                    IpAddr::V6(address) => value.put_slice(&address.octets()),
                }
            }
            let next_hop_len = value.len() - next_hop_start - 1;
            value[next_hop_start] = u8::try_from(next_hop_len).unwrap_or(u8::MAX);
            value.put_u8(0); // reserved
            for prefix in &reach.nlri {
                encode_prefix(prefix, &mut value);
            }
            encode_attribute(buf, FLAG_OPTIONAL, ATTR_MP_REACH_NLRI, &value);
        }
        if let Some(unreach) = &self.mp_unreach {
            let mut value = BytesMut::new();
            let (afi, safi) = unreach.family.afi_safi();
            value.put_u16(afi);
            value.put_u8(safi);
            for prefix in &unreach.withdrawn {
                encode_prefix(prefix, &mut value);
            }
            encode_attribute(buf, FLAG_OPTIONAL, ATTR_MP_UNREACH_NLRI, &value);
        }
        if let Some(path) = &self.as4_path {
            let mut value = BytesMut::new();
            encode_as_path(path, true, &mut value);
            encode_attribute(buf, OPTIONAL_TRANSITIVE, ATTR_AS4_PATH, &value);
        }
        if let Some(large) = &self.large_communities {
            let value: Vec<u8> = large
                .iter()
                .flat_map(|c| [c.global, c.local1, c.local2])
                .flat_map(u32::to_be_bytes)
                .collect();
            encode_attribute(buf, OPTIONAL_TRANSITIVE, ATTR_LARGE_COMMUNITIES, &value);
        }
        for raw in &self.other {
            encode_attribute(buf, raw.flags, raw.type_code, &raw.value);
        }
    }

    fn decode(bytes: &[u8], context: &CodecContext) -> Result<Self, DecodeError> {
        let mut attributes = Self::default();
        let mut reader = Reader::new(bytes);
        let mut seen = [false; 256];
        while !reader.rest().is_empty() {
            let attribute_start = reader.rest();
            let flags = reader.u8().ok_or(DecodeError::MalformedAttributeList)?;
            let type_code = reader.u8().ok_or(DecodeError::MalformedAttributeList)?;
            let length = if flags & FLAG_EXTENDED_LENGTH != 0 {
                reader.u16().map(usize::from)
            } else {
                reader.u8().map(usize::from)
            }
            .ok_or(DecodeError::MalformedAttributeList)?;
            let header_len = if flags & FLAG_EXTENDED_LENGTH != 0 {
                4
            } else {
                3
            };
            let value = reader
                .take(length)
                .ok_or(DecodeError::MalformedAttributeList)?;
            // Invariant: header and value were just read from `attribute_start`.
            let raw = attribute_start
                .get(..header_len + length)
                .unwrap_or_default()
                .to_vec();
            // RFC 4271 §6.3: an attribute may appear at most once.
            let seen_slot = &mut seen[usize::from(type_code)];
            if *seen_slot {
                return Err(DecodeError::MalformedAttributeList);
            }
            *seen_slot = true;
            attributes.decode_one(flags, type_code, value, raw, context)?;
        }
        Ok(attributes)
    }

    fn decode_one(
        &mut self,
        flags: u8,
        type_code: u8,
        value: &[u8],
        raw: Vec<u8>,
        context: &CodecContext,
    ) -> Result<(), DecodeError> {
        let category = flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE);
        let expected = match type_code {
            ATTR_ORIGIN
            | ATTR_AS_PATH
            | ATTR_NEXT_HOP
            | ATTR_LOCAL_PREF
            | ATTR_ATOMIC_AGGREGATE => Some(FLAG_TRANSITIVE),
            ATTR_MULTI_EXIT_DISC | ATTR_MP_REACH_NLRI | ATTR_MP_UNREACH_NLRI => Some(FLAG_OPTIONAL),
            ATTR_COMMUNITIES | ATTR_AS4_PATH | ATTR_LARGE_COMMUNITIES => {
                Some(FLAG_OPTIONAL | FLAG_TRANSITIVE)
            }
            _ => None,
        };
        let Some(expected) = expected else {
            if flags & FLAG_OPTIONAL == 0 {
                return Err(DecodeError::UnrecognizedWellKnownAttribute {
                    type_code,
                    attribute: raw,
                });
            }
            self.other.push(RawAttribute {
                flags: flags & !FLAG_EXTENDED_LENGTH,
                type_code,
                value: value.to_vec(),
            });
            return Ok(());
        };
        // The partial bit is meaningful only on optional transitive attributes (RFC 4271 §4.3).
        let partial_ok = expected == FLAG_OPTIONAL | FLAG_TRANSITIVE;
        if category != expected || (!partial_ok && flags & FLAG_PARTIAL != 0) {
            return Err(DecodeError::AttributeFlagsError {
                type_code,
                attribute: raw,
            });
        }
        let length_error = |raw| DecodeError::AttributeLengthError {
            type_code,
            attribute: raw,
        };
        let mut reader = Reader::new(value);
        match type_code {
            ATTR_ORIGIN => {
                let [origin] = value else {
                    return Err(length_error(raw));
                };
                self.origin = Some(match origin {
                    0 => Origin::Igp,
                    1 => Origin::Egp,
                    2 => Origin::Incomplete,
                    other => {
                        return Err(DecodeError::InvalidOriginAttribute {
                            origin: *other,
                            attribute: raw,
                        })
                    }
                });
            }
            ATTR_AS_PATH => {
                self.as_path = Some(decode_as_path(value, context.four_octet_asn)?);
            }
            ATTR_AS4_PATH => self.as4_path = Some(decode_as_path(value, true)?),
            ATTR_NEXT_HOP => {
                let octets: [u8; 4] = value.try_into().map_err(|_| length_error(raw))?;
                self.next_hop = Some(Ipv4Addr::from(octets));
            }
            ATTR_MULTI_EXIT_DISC | ATTR_LOCAL_PREF => {
                let octets: [u8; 4] = value.try_into().map_err(|_| length_error(raw))?;
                let number = u32::from_be_bytes(octets);
                if type_code == ATTR_LOCAL_PREF {
                    self.local_pref = Some(number);
                } else {
                    self.multi_exit_disc = Some(number);
                }
            }
            ATTR_ATOMIC_AGGREGATE => {
                if !value.is_empty() {
                    return Err(length_error(raw));
                }
                self.atomic_aggregate = true;
            }
            ATTR_COMMUNITIES => {
                if !value.len().is_multiple_of(4) {
                    return Err(length_error(raw));
                }
                let mut communities = Vec::with_capacity(value.len() / 4);
                while let Some(community) = reader.u32() {
                    communities.push(Community(community));
                }
                self.communities = Some(communities);
            }
            ATTR_LARGE_COMMUNITIES => {
                if !value.len().is_multiple_of(12) {
                    return Err(length_error(raw));
                }
                let mut large = Vec::with_capacity(value.len() / 12);
                while let (Some(global), Some(local1), Some(local2)) =
                    (reader.u32(), reader.u32(), reader.u32())
                {
                    large.push(LargeCommunity {
                        global,
                        local1,
                        local2,
                    });
                }
                self.large_communities = Some(large);
            }
            ATTR_MP_REACH_NLRI | ATTR_MP_UNREACH_NLRI => {
                let optional_error = |raw| DecodeError::OptionalAttributeError {
                    type_code,
                    attribute: raw,
                };
                let (Some(afi), Some(safi)) = (reader.u16(), reader.u8()) else {
                    return Err(optional_error(raw));
                };
                let Some(family) = Family::from_afi_safi(afi, safi) else {
                    // A family ironlb never negotiates: keep it, never interpret it.
                    self.other.push(RawAttribute {
                        flags: flags & !FLAG_EXTENDED_LENGTH,
                        type_code,
                        value: value.to_vec(),
                    });
                    return Ok(());
                };
                if type_code == ATTR_MP_UNREACH_NLRI {
                    let withdrawn =
                        decode_prefixes(reader.rest(), family).ok_or(optional_error(raw))?;
                    self.mp_unreach = Some(MpUnreach { family, withdrawn });
                    return Ok(());
                }
                let Some(next_hop_len) = reader.u8() else {
                    return Err(optional_error(raw));
                };
                let Some(next_hop) = reader.take(usize::from(next_hop_len)) else {
                    return Err(optional_error(raw));
                };
                let next_hops = match (family, next_hop.len()) {
                    (Family::Ipv4Unicast, 4) => {
                        let octets: [u8; 4] = next_hop
                            .try_into()
                            .map_err(|_| optional_error(raw.clone()))?;
                        vec![IpAddr::from(octets)]
                    }
                    (Family::Ipv6Unicast, 16 | 32) => next_hop
                        .chunks_exact(16)
                        .filter_map(|chunk| <[u8; 16]>::try_from(chunk).ok())
                        .map(|octets| IpAddr::V6(Ipv6Addr::from(octets)))
                        .collect(),
                    _ => return Err(optional_error(raw)),
                };
                if reader.u8().is_none() {
                    return Err(optional_error(raw));
                }
                let nlri = decode_prefixes(reader.rest(), family).ok_or(optional_error(raw))?;
                self.mp_reach = Some(MpReach {
                    family,
                    next_hops,
                    nlri,
                });
            }
            // Invariant: `expected` is Some only for the codes matched above.
            _ => return Err(DecodeError::MalformedAttributeList),
        }
        Ok(())
    }
}

fn encode_attribute(buf: &mut BytesMut, flags: u8, type_code: u8, value: &[u8]) {
    // Values longer than 65535 bytes cannot occur: a message is at most 4096 bytes.
    let length = value.len().min(usize::from(u16::MAX));
    if length > 255 {
        buf.put_u8(flags | FLAG_EXTENDED_LENGTH);
        buf.put_u8(type_code);
        buf.put_u16(u16::try_from(length).unwrap_or(u16::MAX));
    } else {
        buf.put_u8(flags & !FLAG_EXTENDED_LENGTH);
        buf.put_u8(type_code);
        buf.put_u8(u8::try_from(length).unwrap_or(u8::MAX));
    }
    buf.put_slice(&value[..length]);
}

fn encode_as_path(segments: &[AsSegment], four_octet: bool, buf: &mut BytesMut) {
    for segment in segments {
        for chunk in segment.asns.chunks(255) {
            buf.put_u8(segment.segment_type);
            buf.put_u8(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
            for asn in chunk {
                if four_octet {
                    buf.put_u32(*asn);
                } else {
                    buf.put_u16(u16::try_from(*asn).unwrap_or(AS_TRANS));
                }
            }
        }
    }
}

fn decode_as_path(value: &[u8], four_octet: bool) -> Result<Vec<AsSegment>, DecodeError> {
    let mut reader = Reader::new(value);
    let mut segments = Vec::new();
    while !reader.rest().is_empty() {
        let segment_type = reader.u8().ok_or(DecodeError::MalformedAsPath)?;
        let count = reader.u8().ok_or(DecodeError::MalformedAsPath)?;
        if !(1..=4).contains(&segment_type) || count == 0 {
            return Err(DecodeError::MalformedAsPath);
        }
        let mut asns = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let asn = if four_octet {
                reader.u32()
            } else {
                reader.u16().map(u32::from)
            };
            asns.push(asn.ok_or(DecodeError::MalformedAsPath)?);
        }
        segments.push(AsSegment { segment_type, asns });
    }
    Ok(segments)
}

/// Encoded size of one prefix in NLRI form.
pub fn prefix_encoded_len(prefix: &IpNet) -> usize {
    1 + usize::from(prefix.prefix_len()).div_ceil(8)
}

fn encode_prefix(prefix: &IpNet, buf: &mut BytesMut) {
    let octets_len = usize::from(prefix.prefix_len()).div_ceil(8);
    buf.put_u8(prefix.prefix_len());
    match prefix {
        IpNet::V4(prefix) => buf.put_slice(&prefix.addr().octets()[..octets_len.min(4)]),
        IpNet::V6(prefix) => buf.put_slice(&prefix.addr().octets()[..octets_len.min(16)]),
    }
}

/// Decodes a run of NLRI-encoded prefixes; `None` on any malformed prefix.
fn decode_prefixes(bytes: &[u8], family: Family) -> Option<Vec<IpNet>> {
    let mut reader = Reader::new(bytes);
    let mut prefixes = Vec::new();
    while !reader.rest().is_empty() {
        let length = reader.u8()?;
        let octets = reader.take(usize::from(length).div_ceil(8))?;
        let prefix = match family {
            Family::Ipv4Unicast => {
                let mut address = [0; 4];
                address.get_mut(..octets.len())?.copy_from_slice(octets);
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(address), length).ok()?)
            }
            Family::Ipv6Unicast => {
                let mut address = [0; 16];
                address.get_mut(..octets.len())?.copy_from_slice(octets);
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(address), length).ok()?)
            }
        };
        prefixes.push(prefix);
    }
    Some(prefixes)
}

fn back_patch_u16(buf: &mut BytesMut, at: usize) {
    let length = buf.len() - at - 2;
    let field = u16::try_from(length).unwrap_or(u16::MAX).to_be_bytes();
    buf[at..at + 2].copy_from_slice(&field);
}

/// A bounds-checked reader over untrusted bytes: every read returns `None` past the end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if count > self.bytes.len() {
            return None;
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|bytes| bytes[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u32::from_be_bytes)
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes
    }
}
