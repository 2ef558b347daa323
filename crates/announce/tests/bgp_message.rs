//! Codec tables for the BGP messages: round trips, known encodings, every truncated prefix,
//! corrupted lengths and flags, the NOTIFICATION each error maps to, captured fixtures, and a
//! no-panic property over arbitrary bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BytesMut;
use ipnet::IpNet;
use ironlb_announce::bgp::message::{
    AsSegment, Capability, CodecContext, Community, DecodeError, Family, GracefulRestart,
    GracefulRestartFamily, LargeCommunity, Message, MpReach, MpUnreach, Notification, Open, Origin,
    PathAttributes, RawAttribute, RouteRefresh, Update, AS_SEQUENCE,
};
use proptest::prelude::*;

const FOUR: CodecContext = CodecContext {
    four_octet_asn: true,
};
const TWO: CodecContext = CodecContext {
    four_octet_asn: false,
};

fn v4(text: &str) -> ipnet::Ipv4Net {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn full_open() -> Open {
    Open {
        my_as: 23456,
        hold_time_secs: 90,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![
            Capability::MultiProtocol { afi: 1, safi: 1 },
            Capability::MultiProtocol { afi: 2, safi: 1 },
            Capability::RouteRefresh,
            Capability::FourOctetAsn(4_200_000_001),
            Capability::GracefulRestart(GracefulRestart {
                restart_state: true,
                notification: false,
                restart_time_secs: 120,
                families: vec![GracefulRestartFamily {
                    afi: 1,
                    safi: 1,
                    forwarding_preserved: true,
                }],
            }),
            Capability::Unknown {
                code: 73,
                value: b"fqdn".to_vec(),
            },
        ],
    }
}

fn full_update_v4() -> Update {
    Update {
        withdrawn: vec![v4("10.9.0.0/16"), v4("10.10.10.10/32")],
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(vec![AsSegment {
                segment_type: AS_SEQUENCE,
                asns: vec![4_200_000_001, 65000],
            }]),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            multi_exit_disc: Some(5),
            local_pref: Some(200),
            atomic_aggregate: true,
            communities: Some(vec![Community(0xFDE8_0001), Community::GRACEFUL_SHUTDOWN]),
            large_communities: Some(vec![LargeCommunity {
                global: 4_200_000_001,
                local1: 1,
                local2: 2,
            }]),
            other: vec![RawAttribute {
                flags: 0xC0,
                type_code: 7,
                value: vec![0, 0, 0xfd, 0xe8, 10, 0, 0, 1],
            }],
            ..PathAttributes::default()
        },
        nlri: vec![
            v4("192.0.2.1/32"),
            v4("198.51.100.0/24"),
            v4("0.0.0.0/0"),
            v4("203.0.113.0/25"),
        ],
    }
}

fn update_v6() -> Update {
    Update {
        attributes: PathAttributes {
            origin: Some(Origin::Incomplete),
            as_path: Some(vec![]),
            local_pref: Some(100),
            mp_reach: Some(MpReach {
                family: Family::Ipv6Unicast,
                next_hops: vec![
                    IpAddr::V6("fd00::1".parse().unwrap()),
                    IpAddr::V6("fe80::1".parse().unwrap()),
                ],
                nlri: vec![net("2001:db8::1/128"), net("2001:db8:1::/48"), net("::/0")],
            }),
            mp_unreach: Some(MpUnreach {
                family: Family::Ipv6Unicast,
                withdrawn: vec![net("2001:db8:2::/64")],
            }),
            ..PathAttributes::default()
        },
        ..Update::default()
    }
}

