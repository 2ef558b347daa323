//! No decoder and no responder path panics, whatever the bytes (proptest stands in for
//! cargo-fuzz, which needs nightly). Mutations of valid frames reach deeper than random bytes.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ironlb_announce::l2::proto::packet::{
    gratuitous_arp, unsolicited_advertisement, ArpPacket, EthernetHeader, Frame, Ipv6Header,
    MacAddr, NdpMessage, NdpOptions,
};
use ironlb_announce::l2::proto::responder::{InterfaceIdentity, Responder};
use proptest::prelude::*;

const OURS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);

fn responder() -> Responder {
    let mut responder = Responder::new(InterfaceIdentity {
        name: "eth0".into(),
        mac: OURS,
        link_local: Some("fe80::1".parse().unwrap()),
    });
    responder.set_announced(BTreeSet::from([
        "10.0.0.100".parse().unwrap(),
        "fd00::100".parse().unwrap(),
    ]));
    responder
}

fn valid_frames() -> Vec<Vec<u8>> {
    let client = MacAddr([2, 0, 0, 0, 0, 2]);
    let vip6: Ipv6Addr = "fd00::100".parse().unwrap();
    let mut frames: Vec<Vec<u8>> = gratuitous_arp(client, Ipv4Addr::new(10, 0, 0, 100))
        .iter()
        .map(|f| f.to_bytes().to_vec())
        .collect();
    frames.push(
        unsolicited_advertisement(client, vip6, vip6)
            .to_bytes()
            .to_vec(),
    );
    let ns = Frame::Ndp {
        ethernet: EthernetHeader {
            destination: MacAddr([0x33, 0x33, 0xff, 0, 1, 0]),
            source: client,
            ether_type: 0x86dd,
        },
        ip: Ipv6Header {
            next_header: 58,
            hop_limit: 255,
            source: "fe80::2".parse().unwrap(),
            destination: "ff02::1:ff00:100".parse().unwrap(),
        },
        message: NdpMessage::Solicitation {
            target: vip6,
            options: NdpOptions {
                source_lla: Some(client),
                target_lla: None,
            },
        },
    };
    frames.push(ns.to_bytes().to_vec());
    frames
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Frame::decode(&bytes);
        let _ = EthernetHeader::decode(&bytes);
        let _ = ArpPacket::decode(&bytes);
        let _ = NdpOptions::decode(&bytes);
        if let Ok((ip, payload)) = Ipv6Header::decode(&bytes) {
            let _ = NdpMessage::decode(&ip, payload);
        }
        let _ = responder().handle_frame(&bytes);
    }

    #[test]
    fn arbitrary_ndp_bodies_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..120),
        hop_limit in prop_oneof![Just(255u8), any::<u8>()],
    ) {
        let ip = Ipv6Header {
            next_header: 58,
            hop_limit,
            source: "fe80::2".parse().unwrap(),
            destination: "ff02::1:ff00:100".parse().unwrap(),
        };
        let _ = NdpMessage::decode(&ip, &body);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = valid_frames()[which].clone();
        for (index, value) in edits {
            let at = index.index(frame.len());
            frame[at] = value;
        }
        let len = cut.index(frame.len() + 1);
        let _ = Frame::decode(&frame[..len]);
        let _ = responder().handle_frame(&frame[..len]);
    }

    /// Whatever decodes re-encodes to something that decodes to the same frame.
    #[test]
    fn decoded_frames_round_trip(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let mut frame = valid_frames()[which].clone();
        for (index, value) in edits {
            let at = index.index(frame.len());
            frame[at] = value;
        }
        if let Ok(decoded) = Frame::decode(&frame) {
            prop_assert_eq!(Frame::decode(&decoded.to_bytes()), Ok(decoded));
        }
    }
}
