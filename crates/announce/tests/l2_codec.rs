//! Codec round trips and rejection tables for Ethernet/ARP and IPv6/NDP.

use std::net::{Ipv4Addr, Ipv6Addr};

use ironlb_announce::l2::proto::packet::{
    gratuitous_arp, unsolicited_advertisement, ArpOperation, ArpPacket, DecodeError,
    EthernetHeader, Frame, Ipv6Header, Layer, MacAddr, NdpMessage, NdpOptions, ETHER_TYPE_ARP,
    ETHER_TYPE_IPV6, NEXT_HEADER_ICMPV6,
};

const OURS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
const CLIENT: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 2]);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);

fn arp_request() -> Frame {
    Frame::Arp {
        ethernet: EthernetHeader {
            destination: MacAddr::BROADCAST,
            source: CLIENT,
            ether_type: ETHER_TYPE_ARP,
        },
        arp: ArpPacket {
            operation: ArpOperation::Request,
            sender_mac: CLIENT,
            sender_ip: Ipv4Addr::new(10, 0, 0, 1),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(10, 0, 0, 100),
        },
    }
}

fn ns(options: NdpOptions) -> Frame {
    Frame::Ndp {
        ethernet: EthernetHeader {
            destination: MacAddr([0x33, 0x33, 0xff, 0, 1, 0]),
            source: CLIENT,
            ether_type: ETHER_TYPE_IPV6,
        },
        ip: Ipv6Header {
            next_header: NEXT_HEADER_ICMPV6,
            hop_limit: 255,
            source: CLIENT6,
            destination: "ff02::1:ff00:100".parse().unwrap(),
        },
        message: NdpMessage::Solicitation {
            target: VIP6,
            options,
        },
    }
}

fn fixtures() -> Vec<(&'static str, Frame)> {
    let [garp_request, garp_reply] = gratuitous_arp(OURS, Ipv4Addr::new(10, 0, 0, 100));
    vec![
        ("arp request", arp_request()),
        ("garp request", garp_request),
        ("garp reply", garp_reply),
        (
            "ns with source lla",
            ns(NdpOptions {
                source_lla: Some(CLIENT),
                target_lla: None,
            }),
        ),
        ("ns without options", ns(NdpOptions::default())),
        (
            "ns with both options",
            ns(NdpOptions {
                source_lla: Some(CLIENT),
                target_lla: Some(OURS),
            }),
        ),
        (
            "unsolicited na",
            unsolicited_advertisement(OURS, VIP6, VIP6),
        ),
    ]
}

/// Length of the frame without Ethernet padding.
fn unpadded_len(frame: &Frame) -> usize {
    match frame {
        Frame::Arp { .. } => EthernetHeader::LEN + ArpPacket::LEN,
        Frame::Ndp { message, .. } => EthernetHeader::LEN + Ipv6Header::LEN + message.encoded_len(),
    }
}

#[test]
fn round_trip() {
    for (name, frame) in fixtures() {
        let bytes = frame.to_bytes();
        assert!(bytes.len() >= 60, "{name}: padded to the Ethernet minimum");
        assert_eq!(Frame::decode(&bytes), Ok(frame), "{name}");
    }
}

#[test]
fn arp_request_bytes() {
    let bytes = arp_request().to_bytes();
    let expected: Vec<u8> = [
        &[0xff; 6][..],
        &CLIENT.0,
        &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1],
        &CLIENT.0,
        &[10, 0, 0, 1],
        &[0; 6],
        &[10, 0, 0, 100],
        &[0; 18],
    ]
    .concat();
    assert_eq!(bytes.as_ref(), expected.as_slice());
}

#[test]
fn every_truncated_prefix_fails() {
    for (name, frame) in fixtures() {
        let bytes = frame.to_bytes();
        for len in 0..unpadded_len(&frame) {
            let result = Frame::decode(&bytes[..len]);
            assert!(
                result.is_err(),
                "{name}: prefix of {len} bytes decoded as {result:?}"
            );
        }
    }
}

/// Applies `edit` to the encoding of `frame` and expects `want` from the decoder.
fn reject(name: &str, frame: Frame, edit: impl FnOnce(&mut Vec<u8>), want: DecodeError) {
    let mut bytes = frame.to_bytes().to_vec();
    edit(&mut bytes);
    assert_eq!(Frame::decode(&bytes), Err(want), "{name}");
}

