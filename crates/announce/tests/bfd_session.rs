//! BFD (RFC 5880): the control packet codec and two sans-IO sessions talking in virtual time.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use ironlb_announce::bfd::packet::{ControlPacket, DecodeError, Diagnostic, State};
use ironlb_announce::bfd::session::{Action, Config, DropReason, Input, Session};
use proptest::prelude::*;

fn packet() -> ControlPacket {
    ControlPacket {
        diagnostic: Diagnostic::ControlDetectionTimeExpired,
        state: State::Up,
        poll: true,
        final_: false,
        control_plane_independent: true,
        demand: false,
        detect_multiplier: 3,
        my_discriminator: 0x1234_5678,
        your_discriminator: 0x9abc_def0,
        desired_min_tx_us: 300_000,
        required_min_rx_us: 250_000,
        required_min_echo_rx_us: 0,
    }
}

fn encode(packet: &ControlPacket) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet.encode(&mut buf);
    buf.to_vec()
}

#[test]
fn packet_round_trip_and_known_bytes() {
    let bytes = encode(&packet());
    assert_eq!(
        bytes,
        vec![
            0x21, 0xe8, 3, 24, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 0x04, 0x93, 0xe0,
            0, 0x03, 0xd0, 0x90, 0, 0, 0, 0
        ]
    );
    assert_eq!(ControlPacket::decode(&bytes), Ok(packet()));
    for length in 0..bytes.len() {
        assert!(
            ControlPacket::decode(&bytes[..length]).is_err(),
            "prefix {length}"
        );
    }
}

