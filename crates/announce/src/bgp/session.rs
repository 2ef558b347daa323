//! The BGP session of one peer (RFC 4271 §8), sans-IO.
//!
//! Call order, as quinn's `Connection`: feed every event with [`Session::handle`] (socket
//! events, bytes read, route changes, BFD) and every timer fire with
//! [`Session::handle_timeout`]; after each call drain [`Session::poll_action`] and re-arm one
//! timer at [`Session::poll_timeout`]. The session never touches a socket or a clock.
//!
//! ironlb dials out and never accepts (as MetalLB), so a connection collision (RFC 4271 §6.8)
//! cannot arise: the peer's own connection attempts are refused by the kernel.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use super::message::{
    cease, Capability, CodecContext, DecodeError, Family, GracefulRestart, GracefulRestartFamily,
    Message, Notification, Open, Update, AS_TRANS,
};
use super::rib::{AdjRibOut, ExportContext, RouteAttributes, Routes};

/// Hold time proposed when the configuration sets none (MetalLB's default).
pub const HOLD_TIME_DEFAULT_SECS: u16 = 90;
/// Hold timer while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// Which ASN the peer must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerAsn {
    /// Exactly this ASN (`peerASN`).
    Fixed(u32),
    /// Our own ASN (`dynamicASN: internal`).
    Internal,
    /// Any ASN but ours (`dynamicASN: external`).
    External,
}

/// Per-peer session configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// Our ASN (`myASN`, or `localASN` when set).
    pub local_asn: u32,
    /// The peer's ASN rule.
    pub peer_asn: PeerAsn,
    /// BGP Identifier; `None`: the local IPv4 address of the connection.
    pub router_id: Option<Ipv4Addr>,
    /// Proposed hold time (`holdTime`); 0 disables hold timer and keepalives.
    pub hold_time_secs: u16,
    /// Keepalive interval (`keepaliveTime`); `None`: a third of the negotiated hold time.
    pub keepalive_secs: Option<u16>,
    /// How long a TCP connect may take (`connectTime`, MetalLB's 10 s).
    pub connect_timeout: Duration,
    /// First reconnect delay after the immediate retry; doubles up to `retry_delay_max`.
    pub retry_delay_min: Duration,
    /// Upper bound of the reconnect backoff (MetalLB: 2 minutes).
    pub retry_delay_max: Duration,
    /// Families to negotiate.
    pub families: BTreeSet<Family>,
    /// Advertise graceful restart with this restart time (`enableGracefulRestart`).
    pub graceful_restart_secs: Option<u16>,
    /// How long routes carry GRACEFUL_SHUTDOWN before a planned stop withdraws them.
    pub shutdown_wait: Duration,
    /// Next hops to use instead of the connection's local addresses.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Global IPv6 next hop override.
    pub next_hop_v6: Option<Ipv6Addr>,
}

impl SessionConfig {
    /// A configuration with MetalLB's defaults.
    pub fn new(local_asn: u32, peer_asn: PeerAsn) -> Self {
        Self {
            local_asn,
            peer_asn,
            router_id: None,
            hold_time_secs: HOLD_TIME_DEFAULT_SECS,
            keepalive_secs: None,
            connect_timeout: Duration::from_secs(10),
            retry_delay_min: Duration::from_secs(1),
            retry_delay_max: Duration::from_secs(120),
            families: Family::ALL.into_iter().collect(),
            graceful_restart_secs: None,
            shutdown_wait: Duration::from_secs(1),
            next_hop_v4: None,
            next_hop_v6: None,
        }
    }
}

/// RFC 4271 §8.2.2 session states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    /// Refuses connections; waits for a start event.
    Idle,
    /// Waiting for the outgoing TCP connection.
    Connect,
    /// The connection failed; waiting for the connect retry timer.
    Active,
    /// OPEN sent, waiting for the peer's OPEN.
    OpenSent,
    /// OPENs exchanged, waiting for the first KEEPALIVE.
    OpenConfirm,
    /// Routes flow.
    Established,
}

