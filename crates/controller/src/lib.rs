//! `ironlb controller`: MetalLB's controller flow over the Kubernetes API.
//!
//! This crate owns turning Services and the metallb.io configuration into Service status: it
//! watches the API, runs MetalLB's `convergeBalancer` for every `type: LoadBalancer` Service
//! (`metallb.md` §2), and publishes `status.loadBalancer.ingress` with the
//! `metallb.io/ip-allocated-from-pool` annotation, Events, `IPAddressPool.status`, the
//! `controller` `ConfigurationState`, the memberlist Secret and the metrics.
//!
//! It does not own address bookkeeping (`ironlb-alloc`), the metallb.io types, their validation
//! or the Service → request translation (`ironlb-api`), nor announcing (the speaker).
//!
//! The IO boundary: [`core`] is pure (no kube, no tokio, no clock) and is tested with plain
//! `#[test]`s and object builders; [`run`] and [`publish`] are the kube-rs shell around it, in
//! the style "watch → pure index → publish".
//!
//! ```text
//!  watcher(Services, all ns) ──┐
//!  watcher(IPAddressPool, L2Advertisement,     │ Message (Reset / Applied / Deleted)
//!          BGPAdvertisement, BGPPeer,          │ mpsc, INDEX_QUEUE_LEN
//!          BFDProfile, Community; --namespace) ┼──────────────► index task ── owns Core<AllocatorIpam>
//!  watcher(Namespaces, Nodes) ─────────────────┤                  │ batch ≤ INDEX_BATCH_MAX,
//!  watcher(Secrets, ConfigMaps; --namespace) ──┘                  │ parse config, converge,
//!                                                                 │ drain poll_action()
//!             ┌───────────────────────────┬───────────────────────┼─────────────────────┐
//!             │ StatusWrite               │ ServiceEvent          │ ClusterStatus       │ metrics,
//!             │ mpsc STATUS_QUEUE_LEN     │ mpsc EVENT_QUEUE_LEN  │ mpsc CLUSTER_…_LEN  │ ready flag
//!             ▼                           ▼ (try_send: dropped    ▼                     ▼
//!      status writer                 event publisher      cluster-status writer   /metrics (--port)
//!      PATCH svc/status (merge,      kube Recorder,       IPAddressPool.status,   /healthz, /readyz
//!      RV-locked), ≤32 in flight,    "metallb-controller" ConfigurationState      (--health-probe-port)
//!      one per Service, backoff
//!
//!  memberlist-secret task: creates Secret `memberlist` (32 random bytes) if missing, then ends.
//! ```
//!
//! Every channel is bounded. Every API error is retried with capped exponential backoff or,
//! for a Service status write answered `409 Conflict`, dropped: the newer Service arrives through
//! the watch and is converged again.

pub mod config;
pub mod core;
pub mod http;
pub mod ipam;
pub mod metrics;
pub mod publish;
pub mod run;
pub mod view;

pub use crate::core::{Action, Core, CoreOptions, Input, Ipam};
pub use crate::run::{run, start, Options, RunError, Running};
pub use crate::view::{DesiredStatus, ServiceKey, ServiceView};
