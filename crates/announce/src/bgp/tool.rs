//! `ironlb bgp-announce`: keep one BGP session up and advertise fixed prefixes until stopped.
//! SIGTERM (or Ctrl-C) is a planned stop (RFC 8326). For manual testing and interop tests.
//!
//! The flag parsing of [`ToolConfig::from_args`] serves the `bgp-speaker` binary of this crate
//! (used by the interop tests and the benchmark); `ironlb bgp-announce` parses the same flags
//! with clap and fills [`ToolConfig`] through the `parse_*` functions here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

use super::driver::{self, Command, Metrics, PeerConfig, PeerEvent};
use super::message::{Community, LargeCommunity};
use super::metrics::{BfdMetrics, BgpMetrics};
use super::rib::RouteAttributes;
use super::session::{PeerAsn, SessionConfig};
use crate::bfd;

/// A bad flag or value.
#[non_exhaustive]
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// A flag ironlb does not know.
    #[error("unknown flag {flag}")]
    UnknownFlag {
        /// The flag.
        flag: String,
    },
    /// A flag without its value.
    #[error("flag {flag} needs a value")]
    MissingValue {
        /// The flag.
        flag: String,
    },
    /// A value that does not parse.
    #[error("flag {flag}: invalid value {value:?}: {reason}")]
    InvalidValue {
        /// The flag.
        flag: String,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A required flag is missing.
    #[error("missing required flag {flag}")]
    Required {
        /// The flag.
        flag: &'static str,
    },
}

/// A community flag value: `AA:NN`, `large:A:B:C` or a well-known name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CommunityValue {
    /// RFC 1997.
    Standard(Community),
    /// RFC 8092.
    Large(LargeCommunity),
}

/// Parses a community: `AA:NN`, `large:A:B:C`, or one of `no-export`, `no-advertise`,
/// `no-export-subconfed`, `no-peer`, `blackhole`, `graceful-shutdown`.
pub fn parse_community(value: &str) -> Result<CommunityValue, String> {
    let well_known = match value.to_ascii_lowercase().as_str() {
        "no-export" | "no_export" => Some(Community::NO_EXPORT),
        "no-advertise" | "no_advertise" => Some(Community::NO_ADVERTISE),
        "no-export-subconfed" | "no_export_subconfed" | "local-as" => {
            Some(Community::NO_EXPORT_SUBCONFED)
        }
        "no-peer" | "no_peer" => Some(Community::NO_PEER),
        "blackhole" => Some(Community::BLACKHOLE),
        "graceful-shutdown" | "graceful_shutdown" => Some(Community::GRACEFUL_SHUTDOWN),
        _ => None,
    };
    if let Some(community) = well_known {
        return Ok(CommunityValue::Standard(community));
    }
    if let Some(large) = value.strip_prefix("large:") {
        let parts: Vec<&str> = large.split(':').collect();
        let [global, local1, local2] = parts.as_slice() else {
            return Err("a large community is large:A:B:C".to_string());
        };
        let number = |part: &str| part.parse::<u32>().map_err(|error| error.to_string());
        return Ok(CommunityValue::Large(LargeCommunity {
            global: number(global)?,
            local1: number(local1)?,
            local2: number(local2)?,
        }));
    }
    let Some((high, low)) = value.split_once(':') else {
        return Err("a community is AA:NN, large:A:B:C or a well-known name".to_string());
    };
    let half = |part: &str| part.parse::<u16>().map_err(|error| error.to_string());
    Ok(CommunityValue::Standard(Community(
        (u32::from(half(high)?) << 16) | u32::from(half(low)?),
    )))
}

/// Parses `--peer-asn`: a number, `internal` or `external`.
pub fn parse_peer_asn(value: &str) -> Result<PeerAsn, String> {
    match value {
        "internal" => Ok(PeerAsn::Internal),
        "external" => Ok(PeerAsn::External),
        number => number
            .parse()
            .map(PeerAsn::Fixed)
            .map_err(|error| error.to_string()),
    }
}

