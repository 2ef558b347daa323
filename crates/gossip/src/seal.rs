//! Sealed transport: every datagram is AES-256-GCM with a key derived from the cluster Secret.
//!
//! ```text
//!  0      1        3        5                      17
//!  +------+--------+--------+----------------------+---------------------------+
//!  | ver  | cluster| key id | nonce (12 bytes)     | ciphertext ‖ GCM tag (16) |
//!  | u8=1 | tag u16| u16    | boot id:4 counter:8  |                           |
//!  +------+--------+--------+----------------------+---------------------------+
//! AAD = the 17 header bytes ‖ "ironlb-gossip" ‖ cluster name ‖ protocol version (u16, big endian)
//! ```
//!
//! * **Key**: HKDF-SHA256 over the Secret's `secretkey` bytes, salt [`HKDF_SALT`], info
//!   [`HKDF_INFO_KEY`], 32 bytes. The key id is 2 bytes expanded with [`HKDF_INFO_KEY_ID`]; it only
//!   picks the key to try, the AEAD tag is what authenticates.
//! * **Nonce**: never reused under one key. Each boot draws a random 4-byte boot id and a random
//!   64-bit starting counter (top bit clear) and then increments the counter for every datagram;
//!   sealing fails rather than wrap. Two boots collide only if both their 32-bit boot ids match and
//!   their counter ranges (at most the datagrams one boot sends, far below 2^40) overlap inside 2^63:
//!   about 2^-55 per pair of boots, on top of the 2^-32 boot id match.
//! * **AAD** binds the cluster name and the protocol version, so a datagram sealed for another
//!   cluster or another protocol version never opens.
//! * **Replay**: a 128-datagram sliding window per sender (UDP source address and boot id), updated
//!   only after the tag verifies.
//! * **Keyring**: the primary key seals; every key in the ring opens, so a key can rotate without a
//!   partition.
//! * **Insecure mode** ([`Keyring::insecure`], the speaker's `--gossip-insecure`): the same layout
//!   with envelope version [`ENVELOPE_VERSION_INSECURE`], key id 0, the plaintext in clear and, in
//!   place of the GCM tag, the first 16 bytes of SHA-256 over the AAD and the plaintext. That
//!   catches corruption and datagrams for another cluster or protocol version, but anyone on the
//!   path can read and forge them. A sealed node drops insecure datagrams and an insecure node
//!   drops sealed ones, both as [`DropReason::ModeMismatch`]: the two modes never mix silently.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::digest;
use ring::hkdf;

/// Envelope version in byte 0.
pub const ENVELOPE_VERSION: u8 = 1;
/// Envelope version in byte 0 of an unencrypted datagram ([`Keyring::insecure`]).
pub const ENVELOPE_VERSION_INSECURE: u8 = 2;
/// The gossip protocol version, bound into every datagram's AAD.
pub const PROTOCOL_VERSION: u16 = 1;
/// Fixed HKDF salt.
pub const HKDF_SALT: &[u8] = b"ironlb-gossip/v1 salt";
/// HKDF info label for the AEAD key.
pub const HKDF_INFO_KEY: &[u8] = b"ironlb-gossip/v1 aes-256-gcm key";
/// HKDF info label for the key id.
pub const HKDF_INFO_KEY_ID: &[u8] = b"ironlb-gossip/v1 key id";
/// Shortest secret accepted (as MetalLB's `memberlist` Secret: 16 bytes or more).
pub const SECRET_BYTES_MIN: usize = 16;
/// Most keys in a ring.
pub const KEYRING_KEYS_MAX: usize = 4;
/// Header bytes before the ciphertext.
pub const HEADER_BYTES: usize = 17;
/// GCM tag bytes.
pub const TAG_BYTES: usize = 16;
/// Bytes a sealed datagram adds to its plaintext.
pub const OVERHEAD_BYTES: usize = HEADER_BYTES + TAG_BYTES;
/// Senders whose replay windows we remember; the least recently seen is forgotten first.
pub const REPLAY_SENDERS_MAX: usize = 4096;
const REPLAY_WINDOW: u64 = 128;

