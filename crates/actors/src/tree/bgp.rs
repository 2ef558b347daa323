//! `Bgp`: the [`BgpCore`] plus one [`BgpSession`] child per BGPPeer session, each a thin shell
//! around `ironlb_announce::bgp::driver` (which runs the session's BFD when the peer names a
//! BFDProfile). `Bgp` supervises its sessions like the root supervises its children: a crashed
//! session is restarted with backoff and finds its routes again in its watch cell; the other
//! sessions and the rest of the tree keep running. A session that keeps crashing makes `Bgp`
//! fail, and the root restarts `Bgp`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironlb_announce::bgp::driver::{self, Command, PeerConfig, PeerHandle};
use ironlb_announce::bgp::rib::Routes;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::Serialize;
use tokio::sync::watch;

use super::{
    publish_announced, stopped_child, tell, Coalesce, Crashes, Protocol, Shared, StatusMsg, TaskSet,
};
use crate::bgp::{BgpAction, BgpCore};

/// How long a planned stop may take beyond the GRACEFUL_SHUTDOWN wait (withdraw and Cease).
pub const PLANNED_STOP_SLACK: Duration = Duration::from_secs(1);

/// What `ironlb status` and `/debug/bgp` show of one session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionView {
    /// The router's address.
    pub peer: SocketAddr,
    /// RFC 4271 state (`Idle`, `Connect`, `Active`, `OpenSent`, `OpenConfirm`, `Established`).
    pub state: String,
    /// The last connection or configuration error, until the session is established.
    pub last_error: Option<String>,
    /// The BFD state when the peer has a BFDProfile.
    pub bfd: Option<String>,
    /// Prefixes this node wants the peer to hold.
    pub prefixes: usize,
}

/// Messages of [`Bgp`].
#[derive(Debug)]
pub enum BgpMsg {
    /// The snapshot changed: reconcile (a burst coalesces into one [`BgpMsg::Reconcile`]).
    Changed,
    /// Reconcile the latest snapshot now.
    Reconcile,
    /// Restart the crashed session of this BGPPeer (sent to itself after the backoff).
    Restart(String),
    /// Planned stop (RFC 8326) of every session; answered when every session has withdrawn.
    PlannedStop(RpcReplyPort<()>),
    /// The session actors, by BGPPeer name (tests, debugging).
    Sessions(RpcReplyPort<BTreeMap<String, ActorCell>>),
    /// Fault injection: panic.
    Panic,
}

/// The BGP announcer.
#[derive(Debug)]
pub struct Bgp;

/// One session slot: its configuration, its routes cell and its actor (absent while a restart
/// is pending).
struct Slot {
    config: PeerConfig,
    routes: watch::Sender<Routes>,
    actor: Option<ActorRef<SessionMsg>>,
}

/// Its state.
pub struct BgpState {
    shared: Arc<Shared>,
    core: BgpCore,
    slots: BTreeMap<String, Slot>,
    crashes: Crashes<String>,
    stopping: bool,
    reconcile: Coalesce,
    metric_series: BTreeSet<(String, IpAddr)>,
}

