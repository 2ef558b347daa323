//! The ractor supervisor tree: thin actors around the cores of this crate and the drivers of
//! `ironlb-gossip` and `ironlb-announce`.
//!
//! State that a restarted child must find again (the latest cluster [`Snapshot`], the gossip
//! view) lives in `tokio::sync::watch` cells owned by [`Shared`]; messages between actors are
//! small change signals, so a mailbox never holds more than a few of them per change and a
//! burst of watch events coalesces into one reconcile.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironlb_announce::l2::io::driver::Command as L2Command;
use kube::Client;
use ractor::{ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cluster::Snapshot;
use crate::decide::{Members, Options};
use crate::metrics::SpeakerMetrics;
use crate::model::ServiceKey;

mod bgp;
mod cluster_watch;
mod http;
mod layer2;
mod membership;
mod speaker;
mod status_writer;

pub use bgp::{
    Bgp, BgpMsg, BgpSession, BgpState, SessionArgs, SessionMsg, SessionState, SessionView,
    PLANNED_STOP_SLACK,
};
pub use cluster_watch::{ClusterWatch, WatchMsg};
pub use http::{Http, HttpMsg};
pub use layer2::{Layer2, Layer2Msg, Layer2State};
pub use membership::{MembershipActor, MembershipMsg, MembershipState};
pub use speaker::{Speaker, SpeakerMsg, SpeakerState};
pub use status_writer::{
    configuration_state_name, metallb_resource, Protocol, StatusMsg, StatusState, StatusWriter,
    COMPONENT_TYPE_LABEL, CONFIG_CONDITION, NODE_NAME_LABEL,
};

/// Watch events queued between the watchers and the index task.
pub const WATCH_QUEUE_MAX: usize = 1024;
/// Watch events applied before one snapshot is published.
pub const INDEX_BATCH_MAX: usize = 512;
/// How long a burst of watch events is collected before a snapshot.
pub const INDEX_DEBOUNCE: Duration = Duration::from_millis(20);
/// How long a status change waits to be coalesced with others.
pub const STATUS_COALESCE: Duration = Duration::from_millis(50);
/// How long a planned shutdown waits for the last status writes.
pub const STATUS_SHUTDOWN_FLUSH_MAX: Duration = Duration::from_secs(2);
/// Status writes in flight at once.
pub const STATUS_CONCURRENCY_MAX: usize = 16;
/// First restart delay of a crashed child; doubled per crash up to [`RESTART_BACKOFF_MAX`].
pub const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Largest restart delay.
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Crashes of one child within [`RESTART_WINDOW`] after which the whole tree restarts.
pub const RESTARTS_MAX: u32 = 5;
/// The window of [`RESTARTS_MAX`].
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// Longest extra wait, after `--gossip-settle`, for the states (claims) of the other members.
pub const SETTLE_EXTRA_MAX: Duration = Duration::from_secs(4);
/// How often the settle check looks at the gossip view.
pub const SETTLE_POLL: Duration = Duration::from_millis(50);
/// How often a speaker renews its Lease (API-side liveness for the partition rule).
pub const LEASE_RENEW: Duration = Duration::from_secs(1);
/// How long after the layer 2 driver's first interface report a missing interface counts as
/// an `announceFailed` (the driver reports interfaces one by one at start).
pub const INTERFACES_SETTLE: Duration = Duration::from_secs(1);
/// How often a handover checks whether the successors have taken over.
pub const HANDOVER_TICK: Duration = Duration::from_millis(50);
/// Label of a `ServiceL2Status`: the node.
pub const NODE_LABEL: &str = "metallb.io/node";
/// Label of a `ServiceL2Status`: the Service name.
pub const SERVICE_NAME_LABEL: &str = "metallb.io/service-name";
/// Label of a `ServiceL2Status`: the Service namespace.
pub const SERVICE_NAMESPACE_LABEL: &str = "metallb.io/service-namespace";

/// Tasks owned by an actor, aborted when its state is dropped (the actor stopped or crashed).
#[derive(Debug)]
pub struct TaskSet(pub Vec<JoinHandle<()>>);

impl Drop for TaskSet {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// How the layer 2 commands are carried out.
#[derive(Clone, Debug)]
pub enum L2Backend {
    /// The real driver (netlink + AF_PACKET; needs `NET_RAW`), with these exclude patterns.
    Driver(Vec<String>),
    /// Send the commands to a channel (tests).
    Channel(mpsc::Sender<L2Command>),
}

/// Gossip settings.
#[derive(Clone, Debug)]
pub struct GossipSettings {
    /// UDP address to bind.
    pub bind: SocketAddr,
    /// The address other members reach us at.
    pub advertise: SocketAddr,
    /// The shared secret; `None` gossips in plaintext (`--gossip-insecure`, checksummed but
    /// not sealed; sealed members drop such datagrams).
    pub secret: Option<Vec<u8>>,
    /// Extra seeds (`--peers`); Node InternalIPs at the bind port are added.
    pub seeds: Vec<SocketAddr>,
    /// The cluster name (gossip AAD).
    pub cluster: String,
    /// How long a fresh member waits for the others' claims before electing.
    pub settle: Duration,
}

/// Everything the tree needs.
#[derive(Clone, Debug)]
pub struct SpeakerConfig {
    /// This node.
    pub node: String,
    /// The namespace of the configuration and of the status objects.
    pub namespace: String,
    /// Decision flags.
    pub options: Options,
    /// Gossip; `None` runs without membership (every Node is a candidate, MetalLB's fallback).
    pub gossip: Option<GossipSettings>,
    /// Layer 2 backend.
    pub l2: L2Backend,
    /// HTTP addresses serving `/metrics`, `/healthz`, `/readyz`.
    pub http: Vec<SocketAddr>,
    /// How long BGP routes carry GRACEFUL_SHUTDOWN (RFC 8326) in a planned stop before they
    /// are withdrawn; below the shutdown grace.
    pub bgp_shutdown_wait: Duration,
}

/// State shared by the actors (and by a restarted child).
pub struct Shared {
    /// The configuration.
    pub config: SpeakerConfig,
    /// The API client; `None` in tests that feed snapshots directly.
    pub client: Option<Client>,
    /// The latest cluster snapshot.
    pub snapshot: watch::Sender<Arc<Snapshot>>,
    /// The latest gossip view.
    pub members: watch::Sender<Members>,
    /// Gossip has settled (claims of the others are known) or is disabled.
    pub settled: watch::Sender<bool>,
    /// Active members whose state (claims) has not arrived yet.
    pub member_states_missing: watch::Sender<usize>,
    /// Metrics.
    pub metrics: SpeakerMetrics,
    /// Per-Service layer 2 state (for `ironlb status` and tests).
    pub services: watch::Sender<BTreeMap<ServiceKey, crate::layer2::ServiceState>>,
    /// Per-Service BGP state (for `ironlb status` and tests).
    pub bgp_services: watch::Sender<BTreeMap<ServiceKey, crate::bgp::BgpServiceState>>,
    /// The BGP sessions of this node, by BGPPeer name.
    pub bgp_sessions: watch::Sender<BTreeMap<String, SessionView>>,
}

impl Shared {
    /// Shared state for `config`.
    pub fn new(config: SpeakerConfig, client: Option<Client>) -> Arc<Self> {
        let gossip = config.gossip.is_some();
        Arc::new(Self {
            config,
            client,
            snapshot: watch::Sender::new(Arc::new(Snapshot::default())),
            members: watch::Sender::new(if gossip { Some(BTreeMap::new()) } else { None }),
            settled: watch::Sender::new(!gossip),
            member_states_missing: watch::Sender::new(0),
            metrics: SpeakerMetrics::default(),
            services: watch::Sender::new(BTreeMap::new()),
            bgp_services: watch::Sender::new(BTreeMap::new()),
            bgp_sessions: watch::Sender::new(BTreeMap::new()),
        })
    }

    fn name(&self, role: Role) -> String {
        format!("{}/{}", self.config.node, role.as_str())
    }

    fn layer2(&self) -> Option<ActorRef<Layer2Msg>> {
        ActorRef::where_is(self.name(Role::Layer2))
    }

    fn membership(&self) -> Option<ActorRef<MembershipMsg>> {
        ActorRef::where_is(self.name(Role::Membership))
    }

    fn bgp(&self) -> Option<ActorRef<BgpMsg>> {
        ActorRef::where_is(self.name(Role::Bgp))
    }

    fn status_writer(&self) -> Option<ActorRef<StatusMsg>> {
        ActorRef::where_is(self.name(Role::StatusWriter))
    }

    /// Signals `Changed` to [`Layer2`] and [`Bgp`]: each reconciles the latest snapshot (a
    /// burst of signals coalesces into one reconcile).
    fn announcers_changed(&self) {
        tell(self.layer2(), Layer2Msg::Changed);
        tell(self.bgp(), BgpMsg::Changed);
    }
}

/// Casts `message` to `actor` when that child runs; to a child that does not (disabled, or
/// between a crash and its restart) it is dropped, as a cast to a stopped actor would be.
fn tell<M: ractor::Message>(actor: Option<ActorRef<M>>, message: M) {
    if let Some(actor) = actor {
        let _ = actor.cast(message);
    }
}

/// Crash bookkeeping of a supervisor: the delay before a crashed child is restarted (doubling
/// from [`RESTART_BACKOFF_MIN`] to [`RESTART_BACKOFF_MAX`]), or `None` once it crashed more than
/// [`RESTARTS_MAX`] times within [`RESTART_WINDOW`] (the supervisor then escalates).
#[derive(Debug)]
pub struct Crashes<K> {
    at: BTreeMap<K, Vec<Instant>>,
}

impl<K> Default for Crashes<K> {
    fn default() -> Self {
        Self {
            at: BTreeMap::new(),
        }
    }
}

impl<K: Ord> Crashes<K> {
    /// Records a crash of `child` at `now`.
    pub fn record(&mut self, child: K, now: Instant) -> Option<Duration> {
        let crashes = self.at.entry(child).or_default();
        crashes.retain(|at| now.duration_since(*at) < RESTART_WINDOW);
        crashes.push(now);
        let count = u32::try_from(crashes.len()).unwrap_or(u32::MAX);
        if count > RESTARTS_MAX {
            return None;
        }
        Some(
            RESTART_BACKOFF_MIN
                .saturating_mul(1 << count.saturating_sub(1).min(16))
                .min(RESTART_BACKOFF_MAX),
        )
    }

    /// Forgets every crash.
    pub fn clear(&mut self) {
        self.at.clear();
    }
}

/// The child a supervision event is about, and why it stopped; `None` for events that are not
/// a child stopping.
fn stopped_child(event: &SupervisionEvent) -> Option<(&ActorCell, Option<String>)> {
    match event {
        SupervisionEvent::ActorFailed(cell, error) => Some((cell, Some(error.to_string()))),
        SupervisionEvent::ActorTerminated(cell, _, reason) => Some((cell, reason.clone())),
        _ => None,
    }
}

/// Gossip seeds the cluster knows of: the first InternalIP of every Node but `me`, at `port`
/// (this node's gossip bind port, assumed the same on every node).
fn node_seeds<'a>(
    snapshot: &'a Snapshot,
    me: &'a str,
    port: u16,
) -> impl Iterator<Item = SocketAddr> + 'a {
    snapshot
        .nodes
        .values()
        .filter(move |node| node.name != me)
        .filter_map(|node| node.internal_ips.first())
        .map(move |ip| SocketAddr::new(*ip, port))
}

