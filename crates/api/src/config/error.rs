//! Configuration problems: every one names the object kind, name and field.

use std::fmt;

/// One problem found in a set of `metallb.io` objects, rendered `Kind/name: field: message`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[error("{kind}/{name}: {field}: {message}")]
pub struct ConfigError {
    /// The object kind (`IPAddressPool`, `BGPPeer`, `ConfigMap`, …).
    pub kind: String,
    /// The object's `metadata.name` (`<unnamed>` when it has none).
    pub name: String,
    /// The field at fault, as a path from the object root (`spec.addresses[1]`).
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// True for problems that may resolve themselves without an edit of this object, as
    /// MetalLB's `TransientError`: a missing `passwordSecret`, a missing `bfdProfile`, an
    /// unknown community alias. The controller retries these instead of reporting the
    /// configuration stale.
    pub transient: bool,
}

impl ConfigError {
    /// A permanent problem.
    pub fn new(
        kind: impl Into<String>,
        name: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            field: field.into(),
            message: message.into(),
            transient: false,
        }
    }

    /// Marks the problem transient (see [`ConfigError::transient`]).
    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }
}

/// Every problem found in one configuration, in a stable order (kind, name, field).
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// True when every problem is transient (the controller retries rather than going stale).
    pub fn all_transient(&self) -> bool {
        self.0.iter().all(|error| error.transient)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Something accepted but not acted on: fields ironlb does not support yet, deprecated
/// fields. Rendered like errors: `Kind/name: field: message`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigWarning {
    /// The object kind.
    pub kind: String,
    /// The object's `metadata.name`.
    pub name: String,
    /// The field concerned.
    pub field: String,
    /// What the user should know.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}: {}: {}",
            self.kind, self.name, self.field, self.message
        )
    }
}
