//! `failover-bench`: ironlb's failover measured next to the best-known alternatives, in the same
//! lab topology, with the same client-side probe and the same node death (link down + every
//! process of the node killed with SIGKILL), one lab per system:
//!
//! | system | measure |
//! |---|---|
//! | ironlb layer 2, default settings | client outage (probe) |
//! | ironlb BGP + BFD (300 ms × 3), FRR as the router, client behind it | client outage (probe) |
//! | keepalived VRRPv3, `advert_int` 1 s, ironlb's gossip probe period and the smallest accepted | client outage (probe) |
//! | serf (memberlist, MetalLB's detector), LAN profile, encrypted | time to detect: kill → first `EventMemberFailed` |
//!
//! Every kill cycle: wait for steady answers, mark the kill on the probe's clock, kill the node
//! that answers, wait for another node to answer a request sent after the kill, revive the node,
//! let the system settle. A kill without recovery within the timeout is recorded as a failure,
//! not as a figure.

pub mod keepalived;
pub mod serf;
pub mod stats;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::error::LabError;
use crate::frr::{Router, RouterOptions};
use crate::manifests::{self, ServiceSpec, BGP_CLIENT_ROUTE_V4, UDP_PORT};
use crate::probe::{ProbeConfig, ProbeLog, ProbeProcess};
use crate::process::ProcessSpec;
use crate::topology::{Lab, LabSpec, CLIENT, ROUTER};
use stats::Figures;

/// ironlb's gossip probe period with the default (`lan`) profile, in centiseconds: keepalived
/// at this `advert_int` has the same heartbeat rate as ironlb.
pub const IRONLB_PROBE_PERIOD_CS: u32 = 4;
/// The VIP keepalived moves (inside the L2 pool's range, which no controller uses in that lab).
pub const KEEPALIVED_VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 240);

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The `ironlb` binary (speakers, controller, API stand-in, backends, probe).
    pub binary: PathBuf,
    /// Kills per system.
    pub kills: usize,
    /// Nodes per lab.
    pub nodes: usize,
    /// Lab prefix (each system's lab adds a suffix).
    pub prefix: String,
    /// How long to wait for another node to answer after a kill before calling it a failure.
    pub recovery_timeout: Duration,
    /// Pause after a node is revived, before waiting for steady answers again.
    pub settle: Duration,
    /// Print a line per kill.
    pub verbose: bool,
}

/// The systems the bench knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// ironlb layer 2 with default settings.
    IronlbL2,
    /// ironlb BGP with BFD 300 ms × 3 towards FRR.
    IronlbBgpBfd,
    /// keepalived VRRPv3 at `advert_int` (centiseconds).
    Keepalived {
        /// `advert_int` in centiseconds.
        advert_int_cs: u32,
    },
    /// serf's time to detect a dead node (LAN profile, encrypted).
    Serf,
}

impl System {
    /// Every system of a full run, in print order.
    pub fn all() -> Vec<Self> {
        vec![
            Self::IronlbL2,
            Self::IronlbBgpBfd,
            Self::Keepalived { advert_int_cs: 100 },
            Self::Keepalived {
                advert_int_cs: IRONLB_PROBE_PERIOD_CS,
            },
            Self::Keepalived {
                advert_int_cs: keepalived::ADVERT_INT_CS_MIN,
            },
            Self::Serf,
        ]
    }

    /// A short key (`ironlb-l2`, `keepalived-0.04`, …).
    pub fn key(self) -> String {
        match self {
            Self::IronlbL2 => "ironlb-l2".to_owned(),
            Self::IronlbBgpBfd => "ironlb-bgp-bfd".to_owned(),
            Self::Keepalived { advert_int_cs } => {
                format!("keepalived-{}", keepalived::advert_int_text(advert_int_cs))
            }
            Self::Serf => "serf".to_owned(),
        }
    }

    /// Parses a key of [`Self::key`] (`keepalived-<seconds>` takes any interval).
    pub fn parse(key: &str) -> Option<Self> {
        match key {
            "ironlb-l2" => Some(Self::IronlbL2),
            "ironlb-bgp-bfd" => Some(Self::IronlbBgpBfd),
            "serf" => Some(Self::Serf),
            "keepalived" => Some(Self::Keepalived { advert_int_cs: 100 }),
            other => {
                let seconds: f64 = other.strip_prefix("keepalived-")?.parse().ok()?;
                let centiseconds = (seconds * 100.0).round();
                (1.0..=25_500.0)
                    .contains(&centiseconds)
                    .then_some(Self::Keepalived {
                        advert_int_cs: centiseconds as u32,
                    })
            }
        }
    }

