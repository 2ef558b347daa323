//! The thin tokio driver: owns the UDP socket and the one timer, feeds [`Membership`], runs its
//! actions. Behind the cargo feature `driver` (on by default); the core builds without tokio.
//!
//! ```text
//!  GossipHandle ──Command (mpsc, 64)──►┐
//!                                      ├─► task: select { socket recv, command, sleep_until(poll_timeout) }
//!  events ◄──MemberEvent (mpsc, 1024)──┘        │ handle(now, input) → poll_action → send_to / event
//!                                         UdpSocket (default port 7946)
//! ```

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::membership::{Action, Input, MemberEvent, MemberSnapshot, Membership};
use crate::seal::Keyring;

/// Commands queued to the driver before it applies back-pressure.
pub const COMMANDS_MAX: usize = 64;
/// Events buffered for the consumer (MetalLB buffers its member-event channel to 1024 too).
pub const EVENTS_MAX: usize = 1024;
/// Most datagrams drained from the socket before a deadline is handled.
const RECEIVE_DRAIN_MAX: usize = 256;
/// Largest datagram read (anything larger than the MTU is dropped by the core anyway).
const RECEIVE_BYTES_MAX: usize = 65_536;

/// The driver's source of `now`, so a simulator can substitute its own time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// An incarnation for a fresh start: milliseconds since the Unix epoch, so a restart is always
/// newer than the life before it (as long as the wall clock does not jump back across a restart).
pub fn boot_incarnation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
}

/// 64 bits from the OS for [`Membership::new`]'s seed.
pub fn os_seed() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    // The OS RNG does not fail on Linux; fall back to the clock rather than panic.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        return boot_incarnation() ^ 0x9e37_79b9_7f4a_7c15;
    }
    u64::from_le_bytes(bytes)
}

enum Command {
    Join(Vec<SocketAddr>),
    SetClaims(BTreeSet<IpAddr>),
    SetLeaving(bool),
    SetKeyring(Keyring),
    Members(oneshot::Sender<Vec<MemberSnapshot>>),
    Leave(oneshot::Sender<()>),
}

/// The driver stopped (its task ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gossip driver has stopped")]
pub struct DriverStopped;

/// Talks to a running driver. Dropping every handle stops the driver (without a graceful leave).
#[derive(Debug, Clone)]
pub struct GossipHandle {
    commands: mpsc::Sender<Command>,
}

impl GossipHandle {
    async fn send(&self, command: Command) -> Result<(), DriverStopped> {
        self.commands.send(command).await.map_err(|_| DriverStopped)
    }

    /// Announces to more seeds (for example after the speaker pod list changed).
    pub async fn join(&self, seeds: Vec<SocketAddr>) -> Result<(), DriverStopped> {
        self.send(Command::Join(seeds)).await
    }

    /// Publishes our claimed service IPs (at most [`crate::CLAIMS_MAX`]; more are ignored).
    pub async fn set_claims(&self, claims: BTreeSet<IpAddr>) -> Result<(), DriverStopped> {
        self.send(Command::SetClaims(claims)).await
    }

    /// Publishes the `leaving` flag.
    pub async fn set_leaving(&self, leaving: bool) -> Result<(), DriverStopped> {
        self.send(Command::SetLeaving(leaving)).await
    }

    /// Rotates keys.
    pub async fn set_keyring(&self, keyring: Keyring) -> Result<(), DriverStopped> {
        self.send(Command::SetKeyring(keyring)).await
    }

    /// The members as the core sees them now.
    pub async fn members(&self) -> Result<Vec<MemberSnapshot>, DriverStopped> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Members(reply)).await?;
        answer.await.map_err(|_| DriverStopped)
    }

    /// Leaves gracefully; returns once the goodbye datagrams are sent. The driver then stops.
    pub async fn leave(&self) -> Result<(), DriverStopped> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Leave(reply)).await?;
        answer.await.map_err(|_| DriverStopped)
    }
}

/// A running driver.
#[derive(Debug)]
pub struct Driver {
    /// Commands.
    pub handle: GossipHandle,
    /// Membership events, in order.
    pub events: mpsc::Receiver<MemberEvent>,
    /// The task; abort it to stop abruptly.
    pub task: JoinHandle<()>,
}

/// Fault injection for benchmarks and tests. The defaults inject nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriverOptions {
    /// Drop this many received datagrams per thousand, at random, before the core sees them. (The
    /// benchmark uses it for packet loss because this kernel has no `netem`.)
    pub receive_loss_per_mille: u32,
    /// Seed of the loss RNG.
    pub loss_seed: u64,
}

