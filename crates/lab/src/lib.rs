//! Labs in network namespaces: what `ironlb demo`, the end-to-end tests (`tests/e2e`), the chaos
//! tests (`tests/chaos`) and `failover-bench` build on. A lab is a LAN (a bridge), node namespaces
//! that play a node's host network, a client namespace and, for BGP, a router namespace; every
//! namespace and link carries the lab's prefix so that cleanup removes only what the lab created.
//!
//! | module | owns |
//! |---|---|
//! | `probe` | the client-side outage probe: a request every 10 ms, outage = last answer before a kill to first answer after it |
//! | `backend` | the tiny per-node backend that answers with its node name (UDP and HTTP) |

pub mod backend;
pub mod probe;