    /// What is measured and how the system is set up, for the table.
    pub fn description(self) -> String {
        match self {
            Self::IronlbL2 => "ironlb layer 2, default settings".to_owned(),
            Self::IronlbBgpBfd => "ironlb BGP + BFD 300 ms x 3, FRR router".to_owned(),
            Self::Keepalived { advert_int_cs } => format!(
                "keepalived VRRPv3 advert_int {}{}",
                keepalived::advert_int_text(advert_int_cs),
                match advert_int_cs {
                    100 => " (default)",
                    IRONLB_PROBE_PERIOD_CS => " (= ironlb's probe period)",
                    keepalived::ADVERT_INT_CS_MIN => " (smallest accepted)",
                    _ => "",
                }
            ),
            Self::Serf => "serf/memberlist LAN profile, encrypted".to_owned(),
        }
    }

    /// `outage` (client-side) or `detection` (serf).
    pub fn measure(self) -> &'static str {
        match self {
            Self::Serf => "detection",
            _ => "outage",
        }
    }

    fn lab_suffix(self) -> String {
        match self {
            Self::IronlbL2 => "l2".to_owned(),
            Self::IronlbBgpBfd => "bgp".to_owned(),
            Self::Keepalived { advert_int_cs } => format!("k{advert_int_cs}"),
            Self::Serf => "serf".to_owned(),
        }
    }
}

/// One system's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SystemReport {
    /// [`System::key`].
    pub system: String,
    /// [`System::description`].
    pub description: String,
    /// `outage` or `detection`.
    pub measure: String,
    /// Whether the system ran at all.
    pub measured: bool,
    /// Why it did not run (or stopped early), if so.
    pub note: Option<String>,
    /// Kills attempted.
    pub kills: usize,
    /// One figure per kill that recovered, in kill order.
    pub samples_ms: Vec<f64>,
    /// One line per kill that did not recover in time.
    pub failures: Vec<String>,
    /// p50/p99/max of `samples_ms`.
    pub figures: Option<Figures>,
    /// Answers in gaps: the largest time without any answer over the whole run (probe systems).
    pub largest_gap_ms: Option<f64>,
}

impl SystemReport {
    fn new(system: System) -> Self {
        Self {
            system: system.key(),
            description: system.description(),
            measure: system.measure().to_owned(),
            measured: false,
            note: None,
            kills: 0,
            samples_ms: Vec::new(),
            failures: Vec::new(),
            figures: None,
            largest_gap_ms: None,
        }
    }
}

/// The whole run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    /// `/proc/loadavg` when the bench started.
    pub load_before: String,
    /// `/proc/loadavg` when it ended.
    pub load_after: String,
    /// Nodes per lab.
    pub nodes: usize,
    /// Kills asked per system.
    pub kills: usize,
    /// Per system, in run order.
    pub systems: Vec<SystemReport>,
}

/// The load average line of `/proc/loadavg` (empty if unreadable).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

/// Finds the `ironlb` binary: `explicit`, `$IRONLB_BIN`, next to the running executable, or in
/// the sibling `debug`/`release` directory of a Cargo target directory.
pub fn locate_ironlb(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(format!("{} is not a file", path.display()))
        };
    }
    if let Some(path) = std::env::var_os("IRONLB_BIN").map(PathBuf::from) {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("IRONLB_BIN={} is not a file", path.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|error| format!("current_exe: {error}"))?;
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(3) {
        candidates.push(dir.join("ironlb"));
        for profile in ["release", "debug"] {
            candidates.push(dir.join(profile).join("ironlb"));
        }
    }
    candidates.into_iter().find(|path| path.is_file()).ok_or_else(|| {
        "cannot find the ironlb binary: build it (cargo build --release -p ironlb) or pass --ironlb PATH / IRONLB_BIN".to_owned()
    })
}

