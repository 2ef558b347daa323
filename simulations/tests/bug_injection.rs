//! Bugs injected on purpose are caught within 1,000 seeds: the checkers are not vacuous.

use std::collections::BTreeSet;
use std::time::Duration;

use simulations::{run_seed, Bug, Fault, Overrides};

/// Runs seeds until one fails; returns the first failing seed.
fn first_failure(overrides: &Overrides, seeds: u64) -> Option<(u64, Vec<String>)> {
    (0..seeds).find_map(|seed| {
        let report = run_seed(seed, overrides, false);
        (!report.passed()).then_some((seed, report.failures))
    })
}

#[test]
fn an_election_that_ignores_stickiness_is_caught() {
    let overrides = Overrides {
        fault_phase: Some(Duration::from_secs(8)),
        liveness_phase: Some(Duration::from_secs(10)),
        bug: Some(Bug::IgnoreClaims),
        ..Overrides::default()
    };
    let found = first_failure(&overrides, 1_000);
    let (seed, failures) = found.expect("ignore-claims not caught within 1,000 seeds");
    println!("ignore-claims caught by seed {seed}: {failures:?}");
    // The same seeds pass without the bug.
    let clean = Overrides {
        bug: None,
        ..overrides
    };
    assert!(run_seed(seed, &clean, false).passed());
}

#[test]
fn a_transport_that_skips_the_key_check_is_caught() {
    let overrides = Overrides {
        fault_phase: Some(Duration::from_secs(5)),
        liveness_phase: Some(Duration::from_secs(5)),
        faults: Some(BTreeSet::from([Fault::WrongKey])),
        bug: Some(Bug::AcceptAnyKey),
        ..Overrides::default()
    };
    let (seed, failures) =
        first_failure(&overrides, 1_000).expect("accept-any-key not caught within 1,000 seeds");
    assert!(
        failures.iter().any(|f| f.contains("wrong-key node")),
        "{failures:?}"
    );
    let clean = Overrides {
        bug: None,
        ..overrides
    };
    assert!(run_seed(seed, &clean, false).passed());
}

#[test]
fn a_partition_rule_that_ignores_leases_is_caught() {
    // Partitions only, long enough for split brains to outlast the rule's bound.
    let overrides = Overrides {
        fault_phase: Some(Duration::from_secs(15)),
        liveness_phase: Some(Duration::from_secs(10)),
        faults: Some(BTreeSet::from([Fault::Partition])),
        bug: Some(Bug::IgnoreLeases),
        ..Overrides::default()
    };
    let (seed, failures) =
        first_failure(&overrides, 100).expect("ignore-leases not caught within 100 seeds");
    println!("ignore-leases caught by seed {seed}: {failures:?}");
    assert!(
        failures.iter().any(|f| f.contains("split brain")),
        "{failures:?}"
    );
    let clean = Overrides {
        bug: None,
        ..overrides
    };
    assert!(run_seed(seed, &clean, false).passed());
}
