//! The tokio task of one BGP peer: it owns the TCP connection (source address, TTL, TCP MD5),
//! turns socket reads, route changes, BFD state and the one timer into [`Input`]s, and runs the
//! [`Action`]s of the sans-IO [`Session`].

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::metrics::{BfdMetrics, BgpMetrics, PeerLabel};
use super::rib::Routes;
use super::session::{Action, Input, PeerAsn, Session, SessionConfig, State};
use super::sys;
use crate::bfd;

/// Commands queued to a peer task; a handful at most.
const COMMAND_CHANNEL_LEN: usize = 4;
/// Bytes read from the socket at once.
const READ_CHUNK_LEN: usize = 64 * 1024;

/// One peer's configuration (from `BGPPeer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// Session parameters.
    pub session: SessionConfig,
    /// Peer address and port (`peerAddress`, `peerPort`).
    pub peer: SocketAddr,
    /// `sourceAddress`: must be a local address.
    pub source: Option<IpAddr>,
    /// TCP MD5 password (`password` / `passwordSecret`, resolved).
    pub password: Option<String>,
    /// `ebgpMultiHop`: TTL 255 towards external peers instead of 1.
    pub ebgp_multihop: bool,
    /// BFD timers (`bfdProfile`), single-hop unless `ebgp_multihop`.
    pub bfd: Option<bfd::session::Config>,
}

/// A per-peer error, reported in the peer's status.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// `sourceAddress` is not an address of this node.
    #[error("bgp peer {peer}: source address {source_address} is not local")]
    SourceAddressNotLocal {
        /// The peer.
        peer: SocketAddr,
        /// The configured source address.
        source_address: IpAddr,
    },
    /// The TCP MD5 signature option could not be set.
    #[error("bgp peer {peer}: cannot set TCP MD5 password")]
    Md5 {
        /// The peer.
        peer: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The TCP connection failed.
    #[error("bgp peer {peer}: connect")]
    Connect {
        /// The peer.
        peer: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// BFD could not start.
    #[error(transparent)]
    Bfd(#[from] bfd::driver::Error),
}

/// What a peer task reports.
#[derive(Clone, Debug)]
pub struct PeerStatus {
    /// The session state.
    pub state: State,
    /// The last error, until the session is Established again.
    pub last_error: Option<Arc<PeerError>>,
    /// The BFD session state, when BFD runs.
    pub bfd: Option<bfd::packet::State>,
}

/// Capacity of the event broadcast; slow listeners lose the oldest events.
const EVENT_CHANNEL_LEN: usize = 64;

/// Something that happened on a peer, for logs and tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// The BGP session changed state.
    StateChange {
        /// Old state.
        from: State,
        /// New state.
        to: State,
    },
    /// The peer sent a NOTIFICATION.
    NotificationReceived(super::message::Notification),
    /// We sent a NOTIFICATION.
    NotificationSent(super::message::Notification),
    /// The BFD session changed state.
    BfdState(bfd::packet::State),
    /// A connection attempt failed.
    ConnectFailed(String),
}

/// Commands to a peer task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Cease and stop at once.
    Stop,
    /// RFC 8326 planned stop: GRACEFUL_SHUTDOWN, wait, withdraw, Cease.
    PlannedStop,
}

/// The handle of a running peer task.
#[derive(Debug)]
pub struct PeerHandle {
    routes: watch::Sender<Routes>,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<PeerStatus>,
    events: tokio::sync::broadcast::Sender<PeerEvent>,
    task: JoinHandle<()>,
}

impl PeerHandle {
    /// Subscribes to the peer's events.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    /// Replaces the routes advertised to this peer.
    pub fn set_routes(&self, routes: impl Into<Routes>) {
        self.routes.send_replace(routes.into());
    }

    /// The status watch.
    pub fn status(&self) -> watch::Receiver<PeerStatus> {
        self.status.clone()
    }

