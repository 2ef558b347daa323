//! A deterministic in-memory network that runs real [`Membership`] cores on virtual time: for the
//! tests, the 1,000-member bandwidth figure, and the workspace simulator. One seed drives the loss
//! and every member's RNG.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Config;
use crate::identity::{MemberId, NodeName};
use crate::membership::{Action, Input, MemberEvent, Membership};
use crate::seal::Keyring;

/// A member event as seen by one observer at one virtual instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Virtual time since the simulation started.
    pub at: Duration,
    /// Who saw it.
    pub observer: SocketAddr,
    /// What.
    pub event: MemberEvent,
}

/// A datagram in flight: delivery time, sequence (ties), from, to, bytes.
type Delivery = (Instant, u64, SocketAddr, SocketAddr, Vec<u8>);

struct SimNode {
    membership: Membership,
    running: bool,
}

/// The simulated network.
pub struct SimNetwork {
    start: Instant,
    now: Instant,
    rng: ChaCha8Rng,
    seed: u64,
    nodes: BTreeMap<SocketAddr, SimNode>,
    deliveries: BinaryHeap<Reverse<Delivery>>,
    deadlines: BinaryHeap<Reverse<(Instant, SocketAddr)>>,
    sequence: u64,
    /// Per-mille loss of every datagram.
    pub loss_per_mille: u32,
    /// One-way latency.
    pub latency: Duration,
    blocked: BTreeSet<(SocketAddr, SocketAddr)>,
    /// Every event every member emitted.
    pub observations: Vec<Observation>,
    /// Bytes sent, by sender.
    pub sent_bytes: BTreeMap<SocketAddr, u64>,
    /// The largest datagram any member sent.
    pub max_datagram_bytes: usize,
    /// Whether to keep [`Self::observations`] (off for very large runs).
    pub record: bool,
}

/// The address of simulated member `index` (10.x.y.z:7946).
pub fn sim_addr(index: u32) -> SocketAddr {
    let index = index + 1;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(
            10,
            (index >> 16) as u8,
            (index >> 8) as u8,
            index as u8,
        )),
        7946,
    )
}

impl SimNetwork {
    /// An empty network; all randomness derives from `seed`.
    pub fn new(seed: u64) -> Self {
        let start = Instant::now();
        Self {
            start,
            now: start,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            nodes: BTreeMap::new(),
            deliveries: BinaryHeap::new(),
            deadlines: BinaryHeap::new(),
            sequence: 0,
            loss_per_mille: 0,
            latency: Duration::from_micros(200),
            blocked: BTreeSet::new(),
            observations: Vec::new(),
            sent_bytes: BTreeMap::new(),
            max_datagram_bytes: 0,
            record: true,
        }
    }

    /// Virtual time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Adds (or replaces, for a restart) the member `name` at `addr` with `incarnation`.
    pub fn add(
        &mut self,
        config: Config,
        name: &str,
        incarnation: u64,
        addr: SocketAddr,
        keyring: Keyring,
    ) {
        let me = MemberId::new(
            NodeName::new(name).unwrap_or_else(|_| NodeName::placeholder()),
            incarnation,
            addr,
        );
        let seed = self.seed ^ (u64::from(addr.port()) << 32) ^ incarnation ^ self.rng.next_u64();
        match Membership::new(config, me, keyring, seed, self.now) {
            Ok(membership) => {
                self.nodes.insert(
                    addr,
                    SimNode {
                        membership,
                        running: true,
                    },
                );
                self.drain(addr);
            }
            Err(error) => panic!("simulated member {name}: invalid config: {error}"),
        }
    }

    /// Gives `addr` an input now.
    pub fn input(&mut self, addr: SocketAddr, input: Input) {
        let now = self.now;
        if let Some(node) = self.nodes.get_mut(&addr) {
            if node.running {
                node.membership.handle(now, input);
            }
        }
        self.drain(addr);
    }

    /// Tells every member that all the others are alive (a converged start for large simulations).
    pub fn assume_converged(&mut self) {
        let ids: Vec<MemberId> = self
            .nodes
            .values()
            .map(|n| n.membership.local_id().clone())
            .collect();
        let addrs: Vec<SocketAddr> = self.nodes.keys().copied().collect();
        let now = self.now;
        for addr in addrs {
            if let Some(node) = self.nodes.get_mut(&addr) {
                node.membership.assume_alive(now, ids.clone());
            }
            self.drain(addr);
        }
    }