/// Everything the tool needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolConfig {
    /// `--peer`.
    pub peer: IpAddr,
    /// `--peer-port` (179).
    pub peer_port: u16,
    /// `--peer-asn`.
    pub peer_asn: PeerAsn,
    /// `--asn`.
    pub asn: u32,
    /// `--source`.
    pub source: Option<IpAddr>,
    /// `--hold-time` seconds (90).
    pub hold_time_secs: u16,
    /// `--keepalive` seconds (a third of the hold time).
    pub keepalive_secs: Option<u16>,
    /// `--bfd`: 300 ms × 3.
    pub bfd: bool,
    /// `--bfd-interval-ms` (300).
    pub bfd_interval_ms: u64,
    /// `--md5`.
    pub md5_password: Option<String>,
    /// `--prefix`, repeatable.
    pub prefixes: Vec<IpNet>,
    /// `--community`, repeatable, on every prefix.
    pub communities: Vec<CommunityValue>,
    /// `--local-pref`.
    pub local_pref: Option<u32>,
    /// `--graceful-restart SECS`: advertise graceful restart with this restart time.
    pub graceful_restart_secs: Option<u16>,
    /// `--ebgp-multihop`.
    pub ebgp_multihop: bool,
    /// `--router-id`.
    pub router_id: Option<std::net::Ipv4Addr>,
    /// `--shutdown-wait-ms` (1000): GRACEFUL_SHUTDOWN period of a planned stop.
    pub shutdown_wait_ms: u64,
    /// `--retry-min-ms` (1000): first reconnect backoff step.
    pub retry_min_ms: u64,
    /// `--metrics ADDR`: serve Prometheus text on this address.
    pub metrics_addr: Option<SocketAddr>,
    /// `-v`: print state transitions.
    pub verbose: bool,
}

impl ToolConfig {
    /// Parses flags (without the program name).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, ArgError> {
        let mut args = args.into_iter();
        let mut peer = None;
        let mut peer_asn = None;
        let mut asn = None;
        let mut config = Self {
            peer: IpAddr::from([0, 0, 0, 0]),
            peer_port: 179,
            peer_asn: PeerAsn::External,
            asn: 0,
            source: None,
            hold_time_secs: super::session::HOLD_TIME_DEFAULT_SECS,
            keepalive_secs: None,
            bfd: false,
            bfd_interval_ms: 300,
            md5_password: None,
            prefixes: Vec::new(),
            communities: Vec::new(),
            local_pref: None,
            graceful_restart_secs: None,
            ebgp_multihop: false,
            router_id: None,
            shutdown_wait_ms: 1000,
            retry_min_ms: 1000,
            metrics_addr: None,
            verbose: false,
        };
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "-v" | "--verbose" => {
                    config.verbose = true;
                    continue;
                }
                "--bfd" => {
                    config.bfd = true;
                    continue;
                }
                "--ebgp-multihop" => {
                    config.ebgp_multihop = true;
                    continue;
                }
                _ => {}
            }
            let value = args
                .next()
                .ok_or_else(|| ArgError::MissingValue { flag: flag.clone() })?;
            let invalid = |reason: String| ArgError::InvalidValue {
                flag: flag.clone(),
                value: value.clone(),
                reason,
            };
            fn parsed<T: std::str::FromStr>(value: &str) -> Result<T, String>
            where
                T::Err: std::fmt::Display,
            {
                value.parse().map_err(|error: T::Err| error.to_string())
            }
            match flag.as_str() {
                "--peer" => peer = Some(parsed(&value).map_err(invalid)?),
                "--peer-port" => config.peer_port = parsed(&value).map_err(invalid)?,
                "--peer-asn" => peer_asn = Some(parse_peer_asn(&value).map_err(invalid)?),
                "--asn" => asn = Some(parsed(&value).map_err(invalid)?),
                "--source" => config.source = Some(parsed(&value).map_err(invalid)?),
                "--hold-time" => config.hold_time_secs = parsed(&value).map_err(invalid)?,
                "--keepalive" => config.keepalive_secs = Some(parsed(&value).map_err(invalid)?),
                "--bfd-interval-ms" => config.bfd_interval_ms = parsed(&value).map_err(invalid)?,
                "--md5" => config.md5_password = Some(value.clone()),
                "--prefix" => config.prefixes.push(parsed(&value).map_err(invalid)?),
                "--prefix-file" => {
                    let text = std::fs::read_to_string(&value)
                        .map_err(|error| invalid(error.to_string()))?;
                    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
                        config.prefixes.push(parsed(line).map_err(invalid)?);
                    }
                }
                "--community" => config
                    .communities
                    .push(parse_community(&value).map_err(invalid)?),
                "--local-pref" => config.local_pref = Some(parsed(&value).map_err(invalid)?),
                "--graceful-restart" => {
                    config.graceful_restart_secs = Some(parsed(&value).map_err(invalid)?);
                }
                "--router-id" => config.router_id = Some(parsed(&value).map_err(invalid)?),
                "--shutdown-wait-ms" => {
                    config.shutdown_wait_ms = parsed(&value).map_err(invalid)?
                }
                "--retry-min-ms" => config.retry_min_ms = parsed(&value).map_err(invalid)?,
                "--metrics" => config.metrics_addr = Some(parsed(&value).map_err(invalid)?),
                _ => return Err(ArgError::UnknownFlag { flag }),
            }
        }
        config.peer = peer.ok_or(ArgError::Required { flag: "--peer" })?;
        config.peer_asn = peer_asn.ok_or(ArgError::Required { flag: "--peer-asn" })?;
        config.asn = asn.ok_or(ArgError::Required { flag: "--asn" })?;
        if config.hold_time_secs == 1 || config.hold_time_secs == 2 {
            return Err(ArgError::InvalidValue {
                flag: "--hold-time".to_string(),
                value: config.hold_time_secs.to_string(),
                reason: "the hold time is 0 or at least 3 seconds".to_string(),
            });
        }
        Ok(config)
    }

    /// The per-peer configuration of the driver.
    pub fn peer_config(&self) -> PeerConfig {
        let mut session = SessionConfig::new(self.asn, self.peer_asn);
        session.hold_time_secs = self.hold_time_secs;
        session.keepalive_secs = self.keepalive_secs;
        session.router_id = self.router_id;
        session.graceful_restart_secs = self.graceful_restart_secs;
        session.shutdown_wait = Duration::from_millis(self.shutdown_wait_ms);
        session.retry_delay_min = Duration::from_millis(self.retry_min_ms);
        let interval = Duration::from_millis(self.bfd_interval_ms);
        PeerConfig {
            session,
            peer: SocketAddr::new(self.peer, self.peer_port),
            source: self.source,
            password: self.md5_password.clone(),
            ebgp_multihop: self.ebgp_multihop,
            bfd: self.bfd.then(|| bfd::session::Config {
                desired_min_tx: interval,
                required_min_rx: interval,
                ..bfd::session::Config::default()
            }),
        }
    }

    /// The routes: every prefix with every community and the local preference.
    pub fn routes(&self) -> BTreeMap<IpNet, RouteAttributes> {
        let mut attributes = RouteAttributes {
            local_pref: self.local_pref,
            communities: BTreeSet::new(),
            large_communities: BTreeSet::new(),
        };
        for community in &self.communities {
            match community {
                CommunityValue::Standard(community) => {
                    attributes.communities.insert(*community);
                }
                CommunityValue::Large(large) => {
                    attributes.large_communities.insert(*large);
                }
            }
        }
        self.prefixes
            .iter()
            .map(|prefix| (prefix.trunc(), attributes.clone()))
            .collect()
    }
}

