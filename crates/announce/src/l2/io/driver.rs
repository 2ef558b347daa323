//! The layer 2 driver task: owns the schedule, the interface threads and the multicast joins.
//!
//! It does four things, as every driver here: turn netlink changes, caller commands and timer
//! fires into inputs; call the cores; run their actions (start/stop interface threads, push
//! announced sets, send gratuitous frames, join/leave solicited-node groups); re-arm one timer
//! from [`GratuitousSchedule::poll_timeout`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Instant;

use tokio::sync::mpsc;

use super::netlink::{LinkWatcher, NetlinkError};
use super::socket::{InterfaceCommand, InterfaceThread};
use super::L2Event;
use crate::l2::metrics::L2Metrics;
use crate::l2::proto::interfaces::{eligibility, ExcludeList, InterfaceSelection, LinkState};
use crate::l2::proto::packet::{gratuitous_arp, solicited_node_group, unsolicited_advertisement};
use crate::l2::proto::responder::InterfaceIdentity;
use crate::l2::proto::schedule::{self, GratuitousSchedule};

/// Commands queued to the driver at most.
pub const DRIVER_COMMANDS_MAX: usize = 256;

/// A command from the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Announce `ip` on the interfaces `selection` allows (a takeover: starts a burst).
    Announce {
        /// The service IP.
        ip: IpAddr,
        /// Interfaces.
        selection: InterfaceSelection,
    },
    /// Stop announcing `ip` (sends nothing).
    Withdraw {
        /// The service IP.
        ip: IpAddr,
    },
}

/// Driver settings.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Interface names never used.
    pub exclude: ExcludeList,
    /// Report every answer, gratuitous send and broken frame as an event.
    pub verbose: bool,
}

/// A driver failure that stops it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// Netlink failed.
    #[error("interface discovery")]
    Netlink(#[from] NetlinkError),
}

/// A live interface: its thread and its solicited-node memberships.
struct Live {
    link: LinkState,
    thread: InterfaceThread,
    /// Holds the multicast memberships; `None` if IPv6 is unusable on the link.
    multicast: Option<UdpSocket>,
    joined: BTreeSet<Ipv6Addr>,
}

/// The driver state.
pub struct Driver {
    config: DriverConfig,
    metrics: L2Metrics,
    events: mpsc::Sender<L2Event>,
    schedule: GratuitousSchedule,
    announced: BTreeMap<IpAddr, InterfaceSelection>,
    live: BTreeMap<String, Live>,
    skipped: BTreeMap<String, String>,
}

impl Driver {
    /// A driver that reports to `events`.
    pub fn new(config: DriverConfig, metrics: L2Metrics, events: mpsc::Sender<L2Event>) -> Self {
        Self {
            config,
            metrics,
            events,
            schedule: GratuitousSchedule::new(),
            announced: BTreeMap::new(),
            live: BTreeMap::new(),
            skipped: BTreeMap::new(),
        }
    }

