//! IP address allocation for LoadBalancer Services.
//!
//! Owns the address bookkeeping: pools, which service holds which IP, the sharing rules of
//! `metallb.io/allow-shared-ip`, dual-stack families and the pool counters, with MetalLB's
//! behaviour (`internal/allocator`, `controller/service.go`) and deterministic tie-breaks
//! (pools by priority then name; lowest address first). It does not own parsing Kubernetes
//! objects (that is `ironlb-api`, which builds a [`Request`] from a Service), nor any IO: every
//! function is pure and deterministic, and no Kubernetes or async crate is a dependency.
//!
//! The cost of an allocation does not grow with the size of a pool or the number of services
//! (see `README.md` for the data structures and why).
//!
//! ```
//! use ironlb_alloc::{parse_address_entry, Allocator, Pool, PoolName, Request, ServiceKey};
//!
//! let pool = Pool::new(
//!     PoolName::from("default"),
//!     parse_address_entry("192.168.10.0/24").unwrap(),
//!     true,
//!     false,
//!     None,
//! )
//! .unwrap();
//! let mut allocator = Allocator::new();
//! allocator.set_pools(vec![pool]);
//! let request = Request::new(ServiceKey::new("default", "web"));
//! let got = allocator.converge(&request, &[]).result.unwrap();
//! assert_eq!(got.ips, vec!["192.168.10.0".parse::<std::net::IpAddr>().unwrap()]);
//! ```

// Errors carry their context (service names, keys, addresses) so callers can match and report
// them; they are returned on the rare refusal path, so their size costs nothing that matters.
#![allow(clippy::result_large_err)]

mod allocator;
mod converge;
mod error;
pub mod pool;
mod request;
mod space;
mod table;

pub use allocator::{
    ip_confuses_buggy_firmwares, pool_capacity, pool_selects, Allocator, Assignment, Capacity,
    PoolCounters, PoolsChanged, POOLS_MAX,
};
pub use converge::{ClearReason, ConvergeEvent, Converged};
pub use error::AllocError;
pub use pool::{parse_address_entry, Pool, PoolError, PoolName, ServiceAllocation};
pub use request::{
    Family, FamilyError, IpFamilyPolicy, Port, Protocol, Request, ServiceFamily, ServiceKey,
};
