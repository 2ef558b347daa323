//! Who a member is: the Kubernetes node name plus an incarnation that changes on every restart.

use std::fmt;
use std::net::SocketAddr;

/// Longest node name we accept (a Kubernetes DNS subdomain, RFC 1123).
pub const NODE_NAME_BYTES_MAX: usize = 253;

/// A Kubernetes node name, validated as an RFC 1123 subdomain (lower-case letters, digits, `-`, `.`).
/// Serialised as a string; deserialising validates it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl TryFrom<String> for NodeName {
    type Error = NodeNameError;

    fn try_from(name: String) -> Result<Self, NodeNameError> {
        Self::new(name)
    }
}

impl From<NodeName> for String {
    fn from(name: NodeName) -> Self {
        name.0
    }
}

impl NodeName {
    /// Validates `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, NodeNameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NodeNameError::Empty);
        }
        if name.len() > NODE_NAME_BYTES_MAX {
            return Err(NodeNameError::TooLong {
                name,
                bytes: NODE_NAME_BYTES_MAX,
            });
        }
        if let Some(character) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
        {
            return Err(NodeNameError::InvalidCharacter { name, character });
        }
        Ok(Self(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The empty name, only used for the placeholder identity of a seed whose name we do not know yet.
    pub(crate) fn placeholder() -> Self {
        Self(String::new())
    }

    pub(crate) fn is_placeholder(&self) -> bool {
        self.0.is_empty()
    }

    /// Unchecked constructor for the wire decoder, which checks length and characters itself.
    pub(crate) fn from_wire(name: String) -> Self {
        Self(name)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}", self.0)
    }
}

/// A node name that is not an RFC 1123 subdomain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeNameError {
    /// The name is empty.
    #[error("node name is empty")]
    Empty,
    /// The name is longer than a Kubernetes node name may be.
    #[error("node name {name:?} is longer than {bytes} bytes")]
    TooLong {
        /// The rejected name.
        name: String,
        /// The limit.
        bytes: usize,
    },
    /// The name holds a character outside `[a-z0-9.-]`.
    #[error("node name {name:?} holds the character {character:?}, outside [a-z0-9.-]")]
    InvalidCharacter {
        /// The rejected name.
        name: String,
        /// The first offending character.
        character: char,
    },
}

/// One life of one member: its node name, the incarnation of this life and the address it gossips on.
///
/// The incarnation is chosen at start (the driver uses the boot time in milliseconds since the Unix
/// epoch) and only grows: a restarted node has a larger incarnation, so it is never confused with its
/// previous life, and a node that the cluster declared down rejoins with `incarnation + 1`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct MemberId {
    /// The Kubernetes node name.
    pub name: NodeName,
    /// Grows on every restart and every rejoin.
    pub incarnation: u64,
    /// The UDP address this life gossips on.
    pub addr: SocketAddr,
}

impl MemberId {
    /// Builds an identity.
    pub fn new(name: NodeName, incarnation: u64, addr: SocketAddr) -> Self {
        Self {
            name,
            incarnation,
            addr,
        }
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}#{}@{}",
            self.name, self.incarnation, self.addr
        )
    }
}

/// The identity handed to foca. Private, so that no foca type leaks out of this crate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FocaId(pub(crate) MemberId);

impl foca::Identity for FocaId {
    // Two lives on one socket address are the same member: the larger incarnation wins.
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        // Declared down (a partition, a long pause): come back at once as a new life.
        let incarnation = self.0.incarnation.checked_add(1)?;
        Some(Self(MemberId {
            incarnation,
            ..self.0.clone()
        }))
    }

    fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.0.incarnation, &self.0.name) > (adversary.0.incarnation, &adversary.0.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        let table: &[(&str, bool)] = &[
            ("worker-1", true),
            ("a.b.c", true),
            ("", false),
            ("Worker", false),
            ("node_1", false),
            (&"a".repeat(254), false),
            (&"a".repeat(253), true),
        ];
        for (name, ok) in table {
            assert_eq!(NodeName::new(*name).is_ok(), *ok, "{name}");
        }
    }

    #[test]
    fn newer_life_wins() {
        use foca::Identity;
        let addr: SocketAddr = "10.0.0.1:7946".parse().unwrap();
        let old = FocaId(MemberId::new(NodeName::new("n").unwrap(), 5, addr));
        let new = old.renew().unwrap();
        assert_eq!(new.0.incarnation, 6);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }
}