/// Why a received datagram was dropped before reaching the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than a header and a tag.
    Truncated,
    /// Longer than the configured MTU.
    Oversized,
    /// Unknown envelope version.
    UnsupportedVersion,
    /// The cluster tag names another cluster.
    WrongCluster,
    /// No key in our ring has this key id.
    UnknownKey,
    /// The GCM tag did not verify (corrupted, forged, or sealed with other AAD).
    AuthFailed,
    /// Seen before, or older than the replay window.
    Replay,
    /// Opened, but the plaintext does not decode.
    Malformed,
    /// Decoded, but the protocol rejected it (for example, a datagram from ourselves).
    Rejected,
    /// An unencrypted datagram reached a node with a key, or a sealed one reached a node in
    /// insecure mode ([`Keyring::insecure`]).
    ModeMismatch,
}

impl DropReason {
    /// Every reason, for metrics.
    pub const ALL: [Self; 10] = [
        Self::Truncated,
        Self::Oversized,
        Self::UnsupportedVersion,
        Self::WrongCluster,
        Self::UnknownKey,
        Self::AuthFailed,
        Self::Replay,
        Self::Malformed,
        Self::Rejected,
        Self::ModeMismatch,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Oversized => "oversized",
            Self::UnsupportedVersion => "unsupported_version",
            Self::WrongCluster => "wrong_cluster",
            Self::UnknownKey => "unknown_key",
            Self::AuthFailed => "auth_failed",
            Self::Replay => "replay",
            Self::Malformed => "malformed",
            Self::Rejected => "rejected",
            Self::ModeMismatch => "mode_mismatch",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A secret, or a keyring, that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The Secret's key is shorter than [`SECRET_BYTES_MIN`].
    #[error("secret key {name:?} has {bytes} bytes, fewer than {SECRET_BYTES_MIN}")]
    TooShort {
        /// Which Secret entry (for example `secretkey`).
        name: String,
        /// Its length.
        bytes: usize,
    },
    /// More than [`KEYRING_KEYS_MAX`] keys.
    #[error("{keys} keys in the keyring, more than {KEYRING_KEYS_MAX}")]
    TooMany {
        /// How many were given.
        keys: usize,
    },
    /// Two keys derive the same key id.
    #[error("secret keys {first:?} and {second:?} have the same key id")]
    DuplicateKeyId {
        /// The first entry.
        first: String,
        /// The second entry.
        second: String,
    },
    /// ring refused the derivation (does not happen with valid lengths).
    #[error("key derivation failed")]
    Derivation,
}

/// Sealing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The sealed datagram would be longer than the MTU.
    #[error("sealed datagram of {bytes} bytes exceeds the MTU of {mtu_bytes} bytes")]
    Oversized {
        /// Sealed length.
        bytes: usize,
        /// The limit.
        mtu_bytes: usize,
    },
    /// The nonce counter would wrap (never in practice: 2^63 datagrams).
    #[error("nonce counter exhausted")]
    NonceExhausted,
    /// ring refused to seal.
    #[error("AEAD seal failed")]
    Aead,
}

struct DerivedKey {
    name: String,
    id: u16,
    key: LessSafeKey,
}

struct Length(usize);

impl hkdf::KeyType for Length {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(name: &str, secret: &[u8]) -> Result<DerivedKey, KeyError> {
    if secret.len() < SECRET_BYTES_MIN {
        return Err(KeyError::TooShort {
            name: name.to_string(),
            bytes: secret.len(),
        });
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
    let mut key_bytes = [0u8; 32];
    prk.expand(&[HKDF_INFO_KEY], Length(32))
        .and_then(|okm| okm.fill(&mut key_bytes))
        .map_err(|_| KeyError::Derivation)?;
    let mut id_bytes = [0u8; 2];
    prk.expand(&[HKDF_INFO_KEY_ID], Length(2))
        .and_then(|okm| okm.fill(&mut id_bytes))
        .map_err(|_| KeyError::Derivation)?;
    let unbound = UnboundKey::new(&AES_256_GCM, &key_bytes).map_err(|_| KeyError::Derivation)?;
    Ok(DerivedKey {
        name: name.to_string(),
        id: u16::from_be_bytes(id_bytes),
        key: LessSafeKey::new(unbound),
    })
}

/// The keys of a cluster: the primary seals, every key opens. Or, only when asked for
/// explicitly, no key at all ([`Keyring::insecure`]).
pub struct Keyring {
    keys: Vec<DerivedKey>,
    insecure: bool,
}

impl Keyring {
    /// A ring with one key (the Secret's `secretkey`).
    pub fn new(secret: &[u8]) -> Result<Self, KeyError> {
        Self::with_keys(&[("secretkey", secret)])
    }