/// Runs one system; never fails as a whole: a setup error becomes the report's note.
pub fn run_system(options: &BenchOptions, system: System) -> SystemReport {
    let mut report = SystemReport::new(system);
    let prefix = format!("{}{}", options.prefix, system.lab_suffix());
    let result = match system {
        System::IronlbL2 => run_ironlb_l2(options, &prefix, &mut report),
        System::IronlbBgpBfd => run_ironlb_bgp(options, &prefix, &mut report),
        System::Keepalived { advert_int_cs } => {
            run_keepalived(options, &prefix, advert_int_cs, &mut report)
        }
        System::Serf => run_serf(options, &prefix, &mut report),
    };
    if let Err(error) = result {
        report.note = Some(match report.note.take() {
            Some(note) => format!("{note}; {error}"),
            None => error.to_string(),
        });
    }
    report.figures = Figures::of(&report.samples_ms);
    report
}

fn bench_error(text: impl Into<String>) -> LabError {
    LabError::Spec(text.into())
}

/// Starts the probe in the client namespace.
fn start_probe(lab: &Lab, binary: &Path, target: SocketAddr) -> Result<ProbeProcess, LabError> {
    let mut command = lab.command(CLIENT, &binary.display().to_string());
    command.args(ProbeProcess::args(&ProbeConfig::udp(target)));
    ProbeProcess::spawn(command).map_err(|error| bench_error(error.to_string()))
}

fn run_ironlb_l2(
    options: &BenchOptions,
    prefix: &str,
    report: &mut SystemReport,
) -> Result<(), LabError> {
    let lab = Lab::create(LabSpec::new(prefix, options.nodes))?;
    let mut cluster = Cluster::start(lab, &options.binary)?;
    cluster.apply(&manifests::l2_config(false))?;
    cluster.start_controller()?;
    let nodes = cluster.lab.nodes();
    for node in &nodes {
        cluster.start_backend(node, &[])?;
    }
    cluster.start_speakers(&[])?;
    let ip = cluster.create_service(&ServiceSpec::new("web"), &nodes)?;
    let probe = start_probe(&cluster.lab, &options.binary, SocketAddr::new(ip, UDP_PORT))?;
    kill_cycles(options, &mut cluster.lab, probe, report, &|| true)
}