    /// Runs until `commands` is closed.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) -> Result<(), DriverError> {
        let mut watcher = LinkWatcher::new()?;
        let links = watcher.snapshot().await?;
        self.apply_links(links);
        loop {
            let deadline = self.schedule.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.apply_command(command),
                    None => return Ok(()),
                },
                alive = watcher.changed() => {
                    if !alive {
                        return Err(DriverError::Netlink(NetlinkError::Socket(std::io::Error::other("netlink connection closed"))));
                    }
                    // A failed dump (e.g. interrupted by concurrent changes) is reported and
                    // retried at the next notification instead of stopping the announcer.
                    match watcher.snapshot().await {
                        Ok(links) => self.apply_links(links),
                        Err(error) => self.event(L2Event::Error { interface: String::new(), message: format!("{error}: {:?}", std::error::Error::source(&error)) }),
                    }
                }
                () = sleep => self.schedule.handle_timeout(Instant::now()),
            }
            self.run_schedule_actions();
        }
    }

    fn apply_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Announce { ip, selection } => {
                self.announced.insert(ip, selection.clone());
                self.schedule
                    .handle(now, schedule::Input::Take { ip, selection });
            }
            Command::Withdraw { ip } => {
                self.announced.remove(&ip);
                self.schedule.handle(now, schedule::Input::Release { ip });
            }
        }
        self.push_announced();
    }

    fn apply_links(&mut self, links: Vec<LinkState>) {
        let mut eligible: BTreeMap<String, LinkState> = BTreeMap::new();
        let mut skipped: BTreeMap<String, String> = BTreeMap::new();
        for link in links {
            match eligibility(&link, &self.config.exclude) {
                Ok(()) => {
                    eligible.insert(link.name.clone(), link);
                }
                Err(reason) => {
                    skipped.insert(link.name.clone(), reason.to_string());
                }
            }
        }
        for (name, reason) in &skipped {
            if self.skipped.get(name) != Some(reason) {
                self.event(L2Event::InterfaceSkipped {
                    interface: name.clone(),
                    reason: reason.clone(),
                });
            }
        }
        self.skipped.clone_from(&skipped);
        // Stop threads of links that went away, became ineligible or changed identity.
        let stale: Vec<String> = self
            .live
            .iter()
            .filter(|(name, live)| {
                eligible
                    .get(*name)
                    .is_none_or(|link| link.index != live.link.index || link.mac != live.link.mac)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            self.live.remove(&name);
            let reason = skipped
                .get(&name)
                .cloned()
                .unwrap_or_else(|| "gone or changed".to_owned());
            self.event(L2Event::InterfaceDown {
                interface: name,
                reason,
            });
        }
        for (name, link) in eligible {
            if let Some(live) = self.live.get_mut(&name) {
                // Same index and MAC: only the link-local can have changed.
                if live.link.link_local != link.link_local {
                    live.link.link_local = link.link_local;
                    let mut identity = live.thread.identity.clone();
                    identity.link_local = link.link_local;
                    live.thread.send(InterfaceCommand::Identity(identity));
                }
                continue;
            }
            let Some(mac) = link.mac else { continue };
            let identity = InterfaceIdentity {
                name: name.clone(),
                mac,
                link_local: link.link_local,
            };
            match InterfaceThread::start(
                link.index,
                identity,
                self.metrics.clone(),
                self.events.clone(),
                self.config.verbose,
            ) {
                Ok(thread) => {
                    let multicast =
                        UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).ok();
                    self.event(L2Event::InterfaceUp {
                        interface: name.clone(),
                        mac,
                    });
                    self.live.insert(
                        name,
                        Live {
                            link,
                            thread,
                            multicast,
                            joined: BTreeSet::new(),
                        },
                    );
                }
                Err(error) => self.event(L2Event::Error {
                    interface: name,
                    message: format!("open socket: {error}"),
                }),
            }
        }
        let names: BTreeSet<String> = self.live.keys().cloned().collect();
        self.schedule.handle(
            Instant::now(),
            schedule::Input::InterfacesChanged { interfaces: names },
        );
        self.push_announced();
    }

    /// Pushes every interface's announced set and syncs its solicited-node memberships.
    fn push_announced(&mut self) {
        let mut failures = Vec::new();
        for (name, live) in &mut self.live {
            let ips: BTreeSet<IpAddr> = self
                .announced
                .iter()
                .filter(|(_, selection)| selection.allows(name))
                .map(|(ip, _)| *ip)
                .collect();
            let groups: BTreeSet<Ipv6Addr> = ips
                .iter()
                .filter_map(|ip| match ip {
                    IpAddr::V6(ip) => Some(solicited_node_group(*ip)),
                    IpAddr::V4(_) => None,
                })
                .collect();
            if let Some(socket) = &live.multicast {
                for group in live.joined.difference(&groups) {
                    let _ = socket.leave_multicast_v6(group, live.link.index);
                }
                live.joined.retain(|group| groups.contains(group));
                for group in groups.difference(&live.joined.clone()) {
                    match socket.join_multicast_v6(group, live.link.index) {
                        Ok(()) => {
                            live.joined.insert(*group);
                        }
                        Err(error) => failures.push(L2Event::Error {
                            interface: name.clone(),
                            message: format!("join {group}: {error}"),
                        }),
                    }
                }
            }
            if !live.thread.send(InterfaceCommand::Announce(ips)) {
                failures.push(L2Event::Error {
                    interface: name.clone(),
                    message: "interface thread queue full".into(),
                });
            }
        }
        for failure in failures {
            self.event(failure);
        }
    }

    fn run_schedule_actions(&mut self) {
        while let Some(action) = self.schedule.poll_action() {
            match action {
                schedule::Action::SendGratuitous { ip, interface } => {
                    let Some(live) = self.live.get(&interface) else {
                        continue;
                    };
                    let mac = live.thread.identity.mac;
                    let frames = match ip {
                        IpAddr::V4(ip) => gratuitous_arp(mac, ip).to_vec(),
                        IpAddr::V6(ip) => {
                            vec![unsolicited_advertisement(mac, ip, ip)]
                        }
                    };
                    live.thread
                        .send(InterfaceCommand::SendGratuitous { ip, frames });
                }
                schedule::Action::NoInterface { ip } => self.event(L2Event::NoInterface { ip }),
                schedule::Action::TooManyIps { ip } => self.event(L2Event::Error {
                    interface: String::new(),
                    message: format!("too many announced IPs, {ip} refused"),
                }),
            }
        }
    }

    fn event(&self, event: L2Event) {
        let _ = self.events.try_send(event);
    }
}
