//! The deterministic multi-node simulator: ironlb's real cores under thousands of seeded fault
//! schedules, on virtual time (STYLE.md practice 20; TigerBeetle's VOPR is the model).
//!
//! This crate owns the simulated world and the checkers: the network (loss, delay, duplication,
//! reordering, partitions), the layer 2 segment (who answers ARP for each IP), the API server
//! ([`api`], with the speakers' Leases and `ServiceL2Status` objects for the partition rule),
//! the fault schedule drawn from the seed ([`options`]), the safety and liveness checkers and
//! the per-seed measurements ([`cluster`]), the trace hash ([`trace`]) and the batch runner with
//! its summary table ([`run`]). It owns none of the logic under test: gossip
//! membership and the sealed transport (`ironlb-gossip`), the election, the gratuitous ARP
//! schedule (`ironlb-announce`), the speaker decisions and [`ironlb_actors::layer2::Layer2Core`]
//! (`ironlb-actors`), the allocator and the controller core (`ironlb-alloc`,
//! `ironlb-controller`) all run unchanged.
//!
//! ```text
//!  seed ─► Options (swarm: faults, rates) ─► Sim: one event queue on virtual time
//!     speakers: Membership ◄─datagrams─► network ; members ─► Layer2Core ─► GratuitousSchedule
//!     controller: Core<AllocatorIpam> ◄─watch─ Api ─watch─► speakers' Snapshot
//!     checkers after every step (safety) and after the faults stop (liveness) ─► Report
//! ```

pub mod api;
pub mod bgp;
pub mod cluster;
pub mod options;
pub mod run;
pub mod trace;

pub use cluster::{Report, Sim};
pub use options::{Bug, Fault, Options, Overrides};
pub use run::{replay_command, run_seed, run_seeds, Summary};
