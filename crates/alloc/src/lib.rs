//! IP address allocation for LoadBalancer Services.
//!
//! Owns the address bookkeeping: pools, which service holds which IP, the sharing rules of
//! `metallb.io/allow-shared-ip`, dual-stack families and the pool counters. It does not own
//! parsing Kubernetes objects (that is `ironlb-api`), nor any IO: every function is pure and
//! deterministic, and no Kubernetes or async crate is a dependency.

pub mod pool;

pub use pool::{parse_address_entry, Pool, PoolError, PoolName, ServiceAllocation};
