//! What one seed simulates: the cluster shape and the faults, drawn from the seed (swarm testing:
//! each seed enables a random subset of the faults, with random rates).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A kind of fault the simulator can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// A node is killed (no goodbye) and restarts later with a new incarnation.
    Crash,
    /// A node's speaker stalls (GC-like pause): no datagram, timer or ARP answer is handled.
    Pause,
    /// Gossip datagrams and gratuitous ARP frames are lost at a rate.
    Loss,
    /// Datagrams are delayed by a random extra latency (which also reorders them).
    Delay,
    /// Datagrams are delivered twice.
    Duplicate,
    /// A random set of nodes is cut from the others in both directions, then healed.
    Partition,
    /// Traffic from some nodes to others is blocked in one direction only, then healed.
    AsymmetricPartition,
    /// Every node's clock runs at its own rate (a few hundred parts per million off).
    ClockDrift,
    /// The API server is unreachable for a while (no watch events, status writes fail).
    ApiOutage,
    /// Services are created and deleted, endpoints move, traffic policies change.
    ServiceChurn,
    /// The address pool is resized or replaced.
    PoolChurn,
    /// A node with the wrong gossip key keeps trying to join.
    WrongKey,
    /// The controller restarts and rebuilds its allocations from the Services' status.
    ControllerRestart,
    /// A node hands its IPs over (SIGTERM) and restarts.
    Drain,
    /// One node loses the API server (its watches stall, its Lease renewals and status writes
    /// fail) while gossip still reaches it; with `partition` in the same seed, a node can lose
    /// both.
    NodeApiLoss,
}

impl Fault {
    /// Every fault, in a fixed order.
    pub const ALL: [Self; 15] = [
        Self::Crash,
        Self::Pause,
        Self::Loss,
        Self::Delay,
        Self::Duplicate,
        Self::Partition,
        Self::AsymmetricPartition,
        Self::ClockDrift,
        Self::ApiOutage,
        Self::ServiceChurn,
        Self::PoolChurn,
        Self::WrongKey,
        Self::ControllerRestart,
        Self::Drain,
        Self::NodeApiLoss,
    ];

    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::Pause => "pause",
            Self::Loss => "loss",
            Self::Delay => "delay",
            Self::Duplicate => "duplicate",
            Self::Partition => "partition",
            Self::AsymmetricPartition => "asymmetric",
            Self::ClockDrift => "drift",
            Self::ApiOutage => "api-outage",
            Self::ServiceChurn => "service-churn",
            Self::PoolChurn => "pool-churn",
            Self::WrongKey => "wrong-key",
            Self::ControllerRestart => "controller-restart",
            Self::Drain => "drain",
            Self::NodeApiLoss => "node-api-loss",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fault name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault {0:?} (known: crash, pause, loss, delay, duplicate, partition, asymmetric, drift, api-outage, service-churn, pool-churn, wrong-key, controller-restart, drain, node-api-loss)")]
pub struct UnknownFault(pub String);

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(text: &str) -> Result<Self, UnknownFault> {
        Self::ALL
            .into_iter()
            .find(|fault| fault.as_str() == text)
            .ok_or_else(|| UnknownFault(text.to_owned()))
    }
}

/// A bug the simulator injects on purpose, to show that the checkers catch it. Only the
/// simulator's glue changes; the production cores are untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// The speaker glue hides the other nodes' claims from the election, so every election is
    /// fresh: the sticky rule is ignored.
    IgnoreClaims,
    /// Datagrams sealed with a wrong key are re-sealed with the cluster key on delivery, as a
    /// transport that forgot to check the key would accept them.
    AcceptAnyKey,
    /// The speaker glue hides the speakers' Leases from the layer 2 core: an owner never learns
    /// that a holder on the other side of a gossip partition is alive, so the partition rule
    /// never fires.
    IgnoreLeases,
}

impl FromStr for Bug {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "ignore-claims" => Ok(Self::IgnoreClaims),
            "accept-any-key" => Ok(Self::AcceptAnyKey),
            "ignore-leases" => Ok(Self::IgnoreLeases),
            other => Err(format!(
                "unknown bug {other:?} (known: ignore-claims, accept-any-key, ignore-leases)"
            )),
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::IgnoreClaims => "ignore-claims",
            Self::AcceptAnyKey => "accept-any-key",
            Self::IgnoreLeases => "ignore-leases",
        })
    }
}

/// What the command line fixes; the rest is drawn from the seed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Node count (otherwise 3 to 7).
    pub nodes: Option<usize>,
    /// Length of the fault phase (otherwise 20 to 60 s).
    pub fault_phase: Option<Duration>,
    /// Exactly these faults (otherwise a random subset of all).
    pub faults: Option<BTreeSet<Fault>>,
    /// Loss rate in per mille when [`Fault::Loss`] is enabled (otherwise 1 to 100).
    pub loss_per_mille: Option<u32>,
    /// Length of the quiet phase after the faults (otherwise 30 s).
    pub liveness_phase: Option<Duration>,
    /// A bug to inject.
    pub bug: Option<Bug>,
    /// Turn the speakers' partition rule off (`--no-lease-rule`): the layer 2 core is called
    /// without a wall clock, as when the API server is down; the split-brain bound is then
    /// measured, not asserted.
    pub no_lease_rule: bool,
}

