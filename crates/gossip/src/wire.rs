//! The plaintext inside a sealed datagram: a frame kind, then either foca's SWIM payload (encoded by
//! our `WireCodec`) or one of our own frames (state sync, sync request, goodbye).
//!
//! ```text
//! frame     = kind:u8 body
//! kind      = 1 foca payload | 2 state page | 3 sync request | 4 goodbye member_id
//!           | 5 suspect notice member_id swim_incarnation:u16
//!           | 6 pull request member_id page_count:u16 digests_len:u16 page_digest:4*
//!           | 7 directory member_id version:varint protocol_version:u16 flags:u8 paged page_digest:4*
//!           | 8 claims page member_id version:varint page_count:u16 index:u16 count:u16 ip*
//!           | 9 alive notice member_id swim_incarnation:u16
//! member_id = name_len:u8 name incarnation:varint addr
//! addr      = ip port:u16
//! ip        = 4 ipv4:4 | 6 ipv6:16
//! record    = member_id version:varint protocol_version:u16 flags:u8 (inline | paged)
//! flags     = bit 0 leaving, bit 1 paged
//! inline    = claims_len:u8 ip*                       (at most INLINE_CLAIMS_MAX)
//! paged     = claims_total:varint page_count:u16 state_digest:8
//! page      = count:u16 record*
//! ```
//!
//! Claim sets above [`INLINE_CLAIMS_MAX`] are paged: see [`crate::pages`].
//!
//! Every decoder reads untrusted bytes: it checks each length before reading and returns a
//! [`DecodeError`] rather than panicking.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, BufMut};
use foca::{Header, Member, Message, State};

use crate::identity::{FocaId, MemberId, NodeName, NODE_NAME_BYTES_MAX};
pub use crate::pages::INLINE_CLAIMS_MAX;
use crate::pages::{PageDigest, PAGES_MAX, PAGE_DIGEST_BYTES};
use crate::state::{PagedHeader, Summary, SummaryClaims};

/// Most service IPs one node may publish as claims. Up to [`INLINE_CLAIMS_MAX`] they travel inline
/// in the state record; above, in pages pulled from the owner ([`crate::pages`]). At the default MTU
/// 8,192 claims fit whatever the node name (IPv6 included).
pub const CLAIMS_MAX: usize = 8192;

/// Frame kind: foca's SWIM payload.
pub const KIND_FOCA: u8 = 1;
/// Frame kind: a page of state records (anti-entropy).
pub const KIND_STATE_PAGE: u8 = 2;
/// Frame kind: "send me everyone's state".
pub const KIND_SYNC_REQUEST: u8 = 3;
/// Frame kind: a member leaves gracefully.
pub const KIND_GOODBYE: u8 = 4;
/// Frame kind: "you are suspected" (sent to the suspect, so it can refute even if it missed the
/// gossip, for example right after a short partition).
pub const KIND_SUSPECT_NOTICE: u8 = 5;
/// Frame kind: "send me your claim pages whose digests differ from these".
pub const KIND_PULL_REQUEST: u8 = 6;
/// Frame kind: the owner's paged state header and every page's digest.
pub const KIND_DIRECTORY: u8 = 7;
/// Frame kind: one page of an owner's claims.
pub const KIND_CLAIMS_PAGE: u8 = 8;
/// Frame kind: "I refuted a suspicion: I am alive at this SWIM incarnation" (sent by the suspect to
/// every member, so none declares it down for want of hearing the refutation).
pub const KIND_ALIVE_NOTICE: u8 = 9;

const FLAG_LEAVING: u8 = 1;
const FLAG_PAGED: u8 = 2;

/// Custom broadcast item tags (inside foca's custom broadcast area).
pub(crate) const ITEM_STATE: u8 = 1;
pub(crate) const ITEM_GOODBYE: u8 = 2;