/// Every message kind, with the context to encode it in.
fn table() -> Vec<(&'static str, Message, CodecContext)> {
    let mut big = update_v6();
    if let Some(reach) = &mut big.attributes.mp_reach {
        // Pushes MP_REACH past 255 bytes: the extended-length flag.
        reach.nlri = (0..40u16)
            .map(|i| {
                IpNet::V6(
                    ipnet::Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, i, 0, 0, 0, 0, 1), 128)
                        .unwrap(),
                )
            })
            .collect();
    }
    vec![
        ("keepalive", Message::Keepalive, FOUR),
        ("open", Message::Open(full_open()), FOUR),
        (
            "open without capabilities",
            Message::Open(Open {
                capabilities: vec![],
                ..full_open()
            }),
            FOUR,
        ),
        (
            "update v4 four-octet",
            Message::Update(full_update_v4()),
            FOUR,
        ),
        (
            "update v4 two-octet",
            Message::Update(Update {
                attributes: PathAttributes {
                    as_path: Some(vec![AsSegment {
                        segment_type: AS_SEQUENCE,
                        asns: vec![23456, 65000],
                    }]),
                    as4_path: Some(vec![AsSegment {
                        segment_type: AS_SEQUENCE,
                        asns: vec![4_200_000_001, 65000],
                    }]),
                    ..full_update_v4().attributes
                },
                ..full_update_v4()
            }),
            TWO,
        ),
        ("update v6", Message::Update(update_v6()), FOUR),
        ("update v6 extended length", Message::Update(big), FOUR),
        (
            "end-of-rib v4",
            Message::Update(Update::end_of_rib(Family::Ipv4Unicast)),
            FOUR,
        ),
        (
            "end-of-rib v6",
            Message::Update(Update::end_of_rib(Family::Ipv6Unicast)),
            FOUR,
        ),
        (
            "notification",
            Message::Notification(Notification {
                code: 6,
                subcode: 2,
                data: b"bye".to_vec(),
            }),
            FOUR,
        ),
        (
            "route refresh",
            Message::RouteRefresh(RouteRefresh {
                afi: 2,
                subtype: 0,
                safi: 1,
            }),
            FOUR,
        ),
    ]
}

#[test]
fn round_trip_every_message() {
    for (name, message, context) in table() {
        let bytes = message.to_bytes(&context);
        let decoded = Message::decode(&bytes, &context).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, message, "{name}");
        // Stream framing: the same message split off a buffer with trailing bytes.
        let mut stream = BytesMut::from(&bytes[..]);
        stream.extend_from_slice(&Message::Keepalive.to_bytes(&context));
        let framed = Message::decode_frame(&mut stream, &context).unwrap();
        assert_eq!(framed, Some(message), "{name}");
        assert_eq!(
            Message::decode_frame(&mut stream, &context).unwrap(),
            Some(Message::Keepalive)
        );
        assert!(stream.is_empty());
    }
}

#[test]
fn known_encodings() {
    let keepalive = Message::Keepalive.to_bytes(&FOUR);
    let mut expected = vec![0xff; 16];
    expected.extend_from_slice(&[0, 19, 4]);
    assert_eq!(&keepalive[..], &expected[..]);

    let notification = Message::Notification(Notification::hold_timer_expired()).to_bytes(&FOUR);
    assert_eq!(&notification[16..], &[0, 21, 3, 4, 0]);

    // OPEN: version 4, AS 65001, hold 90, id 10.0.0.1, one capability parameter with 4-octet AS.
    let open = Message::Open(Open {
        my_as: 65001,
        hold_time_secs: 90,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![Capability::FourOctetAsn(65001)],
    });
    assert_eq!(
        &open.to_bytes(&FOUR)[16..],
        &[0, 37, 1, 4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 8, 2, 6, 65, 4, 0, 0, 0xfd, 0xe9]
    );

    // End-of-RIB for IPv4 is the empty UPDATE.
    assert_eq!(
        &Message::Update(Update::end_of_rib(Family::Ipv4Unicast)).to_bytes(&FOUR)[16..],
        &[0, 23, 2, 0, 0, 0, 0]
    );

    // UPDATE announcing 192.0.2.0/24 with ORIGIN IGP, AS_PATH [65001] (2-octet), NEXT_HOP.
    let update = Message::Update(Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(vec![AsSegment {
                segment_type: 2,
                asns: vec![65001],
            }]),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..PathAttributes::default()
        },
        nlri: vec![v4("192.0.2.0/24")],
        ..Update::default()
    });
    assert_eq!(
        &update.to_bytes(&TWO)[19..],
        &[
            0, 0, 0, 18, 0x40, 1, 1, 0, 0x40, 2, 4, 2, 1, 0xfd, 0xe9, 0x40, 3, 4, 10, 0, 0, 1, 24,
            192, 0, 2
        ]
    );
}