/// The timers of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// ConnectRetryTimer: connect timeout in Connect, backoff in Active.
    ConnectRetry,
    /// HoldTimer.
    Hold,
    /// KeepaliveTimer.
    Keepalive,
    /// IdleHoldTimer (RFC 4271 §8.1.1 DampPeerOscillations): automatic restart from Idle.
    IdleHold,
    /// End of the GRACEFUL_SHUTDOWN period of a planned stop.
    ShutdownWait,
}

/// What a session is told. Serializable so a run can be recorded and replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// ManualStart (event 1).
    Start,
    /// ManualStop (event 2): Cease, close, stay Idle.
    Stop,
    /// A planned stop (RFC 8326): GRACEFUL_SHUTDOWN on every route, wait, withdraw, Cease.
    PlannedStop,
    /// Tcp_CR_Acked / TcpConnectionConfirmed (events 16/17): the outgoing connection is up.
    TcpConnected {
        /// Local address of the connection.
        local: SocketAddr,
        /// Peer address of the connection.
        remote: SocketAddr,
        /// An IPv6 address on the interface of `local`, for IPv6 next hops over IPv4.
        local_v6: Option<Ipv6Addr>,
        /// A link-local IPv6 address on that interface.
        local_v6_link_local: Option<Ipv6Addr>,
        /// An IPv4 address on that interface, for IPv4 next hops over IPv6.
        local_v4: Option<Ipv4Addr>,
    },
    /// TcpConnectionFails (event 18): connect failed or the connection closed.
    TcpFailed,
    /// Bytes read from the connection.
    Received(Vec<u8>),
    /// The BFD session of this peer went down (RFC 5882 §4.3).
    BfdDown,
    /// The desired routes changed.
    SetRoutes(#[serde(with = "shared_routes")] Routes),
}

/// What a session asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Open the TCP connection to the peer.
    Connect,
    /// Write these bytes to the connection.
    Send(Vec<u8>),
    /// Close the connection.
    Close,
    /// The state changed.
    StateChange {
        /// Old state.
        from: State,
        /// New state.
        to: State,
    },
    /// The peer sent a NOTIFICATION.
    NotificationReceived(Notification),
    /// We sent a NOTIFICATION.
    NotificationSent(Notification),
    /// A planned stop finished: routes withdrawn, session closed.
    Stopped,
}

/// Counters for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStats {
    /// UPDATE messages sent.
    pub updates_sent: u64,
    /// Prefixes the peer holds from us.
    pub advertised_prefixes: u64,
    /// Prefixes waiting to be sent or withdrawn.
    pub pending_prefixes: u64,
}

/// RFC 4271 §8.1 events, as the transition function sees them.
#[derive(Clone, Debug)]
enum Event {
    /// Event 1.
    ManualStart,
    /// Event 2.
    ManualStop,
    /// Event 3 (AutomaticStart), fired by the IdleHold timer.
    AutomaticStart,
    /// Event 9.
    ConnectRetryTimerExpires,
    /// Event 10.
    HoldTimerExpires,
    /// Event 11.
    KeepaliveTimerExpires,
    /// Event 17.
    TcpConnectionConfirmed,
    /// Event 18.
    TcpConnectionFails,
    /// Event 19.
    BgpOpen(Open),
    /// Events 21/22/28: a malformed message.
    DecodeFailed(DecodeError),
    /// Events 24/25.
    NotifMsg(Notification),
    /// Event 26.
    KeepAliveMsg,
    /// Event 27.
    UpdateMsg,
    /// ROUTE-REFRESH received (RFC 2918).
    RouteRefreshMsg,
    /// BFD down (RFC 5882).
    BfdDown,
    /// Planned stop timer.
    ShutdownWaitExpires,
}

/// Negotiated facts of the current connection.
#[derive(Clone, Debug, Default)]
struct Connection {
    local_v4: Option<Ipv4Addr>,
    local_v6: Option<Ipv6Addr>,
    local_v6_link_local: Option<Ipv6Addr>,
    codec: CodecContext,
    hold_time: Duration,
    keepalive_interval: Duration,
    internal: bool,
    families: BTreeSet<Family>,
    buffer: BytesMut,
}

