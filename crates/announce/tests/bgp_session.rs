//! FSM tables for the BGP session (RFC 4271 §8) in virtual time: every state × event that
//! ironlb's outbound sessions meet, and the Adj-RIB-Out's UPDATE stream.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ipnet::IpNet;
use ironlb_announce::bgp::message::{
    AsSegment, Capability, CodecContext, Community, Family, LargeCommunity, Message, Notification,
    Open, RouteRefresh, Update, AS_SEQUENCE, AS_TRANS, MESSAGE_LEN_MAX,
};
use ironlb_announce::bgp::rib::{AdjRibOut, ExportContext, RouteAttributes};
use ironlb_announce::bgp::session::{Action, Input, PeerAsn, Session, SessionConfig, State};

const LOCAL: &str = "10.0.0.1:40000";
const REMOTE: &str = "10.0.0.2:179";

struct Harness {
    session: Session,
    now: Instant,
    /// Decoded messages sent since the last `take_sent`.
    sent: Vec<Message>,
    actions: Vec<Action>,
    codec: CodecContext,
}

impl Harness {
    fn new(config: SessionConfig) -> Self {
        Self {
            session: Session::new(config),
            now: Instant::now(),
            sent: Vec::new(),
            actions: Vec::new(),
            codec: CodecContext {
                four_octet_asn: true,
            },
        }
    }

    fn drain(&mut self) {
        while let Some(action) = self.session.poll_action() {
            if let Action::Send(bytes) = &action {
                let mut buf = BytesMut::from(&bytes[..]);
                while let Some(message) = Message::decode_frame(&mut buf, &self.codec).unwrap() {
                    self.sent.push(message);
                }
                assert!(buf.is_empty());
            }
            self.actions.push(action);
        }
    }

    fn handle(&mut self, input: Input) {
        self.session.handle(self.now, input);
        self.drain();
    }

    fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        // Fire timers in order up to the target.
        while let Some(deadline) = self.session.poll_timeout() {
            if deadline > target {
                break;
            }
            self.now = self.now.max(deadline);
            self.session.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
    }

    fn receive(&mut self, message: Message) {
        let bytes = message.to_bytes(&self.codec).to_vec();
        self.handle(Input::Received(bytes));
    }

    fn take_sent(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.sent)
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn connected(&mut self) {
        self.handle(Input::TcpConnected {
            local: LOCAL.parse().unwrap(),
            remote: REMOTE.parse().unwrap(),
            local_v6: Some("fd00::1".parse().unwrap()),
            local_v6_link_local: Some("fe80::1".parse().unwrap()),
            local_v4: None,
        });
    }

    /// Idle → Established with a peer OPEN; returns the messages we sent on the way.
    fn establish(&mut self, peer_open: Open) -> Vec<Message> {
        self.handle(Input::Start);
        self.connected();
        self.receive(Message::Open(peer_open));
        self.receive(Message::Keepalive);
        assert_eq!(self.session.state(), State::Established);
        self.take_sent()
    }
}

fn peer_open(asn: u32, hold: u16) -> Open {
    Open {
        my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
        hold_time_secs: hold,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 2),
        capabilities: vec![
            Capability::MultiProtocol { afi: 1, safi: 1 },
            Capability::MultiProtocol { afi: 2, safi: 1 },
            Capability::FourOctetAsn(asn),
        ],
    }
}

fn config() -> SessionConfig {
    SessionConfig::new(64513, PeerAsn::Fixed(64512))
}

fn routes(prefixes: &[&str], attributes: &RouteAttributes) -> BTreeMap<IpNet, RouteAttributes> {
    prefixes
        .iter()
        .map(|p| (p.parse().unwrap(), attributes.clone()))
        .collect()
}

fn states(actions: &[Action]) -> Vec<State> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StateChange { to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

fn notifications_sent(messages: &[Message]) -> Vec<(u8, u8)> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Notification(n) => Some((n.code, n.subcode)),
            _ => None,
        })
        .collect()
}

fn announced(messages: &[Message]) -> BTreeSet<IpNet> {
    let mut prefixes = BTreeSet::new();
    for message in messages {
        if let Message::Update(update) = message {
            prefixes.extend(update.nlri.iter().map(|p| IpNet::V4(*p)));
            if let Some(reach) = &update.attributes.mp_reach {
                prefixes.extend(reach.nlri.iter().copied());
            }
        }
    }
    prefixes
}

