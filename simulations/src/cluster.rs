//! One simulated cluster, one seed: N speakers running the real cores, the controller's real
//! core, the API server, the network, the layer 2 segment and the fault schedule, on virtual
//! time. [`Sim::run`] returns a [`Report`].
//!
//! Each speaker is the same glue the `ironlb speaker` actor tree is, without actors: gossip
//! [`Membership`] events → the member view (as `forward_members`) → [`Layer2Core::reconcile_at`]
//! with the node's wall clock (the partition rule on) → announce / withdraw into the
//! [`GratuitousSchedule`] and the layer 2 segment, claims back into gossip; each speaker also
//! renews its Lease every second and writes its `ServiceL2Status` objects through a model of the
//! status writer, and the split-brain checker bounds split brain across gossip partitions. The controller is [`Core`] over the real allocator, with the status writer's
//! retry rule (backoff 100 ms to 10 s; a 409 or 404 drops the write).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironlb_actors::bgp::{BgpAction, BgpCore};
use ironlb_actors::cluster::Snapshot;
use ironlb_actors::decide::{MemberView, Members, Options as SpeakerOptions};
use ironlb_actors::layer2::{Action as L2Action, Layer2Core};
use ironlb_actors::model::ServiceKey as L2Key;
use ironlb_announce::bgp::session::{Action as SessionAction, Input as SessionInput, Session};
use ironlb_announce::l2::proto::schedule::{
    Action as GarpAction, GratuitousSchedule, Input as GarpInput,
};
use ironlb_controller::core::{
    Action as ControllerAction, Core, CoreOptions, Input as ControllerInput,
};
use ironlb_controller::ipam::AllocatorIpam;
use ironlb_controller::view::{ServiceKey, ServiceView};
use ironlb_controller::{core::ConfigUpdate, core::StatusWrite};
use ironlb_gossip::seal::SealedTransport;
use ironlb_gossip::{
    Action as GossipAction, Input as GossipInput, Keyring, MemberId, Membership, NodeName,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::api::{Api, ConfigBroken, POOL_SETS};
use crate::bgp::{Router, ROUTER_ADDRESS};
use crate::options::{Bug, Fault, Options};
use crate::trace::Trace;

/// The gossip cluster name.
pub const CLUSTER: &str = "ironlb-sim";
/// One-way latency of every datagram before any injected delay.
pub const LATENCY: Duration = Duration::from_micros(200);
/// How long a starting speaker waits for the others' claims (`--gossip-settle`'s default).
pub const SETTLE: Duration = Duration::from_secs(1);
/// After [`SETTLE`], a starting speaker polls this often until it knows every active member's
/// claims (the actor tree's `SETTLE_POLL`).
pub const SETTLE_POLL: Duration = Duration::from_millis(50);
/// ... and settles anyway this long after [`SETTLE`] (the actor tree's `SETTLE_EXTRA_MAX`).
pub const SETTLE_EXTRA_MAX: Duration = Duration::from_secs(4);
/// How long a planned handover may take (`--shutdown-grace`'s default).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often a handover in progress is re-checked (the actor's tick).
pub const HANDOVER_TICK: Duration = Duration::from_millis(100);
/// From a member event to the layer 2 reconcile (the actors' message hop).
pub const RECONCILE_DELAY: Duration = Duration::from_micros(200);
/// After a partition heals or a pause ends, a takeover of that node's IPs is not "false".
pub const DISTURBANCE_GRACE: Duration = Duration::from_secs(3);
/// The controller's first retry delay and its cap.
pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
/// The cap of the controller's retry delay.
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(10);
/// Interval of the liveness probes during the quiet phase.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Router keepalive and hold-timer tick.
pub const ROUTER_TICK: Duration = Duration::from_secs(1);
/// A run stops after this many events (a runaway guard; a report notes it).
pub const EVENTS_MAX: u64 = 200_000_000;
/// How often a speaker renews its Lease `ironlb-speaker-<node>` (the actor tree's
/// `LEASE_RENEW`).
pub const LEASE_RENEW: Duration = Duration::from_secs(1);
/// How long a `ServiceL2Status` change waits to be coalesced (the status writer's
/// `STATUS_COALESCE`).
pub const STATUS_COALESCE: Duration = Duration::from_millis(50);
/// A failed status write is retried after this long (the status writer's retry).
pub const STATUS_RETRY: Duration = Duration::from_secs(1);
/// A (re)starting status writer adopts its earlier life's objects and deletes those nobody
/// wants after this long.
pub const STATUS_ADOPT_FLUSH: Duration = Duration::from_secs(2);
/// The simulated wall clock's epoch (2026-01-01T00:00:00Z), in µs since the Unix epoch.
pub const WALL_EPOCH_MICROS: i64 = 1_767_225_600_000_000;
/// With clock drift, each node's wall clock is off by up to this much (NTP-disciplined wall
/// clocks; the drift itself is applied to the nodes' monotonic timers).
pub const WALL_OFFSET_MAX: Duration = Duration::from_millis(50);
/// Longest watch delivery delay of the simulated API server.
pub const WATCH_DELAY_MAX: Duration = Duration::from_millis(20);
/// Every node of a gossip partition has marked the other side inactive this long after the
/// partition starts (SWIM on the LAN profile: a 40 ms probe round robin over at most 6 others,
/// 12 ms probe timeout, about 120 ms of suspicion, one more gossip round to spread it; measured
/// crash failover max 0.7 s with 10 % loss).
pub const DETECTION_MAX: Duration = Duration::from_secs(1);
/// The bound the partition rule guarantees on a split brain across a gossip partition while its
/// preconditions hold (both owners reach the API, no other fault): every node has detected the
/// partition ([`DETECTION_MAX`]); the winner's `ServiceL2Status` is written ([`STATUS_COALESCE`]
/// then a watch delivery) and a Lease renewal carrying its new member count follows
/// ([`LEASE_RENEW`]); one more renewal period, because the first may predate the loser's
/// `inactive_since` by the two wall clocks' offset ([`WALL_OFFSET_MAX`] each) or the timers'
/// drift; the watch brings it to the loser ([`WATCH_DELAY_MAX`]), which reconciles and withdraws.
pub const SPLIT_BRAIN_BOUND: Duration = Duration::from_millis(
    DETECTION_MAX.as_millis() as u64
        + STATUS_COALESCE.as_millis() as u64
        + 2 * WATCH_DELAY_MAX.as_millis() as u64
        + 2 * LEASE_RENEW.as_millis() as u64
        + 10,
);

/// What one seed produced.
#[derive(Clone, Debug)]
pub struct Report {
    /// The options (seed, faults).
    pub options: Options,
    /// Safety violations and liveness failures, each a readable line with its time.
    pub failures: Vec<String>,
    /// Owner crash → first gratuitous ARP of a successor, per IP.
    pub failovers: Vec<Duration>,
    /// A node took an IP while its owner was alive, reachable and eligible.
    pub false_takeovers: u64,
    /// Time during which at least one IP had two or more answering nodes.
    pub split_brain: Duration,
    /// Events handled.
    pub events: u64,
    /// Simulated time.
    pub simulated: Duration,
    /// The trace hash.
    pub trace_hash: String,
    /// From the start of the quiet phase until the liveness checks passed (and kept passing).
    pub converged_after: Option<Duration>,
    /// Each stretch during which one IP was answered by two or more nodes that a gossip
    /// partition separated (one entry per IP and stretch).
    pub partition_splits: Vec<Duration>,
    /// Of those, the longest part during which the partition rule's preconditions held (every
    /// answerer reaches the API, no fault started or ended): what [`SPLIT_BRAIN_BOUND`] bounds.
    pub rule_split_max: Duration,
    /// Stretches during which the preconditions held (checked against [`SPLIT_BRAIN_BOUND`]
    /// when the rule is on, only measured with `--no-lease-rule`).
    pub rule_windows: u64,
    /// Partition-rule yields (`PartitionYield` actions of the layer 2 cores).
    pub partition_yields: u64,
}

impl Report {
    /// No failure.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subscriber {
    Node(usize),
    Controller,
}

#[derive(Debug)]
enum Event {
    Datagram {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    Wake {
        node: usize,
        generation: u64,
    },
    Reconcile {
        node: usize,
        life: u64,
    },
    Settle {
        node: usize,
        life: u64,
    },
    HandoverTick {
        node: usize,
        life: u64,
    },
    ApiDeliver(Subscriber),
    ControllerFlush {
        generation: u64,
    },
    ControllerStart,
    FaultTick,
    Restart {
        node: usize,
    },
    Unpause {
        node: usize,
        life: u64,
    },
    Heal {
        partition: u64,
    },
    ApiBack {
        outage: u64,
    },
    Quiet,
    Probe,
    LeaseRenew {
        node: usize,
        life: u64,
    },
    StatusFlush {
        node: usize,
        life: u64,
    },
    NodeApiBack {
        node: usize,
        loss: u64,
    },
    BgpConnected {
        node: usize,
        connection: u64,
    },
    BgpToRouter {
        node: usize,
        connection: u64,
        bytes: Vec<u8>,
    },
    BgpToNode {
        node: usize,
        connection: u64,
        bytes: Vec<u8>,
    },
    BgpClosedByNode {
        node: usize,
        connection: u64,
    },
    BgpClosedByRouter {
        node: usize,
        connection: u64,
    },
    RouterTick,
    /// Only used to carry a failure out of a borrow; never queued.
    Failure(String),
}

struct NodeSession {
    session: Session,
    connection: u64,
}

struct Node {
    name: String,
    addr: SocketAddr,
    intruder: bool,
    ppm: i64,
    life: u64,
    running: bool,
    paused_until: Duration,
    incarnation: u64,
    membership: Option<Membership>,
    layer2: Layer2Core,
    garp: GratuitousSchedule,
    bgp: BgpCore,
    sessions: BTreeMap<String, NodeSession>,
    snapshot: Option<Arc<Snapshot>>,
    api_seen: u64,
    api_pending: bool,
    members: Members,
    settled: bool,
    settle_deadline: Option<Duration>,
    leaving: Option<Duration>,
    reconcile_pending: bool,
    wake_at: Option<Duration>,
    wake_generation: u64,
    /// A takeover of this node's IPs before this instant is not counted as false.
    disturbed_until: Duration,
    /// The node cannot reach the API server (its own fault, [`Fault::NodeApiLoss`]).
    api_lost: bool,
    /// Which loss (the `NodeApiBack` of an older one is ignored).
    api_loss: u64,
    /// Offset of this node's wall clock.
    wall_offset_micros: i64,
    /// The status writer's pending `ServiceL2Status` changes (true: create, false: delete).
    status_pending: BTreeMap<L2Key, bool>,
    /// A status flush is scheduled.
    status_flush_scheduled: bool,
    /// The `ServiceL2Status` objects the status writer knows by name (adopted at start or
    /// created since): as the real writer, it can delete only those.
    status_names: BTreeSet<L2Key>,
    /// The status writer has not listed its earlier life's objects yet (the API server was out
    /// of reach): every flush tries again, as the real writer does.
    status_unadopted: bool,
}

/// One IP answered by two or more nodes.
#[derive(Clone, Debug)]
struct Split {
    /// When it started.
    since: Duration,
    /// Start of the current stretch without disturbance.
    stable_since: Duration,
    /// The last set of two or more answerers.
    nodes: BTreeSet<usize>,
    /// A gossip partition separated some of the answerers at some point.
    across: bool,
}

struct Controller {
    core: Option<Core<AllocatorIpam>>,
    fed: BTreeMap<ServiceKey, String>,
    config_fed: u64,
    api_seen: u64,
    api_pending: bool,
    writes: BTreeMap<ServiceKey, (StatusWrite, Duration)>,
    flush_at: Option<Duration>,
    flush_generation: u64,
}

/// One simulation.
pub struct Sim {
    options: Options,
    rng: ChaCha8Rng,
    base: Instant,
    now: Duration,
    queue: BTreeMap<(Duration, u64), Event>,
    sequence: u64,
    nodes: Vec<Node>,
    speakers: usize,
    api: Api,
    controller: Controller,
    partitions: BTreeMap<u64, BTreeSet<(usize, usize)>>,
    partition_counter: u64,
    outage_counter: u64,
    service_counter: u64,
    quiet: bool,
    router: Router,
    connection_counter: u64,
    loss_per_mille: u32,
    duplicate_per_mille: u32,
    delay_max: Duration,
    answerers: BTreeMap<IpAddr, BTreeSet<usize>>,
    split_since: Option<Duration>,
    pending_failovers: BTreeMap<IpAddr, (usize, Duration)>,
    last_false_takeover: BTreeMap<IpAddr, Duration>,
    cluster_opener: Option<SealedTransport>,
    cluster_sealer: Option<SealedTransport>,
    intruder_opener: Option<SealedTransport>,
    intruder_sealer: Option<SealedTransport>,
    trace: Trace,
    report: Report,
    converged_since: Option<Duration>,
    splits: BTreeMap<IpAddr, Split>,
    api_loss_counter: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.options.seed)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

fn node_addr(index: usize) -> SocketAddr {
    let index = index as u32 + 1;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, (index >> 8) as u8, index as u8)),
        7946,
    )
}

