//! The speaker: turns cluster state into layer 2 and BGP announcements, as MetalLB's speaker
//! does, with `decisions.md`'s sticky election and planned handover.
//!
//! This crate owns deciding, per Service and protocol, whether this node announces
//! ([`decide`], pure, table-tested), the cluster index the watchers feed ([`cluster`]), the
//! layer 2 and BGP announcer cores ([`layer2`], [`bgp`]), `ironlb status` ([`status`]) and
//! the ractor supervisor tree that drives them ([`tree`]). It does not own the wire protocols
//! (`ironlb-announce`), membership (`ironlb-gossip`), the metallb.io types or their validation
//! (`ironlb-api`).
//!
//! The IO boundary is [`tree`] (and [`http`], [`status::collect`]): every actor is a thin shell that turns watch
//! events, gossip events and timer fires into calls on the pure cores, and runs what they return.
//!
//! ```text
//!                              Speaker (root: restarts a crashed child with backoff 100 ms..5 s;
//!                                       > RESTARTS_MAX crashes in RESTART_WINDOW → whole tree)
//!   ┌─────────────┬─────────────┬──────────────┼──────────────┬──────────────┐
//!   ▼             ▼             ▼              ▼              ▼              ▼
//! ClusterWatch  Membership    Layer2         Bgp            StatusWriter   Http
//! kube watchers gossip driver Layer2Core +   BgpCore +      ServiceL2/BGP- /metrics /healthz
//! + Lease renew (UDP)         announce::l2   BgpSession     Status, Config-/readyz
//! → ClusterIndex              Driver         child per      urationState,  /debug/members
//!   (task)                    (ARP/NDP)      BGPPeer (its   Events (coal-
//!                                            driver + BFD)  esced 50 ms)
//!   snapshot (watch cell) + Changed ──► Layer2, Bgp (a burst → one queued Reconcile)
//!   members (watch cell) + Changed ──► Layer2 ── Claims / Leaving ──► Membership
//!   Layer2, Bgp ── StatusMsg::{L2, Bgp, Assigned, AnnounceFailed} ──► StatusWriter
//!   Bgp ── routes (watch cell per session) + SessionMsg::Routes ──► BgpSession
//!
//!   SIGTERM → SpeakerMsg::Shutdown{grace} → Layer2Msg::Handover ∥ BgpMsg::PlannedStop
//!   (GRACEFUL_SHUTDOWN, withdraw, Cease) → StatusMsg::FlushNow → MembershipMsg::Leave → stop.
//! ```
//!
//! Mailboxes: ractor's mailboxes are unbounded, so the tree bounds them by design: the data
//! (cluster snapshot, gossip view) lives in `tokio::sync::watch` cells and messages are change
//! signals that coalesce into one queued reconcile of the latest state ([`tree::Coalesce`],
//! `tests/mailbox.rs`); the watch queue
//! ([`tree::WATCH_QUEUE_MAX`]) and the layer 2 driver queue are bounded channels.

pub mod bgp;
pub mod cluster;
pub mod decide;
pub mod http;
pub mod layer2;
pub mod metrics;
pub mod model;
pub mod status;
mod status_changes;
pub mod tree;