/// Bytes that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated: {field} needs more bytes")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A field holds a value outside its range.
    #[error("invalid {field}: {value}")]
    Invalid {
        /// The field being read.
        field: &'static str,
        /// The offending value.
        value: u64,
    },
    /// Bytes remain after the last field.
    #[error("{bytes} trailing bytes")]
    Trailing {
        /// How many bytes remain.
        bytes: usize,
    },
}

/// A cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, position: 0 }
    }

    pub(crate) fn consumed(&self) -> usize {
        self.position
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.position
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            bytes => Err(DecodeError::Trailing { bytes }),
        }
    }

    pub(crate) fn bytes(
        &mut self,
        length: usize,
        field: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        let end = self
            .position
            .checked_add(length)
            .ok_or(DecodeError::Truncated { field })?;
        let slice = self
            .data
            .get(self.position..end)
            .ok_or(DecodeError::Truncated { field })?;
        self.position = end;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        let bytes = self.bytes(1, field)?;
        Ok(bytes.first().copied().unwrap_or_default())
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let bytes = self.bytes(2, field)?;
        let mut array = [0u8; 2];
        array.copy_from_slice(bytes);
        Ok(u16::from_be_bytes(array))
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let bytes = self.bytes(N, field)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    /// LEB128, at most 10 bytes.
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for index in 0..10u32 {
            let byte = self.u8(field)?;
            let low = u64::from(byte & 0x7f);
            if index == 9 && low > 1 {
                return Err(DecodeError::Invalid { field, value: low });
            }
            value |= low << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Invalid { field, value })
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(crate) fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
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

fn read_ip(reader: &mut Reader<'_>) -> Result<IpAddr, DecodeError> {
    match reader.u8("ip family")? {
        4 => Ok(IpAddr::V4(Ipv4Addr::from(reader.array::<4>("ipv4")?))),
        6 => Ok(IpAddr::V6(Ipv6Addr::from(reader.array::<16>("ipv6")?))),
        other => Err(DecodeError::Invalid {
            field: "ip family",
            value: u64::from(other),
        }),
    }
}

pub(crate) fn put_member_id(out: &mut Vec<u8>, id: &MemberId) {
    let name = id.name.as_str().as_bytes();
    // Invariant: NodeName holds at most NODE_NAME_BYTES_MAX (253) bytes, so the length fits a u8.
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    put_varint(out, id.incarnation);
    put_ip(out, id.addr.ip());
    out.extend_from_slice(&id.addr.port().to_be_bytes());
}

pub(crate) fn read_member_id(reader: &mut Reader<'_>) -> Result<MemberId, DecodeError> {
    let length = usize::from(reader.u8("name length")?);
    if length > NODE_NAME_BYTES_MAX {
        return Err(DecodeError::Invalid {
            field: "name length",
            value: length as u64,
        });
    }
    let raw = reader.bytes(length, "name")?;
    if let Some(byte) = raw
        .iter()
        .find(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'-' || **b == b'.'))
    {
        return Err(DecodeError::Invalid {
            field: "name character",
            value: u64::from(*byte),
        });
    }
    // Only ASCII is left, so this cannot fail; map anyway rather than unwrap.
    let name = String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::Invalid {
        field: "name",
        value: 0,
    })?;
    let incarnation = reader.varint("incarnation")?;
    let ip = read_ip(reader)?;
    let port = reader.u16("port")?;
    Ok(MemberId {
        name: NodeName::from_wire(name),
        incarnation,
        addr: SocketAddr::new(ip, port),
    })
}

fn put_paged(out: &mut Vec<u8>, header: &PagedHeader) {
    put_varint(out, u64::from(header.total));
    out.extend_from_slice(&header.page_count.to_be_bytes());
    out.extend_from_slice(&header.digest);
}

fn read_paged(reader: &mut Reader<'_>) -> Result<PagedHeader, DecodeError> {
    let total = reader.varint("claims total")?;
    if total > CLAIMS_MAX as u64 {
        return Err(DecodeError::Invalid {
            field: "claims total",
            value: total,
        });
    }
    let page_count = read_page_count(reader)?;
    Ok(PagedHeader {
        total: total as u32,
        page_count,
        digest: reader.array::<8>("state digest")?,
    })
}

