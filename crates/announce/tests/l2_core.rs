//! Table tests of the responder rules, the gratuitous schedule and interface eligibility.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ironlb_announce::l2::proto::interfaces::{
    eligibility, ExcludeList, InterfaceSelection, LinkState, SkipReason, DEFAULT_EXCLUDES,
};
use ironlb_announce::l2::proto::packet::{
    solicited_node_group, ArpOperation, ArpPacket, DecodeError, EthernetHeader, Frame, Ipv6Header,
    MacAddr, NdpMessage, NdpOptions, ALL_NODES, ETHER_TYPE_ARP, ETHER_TYPE_IPV6,
    NEXT_HEADER_ICMPV6,
};
use ironlb_announce::l2::proto::responder::{DropReason, InterfaceIdentity, Outcome, Responder};
use ironlb_announce::l2::proto::schedule::{Action, GratuitousSchedule, Input, BURST_OFFSETS_MS};

const OURS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
const CLIENT: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 2]);
const OTHER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 3]);
const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);

fn responder() -> Responder {
    let mut responder = Responder::new(InterfaceIdentity {
        name: "eth0".into(),
        mac: OURS,
        link_local: Some("fe80::1".parse().unwrap()),
    });
    responder.set_announced(BTreeSet::from([IpAddr::V4(VIP4), IpAddr::V6(VIP6)]));
    responder
}

fn arp(
    destination: MacAddr,
    source: MacAddr,
    operation: ArpOperation,
    sender_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    Frame::Arp {
        ethernet: EthernetHeader {
            destination,
            source,
            ether_type: ETHER_TYPE_ARP,
        },
        arp: ArpPacket {
            operation,
            sender_mac: source,
            sender_ip,
            target_mac: MacAddr::ZERO,
            target_ip,
        },
    }
    .to_bytes()
    .to_vec()
}

fn ndp(source: Ipv6Addr, destination: Ipv6Addr, message: NdpMessage) -> Vec<u8> {
    let eth_destination = if destination.is_multicast() {
        MacAddr::ipv6_multicast(destination)
    } else {
        OURS
    };
    Frame::Ndp {
        ethernet: EthernetHeader {
            destination: eth_destination,
            source: CLIENT,
            ether_type: ETHER_TYPE_IPV6,
        },
        ip: Ipv6Header {
            next_header: NEXT_HEADER_ICMPV6,
            hop_limit: 255,
            source,
            destination,
        },
        message,
    }
    .to_bytes()
    .to_vec()
}

fn ns(target: Ipv6Addr, source_lla: Option<MacAddr>) -> NdpMessage {
    NdpMessage::Solicitation {
        target,
        options: NdpOptions {
            source_lla,
            target_lla: None,
        },
    }
}

#[test]
fn arp_request_for_announced_ip_is_answered_unicast() {
    let request = arp(
        MacAddr::BROADCAST,
        CLIENT,
        ArpOperation::Request,
        CLIENT4,
        VIP4,
    );
    let Ok(Outcome::Reply {
        ip,
        requester,
        frame,
    }) = responder().handle_frame(&request)
    else {
        panic!()
    };
    assert_eq!((ip, requester), (IpAddr::V4(VIP4), CLIENT));
    let Frame::Arp { ethernet, arp } = frame else {
        panic!()
    };
    assert_eq!((ethernet.destination, ethernet.source), (CLIENT, OURS));
    assert_eq!(arp.operation, ArpOperation::Reply);
    assert_eq!(
        (arp.sender_mac, arp.sender_ip, arp.target_mac, arp.target_ip),
        (OURS, VIP4, CLIENT, CLIENT4)
    );
}