#[test]
fn every_truncated_prefix_is_rejected() {
    for (name, message, context) in table() {
        let bytes = message.to_bytes(&context);
        for length in 0..bytes.len() {
            let prefix = &bytes[..length];
            assert!(
                Message::decode(prefix, &context).is_err(),
                "{name}: prefix of {length} accepted"
            );
            let mut stream = BytesMut::from(prefix);
            assert_eq!(
                Message::decode_frame(&mut stream, &context),
                Ok(None),
                "{name}: {length}"
            );
        }
    }
}

/// The header length field shrunk to a truncated body: every such frame must fail or decode to
/// something shorter, never panic. Inner length fields grown past the end must fail.
#[test]
fn corrupted_lengths_are_rejected() {
    for (name, message, context) in table() {
        let bytes = message.to_bytes(&context);
        for length in 19..bytes.len() {
            let mut frame = bytes[..length].to_vec();
            frame[16..18].copy_from_slice(&(length as u16).to_be_bytes());
            let _ = Message::decode(&frame, &context);
        }
        let _ = name;
    }

    // OPEN: optional parameters length one too long, one too short.
    let open = Message::Open(full_open()).to_bytes(&FOUR).to_vec();
    for delta in [1i16, -1] {
        let mut bad = open.clone();
        bad[28] = (i16::from(bad[28]) + delta) as u8;
        assert_eq!(
            Message::decode(&bad, &FOUR),
            Err(DecodeError::MalformedOpen),
            "delta {delta}"
        );
    }

    let update = Message::Update(full_update_v4()).to_bytes(&FOUR).to_vec();
    // Withdrawn routes length past the end.
    let mut bad = update.clone();
    bad[19..21].copy_from_slice(&0xfff0u16.to_be_bytes());
    assert_eq!(
        Message::decode(&bad, &FOUR),
        Err(DecodeError::MalformedAttributeList)
    );
    // Total path attribute length past the end.
    let withdrawn_len = usize::from(u16::from_be_bytes([update[19], update[20]]));
    let at = 21 + withdrawn_len;
    let mut bad = update.clone();
    bad[at..at + 2].copy_from_slice(&0xfff0u16.to_be_bytes());
    assert_eq!(
        Message::decode(&bad, &FOUR),
        Err(DecodeError::MalformedAttributeList)
    );
    // The first attribute's (ORIGIN) length past the attribute block.
    let mut bad = update.clone();
    bad[at + 4] = 0xff;
    assert_eq!(
        Message::decode(&bad, &FOUR),
        Err(DecodeError::MalformedAttributeList)
    );
}

/// Builds an UPDATE from raw attribute and NLRI bytes.
fn raw_update(attributes: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
    body.extend_from_slice(attributes);
    body.extend_from_slice(nlri);
    let mut message = vec![0xff; 16];
    message.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    message.push(2);
    message.extend_from_slice(&body);
    message
}

const ORIGIN: [u8; 4] = [0x40, 1, 1, 0];
const AS_PATH_EMPTY: [u8; 3] = [0x40, 2, 0];
const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 10, 0, 0, 1];

fn with_mandatory(extra: &[u8]) -> Vec<u8> {
    [&ORIGIN[..], &AS_PATH_EMPTY[..], &NEXT_HOP[..], extra].concat()
}