fn read_page_count(reader: &mut Reader<'_>) -> Result<u16, DecodeError> {
    let page_count = reader.u16("page count")?;
    if page_count == 0 || usize::from(page_count) > PAGES_MAX {
        return Err(DecodeError::Invalid {
            field: "page count",
            value: u64::from(page_count),
        });
    }
    Ok(page_count)
}

fn put_header(out: &mut Vec<u8>, summary: &Summary) {
    put_member_id(out, &summary.member);
    put_varint(out, summary.version);
    out.extend_from_slice(&summary.protocol_version.to_be_bytes());
    let paged = matches!(summary.claims, SummaryClaims::Paged(_));
    out.push(if summary.leaving { FLAG_LEAVING } else { 0 } | if paged { FLAG_PAGED } else { 0 });
}

pub(crate) fn encode_record(summary: &Summary) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_header(&mut out, summary);
    match &summary.claims {
        SummaryClaims::Inline(claims) => {
            // Invariant: inline claims are at most INLINE_CLAIMS_MAX (48): the core pages more.
            out.push(claims.len().min(INLINE_CLAIMS_MAX) as u8);
            for ip in claims.iter().take(INLINE_CLAIMS_MAX) {
                put_ip(&mut out, *ip);
            }
        }
        SummaryClaims::Paged(header) => put_paged(&mut out, header),
    }
    out
}

/// Reads the common header of a record or directory: member, version, protocol, leaving, paged.
fn read_header(reader: &mut Reader<'_>) -> Result<(MemberId, u64, u16, bool, bool), DecodeError> {
    let member = read_member_id(reader)?;
    let version = reader.varint("state version")?;
    let protocol_version = reader.u16("protocol version")?;
    let flags = reader.u8("flags")?;
    if flags & !(FLAG_LEAVING | FLAG_PAGED) != 0 {
        return Err(DecodeError::Invalid {
            field: "flags",
            value: u64::from(flags),
        });
    }
    Ok((
        member,
        version,
        protocol_version,
        flags & FLAG_LEAVING != 0,
        flags & FLAG_PAGED != 0,
    ))
}

pub(crate) fn read_record(reader: &mut Reader<'_>) -> Result<Summary, DecodeError> {
    let (member, version, protocol_version, leaving, paged) = read_header(reader)?;
    let claims = if paged {
        SummaryClaims::Paged(read_paged(reader)?)
    } else {
        let count = usize::from(reader.u8("claims length")?);
        if count > INLINE_CLAIMS_MAX {
            return Err(DecodeError::Invalid {
                field: "claims length",
                value: count as u64,
            });
        }
        let mut claims = BTreeSet::new();
        for _ in 0..count {
            claims.insert(read_ip(reader)?);
        }
        SummaryClaims::Inline(claims)
    };
    Ok(Summary {
        member,
        version,
        leaving,
        protocol_version,
        claims,
    })
}

/// The owner's answer to a pull: its paged header and every page's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directory {
    pub(crate) member: MemberId,
    pub(crate) version: u64,
    pub(crate) leaving: bool,
    pub(crate) protocol_version: u16,
    pub(crate) header: PagedHeader,
    pub(crate) page_digests: Vec<PageDigest>,
}

impl Directory {
    pub(crate) fn order(&self) -> (u64, u64) {
        (self.member.incarnation, self.version)
    }
}

/// One page of an owner's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimsPage {
    pub(crate) member: MemberId,
    pub(crate) version: u64,
    pub(crate) page_count: u16,
    pub(crate) index: u16,
    pub(crate) ips: Vec<IpAddr>,
}