/// One BGP session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    connection: Connection,
    timers: BTreeMap<Timer, Instant>,
    retry_delay: Duration,
    /// Restart automatically after errors; false after a manual or planned stop.
    auto_restart: bool,
    graceful_shutdown: bool,
    rib: AdjRibOut,
    actions: VecDeque<Action>,
    stats: SessionStats,
}

impl Session {
    /// A session in Idle; send [`Input::Start`] to connect.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            state: State::Idle,
            connection: Connection::default(),
            timers: BTreeMap::new(),
            retry_delay: Duration::ZERO,
            auto_restart: false,
            graceful_shutdown: false,
            rib: AdjRibOut::default(),
            actions: VecDeque::new(),
            stats: SessionStats::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Counters for the metrics.
    pub fn stats(&self) -> SessionStats {
        let mut stats = self.stats;
        stats.advertised_prefixes = self.rib.advertised_len() as u64;
        stats.pending_prefixes = if self.state == State::Established {
            self.rib.pending_len(&self.export_context()) as u64
        } else {
            self.rib.desired().len() as u64
        };
        stats
    }

    /// The negotiated hold time of the current session.
    pub fn negotiated_hold_time(&self) -> Duration {
        self.connection.hold_time
    }

    /// Next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Session::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.values().min().copied()
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Start => self.event(now, Event::ManualStart),
            Input::Stop => self.event(now, Event::ManualStop),
            Input::PlannedStop => self.planned_stop(now),
            Input::TcpConnected {
                local,
                remote,
                local_v6,
                local_v6_link_local,
                local_v4,
            } => {
                let _ = remote;
                self.connection = Connection {
                    local_v4: match local.ip() {
                        IpAddr::V4(address) => Some(address),
                        IpAddr::V6(_) => local_v4,
                    },
                    local_v6: match local.ip() {
                        IpAddr::V6(address) if !is_link_local(&address) => Some(address),
                        _ => local_v6,
                    },
                    local_v6_link_local,
                    ..Connection::default()
                };
                self.event(now, Event::TcpConnectionConfirmed);
            }
            Input::TcpFailed => self.event(now, Event::TcpConnectionFails),
            Input::Received(bytes) => self.receive(now, &bytes),
            Input::BfdDown => self.event(now, Event::BfdDown),
            Input::SetRoutes(routes) => {
                self.rib.set_desired(routes);
                if self.state == State::Established {
                    self.flush_updates(now);
                }
            }
        }
    }

    /// Fires every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Bounded: each timer fires at most once per call.
        for _ in 0..8 {
            let Some((&timer, _)) = self.timers.iter().find(|(_, deadline)| **deadline <= now)
            else {
                return;
            };
            self.timers.remove(&timer);
            let event = match timer {
                Timer::ConnectRetry => Event::ConnectRetryTimerExpires,
                Timer::Hold => Event::HoldTimerExpires,
                Timer::Keepalive => Event::KeepaliveTimerExpires,
                Timer::IdleHold => Event::AutomaticStart,
                Timer::ShutdownWait => Event::ShutdownWaitExpires,
            };
            self.event(now, event);
        }
    }

    fn receive(&mut self, now: Instant, bytes: &[u8]) {
        if !matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            return;
        }
        self.connection.buffer.extend_from_slice(bytes);
        // Bounded by the bytes received: each round consumes at least a header or stops.
        loop {
            let codec = self.connection.codec;
            let event = match Message::decode_frame(&mut self.connection.buffer, &codec) {
                Ok(None) => return,
                Ok(Some(Message::Open(open))) => Event::BgpOpen(open),
                Ok(Some(Message::Update(_))) => Event::UpdateMsg,
                Ok(Some(Message::Notification(notification))) => Event::NotifMsg(notification),
                Ok(Some(Message::Keepalive)) => Event::KeepAliveMsg,
                Ok(Some(Message::RouteRefresh(_))) => Event::RouteRefreshMsg,
                Err(error) => Event::DecodeFailed(error),
            };
            self.event(now, event);
            if !matches!(
                self.state,
                State::OpenSent | State::OpenConfirm | State::Established
            ) {
                self.connection.buffer.clear();
                return;
            }
        }
    }

    /// The transition function: one match over (state, event).
    fn event(&mut self, now: Instant, event: Event) {
        use State::{Active, Connect, Established, Idle, OpenConfirm, OpenSent};
        let next = match (self.state, event) {
            (Idle, Event::ManualStart) => {
                self.auto_restart = true;
                self.graceful_shutdown = false;
                self.start_connect(now);
                Some(Connect)
            }
            (Idle, Event::AutomaticStart) if self.auto_restart => {
                self.start_connect(now);
                Some(Connect)
            }
            (Idle, _) => None,
            (_, Event::ManualStart) => None,
            (_, Event::ManualStop) => {
                self.auto_restart = false;
                if matches!(self.state, OpenSent | OpenConfirm | Established) {
                    self.send_notification(Notification::cease(cease::ADMINISTRATIVE_SHUTDOWN));
                }
                self.drop_connection();
                self.timers.clear();
                Some(Idle)
            }
            (Connect, Event::TcpConnectionConfirmed) => {
                self.timers.remove(&Timer::ConnectRetry);
                self.send_open();
                self.timers.insert(Timer::Hold, now + OPEN_HOLD_TIME);
                Some(OpenSent)
            }
            (Connect, Event::ConnectRetryTimerExpires | Event::TcpConnectionFails) => {
                self.drop_connection();
                let delay = self.next_retry_delay();
                self.timers.insert(Timer::ConnectRetry, now + delay);
                Some(Active)
            }
            (Active, Event::ConnectRetryTimerExpires) => {
                self.start_connect(now);
                Some(Connect)
            }
            (Connect | Active, _) => None,
            (OpenSent, Event::BgpOpen(open)) => match self.accept_open(&open) {
                Ok(()) => {
                    self.send_message(&Message::Keepalive);
                    self.restart_hold_timer(now);
                    self.restart_keepalive_timer(now);
                    Some(OpenConfirm)
                }
                Err(notification) => self.fail(now, Some(notification)),
            },
            (OpenConfirm, Event::KeepAliveMsg) => {
                self.restart_hold_timer(now);
                self.retry_delay = Duration::ZERO;
                self.rib.reset();
                self.flush_updates(now);
                for family in self.connection.families.clone() {
                    self.send_message(&Message::Update(Update::end_of_rib(family)));
                }
                Some(Established)
            }
            (Established, Event::KeepAliveMsg | Event::UpdateMsg) => {
                self.restart_hold_timer(now);
                None
            }
            (Established, Event::RouteRefreshMsg) => {
                self.restart_hold_timer(now);
                self.rib.reset();
                self.flush_updates(now);
                None
            }
            (OpenSent | OpenConfirm | Established, Event::KeepaliveTimerExpires) => {
                self.send_message(&Message::Keepalive);
                self.restart_keepalive_timer(now);
                None
            }
            (OpenSent | OpenConfirm | Established, Event::HoldTimerExpires) => {
                self.fail(now, Some(Notification::hold_timer_expired()))
            }
            (OpenSent | OpenConfirm | Established, Event::DecodeFailed(error)) => {
                self.fail(now, Some(Notification::from(error)))
            }
            (OpenSent | OpenConfirm | Established, Event::NotifMsg(notification)) => {
                self.actions
                    .push_back(Action::NotificationReceived(notification));
                self.fail(now, None)
            }
            (OpenSent | OpenConfirm | Established, Event::TcpConnectionFails) => {
                self.fail(now, None)
            }
            (OpenSent | OpenConfirm | Established, Event::BfdDown) => {
                self.fail(now, Some(Notification::cease(cease::BFD_DOWN)))
            }
            (Established, Event::ShutdownWaitExpires) => {
                self.rib.set_desired(BTreeMap::new());
                self.flush_updates(now);
                self.auto_restart = false;
                self.send_notification(Notification::cease(cease::ADMINISTRATIVE_SHUTDOWN));
                self.drop_connection();
                self.timers.clear();
                self.actions.push_back(Action::Stopped);
                Some(Idle)
            }
            // Any other message in OpenSent/OpenConfirm/Established is an FSM error (RFC 6608).
            (
                OpenSent | OpenConfirm | Established,
                Event::BgpOpen(_) | Event::KeepAliveMsg | Event::UpdateMsg | Event::RouteRefreshMsg,
            ) => {
                let subcode = match self.state {
                    OpenSent => 1,
                    OpenConfirm => 2,
                    _ => 3,
                };
                self.fail(now, Some(Notification::fsm_error(subcode)))
            }
            (
                OpenSent | OpenConfirm | Established,
                Event::AutomaticStart
                | Event::ConnectRetryTimerExpires
                | Event::TcpConnectionConfirmed
                | Event::ShutdownWaitExpires,
            ) => None,
        };
        if let Some(next) = next {
            self.state_change(next);
        }
    }

    fn state_change(&mut self, next: State) {
        if next != self.state {
            tracing::debug!(from = ?self.state, to = ?next, "state transition");
            self.actions.push_back(Action::StateChange {
                from: self.state,
                to: next,
            });
            self.state = next;
        }
    }

    fn planned_stop(&mut self, now: Instant) {
        if self.state != State::Established {
            self.event(now, Event::ManualStop);
            self.actions.push_back(Action::Stopped);
            return;
        }
        if self.graceful_shutdown {
            return;
        }
        self.graceful_shutdown = true;
        self.auto_restart = false;
        self.flush_updates(now);
        self.timers
            .insert(Timer::ShutdownWait, now + self.config.shutdown_wait);
    }

    /// Closes with an optional NOTIFICATION and goes Idle, restarting after the backoff.
    fn fail(&mut self, now: Instant, notification: Option<Notification>) -> Option<State> {
        if let Some(notification) = notification {
            self.send_notification(notification);
        }
        self.drop_connection();
        self.timers.clear();
        if self.graceful_shutdown {
            // A planned stop lost its session: nothing left to withdraw.
            self.actions.push_back(Action::Stopped);
        } else if self.auto_restart {
            let delay = self.next_retry_delay();
            self.timers.insert(Timer::IdleHold, now + delay);
        }
        Some(State::Idle)
    }

    fn start_connect(&mut self, now: Instant) {
        self.actions.push_back(Action::Connect);
        self.timers
            .insert(Timer::ConnectRetry, now + self.config.connect_timeout);
    }

    fn drop_connection(&mut self) {
        self.actions.push_back(Action::Close);
        self.rib.reset();
        self.connection = Connection::default();
    }

    /// MetalLB's backoff: immediately, then `retry_delay_min` doubling up to the maximum.
    fn next_retry_delay(&mut self) -> Duration {
        let delay = self.retry_delay;
        self.retry_delay = if delay.is_zero() {
            self.config.retry_delay_min
        } else {
            (delay * 2).min(self.config.retry_delay_max)
        };
        delay
    }

    fn restart_hold_timer(&mut self, now: Instant) {
        if self.connection.hold_time.is_zero() {
            self.timers.remove(&Timer::Hold);
        } else {
            self.timers
                .insert(Timer::Hold, now + self.connection.hold_time);
        }
    }

    fn restart_keepalive_timer(&mut self, now: Instant) {
        if self.connection.keepalive_interval.is_zero() {
            self.timers.remove(&Timer::Keepalive);
        } else {
            self.timers
                .insert(Timer::Keepalive, now + self.connection.keepalive_interval);
        }
    }

    fn router_id(&self) -> Ipv4Addr {
        self.config
            .router_id
            .or(self.connection.local_v4)
            // Last resort for IPv6-only nodes: a stable identifier from the ASN.
            .unwrap_or_else(|| Ipv4Addr::from(self.config.local_asn.max(1)))
    }

    fn send_open(&mut self) {
        let mut capabilities: Vec<Capability> = self
            .config
            .families
            .iter()
            .map(|family| {
                let (afi, safi) = family.afi_safi();
                Capability::MultiProtocol { afi, safi }
            })
            .collect();
        capabilities.push(Capability::RouteRefresh);
        capabilities.push(Capability::FourOctetAsn(self.config.local_asn));
        if let Some(restart_time_secs) = self.config.graceful_restart_secs {
            // F bit set: the node's forwarding (the kernel) survives ironlb restarting.
            let families = self
                .config
                .families
                .iter()
                .map(|family| {
                    let (afi, safi) = family.afi_safi();
                    GracefulRestartFamily {
                        afi,
                        safi,
                        forwarding_preserved: true,
                    }
                })
                .collect();
            capabilities.push(Capability::GracefulRestart(GracefulRestart {
                restart_state: false,
                notification: false,
                restart_time_secs: restart_time_secs.min(0x0fff),
                families,
            }));
        }
        let open = Open {
            my_as: u16::try_from(self.config.local_asn).unwrap_or(AS_TRANS),
            hold_time_secs: self.config.hold_time_secs,
            bgp_identifier: self.router_id(),
            capabilities,
        };
        self.send_message(&Message::Open(open));
    }

    /// Checks the peer's OPEN and negotiates; the error is the NOTIFICATION to send.
    fn accept_open(&mut self, open: &Open) -> Result<(), Notification> {
        let peer_asn = open.asn();
        let local_asn = self.config.local_asn;
        let asn_ok = match self.config.peer_asn {
            PeerAsn::Fixed(asn) => peer_asn == asn,
            PeerAsn::Internal => peer_asn == local_asn,
            PeerAsn::External => peer_asn != local_asn,
        };
        if !asn_ok {
            return Err(Notification::bad_peer_as(open.my_as));
        }
        let internal = peer_asn == local_asn;
        // RFC 6286 §2.1: identical identifiers are an error only inside one AS.
        if internal && open.bgp_identifier == self.router_id() {
            return Err(Notification::from(DecodeError::BadBgpIdentifier));
        }
        let hold = self.config.hold_time_secs.min(open.hold_time_secs);
        let keepalive = match self.config.keepalive_secs {
            Some(keepalive) => keepalive.min(hold / 3),
            None => hold / 3,
        };
        let peer_families: BTreeSet<Family> = open.families().into_iter().collect();
        self.connection.codec = CodecContext {
            four_octet_asn: open.four_octet_asn().is_some(),
        };
        self.connection.hold_time = Duration::from_secs(u64::from(hold));
        self.connection.keepalive_interval = Duration::from_secs(u64::from(keepalive));
        self.connection.internal = internal;
        self.connection.families = self
            .config
            .families
            .intersection(&peer_families)
            .copied()
            .collect();
        Ok(())
    }

    fn export_context(&self) -> ExportContext {
        ExportContext {
            local_asn: self.config.local_asn,
            internal: self.connection.internal,
            codec: self.connection.codec,
            families: self.connection.families.clone(),
            next_hop_v4: self.config.next_hop_v4.or(self.connection.local_v4),
            next_hop_v6: self.config.next_hop_v6.or(self.connection.local_v6),
            next_hop_v6_link_local: self.connection.local_v6_link_local,
            graceful_shutdown: self.graceful_shutdown,
        }
    }

    fn flush_updates(&mut self, now: Instant) {
        let context = self.export_context();
        let updates = self.rib.updates(&context);
        if updates.is_empty() {
            return;
        }
        let mut buf = BytesMut::new();
        for update in updates {
            Message::Update(update).encode(&context.codec, &mut buf);
            self.stats.updates_sent += 1;
        }
        self.actions.push_back(Action::Send(buf.to_vec()));
        // RFC 4271 §4.4: any message sent restarts the keepalive interval.
        self.restart_keepalive_timer(now);
    }

    fn send_message(&mut self, message: &Message) {
        if let Message::Update(_) = message {
            self.stats.updates_sent += 1;
        }
        let bytes = message.to_bytes(&self.connection.codec);
        self.actions.push_back(Action::Send(bytes.to_vec()));
    }

    fn send_notification(&mut self, notification: Notification) {
        self.send_message(&Message::Notification(notification.clone()));
        self.actions
            .push_back(Action::NotificationSent(notification));
    }
}

/// Serializes the shared routes by value (serde's `rc` feature is not enabled).
mod shared_routes {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{RouteAttributes, Routes};

    pub(super) fn serialize<S: Serializer>(
        routes: &Routes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        routes.as_ref().serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Routes, D::Error> {
        BTreeMap::<IpNet, RouteAttributes>::deserialize(deserializer).map(Arc::new)
    }
}

fn is_link_local(address: &Ipv6Addr) -> bool {
    address.segments()[0] & 0xffc0 == 0xfe80
}
