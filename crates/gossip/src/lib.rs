//! Speaker membership: who is alive, over encrypted UDP gossip, with fast failure detection.
//!
//! This crate owns the membership protocol (SWIM with suspicion, from the `foca` crate, behind our
//! own [`Membership`] API so that nothing else in ironlb sees foca), the sealed transport
//! (AES-256-GCM, [`seal`]; an explicit unencrypted mode for `--gossip-insecure`,
//! [`Keyring::insecure`]), the state each node publishes ([`NodeState`]: claimed service IPs —
//! thousands of them, paged ([`pages`]) —, `leaving`, protocol version) and the metrics. It does not own the election or the announcing of
//! IPs (`ironlb-announce`), nor reading the Secret (`ironlb`'s speaker).
//!
//! The IO boundary: [`Membership`] is sans-IO (datagrams, timer deadlines and `now` in; datagrams,
//! deadlines and [`MemberEvent`]s out; randomness from a seed), so the simulator runs it unchanged.
//! The tokio driver ([`driver`], behind the default cargo feature `driver`) owns the UDP socket and
//! the one timer:
//!
//! ```text
//!   speaker ──commands (claims, leaving, leave)──► driver task ──► Membership (sans-IO)
//!   speaker ◄──────── MemberEvent (mpsc) ───────── driver task ◄──  poll_action / poll_timeout
//!                                                     │  ▲
//!                                              UDP socket (port 7946)
//! ```

pub mod config;
#[cfg(feature = "driver")]
pub mod driver;
pub mod identity;
pub mod membership;
pub mod metrics;
pub mod pages;
pub mod seal;
pub mod sim;
pub mod state;
pub mod wire;

pub use config::{Config, ConfigError, Profile, DEFAULT_MTU_BYTES, DEFAULT_PORT};
pub use identity::{MemberId, NodeName, NodeNameError};
pub use membership::{
    Action, Input, Liveness, MemberEvent, MemberSnapshot, Membership, StateError,
};
pub use metrics::GossipMetrics;
pub use seal::{DropReason, KeyError, Keyring, SealedTransport, PROTOCOL_VERSION};
pub use state::NodeState;
pub use wire::{DecodeError, CLAIMS_MAX, INLINE_CLAIMS_MAX};

/// Opens and decodes one datagram the way [`Membership`] does, without a protocol behind it: for
/// fuzzing that no bytes make the receive path panic. Returns the frame kind on success.
pub fn open_and_decode(
    transport: &mut SealedTransport,
    from: std::net::SocketAddr,
    bytes: &[u8],
) -> Result<u8, DropReason> {
    let plaintext = transport.open(from, bytes)?;
    let frame = wire::decode_frame(&plaintext).map_err(|_| DropReason::Malformed)?;
    Ok(match frame {
        wire::Frame::Foca(payload) => {
            // Decode foca's header and members with our codec, as foca would.
            let mut codec = wire::WireCodec {
                shared: state::SharedHandle::default(),
            };
            let mut rest: &[u8] = &payload;
            use foca::Codec;
            let _ = codec.decode_header(&mut rest);
            for _ in 0..64 {
                if codec.decode_member(&mut rest).is_err() {
                    break;
                }
            }
            wire::KIND_FOCA
        }
        wire::Frame::StatePage(_) => wire::KIND_STATE_PAGE,
        wire::Frame::SyncRequest => wire::KIND_SYNC_REQUEST,
        wire::Frame::Goodbye(_) => wire::KIND_GOODBYE,
        wire::Frame::SuspectNotice(..) => wire::KIND_SUSPECT_NOTICE,
        wire::Frame::PullRequest { .. } => wire::KIND_PULL_REQUEST,
        wire::Frame::Directory(_) => wire::KIND_DIRECTORY,
        wire::Frame::ClaimsPage(_) => wire::KIND_CLAIMS_PAGE,
        wire::Frame::AliveNotice(..) => wire::KIND_ALIVE_NOTICE,
    })
}
