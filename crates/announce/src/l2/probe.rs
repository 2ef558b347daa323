//! The client side of the layer 2 tests and benchmark (not used in production).
//!
//! * [`inject`] sends malformed ARP/NDP frames (truncated, bad fields, bad checksums, zero-length
//!   options, random bytes), all addressed to the responder.
//! * [`latency`] sends one ARP request at a time and prints the round-trip percentiles.
//! * [`flood`] sends ARP requests as fast as it can and prints how many were answered per second.
//!
//! Output lines are `key=value` pairs so the caller can parse them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pnet::datalink::{self, Channel, Config, DataLinkReceiver, DataLinkSender};
use rand::{Rng, SeedableRng};

use super::proto::packet::{
    solicited_node_group, ArpOperation, ArpPacket, EthernetHeader, Frame, Ipv6Header, MacAddr,
    NdpMessage, NdpOptions, ETHER_TYPE_ARP, ETHER_TYPE_IPV6, NEXT_HEADER_ICMPV6,
};

type Link = (Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>, MacAddr);

fn open(name: &str, read_timeout: Duration) -> Result<Link, String> {
    let interface = datalink::interfaces()
        .into_iter()
        .find(|interface| interface.name == name)
        .ok_or_else(|| format!("no interface {name}"))?;
    let mac = interface
        .mac
        .map(|mac| MacAddr(mac.octets()))
        .ok_or("interface has no MAC")?;
    let config = Config {
        read_timeout: Some(read_timeout),
        promiscuous: false,
        ..Config::default()
    };
    match datalink::channel(&interface, config) {
        Ok(Channel::Ethernet(tx, rx)) => Ok((tx, rx, mac)),
        Ok(_) => Err("not an Ethernet channel".into()),
        Err(error) => Err(format!("open {name}: {error}")),
    }
}

fn arp_request(mac: MacAddr, source: Ipv4Addr, vip: Ipv4Addr) -> Vec<u8> {
    Frame::Arp {
        ethernet: EthernetHeader {
            destination: MacAddr::BROADCAST,
            source: mac,
            ether_type: ETHER_TYPE_ARP,
        },
        arp: ArpPacket {
            operation: ArpOperation::Request,
            sender_mac: mac,
            sender_ip: source,
            target_mac: MacAddr::ZERO,
            target_ip: vip,
        },
    }
    .to_bytes()
    .to_vec()
}

fn is_reply_from(bytes: &[u8], vip: Ipv4Addr, mac: MacAddr) -> bool {
    matches!(
        Frame::decode(bytes),
        Ok(Frame::Arp { arp, ethernet }) if arp.operation == ArpOperation::Reply && arp.sender_ip == vip && ethernet.destination == mac
    )
}

pub fn inject(name: &str, vip: IpAddr, count: usize) -> Result<(), String> {
    let (mut tx, _rx, mac) = open(name, Duration::from_millis(10))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let valid: Vec<u8> = match vip {
        IpAddr::V4(vip) => arp_request(mac, Ipv4Addr::new(10, 0, 0, 1), vip),
        IpAddr::V6(vip) => Frame::Ndp {
            ethernet: EthernetHeader {
                destination: MacAddr::ipv6_multicast(solicited_node_group(vip)),
                source: mac,
                ether_type: ETHER_TYPE_IPV6,
            },
            ip: Ipv6Header {
                next_header: NEXT_HEADER_ICMPV6,
                hop_limit: 255,
                source: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
                destination: solicited_node_group(vip),
            },
            message: NdpMessage::Solicitation {
                target: vip,
                options: NdpOptions {
                    source_lla: Some(mac),
                    target_lla: None,
                },
            },
        }
        .to_bytes()
        .to_vec(),
    };
    let payload_start = EthernetHeader::LEN;
    let valid_len = match vip {
        IpAddr::V4(_) => EthernetHeader::LEN + ArpPacket::LEN,
        IpAddr::V6(_) => valid.len(),
    };
    for index in 0..count {
        let mut frame = valid.clone();
        match index % 4 {
            // Truncated: every length of the header and body, in turn.
            0 => frame.truncate((index / 4) % valid_len.max(1)),
            // One to four random bytes of the payload changed (checksums, lengths, types...).
            1 => {
                for _ in 0..rng.random_range(1..=4) {
                    let at = rng.random_range(payload_start..frame.len());
                    frame[at] = rng.random();
                }
            }
            // Zero-length or oversized option / bad operation, at a fixed offset.
            2 => {
                let at = (payload_start + 7 + index) % frame.len();
                frame[at] = if index % 8 < 4 { 0 } else { 0xff };
            }
            // Random bytes behind a valid Ethernet header.
            _ => {
                let len = rng.random_range(0..120);
                frame.truncate(payload_start);
                frame.extend((0..len).map(|_| rng.random::<u8>()));
            }
        }
        if frame.len() < EthernetHeader::LEN {
            // The kernel refuses frames shorter than an Ethernet header; send the header only.
            frame = valid[..EthernetHeader::LEN].to_vec();
        }
        if let Some(Err(error)) = tx.send_to(&frame, None) {
            return Err(format!("send: {error}"));
        }
    }
    println!("injected={count}");
    Ok(())
}

