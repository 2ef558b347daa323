//! Domain values of a validated configuration. Each can only be built through a checking
//! constructor, so a [`Config`](super::Config) cannot hold an invalid value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use ironlb_alloc::PoolName;
use ironlb_labels::Selector;

pub use crate::crd::DynamicAsnMode;

/// A non-zero autonomous system number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Asn(NonZeroU32);

impl Asn {
    /// `None` for 0, which BGP does not allow as an AS number here.
    pub fn new(value: u32) -> Option<Self> {
        NonZeroU32::new(value).map(Self)
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How the remote AS is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAsn {
    /// `spec.peerASN`.
    Fixed(Asn),
    /// `spec.dynamicASN`.
    Dynamic(DynamicAsnMode),
}

/// Where the session goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerTarget {
    /// `spec.peerAddress`.
    Address(IpAddr),
    /// `spec.interface` (unnumbered BGP).
    Interface(String),
}

/// A TCP port in MetalLB's accepted range, 1..=16384.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerPort(u16);

impl PeerPort {
    /// Highest port the CRD accepts.
    pub const MAX: u16 = 16384;

    /// `None` outside 1..=16384.
    pub fn new(port: u16) -> Option<Self> {
        (1..=Self::MAX).contains(&port).then_some(Self(port))
    }

    /// The port.
    pub fn get(self) -> u16 {
        self.0
    }
}

/// Hold and keepalive times after MetalLB's derivation: keepalive = hold / 3 when only hold
/// is set, hold = 3 × keepalive when only keepalive is set. The hold time, rounded down to
/// whole seconds, is 0 or at least 3 s, and keepalive ≤ hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BgpTimers {
    hold_time: Duration,
    keepalive_time: Duration,
}

/// Why timers were rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimerError {
    /// Hold time between 0 and 3 s.
    #[error("invalid hold time {hold_time:?}: must be 0 or >=3s")]
    HoldTimeTooShort {
        /// The derived hold time.
        hold_time: Duration,
    },
    /// Keepalive longer than hold.
    #[error("invalid keepaliveTime {keepalive_time:?}, must be lower than holdTime {hold_time:?}")]
    KeepaliveAboveHold {
        /// The derived hold time.
        hold_time: Duration,
        /// The derived keepalive time.
        keepalive_time: Duration,
    },
}

impl BgpTimers {
    /// Derives and checks the timers; `Ok(None)` when neither is set (the speaker's default).
    pub fn new(
        hold_time: Option<Duration>,
        keepalive_time: Option<Duration>,
    ) -> Result<Option<Self>, TimerError> {
        let (hold_time, keepalive_time) = match (hold_time, keepalive_time) {
            (None, None) => return Ok(None),
            (Some(hold), Some(keepalive)) => (hold, keepalive),
            (Some(hold), None) => (hold, hold / 3),
            (None, Some(keepalive)) => (keepalive.saturating_mul(3), keepalive),
        };
        let rounded_secs = hold_time.as_secs();
        if rounded_secs != 0 && rounded_secs < 3 {
            return Err(TimerError::HoldTimeTooShort { hold_time });
        }
        if keepalive_time > hold_time {
            return Err(TimerError::KeepaliveAboveHold {
                hold_time,
                keepalive_time,
            });
        }
        Ok(Some(Self {
            hold_time,
            keepalive_time,
        }))
    }

    /// The hold time.
    pub fn hold_time(&self) -> Duration {
        self.hold_time
    }

    /// The keepalive time.
    pub fn keepalive_time(&self) -> Duration {
        self.keepalive_time
    }
}

/// `spec.connectTime`: whole seconds, 1..=65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectTime(u16);

impl ConnectTime {
    /// `None` unless a whole number of seconds between 1 s and 65535 s.
    pub fn new(duration: Duration) -> Option<Self> {
        if duration.subsec_nanos() != 0 {
            return None;
        }
        let secs = u16::try_from(duration.as_secs()).ok()?;
        (secs >= 1).then_some(Self(secs))
    }

