//! Address pools as validated domain values.
//!
//! A [`Pool`] can only be built through [`Pool::new`], which checks what a single pool can check
//! on its own (non-empty, no overlap inside the pool). Overlaps *across* pools are checked by the
//! configuration parser in `ironlb-api`, which sees every pool.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ironlb_labels::Selector;
use serde::{Deserialize, Serialize};

/// The name of an `IPAddressPool` (its `metadata.name`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PoolName(pub String);

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PoolName {
    fn from(name: &str) -> Self {
        Self(name.to_owned())
    }
}

/// `spec.serviceAllocation` of a pool, with namespace selectors already resolved to names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAllocation {
    /// Lower is preferred; 0 (or unset) sorts after every positive priority.
    pub priority: i32,
    /// Namespaces from `namespaces` plus those matched by `namespaceSelectors`. Empty together
    /// with `namespace_selectors_set == false` means "any namespace".
    pub namespaces: BTreeSet<String>,
    /// True when `namespaces` or `namespaceSelectors` was given, so an empty `namespaces` set
    /// means "no namespace matches" rather than "any namespace".
    pub namespaces_restricted: bool,
    /// `serviceSelectors`: a service matches when any selector matches (OR); empty = any service.
    pub service_selectors: Vec<Selector>,
}

/// A validated address pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    name: PoolName,
    cidrs: Vec<IpNet>,
    auto_assign: bool,
    avoid_buggy_ips: bool,
    allocation: Option<ServiceAllocation>,
}

/// Why a pool or an address entry was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// `spec.addresses` is empty.
    #[error("pool has no prefixes defined")]
    NoPrefixes,
    /// An entry is neither a CIDR nor an `a-b` range.
    #[error("invalid CIDR {entry:?}")]
    InvalidCidr {
        /// The entry as written.
        entry: String,
    },
    /// A range whose ends do not parse, mix families, or run backwards.
    #[error("invalid IP range {entry:?}: {reason}")]
    InvalidRange {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two CIDRs of the same pool overlap.
    #[error("CIDR {first} overlaps with CIDR {second}")]
    Overlap {
        /// The earlier CIDR.
        first: IpNet,
        /// The later CIDR.
        second: IpNet,
    },
}

impl Pool {
    /// Builds a pool from already parsed CIDRs (declaration order is kept: it is the allocation
    /// order). Fails when there is no CIDR or two CIDRs overlap.
    pub fn new(
        name: PoolName,
        cidrs: Vec<IpNet>,
        auto_assign: bool,
        avoid_buggy_ips: bool,
        allocation: Option<ServiceAllocation>,
    ) -> Result<Self, PoolError> {
        if cidrs.is_empty() {
            return Err(PoolError::NoPrefixes);
        }
        let cidrs: Vec<IpNet> = cidrs.into_iter().map(|c| c.trunc()).collect();
        for (i, first) in cidrs.iter().enumerate() {
            for second in &cidrs[i + 1..] {
                if cidrs_overlap(first, second) {
                    return Err(PoolError::Overlap {
                        first: *first,
                        second: *second,
                    });
                }
            }
        }
        Ok(Self {
            name,
            cidrs,
            auto_assign,
            avoid_buggy_ips,
            allocation,
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &PoolName {
        &self.name
    }

    /// The CIDRs, in declaration order, host bits masked.
    pub fn cidrs(&self) -> &[IpNet] {
        &self.cidrs
    }

    /// `spec.autoAssign`.
    pub fn auto_assign(&self) -> bool {
        self.auto_assign
    }

    /// `spec.avoidBuggyIPs`.
    pub fn avoid_buggy_ips(&self) -> bool {
        self.avoid_buggy_ips
    }

    /// `spec.serviceAllocation`, if present.
    pub fn allocation(&self) -> Option<&ServiceAllocation> {
        self.allocation.as_ref()
    }

    /// Whether the pool holds any IPv4 / IPv6 CIDR.
    pub fn has_family(&self, ipv6: bool) -> bool {
        self.cidrs.iter().any(|c| matches!(c, IpNet::V6(_)) == ipv6)
    }

    /// Whether `ip` lies in one of the pool's CIDRs (ignoring `avoidBuggyIPs`).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(&ip))
    }
}

/// Whether two CIDRs share at least one address.
pub fn cidrs_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Parses one `spec.addresses` entry: a CIDR (host bits masked, as Go's `net.ParseCIDR`) or a
/// range `start-end` (spaces around the addresses allowed), summarised into the smallest list of
/// CIDRs in ascending order. A single address must be written as `/32` or `/128`.
pub fn parse_address_entry(entry: &str) -> Result<Vec<IpNet>, PoolError> {
    if let Some((start, end)) = entry.split_once('-') {
        let range_error = |reason| PoolError::InvalidRange {
            entry: entry.to_owned(),
            reason,
        };
        let start: IpAddr = start
            .trim()
            .parse()
            .map_err(|_| range_error("start is not an IP address"))?;
        let end: IpAddr = end
            .trim()
            .parse()
            .map_err(|_| range_error("end is not an IP address"))?;
        return match (start, end) {
            (IpAddr::V4(s), IpAddr::V4(e)) if s <= e => Ok(summarize_v4(s, e)),
            (IpAddr::V6(s), IpAddr::V6(e)) if s <= e => Ok(summarize_v6(s, e)),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                Err(range_error("start is after end"))
            }
            _ => Err(range_error("start and end are of different IP families")),
        };
    }
    let net: IpNet = entry.trim().parse().map_err(|_| PoolError::InvalidCidr {
        entry: entry.to_owned(),
    })?;
    Ok(vec![net.trunc()])
}

fn summarize_v4(start: Ipv4Addr, end: Ipv4Addr) -> Vec<IpNet> {
    summarize(u32::from(start).into(), u32::from(end).into(), 32)
        .into_iter()
        .map(|(base, len)| {
            // Invariant: base fits in 32 bits because it lies between two IPv4 addresses.
            let addr = Ipv4Addr::from(u32::try_from(base).expect("IPv4 base fits in u32"));
            IpNet::V4(Ipv4Net::new(addr, len).expect("prefix length ≤ 32"))
        })
        .collect()
}

fn summarize_v6(start: Ipv6Addr, end: Ipv6Addr) -> Vec<IpNet> {
    summarize(u128::from(start), u128::from(end), 128)
        .into_iter()
        .map(|(base, len)| {
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(base), len).expect("prefix length ≤ 128"))
        })
        .collect()
}

