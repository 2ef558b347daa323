//! The `metallb.io` API of ironlb and its validation into one domain configuration.
//!
//! This crate owns:
//! - [`crd`]: the `metallb.io` kinds as `kube::CustomResource` derives (exact MetalLB field
//!   names, defaults and schema markers) and [`crd::crds`], every CustomResourceDefinition;
//! - [`config`]: parsing a whole set of objects (plus Namespaces, Nodes and Secrets) into one
//!   validated [`config::Config`], collecting every problem as `Kind/name: field: message`;
//! - [`manifest`]: reading YAML manifests (files, directories, stdin) into typed objects;
//! - [`legacy`]: MetalLB's pre-v0.13 `config` ConfigMap and its conversion into the CRs;
//! - [`service`]: turning a Service into an allocation request.
//!
//! It owns no IO except [`manifest::load_paths`], which reads the files it is given: callers
//! that watch the API server hand the objects in directly.

pub mod config;
pub mod crd;
pub mod legacy;
pub mod manifest;
pub mod service;

pub use crd::crds;