    /// The time in seconds.
    pub fn secs(self) -> u16 {
        self.0
    }
}

/// The TCP MD5 password of a session.
#[derive(Clone, PartialEq, Eq)]
pub enum PeerPassword {
    /// `spec.password`.
    Inline(String),
    /// `spec.passwordSecret`, resolved.
    FromSecret {
        /// The Secret's name.
        secret: String,
        /// Its `password` key.
        password: String,
    },
}

impl fmt::Debug for PeerPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret itself.
        match self {
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::FromSecret { secret, .. } => write!(f, "FromSecret({secret}, <redacted>)"),
        }
    }
}

/// A validated `BGPPeer`.
#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    pub(super) name: String,
    pub(super) my_asn: Asn,
    pub(super) peer_asn: PeerAsn,
    pub(super) local_asn: Option<Asn>,
    pub(super) target: PeerTarget,
    pub(super) source_address: Option<IpAddr>,
    pub(super) port: PeerPort,
    pub(super) timers: Option<BgpTimers>,
    pub(super) connect_time: Option<ConnectTime>,
    pub(super) router_id: Option<IpAddr>,
    pub(super) node_selectors: Vec<Selector>,
    pub(super) nodes: BTreeSet<String>,
    pub(super) password: Option<PeerPassword>,
    pub(super) bfd_profile: Option<String>,
    pub(super) enable_graceful_restart: bool,
    pub(super) ebgp_multi_hop: bool,
    pub(super) vrf: Option<String>,
    pub(super) dual_stack_address_family: bool,
    pub(super) disable_mp: bool,
}

impl Peer {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// `spec.myASN`.
    pub fn my_asn(&self) -> Asn {
        self.my_asn
    }
    /// `spec.peerASN` or `spec.dynamicASN`.
    pub fn peer_asn(&self) -> PeerAsn {
        self.peer_asn
    }
    /// `spec.localASN`.
    pub fn local_asn(&self) -> Option<Asn> {
        self.local_asn
    }
    /// `spec.peerAddress` or `spec.interface`.
    pub fn target(&self) -> &PeerTarget {
        &self.target
    }
    /// `spec.sourceAddress`.
    pub fn source_address(&self) -> Option<IpAddr> {
        self.source_address
    }
    /// `spec.peerPort`.
    pub fn port(&self) -> PeerPort {
        self.port
    }
    /// `spec.holdTime` and `spec.keepaliveTime`, derived.
    pub fn timers(&self) -> Option<BgpTimers> {
        self.timers
    }
    /// `spec.connectTime`.
    pub fn connect_time(&self) -> Option<ConnectTime> {
        self.connect_time
    }
    /// `spec.routerID`.
    pub fn router_id(&self) -> Option<IpAddr> {
        self.router_id
    }
    /// `spec.nodeSelectors` (one "everything" selector when empty).
    pub fn node_selectors(&self) -> &[Selector] {
        &self.node_selectors
    }
    /// The known nodes the selectors match.
    pub fn nodes(&self) -> &BTreeSet<String> {
        &self.nodes
    }
    /// The TCP MD5 password.
    pub fn password(&self) -> Option<&PeerPassword> {
        self.password.as_ref()
    }
    /// `spec.bfdProfile` (an existing profile).
    pub fn bfd_profile(&self) -> Option<&str> {
        self.bfd_profile.as_deref()
    }
    /// `spec.enableGracefulRestart`.
    pub fn enable_graceful_restart(&self) -> bool {
        self.enable_graceful_restart
    }
    /// `spec.ebgpMultiHop` (never true for an iBGP peer).
    pub fn ebgp_multi_hop(&self) -> bool {
        self.ebgp_multi_hop
    }
    /// `spec.vrf` (accepted, reported as not supported by ironlb).
    pub fn vrf(&self) -> Option<&str> {
        self.vrf.as_deref()
    }
    /// `spec.dualStackAddressFamily`.
    pub fn dual_stack_address_family(&self) -> bool {
        self.dual_stack_address_family
    }
    /// `spec.disableMP` (deprecated, no effect).
    pub fn disable_mp(&self) -> bool {
        self.disable_mp
    }
}

