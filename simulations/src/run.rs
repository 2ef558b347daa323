//! Running many seeds (in parallel threads, each seed independent) and the summary table.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::cluster::{Report, Sim, SPLIT_BRAIN_BOUND};
use crate::options::{Options, Overrides};

/// Runs one seed.
pub fn run_seed(seed: u64, overrides: &Overrides, print: bool) -> Report {
    let options = Options::from_seed(seed, overrides);
    match Sim::new(options.clone(), print) {
        Ok(sim) => sim.run(),
        Err(error) => Report {
            options,
            failures: vec![error.to_string()],
            failovers: Vec::new(),
            false_takeovers: 0,
            split_brain: Duration::ZERO,
            events: 0,
            simulated: Duration::ZERO,
            trace_hash: String::new(),
            converged_after: None,
            partition_splits: Vec::new(),
            rule_split_max: Duration::ZERO,
            rule_windows: 0,
            partition_yields: 0,
        },
    }
}

/// The command that replays `report`'s seed with full tracing.
pub fn replay_command(report: &Report, overrides: &Overrides) -> String {
    let mut command = format!(
        "cargo run -p simulations --release -- --seed {} --trace",
        report.options.seed
    );
    if let Some(nodes) = overrides.nodes {
        let _ = write!(command, " --nodes {nodes}");
    }
    if let Some(phase) = overrides.fault_phase {
        let _ = write!(command, " --seconds {}", phase.as_secs());
    }
    if let Some(faults) = &overrides.faults {
        let list: Vec<&str> = faults.iter().map(|f| f.as_str()).collect();
        let _ = write!(
            command,
            " --faults {}",
            if list.is_empty() {
                "none".to_owned()
            } else {
                list.join(",")
            }
        );
    }
    if let Some(quiet) = overrides.liveness_phase {
        let _ = write!(command, " --quiet-seconds {}", quiet.as_secs());
    }
    if let Some(loss) = overrides.loss_per_mille {
        let _ = write!(command, " --loss-per-mille {loss}");
    }
    if let Some(bug) = overrides.bug {
        let _ = write!(command, " --inject-bug {bug}");
    }
    if overrides.no_lease_rule {
        command.push_str(" --no-lease-rule");
    }
    command
}

/// What a batch of seeds produced.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// The failing reports.
    pub failed: Vec<Report>,
    /// Every failover time.
    pub failovers: Vec<Duration>,
    /// Sum of false takeovers.
    pub false_takeovers: u64,
    /// Seeds with at least one false takeover.
    pub seeds_with_false_takeovers: u64,
    /// The first of those seeds (to replay them).
    pub false_takeover_seeds: Vec<u64>,
    /// Sum of split-brain time.
    pub split_brain: Duration,
    /// Longest split-brain time of one seed.
    pub split_brain_max: Duration,
    /// Longest convergence after the faults stopped.
    pub converged_max: Duration,
    /// Every split brain of one IP across a gossip partition.
    pub partition_splits: Vec<Duration>,
    /// Seeds with at least one.
    pub seeds_with_partition_splits: u64,
    /// Longest split-brain stretch while the partition rule's preconditions held.
    pub rule_split_max: Duration,
    /// Stretches checked against the bound.
    pub rule_windows: u64,
    /// Partition-rule yields.
    pub partition_yields: u64,
    /// Events handled.
    pub events: u64,
    /// Simulated time.
    pub simulated: Duration,
    /// Wall time.
    pub wall: Duration,
}

impl Summary {
    fn add(&mut self, report: Report) {
        self.seeds += 1;
        self.failovers.extend(report.failovers.iter().copied());
        self.false_takeovers += report.false_takeovers;
        if report.false_takeovers > 0 {
            self.seeds_with_false_takeovers += 1;
            if self.false_takeover_seeds.len() < 10 {
                self.false_takeover_seeds.push(report.options.seed);
            }
        }
        self.split_brain += report.split_brain;
        self.split_brain_max = self.split_brain_max.max(report.split_brain);
        self.partition_splits
            .extend(report.partition_splits.iter().copied());
        if !report.partition_splits.is_empty() {
            self.seeds_with_partition_splits += 1;
        }
        self.rule_split_max = self.rule_split_max.max(report.rule_split_max);
        self.rule_windows += report.rule_windows;
        self.partition_yields += report.partition_yields;
        if let Some(converged) = report.converged_after {
            self.converged_max = self.converged_max.max(converged);
        }
        self.events += report.events;
        self.simulated += report.simulated;
        if !report.passed() {
            self.failed.push(report);
        }
    }

