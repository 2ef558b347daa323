//! One BFD session in asynchronous mode (RFC 5880 §6), sans-IO.
//!
//! Call order: [`Session::handle`] for every received packet or admin change,
//! [`Session::handle_timeout`] when [`Session::poll_timeout`] passes, then drain
//! [`Session::poll_action`]. Jitter comes from a seeded generator inside the session, so a run
//! is reproducible from its seed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use super::packet::{ControlPacket, DecodeError, Diagnostic, State};

/// While a session is not Up, packets go out at most once a second (RFC 5880 §6.8.3).
const SLOW_TX: Duration = Duration::from_secs(1);

/// A `BFDProfile`'s timers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// `transmitInterval`: desired minimum transmit interval.
    pub desired_min_tx: Duration,
    /// `receiveInterval`: required minimum receive interval.
    pub required_min_rx: Duration,
    /// `detectMultiplier`.
    pub detect_multiplier: u8,
    /// `passiveMode`: send nothing until the peer has sent something.
    pub passive: bool,
}

impl Default for Config {
    /// MetalLB's / FRR's defaults: 300 ms × 3.
    fn default() -> Self {
        Self {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_multiplier: 3,
            passive: false,
        }
    }
}

/// What a session is told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// A received control packet (already decoded and TTL-checked by the driver).
    Packet(ControlPacket),
    /// Take the session administratively down (sends AdminDown to the peer).
    AdminDown,
    /// Leave AdminDown.
    AdminUp,
}

/// What a session asks of its driver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Send this control packet.
    Send(Vec<u8>),
    /// The session state changed.
    StateChange {
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// Local diagnostic at the change.
        diagnostic: Diagnostic,
    },
}

/// Why a decoded packet was discarded by the session (RFC 5880 §6.8.6).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// The packet could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Your Discriminator is zero while the sender is Init or Up.
    #[error("your discriminator is zero in state {state:?}")]
    ZeroYourDiscriminator {
        /// The sender's state.
        state: State,
    },
    /// Your Discriminator is not ours.
    #[error("your discriminator {discriminator} is not ours")]
    WrongDiscriminator {
        /// The discriminator received.
        discriminator: u32,
    },
    /// The session is AdminDown.
    #[error("session is administratively down")]
    AdminDown,
}

/// One BFD session.
#[derive(Debug)]
pub struct Session {
    config: Config,
    state: State,
    remote_state: State,
    local_discriminator: u32,
    remote_discriminator: u32,
    local_diagnostic: Diagnostic,
    remote_min_rx: Duration,
    remote_desired_min_tx: Duration,
    remote_detect_multiplier: u8,
    /// The desired TX interval advertised now (1 s until Up).
    advertised_min_tx: Duration,
    /// A poll sequence is under way: send P until F comes back.
    polling: bool,
    /// Answer the next packet with F.
    send_final: bool,
    next_tx: Option<Instant>,
    detection_deadline: Option<Instant>,
    rng_state: u64,
    actions: VecDeque<Action>,
}

impl Session {
    /// A session in Down. `local_discriminator` must be non-zero and unique on this node;
    /// `seed` drives the transmit jitter.
    pub fn new(config: Config, local_discriminator: u32, seed: u64, now: Instant) -> Self {
        assert!(
            local_discriminator != 0,
            "BFD local discriminator must be non-zero"
        );
        let passive = config.passive;
        Self {
            config,
            state: State::Down,
            remote_state: State::Down,
            local_discriminator,
            remote_discriminator: 0,
            local_diagnostic: Diagnostic::None,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_min_tx: Duration::ZERO,
            remote_detect_multiplier: 0,
            advertised_min_tx: SLOW_TX,
            polling: false,
            send_final: false,
            next_tx: (!passive).then_some(now),
            detection_deadline: None,
            rng_state: seed | 1,
            actions: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The time without packets after which the session goes Down, once negotiated.
    pub fn detection_time(&self) -> Duration {
        let interval = self.config.required_min_rx.max(self.remote_desired_min_tx);
        interval * u32::from(self.remote_detect_multiplier)
    }

    /// Next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Session::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_tx, self.detection_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Decodes and handles a received datagram; the error says why it was dropped.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) -> Result<(), DropReason> {
        let packet = ControlPacket::decode(bytes)?;
        self.receive(now, packet)
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: Input) -> Result<(), DropReason> {
        match input {
            Input::Packet(packet) => self.receive(now, packet),
            Input::AdminDown => {
                self.local_diagnostic = Diagnostic::AdministrativelyDown;
                self.detection_deadline = None;
                self.set_state(now, State::AdminDown);
                self.transmit(now);
                Ok(())
            }
            Input::AdminUp => {
                if self.state == State::AdminDown {
                    self.local_diagnostic = Diagnostic::None;
                    self.set_state(now, State::Down);
                }
                Ok(())
            }
        }
    }

    /// Sends the periodic packet and detects a silent peer.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self
            .detection_deadline
            .is_some_and(|deadline| deadline <= now)
        {
            self.detection_deadline = None;
            if matches!(self.state, State::Init | State::Up) {
                self.local_diagnostic = Diagnostic::ControlDetectionTimeExpired;
                // RFC 5880 §6.8.1: forget the peer's discriminator when detection expires.
                self.remote_discriminator = 0;
                self.set_state(now, State::Down);
            }
        }
        if self.next_tx.is_some_and(|deadline| deadline <= now) {
            self.transmit(now);
        }
    }