#[test]
fn responder_drop_table() {
    let other_vip = Ipv4Addr::new(10, 0, 0, 101);
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        (
            "not announced",
            arp(
                MacAddr::BROADCAST,
                CLIENT,
                ArpOperation::Request,
                CLIENT4,
                other_vip,
            ),
            DropReason::NotAnnounced(IpAddr::V4(other_vip)),
        ),
        (
            "unicast to another MAC",
            arp(OTHER, CLIENT, ArpOperation::Request, CLIENT4, VIP4),
            DropReason::EthernetDestinationNotUs(OTHER),
        ),
        (
            "our own frame",
            arp(MacAddr::BROADCAST, OURS, ArpOperation::Request, VIP4, VIP4),
            DropReason::OwnFrame,
        ),
        (
            "reply for someone else",
            arp(CLIENT, OTHER, ArpOperation::Reply, other_vip, CLIENT4),
            DropReason::AnswerIgnored,
        ),
        (
            "truncated",
            arp(
                MacAddr::BROADCAST,
                CLIENT,
                ArpOperation::Request,
                CLIENT4,
                VIP4,
            )[..20]
                .to_vec(),
            DropReason::Malformed(DecodeError::Truncated {
                layer: ironlb_announce::l2::proto::packet::Layer::Arp,
                needed: 28,
                available: 6,
            }),
        ),
        (
            "ns for another ip",
            ndp(
                CLIENT6,
                solicited_node_group("fd00::101".parse().unwrap()),
                ns("fd00::101".parse().unwrap(), Some(CLIENT)),
            ),
            DropReason::NotAnnounced("fd00::101".parse().unwrap()),
        ),
        (
            "ns sent to the wrong group",
            ndp(CLIENT6, ALL_NODES, ns(VIP6, Some(CLIENT))),
            DropReason::SolicitationDestination {
                target: VIP6,
                destination: ALL_NODES,
            },
        ),
    ];
    let mut with_ethertype = arp(
        MacAddr::BROADCAST,
        CLIENT,
        ArpOperation::Request,
        CLIENT4,
        VIP4,
    );
    with_ethertype[12..14].copy_from_slice(&[0x08, 0x00]);
    let responder = responder();
    for (name, frame, want) in cases {
        assert_eq!(responder.handle_frame(&frame), Err(want), "{name}");
    }
    let foreign = responder.handle_frame(&with_ethertype).unwrap_err();
    assert!(
        foreign.is_expected(),
        "IPv4 traffic is not counted as broken"
    );
}

#[test]
fn interface_limit_is_per_responder() {
    let mut responder = responder();
    responder.set_announced(BTreeSet::from([IpAddr::V6(VIP6)]));
    let request = arp(
        MacAddr::BROADCAST,
        CLIENT,
        ArpOperation::Request,
        CLIENT4,
        VIP4,
    );
    assert_eq!(
        responder.handle_frame(&request),
        Err(DropReason::NotAnnounced(IpAddr::V4(VIP4)))
    );
}

#[test]
fn ns_with_source_lla_gets_solicited_non_override_na() {
    let frame = ndp(CLIENT6, solicited_node_group(VIP6), ns(VIP6, Some(OTHER)));
    let Ok(Outcome::Reply {
        frame, requester, ..
    }) = responder().handle_frame(&frame)
    else {
        panic!()
    };
    assert_eq!(requester, OTHER, "the option wins over the Ethernet source");
    let Frame::Ndp {
        ethernet,
        ip,
        message,
    } = frame
    else {
        panic!()
    };
    assert_eq!(ethernet.destination, OTHER);
    assert_eq!(
        (ip.source, ip.destination, ip.hop_limit),
        (VIP6, CLIENT6, 255)
    );
    assert_eq!(
        message,
        NdpMessage::Advertisement {
            router: false,
            solicited: true,
            override_entry: false,
            target: VIP6,
            options: NdpOptions {
                source_lla: None,
                target_lla: Some(OURS)
            },
        }
    );
}

#[test]
fn ns_without_source_lla_is_answered_unicast() {
    // A unicast NUD probe to the VIP, without the option (MetalLB drops these).
    let frame = ndp(CLIENT6, VIP6, ns(VIP6, None));
    let Ok(Outcome::Reply {
        frame: Frame::Ndp { ethernet, ip, .. },
        ..
    }) = responder().handle_frame(&frame)
    else {
        panic!()
    };
    assert_eq!((ethernet.destination, ip.destination), (CLIENT, CLIENT6));
}

#[test]
fn dad_probe_for_our_ip_is_defended_on_all_nodes() {
    let frame = ndp(
        Ipv6Addr::UNSPECIFIED,
        solicited_node_group(VIP6),
        ns(VIP6, None),
    );
    let Ok(Outcome::Reply {
        frame: Frame::Ndp {
            ethernet,
            ip,
            message,
        },
        ..
    }) = responder().handle_frame(&frame)
    else {
        panic!()
    };
    assert_eq!(
        (ethernet.destination, ip.destination),
        (MacAddr::ipv6_multicast(ALL_NODES), ALL_NODES)
    );
    assert!(matches!(
        message,
        NdpMessage::Advertisement {
            solicited: false,
            override_entry: true,
            ..
        }
    ));
}