    /// Sends a command; ignored if the task has ended.
    pub async fn command(&self, command: Command) {
        let _ = self.commands.send(command).await;
    }

    /// Waits for the task to end (after a stop).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Metrics shared by all peers.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// BGP metrics.
    pub bgp: Arc<BgpMetrics>,
    /// BFD metrics.
    pub bfd: Arc<BfdMetrics>,
}

/// Starts the peer task; it connects at once.
pub fn spawn(config: PeerConfig, metrics: Option<Metrics>) -> PeerHandle {
    let (routes_tx, routes_rx) = watch::channel(Routes::default());
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_CHANNEL_LEN);
    let (status_tx, status_rx) = watch::channel(PeerStatus {
        state: State::Idle,
        last_error: None,
        bfd: None,
    });
    let (events_tx, _) = tokio::sync::broadcast::channel(EVENT_CHANNEL_LEN);
    let driver = Driver {
        events: events_tx.clone(),
        session: Session::new(config.session.clone()),
        label: PeerLabel {
            peer: config.peer.to_string(),
        },
        config,
        metrics,
        status: status_tx,
        writer: None,
        reader: None,
        connecting: None,
        bfd_state: None,
        bfd_task: None,
        updates_reported: 0,
    };
    let task = tokio::spawn(driver.run(routes_rx, commands_rx));
    PeerHandle {
        routes: routes_tx,
        commands: commands_tx,
        status: status_rx,
        events: events_tx,
        task,
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<TcpStream, PeerError>> + Send>>;

struct Driver {
    session: Session,
    config: PeerConfig,
    label: PeerLabel,
    metrics: Option<Metrics>,
    status: watch::Sender<PeerStatus>,
    events: tokio::sync::broadcast::Sender<PeerEvent>,
    writer: Option<OwnedWriteHalf>,
    reader: Option<OwnedReadHalf>,
    connecting: Option<Connecting>,
    bfd_state: Option<watch::Receiver<bfd::packet::State>>,
    bfd_task: Option<JoinHandle<()>>,
    updates_reported: u64,
}

impl Driver {
    async fn run(
        mut self,
        mut routes: watch::Receiver<Routes>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        self.session.handle(std::time::Instant::now(), Input::Start);
        let mut read_buf = BytesMut::with_capacity(READ_CHUNK_LEN);
        loop {
            if self.run_actions().await {
                break;
            }
            self.report();
            let deadline = self.session.poll_timeout().map_or_else(
                || Instant::now() + Duration::from_secs(3600),
                Instant::from_std,
            );
            let input = tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    self.session.handle_timeout(std::time::Instant::now());
                    continue;
                }
                connected = poll_connecting(&mut self.connecting) => {
                    self.connecting = None;
                    match connected {
                        Ok(stream) => self.connected(stream).await,
                        Err(error) => {
                            tracing::debug!(peer = %self.config.peer, %error, "connect failed");
                            let _ = self.events.send(PeerEvent::ConnectFailed(error.to_string()));
                            self.set_error(error);
                            Input::TcpFailed
                        }
                    }
                }
                read = read_some(&mut self.reader, &mut read_buf) => match read {
                    Ok(0) | Err(_) => Input::TcpFailed,
                    Ok(_) => Input::Received(read_buf.split().to_vec()),
                },
                changed = routes.changed() => {
                    if changed.is_err() {
                        // The handle is gone: stop as if asked.
                        Input::Stop
                    } else {
                        Input::SetRoutes(routes.borrow_and_update().clone())
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::PlannedStop) => Input::PlannedStop,
                    Some(Command::Stop) | None => Input::Stop,
                },
                current = bfd_changed(&mut self.bfd_state) => {
                    let previous = self.status.borrow().bfd;
                    self.status.send_modify(|status| status.bfd = Some(current));
                    let _ = self.events.send(PeerEvent::BfdState(current));
                    // RFC 5882 §4.3: only the loss of an Up session tears BGP down.
                    if previous != Some(bfd::packet::State::Up) || current == bfd::packet::State::Up {
                        continue;
                    }
                    Input::BfdDown
                }
            };
            let stop = input == Input::Stop;
            self.session.handle(std::time::Instant::now(), input);
            if stop {
                let _ = self.run_actions().await;
                break;
            }
        }
        self.report();
        if let Some(task) = self.bfd_task.take() {
            task.abort();
        }
    }

    /// Runs queued actions; true when the session has finished a planned stop.
    async fn run_actions(&mut self) -> bool {
        let mut stopped = false;
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Connect => {
                    self.connecting = Some(Box::pin(connect(self.config.clone())));
                }
                Action::Send(bytes) => {
                    if let Some(writer) = &mut self.writer {
                        if writer.write_all(&bytes).await.is_err() {
                            self.writer = None;
                            self.reader = None;
                            self.session
                                .handle(std::time::Instant::now(), Input::TcpFailed);
                        }
                    }
                }
                Action::Close => {
                    if let Some(mut writer) = self.writer.take() {
                        let _ = writer.shutdown().await;
                    }
                    self.reader = None;
                    self.connecting = None;
                }
                Action::StateChange { from, to } => {
                    tracing::info!(peer = %self.config.peer, ?from, ?to, "bgp state transition");
                    let _ = self.events.send(PeerEvent::StateChange { from, to });
                    self.status.send_modify(|status| {
                        status.state = to;
                        if to == State::Established {
                            status.last_error = None;
                        }
                    });
                }
                Action::NotificationReceived(notification) => {
                    tracing::warn!(peer = %self.config.peer, %notification, data = ?notification.data, "notification received");
                    let _ = self
                        .events
                        .send(PeerEvent::NotificationReceived(notification));
                }
                Action::NotificationSent(notification) => {
                    tracing::warn!(peer = %self.config.peer, %notification, "notification sent");
                    let _ = self.events.send(PeerEvent::NotificationSent(notification));
                }
                Action::Stopped => stopped = true,
            }
        }
        stopped
    }

    async fn connected(&mut self, stream: TcpStream) -> Input {
        let _ = stream.set_nodelay(true);
        let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) else {
            return Input::TcpFailed;
        };
        if let (Some(profile), None) = (&self.config.bfd, &self.bfd_task) {
            let bfd_config = bfd::driver::PeerConfig {
                peer: remote.ip(),
                local: local.ip(),
                multihop: self.config.ebgp_multihop,
                minimum_ttl: 254,
                session: profile.clone(),
                echo_mode: false,
            };
            let metrics = self.metrics.as_ref().map(|metrics| metrics.bfd.clone());
            match bfd::driver::spawn(bfd_config, metrics).await {
                Ok((state, task)) => {
                    self.bfd_state = Some(state);
                    self.bfd_task = Some(task);
                }
                Err(error) => self.set_error(PeerError::Bfd(error)),
            }
        }
        let (reader, writer) = stream.into_split();
        self.reader = Some(reader);
        self.writer = Some(writer);
        let (local_v4, local_v6, local_v6_link_local) = interface_addresses(local.ip());
        Input::TcpConnected {
            local,
            remote,
            local_v6,
            local_v6_link_local,
            local_v4,
        }
    }

    fn set_error(&self, error: PeerError) {
        let error = Arc::new(error);
        self.status
            .send_modify(|status| status.last_error = Some(error));
    }

    fn report(&mut self) {
        let Some(metrics) = &self.metrics else { return };
        let stats = self.session.stats();
        let up = i64::from(self.session.state() == State::Established);
        metrics.bgp.session_up.get_or_create(&self.label).set(up);
        let new_updates = stats.updates_sent.saturating_sub(self.updates_reported);
        metrics
            .bgp
            .updates
            .get_or_create(&self.label)
            .inc_by(new_updates);
        self.updates_reported = stats.updates_sent;
        let announced = i64::try_from(stats.advertised_prefixes).unwrap_or(i64::MAX);
        metrics
            .bgp
            .announced_prefixes
            .get_or_create(&self.label)
            .set(announced);
        let pending = i64::try_from(stats.pending_prefixes).unwrap_or(i64::MAX);
        metrics
            .bgp
            .pending_prefixes
            .get_or_create(&self.label)
            .set(pending);
    }
}

