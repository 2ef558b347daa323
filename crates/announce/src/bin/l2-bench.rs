//! `l2-bench`: ARP reply latency and throughput of our responder next to the Linux kernel's.
//!
//! Run as root: `cargo run --release -p ironlb-announce --bin l2-bench [-- SECONDS COUNT]`.
//!
//! Topology (namespaces `ilb2z-*`): a bridge, a client `c` (10.0.0.1/24), node `ours` running
//! the announcer for 10.0.0.100 (not configured on any interface), node `kernel` with
//! 10.0.0.200/24 configured so that Linux answers. The client measures, one after the other,
//! ping-pong round trips (COUNT requests) and a flood (SECONDS seconds) against each. The binary
//! re-executes itself inside the namespaces (`--role announce|probe`), so one build is enough.

use std::process::{Child, ExitCode, Stdio};
use std::time::Duration;

use ironlb_announce::l2::netns::{is_root, Topology};
use ironlb_announce::l2::{probe, tool};

const OURS: &str = "10.0.0.100";
const KERNEL: &str = "10.0.0.200";

fn role(args: &[String]) -> ExitCode {
    let result = match args.first().map(String::as_str) {
        Some("announce") => tool::parse_args(args[1..].iter().cloned())
            .map_err(|e| e.to_string())
            .and_then(|options| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime
                    .block_on(tool::run(options, std::future::pending()))
                    .map_err(|e| e.to_string())
            }),
        Some("probe") => probe::run_args(&args[1..]),
        _ => Err("unknown role".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

/// Parses `key=value` words of a probe's output.
fn field(output: &str, key: &str) -> f64 {
    output
        .split_whitespace()
        .find_map(|word| {
            word.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
        })
        .and_then(|value| value.parse().ok())
        .unwrap_or(f64::NAN)
}

fn probe_in(topology: &Topology, args: &[&str]) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = topology
        .command("c", exe.to_str().ok_or("non-UTF-8 path")?)
        .arg("--role")
        .arg("probe")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

struct Figures {
    p50_us: f64,
    p99_us: f64,
    answered_per_s: f64,
    sent_per_s: f64,
}

fn measure(topology: &Topology, vip: &str, seconds: &str, count: &str) -> Result<Figures, String> {
    // Warm up: neighbour entries, caches, page faults.
    probe_in(topology, &["latency", "eth0", "10.0.0.1", vip, "200"])?;
    let latency = probe_in(topology, &["latency", "eth0", "10.0.0.1", vip, count])?;
    let flood = probe_in(topology, &["flood", "eth0", "10.0.0.1", vip, seconds])?;
    Ok(Figures {
        p50_us: field(&latency, "p50_us"),
        p99_us: field(&latency, "p99_us"),
        answered_per_s: field(&flood, "answered_per_s"),
        sent_per_s: field(&flood, "sent_per_s"),
    })
}

/// Runs `body` while the announcer (behind `wrapper`, e.g. `["chrt", "-f", "10"]`, or nothing)
/// serves `OURS`.
fn with_announcer<T>(
    topology: &Topology,
    wrapper: &[&str],
    body: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let exe = exe.to_str().ok_or("non-UTF-8 path")?;
    let mut words: Vec<&str> = wrapper.to_vec();
    words.extend([
        exe,
        "--role",
        "announce",
        "--interface",
        "eth0",
        "--ip",
        OURS,
    ]);
    let mut command = topology.command("ours", words[0]);
    command.args(&words[1..]).stdout(Stdio::null());
    let mut announcer: Child = command.spawn().map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(700));
    let result = body();
    let _ = announcer.kill();
    let _ = announcer.wait();
    result
}

fn bench(seconds: &str, count: &str) -> Result<(), String> {
    let mut topology = Topology::new("ilb2z").map_err(|e| e.to_string())?;
    for node in ["c", "ours", "kernel"] {
        topology.add_namespace(node).map_err(|e| e.to_string())?;
        topology.connect(node, "eth0").map_err(|e| e.to_string())?;
    }
    topology
        .ip("c", &["addr", "add", "10.0.0.1/24", "dev", "eth0"])
        .map_err(|e| e.to_string())?;
    topology
        .ip(
            "kernel",
            &["addr", "add", &format!("{KERNEL}/24"), "dev", "eth0"],
        )
        .map_err(|e| e.to_string())?;
    let kernel = measure(&topology, KERNEL, seconds, count)?;
    let ours = with_announcer(&topology, &[], || measure(&topology, OURS, seconds, count))?;
    println!("ARP responder benchmark (veth + bridge in namespaces, {count} ping-pong requests, {seconds} s flood)");
    println!(
        "{:<22} {:>10} {:>10} {:>14} {:>14}",
        "responder", "p50 (us)", "p99 (us)", "answered/s", "offered/s"
    );
    for (name, figures) in [("kernel", &kernel), ("ironlb", &ours)] {
        println!(
            "{:<22} {:>10.1} {:>10.1} {:>14.0} {:>14.0}",
            name, figures.p50_us, figures.p99_us, figures.answered_per_s, figures.sent_per_s
        );
    }
    println!(
        "ironlb: throughput ratio to the kernel = {:.2} (target >= 0.50), p99 = {:.1} us (target <= 100 us)",
        ours.answered_per_s / kernel.answered_per_s,
        ours.p99_us
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--role") {
        return role(&args[1..]);
    }
    if !is_root() {
        eprintln!("l2-bench needs root (network namespaces)");
        return ExitCode::from(1);
    }
    let seconds = args.first().cloned().unwrap_or_else(|| "2".into());
    let count = args.get(1).cloned().unwrap_or_else(|| "5000".into());
    match bench(&seconds, &count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}
