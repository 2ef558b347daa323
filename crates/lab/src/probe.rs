//! The client-side outage probe.