pub(crate) fn encode_pull_request(
    owner: &MemberId,
    page_count: u16,
    digests: &[PageDigest],
) -> Vec<u8> {
    let mut out = vec![KIND_PULL_REQUEST];
    put_member_id(&mut out, owner);
    out.extend_from_slice(&page_count.to_be_bytes());
    // Invariant: digests is empty or has page_count (≤ PAGES_MAX) entries.
    out.extend_from_slice(&(digests.len().min(PAGES_MAX) as u16).to_be_bytes());
    for digest in digests.iter().take(PAGES_MAX) {
        out.extend_from_slice(digest);
    }
    out
}

pub(crate) fn encode_directory(directory: &Directory) -> Vec<u8> {
    let mut out = vec![KIND_DIRECTORY];
    put_header(
        &mut out,
        &Summary {
            member: directory.member.clone(),
            version: directory.version,
            leaving: directory.leaving,
            protocol_version: directory.protocol_version,
            claims: SummaryClaims::Paged(directory.header.clone()),
        },
    );
    put_paged(&mut out, &directory.header);
    for digest in &directory.page_digests {
        out.extend_from_slice(digest);
    }
    out
}

pub(crate) fn encode_claims_page(page: &ClaimsPage) -> Vec<u8> {
    let mut out = vec![KIND_CLAIMS_PAGE];
    put_member_id(&mut out, &page.member);
    put_varint(&mut out, page.version);
    out.extend_from_slice(&page.page_count.to_be_bytes());
    out.extend_from_slice(&page.index.to_be_bytes());
    // Invariant: a page fits a datagram, so far fewer than 65,536 IPs.
    out.extend_from_slice(&(page.ips.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    for ip in page.ips.iter().take(usize::from(u16::MAX)) {
        put_ip(&mut out, *ip);
    }
    out
}

/// Bytes a claims page adds around its IPs, at most (the version varint counted at 10 bytes).
pub(crate) fn claims_page_overhead_bytes(member: &MemberId) -> usize {
    let mut id = Vec::new();
    put_member_id(&mut id, member);
    1 + id.len() + 10 + 2 + 2 + 2
}

/// Bytes a directory takes besides its page digests, at most.
pub(crate) fn directory_overhead_bytes(member: &MemberId) -> usize {
    let mut id = Vec::new();
    put_member_id(&mut id, member);
    1 + id.len() + 10 + 2 + 1 + 10 + 2 + 8
}

/// A decoded custom broadcast item.
pub(crate) enum Item {
    State(Summary),
    Goodbye(MemberId),
}

pub(crate) fn encode_item(item: &Item) -> Vec<u8> {
    match item {
        Item::State(summary) => {
            let mut out = vec![ITEM_STATE];
            out.extend_from_slice(&encode_record(summary));
            out
        }
        Item::Goodbye(id) => {
            let mut out = vec![ITEM_GOODBYE];
            put_member_id(&mut out, id);
            out
        }
    }
}

pub(crate) fn decode_item(data: &[u8]) -> Result<Item, DecodeError> {
    let mut reader = Reader::new(data);
    let item = match reader.u8("item tag")? {
        ITEM_STATE => Item::State(read_record(&mut reader)?),
        ITEM_GOODBYE => Item::Goodbye(read_member_id(&mut reader)?),
        other => {
            return Err(DecodeError::Invalid {
                field: "item tag",
                value: u64::from(other),
            })
        }
    };
    reader.finish()?;
    Ok(item)
}

/// One of our own frames (not foca's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Foca(Vec<u8>),
    StatePage(Vec<Summary>),
    SyncRequest,
    Goodbye(MemberId),
    SuspectNotice(MemberId, u16),
    PullRequest {
        owner: MemberId,
        page_count: u16,
        digests: Vec<PageDigest>,
    },
    Directory(Directory),
    ClaimsPage(ClaimsPage),
    AliveNotice(MemberId, u16),
}

pub(crate) fn decode_frame(data: &[u8]) -> Result<Frame, DecodeError> {
    let mut reader = Reader::new(data);
    match reader.u8("frame kind")? {
        KIND_FOCA => Ok(Frame::Foca(
            reader.bytes(reader.remaining(), "foca payload")?.to_vec(),
        )),
        KIND_STATE_PAGE => {
            let count = reader.u16("page count")?;
            let mut records = Vec::new();
            for _ in 0..count {
                records.push(read_record(&mut reader)?);
            }
            reader.finish()?;
            Ok(Frame::StatePage(records))
        }
        KIND_SYNC_REQUEST => {
            reader.finish()?;
            Ok(Frame::SyncRequest)
        }
        KIND_GOODBYE => {
            let id = read_member_id(&mut reader)?;
            reader.finish()?;
            Ok(Frame::Goodbye(id))
        }
        KIND_SUSPECT_NOTICE => {
            let id = read_member_id(&mut reader)?;
            let swim_incarnation = reader.u16("swim incarnation")?;
            reader.finish()?;
            Ok(Frame::SuspectNotice(id, swim_incarnation))
        }
        KIND_ALIVE_NOTICE => {
            let id = read_member_id(&mut reader)?;
            let swim_incarnation = reader.u16("swim incarnation")?;
            reader.finish()?;
            Ok(Frame::AliveNotice(id, swim_incarnation))
        }
        KIND_PULL_REQUEST => {
            let owner = read_member_id(&mut reader)?;
            let page_count = read_page_count(&mut reader)?;
            let count = reader.u16("digests length")?;
            if count != 0 && count != page_count {
                return Err(DecodeError::Invalid {
                    field: "digests length",
                    value: u64::from(count),
                });
            }
            let mut digests = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                digests.push(reader.array::<PAGE_DIGEST_BYTES>("page digest")?);
            }
            reader.finish()?;
            Ok(Frame::PullRequest {
                owner,
                page_count,
                digests,
            })
        }
        KIND_DIRECTORY => {
            let (member, version, protocol_version, leaving, paged) = read_header(&mut reader)?;
            if !paged {
                return Err(DecodeError::Invalid {
                    field: "directory flags",
                    value: 0,
                });
            }
            let header = read_paged(&mut reader)?;
            let mut page_digests = Vec::with_capacity(usize::from(header.page_count));
            for _ in 0..header.page_count {
                page_digests.push(reader.array::<PAGE_DIGEST_BYTES>("page digest")?);
            }
            reader.finish()?;
            Ok(Frame::Directory(Directory {
                member,
                version,
                leaving,
                protocol_version,
                header,
                page_digests,
            }))
        }
        KIND_CLAIMS_PAGE => {
            let member = read_member_id(&mut reader)?;
            let version = reader.varint("state version")?;
            let page_count = read_page_count(&mut reader)?;
            let index = reader.u16("page index")?;
            if index >= page_count {
                return Err(DecodeError::Invalid {
                    field: "page index",
                    value: u64::from(index),
                });
            }
            let count = reader.u16("page claims length")?;
            let mut ips = Vec::new();
            for _ in 0..count {
                ips.push(read_ip(&mut reader)?);
            }
            reader.finish()?;
            Ok(Frame::ClaimsPage(ClaimsPage {
                member,
                version,
                page_count,
                index,
                ips,
            }))
        }
        other => Err(DecodeError::Invalid {
            field: "frame kind",
            value: u64::from(other),
        }),
    }
}

