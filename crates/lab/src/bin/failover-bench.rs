//! `failover-bench`: ironlb's failover next to keepalived and serf, in the same network-namespace
//! topology, with the same client-side probe and the same node death. Needs root and the
//! `ironlb` binary (`cargo build --release -p ironlb`).
//!
//! ```text
//! cargo build --release -p ironlb
//! sudo cargo run --release -p ironlb-lab --bin failover-bench -- --kills 20
//! ```
//!
//! Prints p50/p99/max per system and the ratios to ironlb layer 2; `--json FILE` writes every
//! figure and every kill.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ironlb_lab::bench::stats::ratio;
use ironlb_lab::bench::{self, BenchOptions, BenchReport, System, SystemReport};

/// ironlb's failover measured next to keepalived and serf (root; builds network namespaces).
#[derive(Debug, Parser)]
#[command(name = "failover-bench")]
struct Args {
    /// Kills per system.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Nodes per lab.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Systems to run, comma-separated: ironlb-l2, ironlb-bgp-bfd, keepalived-<advert_int
    /// seconds> (e.g. keepalived-1, keepalived-0.04, keepalived-0.01), serf. Default: all.
    #[arg(long, value_delimiter = ',')]
    systems: Vec<String>,
    /// The ironlb binary (default: $IRONLB_BIN, or next to this executable).
    #[arg(long)]
    ironlb: Option<PathBuf>,
    /// Namespace prefix of the labs (each system's lab adds a suffix).
    #[arg(long, default_value = "h3b")]
    prefix: String,
    /// Seconds to wait for recovery (or detection) after a kill before counting a failure.
    #[arg(long, default_value_t = 30)]
    recovery_timeout_secs: u64,
    /// Milliseconds to let a system settle after a node is revived.
    #[arg(long, default_value_t = 3000)]
    settle_ms: u64,
    /// Write the report (every kill's figure) as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only print the table (no line per kill).
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !ironlb_lab::topology::is_root() {
        eprintln!("failover-bench builds network namespaces: run it as root");
        return ExitCode::from(2);
    }
    let binary = match bench::locate_ironlb(args.ironlb.as_deref()) {
        Ok(binary) => binary,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let systems = if args.systems.is_empty() {
        System::all()
    } else {
        let mut systems = Vec::new();
        for key in &args.systems {
            match System::parse(key) {
                Some(system) => systems.push(system),
                None => {
                    eprintln!("unknown system {key:?}");
                    return ExitCode::from(2);
                }
            }
        }
        systems
    };
    let options = BenchOptions {
        binary,
        kills: args.kills,
        nodes: args.nodes,
        prefix: args.prefix,
        recovery_timeout: Duration::from_secs(args.recovery_timeout_secs),
        settle: Duration::from_millis(args.settle_ms),
        verbose: !args.quiet,
    };
    let load_before = bench::load_average();
    println!(
        "failover-bench: {} kills per system, {} nodes, ironlb {}; load average {load_before}",
        options.kills,
        options.nodes,
        options.binary.display()
    );
    let mut reports = Vec::new();
    for system in systems {
        println!("== {} ({})", system.key(), system.description());
        let report = bench::run_system(&options, system);
        print_line(&report);
        reports.push(report);
    }
    let report = BenchReport {
        load_before,
        load_after: bench::load_average(),
        nodes: options.nodes,
        kills: options.kills,
        systems: reports,
    };
    print_table(&report);
    if let Some(path) = &args.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|text| std::fs::write(path, text + "\n"));
        if let Err(error) = written {
            eprintln!("cannot write {}: {error}", path.display());
            return ExitCode::from(1);
        }
        println!("report written to {}", path.display());
    }
    ExitCode::SUCCESS
}

fn print_line(report: &SystemReport) {
    match &report.figures {
        Some(figures) => println!(
            "   {} {}: {} of {} kills, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            report.system,
            report.measure,
            figures.count,
            report.kills,
            figures.p50_ms,
            figures.p99_ms,
            figures.max_ms
        ),
        None => println!("   {}: no figures", report.system),
    }
    if let Some(note) = &report.note {
        println!("   note: {note}");
    }
}

fn print_table(report: &BenchReport) {
    let reference = report
        .systems
        .iter()
        .find(|system| system.system == "ironlb-l2")
        .and_then(|system| system.figures.clone());
    println!();
    println!(
        "{:<58} {:>9} {:>7} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "system", "measure", "ok/kill", "p50 ms", "p99 ms", "max ms", "p50/l2", "p99/l2"
    );
    for system in &report.systems {
        let ok = format!("{}/{}", system.samples_ms.len(), system.kills);
        match &system.figures {
            Some(figures) => {
                let ratio_text = |value: f64, reference: Option<f64>| {
                    reference
                        .and_then(|reference| ratio(value, reference))
                        .map_or("-".to_owned(), |ratio| format!("{ratio:.1}x"))
                };
                println!(
                    "{:<58} {:>9} {:>7} {:>9.0} {:>9.0} {:>9.0} {:>10} {:>10}",
                    system.description,
                    system.measure,
                    ok,
                    figures.p50_ms,
                    figures.p99_ms,
                    figures.max_ms,
                    ratio_text(figures.p50_ms, reference.as_ref().map(|r| r.p50_ms)),
                    ratio_text(figures.p99_ms, reference.as_ref().map(|r| r.p99_ms)),
                );
            }
            None => println!(
                "{:<58} {:>9} {:>7} {}",
                system.description,
                system.measure,
                ok,
                system.note.as_deref().unwrap_or("not measured")
            ),
        }
    }
    println!(
        "\nload average before {} / after {}",
        report.load_before, report.load_after
    );
}