    fn receive(&mut self, now: Instant, packet: ControlPacket) -> Result<(), DropReason> {
        if packet.your_discriminator == 0 && matches!(packet.state, State::Init | State::Up) {
            return Err(DropReason::ZeroYourDiscriminator {
                state: packet.state,
            });
        }
        if packet.your_discriminator != 0 && packet.your_discriminator != self.local_discriminator {
            return Err(DropReason::WrongDiscriminator {
                discriminator: packet.your_discriminator,
            });
        }
        if self.state == State::AdminDown {
            return Err(DropReason::AdminDown);
        }
        self.remote_discriminator = packet.my_discriminator;
        self.remote_state = packet.state;
        self.remote_desired_min_tx = Duration::from_micros(u64::from(packet.desired_min_tx_us));
        self.remote_min_rx = Duration::from_micros(u64::from(packet.required_min_rx_us));
        self.remote_detect_multiplier = packet.detect_multiplier;
        if packet.final_ && self.polling {
            self.polling = false;
        }
        match (self.state, packet.state) {
            (State::Init | State::Up, State::AdminDown) => {
                self.local_diagnostic = Diagnostic::NeighborSignaledSessionDown;
                self.set_state(now, State::Down);
            }
            (State::Down, State::Down) => self.set_state(now, State::Init),
            (State::Down | State::Init, State::Init | State::Up) => self.set_state(now, State::Up),
            (State::Up, State::Down) => {
                self.local_diagnostic = Diagnostic::NeighborSignaledSessionDown;
                self.set_state(now, State::Down);
            }
            _ => {}
        }
        if matches!(self.state, State::Init | State::Up) {
            self.detection_deadline = Some(now + self.detection_time());
        } else {
            self.detection_deadline = None;
        }
        if packet.poll {
            // RFC 5880 §6.8.7: answer a Poll at once with Final.
            self.send_final = true;
            self.transmit(now);
        } else if self.next_tx.is_none() && self.remote_min_rx > Duration::ZERO {
            // Passive mode: start sending now that the peer has spoken.
            self.next_tx = Some(now);
        }
        Ok(())
    }

    fn set_state(&mut self, now: Instant, next: State) {
        if next == self.state {
            return;
        }
        let from = self.state;
        self.state = next;
        let desired = if next == State::Up {
            self.config.desired_min_tx
        } else {
            SLOW_TX
        };
        if desired != self.advertised_min_tx {
            self.advertised_min_tx = desired;
            // RFC 5880 §6.8.3: a timer change while Up runs a poll sequence.
            if next == State::Up || from == State::Up {
                self.polling = true;
            }
        }
        if next == State::Up {
            self.local_diagnostic = Diagnostic::None;
        }
        tracing::debug!(?from, to = ?next, diagnostic = ?self.local_diagnostic, "bfd state transition");
        self.actions.push_back(Action::StateChange {
            from,
            to: next,
            diagnostic: self.local_diagnostic,
        });
        // Tell the peer at once rather than at the next periodic packet.
        if self.next_tx.is_some() || !self.config.passive {
            self.next_tx = Some(now);
        }
    }

    fn transmit(&mut self, now: Instant) {
        let packet = ControlPacket {
            diagnostic: self.local_diagnostic,
            state: self.state,
            poll: self.polling && !self.send_final,
            final_: self.send_final,
            control_plane_independent: false,
            demand: false,
            detect_multiplier: self.config.detect_multiplier,
            my_discriminator: self.local_discriminator,
            your_discriminator: self.remote_discriminator,
            desired_min_tx_us: micros(self.advertised_min_tx),
            required_min_rx_us: micros(self.config.required_min_rx),
            required_min_echo_rx_us: 0,
        };
        self.send_final = false;
        let mut buf = BytesMut::with_capacity(super::packet::PACKET_LEN);
        packet.encode(&mut buf);
        self.actions.push_back(Action::Send(buf.to_vec()));
        self.next_tx = Some(now + self.jittered_interval());
    }

    /// RFC 5880 §6.8.7: the interval is max(our desired TX, the peer's required RX), reduced
    /// by a random 0–25 % (10–25 % when the detect multiplier is 1).
    fn jittered_interval(&mut self) -> Duration {
        let interval = self.advertised_min_tx.max(self.remote_min_rx);
        // xorshift64: cheap, seeded, reproducible.
        self.rng_state ^= self.rng_state << 13;
        self.rng_state ^= self.rng_state >> 7;
        self.rng_state ^= self.rng_state << 17;
        let max_reduction_percent: u32 = 25;
        let min_reduction_percent: u32 = if self.config.detect_multiplier == 1 {
            10
        } else {
            0
        };
        let span = max_reduction_percent - min_reduction_percent + 1;
        // Invariant: the remainder is below `span` (≤ 26), so it fits in u32.
        let reduction = min_reduction_percent + (self.rng_state % u64::from(span)) as u32;
        interval * (100 - reduction) / 100
    }
}

fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}