#[test]
fn happy_path_reaches_established_and_sends_routes_then_end_of_rib() {
    let mut h = Harness::new(config());
    let attributes = RouteAttributes {
        local_pref: Some(300),
        communities: [Community(0xFDE8_0001)].into(),
        large_communities: [LargeCommunity {
            global: 64513,
            local1: 1,
            local2: 2,
        }]
        .into(),
    };
    h.handle(Input::SetRoutes(
        routes(&["192.0.2.1/32", "2001:db8::1/128"], &attributes).into(),
    ));
    h.handle(Input::Start);
    assert!(h.take_actions().contains(&Action::Connect));
    assert_eq!(h.session.state(), State::Connect);
    h.connected();
    let sent = h.take_sent();
    let [Message::Open(open)] = sent.as_slice() else {
        panic!("expected OPEN, got {sent:?}")
    };
    assert_eq!(open.my_as, 64513);
    assert_eq!(open.hold_time_secs, 90);
    assert_eq!(
        open.bgp_identifier,
        Ipv4Addr::new(10, 0, 0, 1),
        "router id from the local address"
    );
    assert_eq!(open.four_octet_asn(), Some(64513));
    assert_eq!(
        open.families(),
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
    );
    assert!(open.capabilities.contains(&Capability::RouteRefresh));
    assert!(open.graceful_restart().is_none());

    h.receive(Message::Open(peer_open(64512, 90)));
    assert_eq!(h.take_sent(), vec![Message::Keepalive]);
    assert_eq!(h.session.state(), State::OpenConfirm);
    h.receive(Message::Keepalive);
    let sent = h.take_sent();
    assert_eq!(
        states(&h.take_actions()),
        vec![State::OpenSent, State::OpenConfirm, State::Established]
    );
    assert_eq!(
        announced(&sent),
        [
            "192.0.2.1/32".parse().unwrap(),
            "2001:db8::1/128".parse().unwrap()
        ]
        .into()
    );
    let Message::Update(v4) = &sent[0] else {
        panic!()
    };
    assert_eq!(v4.attributes.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(
        v4.attributes.local_pref, None,
        "no LOCAL_PREF to an external peer"
    );
    assert_eq!(
        v4.attributes.as_path,
        Some(vec![AsSegment {
            segment_type: AS_SEQUENCE,
            asns: vec![64513]
        }])
    );
    assert_eq!(
        v4.attributes.communities,
        Some(vec![Community(0xFDE8_0001)])
    );
    assert_eq!(
        v4.attributes.large_communities,
        Some(vec![LargeCommunity {
            global: 64513,
            local1: 1,
            local2: 2
        }])
    );
    let Message::Update(v6) = &sent[1] else {
        panic!()
    };
    let reach = v6.attributes.mp_reach.as_ref().unwrap();
    assert_eq!(
        reach.next_hops,
        vec![
            "fd00::1".parse::<std::net::IpAddr>().unwrap(),
            "fe80::1".parse().unwrap()
        ]
    );
    // End-of-RIB for both families after the initial dump.
    assert_eq!(
        &sent[2..],
        &[
            Message::Update(Update::end_of_rib(Family::Ipv4Unicast)),
            Message::Update(Update::end_of_rib(Family::Ipv6Unicast)),
        ]
    );
    assert_eq!(h.session.stats().advertised_prefixes, 2);
    assert_eq!(h.session.stats().pending_prefixes, 0);
}

#[test]
fn internal_peer_gets_local_pref_and_empty_as_path() {
    let mut h = Harness::new(SessionConfig::new(64512, PeerAsn::Internal));
    h.handle(Input::SetRoutes(
        routes(
            &["192.0.2.1/32", "192.0.2.2/32"],
            &RouteAttributes::default(),
        )
        .into(),
    ));
    let with_pref = RouteAttributes {
        local_pref: Some(250),
        ..RouteAttributes::default()
    };
    let mut all = routes(&["192.0.2.1/32"], &RouteAttributes::default());
    all.extend(routes(&["192.0.2.9/32"], &with_pref));
    h.handle(Input::SetRoutes(all.into()));
    let sent = h.establish(peer_open(64512, 90));
    let prefs: BTreeSet<Option<u32>> = sent
        .iter()
        .filter_map(|m| match m {
            Message::Update(u) if !u.nlri.is_empty() => {
                assert_eq!(u.attributes.as_path, Some(vec![]));
                Some(u.attributes.local_pref)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        prefs,
        [Some(100), Some(250)].into(),
        "default 100, or the advertisement's"
    );
}

#[test]
fn peer_asn_rules() {
    let cases = [
        ("fixed match", PeerAsn::Fixed(64512), 64512, true),
        ("fixed mismatch", PeerAsn::Fixed(64512), 64999, false),
        ("internal match", PeerAsn::Internal, 64513, true),
        ("internal mismatch", PeerAsn::Internal, 64512, false),
        ("external match", PeerAsn::External, 64512, true),
        ("external mismatch", PeerAsn::External, 64513, false),
        (
            "fixed four-octet",
            PeerAsn::Fixed(4_200_000_000),
            4_200_000_000,
            true,
        ),
    ];
    for (name, rule, peer_asn, ok) in cases {
        let mut h = Harness::new(SessionConfig::new(64513, rule));
        h.handle(Input::Start);
        h.connected();
        h.take_sent();
        h.receive(Message::Open(peer_open(peer_asn, 90)));
        let sent = h.take_sent();
        if ok {
            assert_eq!(h.session.state(), State::OpenConfirm, "{name}");
        } else {
            assert_eq!(
                notifications_sent(&sent),
                vec![(2, 2)],
                "{name}: Bad Peer AS"
            );
            assert_eq!(h.session.state(), State::Idle, "{name}");
            assert!(h.take_actions().contains(&Action::Close), "{name}");
        }
    }
}

#[test]
fn same_identifier_is_refused_inside_one_as() {
    let mut config = SessionConfig::new(64512, PeerAsn::Internal);
    config.router_id = Some(Ipv4Addr::new(10, 0, 0, 2));
    let mut h = Harness::new(config);
    h.handle(Input::Start);
    h.connected();
    h.take_sent();
    h.receive(Message::Open(peer_open(64512, 90)));
    assert_eq!(notifications_sent(&h.take_sent()), vec![(2, 3)]);
}

#[test]
fn hold_time_negotiation_keepalives_and_expiry() {
    // (ours, theirs, negotiated hold, keepalive interval)
    let cases = [
        (90, 9, 9, 3),
        (9, 90, 9, 3),
        (30, 0, 0, 0),
        (0, 90, 0, 0),
        (3, 3, 3, 1),
    ];
    for (ours, theirs, hold, keepalive) in cases {
        let mut config = config();
        config.hold_time_secs = ours;
        let mut h = Harness::new(config);
        h.establish(peer_open(64512, theirs));
        assert_eq!(
            h.session.negotiated_hold_time(),
            Duration::from_secs(hold),
            "{ours}/{theirs}"
        );
        if hold == 0 {
            assert_eq!(h.session.poll_timeout(), None, "no timers with hold time 0");
            h.advance(Duration::from_secs(3600));
            assert_eq!(h.session.state(), State::Established);
            continue;
        }
        // Keepalives go out every interval while the peer keeps talking.
        h.advance(Duration::from_secs(keepalive) + Duration::from_millis(1));
        assert_eq!(h.take_sent(), vec![Message::Keepalive], "{ours}/{theirs}");
        h.receive(Message::Keepalive);
        // Then the peer goes silent: hold timer expiry after `hold` seconds.
        h.advance(Duration::from_secs(hold) - Duration::from_millis(10));
        assert_eq!(h.session.state(), State::Established);
        h.take_actions();
        h.advance(Duration::from_millis(20));
        // Idle, then the automatic restart (no backoff yet after an Established session).
        assert_eq!(
            states(&h.take_actions()),
            vec![State::Idle, State::Connect],
            "{ours}/{theirs}"
        );
        assert_eq!(notifications_sent(&h.take_sent()), vec![(4, 0)]);
    }
}

#[test]
fn keepalive_interval_from_configuration_is_capped_at_a_third_of_hold() {
    let mut config = config();
    config.keepalive_secs = Some(1);
    let mut h = Harness::new(config);
    h.establish(peer_open(64512, 30));
    h.advance(Duration::from_millis(1001));
    assert_eq!(h.take_sent(), vec![Message::Keepalive]);
}

#[test]
fn open_sent_hold_timer_is_four_minutes() {
    let mut h = Harness::new(config());
    h.handle(Input::Start);
    h.connected();
    h.advance(Duration::from_secs(239));
    assert_eq!(h.session.state(), State::OpenSent);
    h.take_actions();
    h.advance(Duration::from_secs(2));
    assert_eq!(states(&h.take_actions())[0], State::Idle);
    assert_eq!(notifications_sent(&h.take_sent()), vec![(4, 0)]);
}

#[test]
fn connect_failures_back_off_and_reset_when_established() {
    let mut config = config();
    config.retry_delay_min = Duration::from_secs(1);
    config.retry_delay_max = Duration::from_secs(4);
    let mut h = Harness::new(config);
    h.handle(Input::Start);
    let mut connects = Vec::new();
    let start = h.now;
    for _ in 0..6 {
        h.take_actions();
        h.handle(Input::TcpFailed);
        assert_eq!(h.session.state(), State::Active);
        let deadline = h.session.poll_timeout().unwrap();
        h.advance(deadline - h.now);
        assert!(h.take_actions().contains(&Action::Connect));
        connects.push((h.now - start).as_secs());
    }
    // Immediately, then 1, 2, 4, 4, 4 seconds later.
    assert_eq!(connects, vec![0, 1, 3, 7, 11, 15]);
    // A connect that hangs is abandoned after the connect timeout (10 s).
    h.take_actions();
    h.advance(Duration::from_secs(10));
    let actions = h.take_actions();
    assert!(actions.contains(&Action::Close) && states(&actions).contains(&State::Active));
    // Established resets the backoff: the next failure retries at once.
    let deadline = h.session.poll_timeout().unwrap();
    h.advance(deadline - h.now);
    h.connected();
    h.receive(Message::Open(peer_open(64512, 90)));
    h.receive(Message::Keepalive);
    assert_eq!(h.session.state(), State::Established);
    h.take_actions();
    h.handle(Input::TcpFailed);
    assert_eq!(h.session.state(), State::Idle);
    h.advance(Duration::ZERO);
    assert!(
        h.take_actions().contains(&Action::Connect),
        "restart at once after a reset backoff"
    );
}

#[test]
fn unexpected_messages_are_fsm_errors() {
    let update = Message::Update(Update::end_of_rib(Family::Ipv4Unicast));
    let refresh = Message::RouteRefresh(RouteRefresh {
        afi: 1,
        subtype: 0,
        safi: 1,
    });
    // (state to reach, message, expected NOTIFICATION)
    let cases = [
        (State::OpenSent, update.clone(), (5, 1)),
        (State::OpenSent, Message::Keepalive, (5, 1)),
        (State::OpenSent, refresh.clone(), (5, 1)),
        (State::OpenConfirm, update.clone(), (5, 2)),
        (
            State::OpenConfirm,
            Message::Open(peer_open(64512, 90)),
            (5, 2),
        ),
        (
            State::Established,
            Message::Open(peer_open(64512, 90)),
            (5, 3),
        ),
    ];
    for (state, message, expected) in cases {
        let mut h = Harness::new(config());
        h.handle(Input::Start);
        h.connected();
        if state >= State::OpenConfirm {
            h.receive(Message::Open(peer_open(64512, 90)));
        }
        if state >= State::Established {
            h.receive(Message::Keepalive);
        }
        assert_eq!(h.session.state(), state);
        h.take_sent();
        h.receive(message.clone());
        assert_eq!(
            notifications_sent(&h.take_sent()),
            vec![expected],
            "{state:?} {message:?}"
        );
        assert_eq!(h.session.state(), State::Idle);
    }
}

#[test]
fn malformed_input_sends_the_matching_notification() {
    let mut h = Harness::new(config());
    h.establish(peer_open(64512, 90));
    let mut bad = Message::Keepalive.to_bytes(&h.codec).to_vec();
    bad[0] = 0;
    h.handle(Input::Received(bad));
    assert_eq!(notifications_sent(&h.take_sent()), vec![(1, 1)]);
    assert_eq!(h.session.state(), State::Idle);
}

#[test]
fn bytes_split_anywhere_are_reassembled() {
    let mut h = Harness::new(config());
    h.handle(Input::Start);
    h.connected();
    let mut stream = Message::Open(peer_open(64512, 90))
        .to_bytes(&h.codec)
        .to_vec();
    stream.extend_from_slice(&Message::Keepalive.to_bytes(&h.codec));
    for byte in stream {
        h.handle(Input::Received(vec![byte]));
    }
    assert_eq!(h.session.state(), State::Established);
}

#[test]
fn notification_received_closes_without_answering() {
    let mut h = Harness::new(config());
    h.establish(peer_open(64512, 90));
    h.receive(Message::Notification(Notification::cease(2)));
    assert!(notifications_sent(&h.take_sent()).is_empty());
    let actions = h.take_actions();
    assert!(actions.contains(&Action::NotificationReceived(Notification::cease(2))));
    assert!(actions.contains(&Action::Close));
    assert_eq!(h.session.state(), State::Idle);
    // Automatic restart follows.
    h.advance(Duration::ZERO);
    assert_eq!(h.session.state(), State::Connect);
}

#[test]
fn manual_stop_ceases_and_stays_idle() {
    let mut h = Harness::new(config());
    h.establish(peer_open(64512, 90));
    h.handle(Input::Stop);
    assert_eq!(notifications_sent(&h.take_sent()), vec![(6, 2)]);
    assert_eq!(h.session.state(), State::Idle);
    assert_eq!(
        h.session.poll_timeout(),
        None,
        "no restart after a manual stop"
    );
}

#[test]
fn bfd_down_tears_the_session_down_at_once() {
    let mut h = Harness::new(config());
    h.establish(peer_open(64512, 90));
    h.handle(Input::BfdDown);
    assert_eq!(notifications_sent(&h.take_sent()), vec![(6, 10)]);
    assert_eq!(h.session.state(), State::Idle);
    // BFD down before the session is up changes nothing.
    let mut idle = Harness::new(config());
    idle.handle(Input::Start);
    idle.handle(Input::BfdDown);
    assert_eq!(idle.session.state(), State::Connect);
}

#[test]
fn planned_stop_sends_graceful_shutdown_then_withdraws_then_ceases() {
    let mut config = config();
    config.shutdown_wait = Duration::from_secs(2);
    let mut h = Harness::new(config);
    h.handle(Input::SetRoutes(
        routes(
            &["192.0.2.1/32", "2001:db8::1/128"],
            &RouteAttributes::default(),
        )
        .into(),
    ));
    h.establish(peer_open(64512, 90));
    h.handle(Input::PlannedStop);
    let sent = h.take_sent();
    assert_eq!(announced(&sent).len(), 2, "both routes re-sent");
    for message in &sent {
        let Message::Update(update) = message else {
            panic!("{message:?}")
        };
        assert_eq!(
            update.attributes.communities,
            Some(vec![Community::GRACEFUL_SHUTDOWN])
        );
    }
    h.advance(Duration::from_millis(1999));
    assert!(h.take_sent().is_empty());
    h.advance(Duration::from_millis(2));
    let sent = h.take_sent();
    let [Message::Update(v4), Message::Update(v6), Message::Notification(cease)] = sent.as_slice()
    else {
        panic!("{sent:?}")
    };
    assert_eq!(v4.withdrawn, vec!["192.0.2.1/32".parse().unwrap()]);
    assert_eq!(
        v6.attributes.mp_unreach.as_ref().unwrap().withdrawn,
        vec!["2001:db8::1/128".parse::<IpNet>().unwrap()]
    );
    assert_eq!((cease.code, cease.subcode), (6, 2));
    assert!(h.take_actions().contains(&Action::Stopped));
    assert_eq!(h.session.state(), State::Idle);
}

#[test]
fn route_changes_send_only_the_difference() {
    let mut h = Harness::new(config());
    let base = RouteAttributes::default();
    h.handle(Input::SetRoutes(
        routes(&["192.0.2.1/32", "192.0.2.2/32"], &base).into(),
    ));
    h.establish(peer_open(64512, 90));
    h.handle(Input::SetRoutes(
        routes(&["192.0.2.2/32", "192.0.2.3/32"], &base).into(),
    ));
    let sent = h.take_sent();
    let [Message::Update(withdraw), Message::Update(announce)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(withdraw.withdrawn, vec!["192.0.2.1/32".parse().unwrap()]);
    assert_eq!(announce.nlri, vec!["192.0.2.3/32".parse().unwrap()]);
    // Same routes again: nothing.
    h.handle(Input::SetRoutes(
        routes(&["192.0.2.2/32", "192.0.2.3/32"], &base).into(),
    ));
    assert!(h.take_sent().is_empty());
    // A route refresh re-sends everything.
    h.receive(Message::RouteRefresh(RouteRefresh {
        afi: 1,
        subtype: 0,
        safi: 1,
    }));
    assert_eq!(announced(&h.take_sent()).len(), 2);
}

#[test]
fn reconnect_resends_everything() {
    let mut h = Harness::new(config());
    h.handle(Input::SetRoutes(
        routes(&["192.0.2.1/32"], &RouteAttributes::default()).into(),
    ));
    h.establish(peer_open(64512, 90));
    h.handle(Input::TcpFailed);
    assert_eq!(h.session.stats().advertised_prefixes, 0);
    h.advance(Duration::ZERO);
    h.connected();
    h.receive(Message::Open(peer_open(64512, 90)));
    h.receive(Message::Keepalive);
    assert_eq!(
        announced(&h.take_sent()),
        ["192.0.2.1/32".parse().unwrap()].into()
    );
}

#[test]
fn four_octet_asn_towards_an_old_speaker_uses_as_trans_and_as4_path() {
    let mut h = Harness::new(SessionConfig::new(4_200_000_001, PeerAsn::Fixed(65000)));
    h.handle(Input::SetRoutes(
        routes(&["192.0.2.1/32"], &RouteAttributes::default()).into(),
    ));
    h.handle(Input::Start);
    h.connected();
    let sent = h.take_sent();
    let [Message::Open(open)] = sent.as_slice() else {
        panic!()
    };
    assert_eq!(open.my_as, AS_TRANS);
    assert_eq!(open.asn(), 4_200_000_001);
    let old = Open {
        capabilities: vec![],
        ..peer_open(65000, 90)
    };
    h.receive(Message::Open(old));
    assert_eq!(h.take_sent(), vec![Message::Keepalive]);
    h.codec = CodecContext {
        four_octet_asn: false,
    };
    h.receive(Message::Keepalive);
    let sent = h.take_sent();
    let Message::Update(update) = &sent[0] else {
        panic!()
    };
    assert_eq!(
        update.attributes.as_path,
        Some(vec![AsSegment {
            segment_type: AS_SEQUENCE,
            asns: vec![u32::from(AS_TRANS)]
        }])
    );
    assert_eq!(
        update.attributes.as4_path,
        Some(vec![AsSegment {
            segment_type: AS_SEQUENCE,
            asns: vec![4_200_000_001]
        }])
    );
    // The old speaker negotiated IPv4 only: one End-of-RIB.
    assert_eq!(sent.len(), 2);
}

#[test]
fn graceful_restart_capability() {
    let mut config = config();
    config.graceful_restart_secs = Some(120);
    let mut h = Harness::new(config);
    h.handle(Input::Start);
    h.connected();
    let sent = h.take_sent();
    let [Message::Open(open)] = sent.as_slice() else {
        panic!()
    };
    let restart = open.graceful_restart().unwrap();
    assert_eq!(restart.restart_time_secs, 120);
    assert_eq!(restart.families.len(), 2);
    assert!(restart.families.iter().all(|f| f.forwarding_preserved));
}

#[test]
fn messages_in_idle_are_ignored() {
    let mut h = Harness::new(config());
    h.receive(Message::Keepalive);
    h.handle(Input::TcpFailed);
    h.handle(Input::BfdDown);
    assert_eq!(h.session.state(), State::Idle);
    assert!(h.take_actions().is_empty());
}

// ---- Adj-RIB-Out ----

fn export(internal: bool) -> ExportContext {
    ExportContext {
        local_asn: 64513,
        internal,
        codec: CodecContext {
            four_octet_asn: true,
        },
        families: Family::ALL.into_iter().collect(),
        next_hop_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
        next_hop_v6: Some("fd00::1".parse().unwrap()),
        next_hop_v6_link_local: None,
        graceful_shutdown: false,
    }
}

fn host_routes(count: u32, v6: bool) -> BTreeMap<IpNet, RouteAttributes> {
    (0..count)
        .map(|i| {
            let prefix: IpNet = if v6 {
                IpNet::V6(
                    ipnet::Ipv6Net::new(
                        std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)),
                        128,
                    )
                    .unwrap(),
                )
            } else {
                IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap())
            };
            (prefix, RouteAttributes::default())
        })
        .collect()
}

fn encoded_sizes(updates: &[Update]) -> Vec<usize> {
    updates
        .iter()
        .map(|u| {
            Message::Update(u.clone())
                .to_bytes(&CodecContext {
                    four_octet_asn: true,
                })
                .len()
        })
        .collect()
}

#[test]
fn many_nlris_per_update_within_4096_bytes() {
    let mut rib = AdjRibOut::default();
    let mut all = host_routes(1000, false);
    all.extend(host_routes(1000, true));
    rib.set_desired(all);
    let updates = rib.updates(&export(false));
    let sizes = encoded_sizes(&updates);
    assert!(
        sizes.iter().all(|size| *size <= MESSAGE_LEN_MAX),
        "{sizes:?}"
    );
    // 1000 × 5 bytes of IPv4 NLRI fit in 2 UPDATEs; 1000 × 17 bytes of IPv6 in 5.
    assert_eq!(updates.len(), 2 + 5, "{sizes:?}");
    assert_eq!(
        announced(&updates.into_iter().map(Message::Update).collect::<Vec<_>>()).len(),
        2000
    );
    assert_eq!(rib.advertised_len(), 2000);
    assert!(
        rib.updates(&export(false)).is_empty(),
        "nothing left to send"
    );

    // Withdraw all: batched just as tightly.
    rib.set_desired(BTreeMap::new());
    let withdrawals = rib.updates(&export(false));
    let sizes = encoded_sizes(&withdrawals);
    assert!(
        sizes.iter().all(|size| *size <= MESSAGE_LEN_MAX),
        "{sizes:?}"
    );
    assert_eq!(withdrawals.len(), 2 + 5);
    assert_eq!(rib.advertised_len(), 0);
}

#[test]
fn prefixes_group_by_identical_attributes() {
    let mut rib = AdjRibOut::default();
    let a = RouteAttributes {
        communities: [Community(1)].into(),
        ..RouteAttributes::default()
    };
    let b = RouteAttributes {
        communities: [Community(2)].into(),
        ..RouteAttributes::default()
    };
    let mut desired = routes(&["192.0.2.1/32", "192.0.2.3/32"], &a);
    desired.extend(routes(&["192.0.2.2/32", "192.0.2.4/32"], &b));
    rib.set_desired(desired);
    let updates = rib.updates(&export(false));
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].nlri.len(), 2);
    assert_eq!(updates[1].nlri.len(), 2);
    // Changing one prefix's attributes re-announces just that prefix.
    let mut changed = routes(&["192.0.2.1/32", "192.0.2.3/32", "192.0.2.2/32"], &a);
    changed.extend(routes(&["192.0.2.4/32"], &b));
    rib.set_desired(changed);
    let updates = rib.updates(&export(false));
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].nlri, vec!["192.0.2.2/32".parse().unwrap()]);
}

#[test]
fn pending_counts_and_families_without_next_hop_wait() {
    let mut rib = AdjRibOut::default();
    let mut all = host_routes(3, false);
    all.extend(host_routes(2, true));
    rib.set_desired(all);
    let mut context = export(false);
    context.next_hop_v6 = None;
    assert_eq!(rib.pending_len(&context), 5);
    let updates = rib.updates(&context);
    assert_eq!(updates.len(), 1, "IPv6 waits for a next hop");
    assert_eq!(rib.pending_len(&context), 2);
    // Host bits are cleared.
    rib.set_desired(routes(&["192.0.2.77/24"], &RouteAttributes::default()));
    let updates = rib.updates(&export(false));
    let announced: Vec<_> = updates.iter().flat_map(|u| u.nlri.clone()).collect();
    assert_eq!(announced, vec!["192.0.2.0/24".parse().unwrap()]);
    rib.reset();
    assert_eq!(rib.advertised_len(), 0);
}
