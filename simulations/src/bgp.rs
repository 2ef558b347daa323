//! The simulated BGP router: one passive peer per speaker connection, speaking real BGP (the
//! messages of `ironlb_announce::bgp::message`) to the speakers' real session FSMs, with a hold
//! timer, and the next hops it learnt per prefix.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::BytesMut;
use ipnet::IpNet;
use ironlb_announce::bgp::message::{Capability, CodecContext, Message, Open};

/// The router's ASN (the BGPPeer's `peerASN`).
pub const ROUTER_ASN: u32 = 64512;
/// The speakers' ASN (`myASN`).
pub const SPEAKER_ASN: u32 = 64500;
/// The router's address (the BGPPeer's `peerAddress`).
pub const ROUTER_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 255, 1);
/// The router's proposed hold time.
pub const ROUTER_HOLD: Duration = Duration::from_secs(90);

#[derive(Debug, Default)]
struct Peer {
    connection: u64,
    buffer: BytesMut,
    context: CodecContext,
    established: bool,
    hold: Duration,
    last_heard: Duration,
    last_sent: Duration,
    routes: BTreeMap<IpNet, IpAddr>,
}

/// What the router does after reading bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Bytes to write back.
    pub bytes: Vec<u8>,
    /// The router closes the connection (after a NOTIFICATION or an undecodable stream).
    pub close: bool,
}

/// The router.
#[derive(Debug, Default)]
pub struct Router {
    peers: BTreeMap<usize, Peer>,
}

impl Router {
    /// A router with no session.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new connection from speaker `node` replaces any previous one (and its routes).
    pub fn connect(&mut self, node: usize, connection: u64, now: Duration) {
        self.peers.insert(
            node,
            Peer {
                connection,
                last_heard: now,
                last_sent: now,
                hold: ROUTER_HOLD,
                ..Peer::default()
            },
        );
    }

    /// The speaker closed `connection`: its routes go.
    pub fn close(&mut self, node: usize, connection: u64) {
        if self
            .peers
            .get(&node)
            .is_some_and(|p| p.connection == connection)
        {
            self.peers.remove(&node);
        }
    }

    /// Bytes from `node` on `connection`.
    pub fn receive(&mut self, node: usize, connection: u64, now: Duration, bytes: &[u8]) -> Reply {
        let mut reply = Reply::default();
        let Some(peer) = self.peers.get_mut(&node) else {
            return reply;
        };
        if peer.connection != connection {
            return reply;
        }
        peer.buffer.extend_from_slice(bytes);
        peer.last_heard = now;
        loop {
            let message = match Message::decode_frame(&mut peer.buffer, &peer.context) {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_) => {
                    reply.close = true;
                    break;
                }
            };
            match message {
                Message::Open(open) => {
                    peer.context = CodecContext {
                        four_octet_asn: open.four_octet_asn().is_some(),
                    };
                    let proposed = Duration::from_secs(u64::from(open.hold_time_secs));
                    peer.hold = if proposed.is_zero() {
                        Duration::ZERO
                    } else {
                        proposed.min(ROUTER_HOLD)
                    };
                    let ours = Message::Open(Open {
                        my_as: ROUTER_ASN as u16,
                        hold_time_secs: ROUTER_HOLD.as_secs() as u16,
                        bgp_identifier: ROUTER_ADDRESS,
                        capabilities: vec![
                            Capability::MultiProtocol { afi: 1, safi: 1 },
                            Capability::FourOctetAsn(ROUTER_ASN),
                        ],
                    });
                    reply.bytes.extend_from_slice(&ours.to_bytes(&peer.context));
                    reply
                        .bytes
                        .extend_from_slice(&Message::Keepalive.to_bytes(&peer.context));
                    peer.last_sent = now;
                }
                Message::Keepalive => {
                    peer.established = true;
                }
                Message::Update(update) => {
                    for prefix in update.withdrawn {
                        peer.routes.remove(&IpNet::V4(prefix));
                    }
                    if let Some(unreach) = update.attributes.mp_unreach.as_ref() {
                        for prefix in &unreach.withdrawn {
                            peer.routes.remove(prefix);
                        }
                    }
                    if let Some(next_hop) = update.attributes.next_hop {
                        for prefix in update.nlri {
                            peer.routes.insert(IpNet::V4(prefix), IpAddr::V4(next_hop));
                        }
                    }
                    if let Some(reach) = update.attributes.mp_reach.as_ref() {
                        if let Some(next_hop) = reach.next_hops.first() {
                            for prefix in &reach.nlri {
                                peer.routes.insert(*prefix, *next_hop);
                            }
                        }
                    }
                }
                Message::Notification(_) => {
                    reply.close = true;
                    break;
                }
                Message::RouteRefresh(_) => {}
            }
        }
        if reply.close {
            self.peers.remove(&node);
        }
        reply
    }

    /// Keepalives due at `now` (one third of the hold time), and sessions whose hold timer
    /// expired (a crashed speaker): their routes go.
    pub fn tick(&mut self, now: Duration) -> Vec<(usize, u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for (node, peer) in &mut self.peers {
            if peer.hold.is_zero() {
                continue;
            }
            if now.saturating_sub(peer.last_heard) > peer.hold {
                expired.push(*node);
                continue;
            }
            if peer.established && now.saturating_sub(peer.last_sent) >= peer.hold / 3 {
                peer.last_sent = now;
                out.push((
                    *node,
                    peer.connection,
                    Message::Keepalive.to_bytes(&peer.context).to_vec(),
                ));
            }
        }
        for node in expired {
            self.peers.remove(&node);
        }
        out
    }

    /// Next hops per prefix, over every session.
    pub fn next_hops(&self) -> BTreeMap<IpNet, BTreeSet<IpAddr>> {
        let mut table: BTreeMap<IpNet, BTreeSet<IpAddr>> = BTreeMap::new();
        for peer in self.peers.values() {
            for (prefix, next_hop) in &peer.routes {
                table.entry(*prefix).or_default().insert(*next_hop);
            }
        }
        table
    }

    /// Whether `node` has an established session.
    pub fn established(&self, node: usize) -> bool {
        self.peers.get(&node).is_some_and(|p| p.established)
    }
}
