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

use futures::StreamExt;
use ironlb_announce::l2::io::driver::{
    Command as L2Command, Driver as L2Driver, DriverConfig, DRIVER_COMMANDS_MAX,
};
use ironlb_announce::l2::proto::interfaces::ExcludeList;
use ironlb_gossip::{Keyring, Liveness, MemberId, Membership, NodeName};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cluster::{Change, ClusterIndex, Object, Snapshot, Source};
use crate::decide::{MemberView, Members, Options};
use crate::layer2::{Action, L2Status, Layer2Core};
use crate::metrics::{ChildLabels, SpeakerMetrics};
use crate::model::ServiceKey;

/// Watch events queued between the watchers and the index task.
pub const WATCH_QUEUE_MAX: usize = 1024;
/// Watch events applied before one snapshot is published.
pub const INDEX_BATCH_MAX: usize = 512;
/// How long a burst of watch events is collected before a snapshot.
pub const INDEX_DEBOUNCE: Duration = Duration::from_millis(20);
/// How long a status change waits to be coalesced with others.
pub const STATUS_COALESCE: Duration = Duration::from_millis(50);
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
/// How often a handover checks whether the successors have taken over.
pub const HANDOVER_TICK: Duration = Duration::from_millis(50);
/// Label of a `ServiceL2Status`: the node.
pub const NODE_LABEL: &str = "metallb.io/node";
/// Label of a `ServiceL2Status`: the Service name.
pub const SERVICE_NAME_LABEL: &str = "metallb.io/service-name";
/// Label of a `ServiceL2Status`: the Service namespace.
pub const SERVICE_NAMESPACE_LABEL: &str = "metallb.io/service-namespace";

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
    /// The shared secret.
    pub secret: Vec<u8>,
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
    /// Metrics.
    pub metrics: SpeakerMetrics,
    /// Per-Service layer 2 state (for `ironlb status` and tests).
    pub services: watch::Sender<BTreeMap<ServiceKey, crate::layer2::ServiceState>>,
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
            metrics: SpeakerMetrics::default(),
            services: watch::Sender::new(BTreeMap::new()),
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

    fn status_writer(&self) -> Option<ActorRef<StatusMsg>> {
        ActorRef::where_is(self.name(Role::StatusWriter))
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
    /// [`StatusWriter`].
    StatusWriter,
    /// [`Http`].
    Http,
}

impl Role {
    /// Every child, in start order.
    pub const ALL: [Self; 5] = [
        Self::Http,
        Self::Membership,
        Self::Layer2,
        Self::StatusWriter,
        Self::ClusterWatch,
    ];

