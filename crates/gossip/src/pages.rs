//! Large claim sets, split into pages that fit a datagram and are pulled from their owner.
//!
//! A node publishing at most [`INLINE_CLAIMS_MAX`] claims sends them inline in its state record,
//! which is gossiped like any other. Above that, the record only carries a summary (claim count,
//! page count, an 8-byte digest of the whole set) and the claims live in pages:
//!
//! * **Pages are hash buckets.** A claim goes to page `hash(ip) % page_count`; the owner picks the
//!   smallest power of two for `page_count` such that every page fits a datagram (at most
//!   [`PAGES_MAX`]). Adding or removing one IP changes one page, so a receiver pulls one page, not
//!   the whole set.
//! * **Pull, like rsync.** A member that sees a summary newer than what it holds asks the owner
//!   (`pull request`: the 4-byte digest of each page as it would bucket its current copy). The
//!   owner answers with a `directory` (the header and every page's digest) and only the pages whose
//!   digest differs. The receiver keeps its pages whose digest matches the directory, collects the
//!   rest, and applies the state once the union matches the claim count and the digest of the
//!   whole set; on a mismatch (a 32-bit page digest collision) it asks for every page.
//! * Lost requests or pages are re-requested every `max(4 × probe_period, 100 ms)`; a summary
//!   reaches everyone through the same three paths as an inline record (broadcast, the join sync,
//!   anti-entropy), so a late joiner pulls every owner's pages once.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use ring::digest;

/// Most claims sent inline in a state record (above this, they are paged).
pub const INLINE_CLAIMS_MAX: usize = 48;
/// Most pages of one node's claims.
pub const PAGES_MAX: usize = 1024;
/// Bytes of one page's digest.
pub(crate) const PAGE_DIGEST_BYTES: usize = 4;

pub(crate) type PageDigest = [u8; PAGE_DIGEST_BYTES];
pub(crate) type StateDigest = [u8; 8];

/// How long a pull waits for its answer before asking again.
pub(crate) fn pull_retry(probe_period: Duration) -> Duration {
    (probe_period * 4).max(Duration::from_millis(100))
}

/// Encoded size of one IP (family byte and address).
pub(crate) fn ip_bytes(ip: &IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => 5,
        IpAddr::V6(_) => 17,
    }
}

fn put_ip(out: &mut Vec<u8>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

/// A stable 64-bit hash of an IP (FNV-1a, then the splitmix64 finaliser for well-mixed low bits).
fn hash(ip: &IpAddr) -> u64 {
    let mut bytes = Vec::with_capacity(17);
    put_ip(&mut bytes, ip);
    let mut value: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        value ^= u64::from(byte);
        value = value.wrapping_mul(0x0100_0000_01b3);
    }
    value ^= value >> 30;
    value = value.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value ^= value >> 27;
    value = value.wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// The page of `ip` among `page_count` pages (`page_count` ≥ 1).
pub(crate) fn page_of(ip: &IpAddr, page_count: u16) -> usize {
    (hash(ip) % u64::from(page_count.max(1))) as usize
}

/// Splits `claims` into `page_count` pages, each sorted.
pub(crate) fn split(claims: &BTreeSet<IpAddr>, page_count: u16) -> Vec<Vec<IpAddr>> {
    let mut pages = vec![Vec::new(); usize::from(page_count.max(1))];
    for ip in claims {
        if let Some(page) = pages.get_mut(page_of(ip, page_count)) {
            page.push(*ip);
        }
    }
    pages
}

/// The digest of one page's IPs (in order).
pub(crate) fn page_digest(ips: &[IpAddr]) -> PageDigest {
    let mut context = digest::Context::new(&digest::SHA256);
    let mut bytes = Vec::with_capacity(17);
    for ip in ips {
        bytes.clear();
        put_ip(&mut bytes, ip);
        context.update(&bytes);
    }
    let mut out = [0u8; PAGE_DIGEST_BYTES];
    for (slot, byte) in out.iter_mut().zip(context.finish().as_ref()) {
        *slot = *byte;
    }
    out
}

/// The digest of a whole claim set (sorted order).
pub(crate) fn state_digest(claims: &BTreeSet<IpAddr>) -> StateDigest {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(b"ironlb-gossip claims");
    let mut bytes = Vec::with_capacity(17);
    for ip in claims {
        bytes.clear();
        put_ip(&mut bytes, ip);
        context.update(&bytes);
    }
    let mut out = [0u8; 8];
    for (slot, byte) in out.iter_mut().zip(context.finish().as_ref()) {
        *slot = *byte;
    }
    out
}

/// The owner's pages of its current claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) page_count: u16,
    pub(crate) pages: Vec<Vec<IpAddr>>,
    pub(crate) digests: Vec<PageDigest>,
    pub(crate) digest: StateDigest,
}

/// Pages `claims` so that every page's IPs fit `page_bytes_max` bytes, with at most `pages_max`
/// pages; `None` if they do not fit.
pub(crate) fn layout(
    claims: &BTreeSet<IpAddr>,
    page_bytes_max: usize,
    pages_max: usize,
) -> Option<Layout> {
    let pages_max = pages_max.min(PAGES_MAX);
    let mut page_count: usize = 1;
    while page_count <= pages_max {
        let count = u16::try_from(page_count).ok()?;
        let pages = split(claims, count);
        let fits = pages
            .iter()
            .all(|page| page.iter().map(ip_bytes).sum::<usize>() <= page_bytes_max);
        if fits {
            let digests = pages.iter().map(|page| page_digest(page)).collect();
            return Some(Layout {
                page_count: count,
                pages,
                digests,
                digest: state_digest(claims),
            });
        }
        page_count *= 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4s(count: u32) -> BTreeSet<IpAddr> {
        (0..count)
            .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
            .collect()
    }

    #[test]
    fn pages_fit_and_cover_every_claim_once() {
        for (claims, budget) in [
            (v4s(5_000), 1_300usize),
            (v4s(1), 1_300),
            (v4s(0), 1_300),
            (
                (0..3_000u128)
                    .map(|i| IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | i)))
                    .collect(),
                1_000,
            ),
        ] {
            let layout = layout(&claims, budget, 256).unwrap();
            assert!(layout.page_count.is_power_of_two());
            let mut union = BTreeSet::new();
            for (index, page) in layout.pages.iter().enumerate() {
                assert!(page.iter().map(ip_bytes).sum::<usize>() <= budget);
                assert_eq!(layout.digests[index], page_digest(page));
                for ip in page {
                    assert_eq!(page_of(ip, layout.page_count), index);
                    assert!(union.insert(*ip), "{ip} twice");
                }
            }
            assert_eq!(union, claims);
            assert_eq!(layout.digest, state_digest(&claims));
        }
    }

    #[test]
    fn one_more_claim_changes_one_page() {
        let claims = v4s(5_000);
        let before = layout(&claims, 1_300, 256).unwrap();
        let mut more = claims.clone();
        more.insert("192.0.2.77".parse().unwrap());
        let after = layout(&more, 1_300, 256).unwrap();
        assert_eq!(before.page_count, after.page_count);
        let changed = before
            .digests
            .iter()
            .zip(&after.digests)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(changed, 1);
        assert_ne!(before.digest, after.digest);
    }

    #[test]
    fn too_many_claims_do_not_fit() {
        assert!(layout(&v4s(5_000), 100, 8).is_none());
    }
}