#[test]
fn packet_errors_table() {
    let good = encode(&packet());
    let patch = |at: usize, value: u8| {
        let mut bytes = good.clone();
        bytes[at] = value;
        bytes
    };
    let cases = [
        (
            "version 0",
            patch(0, 0x01),
            DecodeError::BadVersion { version: 0 },
        ),
        (
            "version 2",
            patch(0, 0x41),
            DecodeError::BadVersion { version: 2 },
        ),
        (
            "auth bit",
            patch(1, 0xe8 | 0x04),
            DecodeError::AuthenticationNotSupported,
        ),
        ("multipoint", patch(1, 0xe8 | 0x01), DecodeError::Multipoint),
        (
            "detect mult 0",
            patch(2, 0),
            DecodeError::ZeroDetectMultiplier,
        ),
        (
            "length 23",
            patch(3, 23),
            DecodeError::BadLength { length: 23 },
        ),
        (
            "length past end",
            patch(3, 30),
            DecodeError::Truncated { length: 24 },
        ),
        (
            "my discriminator 0",
            {
                let mut bytes = good.clone();
                bytes[4..8].copy_from_slice(&[0; 4]);
                bytes
            },
            DecodeError::ZeroMyDiscriminator,
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(ControlPacket::decode(&bytes), Err(expected), "{name}");
    }
}

/// Two sessions joined by a lossless link; either direction can be cut.
struct Pair {
    a: Session,
    b: Session,
    now: Instant,
    a_to_b: bool,
    b_to_a: bool,
    a_changes: Vec<(State, Diagnostic)>,
    b_changes: Vec<(State, Diagnostic)>,
    a_sent: Vec<ControlPacket>,
}

impl Pair {
    fn new(a: Config, b: Config) -> Self {
        let now = Instant::now();
        Self {
            a: Session::new(a, 1, 7, now),
            b: Session::new(b, 2, 11, now),
            now,
            a_to_b: true,
            b_to_a: true,
            a_changes: Vec::new(),
            b_changes: Vec::new(),
            a_sent: Vec::new(),
        }
    }

    /// Delivers queued packets until both sides are quiet.
    fn pump(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            while let Some(action) = self.a.poll_action() {
                moved = true;
                match action {
                    Action::Send(bytes) => {
                        self.a_sent.push(ControlPacket::decode(&bytes).unwrap());
                        if self.a_to_b {
                            if let Err(reason) = self.b.handle_datagram(self.now, &bytes) {
                                assert_eq!(reason, DropReason::AdminDown);
                            }
                        }
                    }
                    Action::StateChange { to, diagnostic, .. } => {
                        self.a_changes.push((to, diagnostic))
                    }
                }
            }
            while let Some(action) = self.b.poll_action() {
                moved = true;
                match action {
                    Action::Send(bytes) => {
                        if self.b_to_a {
                            if let Err(reason) = self.a.handle_datagram(self.now, &bytes) {
                                assert_eq!(reason, DropReason::AdminDown);
                            }
                        }
                    }
                    Action::StateChange { to, diagnostic, .. } => {
                        self.b_changes.push((to, diagnostic))
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("sessions never went quiet");
    }

    fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        // Bounded: one step per timer fire.
        for _ in 0..100_000 {
            self.pump();
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(deadline) if deadline <= end => {
                    self.now = self.now.max(deadline);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = end;
    }

    /// The first time A reached `state` after `since`.
    fn a_state(&self) -> State {
        self.a.state()
    }
}

#[test]
fn three_way_handshake_reaches_up_on_both_sides() {
    let mut pair = Pair::new(Config::default(), Config::default());
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.a.state(), State::Up);
    assert_eq!(pair.b.state(), State::Up);
    assert_eq!(pair.a_changes.first().map(|c| c.0), Some(State::Init));
    assert!(pair.a_changes.iter().any(|c| c.0 == State::Up));
    // Detection time: 3 × max(300 ms, 300 ms).
    assert_eq!(pair.a.detection_time(), Duration::from_millis(900));
}

#[test]
fn slow_transmission_until_up_then_a_poll_sequence() {
    let mut pair = Pair::new(Config::default(), Config::default());
    pair.run_for(Duration::from_secs(3));
    // Before Up, packets advertise 1 s; after Up, 300 ms, first with Poll until Final.
    let first = &pair.a_sent[0];
    assert_eq!(first.desired_min_tx_us, 1_000_000);
    let up_index = pair
        .a_sent
        .iter()
        .position(|p| p.state == State::Up)
        .unwrap();
    let after_up = &pair.a_sent[up_index..];
    assert!(
        after_up
            .iter()
            .any(|p| p.poll && p.desired_min_tx_us == 300_000),
        "poll sequence"
    );
    let last = pair.a_sent.last().unwrap();
    assert!(!last.poll, "the poll sequence ended with a Final");
    // Steady state: about one packet per 225–300 ms.
    let before = pair.a_sent.len();
    pair.run_for(Duration::from_secs(3));
    let sent = pair.a_sent.len() - before;
    assert!((10..=14).contains(&sent), "{sent} packets in 3 s");
}

#[test]
fn silence_is_detected_within_the_detection_time() {
    let mut pair = Pair::new(Config::default(), Config::default());
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.a_state(), State::Up);
    pair.b_to_a = false;
    let cut = pair.now;
    // Step in 10 ms increments to find when A goes down.
    let mut down_after = None;
    for step in 1..=200 {
        pair.run_for(Duration::from_millis(10));
        if pair.a.state() == State::Down {
            down_after = Some(pair.now - cut);
            let _ = step;
            break;
        }
    }
    let down_after = down_after.expect("A never noticed");
    assert!(down_after <= Duration::from_millis(910), "{down_after:?}");
    assert!(down_after >= Duration::from_millis(600), "{down_after:?}");
    assert_eq!(
        pair.a_changes.last(),
        Some(&(State::Down, Diagnostic::ControlDetectionTimeExpired))
    );
    // B hears A go down and follows (Neighbor Signaled Session Down).
    pair.run_for(Duration::from_secs(2));
    assert!(pair
        .b_changes
        .contains(&(State::Down, Diagnostic::NeighborSignaledSessionDown)));
    // The link heals: both come back Up.
    pair.b_to_a = true;
    pair.run_for(Duration::from_secs(5));
    assert_eq!((pair.a.state(), pair.b.state()), (State::Up, State::Up));
}

#[test]
fn passive_side_waits_for_the_peer() {
    let passive = Config {
        passive: true,
        ..Config::default()
    };
    let mut pair = Pair::new(Config::default(), passive.clone());
    pair.a_to_b = false;
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.b.poll_action(), None, "passive B sent nothing");
    pair.a_to_b = true;
    pair.run_for(Duration::from_secs(3));
    assert_eq!((pair.a.state(), pair.b.state()), (State::Up, State::Up));
    // Two passive sides never come up.
    let mut both = Pair::new(passive.clone(), passive);
    both.run_for(Duration::from_secs(5));
    assert_eq!((both.a.state(), both.b.state()), (State::Down, State::Down));
}

#[test]
fn admin_down_takes_the_peer_down() {
    let mut pair = Pair::new(Config::default(), Config::default());
    pair.run_for(Duration::from_secs(3));
    pair.a.handle(pair.now, Input::AdminDown).unwrap();
    pair.run_for(Duration::from_millis(10));
    assert_eq!(pair.a.state(), State::AdminDown);
    assert_eq!(pair.b.state(), State::Down);
    assert_eq!(
        pair.b_changes.last(),
        Some(&(State::Down, Diagnostic::NeighborSignaledSessionDown))
    );
    pair.a.handle(pair.now, Input::AdminUp).unwrap();
    pair.run_for(Duration::from_secs(5));
    assert_eq!((pair.a.state(), pair.b.state()), (State::Up, State::Up));
}

#[test]
fn negotiated_intervals_follow_the_slower_side() {
    let slow = Config {
        desired_min_tx: Duration::from_millis(500),
        required_min_rx: Duration::from_millis(1000),
        detect_multiplier: 5,
        passive: false,
    };
    let mut pair = Pair::new(Config::default(), slow);
    pair.run_for(Duration::from_secs(5));
    assert_eq!(pair.a.state(), State::Up);
    // A detects B with B's multiplier × max(A's required RX 300 ms, B's desired TX 500 ms).
    assert_eq!(pair.a.detection_time(), Duration::from_millis(2500));
    // A sends no faster than B's required RX (1 s): ~3–4 packets in 3 s.
    let before = pair.a_sent.len();
    pair.run_for(Duration::from_secs(3));
    let sent = pair.a_sent.len() - before;
    assert!((3..=4).contains(&sent), "{sent}");
}

#[test]
fn foreign_discriminators_and_zero_your_discriminator_are_dropped() {
    let now = Instant::now();
    let mut session = Session::new(Config::default(), 5, 1, now);
    let mut wrong = packet();
    wrong.your_discriminator = 6;
    assert_eq!(
        session.handle(now, Input::Packet(wrong)),
        Err(DropReason::WrongDiscriminator { discriminator: 6 })
    );
    let mut zero = packet();
    zero.your_discriminator = 0;
    assert_eq!(
        session.handle(now, Input::Packet(zero)),
        Err(DropReason::ZeroYourDiscriminator { state: State::Up })
    );
    assert_eq!(session.state(), State::Down);
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = ControlPacket::decode(&bytes);
        let now = Instant::now();
        let mut session = Session::new(Config::default(), 9, 3, now);
        let _ = session.handle_datagram(now, &bytes);
        session.handle_timeout(now + Duration::from_secs(1));
    }
}
