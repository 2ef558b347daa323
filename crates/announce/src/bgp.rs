//! BGP: ironlb's own speaker (RFC 4271), outbound-only, routes never learned.
//!
//! - [`message`]: pure encode/decode of every message, typed errors that become NOTIFICATIONs.
//! - [`rib`]: the Adj-RIB-Out of one peer, desired routes in, minimal UPDATE stream out.
//! - [`session`]: the RFC 4271 §8 state machine of one peer, sans-IO (time and bytes in,
//!   actions out).
//! - [`driver`]: the thin tokio task that owns the TCP socket (MD5, TTL, source address) and
//!   runs a [`session::Session`], optionally with a BFD session beside it.
//! - [`metrics`]: MetalLB's metric names.
//!
//! ```text
//!  routes (watch) ──► driver task ──► Session::handle ──► Action::{Connect, Send, Close}
//!  TCP reads ───────►     │       ◄── Session::poll_timeout (one timer)
//!  BFD state (watch) ─────┘  ──► metrics
//! ```

pub mod driver;
pub mod message;
pub mod metrics;
pub mod rib;
pub mod session;
pub(crate) mod sys;
pub mod tool;
