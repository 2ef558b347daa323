//! One AF_PACKET socket per eligible interface, served by its own thread.
//!
//! The thread blocks in `recv` with a short timeout so that it can also run the commands of the
//! driver (new announced set, gratuitous frames to send, stop). A blocking thread per interface
//! instead of a tokio task keeps the reply path to one `poll` + `recvfrom` + `sendto`, which is
//! what makes the reply latency comparable with the kernel's.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::Duration;

use pnet::datalink::{self, Channel, Config, DataLinkReceiver, DataLinkSender, NetworkInterface};
use tokio::sync::mpsc;

use super::L2Event;
use crate::l2::metrics::L2Metrics;
use crate::l2::proto::packet::Frame;
use crate::l2::proto::responder::{InterfaceIdentity, Outcome, Responder};

/// How long a `recv` blocks before the thread looks at its commands again. It bounds the delay
/// of a gratuitous send, so it is well under the schedule's 20 ms step.
pub const RECV_TIMEOUT: Duration = Duration::from_millis(5);
/// Commands queued to one interface thread at most.
pub const COMMANDS_MAX: usize = 1024;

/// A command to an interface thread.
#[derive(Debug)]
pub enum InterfaceCommand {
    /// Replace the IPs announced on this interface.
    Announce(BTreeSet<IpAddr>),
    /// Replace the interface facts (the link-local address changed).
    Identity(InterfaceIdentity),
    /// Send these gratuitous frames for `ip`.
    SendGratuitous {
        /// The IP they announce.
        ip: IpAddr,
        /// The frames.
        frames: Vec<Frame>,
    },
    /// Stop the thread.
    Stop,
}

/// A running interface thread.
#[derive(Debug)]
pub struct InterfaceThread {
    /// Interface facts the thread was started with.
    pub identity: InterfaceIdentity,
    /// ifindex.
    pub index: u32,
    commands: SyncSender<InterfaceCommand>,
}

impl InterfaceThread {
    /// Opens the socket and starts the thread.
    pub fn start(
        index: u32,
        identity: InterfaceIdentity,
        metrics: L2Metrics,
        events: mpsc::Sender<L2Event>,
        verbose: bool,
    ) -> std::io::Result<Self> {
        let interface = NetworkInterface {
            name: identity.name.clone(),
            description: String::new(),
            index,
            mac: Some(pnet::util::MacAddr::from(identity.mac.0)),
            ips: Vec::new(),
            flags: 0,
        };
        let config = Config {
            read_timeout: Some(RECV_TIMEOUT),
            promiscuous: false,
            ..Config::default()
        };
        let Channel::Ethernet(tx, rx) = datalink::channel(&interface, config)? else {
            return Err(std::io::Error::other(
                "pnet returned a non-Ethernet channel",
            ));
        };
        let (commands, command_rx) = std::sync::mpsc::sync_channel(COMMANDS_MAX);
        let responder = Responder::new(identity.clone());
        let worker = Worker {
            responder,
            tx,
            rx,
            commands: command_rx,
            metrics,
            events,
            verbose,
        };
        std::thread::Builder::new()
            .name(format!("l2-{}", identity.name))
            .spawn(move || worker.run())?;
        Ok(Self {
            identity,
            index,
            commands,
        })
    }

    /// Queues a command; `false` if the thread is gone or its queue is full.
    pub fn send(&self, command: InterfaceCommand) -> bool {
        self.commands.try_send(command).is_ok()
    }
}

impl Drop for InterfaceThread {
    fn drop(&mut self) {
        let _ = self.commands.try_send(InterfaceCommand::Stop);
    }
}

struct Worker {
    responder: Responder,
    tx: Box<dyn DataLinkSender>,
    rx: Box<dyn DataLinkReceiver>,
    commands: Receiver<InterfaceCommand>,
    metrics: L2Metrics,
    events: mpsc::Sender<L2Event>,
    verbose: bool,
}

impl Worker {
    fn run(mut self) {
        let mut out = bytes::BytesMut::with_capacity(128);
        loop {
            if !self.run_commands(&mut out) {
                return;
            }
            let outcome = match self.rx.next() {
                Ok(bytes) => self.responder.handle_frame(bytes),
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.event(L2Event::Error {
                        interface: self.name(),
                        message: format!("receive: {error}"),
                    });
                    return;
                }
            };
            match outcome {
                Ok(Outcome::Reply {
                    ip,
                    requester,
                    frame,
                }) => {
                    L2Metrics::ip(&self.metrics.requests_received, ip).inc();
                    out.clear();
                    frame.encode(&mut out);
                    if self.transmit(&out) {
                        L2Metrics::ip(&self.metrics.responses_sent, ip).inc();
                        if self.verbose {
                            self.event(L2Event::Answered {
                                interface: self.name(),
                                ip,
                                requester,
                            });
                        }
                    }
                }
                Ok(Outcome::DuplicateAnswer { ip, mac }) => {
                    L2Metrics::ip(&self.metrics.duplicate_answers, ip).inc();
                    self.event(L2Event::DuplicateAnswer {
                        interface: self.name(),
                        ip,
                        mac,
                    });
                }
                Err(reason) if reason.is_expected() => {}
                Err(reason) => {
                    self.metrics.dropped(reason.label());
                    if self.verbose {
                        self.event(L2Event::Dropped {
                            interface: self.name(),
                            reason: reason.to_string(),
                        });
                    }
                }
            }
        }
    }

    /// Runs the queued commands; `false` when the thread must stop.
    fn run_commands(&mut self, out: &mut bytes::BytesMut) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(InterfaceCommand::Announce(ips)) => self.responder.set_announced(ips),
                Ok(InterfaceCommand::Identity(identity)) => self.responder.set_interface(identity),
                Ok(InterfaceCommand::SendGratuitous { ip, frames }) => {
                    let mut sent = 0;
                    for frame in &frames {
                        out.clear();
                        frame.encode(out);
                        if self.transmit(out) {
                            sent += 1;
                            L2Metrics::ip(&self.metrics.gratuitous_sent, ip).inc();
                        }
                    }
                    if self.verbose {
                        self.event(L2Event::GratuitousSent {
                            interface: self.name(),
                            ip,
                            frames: sent,
                        });
                    }
                }
                Ok(InterfaceCommand::Stop) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn transmit(&mut self, frame: &[u8]) -> bool {
        match self.tx.send_to(frame, None) {
            Some(Ok(())) => true,
            Some(Err(error)) => {
                self.event(L2Event::Error {
                    interface: self.name(),
                    message: format!("send: {error}"),
                });
                false
            }
            None => false,
        }
    }

    fn name(&self) -> String {
        self.responder.interface().name.clone()
    }

    fn event(&self, event: L2Event) {
        // Lossy on purpose: a slow reader must not stall the reply path.
        let _ = self.events.try_send(event);
    }
}