    /// The `q` quantile (0..=1) of the failover times, in ms.
    pub fn failover_ms(&self, q: f64) -> Option<f64> {
        quantile_ms(&self.failovers, q)
    }

    /// The `q` quantile (0..=1) of the split brains across partitions, in ms.
    pub fn partition_split_ms(&self, q: f64) -> Option<f64> {
        quantile_ms(&self.partition_splits, q)
    }

    /// The summary table.
    pub fn table(&self) -> String {
        let ms = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let wall = self.wall.as_secs_f64().max(1e-9);
        let mut out = String::new();
        let rows = [
            ("seeds", self.seeds.to_string()),
            ("failed seeds", self.failed.len().to_string()),
            ("failovers measured", self.failovers.len().to_string()),
            ("failover p50 (sim ms)", ms(self.failover_ms(0.50))),
            ("failover p99 (sim ms)", ms(self.failover_ms(0.99))),
            ("failover max (sim ms)", ms(self.failover_ms(1.0))),
            (
                "false takeovers",
                format!(
                    "{} (in {} seeds)",
                    self.false_takeovers, self.seeds_with_false_takeovers
                ),
            ),
            (
                "  seeds (first 10)",
                format!("{:?}", self.false_takeover_seeds),
            ),
            (
                "split brain total (sim s)",
                format!("{:.3}", self.split_brain.as_secs_f64()),
            ),
            (
                "split brain max/seed (sim s)",
                format!("{:.3}", self.split_brain_max.as_secs_f64()),
            ),
            (
                "split brains across partitions",
                format!(
                    "{} (in {} seeds)",
                    self.partition_splits.len(),
                    self.seeds_with_partition_splits
                ),
            ),
            ("  each, p50 (sim ms)", ms(self.partition_split_ms(0.50))),
            ("  each, p99 (sim ms)", ms(self.partition_split_ms(0.99))),
            ("  each, max (sim ms)", ms(self.partition_split_ms(1.0))),
            (
                "  total (sim s)",
                format!(
                    "{:.3}",
                    self.partition_splits.iter().sum::<Duration>().as_secs_f64()
                ),
            ),
            (
                "partition-rule stretches checked",
                self.rule_windows.to_string(),
            ),
            (
                "  longest (sim ms)",
                format!(
                    "{:.1} (bound {:.0})",
                    self.rule_split_max.as_secs_f64() * 1000.0,
                    SPLIT_BRAIN_BOUND.as_secs_f64() * 1000.0
                ),
            ),
            ("partition-rule yields", self.partition_yields.to_string()),
            (
                "convergence after faults, max (sim s)",
                format!("{:.0}", self.converged_max.as_secs_f64()),
            ),
            ("events", self.events.to_string()),
            (
                "events per wall second",
                format!("{:.0}", self.events as f64 / wall),
            ),
            (
                "simulated / wall",
                format!("{:.0}x", self.simulated.as_secs_f64() / wall),
            ),
            ("wall time (s)", format!("{wall:.1}")),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "{name:<40} {value:>20}");
        }
        out
    }
}

/// The `q` quantile (0..=1) of `values`, in ms.
fn quantile_ms(values: &[Duration], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).map(|d| d.as_secs_f64() * 1000.0)
}

/// Runs `count` seeds from `first` on `jobs` threads; `progress` prints a line per 100 seeds.
pub fn run_seeds(
    first: u64,
    count: u64,
    overrides: &Overrides,
    jobs: usize,
    progress: bool,
) -> Summary {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(first));
    let reports: Arc<Mutex<Vec<Report>>> = Arc::new(Mutex::new(Vec::new()));
    let end = first.saturating_add(count);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            let next = next.clone();
            let reports = reports.clone();
            scope.spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let report = run_seed(seed, overrides, false);
                let mut reports = reports.lock().unwrap_or_else(PoisonError::into_inner);
                reports.push(report);
                if progress && reports.len().is_multiple_of(100) {
                    eprintln!("{} seeds done", reports.len());
                }
            });
        }
    });
    let mut reports = std::mem::take(&mut *reports.lock().unwrap_or_else(PoisonError::into_inner));
    reports.sort_by_key(|r| r.options.seed);
    let mut summary = Summary::default();
    for report in reports {
        summary.add(report);
    }
    summary.wall = start.elapsed();
    summary
}
