//! The BFD control packet (RFC 5880 §4.1) without authentication.

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

/// Length of a control packet without the authentication section.
pub const PACKET_LEN: usize = 24;

/// Session states as carried on the wire (RFC 5880 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    /// 0.
    AdminDown,
    /// 1.
    Down,
    /// 2.
    Init,
    /// 3.
    Up,
}

impl State {
    fn code(self) -> u8 {
        match self {
            Self::AdminDown => 0,
            Self::Down => 1,
            Self::Init => 2,
            Self::Up => 3,
        }
    }

    fn from_code(code: u8) -> Self {
        match code & 0x3 {
            0 => Self::AdminDown,
            1 => Self::Down,
            2 => Self::Init,
            _ => Self::Up,
        }
    }
}

/// Diagnostic codes (RFC 5880 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Diagnostic {
    /// 0: No Diagnostic.
    None,
    /// 1: Control Detection Time Expired.
    ControlDetectionTimeExpired,
    /// 2: Echo Function Failed.
    EchoFunctionFailed,
    /// 3: Neighbor Signaled Session Down.
    NeighborSignaledSessionDown,
    /// 4: Forwarding Plane Reset.
    ForwardingPlaneReset,
    /// 5: Path Down.
    PathDown,
    /// 6: Concatenated Path Down.
    ConcatenatedPathDown,
    /// 7: Administratively Down.
    AdministrativelyDown,
    /// 8: Reverse Concatenated Path Down.
    ReverseConcatenatedPathDown,
    /// 9–31: reserved.
    Reserved(u8),
}

impl Diagnostic {
    fn code(self) -> u8 {
        match self {
            Self::None => 0,
            Self::ControlDetectionTimeExpired => 1,
            Self::EchoFunctionFailed => 2,
            Self::NeighborSignaledSessionDown => 3,
            Self::ForwardingPlaneReset => 4,
            Self::PathDown => 5,
            Self::ConcatenatedPathDown => 6,
            Self::AdministrativelyDown => 7,
            Self::ReverseConcatenatedPathDown => 8,
            Self::Reserved(code) => code & 0x1f,
        }
    }

    fn from_code(code: u8) -> Self {
        match code & 0x1f {
            0 => Self::None,
            1 => Self::ControlDetectionTimeExpired,
            2 => Self::EchoFunctionFailed,
            3 => Self::NeighborSignaledSessionDown,
            4 => Self::ForwardingPlaneReset,
            5 => Self::PathDown,
            6 => Self::ConcatenatedPathDown,
            7 => Self::AdministrativelyDown,
            8 => Self::ReverseConcatenatedPathDown,
            other => Self::Reserved(other),
        }
    }
}

/// Why a received packet was discarded (RFC 5880 §6.8.6), counted by the driver.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than 24 bytes, or fewer than the length field says.
    #[error("bfd packet truncated: {length} bytes")]
    Truncated {
        /// Bytes received.
        length: usize,
    },
    /// Version is not 1.
    #[error("bfd version {version} not supported")]
    BadVersion {
        /// The version field.
        version: u8,
    },
    /// The length field is below 24.
    #[error("bfd length field {length} too small")]
    BadLength {
        /// The length field.
        length: u8,
    },
    /// Detect Mult is zero.
    #[error("bfd detect multiplier is zero")]
    ZeroDetectMultiplier,
    /// The Multipoint bit is set.
    #[error("bfd multipoint bit set")]
    Multipoint,
    /// My Discriminator is zero.
    #[error("bfd my discriminator is zero")]
    ZeroMyDiscriminator,
    /// The Authentication Present bit is set: ironlb does not authenticate BFD.
    #[error("bfd authentication not supported")]
    AuthenticationNotSupported,
}

/// A BFD control packet.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       My Discriminator                        |
/// |                      Your Discriminator                       |
/// |                    Desired Min TX Interval                    |
/// |                   Required Min RX Interval                    |
/// |                 Required Min Echo RX Interval                 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPacket {
    /// Diagnostic.
    pub diagnostic: Diagnostic,
    /// Sender's state.
    pub state: State,
    /// Poll.
    pub poll: bool,
    /// Final.
    pub final_: bool,
    /// Control Plane Independent.
    pub control_plane_independent: bool,
    /// Demand.
    pub demand: bool,
    /// Detect Mult.
    pub detect_multiplier: u8,
    /// My Discriminator.
    pub my_discriminator: u32,
    /// Your Discriminator.
    pub your_discriminator: u32,
    /// Desired Min TX Interval, microseconds.
    pub desired_min_tx_us: u32,
    /// Required Min RX Interval, microseconds.
    pub required_min_rx_us: u32,
    /// Required Min Echo RX Interval, microseconds (0: no echo).
    pub required_min_echo_rx_us: u32,
}

impl ControlPacket {
    /// Appends the 24-byte encoding.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8((1 << 5) | self.diagnostic.code());
        let mut flags = self.state.code() << 6;
        for (set, bit) in [
            (self.poll, 0x20),
            (self.final_, 0x10),
            (self.control_plane_independent, 0x08),
            (self.demand, 0x02),
        ] {
            if set {
                flags |= bit;
            }
        }
        buf.put_u8(flags);
        buf.put_u8(self.detect_multiplier);
        buf.put_u8(PACKET_LEN as u8);
        buf.put_u32(self.my_discriminator);
        buf.put_u32(self.your_discriminator);
        buf.put_u32(self.desired_min_tx_us);
        buf.put_u32(self.required_min_rx_us);
        buf.put_u32(self.required_min_echo_rx_us);
    }

    /// Decodes and applies the RFC 5880 §6.8.6 checks that need no session state.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let truncated = DecodeError::Truncated {
            length: bytes.len(),
        };
        let header: &[u8; PACKET_LEN] = bytes
            .get(..PACKET_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(truncated.clone())?;
        let version = header[0] >> 5;
        if version != 1 {
            return Err(DecodeError::BadVersion { version });
        }
        let flags = header[1];
        let length = header[3];
        if flags & 0x04 != 0 {
            return Err(DecodeError::AuthenticationNotSupported);
        }
        if usize::from(length) < PACKET_LEN {
            return Err(DecodeError::BadLength { length });
        }
        if usize::from(length) > bytes.len() {
            return Err(truncated);
        }
        if header[2] == 0 {
            return Err(DecodeError::ZeroDetectMultiplier);
        }
        if flags & 0x01 != 0 {
            return Err(DecodeError::Multipoint);
        }
        let word = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let packet = Self {
            diagnostic: Diagnostic::from_code(header[0]),
            state: State::from_code(flags >> 6),
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_multiplier: header[2],
            my_discriminator: word(4),
            your_discriminator: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
        };
        if packet.my_discriminator == 0 {
            return Err(DecodeError::ZeroMyDiscriminator);
        }
        Ok(packet)
    }
}