fn cluster_keyring() -> Keyring {
    // A fixed 32-byte secret; derivation cannot fail for it.
    Keyring::new(b"ironlb-simulated-cluster-key-32b").unwrap_or_else(|_| unreachable_keyring())
}

fn intruder_keyring() -> Keyring {
    Keyring::new(b"some-other-cluster-key-of-32-byt").unwrap_or_else(|_| unreachable_keyring())
}

fn unreachable_keyring() -> Keyring {
    panic!("a fixed 32-byte key always derives")
}

impl Sim {
    /// Builds the cluster of `options`; `print` prints the readable trace.
    pub fn new(options: Options, print: bool) -> Result<Self, ConfigBroken> {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let speakers = options.nodes;
        let names: Vec<String> = (0..speakers).map(|i| format!("node-{i}")).collect();
        let mut l2_nodes: BTreeSet<usize> =
            (0..speakers).filter(|_| rng.random_bool(0.8)).collect();
        if l2_nodes.len() < 2 {
            l2_nodes.extend(0..speakers.min(2));
        }
        let excluded: BTreeSet<usize> = if rng.random_bool(0.2) {
            BTreeSet::from([rng.random_range(0..speakers)])
        } else {
            BTreeSet::new()
        };
        let api = Api::new(names.clone(), l2_nodes, excluded)?;
        let mut nodes = Vec::new();
        let drift = i64::from(options.drift_ppm_max);
        for (index, name) in names.into_iter().enumerate() {
            let ppm = if drift > 0 {
                rng.random_range(-drift..=drift)
            } else {
                0
            };
            let mut node = Node::new(name, node_addr(index), false, ppm);
            if drift > 0 {
                let offset = WALL_OFFSET_MAX.as_micros() as i64;
                node.wall_offset_micros = rng.random_range(-offset..=offset);
            }
            nodes.push(node);
        }
        if options.has(Fault::WrongKey) {
            nodes.push(Node::new("intruder".to_owned(), node_addr(250), true, 0));
        }
        let accept_any_key = options.bug == Some(Bug::AcceptAnyKey) && options.has(Fault::WrongKey);
        let transport = |keyring: Keyring, rng: &mut ChaCha8Rng| {
            let mut boot_id = [0u8; 4];
            rng.fill_bytes(&mut boot_id);
            SealedTransport::new(CLUSTER, keyring, 1400, boot_id, rng.next_u64())
        };
        let (cluster_opener, cluster_sealer, intruder_opener, intruder_sealer) = if accept_any_key {
            (
                Some(transport(cluster_keyring(), &mut rng)),
                Some(transport(cluster_keyring(), &mut rng)),
                Some(transport(intruder_keyring(), &mut rng)),
                Some(transport(intruder_keyring(), &mut rng)),
            )
        } else {
            (None, None, None, None)
        };
        let report = Report {
            options: options.clone(),
            failures: Vec::new(),
            failovers: Vec::new(),
            false_takeovers: 0,
            split_brain: Duration::ZERO,
            events: 0,
            simulated: Duration::ZERO,
            trace_hash: String::new(),
            converged_after: None,
            partition_splits: Vec::new(),
            rule_split_max: Duration::ZERO,
            rule_windows: 0,
            partition_yields: 0,
        };
        Ok(Self {
            loss_per_mille: options.loss_per_mille,
            duplicate_per_mille: options.duplicate_per_mille,
            delay_max: options.delay_max,
            options,
            rng,
            base: Instant::now(),
            now: Duration::ZERO,
            queue: BTreeMap::new(),
            sequence: 0,
            nodes,
            speakers,
            api,
            controller: Controller {
                core: None,
                fed: BTreeMap::new(),
                config_fed: 0,
                api_seen: 0,
                api_pending: false,
                writes: BTreeMap::new(),
                flush_at: None,
                flush_generation: 0,
            },
            partitions: BTreeMap::new(),
            partition_counter: 0,
            outage_counter: 0,
            service_counter: 0,
            quiet: false,
            router: Router::new(),
            connection_counter: 0,
            answerers: BTreeMap::new(),
            split_since: None,
            pending_failovers: BTreeMap::new(),
            last_false_takeover: BTreeMap::new(),
            cluster_opener,
            cluster_sealer,
            intruder_opener,
            intruder_sealer,
            trace: Trace::new(print),
            report,
            converged_since: None,
            splits: BTreeMap::new(),
            api_loss_counter: 0,
        })
    }

    /// Runs the seed to the end and reports.
    pub fn run(mut self) -> Report {
        self.setup();
        let end = self.options.fault_phase + self.options.liveness_phase;
        while let Some(((at, _), event)) = self.queue.pop_first() {
            if at > end {
                break;
            }
            self.advance(at);
            self.report.events += 1;
            if self.report.events > EVENTS_MAX {
                let now = self.now;
                self.fail(now, "runaway: more than EVENTS_MAX events".to_owned());
                break;
            }
            self.handle(event);
        }
        self.advance(end);
        self.finish();
        self.report.simulated = end;
        self.report.trace_hash = self.trace.hash_hex();
        self.report
    }

    fn setup(&mut self) {
        let line = format!(
            "seed {} nodes {} services {} faults {} loss {}‰ dup {}‰ delay-max {:?} drift-max {}ppm l2-nodes {:?} excluded {:?}",
            self.options.seed,
            self.options.nodes,
            self.options.services,
            self.options.faults_text(),
            self.loss_per_mille,
            self.duplicate_per_mille,
            self.delay_max,
            self.options.drift_ppm_max,
            self.api.l2_nodes,
            self.api.excluded,
        );
        self.trace.line(Duration::ZERO, &line);
        for i in 0..self.options.services {
            self.create_service(i);
        }
        self.start_controller();
        for index in 0..self.nodes.len() {
            // Speakers start within the first second, in random order.
            let at = Duration::from_millis(self.rng.random_range(0..1000));
            self.push(at, Event::Restart { node: index });
        }
        let has_actions = self.action_faults().next().is_some();
        if has_actions {
            let first = self.fault_delay() + Duration::from_secs(3);
            self.push(first, Event::FaultTick);
        }
        self.push(self.options.fault_phase, Event::Quiet);
        self.push(ROUTER_TICK, Event::RouterTick);
    }

    fn create_service(&mut self, i: usize) {
        self.service_counter += 1;
        let name = format!("svc-{}", self.service_counter);
        // A third of the Services share an IP key (cluster policy, disjoint ports).
        let sharing = self.rng.random_bool(0.33);
        let port = 8000 + self.service_counter as u16;
        let local = !sharing && self.rng.random_bool(0.3);
        let endpoints = self.random_endpoints();
        let key = sharing.then(|| "shared-1".to_owned());
        self.api
            .create_service(&name, key, BTreeSet::from([port]), local, endpoints);
        let line = format!(
            "api create {name} (#{i}) sharing {sharing} local {local} endpoints {:?}",
            self.api.services.get(&name).map(|s| &s.endpoints)
        );
        self.trace.line(self.now, &line);
    }

    fn random_endpoints(&mut self) -> BTreeSet<usize> {
        let p = if self.rng.random_bool(0.1) { 0.0 } else { 0.6 };
        (0..self.speakers)
            .filter(|_| self.rng.random_bool(p))
            .collect()
    }

    fn push(&mut self, at: Duration, event: Event) {
        self.sequence += 1;
        self.queue.insert((at, self.sequence), event);
    }

    fn advance(&mut self, at: Duration) {
        if at > self.now {
            self.now = at;
        }
    }