async fn poll_connecting(connecting: &mut Option<Connecting>) -> Result<TcpStream, PeerError> {
    match connecting {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

async fn read_some(reader: &mut Option<OwnedReadHalf>, buf: &mut BytesMut) -> io::Result<usize> {
    match reader {
        Some(reader) => {
            buf.reserve(READ_CHUNK_LEN);
            reader.read_buf(buf).await
        }
        None => std::future::pending().await,
    }
}

/// Waits for the BFD state watch to change; returns the new state.
async fn bfd_changed(
    state: &mut Option<watch::Receiver<bfd::packet::State>>,
) -> bfd::packet::State {
    let Some(receiver) = state else {
        return std::future::pending().await;
    };
    if receiver.changed().await.is_err() {
        return std::future::pending().await;
    }
    *receiver.borrow_and_update()
}

/// Opens the TCP connection: MD5 key and TTL before the SYN, bound to the source address.
async fn connect(config: PeerConfig) -> Result<TcpStream, PeerError> {
    let peer = config.peer;
    let socket = match peer {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|source| PeerError::Connect { peer, source })?;
    if let Some(password) = &config.password {
        sys::set_tcp_md5sig(&socket, peer, password.as_bytes())
            .map_err(|source| PeerError::Md5 { peer, source })?;
    }
    let external = match config.session.peer_asn {
        PeerAsn::Fixed(asn) => asn != config.session.local_asn,
        PeerAsn::External => true,
        PeerAsn::Internal => false,
    };
    if external {
        // As FRR: TTL 1 for directly connected external peers, 255 with ebgp-multihop.
        let ttl = if config.ebgp_multihop { 255 } else { 1 };
        sys::set_ttl(&socket, peer.is_ipv6(), ttl)
            .map_err(|source| PeerError::Connect { peer, source })?;
    }
    if let Some(source_address) = config.source {
        socket
            .bind(SocketAddr::new(source_address, 0))
            .map_err(|error| {
                if error.kind() == io::ErrorKind::AddrNotAvailable {
                    PeerError::SourceAddressNotLocal {
                        peer,
                        source_address,
                    }
                } else {
                    PeerError::Connect {
                        peer,
                        source: error,
                    }
                }
            })?;
    }
    match tokio::time::timeout(config.session.connect_timeout, socket.connect(peer)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(PeerError::Connect { peer, source }),
        Err(_) => Err(PeerError::Connect {
            peer,
            source: io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
        }),
    }
}

/// The addresses of the interface that holds `local`: an IPv4, a global IPv6 and a link-local
/// IPv6 address, used as next hops of the other family.
fn interface_addresses(local: IpAddr) -> (Option<Ipv4Addr>, Option<Ipv6Addr>, Option<Ipv6Addr>) {
    let interfaces = pnet::datalink::interfaces();
    let Some(interface) = interfaces
        .iter()
        .find(|i| i.ips.iter().any(|net| net.ip() == local))
    else {
        return (None, None, None);
    };
    let mut v4 = None;
    let mut v6 = None;
    let mut v6_link_local = None;
    for network in &interface.ips {
        match network.ip() {
            IpAddr::V4(address) => v4 = v4.or(Some(address)),
            IpAddr::V6(address) if address.segments()[0] & 0xffc0 == 0xfe80 => {
                v6_link_local = v6_link_local.or(Some(address));
            }
            IpAddr::V6(address) => v6 = v6.or(Some(address)),
        }
    }
    (v4, v6, v6_link_local)
}