    /// Name suffix and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterWatch => "cluster-watch",
            Self::Membership => "membership",
            Self::Layer2 => "layer2",
            Self::StatusWriter => "status-writer",
            Self::Http => "http",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Speaker (root)

/// Messages of the root.
#[derive(Debug)]
pub enum SpeakerMsg {
    /// Restart a crashed child (sent by the root to itself after the backoff).
    Restart(Role),
    /// Planned shutdown: hand the IPs over within `grace`, leave the gossip, stop.
    Shutdown {
        /// Upper bound of the handover.
        grace: Duration,
        /// Answered when done.
        reply: RpcReplyPort<()>,
    },
}

/// The root: starts the children and restarts a crashed one with backoff.
#[derive(Debug)]
pub struct Speaker;

/// The root's state.
pub struct SpeakerState {
    shared: Arc<Shared>,
    crashes: BTreeMap<Role, Vec<Instant>>,
    stopping: bool,
}

async fn spawn_child(
    role: Role,
    shared: &Arc<Shared>,
    supervisor: ractor::ActorCell,
) -> Result<(), ActorProcessingErr> {
    let name = Some(shared.name(role));
    let shared = shared.clone();
    match role {
        Role::ClusterWatch => {
            Actor::spawn_linked(name, ClusterWatch, shared, supervisor).await?;
        }
        Role::Membership => {
            Actor::spawn_linked(name, MembershipActor, shared, supervisor).await?;
        }
        Role::Layer2 => {
            Actor::spawn_linked(name, Layer2, shared, supervisor).await?;
        }
        Role::StatusWriter => {
            Actor::spawn_linked(name, StatusWriter, shared, supervisor).await?;
        }
        Role::Http => {
            Actor::spawn_linked(name, Http, shared, supervisor).await?;
        }
    }
    Ok(())
}

impl Actor for Speaker {
    type Msg = SpeakerMsg;
    type State = SpeakerState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        for role in Role::ALL {
            if role == Role::StatusWriter && shared.client.is_none() {
                continue;
            }
            if role == Role::ClusterWatch && shared.client.is_none() {
                continue;
            }
            if role == Role::Membership && shared.config.gossip.is_none() {
                continue;
            }
            spawn_child(role, &shared, myself.get_cell()).await?;
        }
        Ok(SpeakerState {
            shared,
            crashes: BTreeMap::new(),
            stopping: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SpeakerMsg::Restart(role) => {
                if state.stopping {
                    return Ok(());
                }
                if ractor::registry::where_is(state.shared.name(role)).is_some() {
                    return Ok(());
                }
                state
                    .shared
                    .metrics
                    .restarts
                    .get_or_create(&ChildLabels {
                        child: role.as_str().to_owned(),
                    })
                    .inc();
                if let Err(error) = spawn_child(role, &state.shared, myself.get_cell()).await {
                    tracing::warn!(child = role.as_str(), %error, "child restart failed");
                    schedule_restart(&myself, state, role);
                }
            }
            SpeakerMsg::Shutdown { grace, reply } => {
                state.stopping = true;
                let deadline = Instant::now() + grace;
                if let Some(layer2) = state.shared.layer2() {
                    let result = layer2
                        .call(
                            |reply| Layer2Msg::Handover { deadline, reply },
                            Some(grace + Duration::from_millis(500)),
                        )
                        .await;
                    if let Err(error) = result {
                        tracing::warn!(%error, "handover did not complete");
                    }
                }
                if let Some(membership) = state.shared.membership() {
                    let _ = membership
                        .call(MembershipMsg::Leave, Some(Duration::from_secs(1)))
                        .await;
                }
                myself.stop_children(Some("shutdown".into()));
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match &event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, Some(error.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, reason.clone()),
            _ => return Ok(()),
        };
        if state.stopping {
            return Ok(());
        }
        let Some(name) = cell.get_name() else {
            return Ok(());
        };
        let Some(role) = Role::ALL
            .into_iter()
            .find(|role| name == state.shared.name(*role))
        else {
            return Ok(());
        };
        tracing::warn!(child = role.as_str(), reason = ?failure, "child stopped; restarting");
        schedule_restart(&myself, state, role);
        Ok(())
    }
}

fn schedule_restart(myself: &ActorRef<SpeakerMsg>, state: &mut SpeakerState, role: Role) {
    let now = Instant::now();
    let crashes = state.crashes.entry(role).or_default();
    crashes.retain(|at| now.duration_since(*at) < RESTART_WINDOW);
    crashes.push(now);
    let count = u32::try_from(crashes.len()).unwrap_or(u32::MAX);
    if count > RESTARTS_MAX {
        // The child keeps failing: restart the whole tree (its siblings may hold bad state).
        tracing::error!(
            child = role.as_str(),
            "child keeps failing; restarting the tree"
        );
        state.crashes.clear();
        myself.stop_children(Some("tree restart".into()));
        for (index, role) in Role::ALL.into_iter().enumerate() {
            let delay = RESTART_BACKOFF_MAX + Duration::from_millis(10 * index as u64);
            myself.send_after(delay, move || SpeakerMsg::Restart(role));
        }
        return;
    }
    let delay = RESTART_BACKOFF_MIN
        .saturating_mul(1 << (count.saturating_sub(1)).min(16))
        .min(RESTART_BACKOFF_MAX);
    myself.send_after(delay, move || SpeakerMsg::Restart(role));
}

// ---------------------------------------------------------------------------------------------
// ClusterWatch

/// Messages of [`ClusterWatch`].
#[derive(Debug)]
pub enum WatchMsg {
    /// Fault injection: panic (tests of supervision).
    Panic,
}

/// Owns the kube-rs watchers and the [`ClusterIndex`] task.
#[derive(Debug)]
pub struct ClusterWatch;

/// Its state: the tasks it aborts when it stops.
#[derive(Debug)]
pub struct TaskSet(Vec<JoinHandle<()>>);

impl Drop for TaskSet {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Actor for ClusterWatch {
    type Msg = WatchMsg;
    type State = TaskSet;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let client = shared
            .client
            .clone()
            .ok_or("cluster watch needs an API client")?;
        let namespace = shared.config.namespace.clone();
        let (tx, rx) = mpsc::channel(WATCH_QUEUE_MAX);
        let mut tasks = vec![
            tokio::spawn(watch_one(
                Api::<Service>::all(client.clone()),
                Source::Services,
                Object::Service,
                tx.clone(),
                shared.clone(),
            )),
            tokio::spawn(watch_one(
                Api::<EndpointSlice>::all(client.clone()),
                Source::EndpointSlices,
                Object::EndpointSlice,
                tx.clone(),
                shared.clone(),
            )),
            tokio::spawn(watch_one(
                Api::<Node>::all(client.clone()),
                Source::Nodes,
                Object::Node,
                tx.clone(),
                shared.clone(),
            )),
            tokio::spawn(watch_one(
                Api::<Namespace>::all(client.clone()),
                Source::Namespaces,
                Object::Namespace,
                tx.clone(),
                shared.clone(),
            )),
            tokio::spawn(watch_one(
                Api::<Secret>::namespaced(client.clone(), &namespace),
                Source::Secrets,
                Object::Secret,
                tx.clone(),
                shared.clone(),
            )),
            tokio::spawn(watch_one(
                Api::<ConfigMap>::namespaced(client.clone(), &namespace),
                Source::ConfigMaps,
                Object::ConfigMap,
                tx.clone(),
                shared.clone(),
            )),
        ];
        for kind in ironlb_controller::run::MetallbKind::ALL {
            let api =
                Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &kind.resource());
            tasks.push(tokio::spawn(watch_one(
                api,
                Source::Metallb(kind),
                move |o| Object::Metallb(kind, o),
                tx.clone(),
                shared.clone(),
            )));
        }
        drop(tx);
        tasks.push(tokio::spawn(index_task(rx, shared)));
        Ok(TaskSet(tasks))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WatchMsg::Panic => panic!("fault injection: cluster watch"),
        }
    }
}