/// The tool failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Signal handlers or the metrics listener could not be installed.
    #[error("setup: {0}")]
    Setup(#[from] std::io::Error),
}

/// Runs the session until SIGTERM/SIGINT (planned stop) or a second signal (immediate stop).
/// SIGUSR1 withdraws every prefix and SIGUSR2 announces them again, on the live session (used
/// by the benchmark).
pub async fn run(config: ToolConfig) -> Result<(), ToolError> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut withdraw = signal(SignalKind::user_defined1())?;
    let mut announce = signal(SignalKind::user_defined2())?;
    let mut registry = Registry::default();
    let metrics = Metrics {
        bgp: Arc::new(BgpMetrics::register(&mut registry)),
        bfd: Arc::new(BfdMetrics::register(&mut registry)),
    };
    if let Some(address) = config.metrics_addr {
        serve_metrics(address, Arc::new(registry)).await?;
    }
    let peer = driver::spawn(config.peer_config(), Some(metrics));
    peer.set_routes(config.routes());
    let mut events = peer.events();
    let verbose = config.verbose;
    let printer = tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            if !verbose {
                continue;
            }
            match event {
                PeerEvent::StateChange { from, to } => println!("bgp state {from:?} -> {to:?}"),
                PeerEvent::NotificationReceived(n) => {
                    println!("bgp notification received {n} data={:02x?}", n.data);
                }
                PeerEvent::NotificationSent(n) => println!("bgp notification sent {n}"),
                PeerEvent::BfdState(state) => println!("bfd state {state:?}"),
                PeerEvent::ConnectFailed(error) => println!("bgp connect failed: {error}"),
            }
        }
    });
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = withdraw.recv() => peer.set_routes(BTreeMap::new()),
            _ = announce.recv() => peer.set_routes(config.routes()),
        }
    }
    if verbose {
        println!("bgp planned stop");
    }
    peer.command(Command::PlannedStop).await;
    let join = peer.join();
    tokio::pin!(join);
    tokio::select! {
        () = &mut join => {}
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    printer.abort();
    if verbose {
        println!("bgp stopped");
    }
    Ok(())
}

async fn serve_metrics(address: SocketAddr, registry: Arc<Registry>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let registry = registry.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let mut body = String::new();
                if prometheus_client::encoding::text::encode(&mut body, &registry).is_err() {
                    return;
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(())
}