/// Encodes a page of records that fits in `bytes_max`; returns the frame and how many records it holds.
pub(crate) fn encode_page<'a>(
    records: impl Iterator<Item = &'a Summary>,
    bytes_max: usize,
) -> (Vec<u8>, usize) {
    let mut out = vec![KIND_STATE_PAGE, 0, 0];
    let mut count: u16 = 0;
    for record in records {
        let encoded = encode_record(record);
        if out.len() + encoded.len() > bytes_max || count == u16::MAX {
            break;
        }
        out.extend_from_slice(&encoded);
        count += 1;
    }
    out[1..3].copy_from_slice(&count.to_be_bytes());
    (out, usize::from(count))
}

/// foca's message encoding. Observed members are reported to [`crate::state::Shared`] so that the
/// core knows when to compare its view with foca's.
pub(crate) struct WireCodec {
    pub(crate) shared: crate::state::SharedHandle,
}

const MSG_PING: u8 = 1;
const MSG_ACK: u8 = 2;
const MSG_PING_REQ: u8 = 3;
const MSG_INDIRECT_PING: u8 = 4;
const MSG_INDIRECT_ACK: u8 = 5;
const MSG_FORWARDED_ACK: u8 = 6;
const MSG_GOSSIP: u8 = 7;
const MSG_FEED: u8 = 8;
const MSG_ANNOUNCE: u8 = 9;
const MSG_BROADCAST: u8 = 10;
const MSG_TURN_UNDEAD: u8 = 11;