#[test]
fn update_errors_table() {
    let nlri = [24, 192, 0, 2];
    let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        (
            "origin optional flag",
            raw_update(&[0xC0, 1, 1, 0], &[]),
            DecodeError::AttributeFlagsError {
                type_code: 1,
                attribute: vec![0xC0, 1, 1, 0],
            },
        ),
        (
            "origin partial flag",
            raw_update(&[0x60, 1, 1, 0], &[]),
            DecodeError::AttributeFlagsError {
                type_code: 1,
                attribute: vec![0x60, 1, 1, 0],
            },
        ),
        (
            "communities not transitive",
            raw_update(&[0x80, 8, 4, 0, 1, 0, 1], &[]),
            DecodeError::AttributeFlagsError {
                type_code: 8,
                attribute: vec![0x80, 8, 4, 0, 1, 0, 1],
            },
        ),
        (
            "med partial",
            raw_update(&[0xA0, 4, 4, 0, 0, 0, 1], &[]),
            DecodeError::AttributeFlagsError {
                type_code: 4,
                attribute: vec![0xA0, 4, 4, 0, 0, 0, 1],
            },
        ),
        (
            "mp_reach transitive",
            raw_update(&[0xC0, 14, 0], &[]),
            DecodeError::AttributeFlagsError {
                type_code: 14,
                attribute: vec![0xC0, 14, 0],
            },
        ),
        (
            "origin length 2",
            raw_update(&[0x40, 1, 2, 0, 0], &[]),
            DecodeError::AttributeLengthError {
                type_code: 1,
                attribute: vec![0x40, 1, 2, 0, 0],
            },
        ),
        (
            "next hop length 5",
            raw_update(&[0x40, 3, 5, 1, 2, 3, 4, 5], &[]),
            DecodeError::AttributeLengthError {
                type_code: 3,
                attribute: vec![0x40, 3, 5, 1, 2, 3, 4, 5],
            },
        ),
        (
            "local pref length 3",
            raw_update(&[0x40, 5, 3, 0, 0, 1], &[]),
            DecodeError::AttributeLengthError {
                type_code: 5,
                attribute: vec![0x40, 5, 3, 0, 0, 1],
            },
        ),
        (
            "atomic aggregate length 1",
            raw_update(&[0x40, 6, 1, 0], &[]),
            DecodeError::AttributeLengthError {
                type_code: 6,
                attribute: vec![0x40, 6, 1, 0],
            },
        ),
        (
            "communities length 5",
            raw_update(&[0xC0, 8, 5, 0, 1, 0, 1, 9], &[]),
            DecodeError::AttributeLengthError {
                type_code: 8,
                attribute: vec![0xC0, 8, 5, 0, 1, 0, 1, 9],
            },
        ),
        (
            "large communities length 13",
            raw_update(&[[0xC0, 32, 13].as_slice(), &[0; 13]].concat(), &[]),
            DecodeError::AttributeLengthError {
                type_code: 32,
                attribute: [[0xC0, 32, 13].as_slice(), &[0; 13]].concat(),
            },
        ),
        (
            "origin 3",
            raw_update(&[0x40, 1, 1, 3], &[]),
            DecodeError::InvalidOriginAttribute {
                origin: 3,
                attribute: vec![0x40, 1, 1, 3],
            },
        ),
        (
            "as path segment type 5",
            raw_update(&[0x40, 2, 4, 5, 1, 0, 1], &[]),
            DecodeError::MalformedAsPath,
        ),
        (
            "as path zero-length segment",
            raw_update(&[0x40, 2, 2, 2, 0], &[]),
            DecodeError::MalformedAsPath,
        ),
        (
            "as path short segment",
            raw_update(&[0x40, 2, 4, 2, 2, 0, 1], &[]),
            DecodeError::MalformedAsPath,
        ),
        (
            "duplicate origin",
            raw_update(&[ORIGIN, ORIGIN].concat(), &[]),
            DecodeError::MalformedAttributeList,
        ),
        (
            "unknown well-known",
            raw_update(&[0x40, 99, 0], &[]),
            DecodeError::UnrecognizedWellKnownAttribute {
                type_code: 99,
                attribute: vec![0x40, 99, 0],
            },
        ),
        (
            "missing origin",
            raw_update(&[AS_PATH_EMPTY.as_slice(), &NEXT_HOP].concat(), &nlri),
            DecodeError::MissingWellKnownAttribute { type_code: 1 },
        ),
        (
            "missing as path",
            raw_update(&[ORIGIN.as_slice(), &NEXT_HOP].concat(), &nlri),
            DecodeError::MissingWellKnownAttribute { type_code: 2 },
        ),
        (
            "missing next hop",
            raw_update(&[ORIGIN.as_slice(), &AS_PATH_EMPTY].concat(), &nlri),
            DecodeError::MissingWellKnownAttribute { type_code: 3 },
        ),
        (
            "nlri length 33",
            raw_update(&with_mandatory(&[]), &[33, 1, 2, 3, 4, 5]),
            DecodeError::InvalidNetworkField,
        ),
        (
            "nlri truncated",
            raw_update(&with_mandatory(&[]), &[24, 192, 0]),
            DecodeError::InvalidNetworkField,
        ),
        (
            "mp_reach bad next hop length",
            raw_update(
                &with_mandatory(&[0x80, 14, 9, 0, 2, 1, 4, 1, 2, 3, 4, 0]),
                &[],
            ),
            DecodeError::OptionalAttributeError {
                type_code: 14,
                attribute: vec![0x80, 14, 9, 0, 2, 1, 4, 1, 2, 3, 4, 0],
            },
        ),
        (
            "mp_unreach prefix 129",
            raw_update(&[0x80, 15, 4, 0, 2, 1, 129], &[]),
            DecodeError::OptionalAttributeError {
                type_code: 15,
                attribute: vec![0x80, 15, 4, 0, 2, 1, 129],
            },
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(Message::decode(&bytes, &FOUR), Err(expected), "{name}");
    }
    // Unknown optional attributes and unknown MP families are kept, not rejected.
    let kept = raw_update(
        &with_mandatory(&[0xC0, 99, 1, 7, 0x80, 14, 5, 0, 25, 70, 0, 0]),
        &[],
    );
    let Ok(Message::Update(update)) = Message::decode(&kept, &FOUR) else {
        panic!("not kept")
    };
    assert_eq!(update.attributes.other.len(), 2);
    // A valid minimal UPDATE decodes.
    assert!(Message::decode(&raw_update(&with_mandatory(&[]), &nlri), &FOUR).is_ok());
}

