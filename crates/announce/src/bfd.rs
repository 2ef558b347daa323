//! BFD (RFC 5880) asynchronous mode: single-hop over UDP 3784 with TTL 255 (RFC 5881) and
//! multi-hop over UDP 4784 (RFC 5883). Echo mode and authentication are not supported.
//!
//! - [`packet`]: the control packet codec, with typed drop reasons.
//! - [`session`]: the sans-IO session (Down/Init/Up/AdminDown, timer negotiation, poll/final,
//!   passive mode).
//! - [`driver`]: the tokio task that owns the UDP sockets and reports the state on a watch.

pub mod driver;
pub mod packet;
pub mod session;
