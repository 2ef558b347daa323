//! Layer 2 announcement: make the LAN deliver a service IP to this node.
//!
//! Owns the ARP (IPv4) and NDP (IPv6) wire formats, the responder that answers requests for the
//! announced IPs, the gratuitous ARP / unsolicited NA schedule run on takeover, the eligibility
//! rules for interfaces and the sticky owner election. It does not own deciding which services
//! are announced, nor gossip: the election is a pure function of what the caller knows.
//!
//! The split follows the workspace's sans-IO rule:
//!
//! * [`proto`] is pure: codecs ([`proto::packet`]), the per-interface responder
//!   ([`proto::responder`]), the announcement schedule ([`proto::schedule`], time as input),
//!   interface eligibility ([`proto::interfaces`]) and the election ([`proto::election`]). It
//!   has no sockets, no clock and no tokio.
//! * [`io`] is the thin driver: netlink discovery, one AF_PACKET socket per eligible interface
//!   and the timer that runs the schedule.
//!
//! ```text
//!  netlink (rtnetlink) ──links+addrs──► Driver task (tokio) ◄── commands (set announcements)
//!                                        │  GratuitousSchedule (proto)
//!                                        │  solicited-node joins (UDP socket per interface)
//!                  per-interface command │ (std mpsc, bounded)
//!                                        ▼
//!               interface thread: AF_PACKET rx ─► Responder (proto) ─► AF_PACKET tx
//!                                        │ events (tokio mpsc, bounded, lossy)
//!                                        ▼
//!                                     caller (prints with -v, logs duplicates)
//! ```

pub mod io;
pub mod metrics;
pub mod netns;
pub mod probe;
pub mod proto;
pub mod tool;

pub use proto::packet::MacAddr;
