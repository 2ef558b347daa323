//! The free addresses of one CIDR, as a set of disjoint intervals.
//!
//! "Lowest free address" is the first interval's start: O(log k) for k intervals, whatever the
//! size of the CIDR (a `/64` has 2^64 addresses but starts as one interval). Taking or giving
//! back an address splits or merges at most two intervals. Allocations from the bottom keep the
//! set tiny (one interval: the untouched tail); only releases in the middle add intervals, and
//! there are never more intervals than used addresses plus one.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Free addresses of one CIDR, as offsets from its network address.
#[derive(Clone, Debug)]
pub(crate) struct FreeSpace {
    /// The network address as a number (IPv4 in the low 32 bits).
    base: u128,
    /// The offset of the last address (size − 1).
    last: u128,
    ipv6: bool,
    /// Skip IPv4 addresses ending in `.0` or `.255` (`avoidBuggyIPs`).
    avoid_buggy: bool,
    /// Free intervals: start offset → end offset, both inclusive, disjoint, not adjacent.
    free: BTreeMap<u128, u128>,
}

impl FreeSpace {
    /// The whole CIDR, free.
    pub(crate) fn new(net: IpNet, avoid_buggy_ips: bool) -> Self {
        let (base, last, ipv6) = match net {
            IpNet::V4(net) => (
                u128::from(u32::from(net.network())),
                u128::from((1u64 << (32 - u32::from(net.prefix_len()))) - 1),
                false,
            ),
            IpNet::V6(net) => (
                u128::from(net.network()),
                u128::MAX
                    .checked_shr(u32::from(net.prefix_len()))
                    .unwrap_or(0),
                true,
            ),
        };
        let mut free = BTreeMap::new();
        free.insert(0, last);
        Self {
            base,
            last,
            ipv6,
            avoid_buggy: avoid_buggy_ips && !ipv6,
            free,
        }
    }

    /// The offset of `ip` in this CIDR, if it lies inside.
    pub(crate) fn offset(&self, ip: IpAddr) -> Option<u128> {
        let value = match (ip, self.ipv6) {
            (IpAddr::V4(v4), false) => u128::from(u32::from(v4)),
            (IpAddr::V6(v6), true) => u128::from(v6),
            _ => return None,
        };
        let offset = value.checked_sub(self.base)?;
        (offset <= self.last).then_some(offset)
    }

    /// The address at `offset`.
    pub(crate) fn ip(&self, offset: u128) -> IpAddr {
        assert!(offset <= self.last, "offset {offset} outside the CIDR");
        let value = self.base + offset;
        if self.ipv6 {
            IpAddr::V6(Ipv6Addr::from(value))
        } else {
            // Invariant: base + last of an IPv4 CIDR fits in 32 bits.
            IpAddr::V4(Ipv4Addr::from(u32::try_from(value).expect("IPv4 value")))
        }
    }

    /// The first address of the CIDR.
    pub(crate) fn first_ip(&self) -> IpAddr {
        self.ip(0)
    }

    /// The last address of the CIDR.
    pub(crate) fn last_ip(&self) -> IpAddr {
        self.ip(self.last)
    }

    fn buggy(&self, offset: u128) -> bool {
        let low_octet = (self.base + offset) & 0xff;
        self.avoid_buggy && (low_octet == 0 || low_octet == 0xff)
    }

    /// The lowest free address that may be allocated, if any.
    ///
    /// With `avoidBuggyIPs`, `.0`/`.255` addresses met at the start of an interval are dropped
    /// from the set for good (they can never be allocated from this pool), so each is skipped
    /// at most once: amortised O(log k).
    pub(crate) fn lowest_free(&mut self) -> Option<u128> {
        loop {
            let (&start, &end) = self.free.iter().next()?;
            if !self.buggy(start) {
                return Some(start);
            }
            self.free.remove(&start);
            // At most two consecutive buggy addresses (`.255`, `.0`).
            let mut next = start + 1;
            if next <= end && self.buggy(next) {
                next += 1;
            }
            if next <= end {
                self.free.insert(next, end);
            }
        }
    }

    /// Marks `offset` used. Returns false when it was not free (already used).
    pub(crate) fn take(&mut self, offset: u128) -> bool {
        let Some((&start, &end)) = self.free.range(..=offset).next_back() else {
            return false;
        };
        if end < offset {
            return false;
        }
        self.free.remove(&start);
        if start < offset {
            self.free.insert(start, offset - 1);
        }
        if offset < end {
            self.free.insert(offset + 1, end);
        }
        true
    }

    /// Marks `offset` free again, merging with its neighbours.
    pub(crate) fn give_back(&mut self, offset: u128) {
        assert!(offset <= self.last, "offset {offset} outside the CIDR");
        let mut start = offset;
        let mut end = offset;
        if let Some((&before_start, &before_end)) = self.free.range(..=offset).next_back() {
            assert!(before_end < offset, "giving back a free address");
            if before_end + 1 == offset {
                self.free.remove(&before_start);
                start = before_start;
            }
        }
        if let Some(after_start) = offset.checked_add(1) {
            if let Some(after_end) = self.free.remove(&after_start) {
                end = after_end;
            }
        }
        self.free.insert(start, end);
    }

    /// Whether `offset` is free (for invariant checks).
    pub(crate) fn is_free(&self, offset: u128) -> bool {
        self.free
            .range(..=offset)
            .next_back()
            .is_some_and(|(_, &end)| end >= offset)
    }

    /// How many free intervals are stored (for tests and the README's claims).
    pub(crate) fn intervals(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(cidr: &str, buggy: bool) -> FreeSpace {
        FreeSpace::new(cidr.parse().unwrap(), buggy)
    }

    #[test]
    fn lowest_take_give_back() {
        let mut s = space("10.0.0.0/30", false);
        assert_eq!(s.lowest_free(), Some(0));
        assert!(s.take(0));
        assert!(!s.take(0));
        assert!(s.take(2));
        assert_eq!(s.lowest_free(), Some(1));
        assert!(s.take(1));
        assert_eq!(s.lowest_free(), Some(3));
        assert!(s.take(3));
        assert_eq!(s.lowest_free(), None);
        s.give_back(2);
        s.give_back(1);
        assert_eq!(s.intervals(), 1);
        assert_eq!(s.lowest_free(), Some(1));
        s.give_back(0);
        s.give_back(3);
        assert_eq!(s.intervals(), 1);
        assert_eq!(s.ip(3), "10.0.0.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn buggy_addresses_skipped() {
        let mut s = space("10.0.0.0/23", true);
        assert_eq!(s.lowest_free(), Some(1));
        for offset in 1..255 {
            assert!(s.take(offset));
        }
        // .255 and the next .0 are skipped.
        assert_eq!(s.lowest_free(), Some(257));
        let mut v6 = space("fc00::/120", true);
        assert_eq!(v6.lowest_free(), Some(0), "IPv6 is unaffected");
    }

    #[test]
    fn huge_cidrs() {
        let mut s = space("::/0", false);
        assert_eq!(s.lowest_free(), Some(0));
        assert!(s.take(u128::MAX));
        s.give_back(u128::MAX);
        assert_eq!(s.intervals(), 1);
        let s = space("0.0.0.0/0", false);
        assert_eq!(s.last_ip(), "255.255.255.255".parse::<IpAddr>().unwrap());
        let s = space("10.1.2.3/32", false);
        assert_eq!(s.first_ip(), s.last_ip());
        let s = space("fc00::1/128", false);
        assert_eq!(s.offset("fc00::1".parse().unwrap()), Some(0));
        assert_eq!(s.offset("fc00::2".parse().unwrap()), None);
    }
}
