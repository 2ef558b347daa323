//! `ironlb announce --interface IF --ip IP [--ip IP…] [-v]`: a standalone layer 2 announcer for
//! manual testing and troubleshooting. It answers ARP/NDP for the IPs on the interfaces and sends
//! the takeover burst (gratuitous ARP / unsolicited NA) at start. The logic lives in
//! `ironlb_announce::l2::tool`; this module turns flags into its options.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args as ClapArgs;
use ironlb_announce::l2::tool;

#[derive(Debug, ClapArgs)]
pub(crate) struct Args {
    /// Interface to answer on (repeatable).
    #[arg(long, short = 'i', required = true)]
    interface: Vec<String>,
    /// IP to announce (repeatable).
    #[arg(long, required = true)]
    ip: Vec<IpAddr>,
    /// Interface-name regex never answered on (repeatable); replaces MetalLB's default list
    /// (^veth.*, ^docker.*, ^lo$, …).
    #[arg(long)]
    exclude: Vec<String>,
    /// Exclude no interface at all.
    #[arg(long, conflicts_with = "exclude")]
    no_default_excludes: bool,
    /// Print every request answered and every gratuitous frame sent.
    #[arg(long, short = 'v')]
    verbose: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let excludes = if args.no_default_excludes || !args.exclude.is_empty() {
        Some(args.exclude)
    } else {
        None
    };
    let options = tool::AnnounceOptions {
        interfaces: args.interface,
        ips: args.ip,
        verbose: args.verbose,
        excludes,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime
        .block_on(tool::run(options, async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }))
        .context("announce")?;
    Ok(ExitCode::SUCCESS)
}
