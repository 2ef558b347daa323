//! When to send gratuitous ARP / unsolicited NA, with time as an input.
//!
//! A takeover (an IP newly owned) starts a *burst*: a send at once, early repeats at +20 ms,
//! +100 ms and +500 ms so that one lost first frame does not leave a client on a dead MAC for
//! seconds, then MetalLB's cadence of one every 1.1 s until 5 s after the start. A change of
//! the interface set that gives an owned IP a new interface restarts its burst. Re-taking an IP
//! already owned with the same interfaces sends nothing (MetalLB re-sends on every reconcile;
//! `decisions.md` does not), and a release sends nothing: the successor's burst takes over.
//!
//! Call order, as quinn's `Connection`: feed [`Input`]s with [`GratuitousSchedule::handle`],
//! call [`GratuitousSchedule::handle_timeout`] when the instant from
//! [`GratuitousSchedule::poll_timeout`] has passed, and drain [`GratuitousSchedule::poll_action`]
//! after each call. The driver turns an [`Action::SendGratuitous`] into frames
//! ([`super::packet::gratuitous_arp`], [`super::packet::unsolicited_advertisement`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::interfaces::InterfaceSelection;

/// Offsets of the sends of one burst from its start, in milliseconds.
pub const BURST_OFFSETS_MS: [u64; 8] = [0, 20, 100, 500, 1100, 2200, 3300, 4400];

/// Owned IPs at most; a `Take` beyond it is refused with [`Action::TooManyIps`].
pub const IPS_MAX: usize = 1 << 16;

/// An input to the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// This node now owns `ip` (or its interface selection changed).
    Take {
        /// The service IP.
        ip: IpAddr,
        /// Interfaces it may be announced on.
        selection: InterfaceSelection,
    },
    /// This node no longer owns `ip`. Nothing is sent.
    Release {
        /// The service IP.
        ip: IpAddr,
    },
    /// The eligible interfaces are now `interfaces`.
    InterfacesChanged {
        /// Names of the eligible interfaces.
        interfaces: BTreeSet<String>,
    },
}

/// An output of the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Send the gratuitous frames for `ip` on `interface` now.
    SendGratuitous {
        /// The service IP.
        ip: IpAddr,
        /// The interface name.
        interface: String,
    },
    /// `ip` is owned but none of its selected interfaces is eligible here (MetalLB's
    /// `announceFailed`).
    NoInterface {
        /// The service IP.
        ip: IpAddr,
    },
    /// A `Take` was refused because [`IPS_MAX`] IPs are owned already.
    TooManyIps {
        /// The refused IP.
        ip: IpAddr,
    },
}

#[derive(Debug, Clone)]
struct Owned {
    selection: InterfaceSelection,
    interfaces: BTreeSet<String>,
    burst_start: Instant,
    /// Index into [`BURST_OFFSETS_MS`] of the next send; `len()` when the burst is over.
    next_step: usize,
}

impl Owned {
    fn deadline(&self) -> Option<Instant> {
        let offset_ms = *BURST_OFFSETS_MS.get(self.next_step)?;
        Some(self.burst_start + Duration::from_millis(offset_ms))
    }
}

/// The gratuitous ARP / unsolicited NA schedule of one node.
#[derive(Debug, Clone, Default)]
pub struct GratuitousSchedule {
    interfaces: BTreeSet<String>,
    owned: BTreeMap<IpAddr, Owned>,
    actions: VecDeque<Action>,
}

impl GratuitousSchedule {
    /// An empty schedule with no interfaces.
    pub fn new() -> Self {
        Self::default()
    }

    /// The IPs owned now.
    pub fn owned(&self) -> impl Iterator<Item = &IpAddr> {
        self.owned.keys()
    }

    /// Handles one input at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Take { ip, selection } => self.take(now, ip, selection),
            Input::Release { ip } => {
                self.owned.remove(&ip);
            }
            Input::InterfacesChanged { interfaces } => {
                self.interfaces = interfaces;
                for owned in self.owned.values_mut() {
                    let effective = owned.selection.effective(&self.interfaces);
                    let gained = effective.difference(&owned.interfaces).next().is_some();
                    owned.interfaces = effective;
                    if gained {
                        owned.burst_start = now;
                        owned.next_step = 0;
                    }
                }
            }
        }
        self.handle_timeout(now);
    }

    /// Emits every send that is due at `now`. A driver that wakes late sends once for all the
    /// steps it missed and continues with the next step in the future.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (ip, owned) in &mut self.owned {
            let mut due = false;
            while owned.deadline().is_some_and(|deadline| deadline <= now) {
                owned.next_step += 1;
                due = true;
            }
            if due {
                for interface in &owned.interfaces {
                    self.actions.push_back(Action::SendGratuitous {
                        ip: *ip,
                        interface: interface.clone(),
                    });
                }
            }
        }
    }

    /// The next output, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.owned.values().filter_map(Owned::deadline).min()
    }

    fn take(&mut self, now: Instant, ip: IpAddr, selection: InterfaceSelection) {
        let interfaces = selection.effective(&self.interfaces);
        if interfaces.is_empty() {
            self.actions.push_back(Action::NoInterface { ip });
        }
        let full = self.owned.len() >= IPS_MAX;
        match self.owned.get_mut(&ip) {
            Some(owned) if owned.selection == selection => {}
            Some(owned) => {
                let gained = interfaces.difference(&owned.interfaces).next().is_some();
                owned.selection = selection;
                owned.interfaces = interfaces;
                if gained {
                    owned.burst_start = now;
                    owned.next_step = 0;
                }
            }
            None if full => self.actions.push_back(Action::TooManyIps { ip }),
            None => {
                self.owned.insert(
                    ip,
                    Owned {
                        selection,
                        interfaces,
                        burst_start: now,
                        next_step: 0,
                    },
                );
            }
        }
    }
}
