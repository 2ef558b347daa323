//! One module per subcommand.

pub(crate) mod apiserver;
pub(crate) mod config;