impl Actor for Bgp {
    type Msg = BgpMsg;
    type State = BgpState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Sessions of a previous incarnation died with it (linked children): start afresh.
        myself.cast(BgpMsg::Changed)?;
        Ok(BgpState {
            core: BgpCore::new(
                shared.config.node.clone(),
                shared.config.options.clone(),
                shared.config.bgp_shutdown_wait,
            ),
            shared,
            slots: BTreeMap::new(),
            crashes: Crashes::default(),
            stopping: false,
            reconcile: Coalesce::default(),
            metric_series: BTreeSet::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            BgpMsg::Changed => state.reconcile.signal(&myself, || BgpMsg::Reconcile)?,
            BgpMsg::Reconcile => {
                state.reconcile.run();
                if state.stopping {
                    return Ok(());
                }
                state.shared.metrics.count_reconcile("bgp");
                let snapshot = state.shared.snapshot.borrow().clone();
                let actions = state.core.reconcile(&snapshot);
                run_actions(&myself, state, actions).await;
            }
            BgpMsg::Restart(name) => {
                if state.stopping {
                    return Ok(());
                }
                let Some(slot) = state.slots.get_mut(&name) else {
                    return Ok(());
                };
                if slot.actor.is_some() {
                    return Ok(());
                }
                state
                    .shared
                    .metrics
                    .count_restart(&format!("bgp-session/{name}"));
                let started =
                    spawn_session(&myself, &state.shared, &name, &slot.config, &slot.routes).await;
                match started {
                    Ok(actor) => slot.actor = Some(actor),
                    Err(error) => {
                        tracing::warn!(peer = %name, %error, "bgp session restart failed");
                        schedule_restart(&myself, state, name)?;
                    }
                }
            }
            BgpMsg::PlannedStop(reply) => {
                state.stopping = true;
                let wait = state.shared.config.bgp_shutdown_wait + PLANNED_STOP_SLACK;
                let calls = state.slots.values().filter_map(|slot| {
                    let actor = slot.actor.clone()?;
                    Some(async move {
                        let _ = actor.call(SessionMsg::PlannedStop, Some(wait)).await;
                    })
                });
                futures::future::join_all(calls).await;
                let actions = state.core.withdraw_all();
                run_actions(&myself, state, actions).await;
                let _ = reply.send(());
            }
            BgpMsg::Sessions(reply) => {
                let sessions = state
                    .slots
                    .iter()
                    .filter_map(|(name, slot)| {
                        slot.actor
                            .as_ref()
                            .map(|actor| (name.clone(), actor.get_cell()))
                    })
                    .collect();
                let _ = reply.send(sessions);
            }
            BgpMsg::Panic => panic!("fault injection: bgp"),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let Some((cell, failure)) = stopped_child(&event) else {
            return Ok(());
        };
        let id = cell.get_id();
        let Some(name) = state
            .slots
            .iter()
            .find(|(_, slot)| slot.actor.as_ref().is_some_and(|a| a.get_id() == id))
            .map(|(name, _)| name.clone())
        else {
            // A session stopped on purpose (peer removed or changed).
            return Ok(());
        };
        if let Some(slot) = state.slots.get_mut(&name) {
            slot.actor = None;
        }
        if state.stopping {
            return Ok(());
        }
        tracing::warn!(peer = %name, reason = ?failure, "bgp session stopped; restarting");
        schedule_restart(&myself, state, name)
    }
}

fn schedule_restart(
    myself: &ActorRef<BgpMsg>,
    state: &mut BgpState,
    name: String,
) -> Result<(), ActorProcessingErr> {
    let Some(delay) = state.crashes.record(name.clone(), Instant::now()) else {
        // Escalate: the root restarts Bgp (and with it every session).
        return Err(format!("bgp session {name} keeps failing").into());
    };
    myself.send_after(delay, move || BgpMsg::Restart(name));
    Ok(())
}

async fn spawn_session(
    myself: &ActorRef<BgpMsg>,
    shared: &Arc<Shared>,
    name: &str,
    config: &PeerConfig,
    routes: &watch::Sender<Routes>,
) -> Result<ActorRef<SessionMsg>, ActorProcessingErr> {
    let arguments = SessionArgs {
        shared: shared.clone(),
        name: name.to_owned(),
        config: config.clone(),
        routes: routes.subscribe(),
    };
    let (actor, _) = Actor::spawn_linked(None, BgpSession, arguments, myself.get_cell()).await?;
    Ok(actor)
}

async fn run_actions(myself: &ActorRef<BgpMsg>, state: &mut BgpState, actions: Vec<BgpAction>) {
    // Sessions and routes first; status and events follow.
    let mut later = Vec::new();
    for action in actions {
        match action {
            BgpAction::Stop { name } => {
                if let Some(slot) = state.slots.remove(&name) {
                    tracing::info!(peer = %name, "bgp session removed");
                    if let Some(actor) = slot.actor {
                        actor.stop(Some("peer removed or changed".into()));
                    }
                }
                state.shared.bgp_sessions.send_modify(|sessions| {
                    sessions.remove(&name);
                });
            }
            BgpAction::Start { name, config } => {
                tracing::info!(peer = %name, address = %config.peer, "bgp session added");
                let routes = watch::Sender::new(Routes::default());
                let actor =
                    match spawn_session(myself, &state.shared, &name, &config, &routes).await {
                        Ok(actor) => Some(actor),
                        Err(error) => {
                            tracing::warn!(peer = %name, %error, "bgp session start failed");
                            None
                        }
                    };
                let failed = actor.is_none();
                state.slots.insert(
                    name.clone(),
                    Slot {
                        config: *config,
                        routes,
                        actor,
                    },
                );
                if failed {
                    let _ = schedule_restart(myself, state, name);
                }
            }
            BgpAction::Routes { name, routes } => {
                if let Some(slot) = state.slots.get(&name) {
                    tracing::debug!(peer = %name, prefixes = routes.len(), "bgp routes");
                    slot.routes.send_replace(routes);
                    if let Some(actor) = &slot.actor {
                        let _ = actor.cast(SessionMsg::Routes);
                    }
                }
            }
            other => later.push(other),
        }
    }
    for action in later {
        match action {
            BgpAction::Status(key, status) => {
                tell(state.shared.status_writer(), StatusMsg::Bgp(key, status));
            }
            BgpAction::Assigned(key, ips) => {
                tracing::info!(service = %key, ?ips, protocol = "bgp", "node assigned");
                tell(
                    state.shared.status_writer(),
                    StatusMsg::Assigned(key, ips, Protocol::Bgp),
                );
            }
            BgpAction::PeerError(error) => {
                tracing::error!(%error, "bgp peer not started");
            }
            BgpAction::Stop { .. } | BgpAction::Start { .. } | BgpAction::Routes { .. } => {}
        }
    }
    publish_announced(
        &state.shared,
        "bgp",
        state.core.services(),
        |service| {
            service
                .ips
                .iter()
                .filter(move |_| !service.peers.is_empty())
        },
        &state.shared.bgp_services,
        &mut state.metric_series,
    );
}

// ---------------------------------------------------------------------------------------------
// BgpSession

/// Messages of [`BgpSession`].
#[derive(Debug)]
pub enum SessionMsg {
    /// The routes cell changed: hand the routes to the driver.
    Routes,
    /// RFC 8326 planned stop: GRACEFUL_SHUTDOWN, wait, withdraw, Cease; answered when done.
    PlannedStop(RpcReplyPort<()>),
    /// Fault injection: panic.
    Panic,
}

/// One BGP session (and its BFD session): the driver task of `ironlb-announce`.
#[derive(Debug)]
pub struct BgpSession;

/// Its arguments.
pub struct SessionArgs {
    shared: Arc<Shared>,
    name: String,
    config: PeerConfig,
    routes: watch::Receiver<Routes>,
}

/// Its state. Dropping the handle stops the driver (Cease), so a crashed or stopped session
/// never lingers.
pub struct SessionState {
    shared: Arc<Shared>,
    name: String,
    handle: PeerHandle,
    routes: watch::Receiver<Routes>,
    _report: TaskSet,
}

impl Actor for BgpSession {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        arguments: SessionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let SessionArgs {
            shared,
            name,
            config,
            mut routes,
        } = arguments;
        let handle = driver::spawn(config.clone(), Some(shared.metrics.bgp.clone()));
        handle.set_routes(routes.borrow_and_update().clone());
        let report = tokio::spawn(report_status(
            shared.clone(),
            name.clone(),
            config.peer,
            handle.status(),
            routes.clone(),
        ));
        Ok(SessionState {
            shared,
            name,
            handle,
            routes,
            _report: TaskSet(vec![report]),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SessionMsg::Routes => {
                let routes = state.routes.borrow_and_update().clone();
                let prefixes = routes.len();
                state.handle.set_routes(routes);
                state.shared.bgp_sessions.send_modify(|sessions| {
                    if let Some(view) = sessions.get_mut(&state.name) {
                        view.prefixes = prefixes;
                    }
                });
            }
            SessionMsg::PlannedStop(reply) => {
                let mut status = state.handle.status();
                state.handle.command(Command::PlannedStop).await;
                // The driver drops its status sender when the planned stop is done.
                while status.changed().await.is_ok() {}
                let _ = reply.send(());
            }
            SessionMsg::Panic => panic!("fault injection: bgp session"),
        }
        Ok(())
    }
}

/// Copies the driver's status into [`Shared::bgp_sessions`] until the driver ends.
async fn report_status(
    shared: Arc<Shared>,
    name: String,
    peer: SocketAddr,
    mut status: watch::Receiver<driver::PeerStatus>,
    routes: watch::Receiver<Routes>,
) {
    loop {
        let view = {
            let current = status.borrow_and_update();
            SessionView {
                peer,
                state: format!("{:?}", current.state),
                last_error: current.last_error.as_ref().map(|e| error_chain(e.as_ref())),
                bfd: current.bfd.map(|s| format!("{s:?}")),
                prefixes: routes.borrow().len(),
            }
        };
        shared.bgp_sessions.send_modify(|sessions| {
            sessions.insert(name.clone(), view);
        });
        if status.changed().await.is_err() {
            return;
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
