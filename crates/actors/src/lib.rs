//! The speaker: turns cluster state into layer 2 announcements, as MetalLB's speaker does, with
//! `decisions.md`'s sticky election and planned handover.
//!
//! This crate owns deciding, per Service and protocol, whether this node announces
//! ([`decide`], pure, table-tested), the cluster index the watchers feed ([`cluster`]), the
//! layer 2 announcer core ([`layer2`]) and the ractor supervisor tree that drives them
//! ([`tree`]). It does not own the wire protocols (`ironlb-announce`), membership
//! (`ironlb-gossip`), the metallb.io types or their validation (`ironlb-api`).
//!
//! The IO boundary is [`tree`] (and [`http`]): every actor is a thin shell that turns watch
//! events, gossip events and timer fires into calls on the pure cores, and runs what they return.
//!
//! ```text
//!                              Speaker (root: restarts a crashed child with backoff 100 ms..5 s;
//!                                       > RESTARTS_MAX crashes in RESTART_WINDOW → whole tree)
//!   ┌──────────────┬───────────────┼──────────────────┬──────────────────┐
//!   ▼              ▼               ▼                  ▼                  ▼
//! ClusterWatch   Membership      Layer2             StatusWriter       Http
//! kube watchers  gossip driver   Layer2Core +       ServiceL2Status,   /metrics /healthz
//! → ClusterIndex (UDP, sealed)   announce::l2       Events nodeAssigned /readyz
//!   (task)                       Driver (ARP/NDP)   (coalesced 50 ms,
//!   │                │               ▲   │  │        ≤16 in flight)
//!   │ snapshot (watch cell)          │   │  └─ StatusMsg::{L2, Assigned} ──────────► StatusWriter
//!   ├────────────── Layer2Msg::Changed ──┤   └─ MembershipMsg::Claims / Leaving ──► Membership
//!   │                │ members (watch cell) + Layer2Msg::Changed
//!   └─ MembershipMsg::Seeds (Node InternalIPs) ─► Membership
//!
//!   SIGTERM → SpeakerMsg::Shutdown{grace} → Layer2Msg::Handover (leaving=true in gossip; keep
//!   announcing until every IP is claimed by another member or the grace ends; withdraw)
//!   → MembershipMsg::Leave (goodbye) → children stopped.
//! ```
//!
//! Mailboxes: ractor's mailboxes are unbounded, so the tree bounds them by design: the data
//! (cluster snapshot, gossip view) lives in `tokio::sync::watch` cells and messages are change
//! signals, answered by one reconcile of the latest state; the watch queue
//! ([`tree::WATCH_QUEUE_MAX`]) and the layer 2 driver queue are bounded channels.

pub mod bgp;
pub mod cluster;
pub mod decide;
pub mod http;
pub mod layer2;
pub mod metrics;
pub mod model;
pub mod status;
pub mod tree;