fn put_message(out: &mut Vec<u8>, message: &Message<FocaId>) {
    match message {
        Message::Ping(probe) => out.extend_from_slice(&[MSG_PING, *probe]),
        Message::Ack(probe) => out.extend_from_slice(&[MSG_ACK, *probe]),
        Message::PingReq {
            target,
            probe_number,
        } => {
            out.push(MSG_PING_REQ);
            put_member_id(out, &target.0);
            out.push(*probe_number);
        }
        Message::IndirectPing {
            origin,
            probe_number,
        } => {
            out.push(MSG_INDIRECT_PING);
            put_member_id(out, &origin.0);
            out.push(*probe_number);
        }
        Message::IndirectAck {
            target,
            probe_number,
        } => {
            out.push(MSG_INDIRECT_ACK);
            put_member_id(out, &target.0);
            out.push(*probe_number);
        }
        Message::ForwardedAck {
            origin,
            probe_number,
        } => {
            out.push(MSG_FORWARDED_ACK);
            put_member_id(out, &origin.0);
            out.push(*probe_number);
        }
        Message::Gossip => out.push(MSG_GOSSIP),
        Message::Feed => out.push(MSG_FEED),
        Message::Announce => out.push(MSG_ANNOUNCE),
        Message::Broadcast => out.push(MSG_BROADCAST),
        Message::TurnUndead => out.push(MSG_TURN_UNDEAD),
    }
}

fn read_message(reader: &mut Reader<'_>) -> Result<Message<FocaId>, DecodeError> {
    let tag = reader.u8("message tag")?;
    let message = match tag {
        MSG_PING => Message::Ping(reader.u8("probe number")?),
        MSG_ACK => Message::Ack(reader.u8("probe number")?),
        MSG_PING_REQ => Message::PingReq {
            target: FocaId(read_member_id(reader)?),
            probe_number: reader.u8("probe number")?,
        },
        MSG_INDIRECT_PING => Message::IndirectPing {
            origin: FocaId(read_member_id(reader)?),
            probe_number: reader.u8("probe number")?,
        },
        MSG_INDIRECT_ACK => Message::IndirectAck {
            target: FocaId(read_member_id(reader)?),
            probe_number: reader.u8("probe number")?,
        },
        MSG_FORWARDED_ACK => Message::ForwardedAck {
            origin: FocaId(read_member_id(reader)?),
            probe_number: reader.u8("probe number")?,
        },
        MSG_GOSSIP => Message::Gossip,
        MSG_FEED => Message::Feed,
        MSG_ANNOUNCE => Message::Announce,
        MSG_BROADCAST => Message::Broadcast,
        MSG_TURN_UNDEAD => Message::TurnUndead,
        other => {
            return Err(DecodeError::Invalid {
                field: "message tag",
                value: u64::from(other),
            })
        }
    };
    Ok(message)
}

/// The sender's SWIM incarnation in `payload` (foca's, as we encoded it).
pub(crate) fn src_incarnation(payload: &[u8]) -> Option<u16> {
    let mut reader = Reader::new(payload);
    read_member_id(&mut reader).ok()?;
    reader.u16("src incarnation").ok()
}

