//! `Layer2`: the [`Layer2Core`] plus the `announce::l2` driver.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use ironlb_announce::l2::io::driver::{
    Command as L2Command, Driver as L2Driver, DriverConfig, DRIVER_COMMANDS_MAX,
};
use ironlb_announce::l2::io::L2Event;
use ironlb_announce::l2::proto::interfaces::ExcludeList;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;

use super::{
    publish_announced, tell, Coalesce, L2Backend, MembershipMsg, Protocol, Shared, StatusMsg,
    TaskSet, HANDOVER_TICK, INTERFACES_SETTLE,
};
use crate::layer2::{Action, Layer2Core};
use crate::model::ServiceKey;

/// Messages of [`Layer2`].
#[derive(Debug)]
pub enum Layer2Msg {
    /// The snapshot or the gossip view changed: reconcile (a burst of these coalesces into one
    /// [`Layer2Msg::Reconcile`] queued behind it).
    Changed,
    /// Reconcile the latest snapshot and gossip view now.
    Reconcile,
    /// Answered once every message queued before it is handled (tests, debugging).
    Sync(RpcReplyPort<()>),
    /// Hand the IPs over to successors, then withdraw (answered when done or at `deadline`).
    Handover {
        /// When to give up waiting for successors.
        deadline: Instant,
        /// Answered after the withdraw.
        reply: RpcReplyPort<()>,
    },
    /// Re-check a handover in progress.
    Tick,
    /// The layer 2 driver started (`up`) or stopped a responder on an interface.
    Interface {
        /// The interface.
        name: String,
        /// Responding on it now.
        up: bool,
    },
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
    metric_series: BTreeSet<(String, IpAddr)>,
    /// Interfaces with a responder, and since when they are known (None: no driver events
    /// yet, e.g. the channel backend).
    interfaces: Option<(Instant, BTreeSet<String>)>,
    /// Services an `announceFailed` Event was sent for (until their interfaces show up).
    announce_failed: BTreeSet<ServiceKey>,
    /// A [`Layer2Msg::Reconcile`] is queued: further `Changed` signals add nothing.
    reconcile: Coalesce,
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
                let me = myself.clone();
                let events = tokio::spawn(async move {
                    while let Some(event) = events_rx.recv().await {
                        let interface = match &event {
                            L2Event::InterfaceUp { interface, .. } => {
                                Some((interface.clone(), true))
                            }
                            L2Event::InterfaceDown { interface, .. } => {
                                Some((interface.clone(), false))
                            }
                            _ => None,
                        };
                        if let Some((name, up)) = interface {
                            let _ = me.cast(Layer2Msg::Interface { name, up });
                        }
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
            metric_series: BTreeSet::new(),
            interfaces: None,
            announce_failed: BTreeSet::new(),
            reconcile: Coalesce::default(),
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
            Layer2Msg::Changed => state.reconcile.signal(&myself, || Layer2Msg::Reconcile)?,
            Layer2Msg::Reconcile => {
                state.reconcile.run();
                reconcile(state).await?;
            }
            Layer2Msg::Tick => reconcile(state).await?,
            Layer2Msg::Sync(reply) => {
                let _ = reply.send(());
            }
            Layer2Msg::Interface { name, up } => {
                let (_, interfaces) = state
                    .interfaces
                    .get_or_insert_with(|| (Instant::now(), BTreeSet::new()));
                if up {
                    interfaces.insert(name);
                } else {
                    interfaces.remove(&name);
                }
                check_interfaces(state);
            }
            Layer2Msg::Handover { deadline, reply } => {
                state.leaving = true;
                state.handover = Some((deadline, reply));
                tell(state.shared.membership(), MembershipMsg::Leaving(true));
                reconcile(state).await?;
                myself.send_interval(HANDOVER_TICK, || Layer2Msg::Tick);
            }
            Layer2Msg::Panic => panic!("fault injection: layer2"),
        }
        Ok(())
    }
}

async fn reconcile(state: &mut Layer2State) -> Result<(), ActorProcessingErr> {
    state.shared.metrics.count_reconcile("layer2");
    if !*state.shared.settled.borrow() {
        return Ok(());
    }
    let snapshot = state.shared.snapshot.borrow().clone();
    let members = state.shared.members.borrow().clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|since| i64::try_from(since.as_micros()).ok());
    let mut actions = state
        .core
        .reconcile_at(&snapshot, &members, state.leaving, now);
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
                tell(state.shared.membership(), MembershipMsg::Claims(claims));
            }
            Action::Status(key, status) => {
                tell(state.shared.status_writer(), StatusMsg::L2(key, status));
            }
            Action::PartitionYield { service, winner } => {
                tracing::warn!(
                    %service,
                    %winner,
                    "split brain: the owner on the other side of a gossip partition keeps it; withdrawing"
                );
                state.shared.metrics.partition_yields.inc();
            }
            Action::Assigned(key, ips) => {
                tracing::info!(service = %key, ?ips, protocol = "layer2", "node assigned");
                tell(
                    state.shared.status_writer(),
                    StatusMsg::Assigned(key, ips, Protocol::Layer2),
                );
            }
            Action::Announce { .. } | Action::Withdraw { .. } => {}
        }
    }
    let core = &state.core;
    publish_announced(
        &state.shared,
        "layer2",
        core.services(),
        |service| {
            service
                .ips
                .iter()
                .filter(move |ip| service.announced && core.announced().contains_key(ip))
        },
        &state.shared.services,
        &mut state.metric_series,
    );
    check_interfaces(state);
    Ok(())
}

/// Sends `announceFailed` once per Service whose named interfaces are all missing here (after
/// the driver has reported its interfaces for [`INTERFACES_SETTLE`]).
fn check_interfaces(state: &mut Layer2State) {
    let Some((since, up)) = &state.interfaces else {
        return;
    };
    if since.elapsed() < INTERFACES_SETTLE {
        return;
    }
    let missing = state.core.interfaces_missing(up);
    for (key, ip) in &missing {
        if state.announce_failed.contains(key) {
            continue;
        }
        tracing::warn!(service = %key, %ip, "announce failed: none of the advertisement's interfaces exists on this node");
        tell(
            state.shared.status_writer(),
            StatusMsg::AnnounceFailed(key.clone(), *ip),
        );
    }
    state.announce_failed = missing.into_keys().collect();
}