pub fn latency(name: &str, source: Ipv4Addr, vip: Ipv4Addr, count: usize) -> Result<(), String> {
    let (mut tx, mut rx, mac) = open(name, Duration::from_millis(200))?;
    let request = arp_request(mac, source, vip);
    let mut samples_ns: Vec<u64> = Vec::with_capacity(count);
    let mut lost = 0usize;
    for _ in 0..count {
        let start = Instant::now();
        if let Some(Err(error)) = tx.send_to(&request, None) {
            return Err(format!("send: {error}"));
        }
        loop {
            match rx.next() {
                Ok(bytes) if is_reply_from(bytes, vip, mac) => {
                    samples_ns.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
                    break;
                }
                Ok(_) if start.elapsed() < Duration::from_millis(200) => {}
                Ok(_) | Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    samples_ns.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if samples_ns.is_empty() {
            return f64::NAN;
        }
        let index = ((samples_ns.len() as f64 - 1.0) * p).round() as usize;
        samples_ns[index.min(samples_ns.len() - 1)] as f64 / 1000.0
    };
    println!(
        "answered={} lost={lost} p50_us={:.1} p99_us={:.1} max_us={:.1}",
        samples_ns.len(),
        percentile(0.50),
        percentile(0.99),
        percentile(1.0)
    );
    Ok(())
}

pub fn flood(name: &str, source: Ipv4Addr, vip: Ipv4Addr, seconds: f64) -> Result<(), String> {
    let (mut tx, mut rx, mac) = open(name, Duration::from_millis(20))?;
    let request = arp_request(mac, source, vip);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let receiver = {
        let stop = Arc::clone(&stop);
        let answered = Arc::clone(&answered);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(bytes) = rx.next() {
                    if is_reply_from(bytes, vip, mac) {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let duration = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        match tx.send_to(&request, None) {
            Some(Ok(())) => sent += 1,
            // A full socket buffer: try again.
            Some(Err(_)) | None => std::thread::yield_now(),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Replies still in flight are counted for a short grace period.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let _ = receiver.join();
    let answered = answered.load(Ordering::Relaxed);
    println!(
        "sent={sent} answered={answered} sent_per_s={:.0} answered_per_s={:.0}",
        sent as f64 / elapsed,
        answered as f64 / elapsed
    );
    Ok(())
}

/// Runs a probe from command-line words: `inject IF VIP COUNT`, `latency IF SOURCE_IP VIP COUNT`
/// or `flood IF SOURCE_IP VIP SECONDS`.
pub fn run_args(args: &[String]) -> Result<(), String> {
    let argument = |index: usize| args.get(index).map(String::as_str).unwrap_or_default();
    match argument(0) {
        "inject" => match (argument(2).parse(), argument(3).parse()) {
            (Ok(vip), Ok(count)) => inject(argument(1), vip, count),
            _ => Err("usage: inject IF VIP COUNT".into()),
        },
        "latency" => match (
            argument(2).parse(),
            argument(3).parse(),
            argument(4).parse(),
        ) {
            (Ok(source), Ok(vip), Ok(count)) => latency(argument(1), source, vip, count),
            _ => Err("usage: latency IF SOURCE_IP VIP COUNT".into()),
        },
        "flood" => match (
            argument(2).parse(),
            argument(3).parse(),
            argument(4).parse(),
        ) {
            (Ok(source), Ok(vip), Ok(seconds)) => flood(argument(1), source, vip, seconds),
            _ => Err("usage: flood IF SOURCE_IP VIP SECONDS".into()),
        },
        _ => Err("usage: inject|latency|flood ...".into()),
    }
}
