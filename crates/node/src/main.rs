//! The `ironlb` binary: wiring only.
//!
//! Every subcommand lives in its own module under `cmd/` and exposes `Args` (clap) and
//! `run(args) -> anyhow::Result<ExitCode>`. The logic lives in the library crates; this crate
//! turns flags into calls and errors into exit codes. `anyhow` is used here and nowhere else.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// ironlb: a network load-balancer for bare-metal Kubernetes that speaks MetalLB's API.
///
/// The controller gives every `type: LoadBalancer` Service an IP from the configured pools; the
/// speaker, on every node, makes the network deliver that IP to a node (layer 2: ARP/NDP;
/// or BGP). The remaining commands are offline tools and test helpers.
#[derive(Debug, Parser)]
#[command(name = "ironlb", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // Subcommands are added here, one line each, in alphabetical order.
    /// Answer ARP/NDP for IPs on interfaces and send gratuitous ARP / NA (troubleshooting).
    Announce(cmd::announce::Args),
    /// The in-memory Kubernetes API stand-in (demos and tests only, never production).
    Apiserver(cmd::apiserver::Args),
    /// Keep one BGP session up and advertise prefixes until stopped (testing, interop).
    BgpAnnounce(cmd::bgp_announce::Args),
    /// Offline tools for a set of metallb.io manifests.
    #[command(subcommand)]
    Config(cmd::config::Command),
    /// The controller: allocate an IP to every LoadBalancer Service (MetalLB's controller).
    Controller(cmd::controller::Args),
    /// Convert MetalLB's legacy `config` ConfigMap into metallb.io objects (YAML on stdout).
    ConvertConfig(cmd::convert::Args),
    /// Print the metallb.io CRDs (YAML), as in deploy/crds/metallb.io.yaml.
    Crds(cmd::crds::Args),
    /// The main job, in network namespaces: a node killed, the outage measured (root).
    Demo(cmd::demo::Args),
    /// Lab helpers run inside network namespaces (backend, probe): demo, tests and bench only.
    #[command(subcommand, hide = true)]
    Lab(cmd::lab::Command),
    /// Print the IP every LoadBalancer Service of a set of manifests would get (offline).
    Plan(cmd::plan::Args),
    /// The speaker: announce Service IPs from this node (MetalLB's speaker, layer 2 and BGP).
    Speaker(cmd::speaker::Args),
    /// Per Service IP: who announces it, how, since when, and why the other nodes do not.
    Status(cmd::status::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Announce(args) => cmd::announce::run(args),
        Command::Apiserver(args) => cmd::apiserver::run(args),
        Command::BgpAnnounce(args) => cmd::bgp_announce::run(args),
        Command::Config(command) => cmd::config::run(command),
        Command::Controller(args) => cmd::controller::run(args),
        Command::ConvertConfig(args) => cmd::convert::run(args),
        Command::Crds(args) => cmd::crds::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Lab(command) => cmd::lab::run(command),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Speaker(args) => cmd::speaker::run(args),
        Command::Status(args) => cmd::status::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