/// Publishes what an announcer holds after it ran its actions: the `(service, ip)` pairs that
/// `announced_ips` picks from each Service go to the `metallb_speaker_announced` series of
/// `protocol` (`metric_series` holds the pairs set last time), and the per-Service state goes to
/// `cell` (for `ironlb status` and tests).
fn publish_announced<'a, S, F, I>(
    shared: &Shared,
    protocol: &str,
    services: &'a BTreeMap<ServiceKey, S>,
    announced_ips: F,
    cell: &watch::Sender<BTreeMap<ServiceKey, S>>,
    metric_series: &mut BTreeSet<(String, IpAddr)>,
) where
    S: Clone,
    F: Fn(&'a S) -> I,
    I: IntoIterator<Item = &'a IpAddr>,
{
    let announced = services
        .iter()
        .flat_map(|(key, service)| {
            announced_ips(service)
                .into_iter()
                .map(move |ip| (key.to_string(), *ip))
        })
        .collect();
    shared
        .metrics
        .replace_announced(protocol, &shared.config.node, announced, metric_series);
    cell.send_replace(services.clone());
}

/// Coalesces change signals: the first signal queues one reconcile message behind whatever is
/// in the mailbox; further signals add nothing until that reconcile runs.
#[derive(Debug, Default)]
pub struct Coalesce {
    queued: bool,
}

impl Coalesce {
    /// A change arrived: queue `reconcile` unless one is queued already.
    pub fn signal<M: ractor::Message>(
        &mut self,
        myself: &ActorRef<M>,
        reconcile: impl FnOnce() -> M,
    ) -> Result<(), ActorProcessingErr> {
        if !self.queued {
            self.queued = true;
            myself.cast(reconcile())?;
        }
        Ok(())
    }

    /// The queued reconcile runs now.
    pub fn run(&mut self) {
        self.queued = false;
    }
}

/// The children of [`Speaker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// [`ClusterWatch`].
    ClusterWatch,
    /// [`MembershipActor`].
    Membership,
    /// [`Layer2`].
    Layer2,
    /// [`Bgp`].
    Bgp,
    /// [`StatusWriter`].
    StatusWriter,
    /// [`Http`].
    Http,
}

