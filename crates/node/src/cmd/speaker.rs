//! `ironlb speaker`: the announcing half of ironlb (MetalLB's speaker), layer 2 and BGP. Flags follow
//! MetalLB's speaker (`metallb.md` §7.1); the logic is `ironlb-actors`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args as ClapArgs;
use ironlb_actors::decide::Options;
use ironlb_actors::tree::{
    self, GossipSettings, L2Backend, Shared, Speaker, SpeakerConfig, SpeakerMsg,
};

/// Flags of `ironlb speaker`.
#[derive(Debug, ClapArgs)]
pub(crate) struct Args {
    /// This node's name (the gossip member name; matched against EndpointSlice nodeName).
    #[arg(long, env = "METALLB_NODE_NAME")]
    node_name: String,
    /// kubeconfig file; without it, kube-rs infers the configuration.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the metallb.io configuration and of the status objects.
    #[arg(long, env = "IRONLB_NAMESPACE", default_value = "metallb-system")]
    namespace: String,
    /// Handle only Services with this spec.loadBalancerClass (empty: only Services without one).
    #[arg(long = "lb-class", env = "IRONLB_LB_CLASS", default_value = "")]
    lb_class: String,
    /// Announce from nodes labelled node.kubernetes.io/exclude-from-external-load-balancers.
    #[arg(long)]
    ignore_exclude_lb: bool,
    /// Gossip bind address (hostNetwork: the node IP). Empty disables membership: every Node
    /// is then assumed to run a speaker (MetalLB's fallback, no fast failover).
    #[arg(long = "ml-bindaddr", env = "METALLB_ML_BIND_ADDR", default_value = "")]
    ml_bind_addr: String,
    /// Gossip UDP port.
    #[arg(
        long = "ml-bindport",
        env = "METALLB_ML_BIND_PORT",
        default_value_t = 7946
    )]
    ml_bind_port: u16,
    /// The memberlist Secret mounted as a directory (reads `secretkey`) or a file.
    #[arg(
        long = "ml-secret-key-path",
        env = "METALLB_ML_SECRET_KEY_PATH",
        default_value = "/etc/ml_secret_key"
    )]
    ml_secret_key_path: PathBuf,
    /// Allow gossip in plaintext when no memberlist key is mounted (tests and labs only;
    /// without it, a missing key is an error).
    #[arg(long, env = "IRONLB_GOSSIP_INSECURE")]
    gossip_insecure: bool,
    /// Extra gossip seeds (`ip:port`, repeatable); Node InternalIPs are always used.
    #[arg(long = "peers", value_delimiter = ',')]
    peers: Vec<SocketAddr>,
    /// How long a starting speaker waits for the others' claims before taking IPs.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    gossip_settle: Duration,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:17472")]
    health_probe_bind: SocketAddr,
    /// Port of /metrics on all interfaces; 0 disables it.
    #[arg(long, default_value_t = 9120)]
    port: u16,
    /// Interface-name regexes never announced on (default: MetalLB's list).
    #[arg(long = "exclude-interface")]
    exclude_interfaces: Vec<String>,
    /// Upper bound of the planned handover on SIGTERM.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    shutdown_grace: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    ironlb_api::config::duration::parse_go_duration(text).map_err(|e| e.to_string())
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,hyper=warn,hyper_util=warn,kube_client=warn,kube_runtime=warn",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let client = super::kube_client(args.kubeconfig.as_deref()).await?;
        let gossip = if args.ml_bind_addr.is_empty() {
            tracing::warn!("not starting fast dead node detection: --ml-bindaddr is empty");
            None
        } else {
            let ip: IpAddr = args
                .ml_bind_addr
                .parse()
                .with_context(|| format!("--ml-bindaddr {:?}", args.ml_bind_addr))?;
            let path = &args.ml_secret_key_path;
            let secret = match tree::read_secret(path) {
                Ok(secret) if !secret.is_empty() => Some(secret),
                Ok(_) => None,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("reading the memberlist key {}", path.display()))
                }
            };
            if secret.is_none() {
                anyhow::ensure!(
                    args.gossip_insecure,
                    "no memberlist key at {} (the `secretkey` of the memberlist Secret): refusing \
                     to gossip unencrypted; mount the Secret, or pass --gossip-insecure to gossip \
                     in plaintext (tests and labs only)",
                    path.display()
                );
                tracing::warn!(
                    "gossiping in plaintext (--gossip-insecure): anyone on the network can read \
                     and forge membership"
                );
            } else if args.gossip_insecure {
                tracing::info!("a memberlist key is mounted: gossip is sealed, --gossip-insecure has no effect");
            }
            let bind = SocketAddr::new(ip, args.ml_bind_port);
            Some(GossipSettings {
                bind,
                advertise: bind,
                secret,
                seeds: args.peers.clone(),
                cluster: "ironlb".into(),
                settle: args.gossip_settle,
            })
        };
        let mut http = vec![args.health_probe_bind];
        if args.port != 0 {
            http.push(SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.port)));
        }
        let config = SpeakerConfig {
            node: args.node_name.clone(),
            namespace: args.namespace,
            options: Options {
                lb_class: (!args.lb_class.is_empty()).then_some(args.lb_class),
                ignore_exclude_lb: args.ignore_exclude_lb,
            },
            gossip,
            l2: L2Backend::Driver(args.exclude_interfaces),
            http,
            // Routes carry GRACEFUL_SHUTDOWN for half the grace, then are withdrawn.
            bgp_shutdown_wait: args.shutdown_grace / 2,
        };
        let shared = Shared::new(config, Some(client));
        let (speaker, handle) =
            ractor::Actor::spawn(Some(format!("{}/speaker", args.node_name)), Speaker, shared)
                .await
                .context("starting the speaker")?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = terminate.recv() => {}
            signal = tokio::signal::ctrl_c() => signal.context("waiting for SIGINT")?,
        }
        tracing::info!(grace = ?args.shutdown_grace, "signalled, handing over");
        let grace = args.shutdown_grace;
        let done = ractor::call_t!(
            speaker,
            |reply| SpeakerMsg::Shutdown { grace, reply },
            u64::try_from((grace + Duration::from_secs(2)).as_millis()).unwrap_or(u64::MAX)
        );
        if let Err(error) = done {
            tracing::warn!(%error, "handover incomplete");
        }
        let _ = handle.await;
        Ok(ExitCode::SUCCESS)
    })
}