    /// A ring from named secrets; the first one is the primary.
    pub fn with_keys(secrets: &[(&str, &[u8])]) -> Result<Self, KeyError> {
        if secrets.len() > KEYRING_KEYS_MAX {
            return Err(KeyError::TooMany {
                keys: secrets.len(),
            });
        }
        let mut keys: Vec<DerivedKey> = Vec::with_capacity(secrets.len());
        for (name, secret) in secrets {
            let derived = derive(name, secret)?;
            if let Some(existing) = keys.iter().find(|k| k.id == derived.id) {
                return Err(KeyError::DuplicateKeyId {
                    first: existing.name.clone(),
                    second: derived.name,
                });
            }
            keys.push(derived);
        }
        if keys.is_empty() {
            return Err(KeyError::TooMany { keys: 0 });
        }
        Ok(Self {
            keys,
            insecure: false,
        })
    }

    /// No encryption: datagrams travel in clear, with a checksum only (see the module doc). For
    /// the speaker's explicit `--gossip-insecure`, never a fallback when a key is missing. Nodes
    /// in this mode and sealed nodes drop each other's datagrams ([`DropReason::ModeMismatch`]).
    pub fn insecure() -> Self {
        Self {
            keys: Vec::new(),
            insecure: true,
        }
    }

    /// Whether this is the unencrypted mode of [`Keyring::insecure`].
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    fn primary(&self) -> Option<&DerivedKey> {
        self.keys.first()
    }

    fn find(&self, id: u16) -> Option<&DerivedKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        let names: Vec<&str> = self.keys.iter().map(|k| k.name.as_str()).collect();
        formatter
            .debug_struct("Keyring")
            .field("keys", &names)
            .field("insecure", &self.insecure)
            .finish()
    }
}

#[derive(Debug, Clone, Copy)]
struct ReplayWindow {
    highest: u64,
    /// Bit i set: counter `highest - i` was seen.
    seen: u128,
    touched: u64,
}

impl ReplayWindow {
    fn check(&self, counter: u64) -> bool {
        if counter > self.highest {
            return true;
        }
        let age = self.highest - counter;
        age < REPLAY_WINDOW && self.seen & (1u128 << age) == 0
    }

    fn record(&mut self, counter: u64) {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = counter;
        } else {
            self.seen |= 1u128 << (self.highest - counter);
        }
    }
}

/// Seals outgoing and opens incoming datagrams. Sans-IO: the boot id and counter start come from the
/// caller's RNG.
pub struct SealedTransport {
    cluster_name: String,
    cluster_tag: u16,
    keyring: Keyring,
    boot_id: [u8; 4],
    counter: u64,
    mtu_bytes: usize,
    windows: BTreeMap<(SocketAddr, [u8; 4]), ReplayWindow>,
    touches: u64,
}

/// The insecure mode's integrity check: SHA-256 over the AAD and the plaintext, first 16 bytes. Not
/// an authenticator (no key): it only catches corruption and mismatched clusters or versions.
fn checksum(aad: &[u8], plaintext: &[u8]) -> [u8; TAG_BYTES] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(aad);
    context.update(plaintext);
    let digest = context.finish();
    let mut sum = [0u8; TAG_BYTES];
    for (out, byte) in sum.iter_mut().zip(digest.as_ref()) {
        *out = *byte;
    }
    sum
}

/// The 2-byte tag of a cluster name, in clear in every header.
pub fn cluster_tag(cluster_name: &str) -> u16 {
    let digest = digest::digest(
        &digest::SHA256,
        format!("ironlb-gossip cluster {cluster_name}").as_bytes(),
    );
    let bytes = digest.as_ref();
    u16::from_be_bytes([
        bytes.first().copied().unwrap_or(0),
        bytes.get(1).copied().unwrap_or(0),
    ])
}

impl SealedTransport {
    /// `boot_id` and `counter_start` must be random per boot (see the module doc).
    pub fn new(
        cluster_name: &str,
        keyring: Keyring,
        mtu_bytes: usize,
        boot_id: [u8; 4],
        counter_start: u64,
    ) -> Self {
        Self {
            cluster_name: cluster_name.to_string(),
            cluster_tag: cluster_tag(cluster_name),
            keyring,
            boot_id,
            // Top bit clear: at least 2^63 datagrams before the counter could wrap.
            counter: counter_start >> 1,
            mtu_bytes,
            windows: BTreeMap::new(),
            touches: 0,
        }
    }