impl Role {
    /// Every child, in start order.
    pub const ALL: [Self; 6] = [
        Self::Http,
        Self::Membership,
        Self::Layer2,
        Self::Bgp,
        Self::StatusWriter,
        Self::ClusterWatch,
    ];

    /// Whether this child runs with this configuration (no API client: no watchers and no
    /// status; no gossip settings: no membership).
    pub fn enabled(self, shared: &Shared) -> bool {
        match self {
            Self::ClusterWatch | Self::StatusWriter => shared.client.is_some(),
            Self::Membership => shared.config.gossip.is_some(),
            Self::Layer2 | Self::Bgp | Self::Http => true,
        }
    }

    /// Name suffix and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterWatch => "cluster-watch",
            Self::Membership => "membership",
            Self::Layer2 => "layer2",
            Self::Bgp => "bgp",
            Self::StatusWriter => "status-writer",
            Self::Http => "http",
        }
    }
}

/// Reads the memberlist secret: `path/secretkey` if `path` is a directory (the mounted
/// Secret), else the file itself. Trailing newlines are dropped.
pub fn read_secret(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let file: PathBuf = if path.is_dir() {
        path.join("secretkey")
    } else {
        path.to_owned()
    };
    let mut bytes = std::fs::read(file)?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    Ok(bytes)
}
