//! Which interfaces answer ARP/NDP, as a pure function of the host's link facts.
//!
//! MetalLB (`reference/metallb.md` §4.2) answers on interfaces that are up, not enslaved to a
//! bridge or bond, without NOARP, with BROADCAST, and whose name does not match the exclude
//! regexes. ironlb also requires a carrier (IFF_RUNNING / LOWER_UP) so that a carrier coming
//! back is an interface-set change that restarts the gratuitous burst, and an Ethernet MAC.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::packet::MacAddr;

/// MetalLB's shipped `announcedInterfacesToExclude` (`config/native/exclude-l2-config.yaml`).
pub const DEFAULT_EXCLUDES: [&str; 14] = [
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo$",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    "^nodelocaldns.*",
    "^lxc.*",
];

/// Which interfaces an IP may be announced on (`L2Advertisement.interfaces`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InterfaceSelection {
    /// Every eligible interface.
    All,
    /// Only these names (still subject to eligibility).
    Only(BTreeSet<String>),
}

impl InterfaceSelection {
    /// The names of `eligible` this selection allows.
    pub fn effective(&self, eligible: &BTreeSet<String>) -> BTreeSet<String> {
        match self {
            Self::All => eligible.clone(),
            Self::Only(names) => names.intersection(eligible).cloned().collect(),
        }
    }

    /// True if `interface` is allowed by this selection.
    pub fn allows(&self, interface: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => names.contains(interface),
        }
    }
}

/// The facts about one link that eligibility needs (from netlink or a test).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkState {
    /// ifindex.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Hardware address, when it is a 6-byte MAC.
    pub mac: Option<MacAddr>,
    /// IFF_UP.
    pub up: bool,
    /// IFF_RUNNING (carrier).
    pub running: bool,
    /// IFF_BROADCAST.
    pub broadcast: bool,
    /// IFF_NOARP.
    pub noarp: bool,
    /// IFF_LOOPBACK.
    pub loopback: bool,
    /// ifindex of the bridge/bond this link is enslaved to.
    pub controller: Option<u32>,
    /// An IPv6 link-local address of the link, if any.
    pub link_local: Option<Ipv6Addr>,
}

/// Why an interface does not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum SkipReason {
    /// Not IFF_UP.
    #[error("interface is down")]
    Down,
    /// No carrier.
    #[error("interface has no carrier")]
    NoCarrier,
    /// Loopback.
    #[error("loopback interface")]
    Loopback,
    /// Enslaved to a bridge or bond (the controller answers instead).
    #[error("interface is enslaved to ifindex {0}")]
    Enslaved(u32),
    /// IFF_NOARP.
    #[error("interface has NOARP")]
    NoArp,
    /// No IFF_BROADCAST.
    #[error("interface has no BROADCAST flag")]
    NoBroadcast,
    /// Not an Ethernet (6-byte) hardware address.
    #[error("interface has no Ethernet MAC")]
    NoMac,
    /// The name matches the exclude list.
    #[error("interface name matches the exclude list")]
    Excluded,
}

/// A regex in the exclude list that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid interface exclude regex {pattern:?}")]
pub struct ExcludeError {
    /// The pattern.
    pub pattern: String,
    /// Why.
    #[source]
    pub source: regex::Error,
}

/// Interface names never announced on, as MetalLB's `announcedInterfacesToExclude`.
#[derive(Debug, Clone)]
pub struct ExcludeList {
    patterns: Vec<String>,
    joined: Option<Regex>,
}

impl ExcludeList {
    /// Compiles `patterns`, joined into `(p1)|(p2)…` as MetalLB does. An empty list excludes
    /// nothing.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, ExcludeError> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.as_ref().to_owned()).collect();
        for pattern in &patterns {
            Regex::new(pattern).map_err(|source| ExcludeError {
                pattern: pattern.clone(),
                source,
            })?;
        }
        if patterns.is_empty() {
            return Ok(Self {
                patterns,
                joined: None,
            });
        }
        let joined_pattern = patterns
            .iter()
            .map(|p| format!("({p})"))
            .collect::<Vec<_>>()
            .join("|");
        let joined = Regex::new(&joined_pattern).map_err(|source| ExcludeError {
            pattern: joined_pattern.clone(),
            source,
        })?;
        Ok(Self {
            patterns,
            joined: Some(joined),
        })
    }

    /// MetalLB's default list ([`DEFAULT_EXCLUDES`]).
    pub fn metallb_default() -> Self {
        // Invariant: the default patterns are constant and valid; covered by a unit test.
        Self::new(&DEFAULT_EXCLUDES).expect("default exclude regexes compile")
    }

    /// True if `name` is excluded.
    pub fn is_excluded(&self, name: &str) -> bool {
        self.joined
            .as_ref()
            .is_some_and(|regex| regex.is_match(name))
    }

    /// The patterns.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

impl Default for ExcludeList {
    fn default() -> Self {
        Self::metallb_default()
    }
}

/// Whether `link` answers ARP/NDP.
pub fn eligibility(link: &LinkState, exclude: &ExcludeList) -> Result<(), SkipReason> {
    if link.loopback {
        return Err(SkipReason::Loopback);
    }
    if !link.up {
        return Err(SkipReason::Down);
    }
    if !link.running {
        return Err(SkipReason::NoCarrier);
    }
    if let Some(controller) = link.controller {
        return Err(SkipReason::Enslaved(controller));
    }
    if link.noarp {
        return Err(SkipReason::NoArp);
    }
    if !link.broadcast {
        return Err(SkipReason::NoBroadcast);
    }
    if link.mac.is_none_or(|mac| mac == MacAddr::ZERO) {
        return Err(SkipReason::NoMac);
    }
    if exclude.is_excluded(&link.name) {
        return Err(SkipReason::Excluded);
    }
    Ok(())
}

/// The eligible links of `links`, by name.
pub fn eligible_links<'a>(
    links: impl IntoIterator<Item = &'a LinkState>,
    exclude: &ExcludeList,
) -> BTreeMap<String, LinkState> {
    links
        .into_iter()
        .filter(|link| eligibility(link, exclude).is_ok())
        .map(|link| (link.name.clone(), link.clone()))
        .collect()
}
