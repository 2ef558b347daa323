//! `Membership`: the gossip driver, its view published to the other actors.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironlb_gossip::{Keyring, Liveness, MemberId, Membership, NodeName};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;

use super::{node_seeds, tell, Layer2Msg, Shared, TaskSet, SETTLE_EXTRA_MAX, SETTLE_POLL};
use crate::decide::MemberView;

/// Messages of [`MembershipActor`].
#[derive(Debug)]
pub enum MembershipMsg {
    /// Publish these claims.
    Claims(BTreeSet<IpAddr>),
    /// The start-up settle is over: stop publishing `leaving` (unless a handover asked for it).
    Settled,
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
    /// A handover asked for `leaving`.
    leaving: bool,
    _tasks: TaskSet,
}

impl Actor for MembershipActor {
    type Msg = MembershipMsg;
    type State = MembershipState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let gossip = shared
            .config
            .gossip
            .clone()
            .ok_or("membership without gossip settings")?;
        let keyring = match &gossip.secret {
            Some(secret) => Keyring::new(secret)?,
            None => Keyring::insecure(),
        };
        let socket = tokio::net::UdpSocket::bind(gossip.bind).await?;
        let me = MemberId::new(
            NodeName::new(shared.config.node.clone())?,
            ironlb_gossip::driver::boot_incarnation(),
            gossip.advertise,
        );
        let config = ironlb_gossip::Config::lan(gossip.cluster.clone());
        let mut membership = Membership::new(
            config,
            me,
            keyring,
            ironlb_gossip::driver::os_seed(),
            Instant::now(),
        )?;
        membership.use_metrics(shared.metrics.gossip.clone());
        let mut seeds = gossip.seeds.clone();
        seeds.extend(node_seeds(
            &shared.snapshot.borrow(),
            &shared.config.node,
            gossip.bind.port(),
        ));
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
        // Until it has settled, this node publishes `leaving`: the others must not elect it
        // for an orphaned IP while it announces nothing yet.
        handle.set_leaving(true).await?;
        let settle = tokio::spawn(settle(myself.clone(), shared.clone(), gossip.settle));
        let driver_task = driver.task;
        let abort_driver = tokio::spawn(async move {
            let _ = driver_task.await;
        });
        Ok(MembershipState {
            handle,
            leaving: false,
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
            MembershipMsg::Leaving(leaving) => {
                state.leaving = leaving;
                state.handle.set_leaving(leaving).await?;
            }
            MembershipMsg::Settled => {
                if !state.leaving {
                    state.handle.set_leaving(false).await?;
                }
            }
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
        let mut states_missing = 0;
        for member in snapshots {
            let entry = view.entry(member.id.name.as_str().to_owned()).or_default();
            if matches!(member.liveness, Liveness::Alive | Liveness::Suspect) {
                entry.active = true;
                match member.state {
                    Some(state) => {
                        entry.leaving = state.leaving;
                        entry.claims = state.claims;
                    }
                    None => states_missing += 1,
                }
            }
        }
        shared.member_states_missing.send_replace(states_missing);
        shared.members.send_replace(Some(view));
        tell(shared.layer2(), Layer2Msg::Changed);
    }
}

/// Marks the gossip settled: after `minimum`, once every other active member's state (its
/// claims) is known and at least one other member is active (unless the cluster has no other
/// Node), or after [`SETTLE_EXTRA_MAX`] more at the latest. A restarted node that elected
/// before knowing the claims would take back an IP another node holds.
async fn settle(myself: ActorRef<MembershipMsg>, shared: Arc<Shared>, minimum: Duration) {
    tokio::time::sleep(minimum).await;
    let deadline = tokio::time::Instant::now() + SETTLE_EXTRA_MAX;
    loop {
        let others_expected = shared
            .snapshot
            .borrow()
            .nodes
            .keys()
            .any(|name| name != &shared.config.node);
        let others_active = shared.members.borrow().as_ref().is_some_and(|view| {
            view.iter()
                .any(|(name, member)| name != &shared.config.node && member.active)
        });
        let complete = *shared.member_states_missing.borrow() == 0;
        if (complete && (others_active || !others_expected))
            || tokio::time::Instant::now() >= deadline
        {
            break;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
    shared.settled.send_replace(true);
    let _ = myself.cast(MembershipMsg::Settled);
    tell(shared.layer2(), Layer2Msg::Changed);
}