/// A BFD interval in milliseconds, 10..=60000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BfdIntervalMs(u32);

impl BfdIntervalMs {
    /// `None` outside 10..=60000.
    pub fn new(ms: u32) -> Option<Self> {
        (10..=60000).contains(&ms).then_some(Self(ms))
    }
    /// The interval in milliseconds.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A validated `BFDProfile`. Unset values are FRR's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdProfile {
    pub(super) name: String,
    pub(super) receive_interval: Option<BfdIntervalMs>,
    pub(super) transmit_interval: Option<BfdIntervalMs>,
    pub(super) detect_multiplier: Option<u8>,
    pub(super) echo_interval: Option<BfdIntervalMs>,
    pub(super) echo_mode: bool,
    pub(super) passive_mode: bool,
    pub(super) minimum_ttl: Option<u8>,
}

impl BfdProfile {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// `spec.receiveInterval`.
    pub fn receive_interval(&self) -> Option<BfdIntervalMs> {
        self.receive_interval
    }
    /// `spec.transmitInterval`.
    pub fn transmit_interval(&self) -> Option<BfdIntervalMs> {
        self.transmit_interval
    }
    /// `spec.detectMultiplier` (2..=255).
    pub fn detect_multiplier(&self) -> Option<u8> {
        self.detect_multiplier
    }
    /// `spec.echoInterval`.
    pub fn echo_interval(&self) -> Option<BfdIntervalMs> {
        self.echo_interval
    }
    /// `spec.echoMode`.
    pub fn echo_mode(&self) -> bool {
        self.echo_mode
    }
    /// `spec.passiveMode`.
    pub fn passive_mode(&self) -> bool {
        self.passive_mode
    }
    /// `spec.minimumTtl` (1..=254).
    pub fn minimum_ttl(&self) -> Option<u8> {
        self.minimum_ttl
    }
}

/// A BGP community value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BgpCommunity {
    /// RFC 1997 `AA:NN`.
    Legacy {
        /// The high 16 bits.
        high: u16,
        /// The low 16 bits.
        low: u16,
    },
    /// RFC 8092 `large:A:B:C`.
    Large {
        /// Global administrator.
        global: u32,
        /// First local data part.
        local1: u32,
        /// Second local data part.
        local2: u32,
    },
}

/// Why a community string did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommunityError {
    /// Not shaped like `AA:NN` or `large:A:B:C` (it may be an alias defined later).
    #[error("invalid community format {0:?}: must be AA:NN, large:A:B:C or a Community alias")]
    Format(String),
    /// Shaped right, but a number is out of range.
    #[error("invalid community value {0:?}: AA:NN takes two 16-bit numbers, large:A:B:C three 32-bit numbers")]
    Value(String),
}

impl BgpCommunity {
    /// Whether this is an RFC 1997 community.
    pub fn is_legacy(&self) -> bool {
        matches!(self, Self::Legacy { .. })
    }

    /// The value as three 32-bit numbers; a legacy community is `(AA<<16|NN, 0, 0)`, which is
    /// the order MetalLB compares communities in.
    pub fn as_large(&self) -> (u32, u32, u32) {
        match *self {
            Self::Legacy { high, low } => ((u32::from(high) << 16) | u32::from(low), 0, 0),
            Self::Large {
                global,
                local1,
                local2,
            } => (global, local1, local2),
        }
    }
}

impl Ord for BgpCommunity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_large()
            .cmp(&other.as_large())
            .then_with(|| self.is_legacy().cmp(&other.is_legacy()))
    }
}

