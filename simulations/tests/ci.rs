//! The bounded CI run: short seeds with random fault subsets must all pass (no safety
//! violation, convergence once the faults stop). A failure prints the seed, its faults and the
//! replay command. The long runs are `cargo run -p simulations --release -- --seeds N`.

use std::collections::BTreeSet;
use std::time::Duration;

use simulations::{replay_command, run_seeds, Fault, Overrides};

/// Seeds run by CI (debug build, a few minutes of CPU at most on a busy machine).
const CI_SEEDS: u64 = 64;

#[test]
fn bounded_seed_set_passes() {
    let overrides = Overrides {
        fault_phase: Some(Duration::from_secs(6)),
        liveness_phase: Some(Duration::from_secs(10)),
        ..Overrides::default()
    };
    let summary = run_seeds(10_000, CI_SEEDS, &overrides, 2, false);
    let mut text = String::new();
    for report in &summary.failed {
        text.push_str(&format!(
            "seed {} (faults {}): {:?}\n  replay: {}\n",
            report.options.seed,
            report.options.faults_text(),
            report.failures,
            replay_command(report, &overrides)
        ));
    }
    println!("{}", summary.table());
    assert_eq!(summary.seeds, CI_SEEDS);
    assert!(summary.failed.is_empty(), "{text}");
    assert!(!summary.failovers.is_empty(), "no failover was measured");
}

/// Gossip partitions (some nodes also lose the API server): every split brain across a partition
/// with the API reachable ends within the partition rule's bound, and the rule does fire.
#[test]
fn partition_rule_bounds_split_brain() {
    let overrides = Overrides {
        fault_phase: Some(Duration::from_secs(15)),
        liveness_phase: Some(Duration::from_secs(10)),
        faults: Some(BTreeSet::from([Fault::Partition, Fault::NodeApiLoss])),
        ..Overrides::default()
    };
    let summary = run_seeds(20_000, 16, &overrides, 2, false);
    let mut text = String::new();
    for report in &summary.failed {
        text.push_str(&format!(
            "seed {}: {:?}\n  replay: {}\n",
            report.options.seed,
            report.failures,
            replay_command(report, &overrides)
        ));
    }
    println!("{}", summary.table());
    assert!(summary.failed.is_empty(), "{text}");
    assert!(summary.rule_windows > 0, "no split brain was checked");
    assert!(
        summary.partition_yields > 0,
        "the partition rule never fired"
    );
}

/// The seeds in which a speaker restarted while the API server was out of its reach and, with
/// a status writer that listed its earlier life's `ServiceL2Status` objects only once, left
/// one behind for good: an IP nobody announced (README, "Bugs found"). They pass with the
/// writer's adoption retried on every flush.
#[test]
fn restart_during_api_outage_leaves_no_ip_dark() {
    for seed in [18, 397, 422] {
        let summary = run_seeds(seed, 1, &Overrides::default(), 1, false);
        let failures: Vec<_> = summary.failed.iter().map(|r| &r.failures).collect();
        assert!(failures.is_empty(), "seed {seed}: {failures:?}");
    }
}
