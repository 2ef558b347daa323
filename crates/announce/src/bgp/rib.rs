//! Adj-RIB-Out of one peer: the routes ironlb wants the peer to hold, the routes it has sent,
//! and the smallest UPDATE stream that turns the second into the first.
//!
//! Prefixes with identical attributes share an UPDATE (as many NLRIs as fit in 4096 bytes);
//! withdrawals are batched the same way. After a reconnect, [`AdjRibOut::reset`] forgets what
//! was sent so everything is re-sent.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::message::{
    prefix_encoded_len, AsSegment, CodecContext, Community, Family, LargeCommunity, Message,
    MpReach, MpUnreach, Origin, PathAttributes, Update, AS_SEQUENCE, HEADER_LEN, MESSAGE_LEN_MAX,
};

/// LOCAL_PREF sent to internal peers when the advertisement sets none (FRR's default, which is
/// what MetalLB's default frr-k8s mode sends).
pub const LOCAL_PREF_DEFAULT: u32 = 100;

/// What one advertisement asks for a prefix (from `BGPAdvertisement`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RouteAttributes {
    /// LOCAL_PREF, sent to internal peers only.
    pub local_pref: Option<u32>,
    /// Communities, sorted.
    pub communities: BTreeSet<Community>,
    /// Large communities, sorted.
    pub large_communities: BTreeSet<LargeCommunity>,
}

/// Facts about the session the UPDATEs are for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportContext {
    /// Our ASN.
    pub local_asn: u32,
    /// The peer is in our AS.
    pub internal: bool,
    /// Negotiated AS_PATH width.
    pub codec: CodecContext,
    /// Families both sides negotiated.
    pub families: BTreeSet<Family>,
    /// NEXT_HOP for IPv4 prefixes; without it IPv4 prefixes stay pending.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Global IPv6 next hop; without it IPv6 prefixes stay pending.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Link-local IPv6 next hop, sent beside the global one when known.
    pub next_hop_v6_link_local: Option<Ipv6Addr>,
    /// Tag every route with GRACEFUL_SHUTDOWN (RFC 8326): a planned stop is under way.
    pub graceful_shutdown: bool,
}

impl ExportContext {
    fn can_send(&self, family: Family) -> bool {
        self.families.contains(&family)
            && match family {
                Family::Ipv4Unicast => self.next_hop_v4.is_some(),
                Family::Ipv6Unicast => self.next_hop_v6.is_some(),
            }
    }

    /// The attributes a prefix is sent with, after policy.
    fn effective(&self, attributes: &RouteAttributes) -> RouteAttributes {
        let mut effective = attributes.clone();
        if self.graceful_shutdown {
            effective.communities.insert(Community::GRACEFUL_SHUTDOWN);
        }
        if !self.internal {
            effective.local_pref = None;
        } else if effective.local_pref.is_none() {
            effective.local_pref = Some(LOCAL_PREF_DEFAULT);
        }
        effective
    }

    fn path_attributes(&self, attributes: &RouteAttributes, family: Family) -> PathAttributes {
        let (as_path, as4_path) = if self.internal {
            (Vec::new(), None)
        } else {
            let path = vec![AsSegment {
                segment_type: AS_SEQUENCE,
                asns: vec![self.local_asn],
            }];
            // RFC 6793 §4.2.2: towards an old speaker, AS_TRANS in AS_PATH and the real path
            // in AS4_PATH.
            let as4 = (!self.codec.four_octet_asn && self.local_asn > u32::from(u16::MAX))
                .then(|| path.clone());
            (path, as4)
        };
        let next_hops: Vec<IpAddr> = match family {
            Family::Ipv4Unicast => Vec::new(),
            Family::Ipv6Unicast => self
                .next_hop_v6
                .into_iter()
                .chain(self.next_hop_v6_link_local)
                .map(IpAddr::V6)
                .collect(),
        };
        PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(as_path),
            next_hop: match family {
                Family::Ipv4Unicast => self.next_hop_v4,
                Family::Ipv6Unicast => None,
            },
            local_pref: attributes.local_pref,
            communities: (!attributes.communities.is_empty())
                .then(|| attributes.communities.iter().copied().collect()),
            large_communities: (!attributes.large_communities.is_empty())
                .then(|| attributes.large_communities.iter().copied().collect()),
            mp_reach: (family == Family::Ipv6Unicast).then(|| MpReach {
                family,
                next_hops,
                nlri: Vec::new(),
            }),
            as4_path,
            ..PathAttributes::default()
        }
    }
}

/// The desired routes, shared between the caller and every peer's Adj-RIB-Out.
pub type Routes = Arc<BTreeMap<IpNet, RouteAttributes>>;

/// The Adj-RIB-Out of one peer.
///
/// Memory: the desired map is shared (an `Arc`), and every sent prefix points at one shared
/// copy of its attributes, so 100,000 prefixes cost a few MiB per peer.
#[derive(Clone, Debug, Default)]
pub struct AdjRibOut {
    desired: Routes,
    /// What the peer holds from us, with the attributes as sent (after policy).
    sent: BTreeMap<IpNet, Arc<RouteAttributes>>,
}

impl AdjRibOut {
    /// Replaces the desired routes. Host bits are cleared from every prefix.
    pub fn set_desired(&mut self, routes: impl Into<Routes>) {
        let routes = routes.into();
        self.desired = if routes.keys().all(|prefix| prefix.trunc() == *prefix) {
            routes
        } else {
            Arc::new(
                routes
                    .iter()
                    .map(|(prefix, attrs)| (prefix.trunc(), attrs.clone()))
                    .collect(),
            )
        };
    }