    /// Stops a member abruptly (kill -9): it neither sends nor receives any more.
    pub fn kill(&mut self, addr: SocketAddr) {
        if let Some(node) = self.nodes.get_mut(&addr) {
            node.running = false;
        }
    }

    /// Blocks traffic between the two groups (both directions).
    pub fn partition(&mut self, left: &[SocketAddr], right: &[SocketAddr]) {
        for a in left {
            for b in right {
                self.blocked.insert((*a, *b));
                self.blocked.insert((*b, *a));
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// The member at `addr`.
    pub fn member(&self, addr: SocketAddr) -> Option<&Membership> {
        self.nodes.get(&addr).map(|n| &n.membership)
    }

    /// Mutable access to the member at `addr` (call [`Self::input`] afterwards to flush its actions,
    /// or use `input` directly).
    pub fn member_mut(&mut self, addr: SocketAddr) -> Option<&mut Membership> {
        self.nodes.get_mut(&addr).map(|n| &mut n.membership)
    }

    /// Addresses of the members that run.
    pub fn running(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.running)
            .map(|(a, _)| *a)
            .collect()
    }

    /// Injects raw bytes as if `from` had sent them to `to`, delivered after the usual latency.
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        self.sequence += 1;
        self.deliveries.push(Reverse((
            self.now + self.latency,
            self.sequence,
            from,
            to,
            bytes,
        )));
    }

    fn drain(&mut self, addr: SocketAddr) {
        let Some(node) = self.nodes.get_mut(&addr) else {
            return;
        };
        let mut outgoing = Vec::new();
        while let Some(action) = node.membership.poll_action() {
            match action {
                Action::Send { to, bytes } => outgoing.push((to, bytes)),
                Action::Event(event) => {
                    if self.record {
                        self.observations.push(Observation {
                            at: self.now - self.start,
                            observer: addr,
                            event,
                        });
                    }
                }
            }
        }
        if let Some(deadline) = node.membership.poll_timeout() {
            self.deadlines.push(Reverse((deadline, addr)));
        }
        for (to, bytes) in outgoing {
            *self.sent_bytes.entry(addr).or_default() += bytes.len() as u64;
            self.max_datagram_bytes = self.max_datagram_bytes.max(bytes.len());
            let lost =
                self.loss_per_mille > 0 && (self.rng.next_u32() % 1000) < self.loss_per_mille;
            if lost || self.blocked.contains(&(addr, to)) {
                continue;
            }
            self.sequence += 1;
            self.deliveries.push(Reverse((
                self.now + self.latency,
                self.sequence,
                addr,
                to,
                bytes,
            )));
        }
    }

    /// Runs until `duration` more virtual time has passed.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            let next_delivery = self.deliveries.peek().map(|Reverse(d)| d.0);
            let next_deadline = self.deadlines.peek().map(|Reverse(d)| d.0);
            let next = match (next_delivery, next_deadline) {
                (None, None) => break,
                (Some(a), None) | (None, Some(a)) => a,
                (Some(a), Some(b)) => a.min(b),
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if next_delivery == Some(next) {
                if let Some(Reverse((_, _, from, to, bytes))) = self.deliveries.pop() {
                    let now = self.now;
                    if let Some(node) = self.nodes.get_mut(&to) {
                        if node.running {
                            node.membership.handle(now, Input::Datagram { from, bytes });
                            self.drain(to);
                        }
                    }
                }
            } else if let Some(Reverse((deadline, addr))) = self.deadlines.pop() {
                let now = self.now;
                if let Some(node) = self.nodes.get_mut(&addr) {
                    // Stale heap entries (the member moved its deadline) are skipped.
                    if node.running && node.membership.poll_timeout() == Some(deadline) {
                        node.membership.handle(now, Input::Timeout);
                        self.drain(addr);
                    }
                }
            }
        }
        self.now = end;
    }

    /// The first instant at which `observer` saw an event matching `predicate`.
    pub fn first_seen(
        &self,
        observer: SocketAddr,
        predicate: impl Fn(&MemberEvent) -> bool,
    ) -> Option<Duration> {
        self.observations
            .iter()
            .find(|o| o.observer == observer && predicate(&o.event))
            .map(|o| o.at)
    }
}
