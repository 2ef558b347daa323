//! (crate doc written by the issue that builds this crate)

pub mod service;
