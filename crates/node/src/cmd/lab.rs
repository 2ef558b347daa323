//! `ironlb lab backend|probe …` (hidden): the lab's helper processes, run inside a namespace with
//! `ip netns exec` by `ironlb demo`, the end-to-end and chaos tests and `failover-bench`. The logic
//! lives in `ironlb_lab::{backend, probe}`.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args as ClapArgs, Subcommand};
use ironlb_lab::backend::{Backend, BackendConfig, HTTP_PORT_DEFAULT, UDP_PORT_DEFAULT};
use ironlb_lab::probe::{self, ProbeConfig, Protocol, INTERVAL_MS_DEFAULT, TIMEOUT_MS_DEFAULT};

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Answer every UDP datagram and HTTP GET with this node's name (a Service's backend).
    Backend(BackendArgs),
    /// Probe a Service IP every few ms from here and print every request's fate as JSON lines.
    ///
    /// Reads commands on stdin: `kill <node>` (a kill mark: outages are measured after it),
    /// `mark <label>` and `stop` (wait for requests in flight, print the summary, exit).
    Probe(ProbeArgs),
}

#[derive(Debug, ClapArgs)]
pub(crate) struct BackendArgs {
    /// The name to answer with.
    #[arg(long)]
    node: String,
    /// UDP port (0 disables UDP).
    #[arg(long, default_value_t = UDP_PORT_DEFAULT)]
    udp_port: u16,
    /// HTTP port (0 disables HTTP).
    #[arg(long, default_value_t = HTTP_PORT_DEFAULT)]
    http_port: u16,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct ProbeArgs {
    /// The Service IP and port, e.g. 192.168.77.240:7777 or [fd00::240]:7777.
    #[arg(long)]
    target: SocketAddr,
    /// `udp` or `http`.
    #[arg(long, default_value = "udp")]
    protocol: Protocol,
    /// Time between two requests.
    #[arg(long, default_value_t = INTERVAL_MS_DEFAULT)]
    interval_ms: u64,
    /// Time after which an unanswered request counts as lost.
    #[arg(long, default_value_t = TIMEOUT_MS_DEFAULT)]
    timeout_ms: u64,
    /// Stop by itself after this many seconds (default: on `stop`, or at end of stdin if
    /// `--stop-at-eof`).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Stop when stdin ends (for `echo ... |` pipelines; by default the end of stdin is ignored).
    #[arg(long)]
    stop_at_eof: bool,
}

pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Backend(args) => backend(args),
        Command::Probe(args) => run_probe(args),
    }
}

fn backend(args: BackendArgs) -> anyhow::Result<ExitCode> {
    let port = |port: u16| (port != 0).then_some(port);
    let config = BackendConfig {
        node_name: args.node,
        udp_port: port(args.udp_port),
        http_port: port(args.http_port),
    };
    let backend = Backend::start(&config).context("cannot start the backend")?;
    println!(
        "backend {} udp {:?} http {:?}",
        config.node_name,
        backend.udp_addr(),
        backend.http_addr()
    );
    backend.wait();
    Ok(ExitCode::SUCCESS)
}

fn run_probe(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let config = ProbeConfig {
        target: args.target,
        protocol: args.protocol,
        interval_ms: args.interval_ms,
        timeout_ms: args.timeout_ms,
    };
    let (commands_tx, commands_rx) = mpsc::channel();
    // The reader thread's sender is dropped at the end of stdin, which stops the run unless this
    // function keeps a sender of its own alive.
    probe::spawn_command_reader(std::io::stdin(), commands_tx.clone());
    let keep_running_at_eof = (!args.stop_at_eof).then_some(commands_tx);
    let stdout = std::io::stdout();
    let mut write_error = None;
    let log = probe::run(
        &config,
        commands_rx,
        args.duration_secs.map(Duration::from_secs),
        |event| {
            let mut out = stdout.lock();
            let written = serde_json::to_string(event)
                .map_err(std::io::Error::other)
                .and_then(|line| writeln!(out, "{line}"))
                .and_then(|()| out.flush());
            if let Err(error) = written {
                write_error.get_or_insert(error);
            }
        },
    )
    .context("probe failed")?;
    if let Some(error) = write_error {
        return Err(error).context("cannot write the probe's output");
    }
    drop(keep_running_at_eof);
    let (sent, answered) = log.counts();
    eprintln!("probe: {answered}/{sent} answered");
    Ok(ExitCode::SUCCESS)
}