/// Spawns the driver task for `membership` on `socket`, announcing to `seeds` at once.
pub fn spawn(
    membership: Membership,
    socket: UdpSocket,
    seeds: Vec<SocketAddr>,
    clock: Arc<dyn Clock>,
) -> Driver {
    spawn_with_options(membership, socket, seeds, clock, DriverOptions::default())
}

/// [`spawn`], with fault injection.
pub fn spawn_with_options(
    membership: Membership,
    socket: UdpSocket,
    seeds: Vec<SocketAddr>,
    clock: Arc<dyn Clock>,
    options: DriverOptions,
) -> Driver {
    let (commands_tx, commands_rx) = mpsc::channel(COMMANDS_MAX);
    let (events_tx, events_rx) = mpsc::channel(EVENTS_MAX);
    let task = tokio::spawn(run(
        membership,
        socket,
        seeds,
        clock,
        options,
        commands_rx,
        events_tx,
    ));
    Driver {
        handle: GossipHandle {
            commands: commands_tx,
        },
        events: events_rx,
        task,
    }
}

async fn run(
    mut membership: Membership,
    socket: UdpSocket,
    seeds: Vec<SocketAddr>,
    clock: Arc<dyn Clock>,
    options: DriverOptions,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<MemberEvent>,
) {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let mut loss_rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.loss_seed);
    let mut buffer = vec![0u8; RECEIVE_BYTES_MAX];
    membership.handle(clock.now(), Input::Join(seeds));
    loop {
        flush(&mut membership, &socket, &events).await;
        let deadline = membership.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            // Datagrams first: after a scheduling stall, an ack already waiting in the socket must
            // be seen before a probe timer declares its sender suspect.
            biased;
            received = socket.recv_from(&mut buffer) => match received {
                Ok((length, from)) => {
                    if options.receive_loss_per_mille > 0 && loss_rng.next_u32() % 1000 < options.receive_loss_per_mille {
                        continue;
                    }
                    let bytes = buffer.get(..length).unwrap_or_default().to_vec();
                    membership.handle(clock.now(), Input::Datagram { from, bytes });
                }
                Err(error) => tracing::debug!(%error, "gossip receive failed"),
            },
            command = commands.recv() => {
                let Some(command) = command else { return };
                let now = clock.now();
                match command {
                    Command::Join(seeds) => membership.handle(now, Input::Join(seeds)),
                    Command::SetClaims(claims) => {
                        if let Err(error) = membership.set_claims(now, claims) {
                            // The previous claims stay published.
                            tracing::warn!(%error, "gossip: claims not published");
                        }
                    }
                    Command::SetLeaving(leaving) => membership.handle(now, Input::SetLeaving(leaving)),
                    Command::SetKeyring(keyring) => membership.set_keyring(keyring),
                    Command::Members(reply) => {
                        let _ = reply.send(membership.members());
                    }
                    Command::Leave(reply) => {
                        membership.handle(now, Input::Leave);
                        flush(&mut membership, &socket, &events).await;
                        let _ = reply.send(());
                        return;
                    }
                }
            }
            () = sleep => {
                // Drain what arrived while we were not scheduled before acting on the deadline.
                for _ in 0..RECEIVE_DRAIN_MAX {
                    match socket.try_recv_from(&mut buffer) {
                        Ok((length, from)) => {
                            if options.receive_loss_per_mille > 0
                                && loss_rng.next_u32() % 1000 < options.receive_loss_per_mille
                            {
                                continue;
                            }
                            let bytes = buffer.get(..length).unwrap_or_default().to_vec();
                            membership.handle(clock.now(), Input::Datagram { from, bytes });
                        }
                        Err(_) => break,
                    }
                }
                membership.handle(clock.now(), Input::Timeout);
            }
        }
    }
}

async fn flush(
    membership: &mut Membership,
    socket: &UdpSocket,
    events: &mpsc::Sender<MemberEvent>,
) {
    while let Some(action) = membership.poll_action() {
        match action {
            Action::Send { to, bytes } => {
                if let Err(error) = socket.send_to(&bytes, to).await {
                    tracing::debug!(%error, %to, "gossip send failed");
                }
            }
            Action::Event(event) => {
                // Never let a slow consumer stall failure detection: drop and say so.
                if events.try_send(event).is_err() {
                    tracing::warn!("gossip event channel full or closed, event dropped");
                }
            }
        }
    }
}