#[test]
fn duplicate_answers_are_reported() {
    let responder = responder();
    let arp_reply = arp(CLIENT, OTHER, ArpOperation::Reply, VIP4, CLIENT4);
    assert_eq!(
        responder.handle_frame(&arp_reply),
        Ok(Outcome::DuplicateAnswer {
            ip: IpAddr::V4(VIP4),
            mac: OTHER
        })
    );
    let garp = arp(MacAddr::BROADCAST, OTHER, ArpOperation::Request, VIP4, VIP4);
    assert_eq!(
        responder.handle_frame(&garp),
        Ok(Outcome::DuplicateAnswer {
            ip: IpAddr::V4(VIP4),
            mac: OTHER
        })
    );
    let na = ndp(
        CLIENT6,
        ALL_NODES,
        NdpMessage::Advertisement {
            router: false,
            solicited: false,
            override_entry: true,
            target: VIP6,
            options: NdpOptions {
                source_lla: None,
                target_lla: Some(OTHER),
            },
        },
    );
    assert_eq!(
        responder.handle_frame(&na),
        Ok(Outcome::DuplicateAnswer {
            ip: IpAddr::V6(VIP6),
            mac: OTHER
        })
    );
}

fn drain(schedule: &mut GratuitousSchedule) -> Vec<Action> {
    std::iter::from_fn(|| schedule.poll_action()).collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Runs the schedule to quiescence and returns the send offsets (ms from `start`) for `ip`.
fn send_offsets(schedule: &mut GratuitousSchedule, start: Instant) -> Vec<(u64, String)> {
    let mut sends = Vec::new();
    for _ in 0..100 {
        let Some(deadline) = schedule.poll_timeout() else {
            break;
        };
        schedule.handle_timeout(deadline);
        for action in drain(schedule) {
            if let Action::SendGratuitous { interface, .. } = action {
                sends.push(((deadline - start).as_millis() as u64, interface));
            }
        }
    }
    sends
}

#[test]
fn takeover_burst_follows_the_offsets() {
    let start = Instant::now();
    let mut schedule = GratuitousSchedule::new();
    schedule.handle(
        start,
        Input::InterfacesChanged {
            interfaces: names(&["eth0", "eth1"]),
        },
    );
    schedule.handle(
        start,
        Input::Take {
            ip: IpAddr::V4(VIP4),
            selection: InterfaceSelection::Only(names(&["eth1"])),
        },
    );
    let immediate = drain(&mut schedule);
    assert_eq!(
        immediate,
        vec![Action::SendGratuitous {
            ip: IpAddr::V4(VIP4),
            interface: "eth1".into()
        }]
    );
    let rest: Vec<u64> = send_offsets(&mut schedule, start)
        .into_iter()
        .map(|(ms, _)| ms)
        .collect();
    assert_eq!(rest, BURST_OFFSETS_MS[1..].to_vec());
    assert_eq!(schedule.poll_timeout(), None, "burst over after 5 s");
    // Re-taking with the same selection sends nothing.
    schedule.handle(
        start + Duration::from_secs(6),
        Input::Take {
            ip: IpAddr::V4(VIP4),
            selection: InterfaceSelection::Only(names(&["eth1"])),
        },
    );
    assert!(drain(&mut schedule).is_empty());
    assert_eq!(schedule.poll_timeout(), None);
}

#[test]
fn release_sends_nothing_and_stops_the_burst() {
    let start = Instant::now();
    let mut schedule = GratuitousSchedule::new();
    schedule.handle(
        start,
        Input::InterfacesChanged {
            interfaces: names(&["eth0"]),
        },
    );
    schedule.handle(
        start,
        Input::Take {
            ip: IpAddr::V6(VIP6),
            selection: InterfaceSelection::All,
        },
    );
    drain(&mut schedule);
    schedule.handle(
        start + Duration::from_millis(5),
        Input::Release {
            ip: IpAddr::V6(VIP6),
        },
    );
    assert!(drain(&mut schedule).is_empty());
    assert_eq!(schedule.poll_timeout(), None);
}

#[test]
fn new_interface_restarts_the_burst_on_it() {
    let start = Instant::now();
    let mut schedule = GratuitousSchedule::new();
    schedule.handle(
        start,
        Input::InterfacesChanged {
            interfaces: names(&["eth0"]),
        },
    );
    schedule.handle(
        start,
        Input::Take {
            ip: IpAddr::V4(VIP4),
            selection: InterfaceSelection::All,
        },
    );
    drain(&mut schedule);
    send_offsets(&mut schedule, start);
    let later = start + Duration::from_secs(10);
    // Losing an interface sends nothing; gaining one restarts the burst.
    schedule.handle(
        later,
        Input::InterfacesChanged {
            interfaces: names(&[]),
        },
    );
    assert!(drain(&mut schedule).is_empty());
    schedule.handle(
        later,
        Input::InterfacesChanged {
            interfaces: names(&["eth0", "eth9"]),
        },
    );
    assert_eq!(
        drain(&mut schedule).len(),
        2,
        "one send per interface at once"
    );
    assert_eq!(
        send_offsets(&mut schedule, later).len(),
        2 * (BURST_OFFSETS_MS.len() - 1)
    );
}

#[test]
fn late_timer_sends_once() {
    let start = Instant::now();
    let mut schedule = GratuitousSchedule::new();
    schedule.handle(
        start,
        Input::InterfacesChanged {
            interfaces: names(&["eth0"]),
        },
    );
    schedule.handle(
        start,
        Input::Take {
            ip: IpAddr::V4(VIP4),
            selection: InterfaceSelection::All,
        },
    );
    drain(&mut schedule);
    schedule.handle_timeout(start + Duration::from_millis(600));
    assert_eq!(drain(&mut schedule).len(), 1);
    assert_eq!(
        schedule.poll_timeout(),
        Some(start + Duration::from_millis(1100))
    );
}

#[test]
fn no_interface_is_reported() {
    let mut schedule = GratuitousSchedule::new();
    schedule.handle(
        Instant::now(),
        Input::Take {
            ip: IpAddr::V4(VIP4),
            selection: InterfaceSelection::Only(names(&["eth5"])),
        },
    );
    assert_eq!(
        drain(&mut schedule),
        vec![Action::NoInterface {
            ip: IpAddr::V4(VIP4)
        }]
    );
}

fn link(name: &str) -> LinkState {
    LinkState {
        index: 2,
        name: name.into(),
        mac: Some(OURS),
        up: true,
        running: true,
        broadcast: true,
        noarp: false,
        loopback: false,
        controller: None,
        link_local: None,
    }
}

#[test]
fn eligibility_table() {
    let exclude = ExcludeList::metallb_default();
    let cases: Vec<(&str, LinkState, Result<(), SkipReason>)> = vec![
        ("plain ethernet", link("eth0"), Ok(())),
        (
            "down",
            LinkState {
                up: false,
                ..link("eth0")
            },
            Err(SkipReason::Down),
        ),
        (
            "no carrier",
            LinkState {
                running: false,
                ..link("eth0")
            },
            Err(SkipReason::NoCarrier),
        ),
        (
            "enslaved",
            LinkState {
                controller: Some(7),
                ..link("eth0")
            },
            Err(SkipReason::Enslaved(7)),
        ),
        (
            "noarp",
            LinkState {
                noarp: true,
                ..link("eth0")
            },
            Err(SkipReason::NoArp),
        ),
        (
            "no broadcast",
            LinkState {
                broadcast: false,
                ..link("eth0")
            },
            Err(SkipReason::NoBroadcast),
        ),
        (
            "loopback",
            LinkState {
                loopback: true,
                ..link("lo")
            },
            Err(SkipReason::Loopback),
        ),
        (
            "no mac",
            LinkState {
                mac: None,
                ..link("eth0")
            },
            Err(SkipReason::NoMac),
        ),
        ("veth excluded", link("veth12ab"), Err(SkipReason::Excluded)),
        (
            "calico excluded",
            link("cali0123"),
            Err(SkipReason::Excluded),
        ),
        (
            "docker excluded",
            link("docker0"),
            Err(SkipReason::Excluded),
        ),
        ("bond allowed", link("bond0"), Ok(())),
        ("bridge allowed", link("br0"), Ok(())),
        ("lo-like name allowed", link("lo1"), Ok(())),
    ];
    for (name, link, want) in cases {
        assert_eq!(eligibility(&link, &exclude), want, "{name}");
    }
    assert_eq!(
        ExcludeList::metallb_default().patterns().len(),
        DEFAULT_EXCLUDES.len()
    );
}

#[test]
fn exclude_list_is_overridable() {
    let custom = ExcludeList::new(&["^eth1$"]).unwrap();
    assert!(custom.is_excluded("eth1"));
    assert!(
        !custom.is_excluded("veth0"),
        "the default list is replaced, not extended"
    );
    let none = ExcludeList::new::<&str>(&[]).unwrap();
    assert!(!none.is_excluded("veth0"));
    assert!(ExcludeList::new(&["(unclosed"]).is_err());
}

#[test]
fn announce_tool_arguments() {
    use ironlb_announce::l2::tool::{parse_args, ToolError};
    let args = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let options = parse_args(args(
        "--interface eth0 -i eth1 --ip 10.0.0.1 --ip fd00::1 -v",
    ))
    .unwrap();
    assert_eq!(options.interfaces, vec!["eth0", "eth1"]);
    assert_eq!(options.ips.len(), 2);
    assert!(options.verbose);
    assert_eq!(options.excludes, None, "MetalLB's default excludes");
    let options = parse_args(args("--interface eth0 --ip 10.0.0.1 --exclude ^eth9$")).unwrap();
    assert_eq!(options.excludes, Some(vec!["^eth9$".to_owned()]));
    let options = parse_args(args("--interface eth0 --ip 10.0.0.1 --no-default-excludes")).unwrap();
    assert_eq!(options.excludes, Some(vec![]));
    assert!(matches!(
        parse_args(args("--interface eth0")),
        Err(ToolError::Missing)
    ));
    assert!(matches!(
        parse_args(args("--interface eth0 --ip nope")),
        Err(ToolError::BadIp { .. })
    ));
    assert!(matches!(
        parse_args(args("--interface eth0 --ip 10.0.0.1 --bogus")),
        Err(ToolError::Usage(_))
    ));
    assert!(matches!(
        parse_args(args("--interface")),
        Err(ToolError::Usage(_))
    ));
}

#[test]
fn metrics_are_registered_with_metallb_names() {
    use ironlb_announce::l2::metrics::L2Metrics;
    let metrics = L2Metrics::new();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    L2Metrics::ip(&metrics.requests_received, IpAddr::V4(VIP4)).inc();
    L2Metrics::ip(&metrics.gratuitous_sent, IpAddr::V6(VIP6)).inc();
    L2Metrics::ip(&metrics.responses_sent, IpAddr::V4(VIP4)).inc();
    L2Metrics::ip(&metrics.duplicate_answers, IpAddr::V4(VIP4)).inc();
    metrics.dropped("truncated");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for needle in [
        "metallb_layer2_requests_received{ip=\"10.0.0.100\"} 1",
        "metallb_layer2_gratuitous_sent{ip=\"fd00::100\"} 1",
        "# TYPE metallb_layer2_responses_sent gauge",
        "# TYPE ironlb_layer2_duplicate_answers counter",
        "ironlb_layer2_frames_dropped_total{reason=\"truncated\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}

#[test]
fn netlink_link_messages_become_link_states() {
    use ironlb_announce::l2::io::netlink::link_state;
    use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
    let mut message = LinkMessage::default();
    message.header.index = 7;
    message.header.flags =
        LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Broadcast | LinkFlags::Noarp;
    message.attributes = vec![
        LinkAttribute::IfName("eth0".into()),
        LinkAttribute::Address(OURS.0.to_vec()),
        LinkAttribute::Controller(3),
    ];
    let link = link_state(&message).unwrap();
    assert_eq!(
        link,
        LinkState {
            index: 7,
            name: "eth0".into(),
            mac: Some(OURS),
            up: true,
            running: true,
            broadcast: true,
            noarp: true,
            loopback: false,
            controller: Some(3),
            link_local: None,
        }
    );
    // A tunnel without a 6-byte address and a message without a name.
    message.attributes = vec![
        LinkAttribute::IfName("tun0".into()),
        LinkAttribute::Address(vec![10, 0, 0, 1]),
    ];
    assert_eq!(link_state(&message).unwrap().mac, None);
    message.attributes = vec![];
    assert_eq!(link_state(&message), None);
}
