//! The `metallb.io` API of ironlb and its validation into one domain configuration.
//!
//! This crate owns:
//! - [`crd`]: the `metallb.io` kinds as `kube::CustomResource` derives (exact MetalLB field
//!   names, defaults and schema markers) and [`crd::crds`], every CustomResourceDefinition.
//!
//! It owns no IO: callers read files or watch the API server and hand the objects in.

pub mod crd;
pub mod service;

pub use crd::crds;
