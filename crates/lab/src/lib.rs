//! Labs in network namespaces: what `ironlb demo`, the end-to-end tests (`tests/e2e`), the chaos
//! tests (`tests/chaos`) and `failover-bench` build on. A lab is a LAN (a bridge), node namespaces
//! that play a node's host network, a client namespace and, for BGP, a router namespace; every
//! namespace and link carries the lab's prefix so that cleanup removes only what the lab created.
//!
//! | module | owns |
//! |---|---|
//! | `probe` | the client-side outage probe: a request every 10 ms, outage = last answer before a kill to first answer after it |
//! | `bench` | `failover-bench`: ironlb next to keepalived and serf, same topology, probe and node death; percentiles |
//! | `backend` | the tiny per-node backend that answers with its node name (UDP and HTTP) |
//! | `topology` | namespaces, the LAN bridge, addresses, the kube-proxy stand-in, node death, cleanup by prefix |
//! | `process` | processes inside namespaces with logs to files: spawn, signal, kill -9, restart |
//! | `demo` | `ironlb demo`: the scenarios, the progress log, the table, JSON and the picture |
//! | `cluster` | `ironlb apiserver`/`controller`/`speaker` in the lab, kubectl, Nodes, Secret, EndpointSlices |
//! | `frr` | the FRR router namespace peering with every node, its ECMP routes |
//! | `manifests` | the tutorials' metallb.io manifests and LoadBalancer Services for the lab |
//! | `plot` | the failover picture (SVG with `plotters`) |
//! | `observe` | arping, ndisc6, tcpdump and curl from the client |
//! | `interrupt` | Ctrl-C / SIGTERM remove every live lab of the process |
//! | `error` | `LabError` |

pub mod backend;
pub mod bench;
pub mod cluster;
pub mod demo;
pub mod error;
pub mod frr;
pub mod interrupt;
pub mod manifests;
pub mod observe;
pub mod plot;
pub mod probe;
pub mod process;
pub mod topology;

pub use error::LabError;