    /// The desired routes.
    pub fn desired(&self) -> &BTreeMap<IpNet, RouteAttributes> {
        &self.desired
    }

    /// The session went down (or the peer asked for a refresh): the peer holds nothing from us.
    pub fn reset(&mut self) {
        self.sent.clear();
    }

    /// Prefixes the peer holds from us.
    pub fn advertised_len(&self) -> usize {
        self.sent.len()
    }

    /// Prefixes whose state at the peer differs from the desired one.
    pub fn pending_len(&self, context: &ExportContext) -> usize {
        let changed = self
            .desired
            .iter()
            .filter(|(prefix, attributes)| {
                self.sent.get(*prefix).map(|sent| &**sent) != Some(&context.effective(attributes))
            })
            .count();
        let withdrawn = self
            .sent
            .keys()
            .filter(|prefix| !self.desired.contains_key(*prefix));
        changed + withdrawn.count()
    }

    /// The UPDATEs that bring the peer to the desired state, withdrawals first; marks them sent.
    pub fn updates(&mut self, context: &ExportContext) -> Vec<Update> {
        let mut updates = Vec::new();
        let withdraw: Vec<IpNet> = self
            .sent
            .keys()
            .filter(|prefix| {
                !self.desired.contains_key(*prefix) || !context.can_send(Family::of(prefix))
            })
            .copied()
            .collect();
        for family in Family::ALL {
            let prefixes: Vec<IpNet> = withdraw
                .iter()
                .filter(|prefix| Family::of(prefix) == family)
                .copied()
                .collect();
            pack_withdrawals(family, &prefixes, &mut updates);
        }
        for prefix in &withdraw {
            self.sent.remove(prefix);
        }

        let mut groups: BTreeMap<(Family, RouteAttributes), Vec<IpNet>> = BTreeMap::new();
        for (prefix, attributes) in self.desired.iter() {
            let family = Family::of(prefix);
            if !context.can_send(family) {
                continue;
            }
            let effective = context.effective(attributes);
            if self.sent.get(prefix).map(|sent| &**sent) == Some(&effective) {
                continue;
            }
            groups.entry((family, effective)).or_default().push(*prefix);
        }
        for ((family, attributes), prefixes) in groups {
            let base = context.path_attributes(&attributes, family);
            pack_announcements(family, &base, &context.codec, &prefixes, &mut updates);
            let shared = Arc::new(attributes);
            for prefix in prefixes {
                self.sent.insert(prefix, shared.clone());
            }
        }
        updates
    }
}

/// Room for withdrawn routes, attributes and NLRI in one UPDATE.
const UPDATE_BODY_MAX: usize = MESSAGE_LEN_MAX - HEADER_LEN - 4;
/// Extended-length attribute header plus AFI/SAFI: the overhead of an MP_UNREACH_NLRI.
const MP_UNREACH_OVERHEAD: usize = 4 + 3;

fn pack_withdrawals(family: Family, prefixes: &[IpNet], updates: &mut Vec<Update>) {
    let room = match family {
        Family::Ipv4Unicast => UPDATE_BODY_MAX,
        Family::Ipv6Unicast => UPDATE_BODY_MAX - MP_UNREACH_OVERHEAD,
    };
    for chunk in chunks_by_size(prefixes, room) {
        let update = match family {
            Family::Ipv4Unicast => Update {
                withdrawn: chunk.iter().filter_map(v4).collect(),
                ..Update::default()
            },
            Family::Ipv6Unicast => Update {
                attributes: PathAttributes {
                    mp_unreach: Some(MpUnreach {
                        family,
                        withdrawn: chunk.to_vec(),
                    }),
                    ..PathAttributes::default()
                },
                ..Update::default()
            },
        };
        updates.push(update);
    }
}

fn pack_announcements(
    family: Family,
    base: &PathAttributes,
    codec: &CodecContext,
    prefixes: &[IpNet],
    updates: &mut Vec<Update>,
) {
    // Size the attributes once: encode an UPDATE with no NLRI. MP_REACH may need the extended
    // length header once NLRIs are added, so count its one extra byte up front.
    let empty = Message::Update(Update {
        attributes: base.clone(),
        ..Update::default()
    });
    let attributes_len = empty.to_bytes(codec).len() - HEADER_LEN - 4;
    let extended_header = usize::from(family == Family::Ipv6Unicast);
    let room = UPDATE_BODY_MAX.saturating_sub(attributes_len + extended_header);
    for chunk in chunks_by_size(prefixes, room) {
        let mut attributes = base.clone();
        let update = match (&mut attributes.mp_reach, family) {
            (Some(reach), Family::Ipv6Unicast) => {
                reach.nlri = chunk.to_vec();
                Update {
                    attributes,
                    ..Update::default()
                }
            }
            _ => Update {
                attributes,
                nlri: chunk.iter().filter_map(v4).collect(),
                ..Update::default()
            },
        };
        updates.push(update);
    }
}

fn v4(prefix: &IpNet) -> Option<ipnet::Ipv4Net> {
    match prefix {
        IpNet::V4(prefix) => Some(*prefix),
        IpNet::V6(_) => None,
    }
}

/// Splits prefixes into runs whose NLRI encoding fits in `room` bytes.
fn chunks_by_size(prefixes: &[IpNet], room: usize) -> Vec<&[IpNet]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (index, prefix) in prefixes.iter().enumerate() {
        let size = prefix_encoded_len(prefix);
        if used + size > room && index > start {
            chunks.push(&prefixes[start..index]);
            start = index;
            used = 0;
        }
        used += size;
    }
    if start < prefixes.len() {
        chunks.push(&prefixes[start..]);
    }
    chunks
}