    fn fail(&mut self, at: Duration, text: String) {
        let line = format!("FAILURE {text}");
        self.trace.line(at, &line);
        if self.report.failures.len() < 20 {
            self.report
                .failures
                .push(format!("at {:.3}s: {text}", at.as_secs_f64()));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Clocks

    fn local(&self, node: usize, at: Duration) -> Instant {
        let ppm = self.nodes.get(node).map_or(0, |n| n.ppm);
        let nanos = at.as_nanos() as i128;
        let local = nanos + nanos * i128::from(ppm) / 1_000_000;
        self.base + Duration::from_nanos(local.max(0) as u64)
    }

    fn global(&self, node: usize, deadline: Instant) -> Duration {
        let ppm = i128::from(self.nodes.get(node).map_or(0, |n| n.ppm));
        let local = deadline.saturating_duration_since(self.base).as_nanos() as i128;
        let mut global = (local * 1_000_000 + (1_000_000 + ppm) - 1) / (1_000_000 + ppm);
        // Round up until the node's clock has reached the deadline.
        for _ in 0..4 {
            if self.local(node, Duration::from_nanos(global.max(0) as u64)) >= deadline {
                break;
            }
            global += 1;
        }
        Duration::from_nanos(global.max(0) as u64).max(self.now)
    }

    // -----------------------------------------------------------------------------------------
    // Dispatch

    fn handle(&mut self, event: Event) {
        match event {
            Event::Datagram { from, to, bytes } => self.deliver(from, to, bytes),
            Event::Wake { node, generation } => self.wake(node, generation),
            Event::Reconcile { node, life } => {
                if self.node_current(node, life) {
                    if self.paused(node) {
                        let at = self.nodes[node].paused_until;
                        self.push(at, Event::Reconcile { node, life });
                    } else {
                        self.reconcile(node);
                    }
                }
            }
            Event::Settle { node, life } => {
                if self.node_current(node, life) {
                    self.settle(node, life);
                }
            }
            Event::HandoverTick { node, life } => {
                if self.node_current(node, life) && self.nodes[node].leaving.is_some() {
                    self.reconcile(node);
                    if self.node_current(node, life) {
                        self.push(self.now + HANDOVER_TICK, Event::HandoverTick { node, life });
                    }
                }
            }
            Event::ApiDeliver(subscriber) => self.api_deliver(subscriber),
            Event::ControllerFlush { generation } => {
                if generation == self.controller.flush_generation {
                    self.controller.flush_at = None;
                    self.flush_writes();
                }
            }
            Event::ControllerStart => self.start_controller(),
            Event::FaultTick => self.fault_tick(),
            Event::Restart { node } => self.boot(node),
            Event::Unpause { node, life } => {
                if self.node_current(node, life) {
                    self.disturb();
                    self.trace.line(self.now, &format!("node-{node} resumed"));
                    self.nodes[node].disturbed_until = self.now + DISTURBANCE_GRACE;
                    self.refresh_answers(node);
                }
            }
            Event::Heal { partition } => self.heal(partition),
            Event::ApiBack { outage } => {
                if outage == self.outage_counter && !self.api.available {
                    self.api_up();
                }
            }
            Event::NodeApiBack { node, loss } => {
                if self
                    .nodes
                    .get(node)
                    .is_some_and(|n| n.api_lost && n.api_loss == loss)
                {
                    self.node_api_back(node);
                }
            }
            Event::LeaseRenew { node, life } => {
                if self.node_current(node, life) {
                    if self.paused(node) {
                        let at = self.nodes[node].paused_until;
                        self.push(at, Event::LeaseRenew { node, life });
                    } else {
                        self.renew_lease(node, life);
                    }
                }
            }
            Event::StatusFlush { node, life } => {
                if self.node_current(node, life) {
                    if self.paused(node) {
                        let at = self.nodes[node].paused_until;
                        self.push(at, Event::StatusFlush { node, life });
                    } else {
                        self.flush_statuses(node);
                    }
                }
            }
            Event::Quiet => self.quiet(),
            Event::Probe => self.probe(),
            Event::BgpConnected { node, connection } => {
                if self.paused(node) {
                    let at = self.nodes[node].paused_until;
                    self.push(at, Event::BgpConnected { node, connection });
                } else if self.session_of(node, connection).is_some() {
                    self.router.connect(node, connection, self.now);
                    let local = SocketAddr::new(self.nodes[node].addr.ip(), 40_000);
                    self.session_input(
                        node,
                        connection,
                        SessionInput::TcpConnected {
                            local,
                            remote: SocketAddr::new(IpAddr::V4(ROUTER_ADDRESS), 179),
                            local_v6: None,
                            local_v6_link_local: None,
                            local_v4: None,
                        },
                    );
                }
            }
            Event::BgpToRouter {
                node,
                connection,
                bytes,
            } => {
                let reply = self.router.receive(node, connection, self.now, &bytes);
                let at = self.now + LATENCY;
                if !reply.bytes.is_empty() {
                    self.push(
                        at,
                        Event::BgpToNode {
                            node,
                            connection,
                            bytes: reply.bytes,
                        },
                    );
                }
                if reply.close {
                    self.push(at, Event::BgpClosedByRouter { node, connection });
                }
            }
            Event::BgpToNode {
                node,
                connection,
                bytes,
            } => {
                if self.paused(node) {
                    let at = self.nodes[node].paused_until;
                    self.push(
                        at,
                        Event::BgpToNode {
                            node,
                            connection,
                            bytes,
                        },
                    );
                } else {
                    self.session_input(node, connection, SessionInput::Received(bytes));
                }
            }
            Event::BgpClosedByNode { node, connection } => self.router.close(node, connection),
            Event::BgpClosedByRouter { node, connection } => {
                self.session_input(node, connection, SessionInput::TcpFailed);
            }
            Event::Failure(text) => {
                let now = self.now;
                self.fail(now, text);
            }
            Event::RouterTick => {
                let now = self.now;
                for (node, connection, bytes) in self.router.tick(now) {
                    self.push(
                        now + LATENCY,
                        Event::BgpToNode {
                            node,
                            connection,
                            bytes,
                        },
                    );
                }
                self.push(now + ROUTER_TICK, Event::RouterTick);
            }
        }
    }

    fn node_current(&self, node: usize, life: u64) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.running && n.life == life)
    }