fn run_ironlb_bgp(
    options: &BenchOptions,
    prefix: &str,
    report: &mut SystemReport,
) -> Result<(), LabError> {
    let mut spec = LabSpec::new(prefix, options.nodes);
    spec.router = true;
    let lab = Lab::create(spec)?;
    let mut cluster = Cluster::start(lab, &options.binary)?;
    let router_address = cluster.lab.v4(ROUTER)?.to_string();
    cluster.apply(&manifests::bgp_config(&router_address, true))?;
    let router = Router::start(
        &mut cluster.lab,
        RouterOptions {
            bfd: true,
            graceful_restart: false,
        },
    )?;
    cluster.lab.route_client_via_router(BGP_CLIENT_ROUTE_V4)?;
    cluster.start_controller()?;
    let nodes = cluster.lab.nodes();
    for node in &nodes {
        cluster.start_backend(node, &[])?;
    }
    cluster.start_speakers(&[])?;
    let spec = ServiceSpec::new("web").annotation("metallb.io/address-pool", "bgp-pool");
    let ip = cluster.create_service(&spec, &nodes)?;
    let prefix = format!("{ip}/32");
    let deadline = Instant::now() + Duration::from_secs(60);
    while router.next_hops(&prefix).len() < nodes.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let hops = router.next_hops(&prefix);
    if hops.len() < nodes.len() {
        report.note = Some(format!(
            "not measured: FRR has {} of {} next hops for {prefix} after 60 s (sessions established: {:?})",
            hops.len(),
            nodes.len(),
            router.established()
        ));
        return Ok(());
    }
    // BFD sessions come up after BGP: wait for them, so that every kill is detected by BFD.
    let bfd_up = |router: &Router| {
        router
            .json("show bfd peers json")
            .and_then(|peers| {
                peers.as_array().map(|peers| {
                    peers
                        .iter()
                        .filter(|peer| peer["status"].as_str() == Some("up"))
                        .count()
                })
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while bfd_up(&router) < nodes.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let up = bfd_up(&router);
    if up < nodes.len() {
        report.note = Some(format!(
            "BFD sessions up on the router: {up} of {} after 30 s (a kill of a node without BFD falls back to the BGP hold time)",
            nodes.len()
        ));
    }
    let probe = start_probe(&cluster.lab, &options.binary, SocketAddr::new(ip, UDP_PORT))?;
    let node_count = nodes.len();
    let ready = || bfd_up(&router) >= node_count && router.next_hops(&prefix).len() >= node_count;
    kill_cycles(options, &mut cluster.lab, probe, report, &ready)
}

fn run_keepalived(
    options: &BenchOptions,
    prefix: &str,
    advert_int_cs: u32,
    report: &mut SystemReport,
) -> Result<(), LabError> {
    if !Path::new(keepalived::KEEPALIVED).is_file() {
        report.note =
            Some("not measured: keepalived is not installed (apt-get install keepalived)".into());
        return Ok(());
    }
    let mut lab = Lab::create(LabSpec::new(prefix, options.nodes))?;
    for node in lab.nodes() {
        start_backend(&mut lab, &options.binary, &node)?;
        keepalived::start(&mut lab, &node, KEEPALIVED_VIP, advert_int_cs)?;
    }
    let probe = start_probe(
        &lab,
        &options.binary,
        SocketAddr::new(IpAddr::V4(KEEPALIVED_VIP), UDP_PORT),
    )?;
    kill_cycles(options, &mut lab, probe, report, &|| true)
}

/// The backend as a lab process of `node` (labs without a cluster).
fn start_backend(lab: &mut Lab, binary: &Path, node: &str) -> Result<(), LabError> {
    lab.spawn(ProcessSpec::new(
        &crate::cluster::backend_name(node),
        node,
        binary,
        &["lab", "backend", "--node", node],
    ))
}

/// The kill cycles of a probe-based system.
fn kill_cycles(
    options: &BenchOptions,
    lab: &mut Lab,
    mut probe: ProbeProcess,
    report: &mut SystemReport,
    ready: &dyn Fn() -> bool,
) -> Result<(), LabError> {
    if !probe.wait_for_answers(None, 0, 50, Duration::from_secs(60)) {
        report.note = Some("not measured: the probe got fewer than 50 answers in 60 s".into());
        return Ok(());
    }
    report.measured = true;
    for cycle in 0..options.kills {
        let since_us = probe.latest_us();
        if !probe.wait_for_answers(None, since_us, 30, Duration::from_secs(30)) {
            report.failures.push(format!(
                "kill {}: no steady answers before it (30 s)",
                cycle + 1
            ));
            break;
        }
        let Some(owner) = probe.log().last_answer().map(|answer| answer.node.clone()) else {
            break;
        };
        let marks_before = probe.log().marks.len();
        probe
            .mark_kill(&owner)
            .map_err(|error| bench_error(error.to_string()))?;
        lab.kill_node(&owner)?;
        report.kills += 1;
        if !probe.wait_for(Duration::from_secs(5), |log| log.marks.len() > marks_before) {
            return Err(bench_error("the probe did not record the kill mark"));
        }
        let kill_us = probe.log().marks.last().map_or(0, |mark| mark.at_us);
        let recovered = probe.wait_for(options.recovery_timeout, |log| {
            log.samples.iter().any(|sample| {
                sample.sent_us > kill_us
                    && sample
                        .answer
                        .as_ref()
                        .is_some_and(|answer| answer.node != owner)
            })
        });
        let outage = probe.log().outage_after(kill_us, Some(&owner));
        match (recovered, outage.outage_ms) {
            (true, Some(outage_ms)) => {
                report.samples_ms.push(outage_ms);
                if options.verbose {
                    println!(
                        "  {} kill {:>3}: {owner} -> {}: {outage_ms:.0} ms",
                        report.system,
                        cycle + 1,
                        outage
                            .first_after
                            .as_ref()
                            .map_or("?", |answer| answer.node.as_str())
                    );
                }
            }
            _ => {
                let line = format!(
                    "kill {} of {owner}: no other node answered within {} s",
                    cycle + 1,
                    options.recovery_timeout.as_secs()
                );
                if options.verbose {
                    println!("  {} {line}", report.system);
                }
                report.failures.push(line);
            }
        }
        lab.revive_node(&owner)?;
        probe
            .mark(&format!("revive {owner}"))
            .map_err(|error| bench_error(error.to_string()))?;
        std::thread::sleep(options.settle);
        // The revived node is back in service (for BGP: its session and BFD are up again).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let log: ProbeLog = probe
        .stop()
        .map_err(|error| bench_error(error.to_string()))?;
    report.largest_gap_ms = log
        .gaps(0.0)
        .iter()
        .map(crate::probe::Gap::length_ms)
        .max_by(f64::total_cmp);
    Ok(())
}

fn run_serf(
    options: &BenchOptions,
    prefix: &str,
    report: &mut SystemReport,
) -> Result<(), LabError> {
    if crate::topology::run("which", &[serf::SERF]).is_err() {
        report.note = Some("not measured: serf is not installed".into());
        return Ok(());
    }
    let mut lab = Lab::create(LabSpec::new(prefix, options.nodes))?;
    let key_hex = crate::cluster::random_hex(32)?;
    let key_bytes: Vec<u8> = (0..key_hex.len() / 2)
        .filter_map(|index| u8::from_str_radix(key_hex.get(2 * index..2 * index + 2)?, 16).ok())
        .collect();
    let key = serf::encrypt_key(&key_bytes);
    let nodes = lab.nodes();
    for node in &nodes {
        serf::start(&mut lab, node, &key)?;
    }
    // Every agent has seen every other join.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let joined = nodes.iter().all(|node| {
            nodes.iter().filter(|other| *other != node).all(|other| {
                serf_log(&lab, other)
                    .is_some_and(|log| serf::count_events(&log, "EventMemberJoin", node) > 0)
            })
        });
        if joined {
            break;
        }
        if Instant::now() >= deadline {
            report.note = Some("not measured: the serf agents did not all join within 60 s".into());
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    report.measured = true;
    for cycle in 0..options.kills {
        let victim = nodes
            .get(cycle % nodes.len())
            .cloned()
            .ok_or_else(|| bench_error("no nodes"))?;
        let survivors: Vec<&String> = nodes.iter().filter(|node| **node != victim).collect();
        let failed_before: Vec<usize> = survivors
            .iter()
            .map(|node| {
                serf_log(&lab, node).map_or(0, |log| {
                    serf::count_events(&log, "EventMemberFailed", &victim)
                })
            })
            .collect();
        let joined_before: Vec<usize> = survivors
            .iter()
            .map(|node| {
                serf_log(&lab, node).map_or(0, |log| {
                    serf::count_events(&log, "EventMemberJoin", &victim)
                })
            })
            .collect();
        let killed_at = Instant::now();
        lab.kill_node(&victim)?;
        report.kills += 1;
        let detected = loop {
            let seen = survivors.iter().zip(&failed_before).any(|(node, before)| {
                serf_log(&lab, node).is_some_and(|log| {
                    serf::count_events(&log, "EventMemberFailed", &victim) > *before
                })
            });
            if seen {
                break Some(killed_at.elapsed());
            }
            if killed_at.elapsed() >= options.recovery_timeout {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        match detected {
            Some(elapsed) => {
                let ms = elapsed.as_secs_f64() * 1000.0;
                report.samples_ms.push(ms);
                if options.verbose {
                    println!(
                        "  serf kill {:>3}: {victim} detected after {ms:.0} ms",
                        cycle + 1
                    );
                }
            }
            None => report.failures.push(format!(
                "kill {} of {victim}: no survivor logged EventMemberFailed within {} s",
                cycle + 1,
                options.recovery_timeout.as_secs()
            )),
        }
        lab.revive_node(&victim)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let rejoined = survivors.iter().zip(&joined_before).all(|(node, before)| {
                serf_log(&lab, node).is_some_and(|log| {
                    serf::count_events(&log, "EventMemberJoin", &victim) > *before
                })
            });
            if rejoined {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(options.settle);
    }
    Ok(())
}

fn serf_log(lab: &Lab, node: &str) -> Option<String> {
    lab.process(&serf::process_name(node))
        .ok()
        .map(crate::process::Process::log_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_keys_round_trip() {
        for system in System::all() {
            assert_eq!(
                System::parse(&system.key()),
                Some(system),
                "{}",
                system.key()
            );
        }
        assert_eq!(
            System::parse("keepalived-0.1"),
            Some(System::Keepalived { advert_int_cs: 10 })
        );
        assert_eq!(System::parse("keepalived-0"), None);
        assert_eq!(System::parse("nope"), None);
        assert_eq!(System::IronlbL2.measure(), "outage");
        assert_eq!(System::Serf.measure(), "detection");
    }
}
