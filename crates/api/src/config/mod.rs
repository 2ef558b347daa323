//! The validated domain configuration built from a set of `metallb.io` objects.
//!
//! [`Config::parse`] applies every per-object rule (the CRD schema markers and CEL rules, and
//! MetalLB's `peerFromCR`, `addressPoolFromCR`, … checks) and every cross-object rule (CIDR
//! overlap across pools, duplicates, aggregation length against pool prefixes, LOCAL_PREF
//! conflicts, BFD echo against IPv6 pools, routerID/myASN agreement of peers on one node),
//! collecting all problems. The result holds only domain values ([`model`]) that cannot be
//! invalid; pools are [`ironlb_alloc::Pool`]s.

pub mod duration;
mod error;
mod inputs;
pub mod model;
mod parse;

pub use error::{ConfigError, ConfigErrors, ConfigWarning};
pub use inputs::{ConfigInputs, DEFAULT_NAMESPACE};
pub use parse::Config;
