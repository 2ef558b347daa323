//! `ironlb status`: per Service IP, the announcing node(s), their interfaces or BGP peers, since
//! when, and why the other nodes do not announce. Reads the status objects over the kubeconfig;
//! `--gossip ADDR` also asks one speaker's health listener for its gossip view and decisions.
//! The logic is `ironlb_actors::status`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args as ClapArgs;

/// Flags of `ironlb status`.
#[derive(Debug, ClapArgs)]
pub(crate) struct Args {
    /// kubeconfig file; without it, kube-rs infers the configuration.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the status objects.
    #[arg(long, env = "IRONLB_NAMESPACE", default_value = "metallb-system")]
    namespace: String,
    /// A speaker's health listener (`--health-probe-bind`, e.g. 127.0.0.1:17472): also print
    /// its gossip view, BGP sessions and why it does not announce each Service.
    #[arg(long, value_name = "ADDR")]
    gossip: Option<SocketAddr>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let client = super::kube_client(args.kubeconfig.as_deref()).await?;
        let inputs = ironlb_actors::status::collect(client, &args.namespace, args.gossip)
            .await
            .context("ironlb status")?;
        print!("{}", ironlb_actors::status::render(&inputs));
        Ok(ExitCode::SUCCESS)
    })
}