/// The options of one seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The seed everything derives from.
    pub seed: u64,
    /// Speaker nodes.
    pub nodes: usize,
    /// Services created at start.
    pub services: usize,
    /// Faults happen during this phase.
    pub fault_phase: Duration,
    /// Then no fault: everything must converge within this bound.
    pub liveness_phase: Duration,
    /// The enabled faults.
    pub faults: BTreeSet<Fault>,
    /// Per-mille loss of datagrams and gratuitous frames (0 unless [`Fault::Loss`]).
    pub loss_per_mille: u32,
    /// Per-mille duplication (0 unless [`Fault::Duplicate`]).
    pub duplicate_per_mille: u32,
    /// Largest extra one-way delay (zero unless [`Fault::Delay`]).
    pub delay_max: Duration,
    /// Largest clock rate error in parts per million (0 unless [`Fault::ClockDrift`]).
    pub drift_ppm_max: u32,
    /// Mean time between two fault actions.
    pub fault_interval: Duration,
    /// The injected bug.
    pub bug: Option<Bug>,
    /// The speakers' partition rule (Leases and `ServiceL2Status`) is on.
    pub lease_rule: bool,
}

impl Options {
    /// Draws the options of `seed`, then applies `overrides`.
    pub fn from_seed(seed: u64, overrides: &Overrides) -> Self {
        // A stream of its own, so that changing the swarm does not shift the run's randomness.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(7);
        let nodes = overrides.nodes.unwrap_or_else(|| rng.random_range(3..=7));
        let fault_phase = overrides
            .fault_phase
            .unwrap_or_else(|| Duration::from_secs(rng.random_range(20..=60)));
        let faults: BTreeSet<Fault> = match &overrides.faults {
            Some(faults) => faults.clone(),
            None => Fault::ALL
                .into_iter()
                .filter(|_| rng.random_bool(0.5))
                .collect(),
        };
        let loss_per_mille = if faults.contains(&Fault::Loss) {
            overrides
                .loss_per_mille
                .unwrap_or_else(|| rng.random_range(1..=100))
        } else {
            0
        };
        let duplicate_per_mille = if faults.contains(&Fault::Duplicate) {
            rng.random_range(1..=100)
        } else {
            0
        };
        let delay_max = if faults.contains(&Fault::Delay) {
            Duration::from_micros(rng.random_range(100..=20_000))
        } else {
            Duration::ZERO
        };
        let drift_ppm_max = if faults.contains(&Fault::ClockDrift) {
            rng.random_range(1..=2_000)
        } else {
            0
        };
        Self {
            seed,
            nodes,
            services: rng.random_range(2..=10),
            fault_phase,
            liveness_phase: overrides.liveness_phase.unwrap_or(Duration::from_secs(30)),
            faults,
            loss_per_mille,
            duplicate_per_mille,
            delay_max,
            drift_ppm_max,
            fault_interval: Duration::from_millis(rng.random_range(500..=5_000)),
            bug: overrides.bug,
            lease_rule: !overrides.no_lease_rule,
        }
    }

    /// Whether `fault` is enabled.
    pub fn has(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }

    /// The enabled faults, comma separated (`none` when there are none).
    pub fn faults_text(&self) -> String {
        if self.faults.is_empty() {
            return "none".to_owned();
        }
        self.faults
            .iter()
            .map(|fault| fault.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_options_and_overrides_win() {
        let a = Options::from_seed(42, &Overrides::default());
        let b = Options::from_seed(42, &Overrides::default());
        assert_eq!(a, b);
        let fixed = Options::from_seed(
            42,
            &Overrides {
                nodes: Some(9),
                faults: Some(BTreeSet::from([Fault::Loss])),
                loss_per_mille: Some(50),
                ..Overrides::default()
            },
        );
        assert_eq!(fixed.nodes, 9);
        assert_eq!(fixed.faults_text(), "loss");
        assert_eq!(fixed.loss_per_mille, 50);
        assert_eq!(fixed.duplicate_per_mille, 0);
    }

    #[test]
    fn fault_names_round_trip() {
        for fault in Fault::ALL {
            assert_eq!(fault.as_str().parse::<Fault>(), Ok(fault));
        }
        assert!("meteor".parse::<Fault>().is_err());
    }

    #[test]
    fn swarm_varies_the_fault_set() {
        let sets: BTreeSet<String> = (0..50)
            .map(|seed| Options::from_seed(seed, &Overrides::default()).faults_text())
            .collect();
        assert!(sets.len() > 40, "{sets:?}");
    }
}
