//! `ironlb controller`: the IPAM half of ironlb (MetalLB's controller). Flags follow MetalLB's
//! controller where they make sense (`metallb.md` §7.1); the logic is `ironlb-controller`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args as ClapArgs, ValueEnum};

/// Flags of `ironlb controller`.
#[derive(Debug, ClapArgs)]
pub(crate) struct Args {
    /// kubeconfig file; without it, kube-rs infers the configuration (KUBECONFIG, ~/.kube/config,
    /// in-cluster service account).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the metallb.io configuration, the memberlist Secret and the legacy ConfigMap.
    #[arg(long, env = "IRONLB_NAMESPACE", default_value = "metallb-system")]
    namespace: String,
    /// Handle only Services with this spec.loadBalancerClass (empty: only Services without one).
    #[arg(long = "lb-class", env = "IRONLB_LB_CLASS", default_value = "")]
    lb_class: String,
    /// all, debug, info, warn, error or none.
    #[arg(long, default_value = "info")]
    log_level: LogLevel,
    /// Log line format.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
    /// Port of /metrics (all interfaces); 0 disables metrics.
    #[arg(long, default_value_t = 9120)]
    port: u16,
    /// Port of /healthz and /readyz (all interfaces); 0 disables them.
    #[arg(long, default_value_t = 17472)]
    health_probe_port: u16,
    /// Name of the memberlist Secret created when missing.
    #[arg(long, env = "METALLB_ML_SECRET_NAME", default_value = "memberlist")]
    ml_secret_name: String,
    /// This pod's name (the reporting instance of Events).
    #[arg(long, env = "METALLB_POD_NAME")]
    pod_name: Option<String>,
}

/// `--log-level`, MetalLB's values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogLevel {
    All,
    Debug,
    Info,
    Warn,
    Error,
    None,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let directive = match level {
        LogLevel::All => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
        LogLevel::None => "off",
    };
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{directive},hyper=warn,hyper_util=warn,tower=warn,kube_client=warn,kube_runtime=warn"
    ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless: keep the first.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn port_addr(port: u16) -> Option<SocketAddr> {
    (port != 0).then(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging(args.log_level, args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let client = super::kube_client(args.kubeconfig.as_deref()).await?;
        let options = ironlb_controller::Options {
            namespace: args.namespace,
            load_balancer_class: (!args.lb_class.is_empty()).then_some(args.lb_class),
            metrics_addr: port_addr(args.port),
            health_addr: port_addr(args.health_probe_port),
            memberlist_secret: args.ml_secret_name,
            instance: args.pod_name,
        };
        let mut running = ironlb_controller::start(client, options).await?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
        tokio::select! {
            () = running.wait() => anyhow::bail!("a controller task ended unexpectedly"),
            _ = terminate.recv() => {}
            signal = tokio::signal::ctrl_c() => signal.context("waiting for SIGINT")?,
        }
        tracing::info!("signalled, stopping");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
