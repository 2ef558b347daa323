//! The validated domain configuration built from a set of `metallb.io` objects.

pub mod duration;
mod error;
mod inputs;

pub use error::{ConfigError, ConfigErrors, ConfigWarning};
pub use inputs::{ConfigInputs, DEFAULT_NAMESPACE};
