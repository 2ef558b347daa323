//! One module per subcommand.

pub(crate) mod announce;
pub(crate) mod apiserver;
pub(crate) mod bgp_announce;
pub(crate) mod config;
pub(crate) mod controller;
pub(crate) mod convert;
pub(crate) mod crds;
pub(crate) mod demo;
pub(crate) mod lab;
pub(crate) mod plan;
pub(crate) mod speaker;
pub(crate) mod status;
