//! The pure part of layer 2: no sockets, no clock, no tokio.

pub mod election;
pub mod interfaces;
pub mod packet;
pub mod responder;
pub mod schedule;
