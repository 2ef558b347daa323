//! The same seed gives a byte-identical trace; different seeds give different traces.

use std::time::Duration;

use simulations::{run_seed, Overrides};

fn short() -> Overrides {
    Overrides {
        fault_phase: Some(Duration::from_secs(8)),
        liveness_phase: Some(Duration::from_secs(10)),
        ..Overrides::default()
    }
}

#[test]
fn same_seed_same_trace_hash() {
    let overrides = short();
    let mut hashes = Vec::new();
    for seed in [1, 9, 36] {
        let first = run_seed(seed, &overrides, false);
        let second = run_seed(seed, &overrides, false);
        assert_eq!(first.trace_hash.len(), 64);
        assert!(
            first.events > 1_000,
            "seed {seed} ran {} events",
            first.events
        );
        assert_eq!(
            first.trace_hash, second.trace_hash,
            "seed {seed} is not deterministic"
        );
        assert_eq!(first.events, second.events);
        assert_eq!(first.failovers, second.failovers);
        hashes.push(first.trace_hash);
    }
    hashes.sort();
    hashes.dedup();
    assert_eq!(
        hashes.len(),
        3,
        "different seeds must give different traces"
    );
}
