//! Frames captured from real `arping`, `ndisc6` and the Linux kernel (see
//! `testdata/l2/README.md`): every one decodes, and our responder answers the captured requests
//! the way the kernel did.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use ironlb_announce::l2::proto::packet::{ArpOperation, Frame, NdpMessage};
use ironlb_announce::l2::proto::responder::{InterfaceIdentity, Outcome, Responder};

/// Frames of a classic little-endian pcap file with Ethernet link type.
fn read_pcap(path: &PathBuf) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "{}: little-endian pcap",
        path.display()
    );
    assert_eq!(
        u32::from_le_bytes(bytes[20..24].try_into().unwrap()),
        1,
        "Ethernet link type"
    );
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let captured = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        frames.push(bytes[at + 16..at + 16 + captured].to_vec());
        at += 16 + captured;
    }
    assert_eq!(at, bytes.len(), "{}: no trailing bytes", path.display());
    frames
}

fn fixture(name: &str) -> Vec<Vec<u8>> {
    read_pcap(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/l2")
            .join(name),
    )
}

#[test]
fn every_captured_frame_decodes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/l2");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "pcap") {
            files += 1;
            let frames = read_pcap(&path);
            assert!(!frames.is_empty(), "{}", path.display());
            for (index, frame) in frames.iter().enumerate() {
                if let Err(error) = Frame::decode(frame) {
                    panic!("{} frame {index}: {error}", path.display());
                }
            }
        }
    }
    assert!(files >= 6, "fixtures present");
}

fn responder_for(reply: &Frame, ip: IpAddr) -> Responder {
    let mut responder = Responder::new(InterfaceIdentity {
        name: "eth0".into(),
        mac: reply.ethernet().source,
        link_local: None,
    });
    responder.set_announced(BTreeSet::from([ip]));
    responder
}

#[test]
fn arp_reply_matches_the_kernel() {
    let frames = fixture("arping-kernel.pcap");
    let reply = Frame::decode(&frames[1]).unwrap();
    let responder = responder_for(&reply, "10.0.0.200".parse().unwrap());
    let Ok(Outcome::Reply { frame, .. }) = responder.handle_frame(&frames[0]) else {
        panic!("arping request answered");
    };
    assert_eq!(frame, reply, "same reply as Linux");
    // The kernel sends 42 bytes; we pad to the 60-byte Ethernet minimum.
    assert_eq!(&frame.to_bytes()[..42], &frames[1][..]);
}

#[test]
fn na_matches_the_kernel_except_override() {
    let frames = fixture("ndisc6-kernel.pcap");
    let kernel = Frame::decode(&frames[1]).unwrap();
    let responder = responder_for(&kernel, "fd00::200".parse().unwrap());
    let Ok(Outcome::Reply { frame, .. }) = responder.handle_frame(&frames[0]) else {
        panic!("ndisc6 solicitation answered");
    };
    let (
        Frame::Ndp {
            ethernet,
            ip,
            message:
                NdpMessage::Advertisement {
                    solicited,
                    override_entry,
                    target,
                    options,
                    ..
                },
        },
        Frame::Ndp {
            ethernet: kernel_ethernet,
            ip: kernel_ip,
            message:
                NdpMessage::Advertisement {
                    solicited: kernel_solicited,
                    target: kernel_target,
                    options: kernel_options,
                    ..
                },
        },
    ) = (frame, kernel)
    else {
        panic!("both are NAs");
    };
    assert_eq!(
        (ethernet, ip, solicited, target, options),
        (
            kernel_ethernet,
            kernel_ip,
            kernel_solicited,
            kernel_target,
            kernel_options
        )
    );
    // MetalLB answers solicitations with Override=0; the kernel sets it for its own addresses.
    assert!(!override_entry);
}

#[test]
fn our_captured_takeover_is_gratuitous() {
    let frames = fixture("ironlb-takeover.pcap");
    let mut arp_requests = 0;
    let mut arp_replies = 0;
    let mut advertisements = 0;
    for bytes in &frames {
        match Frame::decode(bytes).unwrap() {
            Frame::Arp { arp, .. } => {
                assert_eq!(arp.sender_ip, arp.target_ip, "sender = target");
                match arp.operation {
                    ArpOperation::Request => arp_requests += 1,
                    ArpOperation::Reply => arp_replies += 1,
                }
            }
            Frame::Ndp {
                ip,
                message:
                    NdpMessage::Advertisement {
                        override_entry,
                        solicited,
                        ..
                    },
                ..
            } => {
                assert_eq!(
                    ip.destination,
                    "ff02::1".parse::<std::net::Ipv6Addr>().unwrap()
                );
                assert!(override_entry && !solicited);
                advertisements += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        arp_requests >= 3 && arp_replies >= 3 && advertisements >= 3,
        "three early bursts"
    );
}

#[test]
fn arping_gratuitous_request_for_our_ip_is_a_duplicate() {
    let frames = fixture("arping-unsolicited.pcap");
    let mut responder = Responder::new(InterfaceIdentity {
        name: "eth0".into(),
        mac: "02:00:00:00:00:01".parse().unwrap(),
        link_local: None,
    });
    responder.set_announced(BTreeSet::from(["10.0.0.1".parse().unwrap()]));
    assert!(matches!(
        responder.handle_frame(&frames[0]),
        Ok(Outcome::DuplicateAnswer { .. })
    ));
}