async fn watch_one<K, F>(
    api: Api<K>,
    source: Source,
    wrap: F,
    tx: mpsc::Sender<Change>,
    shared: Arc<Shared>,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(K) -> Object,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut listed = Vec::new();
    while let Some(event) = stream.next().await {
        let change = match event {
            Ok(watcher::Event::Init) => {
                listed.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(object)) => {
                listed.push(wrap(object));
                continue;
            }
            Ok(watcher::Event::InitDone) => Change::Reset(source, std::mem::take(&mut listed)),
            Ok(watcher::Event::Apply(object)) => Change::Applied(wrap(object)),
            Ok(watcher::Event::Delete(object)) => Change::Deleted(wrap(object)),
            Err(error) => {
                // The watcher retries with backoff; we keep announcing from the last snapshot.
                tracing::warn!(?source, %error, "watch failed; keeping the last known state");
                shared.metrics.update_errors.inc();
                shared.metrics.api_reachable.set(0);
                continue;
            }
        };
        shared.metrics.api_reachable.set(1);
        if tx.send(change).await.is_err() {
            return;
        }
    }
}

async fn index_task(mut rx: mpsc::Receiver<Change>, shared: Arc<Shared>) {
    let mut index = ClusterIndex::new(shared.config.namespace.clone());
    let mut seeds: Vec<SocketAddr> = Vec::new();
    while let Some(first) = rx.recv().await {
        index.apply(first);
        let mut applied = 1;
        let deadline = tokio::time::Instant::now() + INDEX_DEBOUNCE;
        while applied < INDEX_BATCH_MAX {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(change)) => {
                    index.apply(change);
                    applied += 1;
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        shared.metrics.updates.inc_by(applied as u64);
        let snapshot = index.snapshot();
        shared
            .metrics
            .config_loaded
            .set(i64::from(snapshot.config.is_some()));
        shared
            .metrics
            .config_stale
            .set(i64::from(!snapshot.config_errors.is_empty()));
        if snapshot.synced {
            shared.metrics.set_ready();
        }
        if let Some(gossip) = &shared.config.gossip {
            let port = gossip.bind.port();
            let mut found: Vec<SocketAddr> = snapshot
                .nodes
                .values()
                .filter(|n| n.name != shared.config.node)
                .filter_map(|n| n.internal_ips.first())
                .map(|ip| SocketAddr::new(*ip, port))
                .collect();
            found.sort();
            if found != seeds {
                seeds = found;
                if let Some(membership) = shared.membership() {
                    let _ = membership.cast(MembershipMsg::Seeds(seeds.clone()));
                }
            }
        }
        shared.snapshot.send_replace(Arc::new(snapshot));
        if let Some(layer2) = shared.layer2() {
            let _ = layer2.cast(Layer2Msg::Changed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Membership

/// Messages of [`MembershipActor`].
#[derive(Debug)]
pub enum MembershipMsg {
    /// Publish these claims.
    Claims(BTreeSet<IpAddr>),
    /// Publish the leaving flag.
    Leaving(bool),
    /// Announce to these seeds.
    Seeds(Vec<SocketAddr>),
    /// Leave gracefully (answered when the goodbyes are sent).
    Leave(RpcReplyPort<()>),
    /// Fault injection: panic.
    Panic,
}

/// Wraps the gossip driver.
#[derive(Debug)]
pub struct MembershipActor;

/// Its state.
#[derive(Debug)]
pub struct MembershipState {
    handle: ironlb_gossip::driver::GossipHandle,
    _tasks: TaskSet,
}

impl Actor for MembershipActor {
    type Msg = MembershipMsg;
    type State = MembershipState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let gossip = shared
            .config
            .gossip
            .clone()
            .ok_or("membership without gossip settings")?;
        let keyring = Keyring::new(&gossip.secret)?;
        let socket = tokio::net::UdpSocket::bind(gossip.bind).await?;
        let me = MemberId::new(
            NodeName::new(shared.config.node.clone())?,
            ironlb_gossip::driver::boot_incarnation(),
            gossip.advertise,
        );
        let config = ironlb_gossip::Config::lan(gossip.cluster.clone());
        let membership = Membership::new(
            config,
            me,
            keyring,
            ironlb_gossip::driver::os_seed(),
            Instant::now(),
        )?;
        let mut seeds = gossip.seeds.clone();
        seeds.extend(
            shared
                .snapshot
                .borrow()
                .nodes
                .values()
                .filter(|n| n.name != shared.config.node)
                .filter_map(|n| n.internal_ips.first())
                .map(|ip| SocketAddr::new(*ip, gossip.bind.port())),
        );
        let driver = ironlb_gossip::driver::spawn(
            membership,
            socket,
            seeds,
            Arc::new(ironlb_gossip::driver::SystemClock),
        );
        let handle = driver.handle.clone();
        let forward = tokio::spawn(forward_members(
            driver.events,
            handle.clone(),
            shared.clone(),
        ));
        let settle_shared = shared.clone();
        let settle = tokio::spawn(async move {
            tokio::time::sleep(gossip.settle).await;
            settle_shared.settled.send_replace(true);
            if let Some(layer2) = settle_shared.layer2() {
                let _ = layer2.cast(Layer2Msg::Changed);
            }
        });
        let driver_task = driver.task;
        let abort_driver = tokio::spawn(async move {
            let _ = driver_task.await;
        });
        Ok(MembershipState {
            handle,
            _tasks: TaskSet(vec![forward, settle, abort_driver]),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MembershipMsg::Claims(claims) => state.handle.set_claims(claims).await?,
            MembershipMsg::Leaving(leaving) => state.handle.set_leaving(leaving).await?,
            MembershipMsg::Seeds(seeds) => state.handle.join(seeds).await?,
            MembershipMsg::Leave(reply) => {
                let _ = state.handle.leave().await;
                let _ = reply.send(());
            }
            MembershipMsg::Panic => panic!("fault injection: membership"),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Dropping the last handle stops the driver (no goodbye: a crash looks like one).
        drop(state.handle.clone());
        Ok(())
    }
}

/// Turns member events into the shared gossip view and a change signal to [`Layer2`].
async fn forward_members(
    mut events: mpsc::Receiver<ironlb_gossip::MemberEvent>,
    handle: ironlb_gossip::driver::GossipHandle,
    shared: Arc<Shared>,
) {
    while let Some(event) = events.recv().await {
        tracing::debug!(?event, "member event");
        while events.try_recv().is_ok() {}
        let Ok(snapshots) = handle.members().await else {
            return;
        };
        let mut view: BTreeMap<String, MemberView> = BTreeMap::new();
        for member in snapshots {
            let entry = view.entry(member.id.name.as_str().to_owned()).or_default();
            if matches!(member.liveness, Liveness::Alive | Liveness::Suspect) {
                entry.active = true;
                if let Some(state) = member.state {
                    entry.leaving = state.leaving;
                    entry.claims = state.claims;
                }
            }
        }
        shared.members.send_replace(Some(view));
        if let Some(layer2) = shared.layer2() {
            let _ = layer2.cast(Layer2Msg::Changed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Layer2

/// Messages of [`Layer2`].
#[derive(Debug)]
pub enum Layer2Msg {
    /// The snapshot or the gossip view changed: reconcile.
    Changed,
    /// Hand the IPs over to successors, then withdraw (answered when done or at `deadline`).
    Handover {
        /// When to give up waiting for successors.
        deadline: Instant,
        /// Answered after the withdraw.
        reply: RpcReplyPort<()>,
    },
    /// Re-check a handover in progress.
    Tick,
    /// Fault injection: panic.
    Panic,
}

/// The layer 2 announcer: [`Layer2Core`] plus the `announce::l2` driver.
#[derive(Debug)]
pub struct Layer2;

/// Its state.
pub struct Layer2State {
    shared: Arc<Shared>,
    core: Layer2Core,
    commands: mpsc::Sender<L2Command>,
    handover: Option<(Instant, RpcReplyPort<()>)>,
    leaving: bool,
    _driver: TaskSet,
}

impl Actor for Layer2 {
    type Msg = Layer2Msg;
    type State = Layer2State;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (commands, tasks) = match &shared.config.l2 {
            L2Backend::Channel(sender) => (sender.clone(), Vec::new()),
            L2Backend::Driver(excludes) => {
                let exclude = if excludes.is_empty() {
                    ExcludeList::metallb_default()
                } else {
                    ExcludeList::new(excludes)?
                };
                let (tx, rx) = mpsc::channel(DRIVER_COMMANDS_MAX);
                let (events_tx, mut events_rx) = mpsc::channel(DRIVER_COMMANDS_MAX);
                let driver = L2Driver::new(
                    DriverConfig {
                        exclude,
                        verbose: false,
                    },
                    shared.metrics.layer2.clone(),
                    events_tx,
                );
                let me = myself.clone();
                let run = tokio::spawn(async move {
                    if let Err(error) = driver.run(rx).await {
                        tracing::error!(%error, "layer 2 driver stopped");
                    }
                    // The actor cannot work without its driver: let the supervisor restart it.
                    me.stop(Some("layer 2 driver stopped".into()));
                });
                let events = tokio::spawn(async move {
                    while let Some(event) = events_rx.recv().await {
                        tracing::info!(?event, "layer 2 event");
                    }
                });
                (tx, vec![run, events])
            }
        };
        // Anything a previous incarnation of this actor announced is gone with its driver.
        myself.cast(Layer2Msg::Changed)?;
        Ok(Layer2State {
            core: Layer2Core::new(shared.config.node.clone(), shared.config.options.clone()),
            shared,
            commands,
            handover: None,
            leaving: false,
            _driver: TaskSet(tasks),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            Layer2Msg::Changed | Layer2Msg::Tick => reconcile(state).await?,
            Layer2Msg::Handover { deadline, reply } => {
                state.leaving = true;
                state.handover = Some((deadline, reply));
                if let Some(membership) = state.shared.membership() {
                    let _ = membership.cast(MembershipMsg::Leaving(true));
                }
                reconcile(state).await?;
                myself.send_interval(HANDOVER_TICK, || Layer2Msg::Tick);
            }
            Layer2Msg::Panic => panic!("fault injection: layer2"),
        }
        Ok(())
    }
}

async fn reconcile(state: &mut Layer2State) -> Result<(), ActorProcessingErr> {
    if !*state.shared.settled.borrow() {
        return Ok(());
    }
    let snapshot = state.shared.snapshot.borrow().clone();
    let members = state.shared.members.borrow().clone();
    let mut actions = state.core.reconcile(&snapshot, &members, state.leaving);
    if let Some((deadline, _)) = &state.handover {
        if state.core.handover_done(&members) || Instant::now() >= *deadline {
            actions.extend(state.core.withdraw_all());
            if let Some((_, reply)) = state.handover.take() {
                run_actions(state, actions).await?;
                let _ = reply.send(());
                return Ok(());
            }
        }
    }
    run_actions(state, actions).await
}

async fn run_actions(
    state: &mut Layer2State,
    actions: Vec<Action>,
) -> Result<(), ActorProcessingErr> {
    // Announce first; claims, status and metrics follow.
    let mut later = Vec::new();
    for action in actions {
        match action {
            Action::Announce { ip, selection } => {
                tracing::info!(%ip, ?selection, "announcing");
                state
                    .commands
                    .send(L2Command::Announce { ip, selection })
                    .await?;
            }
            Action::Withdraw { ip } => {
                tracing::info!(%ip, "withdrawing");
                state.commands.send(L2Command::Withdraw { ip }).await?;
            }
            other => later.push(other),
        }
    }
    for action in later {
        match action {
            Action::Claims(claims) => {
                if let Some(membership) = state.shared.membership() {
                    let _ = membership.cast(MembershipMsg::Claims(claims));
                }
            }
            Action::Status(key, status) => {
                if let Some(writer) = state.shared.status_writer() {
                    let _ = writer.cast(StatusMsg::L2(key, status));
                }
            }
            Action::Assigned(key, ips) => {
                tracing::info!(service = %key, ?ips, protocol = "layer2", "node assigned");
                if let Some(writer) = state.shared.status_writer() {
                    let _ = writer.cast(StatusMsg::Assigned(key, ips));
                }
            }
            Action::Announce { .. } | Action::Withdraw { .. } => {}
        }
    }
    let node = state.shared.config.node.clone();
    state.shared.metrics.announced.clear();
    for (key, service) in state.core.services() {
        if service.announced {
            for ip in &service.ips {
                if state.core.announced().contains_key(ip) {
                    state
                        .shared
                        .metrics
                        .set_announced(&key.to_string(), &node, *ip, true);
                }
            }
        }
    }
    state
        .shared
        .services
        .send_replace(state.core.services().clone());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// StatusWriter

/// Messages of [`StatusWriter`].
#[derive(Debug)]
pub enum StatusMsg {
    /// Desired `ServiceL2Status` of this node for one Service (None: delete it).
    L2(ServiceKey, Option<L2Status>),
    /// Event `nodeAssigned` on the Service.
    Assigned(ServiceKey, Vec<IpAddr>),
    /// Write what is pending.
    Flush,
    /// Fault injection: panic.
    Panic,
}

/// Writes `ServiceL2Status` objects and Events, coalesced, off the announcing path.
#[derive(Debug)]
pub struct StatusWriter;

/// Its state.
pub struct StatusState {
    shared: Arc<Shared>,
    client: Client,
    pending: BTreeMap<ServiceKey, Option<L2Status>>,
    events: Vec<(ServiceKey, Vec<IpAddr>)>,
    names: BTreeMap<ServiceKey, String>,
    scheduled: bool,
    recorder: Recorder,
}

impl Actor for StatusWriter {
    type Msg = StatusMsg;
    type State = StatusState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let client = shared
            .client
            .clone()
            .ok_or("status writer needs an API client")?;
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "metallb-speaker".into(),
                instance: Some(shared.config.node.clone()),
            },
        );
        let mut state = StatusState {
            shared: shared.clone(),
            client,
            pending: BTreeMap::new(),
            events: Vec::new(),
            names: BTreeMap::new(),
            scheduled: false,
            recorder,
        };
        // Objects of an earlier life of this speaker: adopt one per Service, the rest are
        // deleted by the next flush unless Layer2 wants them.
        let api = l2_status_api(&state);
        let selector = format!("{NODE_LABEL}={}", shared.config.node);
        match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => {
                for object in list.items {
                    let labels = object.metadata.labels.clone().unwrap_or_default();
                    let (Some(namespace), Some(name), Some(object_name)) = (
                        labels.get(SERVICE_NAMESPACE_LABEL),
                        labels.get(SERVICE_NAME_LABEL),
                        object.metadata.name.clone(),
                    ) else {
                        continue;
                    };
                    let key = ServiceKey::new(namespace.clone(), name.clone());
                    state.names.insert(key.clone(), object_name);
                    state.pending.entry(key).or_insert(None);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list ServiceL2Status objects"),
        }
        // Layer2 re-sends what it wants when it reconciles; give it a moment before deleting.
        if !state.pending.is_empty() {
            state.scheduled = true;
            myself.send_after(Duration::from_secs(2), || StatusMsg::Flush);
        }
        if let Some(layer2) = shared.layer2() {
            let _ = layer2.cast(Layer2Msg::Changed);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            StatusMsg::L2(key, status) => {
                state.pending.insert(key, status);
                schedule_flush(&myself, state, STATUS_COALESCE);
            }
            StatusMsg::Assigned(key, ips) => {
                state.events.push((key, ips));
                schedule_flush(&myself, state, STATUS_COALESCE);
            }
            StatusMsg::Flush => {
                state.scheduled = false;
                let failed = flush(state).await;
                if failed {
                    schedule_flush(&myself, state, Duration::from_secs(1));
                }
            }
            StatusMsg::Panic => panic!("fault injection: status writer"),
        }
        Ok(())
    }
}

fn schedule_flush(myself: &ActorRef<StatusMsg>, state: &mut StatusState, delay: Duration) {
    if !state.scheduled {
        state.scheduled = true;
        myself.send_after(delay, || StatusMsg::Flush);
    }
}

fn l2_status_api(state: &StatusState) -> Api<DynamicObject> {
    let resource = kube::discovery::ApiResource {
        group: "metallb.io".into(),
        version: "v1beta1".into(),
        api_version: "metallb.io/v1beta1".into(),
        kind: "ServiceL2Status".into(),
        plural: "servicel2statuses".into(),
    };
    Api::namespaced_with(
        state.client.clone(),
        &state.shared.config.namespace,
        &resource,
    )
}

/// One status write: the Service, what was wanted, and the object name (None: deleted).
type WriteResult = (
    ServiceKey,
    Option<L2Status>,
    Result<Option<String>, kube::Error>,
);

/// Writes everything pending; returns true if something failed (kept pending).
async fn flush(state: &mut StatusState) -> bool {
    let api = l2_status_api(state);
    let node = state.shared.config.node.clone();
    let pending = std::mem::take(&mut state.pending);
    let names = state.names.clone();
    let results: Vec<WriteResult> = futures::stream::iter(pending)
        .map(|(key, desired)| {
            let api = api.clone();
            let node = node.clone();
            let existing = names.get(&key).cloned();
            async move {
                let result = write_one(&api, &node, &key, existing, desired.as_ref()).await;
                (key, desired, result)
            }
        })
        .buffer_unordered(STATUS_CONCURRENCY_MAX)
        .collect()
        .await;
    let mut failed = false;
    for (key, desired, result) in results {
        match result {
            Ok(Some(name)) => {
                state.shared.metrics.status_writes.inc();
                state.names.insert(key, name);
            }
            Ok(None) => {
                state.shared.metrics.status_writes.inc();
                state.names.remove(&key);
            }
            Err(error) => {
                tracing::warn!(service = %key, %error, "ServiceL2Status write failed; retrying");
                state.shared.metrics.update_errors.inc();
                state.pending.entry(key).or_insert(desired);
                failed = true;
            }
        }
    }
    for (key, ips) in std::mem::take(&mut state.events) {
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        let event = Event {
            type_: EventType::Normal,
            reason: "nodeAssigned".into(),
            note: Some(format!(
                "announcing from node \"{node}\" with protocol \"layer2\" ({})",
                ips.join(", ")
            )),
            action: "Announce".into(),
            secondary: None,
        };
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(key.namespace.clone()),
            name: Some(key.name.clone()),
            ..Default::default()
        };
        if let Err(error) = state.recorder.publish(&event, &reference).await {
            tracing::debug!(service = %key, %error, "event not recorded");
        }
    }
    failed
}

async fn write_one(
    api: &Api<DynamicObject>,
    node: &str,
    key: &ServiceKey,
    existing: Option<String>,
    desired: Option<&L2Status>,
) -> Result<Option<String>, kube::Error> {
    let Some(desired) = desired else {
        if let Some(name) = existing {
            match api.delete(&name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        return Ok(None);
    };
    let name = match existing {
        Some(name) => name,
        None => {
            let object: DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "metallb.io/v1beta1",
                "kind": "ServiceL2Status",
                "metadata": {
                    "generateName": "l2-",
                    "labels": {
                        NODE_LABEL: node,
                        SERVICE_NAME_LABEL: key.name,
                        SERVICE_NAMESPACE_LABEL: key.namespace,
                    },
                },
                "spec": {},
            }))
            .map_err(kube::Error::SerdeError)?;
            let created = api.create(&PostParams::default(), &object).await?;
            created.metadata.name.unwrap_or_default()
        }
    };
    let interfaces: Vec<serde_json::Value> = desired
        .interfaces
        .iter()
        .map(|name| serde_json::json!({ "name": name }))
        .collect();
    let patch = serde_json::json!({
        "status": {
            "node": node,
            "serviceName": key.name,
            "serviceNamespace": key.namespace,
            "interfaces": interfaces,
        }
    });
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(Some(name))
}

// ---------------------------------------------------------------------------------------------
// Http

/// Messages of [`Http`].
#[derive(Debug)]
pub enum HttpMsg {
    /// Fault injection: panic.
    Panic,
}

/// Serves `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug)]
pub struct Http;

impl Actor for Http {
    type Msg = HttpMsg;
    type State = TaskSet;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut tasks = Vec::new();
        for addr in shared.config.http.clone() {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tasks.push(tokio::spawn(crate::http::serve(listener, shared.clone())));
        }
        Ok(TaskSet(tasks))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HttpMsg::Panic => panic!("fault injection: http"),
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
