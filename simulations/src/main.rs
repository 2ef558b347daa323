//! `simulations`: run seeds of the deterministic simulator and print the summary table, or one
//! seed with its trace hash. Exits non-zero when a seed fails.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use simulations::{replay_command, run_seed, run_seeds, Bug, Fault, Overrides};

/// Deterministic multi-node simulator of ironlb's real cores.
#[derive(Debug, Parser)]
#[command(name = "simulations")]
struct Args {
    /// Run this many seeds (from --first) and print the summary table.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed of a batch.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Run only this seed and print `trace-hash: HEX`.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the readable trace of --seed.
    #[arg(long)]
    trace: bool,
    /// Speaker nodes (default: 3 to 7, drawn from the seed).
    #[arg(long)]
    nodes: Option<usize>,
    /// Minutes of faults (default: 20 to 60 s, drawn from the seed).
    #[arg(long, conflicts_with = "seconds")]
    minutes: Option<u64>,
    /// Seconds of faults.
    #[arg(long)]
    seconds: Option<u64>,
    /// Seconds of the quiet phase after the faults, within which everything must converge
    /// (default 30).
    #[arg(long)]
    quiet_seconds: Option<u64>,
    /// Exactly these faults, comma separated, or `none` (default: a random subset per seed).
    #[arg(long)]
    faults: Option<String>,
    /// Loss in per mille when `loss` is among the faults.
    #[arg(long)]
    loss_per_mille: Option<u32>,
    /// Inject a bug: ignore-claims, accept-any-key or ignore-leases.
    #[arg(long)]
    inject_bug: Option<Bug>,
    /// Turn the speakers' partition rule off (the layer 2 core gets no wall clock), to compare
    /// split brain across gossip partitions with and without it; its bound is then not asserted.
    #[arg(long)]
    no_lease_rule: bool,
    /// Worker threads (default: the available parallelism).
    #[arg(long)]
    jobs: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let faults = match args.faults.as_deref() {
        None => None,
        Some("none") => Some(BTreeSet::new()),
        Some(list) => {
            let mut set = BTreeSet::new();
            for name in list.split(',').filter(|s| !s.is_empty()) {
                match name.parse::<Fault>() {
                    Ok(fault) => {
                        set.insert(fault);
                    }
                    Err(error) => {
                        eprintln!("{error}");
                        return ExitCode::from(2);
                    }
                }
            }
            Some(set)
        }
    };
    let overrides = Overrides {
        nodes: args.nodes,
        fault_phase: args
            .minutes
            .map(|m| Duration::from_secs(m * 60))
            .or(args.seconds.map(Duration::from_secs)),
        faults,
        loss_per_mille: args.loss_per_mille,
        liveness_phase: args.quiet_seconds.map(Duration::from_secs),
        bug: args.inject_bug,
        no_lease_rule: args.no_lease_rule,
    };
    if let Some(seed) = args.seed {
        let start = std::time::Instant::now();
        let report = run_seed(seed, &overrides, args.trace);
        let wall = start.elapsed();
        println!(
            "seed {seed}: nodes {} faults {} simulated {:?} in {:.3}s wall, {} events",
            report.options.nodes,
            report.options.faults_text(),
            report.simulated,
            wall.as_secs_f64(),
            report.events
        );
        println!(
            "failovers {:?} false takeovers {} split brain {:?}",
            report.failovers, report.false_takeovers, report.split_brain
        );
        println!(
            "split brains across partitions {:?}; partition-rule stretches {} longest {:?}; yields {}",
            report.partition_splits,
            report.rule_windows,
            report.rule_split_max,
            report.partition_yields
        );
        println!("trace-hash: {}", report.trace_hash);
        if report.passed() {
            return ExitCode::SUCCESS;
        }
        for failure in &report.failures {
            println!("FAILURE {failure}");
        }
        println!("replay: {}", replay_command(&report, &overrides));
        return ExitCode::FAILURE;
    }
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let summary = run_seeds(args.first, args.seeds, &overrides, jobs, true);
    for report in &summary.failed {
        println!(
            "FAILED seed {} (faults {}):",
            report.options.seed,
            report.options.faults_text()
        );
        for failure in report.failures.iter().take(5) {
            println!("  {failure}");
        }
        println!("  replay: {}", replay_command(report, &overrides));
    }
    print!("{}", summary.table());
    if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