/// If `payload` (foca's, as we encoded it) is a `TurnUndead` message, its destination.
pub(crate) fn turn_undead_destination(payload: &[u8]) -> Option<MemberId> {
    let mut reader = Reader::new(payload);
    read_member_id(&mut reader).ok()?;
    reader.u16("src incarnation").ok()?;
    let dst = read_member_id(&mut reader).ok()?;
    (reader.u8("message tag").ok()? == MSG_TURN_UNDEAD).then_some(dst)
}

const STATE_ALIVE: u8 = 0;
const STATE_SUSPECT: u8 = 1;
const STATE_DOWN: u8 = 2;

/// Encoding failed because the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("buffer full")]
pub(crate) struct BufferFull;

/// Errors foca sees from our codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CodecError {
    #[error(transparent)]
    Full(#[from] BufferFull),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

fn put_all(encoded: &[u8], mut buf: impl BufMut) -> Result<(), CodecError> {
    // foca requires that a failed encode leaves the buffer untouched.
    if buf.remaining_mut() < encoded.len() {
        return Err(BufferFull.into());
    }
    buf.put_slice(encoded);
    Ok(())
}

impl foca::Codec<FocaId> for WireCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<FocaId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        let mut out = Vec::with_capacity(64);
        put_member_id(&mut out, &header.src.0);
        out.extend_from_slice(&header.src_incarnation.to_be_bytes());
        put_member_id(&mut out, &header.dst.0);
        put_message(&mut out, &header.message);
        put_all(&out, buf)
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<FocaId>, Self::Error> {
        let mut reader = Reader::new(buf.chunk());
        let src = read_member_id(&mut reader)?;
        let src_incarnation = reader.u16("src incarnation")?;
        let dst = read_member_id(&mut reader)?;
        let message = read_message(&mut reader)?;
        let consumed = reader.consumed();
        buf.advance(consumed);
        self.shared.observe(&src, src_incarnation, State::Alive);
        Ok(Header {
            src: FocaId(src),
            src_incarnation,
            dst: FocaId(dst),
            message,
        })
    }

    fn encode_member(
        &mut self,
        member: &Member<FocaId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        let mut out = Vec::with_capacity(48);
        put_member_id(&mut out, &member.id().0);
        out.extend_from_slice(&member.incarnation().to_be_bytes());
        out.push(match member.state() {
            State::Alive => STATE_ALIVE,
            State::Suspect => STATE_SUSPECT,
            State::Down => STATE_DOWN,
        });
        put_all(&out, buf)
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<FocaId>, Self::Error> {
        let mut reader = Reader::new(buf.chunk());
        let id = read_member_id(&mut reader)?;
        let incarnation = reader.u16("member incarnation")?;
        let state = match reader.u8("member state")? {
            STATE_ALIVE => State::Alive,
            STATE_SUSPECT => State::Suspect,
            STATE_DOWN => State::Down,
            other => {
                return Err(DecodeError::Invalid {
                    field: "member state",
                    value: u64::from(other),
                }
                .into())
            }
        };
        let consumed = reader.consumed();
        buf.advance(consumed);
        self.shared.observe(&id, incarnation, state);
        Ok(Member::new(FocaId(id), incarnation, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, incarnation: u64, addr: &str) -> MemberId {
        MemberId::new(
            NodeName::new(name).unwrap(),
            incarnation,
            addr.parse().unwrap(),
        )
    }

    #[test]
    fn varints_round_trip() {
        for value in [0u64, 1, 127, 128, 300, 1 << 41, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut reader = Reader::new(&out);
            assert_eq!(reader.varint("v").unwrap(), value);
            reader.finish().unwrap();
        }
        // An 11-byte varint and an overflowing tenth byte are rejected.
        assert!(Reader::new(&[0xff; 11]).varint("v").is_err());
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        assert!(Reader::new(&overflow).varint("v").is_err());
    }

    #[test]
    fn records_round_trip_and_every_truncation_fails() {
        let inline = Summary {
            member: id("node-a", 1_700_000_000_000, "[fd00::1]:7946"),
            version: 42,
            leaving: true,
            protocol_version: 1,
            claims: SummaryClaims::Inline(
                ["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()].into(),
            ),
        };
        let paged = Summary {
            leaving: false,
            claims: SummaryClaims::Paged(PagedHeader {
                total: 5000,
                page_count: 32,
                digest: [7; 8],
            }),
            ..inline.clone()
        };
        for record in [inline, paged] {
            let encoded = encode_record(&record);
            let mut reader = Reader::new(&encoded);
            assert_eq!(read_record(&mut reader).unwrap(), record);
            reader.finish().unwrap();
            for length in 0..encoded.len() {
                assert!(
                    read_record(&mut Reader::new(&encoded[..length])).is_err(),
                    "prefix {length}"
                );
            }
        }
    }

    #[test]
    fn paging_frames_round_trip_and_reject_bad_counts() {
        let owner = id("node-a", 9, "10.0.0.1:7946");
        let request = encode_pull_request(&owner, 4, &[[1; 4], [2; 4], [3; 4], [4; 4]]);
        assert_eq!(
            decode_frame(&request).unwrap(),
            Frame::PullRequest {
                owner: owner.clone(),
                page_count: 4,
                digests: vec![[1; 4], [2; 4], [3; 4], [4; 4]],
            }
        );
        // A digest list that is neither empty nor one per page is refused.
        assert!(decode_frame(&encode_pull_request(&owner, 4, &[[1; 4]])).is_err());
        let directory = Directory {
            member: owner.clone(),
            version: 3,
            leaving: false,
            protocol_version: 1,
            header: PagedHeader {
                total: 100,
                page_count: 2,
                digest: [5; 8],
            },
            page_digests: vec![[1; 4], [2; 4]],
        };
        let encoded = encode_directory(&directory);
        assert!(encoded.len() <= directory_overhead_bytes(&owner) + 2 * 4);
        assert_eq!(decode_frame(&encoded).unwrap(), Frame::Directory(directory));
        let page = ClaimsPage {
            member: owner.clone(),
            version: 3,
            page_count: 2,
            index: 1,
            ips: vec!["192.0.2.9".parse().unwrap(), "2001:db8::9".parse().unwrap()],
        };
        let encoded = encode_claims_page(&page);
        assert!(encoded.len() <= claims_page_overhead_bytes(&owner) + 5 + 17);
        assert_eq!(
            decode_frame(&encoded).unwrap(),
            Frame::ClaimsPage(page.clone())
        );
        for length in 0..encoded.len() {
            assert!(decode_frame(&encoded[..length]).is_err(), "prefix {length}");
        }
        let out_of_range = ClaimsPage { index: 2, ..page };
        assert!(decode_frame(&encode_claims_page(&out_of_range)).is_err());
    }

    #[test]
    fn frames_round_trip() {
        let goodbye = id("n1", 7, "10.0.0.1:7946");
        let mut out = vec![KIND_GOODBYE];
        put_member_id(&mut out, &goodbye);
        assert_eq!(decode_frame(&out).unwrap(), Frame::Goodbye(goodbye));
        assert_eq!(
            decode_frame(&[KIND_SYNC_REQUEST]).unwrap(),
            Frame::SyncRequest
        );
        assert!(decode_frame(&[KIND_SYNC_REQUEST, 0]).is_err());
        assert!(decode_frame(&[99]).is_err());
        assert!(decode_frame(&[]).is_err());
    }

    #[test]
    fn names_with_bad_characters_are_rejected() {
        let mut out = Vec::new();
        put_member_id(&mut out, &id("ab", 1, "10.0.0.1:1"));
        out[1] = b'A';
        assert!(read_member_id(&mut Reader::new(&out)).is_err());
    }
}