#[test]
fn header_and_open_errors_table() {
    let keepalive = Message::Keepalive.to_bytes(&FOUR).to_vec();
    let open = Message::Open(full_open()).to_bytes(&FOUR).to_vec();
    let patch = |bytes: &[u8], at: usize, value: &[u8]| {
        let mut bytes = bytes.to_vec();
        bytes[at..at + value.len()].copy_from_slice(value);
        bytes
    };
    let mut long_keepalive = keepalive.clone();
    long_keepalive.push(0);
    long_keepalive[17] = 20;
    let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        (
            "marker",
            patch(&keepalive, 3, &[0]),
            DecodeError::ConnectionNotSynchronized,
        ),
        (
            "length 18",
            patch(&keepalive, 16, &[0, 18]),
            DecodeError::BadMessageLength { length: 18 },
        ),
        (
            "length 4097",
            patch(&keepalive, 16, &[0x10, 0x01]),
            DecodeError::BadMessageLength { length: 4097 },
        ),
        (
            "keepalive of 20",
            long_keepalive,
            DecodeError::BadMessageLength { length: 20 },
        ),
        (
            "type 9",
            patch(&keepalive, 18, &[9]),
            DecodeError::BadMessageType { message_type: 9 },
        ),
        (
            "open too short",
            patch(&keepalive, 18, &[1]),
            DecodeError::BadMessageLength { length: 19 },
        ),
        (
            "version 3",
            patch(&open, 19, &[3]),
            DecodeError::UnsupportedVersionNumber { version: 3 },
        ),
        (
            "hold 1",
            patch(&open, 22, &[0, 1]),
            DecodeError::UnacceptableHoldTime { hold_time_secs: 1 },
        ),
        (
            "hold 2",
            patch(&open, 22, &[0, 2]),
            DecodeError::UnacceptableHoldTime { hold_time_secs: 2 },
        ),
        (
            "identifier 0",
            patch(&open, 24, &[0, 0, 0, 0]),
            DecodeError::BadBgpIdentifier,
        ),
        (
            "optional parameter 1",
            patch(&open, 29, &[1]),
            DecodeError::UnsupportedOptionalParameter { parameter_type: 1 },
        ),
        (
            "capability 65 length 2",
            patch(
                &Message::Open(Open {
                    capabilities: vec![Capability::FourOctetAsn(1)],
                    ..full_open()
                })
                .to_bytes(&FOUR),
                32,
                &[2],
            ),
            DecodeError::MalformedOpen,
        ),
        (
            "route refresh of 24",
            {
                let mut bytes = Message::RouteRefresh(RouteRefresh {
                    afi: 1,
                    subtype: 0,
                    safi: 1,
                })
                .to_bytes(&FOUR)
                .to_vec();
                bytes.push(0);
                bytes[17] = 24;
                bytes
            },
            DecodeError::InvalidRouteRefreshLength { length: 24 },
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(Message::decode(&bytes, &FOUR), Err(expected), "{name}");
    }
}