    fn paused(&self, node: usize) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.paused_until > self.now)
    }

    // -----------------------------------------------------------------------------------------
    // Speakers

    fn boot(&mut self, index: usize) {
        let now = self.now;
        let seed = self.rng.next_u64();
        let local = self.local(index, now);
        let speakers = self.speakers;
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        if node.running {
            return;
        }
        self.disturb();
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        node.life += 1;
        // The driver's incarnation is the boot time in ms; it only grows.
        let boot_ms = local.duration_since(self.base).as_millis() as u64 + 1_000_000;
        node.incarnation = boot_ms.max(node.incarnation + 1);
        let keyring = if node.intruder {
            intruder_keyring()
        } else {
            cluster_keyring()
        };
        let Ok(name) = NodeName::new(node.name.clone()) else {
            return;
        };
        let me = MemberId::new(name, node.incarnation, node.addr);
        let membership = match Membership::new(
            ironlb_gossip::Config::lan(CLUSTER),
            me,
            keyring,
            seed,
            local,
        ) {
            Ok(membership) => membership,
            Err(error) => {
                let text = format!("node-{index}: gossip config: {error}");
                self.fail(now, text);
                return;
            }
        };
        node.membership = Some(membership);
        node.running = true;
        node.paused_until = Duration::ZERO;
        node.layer2 = Layer2Core::new(node.name.clone(), SpeakerOptions::default());
        node.garp = GratuitousSchedule::new();
        node.bgp = BgpCore::new(node.name.clone(), SpeakerOptions::default(), SHUTDOWN_GRACE);
        node.sessions.clear();
        node.garp.handle(
            local,
            GarpInput::InterfacesChanged {
                interfaces: BTreeSet::from(["eth0".to_owned()]),
            },
        );
        node.snapshot = None;
        node.api_seen = 0;
        node.api_pending = false;
        node.members = Some(BTreeMap::new());
        node.settled = false;
        node.settle_deadline = None;
        node.leaving = None;
        node.reconcile_pending = false;
        node.wake_at = None;
        node.disturbed_until = now + DISTURBANCE_GRACE;
        node.status_pending.clear();
        node.status_flush_scheduled = false;
        node.status_names.clear();
        let life = node.life;
        let incarnation = node.incarnation;
        let seeds: Vec<SocketAddr> = (0..speakers)
            .filter(|i| *i != index)
            .map(node_addr)
            .collect();
        self.trace.line(
            now,
            &format!("node-{index} boot life {life} incarnation {incarnation}"),
        );
        self.gossip_input(index, GossipInput::Join(seeds));
        if index < self.speakers {
            // As the actor tree: until it has settled a speaker publishes `leaving`, so that the
            // others do not elect it while it announces nothing.
            self.gossip_input(index, GossipInput::SetLeaving(true));
            let settle_at = self.global(index, local + SETTLE);
            self.push(settle_at, Event::Settle { node: index, life });
            self.schedule_delivery(Subscriber::Node(index));
            // The cluster watch's Lease task renews at once, then every LEASE_RENEW.
            self.push(now, Event::LeaseRenew { node: index, life });
            // The status writer adopts its earlier life's ServiceL2Status objects and deletes
            // those the announcer does not want again within STATUS_ADOPT_FLUSH. As the real
            // writer, when the API server is out of reach then, every flush lists them again
            // until the list succeeds.
            self.nodes[index].status_unadopted = true;
            self.adopt_statuses(index);
            let node = &mut self.nodes[index];
            node.status_flush_scheduled = true;
            self.push(
                now + STATUS_ADOPT_FLUSH,
                Event::StatusFlush { node: index, life },
            );
        }
    }

    /// The status writer's adoption: when the API server is in reach, one list of this node's
    /// `ServiceL2Status` objects; each becomes known by name and is deleted by the next flush
    /// unless the announcer wants it.
    fn adopt_statuses(&mut self, index: usize) {
        if !self.nodes[index].status_unadopted || !self.api_reachable(index) {
            return;
        }
        let name = self.nodes[index].name.clone();
        let adopted = self.api.l2_statuses_of(&name);
        let node = &mut self.nodes[index];
        node.status_unadopted = false;
        for key in adopted {
            if node.status_names.insert(key.clone()) {
                node.status_pending.entry(key).or_insert(false);
            }
        }
    }

    /// The actor tree's settle rule: after [`SETTLE`], wait until every active member's state
    /// (claims) is known and some other member is active (when other Nodes exist), or
    /// [`SETTLE_EXTRA_MAX`] more at most.
    fn settle(&mut self, index: usize, life: u64) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        let deadline = *node.settle_deadline.get_or_insert(now + SETTLE_EXTRA_MAX);
        let (others_active, missing) = match node.membership.as_ref() {
            Some(membership) => {
                let members = membership.members();
                let active = members.iter().filter(|m| m.liveness.is_active());
                let missing = active.clone().filter(|m| m.state.is_none()).count();
                (active.count() > 0, missing)
            }
            None => (false, 0),
        };
        let others_expected = self.speakers > 1;
        if (missing == 0 && (others_active || !others_expected)) || now >= deadline {
            node.settled = true;
            let draining = node.leaving.is_some();
            self.disturb();
            self.trace.line(now, &format!("node-{index} settled"));
            if !draining {
                self.gossip_input(index, GossipInput::SetLeaving(false));
            }
            self.request_reconcile(index);
        } else {
            self.push(now + SETTLE_POLL, Event::Settle { node: index, life });
        }
    }

    fn gossip_input(&mut self, index: usize, input: GossipInput) {
        let local = self.local(index, self.now);
        if let Some(membership) = self
            .nodes
            .get_mut(index)
            .and_then(|n| n.membership.as_mut())
        {
            membership.handle(local, input);
        }
        self.drain_gossip(index);
    }

    fn drain_gossip(&mut self, index: usize) {
        let mut sends = Vec::new();
        let mut changed = false;
        {
            let Some(node) = self.nodes.get_mut(index) else {
                return;
            };
            let Some(membership) = node.membership.as_mut() else {
                return;
            };
            while let Some(action) = membership.poll_action() {
                match action {
                    GossipAction::Send { to, bytes } => sends.push((to, bytes)),
                    GossipAction::Event(event) => {
                        changed = true;
                        if self.trace.printing() {
                            println!(
                                "{:>10.3}ms node-{index} gossip {event:?}",
                                self.now.as_secs_f64() * 1000.0
                            );
                        }
                    }
                }
            }
        }
        for (to, bytes) in sends {
            self.send(index, to, bytes);
        }
        if changed && index < self.speakers {
            self.refresh_members(index);
        }
        self.schedule_wake(index);
    }

    fn refresh_members(&mut self, index: usize) {
        let ignore_claims = self.options.bug == Some(Bug::IgnoreClaims);
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        let Some(membership) = node.membership.as_ref() else {
            return;
        };
        // As the actor tree's `forward_members`: one entry per node name.
        let mut view: BTreeMap<String, MemberView> = BTreeMap::new();
        for member in membership.members() {
            let entry = view.entry(member.id.name.as_str().to_owned()).or_default();
            if member.liveness.is_active() {
                entry.active = true;
                if let Some(state) = member.state {
                    entry.leaving = state.leaving;
                    if !ignore_claims {
                        entry.claims = state.claims;
                    }
                }
            }
        }
        let intruder = view.get("intruder").is_some_and(|m| m.active);
        let view = Some(view);
        if intruder {
            let now = self.now;
            self.fail(
                now,
                format!("safety: node-{index} accepted the wrong-key node as a member"),
            );
        }
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        if node.members != view {
            node.members = view;
            self.request_reconcile(index);
        }
    }

    fn request_reconcile(&mut self, index: usize) {
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        if node.reconcile_pending || !node.running {
            return;
        }
        node.reconcile_pending = true;
        let life = node.life;
        self.push(
            self.now + RECONCILE_DELAY,
            Event::Reconcile { node: index, life },
        );
    }

    fn reconcile(&mut self, index: usize) {
        let now = self.now;
        let local = self.local(index, now);
        // The real speaker passes the wall clock: the partition rule is on.
        let wall = self.options.lease_rule.then(|| self.wall_micros(index));
        let ignore_leases = self.options.bug == Some(Bug::IgnoreLeases);
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        node.reconcile_pending = false;
        if !node.settled {
            return;
        }
        let Some(snapshot) = node.snapshot.clone() else {
            return;
        };
        let leaving = node.leaving.is_some();
        let l2_snapshot = if ignore_leases {
            Arc::new(Snapshot {
                speaker_leases: BTreeMap::new(),
                ..(*snapshot).clone()
            })
        } else {
            snapshot.clone()
        };
        let mut actions = node
            .layer2
            .reconcile_at(&l2_snapshot, &node.members, leaving, wall);
        let mut finished = false;
        if let Some(deadline) = node.leaving {
            if node.layer2.handover_done(&node.members) || now >= deadline {
                actions.extend(node.layer2.withdraw_all());
                finished = true;
            }
        }
        self.run_l2_actions(index, local, actions);
        let bgp_actions = match self.nodes.get_mut(index) {
            Some(node) => node.bgp.reconcile(&snapshot),
            None => Vec::new(),
        };
        self.run_bgp_actions(index, local, bgp_actions);
        if finished {
            self.trace
                .line(now, &format!("node-{index} handover done, leaving"));
            let names: Vec<String> = self.nodes[index].sessions.keys().cloned().collect();
            for name in names {
                if let Some(session) = self.nodes[index].sessions.get_mut(&name) {
                    session.session.handle(local, SessionInput::Stop);
                }
            }
            self.drain_sessions(index);
            self.gossip_input(index, GossipInput::Leave);
            self.stop(index, false);
            // A drained node restarts (also in the quiet phase: every node runs at the end).
            let at = now + Duration::from_millis(self.rng.random_range(1000..5000));
            self.push(at, Event::Restart { node: index });
        }
    }

    fn run_l2_actions(&mut self, index: usize, local: Instant, actions: Vec<L2Action>) {
        let now = self.now;
        let mut later = Vec::new();
        for action in actions {
            match action {
                L2Action::Announce { ip, selection } => {
                    self.trace.line(now, &format!("node-{index} announce {ip}"));
                    self.on_take(index, ip);
                    if let Some(node) = self.nodes.get_mut(index) {
                        node.garp.handle(local, GarpInput::Take { ip, selection });
                    }
                }
                L2Action::Withdraw { ip } => {
                    self.trace.line(now, &format!("node-{index} withdraw {ip}"));
                    self.on_release(index, ip);
                    if let Some(node) = self.nodes.get_mut(index) {
                        node.garp.handle(local, GarpInput::Release { ip });
                    }
                }
                other => later.push(other),
            }
        }
        for action in later {
            match action {
                L2Action::Claims(claims) => {
                    self.trace
                        .line(now, &format!("node-{index} claims {claims:?}"));
                    let result = self
                        .nodes
                        .get_mut(index)
                        .and_then(|n| n.membership.as_mut())
                        .map(|m| m.set_claims(local, claims));
                    if let Some(Err(error)) = result {
                        self.fail(now, format!("node-{index}: claims not published: {error}"));
                    }
                    self.drain_gossip(index);
                }
                L2Action::Status(key, status) => {
                    // To the status writer: coalesced, written off the announcing path.
                    if let Some(node) = self.nodes.get_mut(index) {
                        node.status_pending.insert(key, status.is_some());
                    }
                    self.schedule_status_flush(index, STATUS_COALESCE);
                }
                L2Action::PartitionYield { service, winner } => {
                    self.report.partition_yields += 1;
                    self.trace.line(
                        now,
                        &format!("node-{index} partition rule: yields {service} to {winner}"),
                    );
                }
                L2Action::Assigned(..) | L2Action::Announce { .. } | L2Action::Withdraw { .. } => {}
            }
        }
        self.drain_garp(index);
        self.refresh_answers(index);
        self.schedule_wake(index);
        self.check_node(index);
    }

    fn drain_garp(&mut self, index: usize) {
        let now = self.now;
        let mut sent = BTreeSet::new();
        if let Some(node) = self.nodes.get_mut(index) {
            while let Some(action) = node.garp.poll_action() {
                match action {
                    GarpAction::SendGratuitous { ip, .. } => {
                        sent.insert(ip);
                    }
                    GarpAction::NoInterface { ip } | GarpAction::TooManyIps { ip } => {
                        let text = format!("node-{index}: cannot announce {ip}: {action:?}");
                        self.report.failures.push(text);
                    }
                }
            }
        }
        for ip in sent {
            if self.lost() {
                continue;
            }
            self.trace.raw(now, 3, &[index as u64, ip_word(ip)]);
            if let Some((owner, crashed_at)) = self.pending_failovers.get(&ip).copied() {
                if owner != index {
                    self.pending_failovers.remove(&ip);
                    let took = now - crashed_at;
                    self.report.failovers.push(took);
                    self.trace.line(
                        now,
                        &format!("failover {ip} node-{owner} -> node-{index} in {took:?}"),
                    );
                }
            }
        }
    }

    fn schedule_wake(&mut self, index: usize) {
        let Some(node) = self.nodes.get(index) else {
            return;
        };
        if !node.running {
            return;
        }
        let gossip = node.membership.as_ref().and_then(Membership::poll_timeout);
        let garp = node.garp.poll_timeout();
        let deadline = [gossip, garp]
            .into_iter()
            .chain(node.sessions.values().map(|s| s.session.poll_timeout()))
            .flatten()
            .min();
        let Some(deadline) = deadline else {
            return;
        };
        let at = self.global(index, deadline);
        let node = &mut self.nodes[index];
        if node.wake_at == Some(at) {
            return;
        }
        node.wake_at = Some(at);
        node.wake_generation += 1;
        let generation = node.wake_generation;
        self.push(
            at,
            Event::Wake {
                node: index,
                generation,
            },
        );
    }

    fn wake(&mut self, index: usize, generation: u64) {
        let Some(node) = self.nodes.get(index) else {
            return;
        };
        if !node.running || node.wake_generation != generation {
            return;
        }
        if node.paused_until > self.now {
            let at = node.paused_until;
            let node = &mut self.nodes[index];
            node.wake_at = Some(at);
            self.push(
                at,
                Event::Wake {
                    node: index,
                    generation,
                },
            );
            return;
        }
        self.nodes[index].wake_at = None;
        let local = self.local(index, self.now);
        self.trace.raw(self.now, 2, &[index as u64]);
        let node = &mut self.nodes[index];
        if let Some(membership) = node.membership.as_mut() {
            if membership.poll_timeout().is_some_and(|d| d <= local) {
                membership.handle(local, GossipInput::Timeout);
            }
        }
        node.garp.handle_timeout(local);
        for session in node.sessions.values_mut() {
            if session.session.poll_timeout().is_some_and(|d| d <= local) {
                session.session.handle_timeout(local);
            }
        }
        self.drain_gossip(index);
        self.drain_garp(index);
        self.drain_sessions(index);
        self.schedule_wake(index);
    }

    fn run_bgp_actions(&mut self, index: usize, local: Instant, actions: Vec<BgpAction>) {
        let now = self.now;
        let mut events = Vec::new();
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        for action in actions {
            match action {
                BgpAction::Start { name, config } => {
                    let mut session = Session::new(config.session);
                    session.handle(local, SessionInput::Start);
                    node.sessions.insert(
                        name,
                        NodeSession {
                            session,
                            connection: 0,
                        },
                    );
                }
                BgpAction::Stop { name } => {
                    if let Some(mut session) = node.sessions.remove(&name) {
                        session.session.handle(local, SessionInput::Stop);
                        // The stopped session's last words (Cease, close) still go out.
                        let connection = session.connection;
                        while let Some(action) = session.session.poll_action() {
                            match action {
                                SessionAction::Send(bytes) if connection != 0 => {
                                    events.push(Event::BgpToRouter {
                                        node: index,
                                        connection,
                                        bytes,
                                    });
                                }
                                SessionAction::Close if connection != 0 => {
                                    events.push(Event::BgpClosedByNode {
                                        node: index,
                                        connection,
                                    });
                                }
                                _ => {}
                            }
                        }
                    }
                }
                BgpAction::Routes { name, routes } => {
                    if let Some(session) = node.sessions.get_mut(&name) {
                        session
                            .session
                            .handle(local, SessionInput::SetRoutes(routes));
                    }
                }
                BgpAction::PeerError(error) => {
                    events.push(Event::Failure(format!(
                        "node-{index}: BGPPeer refused: {error}"
                    )));
                }
                BgpAction::Status(..) | BgpAction::Assigned(..) => {}
            }
        }
        for event in events {
            match event {
                Event::Failure(text) => self.fail(now, text),
                event => self.queue_insert(now + LATENCY, event),
            }
        }
        self.drain_sessions(index);
    }

    fn queue_insert(&mut self, at: Duration, event: Event) {
        self.sequence += 1;
        self.queue.insert((at, self.sequence), event);
    }

    fn session_of(&self, node: usize, connection: u64) -> Option<&str> {
        let node = self.nodes.get(node)?;
        if !node.running || connection == 0 {
            return None;
        }
        node.sessions
            .iter()
            .find(|(_, s)| s.connection == connection)
            .map(|(name, _)| name.as_str())
    }

    fn session_input(&mut self, index: usize, connection: u64, input: SessionInput) {
        let Some(name) = self.session_of(index, connection).map(str::to_owned) else {
            return;
        };
        let local = self.local(index, self.now);
        if let Some(session) = self.nodes[index].sessions.get_mut(&name) {
            session.session.handle(local, input);
        }
        self.drain_sessions(index);
        self.schedule_wake(index);
    }

    fn drain_sessions(&mut self, index: usize) {
        let now = self.now;
        let mut events = Vec::new();
        let mut lines = Vec::new();
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        for (name, session) in node.sessions.iter_mut() {
            while let Some(action) = session.session.poll_action() {
                match action {
                    SessionAction::Connect => {
                        self.connection_counter += 1;
                        session.connection = self.connection_counter;
                        events.push((
                            now + LATENCY * 2,
                            Event::BgpConnected {
                                node: index,
                                connection: session.connection,
                            },
                        ));
                    }
                    SessionAction::Send(bytes) if session.connection != 0 => {
                        events.push((
                            now + LATENCY,
                            Event::BgpToRouter {
                                node: index,
                                connection: session.connection,
                                bytes,
                            },
                        ));
                    }
                    SessionAction::Close => {
                        if session.connection != 0 {
                            events.push((
                                now + LATENCY,
                                Event::BgpClosedByNode {
                                    node: index,
                                    connection: session.connection,
                                },
                            ));
                        }
                        session.connection = 0;
                    }
                    SessionAction::StateChange { from, to } => {
                        lines.push(format!("node-{index} bgp {name} {from:?} -> {to:?}"));
                    }
                    other => lines.push(format!("node-{index} bgp {name} {other:?}")),
                }
            }
        }
        for (at, event) in events {
            self.queue_insert(at, event);
        }
        for line in lines {
            self.trace.line(now, &line);
        }
    }

    fn stop(&mut self, index: usize, crash: bool) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        if !node.running {
            return;
        }
        self.disturb();
        if !crash {
            // A planned shutdown flushes the last status writes (the writer's FlushNow).
            self.flush_statuses(index);
        }
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        node.status_pending.clear();
        node.status_flush_scheduled = false;
        node.running = false;
        node.membership = None;
        node.wake_at = None;
        let owned: Vec<IpAddr> = node.layer2.announced().keys().copied().collect();
        node.layer2 = Layer2Core::new(node.name.clone(), SpeakerOptions::default());
        node.garp = GratuitousSchedule::new();
        node.sessions.clear();
        if crash {
            for ip in owned {
                let sole = self
                    .answerers
                    .get(&ip)
                    .is_some_and(|set| set.len() == 1 && set.contains(&index));
                // Failover is measured only when a successor exists: another running, settled
                // candidate.
                let successor = (0..self.speakers).any(|other| {
                    other != index
                        && self.nodes[other].running
                        && self.nodes[other].settled
                        && self.is_candidate_for_ip(other, ip)
                });
                if sole && successor {
                    self.pending_failovers.insert(ip, (index, now));
                }
            }
        }
        self.refresh_answers(index);
    }

    /// Recomputes which IPs `index` answers ARP for (running, not paused, announcing).
    fn refresh_answers(&mut self, index: usize) {
        let now = self.now;
        let answering: BTreeSet<IpAddr> = match self.nodes.get(index) {
            Some(node) if node.running && node.paused_until <= now && !node.intruder => {
                node.layer2.announced().keys().copied().collect()
            }
            _ => BTreeSet::new(),
        };
        for (ip, set) in self.answerers.iter_mut() {
            if !answering.contains(ip) {
                set.remove(&index);
            }
        }
        for ip in answering {
            self.answerers.entry(ip).or_default().insert(index);
        }
        self.answerers.retain(|_, set| !set.is_empty());
        self.track_splits();
        let split = self.answerers.values().any(|set| set.len() > 1);
        match (split, self.split_since) {
            (true, None) => self.split_since = Some(now),
            (false, Some(since)) => {
                self.report.split_brain += now - since;
                self.split_since = None;
            }
            _ => {}
        }
    }

    // -----------------------------------------------------------------------------------------
    // The partition rule: Leases, ServiceL2Status and the split-brain checker

    /// Node `index`'s wall clock in µs since the Unix epoch (NTP-disciplined: global time plus
    /// a fixed offset).
    fn wall_micros(&self, index: usize) -> i64 {
        let offset = self.nodes.get(index).map_or(0, |n| n.wall_offset_micros);
        WALL_EPOCH_MICROS + self.now.as_micros() as i64 + offset
    }

    /// Whether node `index` reaches the API server.
    fn api_reachable(&self, index: usize) -> bool {
        self.api.available && self.nodes.get(index).is_some_and(|n| !n.api_lost)
    }

    /// The cluster watch's Lease task: renew `ironlb-speaker-<node>` with the count of active
    /// members (itself included), then again [`LEASE_RENEW`] later on the node's clock. A failed
    /// renewal waits for the next tick.
    fn renew_lease(&mut self, index: usize, life: u64) {
        let reachable = self.api_reachable(index);
        let wall = self.wall_micros(index);
        let Some(node) = self.nodes.get(index) else {
            return;
        };
        let alive = node.members.as_ref().map_or(1, |view| {
            1 + view
                .iter()
                .filter(|(name, m)| **name != node.name && m.active)
                .count()
        });
        let alive = u32::try_from(alive).unwrap_or(u32::MAX);
        if reachable {
            let name = node.name.clone();
            self.api.renew_lease(&name, wall, alive);
            self.trace
                .raw(self.now, 4, &[index as u64, u64::from(alive), wall as u64]);
            self.objects_changed();
        }
        let local = self.local(index, self.now);
        let next = self.global(index, local + LEASE_RENEW);
        self.push(next, Event::LeaseRenew { node: index, life });
    }

    fn schedule_status_flush(&mut self, index: usize, delay: Duration) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        if node.status_flush_scheduled || !node.running {
            return;
        }
        node.status_flush_scheduled = true;
        let life = node.life;
        self.push(now + delay, Event::StatusFlush { node: index, life });
    }

    /// The status writer's flush: every pending `ServiceL2Status` change is written, or kept and
    /// retried after [`STATUS_RETRY`] when the API server is out of reach.
    fn flush_statuses(&mut self, index: usize) {
        let now = self.now;
        let reachable = self.api_reachable(index);
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        node.status_flush_scheduled = false;
        if node.status_pending.is_empty() && !node.status_unadopted {
            return;
        }
        if !reachable {
            self.schedule_status_flush(index, STATUS_RETRY);
            return;
        }
        self.adopt_statuses(index);
        let node = &mut self.nodes[index];
        let pending = std::mem::take(&mut node.status_pending);
        let name = node.name.clone();
        let mut changed = false;
        for (key, present) in pending {
            // Deleting an object whose name the writer does not know does nothing.
            let known = node.status_names.contains(&key);
            if present {
                node.status_names.insert(key.clone());
            } else {
                node.status_names.remove(&key);
                if !known {
                    continue;
                }
            }
            if self.api.write_l2_status(&name, &key, present) {
                changed = true;
                let verb = if present { "write" } else { "delete" };
                self.trace
                    .line(now, &format!("node-{index} {verb} ServiceL2Status {key}"));
            }
        }
        if changed {
            self.objects_changed();
        }
    }

    /// A Lease or a `ServiceL2Status` changed: the speakers' watches deliver it (the
    /// controller does not watch them).
    fn objects_changed(&mut self) {
        for index in 0..self.speakers {
            self.schedule_delivery(Subscriber::Node(index));
        }
    }

    fn node_api_back(&mut self, index: usize) {
        self.disturb();
        if let Some(node) = self.nodes.get_mut(index) {
            node.api_lost = false;
        }
        self.trace.line(
            self.now,
            &format!("node-{index} reaches the api server again"),
        );
        self.schedule_delivery(Subscriber::Node(index));
    }

    /// Whether a gossip partition separates two of `nodes` (in either direction).
    fn separated(&self, nodes: &BTreeSet<usize>) -> bool {
        nodes
            .iter()
            .any(|a| nodes.iter().any(|b| a != b && self.blocked(*a, *b)))
    }

    /// Whether the partition rule's preconditions hold for `nodes` now: a gossip partition
    /// separates them and each reaches the API server (whether the rule is on is checked by
    /// the caller: without it the stretches are measured, for comparison, not asserted).
    fn rule_applies(&self, nodes: &BTreeSet<usize>) -> bool {
        self.separated(nodes) && nodes.iter().all(|i| self.api_reachable(*i))
    }

    /// Follows every IP answered by two or more nodes (called whenever answers change).
    fn track_splits(&mut self) {
        let now = self.now;
        let closed: Vec<IpAddr> = self
            .splits
            .keys()
            .filter(|ip| self.answerers.get(*ip).is_none_or(|set| set.len() < 2))
            .copied()
            .collect();
        for ip in closed {
            self.check_split(ip);
            if let Some(split) = self.splits.remove(&ip) {
                if split.across {
                    self.report.partition_splits.push(now - split.since);
                }
            }
        }
        let open: Vec<(IpAddr, BTreeSet<usize>)> = self
            .answerers
            .iter()
            .filter(|(_, set)| set.len() > 1)
            .map(|(ip, set)| (*ip, set.clone()))
            .collect();
        for (ip, nodes) in open {
            let across = self.separated(&nodes);
            let split = self.splits.entry(ip).or_insert(Split {
                since: now,
                stable_since: now,
                nodes: BTreeSet::new(),
                across: false,
            });
            split.across |= across;
            split.nodes = nodes;
        }
    }

    /// Ends the current stretch of `ip`'s split brain: when the partition rule applied to it
    /// throughout, it must not have lasted longer than [`SPLIT_BRAIN_BOUND`].
    fn check_split(&mut self, ip: IpAddr) {
        let now = self.now;
        let Some(split) = self.splits.get(&ip) else {
            return;
        };
        let stretch = now - split.stable_since;
        if !self.rule_applies(&split.nodes) {
            return;
        }
        let nodes = split.nodes.clone();
        self.report.rule_windows += 1;
        self.report.rule_split_max = self.report.rule_split_max.max(stretch);
        if stretch > SPLIT_BRAIN_BOUND && self.options.lease_rule {
            let names: Vec<String> = nodes.iter().map(|i| format!("node-{i}")).collect();
            self.fail(
                now,
                format!(
                    "safety: split brain on {ip} between {names:?} across a gossip partition for {:.3}s with the API reachable and no other fault (the partition rule bounds it to {:.3}s)",
                    stretch.as_secs_f64(),
                    SPLIT_BRAIN_BOUND.as_secs_f64()
                ),
            );
        }
    }

    /// A fault starts or ends (or a node boots or settles): every open split-brain stretch is
    /// checked and a new one starts now. Call before changing the world.
    fn disturb(&mut self) {
        let now = self.now;
        let ips: Vec<IpAddr> = self.splits.keys().copied().collect();
        for ip in ips {
            self.check_split(ip);
            if let Some(split) = self.splits.get_mut(&ip) {
                split.stable_since = now;
            }
        }
    }

    /// Called when `index` starts announcing `ip`: a takeover from a healthy owner is false.
    fn on_take(&mut self, index: usize, ip: IpAddr) {
        let now = self.now;
        let holders: Vec<usize> = self
            .answerers
            .get(&ip)
            .map(|set| set.iter().copied().filter(|i| *i != index).collect())
            .unwrap_or_default();
        let _ = now;
        for owner in holders {
            if self.healthy(owner) && self.is_candidate_for_ip(owner, ip) {
                let text = format!(
                    "false takeover of {ip}: node-{index} took it from healthy node-{owner}"
                );
                self.count_false_takeover(ip, text);
            }
        }
    }

    /// Called when `index` stops announcing `ip`: a healthy owner that is still a candidate (and
    /// whose view is up to date) must keep its IP.
    fn on_release(&mut self, index: usize, ip: IpAddr) {
        let Some(node) = self.nodes.get(index) else {
            return;
        };
        // Yielding to a node that just came back (from a pause, a partition or a restart) is
        // the election's conflict rule, not a false takeover.
        let now = self.now;
        let yields_to_returning = self.answerers.get(&ip).is_some_and(|set| {
            set.iter().any(|other| {
                *other != index
                    && self
                        .nodes
                        .get(*other)
                        .is_some_and(|n| n.disturbed_until > now)
            })
        });
        if node.api_seen == self.api.revision
            && !yields_to_returning
            && self.healthy(index)
            && self.is_candidate_for_ip(index, ip)
        {
            let text = format!("false takeover of {ip}: healthy node-{index} gave it up");
            self.count_false_takeover(ip, text);
        }
    }

    /// Counts one false takeover per IP and incident (a take and the owner's release within a
    /// second are one incident).
    fn count_false_takeover(&mut self, ip: IpAddr, text: String) {
        let now = self.now;
        let recent = self
            .last_false_takeover
            .get(&ip)
            .is_some_and(|at| now.saturating_sub(*at) < Duration::from_secs(1));
        self.last_false_takeover.insert(ip, now);
        self.trace.line(now, &text);
        if !recent {
            self.report.false_takeovers += 1;
        }
    }

    fn healthy(&self, index: usize) -> bool {
        let Some(node) = self.nodes.get(index) else {
            return false;
        };
        let touched = self
            .partitions
            .values()
            .any(|pairs| pairs.iter().any(|(a, b)| *a == index || *b == index));
        node.running
            && node.leaving.is_none()
            && node.paused_until <= self.now
            && node.disturbed_until <= self.now
            && !touched
    }

    fn is_candidate_for_ip(&self, index: usize, ip: IpAddr) -> bool {
        self.api
            .holders(ip)
            .iter()
            .any(|service| self.api.is_candidate(index, service))
    }

    // -----------------------------------------------------------------------------------------
    // Network

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == addr)
    }

    fn lost(&mut self) -> bool {
        self.loss_per_mille > 0 && self.rng.random_range(0..1000) < self.loss_per_mille
    }

    fn blocked(&self, from: usize, to: usize) -> bool {
        self.partitions
            .values()
            .any(|pairs| pairs.contains(&(from, to)))
    }

    fn send(&mut self, from: usize, to: SocketAddr, bytes: Vec<u8>) {
        let Some(to) = self.index_of(to) else {
            return;
        };
        if self.blocked(from, to) || self.lost() {
            return;
        }
        let copies = if self.duplicate_per_mille > 0
            && self.rng.random_range(0..1000) < self.duplicate_per_mille
        {
            2
        } else {
            1
        };
        if copies == 2 {
            let extra = self.extra_delay();
            let copy = bytes.clone();
            self.push(
                self.now + LATENCY + extra,
                Event::Datagram {
                    from,
                    to,
                    bytes: copy,
                },
            );
        }
        let extra = self.extra_delay();
        self.push(
            self.now + LATENCY + extra,
            Event::Datagram { from, to, bytes },
        );
    }

    fn extra_delay(&mut self) -> Duration {
        if self.delay_max.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.random_range(0..=self.delay_max.as_nanos() as u64))
        }
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        let Some(node) = self.nodes.get(to) else {
            return;
        };
        if !node.running {
            return;
        }
        if node.paused_until > self.now {
            let at = node.paused_until;
            self.push(at, Event::Datagram { from, to, bytes });
            return;
        }
        let Some(bytes) = self.translate(from, to, bytes) else {
            return;
        };
        self.trace
            .raw(self.now, 1, &[from as u64, to as u64, bytes.len() as u64]);
        let from_addr = self.nodes[from].addr;
        self.gossip_input(
            to,
            GossipInput::Datagram {
                from: from_addr,
                bytes,
            },
        );
    }

    /// The `accept-any-key` bug: datagrams between the intruder and the cluster are re-sealed
    /// with the receiver's key, as if the receiver did not check the key.
    fn translate(&mut self, from: usize, to: usize, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let from_intruder = self.nodes.get(from).is_some_and(|n| n.intruder);
        let to_intruder = self.nodes.get(to).is_some_and(|n| n.intruder);
        if from_intruder == to_intruder {
            return Some(bytes);
        }
        let from_addr = self.nodes.get(from)?.addr;
        let (opener, sealer) = if from_intruder {
            (self.intruder_opener.as_mut(), self.cluster_sealer.as_mut())
        } else {
            (self.cluster_opener.as_mut(), self.intruder_sealer.as_mut())
        };
        match (opener, sealer) {
            (Some(opener), Some(sealer)) => {
                let plaintext = opener.open(from_addr, &bytes).ok()?;
                sealer.seal(&plaintext).ok()
            }
            _ => Some(bytes),
        }
    }

    // -----------------------------------------------------------------------------------------
    // API server and controller

    fn api_changed(&mut self) {
        for index in 0..self.speakers {
            self.schedule_delivery(Subscriber::Node(index));
        }
        self.schedule_delivery(Subscriber::Controller);
        self.check_allocations();
        for index in 0..self.speakers {
            self.check_node(index);
        }
    }

    fn schedule_delivery(&mut self, subscriber: Subscriber) {
        if !self.api.available {
            return;
        }
        let pending = match subscriber {
            Subscriber::Node(index) => match self.nodes.get_mut(index) {
                Some(node) if node.running && !node.api_lost => &mut node.api_pending,
                _ => return,
            },
            Subscriber::Controller => {
                if self.controller.core.is_none() {
                    return;
                }
                &mut self.controller.api_pending
            }
        };
        if *pending {
            return;
        }
        *pending = true;
        let delay = Duration::from_micros(
            self.rng
                .random_range(1_000..WATCH_DELAY_MAX.as_micros() as u64),
        );
        self.push(self.now + delay, Event::ApiDeliver(subscriber));
    }

    fn api_deliver(&mut self, subscriber: Subscriber) {
        match subscriber {
            Subscriber::Node(index) => {
                let Some(node) = self.nodes.get_mut(index) else {
                    return;
                };
                node.api_pending = false;
                if !node.running || !self.api.available || node.api_lost {
                    return;
                }
                if node.paused_until > self.now {
                    node.api_pending = true;
                    let at = node.paused_until;
                    self.push(at, Event::ApiDeliver(subscriber));
                    return;
                }
                let snapshot = self.api.snapshot();
                let node = &mut self.nodes[index];
                node.snapshot = Some(snapshot);
                node.api_seen = self.api.revision;
                self.request_reconcile(index);
            }
            Subscriber::Controller => {
                self.controller.api_pending = false;
                if !self.api.available {
                    return;
                }
                self.feed_controller();
            }
        }
    }

    fn start_controller(&mut self) {
        if self.controller.core.is_some() {
            return;
        }
        self.trace.line(self.now, "controller start");
        self.controller.core = Some(Core::new(
            AllocatorIpam::default(),
            CoreOptions {
                load_balancer_class: None,
                namespace: "metallb-system".to_owned(),
            },
        ));
        self.controller.fed.clear();
        self.controller.config_fed = 0;
        self.controller.api_seen = 0;
        self.controller.api_pending = false;
        self.controller.writes.clear();
        self.schedule_delivery(Subscriber::Controller);
    }

    fn feed_controller(&mut self) {
        let Some(core) = self.controller.core.as_mut() else {
            return;
        };
        let first = self.controller.api_seen == 0;
        if self.controller.config_fed != self.api.config_generation {
            self.controller.config_fed = self.api.config_generation;
            core.handle(ControllerInput::Config(ConfigUpdate {
                result: Ok(self.api.controller_config.clone()),
                legacy_configmap: None,
            }));
        }
        let mut present = BTreeSet::new();
        for service in self.api.services.values() {
            let Ok(view) = ServiceView::from_service(&service.object) else {
                continue;
            };
            present.insert(view.key.clone());
            if self.controller.fed.get(&view.key).map(String::as_str)
                != Some(service.resource_version())
            {
                self.controller
                    .fed
                    .insert(view.key.clone(), service.resource_version().to_owned());
                core.handle(ControllerInput::ServiceApplied(Box::new(view)));
            }
        }
        let gone: Vec<ServiceKey> = self
            .controller
            .fed
            .keys()
            .filter(|key| !present.contains(*key))
            .cloned()
            .collect();
        for key in gone {
            self.controller.fed.remove(&key);
            core.handle(ControllerInput::ServiceDeleted(key));
        }
        if first {
            core.handle(ControllerInput::Synced);
        }
        self.controller.api_seen = self.api.revision;
        while let Some(action) = core.poll_action() {
            if let ControllerAction::WriteStatus(write) = action {
                // A newer write for the same Service replaces a pending retry.
                self.controller
                    .writes
                    .insert(write.key.clone(), (write, RETRY_DELAY_MIN));
            }
        }
        if !self.controller.writes.is_empty() {
            self.schedule_flush(self.now + Duration::from_millis(2));
        }
    }

    fn schedule_flush(&mut self, at: Duration) {
        if self
            .controller
            .flush_at
            .is_some_and(|pending| pending <= at)
        {
            return;
        }
        self.controller.flush_at = Some(at);
        self.controller.flush_generation += 1;
        let generation = self.controller.flush_generation;
        self.push(at, Event::ControllerFlush { generation });
    }

    fn flush_writes(&mut self) {
        if self.controller.core.is_none() {
            self.controller.writes.clear();
            return;
        }
        let writes = std::mem::take(&mut self.controller.writes);
        let mut changed = false;
        let mut retry: Option<Duration> = None;
        for (key, (write, delay)) in writes {
            if !self.api.available {
                let next = (delay * 2).min(RETRY_DELAY_MAX);
                retry = Some(retry.map_or(delay, |r| r.min(delay)));
                self.controller.writes.insert(key, (write, next));
                continue;
            }
            let written = self
                .api
                .write_status(&key.name, &write.resource_version, &write.status);
            let line = format!(
                "controller write {key} {:?} pool {:?}: {}",
                write.status.ips,
                write.status.pool,
                if written { "ok" } else { "conflict, dropped" }
            );
            self.trace.line(self.now, &line);
            changed |= written;
        }
        if let Some(delay) = retry {
            self.schedule_flush(self.now + delay);
        }
        if changed {
            self.disturb();
            self.api_changed();
        }
    }

    fn api_up(&mut self) {
        self.disturb();
        self.api.available = true;
        self.trace.line(self.now, "api server back");
        self.api_changed();
        self.schedule_flush(self.now + RETRY_DELAY_MIN);
    }

    // -----------------------------------------------------------------------------------------
    // Faults

    fn action_faults(&self) -> impl Iterator<Item = Fault> + '_ {
        self.options.faults.iter().copied().filter(|fault| {
            matches!(
                fault,
                Fault::Crash
                    | Fault::Pause
                    | Fault::Partition
                    | Fault::AsymmetricPartition
                    | Fault::ApiOutage
                    | Fault::ServiceChurn
                    | Fault::PoolChurn
                    | Fault::ControllerRestart
                    | Fault::Drain
                    | Fault::NodeApiLoss
            )
        })
    }

    fn fault_delay(&mut self) -> Duration {
        let mean = self.options.fault_interval.as_millis() as u64;
        Duration::from_millis(self.rng.random_range(mean / 2..=mean * 3 / 2))
    }

    fn fault_tick(&mut self) {
        if self.quiet {
            return;
        }
        let faults: Vec<Fault> = self.action_faults().collect();
        if faults.is_empty() {
            return;
        }
        let fault = faults[self.rng.random_range(0..faults.len())];
        self.inject(fault);
        let next = self.now + self.fault_delay();
        self.push(next, Event::FaultTick);
    }

    fn running_speakers(&self) -> Vec<usize> {
        (0..self.speakers)
            .filter(|i| self.nodes[*i].running)
            .collect()
    }

    fn random_running(&mut self) -> Option<usize> {
        let running = self.running_speakers();
        if running.is_empty() {
            return None;
        }
        Some(running[self.rng.random_range(0..running.len())])
    }

    fn inject(&mut self, fault: Fault) {
        let now = self.now;
        match fault {
            Fault::Crash => {
                // At most a minority is down at once (and one node always runs).
                let running = self.running_speakers().len();
                if running < 2 || (running - 1) * 2 < self.speakers {
                    return;
                }
                let Some(victim) = self.random_running() else {
                    return;
                };
                self.trace.line(now, &format!("fault crash node-{victim}"));
                self.stop(victim, true);
                // Most restart within seconds; some stay down for up to a minute.
                let down_ms = if self.rng.random_bool(0.8) {
                    self.rng.random_range(500..10_000)
                } else {
                    self.rng.random_range(10_000..60_000)
                };
                self.push(
                    now + Duration::from_millis(down_ms),
                    Event::Restart { node: victim },
                );
            }
            Fault::Pause => {
                let Some(victim) = self.random_running() else {
                    return;
                };
                let pause = Duration::from_millis(self.rng.random_range(50..3_000));
                self.disturb();
                self.trace
                    .line(now, &format!("fault pause node-{victim} for {pause:?}"));
                let node = &mut self.nodes[victim];
                node.paused_until = node.paused_until.max(now + pause);
                let at = node.paused_until;
                let life = node.life;
                self.push(at, Event::Unpause { node: victim, life });
                self.refresh_answers(victim);
            }
            Fault::Partition | Fault::AsymmetricPartition => {
                let side: BTreeSet<usize> = (0..self.speakers)
                    .filter(|_| self.rng.random_bool(0.5))
                    .collect();
                if side.is_empty() || side.len() == self.speakers {
                    return;
                }
                let mut pairs = BTreeSet::new();
                for a in 0..self.speakers {
                    for b in 0..self.speakers {
                        if side.contains(&a) && !side.contains(&b) {
                            pairs.insert((a, b));
                            if fault == Fault::Partition {
                                pairs.insert((b, a));
                            }
                        }
                    }
                }
                self.disturb();
                self.partition_counter += 1;
                let id = self.partition_counter;
                let heal = Duration::from_millis(self.rng.random_range(1_000..15_000));
                self.trace.line(
                    now,
                    &format!("fault {fault} #{id} {side:?} from the rest for {heal:?}"),
                );
                self.partitions.insert(id, pairs);
                self.push(now + heal, Event::Heal { partition: id });
            }
            Fault::ApiOutage => {
                if !self.api.available {
                    return;
                }
                self.outage_counter += 1;
                let outage = self.outage_counter;
                let length = Duration::from_millis(self.rng.random_range(1_000..20_000));
                self.trace
                    .line(now, &format!("fault api outage for {length:?}"));
                self.disturb();
                self.api.available = false;
                self.push(now + length, Event::ApiBack { outage });
            }
            Fault::ServiceChurn => self.churn_service(),
            Fault::PoolChurn => {
                if !self.api.available {
                    return;
                }
                let set = (self.api.pool_set + self.rng.random_range(1..POOL_SETS.len()))
                    % POOL_SETS.len();
                self.trace
                    .line(now, &format!("fault pools -> {:?}", POOL_SETS[set]));
                self.disturb();
                if let Err(error) = self.api.set_pools(set) {
                    self.fail(now, error.to_string());
                    return;
                }
                self.api_changed();
            }
            Fault::ControllerRestart => {
                if self.controller.core.is_none() {
                    return;
                }
                let down = Duration::from_millis(self.rng.random_range(500..5_000));
                self.trace
                    .line(now, &format!("fault controller restart, down {down:?}"));
                self.controller.core = None;
                self.controller.writes.clear();
                self.push(now + down, Event::ControllerStart);
            }
            Fault::Drain => {
                let Some(victim) = self.random_running() else {
                    return;
                };
                if self.nodes[victim].leaving.is_some() || self.running_speakers().len() < 2 {
                    return;
                }
                self.trace.line(now, &format!("fault drain node-{victim}"));
                self.disturb();
                let node = &mut self.nodes[victim];
                node.leaving = Some(now + SHUTDOWN_GRACE);
                let life = node.life;
                self.gossip_input(victim, GossipInput::SetLeaving(true));
                self.request_reconcile(victim);
                self.push(
                    now + HANDOVER_TICK,
                    Event::HandoverTick { node: victim, life },
                );
            }
            Fault::NodeApiLoss => {
                let Some(victim) = self.random_running() else {
                    return;
                };
                if self.nodes[victim].api_lost {
                    return;
                }
                let length = Duration::from_millis(self.rng.random_range(1_000..20_000));
                self.trace.line(
                    now,
                    &format!("fault node-{victim} loses the api server for {length:?}"),
                );
                self.disturb();
                self.api_loss_counter += 1;
                let loss = self.api_loss_counter;
                let node = &mut self.nodes[victim];
                node.api_lost = true;
                node.api_loss = loss;
                self.push(now + length, Event::NodeApiBack { node: victim, loss });
            }
            Fault::Loss | Fault::Delay | Fault::Duplicate | Fault::ClockDrift | Fault::WrongKey => {
            }
        }
    }

    fn churn_service(&mut self) {
        if !self.api.available {
            return;
        }
        let now = self.now;
        self.disturb();
        let names: Vec<String> = self.api.services.keys().cloned().collect();
        let choice = self.rng.random_range(0..4);
        match (choice, names.is_empty()) {
            (0, _) | (_, true) => {
                let i = self.service_counter as usize;
                self.create_service(i);
            }
            (1, false) => {
                let name = names[self.rng.random_range(0..names.len())].clone();
                self.trace.line(now, &format!("api delete {name}"));
                self.api.delete_service(&name);
            }
            (2, false) => {
                let name = names[self.rng.random_range(0..names.len())].clone();
                let endpoints = self.random_endpoints();
                self.trace
                    .line(now, &format!("api endpoints {name} -> {endpoints:?}"));
                self.api.set_endpoints(&name, endpoints);
            }
            _ => {
                let name = names[self.rng.random_range(0..names.len())].clone();
                if self
                    .api
                    .services
                    .get(&name)
                    .is_some_and(|s| s.sharing_key.is_some())
                {
                    return;
                }
                self.trace
                    .line(now, &format!("api toggle traffic policy {name}"));
                self.api.toggle_local(&name);
            }
        }
        self.api_changed();
    }

    fn heal(&mut self, partition: u64) {
        if self.partitions.contains_key(&partition) {
            self.disturb();
        }
        if let Some(pairs) = self.partitions.remove(&partition) {
            let until = self.now + DISTURBANCE_GRACE;
            for (a, b) in pairs {
                for index in [a, b] {
                    if let Some(node) = self.nodes.get_mut(index) {
                        node.disturbed_until = node.disturbed_until.max(until);
                    }
                }
            }
            self.trace.line(self.now, &format!("heal #{partition}"));
        }
    }

    fn quiet(&mut self) {
        let now = self.now;
        self.quiet = true;
        self.trace.line(now, "quiet: faults stop");
        let ids: Vec<u64> = self.partitions.keys().copied().collect();
        for id in ids {
            self.heal(id);
        }
        self.loss_per_mille = 0;
        self.duplicate_per_mille = 0;
        self.delay_max = Duration::ZERO;
        if !self.api.available {
            self.api_up();
        }
        for index in 0..self.nodes.len() {
            if self.nodes[index].api_lost {
                self.node_api_back(index);
            }
        }
        if self.controller.core.is_none() {
            self.start_controller();
        }
        for index in 0..self.speakers {
            let node = &self.nodes[index];
            if !node.running {
                let at = now + Duration::from_millis(self.rng.random_range(0..1_000));
                self.push(at, Event::Restart { node: index });
            }
        }
        self.push(now + PROBE_INTERVAL, Event::Probe);
    }

    fn probe(&mut self) {
        let problems = self.liveness_problems();
        match (problems.is_empty(), self.converged_since) {
            (true, None) => self.converged_since = Some(self.now),
            (false, Some(_)) => self.converged_since = None,
            _ => {}
        }
        self.push(self.now + PROBE_INTERVAL, Event::Probe);
    }

    // -----------------------------------------------------------------------------------------
    // Checkers

    /// Safety: an IP is held by two Services only when both allow sharing under one key, with
    /// disjoint ports.
    fn check_allocations(&mut self) {
        let now = self.now;
        let mut failures = Vec::new();
        for (ip, holders) in self.api.allocated() {
            if holders.len() < 2 {
                continue;
            }
            let services: Vec<_> = holders
                .iter()
                .filter_map(|name| self.api.services.get(name))
                .collect();
            let key = services.first().and_then(|s| s.sharing_key.clone());
            let same_key = key.is_some() && services.iter().all(|s| s.sharing_key == key);
            let mut ports = BTreeSet::new();
            let disjoint = services
                .iter()
                .flat_map(|s| s.ports.iter())
                .all(|port| ports.insert(*port));
            if !(same_key && disjoint) {
                failures.push(format!(
                    "safety: {ip} allocated to {holders:?}, which may not share it"
                ));
            }
        }
        for failure in failures {
            self.fail(now, failure);
        }
    }

    /// Safety, for a speaker whose view is up to date: every IP it announces is allocated (in a
    /// pool) and it is a candidate for a Service holding it.
    fn check_node(&mut self, index: usize) {
        let now = self.now;
        let Some(node) = self.nodes.get(index) else {
            return;
        };
        if !node.running
            || node.intruder
            || node.api_seen != self.api.revision
            || node.reconcile_pending
        {
            return;
        }
        let mut failures = Vec::new();
        for ip in node.layer2.announced().keys() {
            let holders = self.api.holders(*ip);
            if holders.is_empty() {
                failures.push(format!(
                    "safety: node-{index} announces {ip}, which is not allocated"
                ));
            } else if !self.api.in_pools(*ip) {
                failures.push(format!(
                    "safety: node-{index} announces {ip}, outside every pool"
                ));
            } else if !holders.iter().any(|s| self.api.is_candidate(index, s)) {
                failures.push(format!(
                    "safety: node-{index} announces {ip} but is not a candidate for it"
                ));
            }
        }
        for failure in failures {
            self.fail(now, failure);
        }
    }

    /// Liveness: what must hold once the faults have stopped.
    fn liveness_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let running: BTreeSet<usize> = self.running_speakers().into_iter().collect();
        for index in &running {
            let node = &self.nodes[*index];
            if let Some(membership) = node.membership.as_ref() {
                let active: BTreeSet<String> = membership
                    .active_names()
                    .iter()
                    .map(|n| n.as_str().to_owned())
                    .collect();
                let expected: BTreeSet<String> = running
                    .iter()
                    .map(|i| self.nodes[*i].name.clone())
                    .collect();
                if active != expected {
                    problems.push(format!(
                        "node-{index} sees members {active:?}, expected {expected:?}"
                    ));
                }
            }
        }
        for (ip, holders) in self.api.allocated() {
            if !self.api.in_pools(ip) {
                problems.push(format!("{ip} of {holders:?} is outside every pool"));
                continue;
            }
            let candidates: BTreeSet<usize> = running
                .iter()
                .copied()
                .filter(|i| self.is_candidate_for_ip(*i, ip))
                .collect();
            let answering = self.answerers.get(&ip).cloned().unwrap_or_default();
            if candidates.is_empty() {
                if !answering.is_empty() {
                    problems.push(format!("{ip} has no candidate but {answering:?} answer"));
                }
            } else if answering.len() != 1 || !answering.is_subset(&candidates) {
                problems.push(format!(
                    "{ip} ({holders:?}) answered by {answering:?}, candidates {candidates:?}"
                ));
            }
        }
        let table = self.router.next_hops();
        let allocated = self.api.allocated();
        for (ip, holders) in &allocated {
            if !self.api.in_pools(*ip) {
                continue;
            }
            let expected: BTreeSet<IpAddr> = running
                .iter()
                .copied()
                .filter(|i| {
                    self.api
                        .holders(*ip)
                        .iter()
                        .any(|service| self.api.advertises(*i, service))
                })
                .map(|i| self.nodes[i].addr.ip())
                .collect();
            let prefix = ipnet::IpNet::from(*ip);
            let seen = table.get(&prefix).cloned().unwrap_or_default();
            if seen != expected {
                problems.push(format!(
                    "router: {prefix} ({holders:?}) via {seen:?}, expected {expected:?}"
                ));
            }
        }
        for prefix in table.keys() {
            if !allocated.contains_key(&prefix.addr()) {
                problems.push(format!("router: {prefix} is routed but not allocated"));
            }
        }
        for ip in self.answerers.keys() {
            if !allocated.contains_key(ip) {
                problems.push(format!("{ip} is answered but not allocated"));
            }
        }
        let pending: Vec<&String> = self
            .api
            .services
            .iter()
            .filter(|(_, s)| s.ips().is_empty())
            .map(|(name, _)| name)
            .collect();
        if !pending.is_empty() {
            let free: u64 = self
                .controller
                .core
                .as_ref()
                .map(|core| {
                    use ironlb_controller::core::Ipam;
                    core.ipam()
                        .counters()
                        .values()
                        .map(|c| c.available_ipv4)
                        .sum()
                })
                .unwrap_or(0);
            // A sharing Service can always join the shared IP unless its pool holds none.
            if free > 0 {
                problems.push(format!(
                    "services {pending:?} have no IP while {free} addresses are free"
                ));
            }
        }
        problems
    }

    fn finish(&mut self) {
        let now = self.now;
        if let Some(since) = self.split_since.take() {
            self.report.split_brain += now - since;
        }
        let open: Vec<IpAddr> = self.splits.keys().copied().collect();
        for ip in open {
            self.check_split(ip);
            if let Some(split) = self.splits.remove(&ip) {
                if split.across {
                    self.report.partition_splits.push(now - split.since);
                }
            }
        }
        let problems = self.liveness_problems();
        for problem in problems {
            self.fail(now, format!("liveness: {problem}"));
        }
        for index in 0..self.speakers {
            let node = &self.nodes[index];
            if !node.running || !self.trace.printing() {
                continue;
            }
            let states: Vec<String> = node
                .layer2
                .services()
                .iter()
                .map(|(key, s)| format!("{key}: {:?} {:?}", s.reason, s.owner))
                .collect();
            println!(
                "end state node-{index}: settled {} leaving {:?} api_seen {} layer 2 {states:?} members {:?}",
                node.settled, node.leaving, node.api_seen, node.members
            );
            if let Some(membership) = node.membership.as_ref() {
                for member in membership.members() {
                    println!(
                        "  node-{index} member {:?} {:?} {:?}",
                        member.id, member.liveness, member.state
                    );
                }
            }
        }
        let line = format!(
            "end state: arp answerers {:?} router next hops {:?}",
            self.answerers,
            self.router.next_hops()
        );
        self.trace.line(now, &line);
        self.report.converged_after = self
            .converged_since
            .map(|since| since.saturating_sub(self.options.fault_phase));
        let line = format!(
            "end: failures {} failovers {} false takeovers {} split brain {:?} across partitions {:?} partition yields {}",
            self.report.failures.len(),
            self.report.failovers.len(),
            self.report.false_takeovers,
            self.report.split_brain,
            self.report.partition_splits,
            self.report.partition_yields
        );
        self.trace.line(now, &line);
    }
}

impl Node {
    fn new(name: String, addr: SocketAddr, intruder: bool, ppm: i64) -> Self {
        Self {
            layer2: Layer2Core::new(name.clone(), SpeakerOptions::default()),
            bgp: BgpCore::new(name.clone(), SpeakerOptions::default(), SHUTDOWN_GRACE),
            name,
            addr,
            intruder,
            ppm,
            life: 0,
            running: false,
            paused_until: Duration::ZERO,
            incarnation: 0,
            membership: None,
            garp: GratuitousSchedule::new(),
            sessions: BTreeMap::new(),
            snapshot: None,
            api_seen: 0,
            api_pending: false,
            members: Some(BTreeMap::new()),
            settled: false,
            settle_deadline: None,
            leaving: None,
            reconcile_pending: false,
            wake_at: None,
            wake_generation: 0,
            disturbed_until: Duration::ZERO,
            api_lost: false,
            api_loss: 0,
            wall_offset_micros: 0,
            status_pending: BTreeMap::new(),
            status_flush_scheduled: false,
            status_names: BTreeSet::new(),
            status_unadopted: false,
        }
    }
}

fn ip_word(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6) as u64,
    }
}