    /// Replaces the keyring (rotation). The nonce sequence continues.
    pub fn set_keyring(&mut self, keyring: Keyring) {
        self.keyring = keyring;
    }

    /// The MTU in bytes.
    pub fn mtu_bytes(&self) -> usize {
        self.mtu_bytes
    }

    fn aad(&self, header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(header.len() + 16 + self.cluster_name.len());
        aad.extend_from_slice(header);
        aad.extend_from_slice(b"ironlb-gossip");
        aad.extend_from_slice(self.cluster_name.as_bytes());
        aad.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        aad
    }

    /// Seals `plaintext` into one datagram.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let bytes = plaintext.len() + OVERHEAD_BYTES;
        if bytes > self.mtu_bytes {
            return Err(SealError::Oversized {
                bytes,
                mtu_bytes: self.mtu_bytes,
            });
        }
        let insecure = self.keyring.is_insecure();
        let key = match self.keyring.primary() {
            Some(key) => Some(key),
            None if insecure => None,
            None => return Err(SealError::Aead),
        };
        let counter = self.counter;
        self.counter = counter.checked_add(1).ok_or(SealError::NonceExhausted)?;
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.boot_id);
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        let mut out = Vec::with_capacity(bytes);
        out.push(if insecure {
            ENVELOPE_VERSION_INSECURE
        } else {
            ENVELOPE_VERSION
        });
        out.extend_from_slice(&self.cluster_tag.to_be_bytes());
        out.extend_from_slice(&key.map_or(0, |k| k.id).to_be_bytes());
        out.extend_from_slice(&nonce);
        let aad = self.aad(&out);
        let Some(key) = key else {
            out.extend_from_slice(plaintext);
            out.extend_from_slice(&checksum(&aad, plaintext));
            return Ok(out);
        };
        let mut body = plaintext.to_vec();
        let tag = key
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut body,
            )
            .map_err(|_| SealError::Aead)?;
        out.extend_from_slice(&body);
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens a datagram from `from`; the error says why it was dropped.
    pub fn open(&mut self, from: SocketAddr, datagram: &[u8]) -> Result<Vec<u8>, DropReason> {
        if datagram.len() > self.mtu_bytes {
            return Err(DropReason::Oversized);
        }
        if datagram.len() < OVERHEAD_BYTES {
            return Err(DropReason::Truncated);
        }
        let (header, sealed) = datagram.split_at(HEADER_BYTES);
        let mut fields = crate::wire::Reader::new(header);
        let version = fields.u8("version").map_err(|_| DropReason::Truncated)?;
        let tag = fields
            .u16("cluster tag")
            .map_err(|_| DropReason::Truncated)?;
        let key_id = fields.u16("key id").map_err(|_| DropReason::Truncated)?;
        let boot_id = fields
            .array::<4>("boot id")
            .map_err(|_| DropReason::Truncated)?;
        let counter = u64::from_be_bytes(
            fields
                .array::<8>("counter")
                .map_err(|_| DropReason::Truncated)?,
        );
        match (version, self.keyring.is_insecure()) {
            (ENVELOPE_VERSION, false) | (ENVELOPE_VERSION_INSECURE, true) => {}
            (ENVELOPE_VERSION, true) | (ENVELOPE_VERSION_INSECURE, false) => {
                return Err(DropReason::ModeMismatch)
            }
            _ => return Err(DropReason::UnsupportedVersion),
        }
        if tag != self.cluster_tag {
            return Err(DropReason::WrongCluster);
        }
        let key = if self.keyring.is_insecure() {
            if key_id != 0 {
                return Err(DropReason::UnknownKey);
            }
            None
        } else {
            Some(self.keyring.find(key_id).ok_or(DropReason::UnknownKey)?)
        };
        let window_key = (from, boot_id);
        if let Some(window) = self.windows.get(&window_key) {
            if !window.check(counter) {
                return Err(DropReason::Replay);
            }
        }
        let aad = self.aad(header);
        let body = match key {
            Some(key) => {
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(&boot_id);
                nonce[4..].copy_from_slice(&counter.to_be_bytes());
                let mut body = sealed.to_vec();
                let plaintext_len = key
                    .key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&aad),
                        &mut body,
                    )
                    .map_err(|_| DropReason::AuthFailed)?
                    .len();
                body.truncate(plaintext_len);
                body
            }
            None => {
                // Length checked above: at least TAG_BYTES follow the header.
                let (plaintext, sum) = sealed.split_at(sealed.len() - TAG_BYTES);
                if checksum(&aad, plaintext) != sum {
                    return Err(DropReason::AuthFailed);
                }
                plaintext.to_vec()
            }
        };
        self.touches += 1;
        let touched = self.touches;
        if !self.windows.contains_key(&window_key) && self.windows.len() >= REPLAY_SENDERS_MAX {
            let oldest = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.touched)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.windows.remove(&oldest);
            }
        }
        let window = self.windows.entry(window_key).or_insert(ReplayWindow {
            highest: counter,
            seen: 0,
            touched,
        });
        window.record(counter);
        window.touched = touched;
        Ok(body)
    }
}