#[test]
fn errors_map_to_rfc_notifications() {
    let cases = [
        (DecodeError::ConnectionNotSynchronized, 1, 1, vec![]),
        (
            DecodeError::BadMessageLength { length: 18 },
            1,
            2,
            vec![0, 18],
        ),
        (
            DecodeError::BadMessageType { message_type: 9 },
            1,
            3,
            vec![9],
        ),
        (
            DecodeError::UnsupportedVersionNumber { version: 3 },
            2,
            1,
            vec![0, 4],
        ),
        (DecodeError::BadBgpIdentifier, 2, 3, vec![]),
        (
            DecodeError::UnsupportedOptionalParameter { parameter_type: 1 },
            2,
            4,
            vec![],
        ),
        (
            DecodeError::UnacceptableHoldTime { hold_time_secs: 1 },
            2,
            6,
            vec![],
        ),
        (DecodeError::MalformedAttributeList, 3, 1, vec![]),
        (
            DecodeError::UnrecognizedWellKnownAttribute {
                type_code: 99,
                attribute: vec![0x40, 99, 0],
            },
            3,
            2,
            vec![0x40, 99, 0],
        ),
        (
            DecodeError::MissingWellKnownAttribute { type_code: 3 },
            3,
            3,
            vec![3],
        ),
        (
            DecodeError::AttributeFlagsError {
                type_code: 1,
                attribute: vec![1],
            },
            3,
            4,
            vec![1],
        ),
        (
            DecodeError::AttributeLengthError {
                type_code: 1,
                attribute: vec![2],
            },
            3,
            5,
            vec![2],
        ),
        (
            DecodeError::InvalidOriginAttribute {
                origin: 3,
                attribute: vec![3],
            },
            3,
            6,
            vec![3],
        ),
        (
            DecodeError::OptionalAttributeError {
                type_code: 14,
                attribute: vec![4],
            },
            3,
            9,
            vec![4],
        ),
        (DecodeError::InvalidNetworkField, 3, 10, vec![]),
        (DecodeError::MalformedAsPath, 3, 11, vec![]),
        (
            DecodeError::InvalidRouteRefreshLength { length: 24 },
            7,
            1,
            vec![0, 24],
        ),
    ];
    for (error, code, subcode, data) in cases {
        let name = error.to_string();
        assert_eq!(
            Notification::from(error),
            Notification {
                code,
                subcode,
                data
            },
            "{name}"
        );
    }
}

#[test]
fn open_accessors() {
    let open = full_open();
    assert_eq!(open.asn(), 4_200_000_001);
    assert_eq!(
        open.families(),
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
    );
    assert_eq!(
        open.graceful_restart().map(|gr| gr.restart_time_secs),
        Some(120)
    );
    let plain = Open {
        capabilities: vec![],
        my_as: 65001,
        ..full_open()
    };
    assert_eq!(plain.asn(), 65001);
    assert_eq!(
        plain.families(),
        vec![Family::Ipv4Unicast],
        "no MP capability means IPv4 only"
    );
    assert_eq!(
        Update::end_of_rib(Family::Ipv6Unicast).is_end_of_rib(),
        Some(Family::Ipv6Unicast)
    );
    assert_eq!(full_update_v4().is_end_of_rib(), None);
}

