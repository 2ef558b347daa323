//! The standalone announcer behind `ironlb announce` (and the `l2-announce` test binary).
//!
//! It answers ARP/NDP for the given IPs on the given interfaces and sends the takeover burst at
//! start, printing one line per event (every answer and gratuitous send with `-v`).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;

use tokio::sync::mpsc;

use super::io::driver::{Command, Driver, DriverConfig, DriverError, DRIVER_COMMANDS_MAX};
use super::io::L2Event;
use super::metrics::L2Metrics;
use super::proto::interfaces::{ExcludeError, ExcludeList, InterfaceSelection};

/// Events buffered between the driver and the printer at most.
pub const EVENTS_MAX: usize = 4096;

/// What to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceOptions {
    /// Interfaces to answer on (at least one).
    pub interfaces: Vec<String>,
    /// IPs to announce (at least one).
    pub ips: Vec<IpAddr>,
    /// Print every answer and gratuitous send.
    pub verbose: bool,
    /// Exclude regexes; `None` for MetalLB's default list.
    pub excludes: Option<Vec<String>>,
}

/// A bad command line or a failure of the announcer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// An unknown flag or a flag without its value.
    #[error("bad argument {0:?} (usage: --interface IF --ip IP [--ip IP…] [--exclude REGEX…] [--no-default-excludes] [-v])")]
    Usage(String),
    /// `--ip` value that is not an IP.
    #[error("--ip {value:?} is not an IP address")]
    BadIp {
        /// The value.
        value: String,
    },
    /// No `--interface` or no `--ip`.
    #[error("at least one --interface and one --ip are required")]
    Missing,
    /// An exclude regex does not compile.
    #[error(transparent)]
    Exclude(#[from] ExcludeError),
    /// The driver stopped.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The driver task panicked or was cancelled.
    #[error("layer 2 driver task failed: {0}")]
    DriverTask(String),
}

/// Parses `--interface IF --ip IP [--ip IP…] [--exclude REGEX…] [--no-default-excludes] [-v]`.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<AnnounceOptions, ToolError> {
    let mut options = AnnounceOptions {
        interfaces: Vec::new(),
        ips: Vec::new(),
        verbose: false,
        excludes: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-v" | "--verbose" => options.verbose = true,
            "--no-default-excludes" => {
                options.excludes.get_or_insert_with(Vec::new);
            }
            "--interface" | "-i" | "--ip" | "--exclude" => {
                let value = args.next().ok_or_else(|| ToolError::Usage(arg.clone()))?;
                match arg.as_str() {
                    "--ip" => options
                        .ips
                        .push(value.parse().map_err(|_| ToolError::BadIp { value })?),
                    "--exclude" => options.excludes.get_or_insert_with(Vec::new).push(value),
                    _ => options.interfaces.push(value),
                }
            }
            _ => return Err(ToolError::Usage(arg)),
        }
    }
    if options.interfaces.is_empty() || options.ips.is_empty() {
        return Err(ToolError::Missing);
    }
    Ok(options)
}

/// One printed line per event.
pub fn format_event(event: &L2Event) -> String {
    match event {
        L2Event::InterfaceUp { interface, mac } => {
            format!("interface up name={interface} mac={mac}")
        }
        L2Event::InterfaceDown { interface, reason } => {
            format!("interface down name={interface} reason={reason:?}")
        }
        L2Event::InterfaceSkipped { interface, reason } => {
            format!("interface skipped name={interface} reason={reason:?}")
        }
        L2Event::Answered {
            interface,
            ip,
            requester,
        } => {
            format!("received request ip={ip} from={requester} interface={interface}; sent reply")
        }
        L2Event::GratuitousSent {
            interface,
            ip,
            frames,
        } => {
            format!("sent gratuitous ip={ip} interface={interface} frames={frames}")
        }
        L2Event::DuplicateAnswer { interface, ip, mac } => {
            format!("duplicate answer ip={ip} mac={mac} interface={interface}")
        }
        L2Event::Dropped { interface, reason } => {
            format!("dropped interface={interface} reason={reason:?}")
        }
        L2Event::NoInterface { ip } => format!("no eligible interface for ip={ip}"),
        L2Event::Error { interface, message } => {
            format!("error interface={interface} message={message:?}")
        }
    }
}

/// Runs the announcer until `shutdown` completes, printing events to stdout.
pub async fn run(
    options: AnnounceOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ToolError> {
    let exclude = match &options.excludes {
        Some(patterns) => ExcludeList::new(patterns)?,
        None => ExcludeList::metallb_default(),
    };
    let (command_tx, command_rx) = mpsc::channel(DRIVER_COMMANDS_MAX);
    let (event_tx, mut event_rx) = mpsc::channel(EVENTS_MAX);
    let driver = Driver::new(
        DriverConfig {
            exclude,
            verbose: options.verbose,
        },
        L2Metrics::new(),
        event_tx,
    );
    let selection =
        InterfaceSelection::Only(options.interfaces.iter().cloned().collect::<BTreeSet<_>>());
    let ips: Vec<String> = options.ips.iter().map(ToString::to_string).collect();
    println!(
        "announcing ips={} interfaces={}",
        ips.join(","),
        options.interfaces.join(",")
    );
    let driver = tokio::spawn(driver.run(command_rx));
    for ip in &options.ips {
        // The driver runs already, so a list longer than the queue waits for it here.
        let command = Command::Announce {
            ip: *ip,
            selection: selection.clone(),
        };
        if command_tx.send(command).await.is_err() {
            break;
        }
    }
    tokio::pin!(shutdown);
    let mut driver = driver;
    loop {
        tokio::select! {
            event = event_rx.recv() => match event {
                Some(event) => println!("{}", format_event(&event)),
                None => break,
            },
            result = &mut driver => {
                return match result {
                    Ok(result) => result.map_err(ToolError::from),
                    Err(join) => Err(ToolError::DriverTask(join.to_string())),
                };
            }
            () = &mut shutdown => break,
        }
    }
    drop(command_tx);
    let _ = driver.await;
    Ok(())
}