impl fmt::Debug for SealedTransport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SealedTransport")
            .field("cluster_name", &self.cluster_name)
            .field("keyring", &self.keyring)
            .field("mtu_bytes", &self.mtu_bytes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn transport(cluster: &str, secret: &[u8], boot: u8) -> SealedTransport {
        SealedTransport::new(
            cluster,
            Keyring::new(secret).unwrap(),
            1400,
            [boot; 4],
            1000,
        )
    }

    fn from() -> SocketAddr {
        "10.0.0.1:7946".parse().unwrap()
    }

    #[test]
    fn seals_and_opens() {
        let mut a = transport("c", SECRET, 1);
        let mut b = transport("c", SECRET, 2);
        let sealed = a.seal(b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + OVERHEAD_BYTES);
        assert_eq!(b.open(from(), &sealed).unwrap(), b"hello");
    }

    #[test]
    fn drops_are_classified() {
        let mut a = transport("c", SECRET, 1);
        let mut b = transport("c", SECRET, 2);
        let sealed = a.seal(b"hello world").unwrap();
        // Every flipped bit is dropped.
        for bit in 0..sealed.len() * 8 {
            let mut flipped = sealed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(b.open(from(), &flipped).is_err(), "bit {bit}");
        }
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(b.open(from(), &flipped), Err(DropReason::AuthFailed));
        assert_eq!(b.open(from(), &sealed[..10]), Err(DropReason::Truncated));
        assert_eq!(
            b.open(from(), &sealed[..sealed.len() - 1]),
            Err(DropReason::AuthFailed)
        );
        assert_eq!(b.open(from(), &vec![0u8; 1401]), Err(DropReason::Oversized));
        let mut version = sealed.clone();
        version[0] = 9;
        assert_eq!(
            b.open(from(), &version),
            Err(DropReason::UnsupportedVersion)
        );
        let mut other_cluster = transport("other", SECRET, 3);
        assert_eq!(
            b.open(from(), &other_cluster.seal(b"x").unwrap()),
            Err(DropReason::WrongCluster)
        );
        let mut wrong_key = transport("c", b"another secret key of 32 bytes!!", 4);
        assert_eq!(
            b.open(from(), &wrong_key.seal(b"x").unwrap()),
            Err(DropReason::UnknownKey)
        );
        assert_eq!(b.open(from(), &sealed).unwrap(), b"hello world");
        assert_eq!(b.open(from(), &sealed), Err(DropReason::Replay));
    }

    #[test]
    fn same_tag_other_cluster_name_fails_authentication() {
        // Find a cluster name whose 2-byte tag collides with "c": the AAD still binds the full name.
        let target = cluster_tag("c");
        let Some(name) = (0..2_000_000u32)
            .map(|i| format!("x{i}"))
            .find(|n| cluster_tag(n) == target)
        else {
            return;
        };
        let mut a = transport(&name, SECRET, 1);
        let mut b = transport("c", SECRET, 2);
        assert_eq!(
            b.open(from(), &a.seal(b"x").unwrap()),
            Err(DropReason::AuthFailed)
        );
    }

    #[test]
    fn replay_window_accepts_reordering_once() {
        let mut a = transport("c", SECRET, 1);
        let mut b = transport("c", SECRET, 2);
        let datagrams: Vec<Vec<u8>> = (0..200).map(|_| a.seal(b"x").unwrap()).collect();
        assert!(b.open(from(), &datagrams[150]).is_ok());
        assert!(b.open(from(), &datagrams[100]).is_ok(), "inside the window");
        assert_eq!(b.open(from(), &datagrams[100]), Err(DropReason::Replay));
        assert_eq!(
            b.open(from(), &datagrams[10]),
            Err(DropReason::Replay),
            "older than the window"
        );
        assert!(b.open(from(), &datagrams[199]).is_ok());
        // The window is per sender: the same bytes from another address are a new sender, whose
        // window starts here.
        assert!(b
            .open("10.0.0.2:7946".parse().unwrap(), &datagrams[10])
            .is_ok());
    }

    #[test]
    fn keyring_rotation() {
        let old = b"old secret key, sixteen+ bytes..".as_slice();
        let new = b"new secret key, sixteen+ bytes..".as_slice();
        let mut sender_old = SealedTransport::new("c", Keyring::new(old).unwrap(), 1400, [1; 4], 0);
        let mut sender_new = SealedTransport::new(
            "c",
            Keyring::with_keys(&[("secretkey", new), ("secretkey-previous", old)]).unwrap(),
            1400,
            [2; 4],
            0,
        );
        let mut receiver = SealedTransport::new(
            "c",
            Keyring::with_keys(&[("secretkey", old), ("secretkey-next", new)]).unwrap(),
            1400,
            [3; 4],
            0,
        );
        assert!(receiver
            .open(from(), &sender_old.seal(b"a").unwrap())
            .is_ok());
        assert!(receiver
            .open(
                "10.0.0.2:1".parse().unwrap(),
                &sender_new.seal(b"b").unwrap()
            )
            .is_ok());
        assert!(sender_new
            .open(from(), &sender_old.seal(b"c").unwrap())
            .is_ok());
    }

    #[test]
    fn insecure_mode_is_explicit_and_never_mixes_with_sealed() {
        let mut plain_a = SealedTransport::new("c", Keyring::insecure(), 1400, [1; 4], 0);
        let mut plain_b = SealedTransport::new("c", Keyring::insecure(), 1400, [2; 4], 0);
        let mut sealed = transport("c", SECRET, 3);
        let datagram = plain_a.seal(b"hello").unwrap();
        assert_eq!(
            datagram.len(),
            5 + OVERHEAD_BYTES,
            "same overhead as sealed"
        );
        assert_eq!(datagram[0], ENVELOPE_VERSION_INSECURE);
        assert_eq!(
            &datagram[HEADER_BYTES..HEADER_BYTES + 5],
            b"hello",
            "in clear"
        );
        assert_eq!(plain_b.open(from(), &datagram).unwrap(), b"hello");
        assert_eq!(plain_b.open(from(), &datagram), Err(DropReason::Replay));
        assert_eq!(
            sealed.open(from(), &datagram),
            Err(DropReason::ModeMismatch)
        );
        assert_eq!(
            plain_b.open(from(), &sealed.seal(b"x").unwrap()),
            Err(DropReason::ModeMismatch)
        );
        // The checksum catches every flipped bit; another cluster name is refused.
        let datagram = plain_a.seal(b"hello world").unwrap();
        for bit in 0..datagram.len() * 8 {
            let mut flipped = datagram.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(plain_b.open(from(), &flipped).is_err(), "bit {bit}");
        }
        let mut other = SealedTransport::new("other", Keyring::insecure(), 1400, [4; 4], 0);
        assert_eq!(
            plain_b.open(from(), &other.seal(b"x").unwrap()),
            Err(DropReason::WrongCluster)
        );
        assert!(Keyring::insecure().is_insecure());
        assert!(!Keyring::new(SECRET).unwrap().is_insecure());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            Keyring::new(b"short"),
            Err(KeyError::TooShort { .. })
        ));
        assert!(matches!(
            Keyring::with_keys(&[("a", SECRET), ("b", SECRET)]),
            Err(KeyError::DuplicateKeyId { .. })
        ));
    }

    #[test]
    fn oversized_plaintext_is_refused() {
        let mut a = transport("c", SECRET, 1);
        assert!(a.seal(&[0u8; 1400]).is_err());
        assert!(a.seal(&[0u8; 1400 - OVERHEAD_BYTES]).is_ok());
    }
}