/// Messages captured from real FRR, BIRD and GoBGP sessions (see testdata/bgp/README.md).
#[test]
fn captured_fixtures_decode() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/bgp");
    let mut count = 0;
    let mut with_communities = 0;
    let mut with_large = 0;
    let mut with_mp_reach = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("bin") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let mut stream = BytesMut::from(&bytes[..]);
        // Captures hold whole TCP streams: every message in them must decode. All three
        // daemons negotiate 4-octet ASNs with ironlb.
        while !stream.is_empty() {
            let message = Message::decode_frame(&mut stream, &FOUR)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .unwrap_or_else(|| panic!("{}: truncated", path.display()));
            if let Message::Update(update) = &message {
                with_communities += usize::from(update.attributes.communities.is_some());
                with_large += usize::from(update.attributes.large_communities.is_some());
                with_mp_reach += usize::from(update.attributes.mp_reach.is_some());
            }
            // Re-encoding must decode to the same value.
            let again = Message::decode(&message.to_bytes(&FOUR), &FOUR).unwrap();
            assert_eq!(again, message, "{}", path.display());
            count += 1;
        }
    }
    assert!(
        count >= 6,
        "expected captured fixtures in {}, found {count} messages",
        dir.display()
    );
    // BIRD's and GoBGP's streams carry communities; all three carry IPv6 in MP_REACH_NLRI.
    assert!(
        with_communities >= 2 && with_large >= 2 && with_mp_reach >= 3,
        "{with_communities} {with_large} {with_mp_reach}"
    );
}

fn header(message_type: u8, body_len: usize) -> Vec<u8> {
    let mut bytes = vec![0xff; 16];
    bytes.extend_from_slice(&((19 + body_len) as u16).to_be_bytes());
    bytes.push(message_type);
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), four in any::<bool>()) {
        let context = CodecContext { four_octet_asn: four };
        let _ = Message::decode(&bytes, &context);
        let mut stream = BytesMut::from(&bytes[..]);
        let _ = Message::decode_frame(&mut stream, &context);
    }

    /// A valid header with an arbitrary body reaches each body decoder.
    #[test]
    fn body_decoders_never_panic(
        message_type in 1u8..=5,
        body in proptest::collection::vec(any::<u8>(), 0..300),
        four in any::<bool>(),
    ) {
        let context = CodecContext { four_octet_asn: four };
        let mut bytes = header(message_type, body.len());
        bytes.extend_from_slice(&body);
        if let Ok(message) = Message::decode(&bytes, &context) {
            // Whatever decodes re-encodes to something that decodes to the same value.
            let again = Message::decode(&message.to_bytes(&context), &context);
            prop_assert_eq!(again, Ok(message));
        }
    }

    /// Arbitrary attribute blocks inside a well-formed UPDATE.
    #[test]
    fn attribute_decoder_never_panics(attributes in proptest::collection::vec(any::<u8>(), 0..300), nlri in proptest::collection::vec(any::<u8>(), 0..20)) {
        let bytes = raw_update(&attributes, &nlri);
        let _ = Message::decode(&bytes, &FOUR);
        let _ = Message::decode(&bytes, &TWO);
    }

    #[test]
    fn update_round_trips(
        prefixes in proptest::collection::btree_set((any::<u32>(), 0u8..=32), 0..50),
        communities in proptest::collection::vec(any::<u32>(), 0..5),
        local_pref in proptest::option::of(any::<u32>()),
    ) {
        let nlri: Vec<ipnet::Ipv4Net> = prefixes
            .into_iter()
            .map(|(address, length)| ipnet::Ipv4Net::new(Ipv4Addr::from(address), length).unwrap().trunc())
            .collect();
        let update = Update {
            attributes: PathAttributes {
                origin: Some(Origin::Egp),
                as_path: Some(vec![]),
                next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
                local_pref,
                communities: Some(communities.into_iter().map(Community).collect()),
                ..PathAttributes::default()
            },
            nlri,
            ..Update::default()
        };
        let message = Message::Update(update);
        prop_assert_eq!(Message::decode(&message.to_bytes(&FOUR), &FOUR), Ok(message));
    }
}