impl PartialOrd for BgpCommunity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for BgpCommunity {
    type Err = CommunityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = text.strip_prefix("large:") {
            let parts: Vec<&str> = rest.split(':').collect();
            let [global, local1, local2] = parts.as_slice() else {
                return Err(CommunityError::Format(text.to_owned()));
            };
            let number = |part: &str| {
                part.parse::<u32>()
                    .map_err(|_| CommunityError::Value(text.to_owned()))
            };
            return Ok(Self::Large {
                global: number(global)?,
                local1: number(local1)?,
                local2: number(local2)?,
            });
        }
        let parts: Vec<&str> = text.split(':').collect();
        let [high, low] = parts.as_slice() else {
            return Err(CommunityError::Format(text.to_owned()));
        };
        let number = |part: &str| {
            part.parse::<u16>()
                .map_err(|_| CommunityError::Value(text.to_owned()))
        };
        Ok(Self::Legacy {
            high: number(high)?,
            low: number(low)?,
        })
    }
}

impl fmt::Display for BgpCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Legacy { high, low } => write!(f, "{high}:{low}"),
            Self::Large {
                global,
                local1,
                local2,
            } => write!(f, "large:{global}:{local1}:{local2}"),
        }
    }
}

/// A validated `L2Advertisement`.
#[derive(Clone, Debug, PartialEq)]
pub struct L2Advertisement {
    pub(super) name: String,
    pub(super) pools: BTreeSet<PoolName>,
    pub(super) nodes: BTreeSet<String>,
    pub(super) interfaces: BTreeSet<String>,
    pub(super) service_selectors: Vec<Selector>,
    pub(super) preferred_nodes: BTreeMap<String, i64>,
}

impl L2Advertisement {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The existing pools it applies to (by name, by selector, or all).
    pub fn pools(&self) -> &BTreeSet<PoolName> {
        &self.pools
    }
    /// The known nodes allowed to announce.
    pub fn nodes(&self) -> &BTreeSet<String> {
        &self.nodes
    }
    /// Interfaces to announce from; empty means every interface.
    pub fn interfaces(&self) -> &BTreeSet<String> {
        &self.interfaces
    }
    /// `spec.serviceSelectors`; empty means every service.
    pub fn service_selectors(&self) -> &[Selector] {
        &self.service_selectors
    }
    /// Summed `preferredNodeSelectors` weights per eligible node (missing = 0).
    pub fn preferred_nodes(&self) -> &BTreeMap<String, i64> {
        &self.preferred_nodes
    }
}

/// A validated `BGPAdvertisement`.
#[derive(Clone, Debug, PartialEq)]
pub struct BgpAdvertisement {
    pub(super) name: String,
    pub(super) pools: BTreeSet<PoolName>,
    pub(super) aggregation_length_v4: u8,
    pub(super) aggregation_length_v6: u8,
    pub(super) local_pref: u32,
    pub(super) communities: BTreeSet<BgpCommunity>,
    pub(super) nodes: BTreeSet<String>,
    pub(super) peers: BTreeSet<String>,
    pub(super) service_selectors: Vec<Selector>,
}

impl BgpAdvertisement {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The existing pools it applies to.
    pub fn pools(&self) -> &BTreeSet<PoolName> {
        &self.pools
    }
    /// `spec.aggregationLength` (1..=32, default 32).
    pub fn aggregation_length_v4(&self) -> u8 {
        self.aggregation_length_v4
    }
    /// `spec.aggregationLengthV6` (0..=128, default 128).
    pub fn aggregation_length_v6(&self) -> u8 {
        self.aggregation_length_v6
    }
    /// `spec.localPref`.
    pub fn local_pref(&self) -> u32 {
        self.local_pref
    }
    /// `spec.communities`, aliases resolved.
    pub fn communities(&self) -> &BTreeSet<BgpCommunity> {
        &self.communities
    }
    /// The known nodes that announce.
    pub fn nodes(&self) -> &BTreeSet<String> {
        &self.nodes
    }
    /// `spec.peers`; empty means every peer.
    pub fn peers(&self) -> &BTreeSet<String> {
        &self.peers
    }
    /// `spec.serviceSelectors`; empty means every service.
    pub fn service_selectors(&self) -> &[Selector] {
        &self.service_selectors
    }
}
