//! The root: starts the children, restarts a crashed one with backoff, runs the planned shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::{
    stopped_child, Bgp, BgpMsg, ClusterWatch, Crashes, Http, Layer2, Layer2Msg, MembershipActor,
    MembershipMsg, Role, Shared, StatusMsg, StatusWriter, RESTART_BACKOFF_MAX,
    STATUS_SHUTDOWN_FLUSH_MAX,
};

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
    crashes: Crashes<Role>,
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
        Role::Bgp => {
            Actor::spawn_linked(name, Bgp, shared, supervisor).await?;
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
        for role in Role::ALL.into_iter().filter(|role| role.enabled(&shared)) {
            spawn_child(role, &shared, myself.get_cell()).await?;
        }
        Ok(SpeakerState {
            shared,
            crashes: Crashes::default(),
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
                state.shared.metrics.count_restart(role.as_str());
                if let Err(error) = spawn_child(role, &state.shared, myself.get_cell()).await {
                    tracing::warn!(child = role.as_str(), %error, "child restart failed");
                    schedule_restart(&myself, state, role);
                }
            }
            SpeakerMsg::Shutdown { grace, reply } => {
                state.stopping = true;
                let deadline = Instant::now() + grace;
                // Layer 2 hands over to the successors while BGP sends GRACEFUL_SHUTDOWN and
                // then withdraws (both bounded by the grace).
                let layer2 = async {
                    let Some(layer2) = state.shared.layer2() else {
                        return;
                    };
                    let result = layer2
                        .call(
                            |reply| Layer2Msg::Handover { deadline, reply },
                            Some(grace + Duration::from_millis(500)),
                        )
                        .await;
                    if let Err(error) = result {
                        tracing::warn!(%error, "handover did not complete");
                    }
                };
                let bgp = async {
                    let Some(bgp) = state.shared.bgp() else {
                        return;
                    };
                    let result = bgp
                        .call(
                            BgpMsg::PlannedStop,
                            Some(grace + Duration::from_millis(500)),
                        )
                        .await;
                    if let Err(error) = result {
                        tracing::warn!(%error, "bgp planned stop did not complete");
                    }
                };
                futures::join!(layer2, bgp);
                // The status objects this node no longer backs are deleted before it exits.
                if let Some(writer) = state.shared.status_writer() {
                    let _ = writer
                        .call(StatusMsg::FlushNow, Some(STATUS_SHUTDOWN_FLUSH_MAX))
                        .await;
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
        let Some((cell, failure)) = stopped_child(&event) else {
            return Ok(());
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
    let Some(delay) = state.crashes.record(role, Instant::now()) else {
        // The child keeps failing: restart the whole tree (its siblings may hold bad state).
        tracing::error!(
            child = role.as_str(),
            "child keeps failing; restarting the tree"
        );
        state.crashes.clear();
        myself.stop_children(Some("tree restart".into()));
        for (index, role) in Role::ALL
            .into_iter()
            .filter(|role| role.enabled(&state.shared))
            .enumerate()
        {
            let delay = RESTART_BACKOFF_MAX + Duration::from_millis(10 * index as u64);
            myself.send_after(delay, move || SpeakerMsg::Restart(role));
        }
        return;
    };
    myself.send_after(delay, move || SpeakerMsg::Restart(role));
}