/// The minimal list of aligned blocks `(base, prefix_len)` covering `start..=end` exactly.
fn summarize(mut start: u128, end: u128, bits: u8) -> Vec<(u128, u8)> {
    let mut blocks = Vec::new();
    loop {
        // The largest block aligned at `start` that does not pass `end`.
        let mut size_log2 = if start == 0 {
            u32::from(bits)
        } else {
            start.trailing_zeros().min(u32::from(bits))
        };
        while size_log2 > 0 {
            let last = start.checked_add(block_mask(size_log2));
            if last.is_some_and(|last| last <= end) {
                break;
            }
            size_log2 -= 1;
        }
        let size_log2_u8 = u8::try_from(size_log2).expect("size_log2 ≤ 128");
        blocks.push((start, bits - size_log2_u8));
        let last = start + block_mask(size_log2).min(u128::MAX - start);
        if last >= end {
            return blocks;
        }
        start = last + 1;
    }
}

/// `2^size_log2 - 1`, for `size_log2` up to 128.
fn block_mask(size_log2: u32) -> u128 {
    if size_log2 >= 128 {
        u128::MAX
    } else {
        (1u128 << size_log2) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn parse_address_entry_table() {
        struct Case {
            desc: &'static str,
            entry: &'static str,
            want: Result<Vec<IpNet>, ()>,
        }
        let cases = [
            Case {
                desc: "cidr",
                entry: "192.168.1.0/24",
                want: Ok(nets(&["192.168.1.0/24"])),
            },
            Case {
                desc: "host bits masked",
                entry: "192.168.1.7/24",
                want: Ok(nets(&["192.168.1.0/24"])),
            },
            Case {
                desc: "range summarised",
                entry: "192.168.10.0-192.168.10.255",
                want: Ok(nets(&["192.168.10.0/24"])),
            },
            Case {
                desc: "range with spaces",
                entry: "10.0.0.1 - 10.0.0.6",
                want: Ok(nets(&[
                    "10.0.0.1/32",
                    "10.0.0.2/31",
                    "10.0.0.4/31",
                    "10.0.0.6/32",
                ])),
            },
            Case {
                desc: "one address range",
                entry: "10.0.0.5-10.0.0.5",
                want: Ok(nets(&["10.0.0.5/32"])),
            },
            Case {
                desc: "v6 range",
                entry: "fc00::-fc00::ff",
                want: Ok(nets(&["fc00::/120"])),
            },
            Case {
                desc: "whole v4",
                entry: "0.0.0.0-255.255.255.255",
                want: Ok(nets(&["0.0.0.0/0"])),
            },
            Case {
                desc: "whole v6",
                entry: "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                want: Ok(nets(&["::/0"])),
            },
            Case {
                desc: "backwards",
                entry: "10.0.0.9-10.0.0.1",
                want: Err(()),
            },
            Case {
                desc: "mixed families",
                entry: "10.0.0.1-fc00::1",
                want: Err(()),
            },
            Case {
                desc: "bare address",
                entry: "10.0.0.1",
                want: Err(()),
            },
            Case {
                desc: "garbage",
                entry: "hello",
                want: Err(()),
            },
        ];
        for c in cases {
            let got = parse_address_entry(c.entry).map_err(|_| ());
            assert_eq!(got, c.want, "{}", c.desc);
        }
    }

    #[test]
    fn pool_rejects_overlap_and_empty() {
        let name = PoolName::from("p");
        assert_eq!(
            Pool::new(name.clone(), vec![], true, false, None),
            Err(PoolError::NoPrefixes)
        );
        assert!(matches!(
            Pool::new(
                name,
                nets(&["10.0.0.0/24", "10.0.0.128/25"]),
                true,
                false,
                None
            ),
            Err(PoolError::Overlap { .. })
        ));
    }
}