/// Recomputes the ICMPv6 checksum of an NDP frame after an edit.
fn fix_checksum(bytes: &mut [u8]) {
    let source = Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[22..38]).unwrap());
    let destination = Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[38..54]).unwrap());
    let payload_len = usize::from(u16::from_be_bytes([bytes[18], bytes[19]]));
    bytes[56] = 0;
    bytes[57] = 0;
    let sum = ironlb_announce::l2::proto::packet::icmpv6_checksum(
        source,
        destination,
        &bytes[54..54 + payload_len],
    );
    bytes[56..58].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn rejection_table() {
    let sla = NdpOptions {
        source_lla: Some(CLIENT),
        target_lla: None,
    };
    reject(
        "other ether type",
        arp_request(),
        |b| b[12..14].copy_from_slice(&[0x08, 0x00]),
        DecodeError::OtherEtherType(0x0800),
    );
    reject(
        "arp hardware type",
        arp_request(),
        |b| b[15] = 6,
        DecodeError::ArpHardwareType(6),
    );
    reject(
        "arp protocol type",
        arp_request(),
        |b| b[16..18].copy_from_slice(&[0x86, 0xdd]),
        DecodeError::ArpProtocolType(0x86dd),
    );
    reject(
        "arp lengths",
        arp_request(),
        |b| b[18] = 8,
        DecodeError::ArpAddressLengths {
            hardware: 8,
            protocol: 4,
        },
    );
    reject(
        "arp operation",
        arp_request(),
        |b| b[21] = 3,
        DecodeError::ArpOperation(3),
    );
    reject(
        "ipv6 version",
        ns(sla),
        |b| b[14] = 0x45,
        DecodeError::Ipv6Version(4),
    );
    reject(
        "ipv6 payload length",
        ns(sla),
        |b| b[19] = 200,
        DecodeError::Ipv6PayloadLength {
            declared: 200,
            available: 32,
        },
    );
    reject(
        "not icmpv6",
        ns(sla),
        |b| b[20] = 17,
        DecodeError::NotIcmpv6(17),
    );
    reject(
        "not ndp",
        ns(sla),
        |b| b[54] = 128,
        DecodeError::NotNdp(128),
    );
    reject(
        "hop limit",
        ns(sla),
        |b| b[21] = 64,
        DecodeError::NdpHopLimit(64),
    );
    reject(
        "code",
        ns(sla),
        |b| {
            b[55] = 1;
            fix_checksum(b);
        },
        DecodeError::NdpCode(1),
    );
    let mut corrupted = ns(sla).to_bytes().to_vec();
    corrupted[57] ^= 0xff;
    assert!(
        matches!(
            Frame::decode(&corrupted),
            Err(DecodeError::Icmpv6Checksum { .. })
        ),
        "checksum"
    );
    reject(
        "zero-length option",
        ns(sla),
        |b| {
            b[79] = 0;
            fix_checksum(b);
        },
        DecodeError::NdpOptionZeroLength(1),
    );
    reject(
        "option longer than the message",
        ns(sla),
        |b| {
            b[79] = 2;
            fix_checksum(b);
        },
        DecodeError::Truncated {
            layer: Layer::NdpOption,
            needed: 16,
            available: 8,
        },
    );
    reject(
        "multicast target",
        ns(sla),
        |b| {
            b[62] = 0xff;
            fix_checksum(b);
        },
        DecodeError::NdpTargetMulticast("ff00::100".parse().unwrap()),
    );
    reject(
        "dad with source lla",
        ns(sla),
        |b| {
            b[22..38].copy_from_slice(&[0; 16]);
            fix_checksum(b);
        },
        DecodeError::NdpDadWithSourceLla,
    );
}

#[test]
fn link_layer_option_of_wrong_length_is_rejected() {
    // An NS with a 16-byte source link-layer option (as on a non-Ethernet link).
    let mut bytes = ns(NdpOptions::default()).to_bytes().to_vec();
    bytes.extend_from_slice(&[1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    bytes[19] = 40;
    fix_checksum(&mut bytes);
    assert_eq!(
        Frame::decode(&bytes),
        Err(DecodeError::NdpLinkLayerOptionLength {
            option_type: 1,
            len: 16
        })
    );
}

#[test]
fn unknown_options_are_skipped() {
    // A nonce option (type 14, RFC 3971) between the header and the source link-layer option.
    let mut bytes = ns(NdpOptions::default()).to_bytes().to_vec();
    bytes.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6, 1, 1]);
    bytes.extend_from_slice(&CLIENT.0);
    bytes[19] = 40;
    fix_checksum(&mut bytes);
    let Ok(Frame::Ndp {
        message: NdpMessage::Solicitation { options, .. },
        ..
    }) = Frame::decode(&bytes)
    else {
        panic!("decodes");
    };
    assert_eq!(options.source_lla, Some(CLIENT));
}

#[test]
fn mac_parse_and_display() {
    let mac: MacAddr = "02:00:00:00:00:0a".parse().unwrap();
    assert_eq!(mac, MacAddr([2, 0, 0, 0, 0, 10]));
    assert_eq!(mac.to_string(), "02:00:00:00:00:0a");
    for bad in [
        "",
        "02:00",
        "02:00:00:00:00:0a:0b",
        "zz:00:00:00:00:00",
        "2:0:0:0:0:a",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
    }
}
