//! `ironlb bgp-announce --peer ADDR --peer-asn N --asn N --prefix P…`: keep one BGP session up
//! and advertise the prefixes until stopped; SIGTERM is a planned stop (GRACEFUL_SHUTDOWN,
//! withdraw, Cease). For manual testing and interop tests. The logic lives in
//! `ironlb_announce::bgp::tool`; this module turns flags into its configuration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args as ClapArgs;
use ipnet::IpNet;
use ironlb_announce::bgp::session::PeerAsn;
use ironlb_announce::bgp::tool::{self, CommunityValue, ToolConfig};

#[derive(Debug, ClapArgs)]
pub(crate) struct Args {
    /// The router's address.
    #[arg(long)]
    peer: IpAddr,
    /// The router's TCP port.
    #[arg(long, default_value_t = 179)]
    peer_port: u16,
    /// The router's ASN, or `internal` / `external` (dynamic ASN).
    #[arg(long, value_parser = tool::parse_peer_asn)]
    peer_asn: PeerAsn,
    /// Our ASN.
    #[arg(long)]
    asn: u32,
    /// Local address to connect from (must be an address of this host).
    #[arg(long)]
    source: Option<IpAddr>,
    /// Proposed hold time in seconds (0, or at least 3).
    #[arg(long, default_value_t = 90)]
    hold_time: u16,
    /// Keepalive interval in seconds (default: a third of the negotiated hold time).
    #[arg(long)]
    keepalive: Option<u16>,
    /// Run BFD with the router (300 ms × 3).
    #[arg(long)]
    bfd: bool,
    /// BFD transmit and receive interval in milliseconds.
    #[arg(long, default_value_t = 300)]
    bfd_interval_ms: u64,
    /// TCP MD5 password (RFC 2385).
    #[arg(long)]
    md5: Option<String>,
    /// Prefix to advertise (repeatable).
    #[arg(long, required = true)]
    prefix: Vec<IpNet>,
    /// Community on every prefix: `AA:NN`, `large:A:B:C` or a well-known name (repeatable).
    #[arg(long, value_parser = tool::parse_community)]
    community: Vec<CommunityValue>,
    /// LOCAL_PREF (sent to internal peers only).
    #[arg(long)]
    local_pref: Option<u32>,
    /// Advertise graceful restart with this restart time in seconds.
    #[arg(long)]
    graceful_restart: Option<u16>,
    /// TTL 255 towards an external router more than one hop away.
    #[arg(long)]
    ebgp_multihop: bool,
    /// BGP identifier (default: the local IPv4 address of the connection).
    #[arg(long)]
    router_id: Option<Ipv4Addr>,
    /// How long routes carry GRACEFUL_SHUTDOWN before a planned stop withdraws them.
    #[arg(long, default_value_t = 1000)]
    shutdown_wait_ms: u64,
    /// Serve Prometheus metrics (MetalLB's names) on this address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Print every state transition and NOTIFICATION.
    #[arg(long, short = 'v')]
    verbose: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.hold_time == 0 || args.hold_time >= 3,
        "--hold-time is 0 or at least 3 seconds"
    );
    let config = ToolConfig {
        peer: args.peer,
        peer_port: args.peer_port,
        peer_asn: args.peer_asn,
        asn: args.asn,
        source: args.source,
        hold_time_secs: args.hold_time,
        keepalive_secs: args.keepalive,
        bfd: args.bfd,
        bfd_interval_ms: args.bfd_interval_ms,
        md5_password: args.md5,
        prefixes: args.prefix,
        communities: args.community,
        local_pref: args.local_pref,
        graceful_restart_secs: args.graceful_restart,
        ebgp_multihop: args.ebgp_multihop,
        router_id: args.router_id,
        shutdown_wait_ms: args.shutdown_wait_ms,
        retry_min_ms: 1000,
        metrics_addr: args.metrics,
        verbose: args.verbose,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime
        .block_on(tool::run(config))
        .context("bgp-announce")?;
    Ok(ExitCode::SUCCESS)
}
