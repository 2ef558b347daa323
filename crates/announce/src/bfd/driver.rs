//! The tokio task of one BFD session: a UDP socket for control packets from the peer (port
//! 3784 single-hop, 4784 multi-hop), one for packets to it (source port 49152–65535, TTL 255),
//! a single timer, and the sans-IO [`Session`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::packet::State;
use super::session::{Action, Config, Session};
use crate::bgp::metrics::{BfdMetrics, PeerLabel};
use crate::bgp::sys;

/// UDP port of single-hop control packets (RFC 5881).
pub const SINGLE_HOP_PORT: u16 = 3784;
/// UDP port of multi-hop control packets (RFC 5883).
pub const MULTI_HOP_PORT: u16 = 4784;

/// One peer's BFD settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's address.
    pub peer: IpAddr,
    /// Our address towards the peer.
    pub local: IpAddr,
    /// RFC 5883 multi-hop instead of RFC 5881 single-hop.
    pub multihop: bool,
    /// Multi-hop only: lowest TTL accepted (`minimumTtl`); single-hop always requires 255.
    pub minimum_ttl: u8,
    /// Timers.
    pub session: Config,
    /// `echoMode`: not supported, refused by [`spawn`].
    pub echo_mode: bool,
}

/// BFD could not start.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The profile asks for echo mode, which ironlb does not implement.
    #[error("bfd peer {peer}: echo mode is not supported")]
    EchoModeNotSupported {
        /// The peer.
        peer: IpAddr,
    },
    /// A socket could not be set up.
    #[error("bfd peer {peer}: {operation}")]
    Socket {
        /// The peer.
        peer: IpAddr,
        /// What failed.
        operation: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Starts the BFD session; the watch carries its state.
pub async fn spawn(
    config: PeerConfig,
    metrics: Option<Arc<BfdMetrics>>,
) -> Result<(watch::Receiver<State>, JoinHandle<()>), Error> {
    let peer = config.peer;
    if config.echo_mode {
        return Err(Error::EchoModeNotSupported { peer });
    }
    let socket_error = |operation| {
        move |source| Error::Socket {
            peer,
            operation,
            source,
        }
    };
    let port = if config.multihop {
        MULTI_HOP_PORT
    } else {
        SINGLE_HOP_PORT
    };
    let ipv6 = config.local.is_ipv6();
    let receiver = UdpSocket::bind(SocketAddr::new(config.local, port))
        .await
        .map_err(socket_error("bind receive socket"))?;
    // RFC 5881 §5 (GTSM): single-hop packets must arrive with TTL 255.
    let ttl_min = if config.multihop {
        config.minimum_ttl
    } else {
        255
    };
    sys::set_min_ttl(&receiver, ipv6, ttl_min).map_err(socket_error("set minimum ttl"))?;
    let sender = bind_source_port(config.local)
        .await
        .map_err(socket_error("bind send socket"))?;
    sys::set_ttl(&sender, ipv6, 255).map_err(socket_error("set ttl"))?;
    sender
        .connect(SocketAddr::new(peer, port))
        .await
        .map_err(socket_error("connect"))?;

    let discriminator = rand::random::<u32>().max(1);
    let session = Session::new(
        config.session.clone(),
        discriminator,
        rand::random(),
        std::time::Instant::now(),
    );
    let (state_tx, state_rx) = watch::channel(State::Down);
    let label = PeerLabel {
        peer: peer.to_string(),
    };
    let task = tokio::spawn(run(
        session, receiver, sender, peer, state_tx, metrics, label,
    ));
    Ok((state_rx, task))
}

/// RFC 5881 §4: the source port is in 49152–65535.
async fn bind_source_port(local: IpAddr) -> io::Result<UdpSocket> {
    let start = 49152 + rand::random::<u16>() % 16384;
    let mut last_error = io::Error::new(io::ErrorKind::AddrInUse, "no free source port");
    // Bounded: at most 64 attempts.
    for offset in 0..64u16 {
        let port = 49152 + (start - 49152 + offset) % 16384;
        match UdpSocket::bind(SocketAddr::new(local, port)).await {
            Ok(socket) => return Ok(socket),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

async fn run(
    mut session: Session,
    receiver: UdpSocket,
    sender: UdpSocket,
    peer: IpAddr,
    state_tx: watch::Sender<State>,
    metrics: Option<Arc<BfdMetrics>>,
    label: PeerLabel,
) {
    // The session's clock is std's Instant; tokio's Instant converts losslessly.
    let mut buf = [0u8; 512];
    loop {
        while let Some(action) = session.poll_action() {
            match action {
                Action::Send(bytes) => {
                    if let Err(error) = sender.send(&bytes).await {
                        tracing::debug!(%peer, %error, "bfd send failed");
                    } else if let Some(metrics) = &metrics {
                        metrics.control_packet_output.get_or_create(&label).inc();
                    }
                }
                Action::StateChange {
                    from,
                    to,
                    diagnostic,
                } => {
                    tracing::info!(%peer, ?from, ?to, ?diagnostic, "bfd state transition");
                    if let Some(metrics) = &metrics {
                        let up = i64::from(to == State::Up);
                        metrics.session_up.get_or_create(&label).set(up);
                        if to == State::Up {
                            metrics.session_up_events.get_or_create(&label).inc();
                        } else if from == State::Up {
                            metrics.session_down_events.get_or_create(&label).inc();
                        }
                    }
                    state_tx.send_replace(to);
                }
            }
        }
        let deadline = session.poll_timeout().map_or_else(
            || Instant::now() + Duration::from_secs(3600),
            Instant::from_std,
        );
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                session.handle_timeout(std::time::Instant::now());
            }
            received = receiver.recv_from(&mut buf) => {
                let Ok((length, from)) = received else { continue };
                if from.ip() != peer {
                    continue;
                }
                let datagram = buf.get(..length).unwrap_or_default();
                match session.handle_datagram(std::time::Instant::now(), datagram) {
                    Ok(()) => {
                        if let Some(metrics) = &metrics {
                            metrics.control_packet_input.get_or_create(&label).inc();
                        }
                    }
                    Err(reason) => tracing::debug!(%peer, %reason, "bfd packet dropped"),
                }
            }
            () = state_tx.closed() => return,
        }
    }
}
