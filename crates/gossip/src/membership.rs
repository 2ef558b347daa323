//! The sans-IO membership core: SWIM (foca) behind our own API, sealed datagrams, published state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::{Duration, Instant};

use foca::{Foca, Member, OwnedNotification, PeriodicParams, Runtime, State, Timer};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{Config, ConfigError};
use crate::identity::{FocaId, MemberId, NodeName};
use crate::metrics::GossipMetrics;
use crate::pages::{self, Layout, PageDigest, INLINE_CLAIMS_MAX};
use crate::seal::{DropReason, Keyring, SealedTransport, OVERHEAD_BYTES, PROTOCOL_VERSION};
use crate::state::{
    NodeState, PagedHeader, SharedHandle, StateHandler, StateRecord, Summary, SummaryClaims,
};
use crate::wire::{
    self, decode_frame, encode_item, ClaimsPage, Directory, Frame, Item, WireCodec, CLAIMS_MAX,
};

/// Most datagrams sent in answer to one sync request.
pub const SYNC_REPLY_DATAGRAMS_MAX: usize = 32;
/// Most seeds kept.
pub const SEEDS_MAX: usize = 1024;
/// Most rounds of "run foca, derive events, push news" per input.
const ROUNDS_MAX: usize = 4;

/// An input to [`Membership::handle`]. Serialisable (serde), so a simulator can record and replay
/// traces; `now` is passed beside it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Input {
    /// A datagram arrived on the gossip socket.
    Datagram {
        /// UDP source.
        from: SocketAddr,
        /// The bytes as received.
        bytes: Vec<u8>,
    },
    /// The deadline from [`Membership::poll_timeout`] passed.
    Timeout,
    /// Announce ourselves to these addresses now, and again every `rejoin_interval` while they are
    /// not alive members (the speaker's list of speaker pod IPs).
    Join(Vec<SocketAddr>),
    /// Publish the service IPs this node announces.
    SetClaims(BTreeSet<IpAddr>),
    /// Publish the `leaving` flag (planned handover).
    SetLeaving(bool),
    /// Leave the cluster now; others see [`MemberEvent::Left`] within a round trip.
    Leave,
}

/// An output, read with [`Membership::poll_action`]. Serialisable (serde).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// Send this sealed datagram.
    Send {
        /// Destination.
        to: SocketAddr,
        /// Sealed bytes, at most the MTU.
        bytes: Vec<u8>,
    },
    /// Membership changed.
    Event(MemberEvent),
}

/// A membership change, always about one life ([`MemberId`]) of a node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum MemberEvent {
    /// A life joined (first contact, restart with a new incarnation, or rejoin after a partition).
    Up(MemberId),
    /// A member failed a probe; it is still counted alive until it refutes or is declared down.
    Suspect(MemberId),
    /// A suspect member refuted the suspicion.
    Alive(MemberId),
    /// A life was declared dead (or replaced by a newer life of the same node).
    Down(MemberId),
    /// A life left gracefully ([`Input::Leave`]).
    Left(MemberId),
    /// A member published a new state.
    Updated(MemberId, NodeState),
}

/// How we see a member.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Liveness {
    /// Answers probes.
    Alive,
    /// Failed a probe, not yet declared down.
    Suspect,
    /// Declared dead.
    Down,
    /// Left gracefully.
    Left,
}

impl Liveness {
    /// Alive or suspect: still counted as a member.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Alive | Self::Suspect)
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Down => "down",
            Self::Left => "left",
        }
    }
}

/// A member as we see it now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberSnapshot {
    /// The life.
    pub id: MemberId,
    /// Its liveness.
    pub liveness: Liveness,
    /// Its latest published state, if we have one for this life.
    pub state: Option<NodeState>,
}

/// A claim list that cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// More claims than one node may publish.
    #[error("{claims} claimed IPs, more than the {CLAIMS_MAX} one node may publish")]
    TooManyClaims {
        /// How many were given.
        claims: usize,
    },
    /// The claims do not fit the most pages one node may use at this MTU.
    #[error("{claims} claimed IPs do not fit {pages} pages of {page_bytes} bytes (the MTU is too small)")]
    DoNotFit {
        /// How many were given.
        claims: usize,
        /// The most pages at this MTU.
        pages: usize,
        /// Bytes of IPs per page at this MTU.
        page_bytes: usize,
    },
}

#[derive(Debug, Clone)]
struct ViewEntry {
    id: MemberId,
    swim_incarnation: u16,
    liveness: Liveness,
}

#[derive(Debug, Clone)]
enum TimerKind {
    Foca(Timer<FocaId>),
    Sync,
    Rejoin,
    /// Repeat "you are suspected" to a suspect while it stays suspected at this incarnation.
    SuspectNotice {
        id: MemberId,
        swim_incarnation: u16,
        remaining: u8,
    },
    /// Ask the active members whose state we lack for it (see [`STATE_RETRY_FIRST`]).
    StateCheck,
    /// Ask an owner again for the pages of its pending summary.
    Pull {
        name: NodeName,
        generation: u64,
    },
}

/// Pages being collected from one owner (see [`crate::pages`]).
#[derive(Debug, Clone)]
struct Assembly {
    directory: Directory,
    pages: Vec<Option<Vec<IpAddr>>>,
}

#[derive(Debug, Clone)]
struct Pull {
    /// Matches the armed retry timer.
    generation: u64,
    /// Requests sent without a complete answer.
    attempts: u32,
    assembly: Option<Assembly>,
    /// Ask for every page (a digest collision made the last assembly inconsistent).
    full: bool,
}

/// Requests for one owner's pages before giving up (about 10 s with the `lan` profile).
const PULL_ATTEMPTS_MAX: u32 = 64;

/// How often we look for active members whose state we lack, and the first delay before asking
/// such a member again. A (re)starting node's one sync request, or its answer, can be lost; without
/// a retry it learnt a member's claims only from anti-entropy (a random member every
/// `sync_interval`), after the speaker's settle, and took IPs others held (found by the simulator
/// with 5% loss). The delay doubles per member up to `sync_interval`, where anti-entropy takes over.
const STATE_RETRY_FIRST: Duration = Duration::from_millis(200);

/// When to ask a member whose state we lack again.
#[derive(Debug, Clone)]
struct StateRetry {
    id: MemberId,
    next_at: Instant,
    delay: Duration,
}

/// How many times a suspect is told directly (spread over the suspicion timeout).
const SUSPECT_NOTICES: u8 = 4;

/// foca's RNG: our seeded ChaCha behind the rand 0.10 trait foca is built on.
struct FocaRng(ChaCha8Rng);

impl rand_core_010::TryRng for FocaRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, destination: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_bytes(destination);
        Ok(())
    }
}

/// What foca asked for during one call.
#[derive(Default)]
struct Collector {
    sends: Vec<(FocaId, Vec<u8>)>,
    timers: Vec<(Duration, Timer<FocaId>)>,
    notifications: Vec<OwnedNotification<FocaId>>,
}

impl Runtime<FocaId> for Collector {
    fn notify(&mut self, notification: foca::Notification<'_, FocaId>) {
        self.notifications.push(notification.to_owned());
    }

    fn send_to(&mut self, to: FocaId, data: &[u8]) {
        self.sends.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<FocaId>, after: Duration) {
        self.timers.push((after, event));
    }
}

type Swim = Foca<FocaId, WireCodec, FocaRng, StateHandler>;

/// Cluster membership of one node, as a sans-IO state machine.
///
/// Call order, as quinn's `Connection`:
/// 1. [`Membership::new`], then [`Input::Join`] with the seeds.
/// 2. Feed every received datagram as [`Input::Datagram`], and [`Input::Timeout`] whenever the
///    deadline of [`Membership::poll_timeout`] passes (it may change after every call).
/// 3. After every [`Membership::handle`], drain [`Membership::poll_action`]: send the datagrams,
///    deliver the events.
///
/// Time (`now`) and randomness (the seed) are inputs: the same seed and the same inputs give the
/// same outputs, which is what the simulator needs.
pub struct Membership {
    config: Config,
    swim: Swim,
    collector: Collector,
    transport: SealedTransport,
    rng: ChaCha8Rng,
    shared: SharedHandle,
    me: MemberId,
    local_state: NodeState,
    local_version: u64,
    view: BTreeMap<NodeName, ViewEntry>,
    timers: BTreeMap<(Instant, u64), TimerKind>,
    timer_sequence: u64,
    actions: VecDeque<Action>,
    seeds: BTreeSet<SocketAddr>,
    left: bool,
    sync_cursor: Option<NodeName>,
    configured_members: usize,
    /// When the last indirect probe round was sent (for the stall guard in `handle_timeout`).
    indirect_probe_at: Option<Instant>,
    /// Our claims' pages, when there are more than fit inline.
    local_layout: Option<Layout>,
    /// Pulls of other members' pages in progress, by name.
    pulls: BTreeMap<NodeName, Pull>,
    /// Active members whose state we lack, asked directly with backoff.
    state_retries: BTreeMap<NodeName, StateRetry>,
    pull_generation: u64,
    /// The source of the datagram being handled (foca's payload), if any.
    datagram_from: Option<SocketAddr>,
    /// The highest SWIM incarnation of ours already announced to every member (a refutation).
    announced_incarnation: u16,
    /// When a suspect that contacted us was last told of its suspicion.
    contact_notices: BTreeMap<NodeName, Instant>,
    metrics: GossipMetrics,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Membership")
            .field("me", &self.me)
            .field("members", &self.view.len())
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

fn foca_config(config: &Config, members: usize) -> foca::Config {
    let plaintext_max = config.mtu_bytes.saturating_sub(OVERHEAD_BYTES + 1).max(64);
    let fanout = NonZeroUsize::new(config.indirect_probes).unwrap_or(NonZeroUsize::MIN);
    foca::Config {
        probe_period: config.probe_period,
        probe_rtt: config.probe_timeout,
        num_indirect_probes: fanout,
        max_transmissions: NonZeroU8::new(config.retransmissions(members))
            .unwrap_or(NonZeroU8::MIN),
        suspect_to_down_after: config.suspicion_timeout(members),
        remove_down_after: Some(config.forget_down_after),
        max_packet_size: NonZeroUsize::new(plaintext_max).unwrap_or(NonZeroUsize::MIN),
        notify_down_members: true,
        periodic_announce: Some(PeriodicParams {
            frequency: config.sync_interval * 5,
            num_members: NonZeroUsize::MIN,
        }),
        periodic_announce_to_down_members: Some(PeriodicParams {
            frequency: config.rejoin_interval,
            num_members: NonZeroUsize::MIN.saturating_add(1),
        }),
        periodic_gossip: Some(PeriodicParams {
            frequency: config.gossip_interval,
            num_members: fanout,
        }),
    }
}

impl Membership {
    /// A member `me` of the cluster `config.cluster_name`, sealing with `keyring`. `seed` drives
    /// every random choice (probe order, nonce prefix); give the driver 64 bits from the OS, and the
    /// simulator its seed.
    pub fn new(
        config: Config,
        me: MemberId,
        keyring: Keyring,
        seed: u64,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut foca_rng = ChaCha8Rng::seed_from_u64(seed);
        foca_rng.set_stream(1);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(2);
        let mut boot_id = [0u8; 4];
        rng.fill_bytes(&mut boot_id);
        let counter_start = rng.next_u64();
        let transport = SealedTransport::new(
            &config.cluster_name,
            keyring,
            config.mtu_bytes,
            boot_id,
            counter_start,
        );
        let shared = SharedHandle::default();
        shared.lock().local = Some(me.name.clone());
        let swim = Foca::with_custom_broadcast(
            FocaId(me.clone()),
            foca_config(&config, 1),
            FocaRng(foca_rng),
            WireCodec {
                shared: shared.clone(),
            },
            StateHandler {
                shared: shared.clone(),
            },
        );
        let mut membership = Self {
            config,
            swim,
            collector: Collector::default(),
            transport,
            rng,
            shared,
            me,
            local_state: NodeState {
                protocol_version: PROTOCOL_VERSION,
                ..NodeState::default()
            },
            local_version: 0,
            view: BTreeMap::new(),
            timers: BTreeMap::new(),
            timer_sequence: 0,
            actions: VecDeque::new(),
            seeds: BTreeSet::new(),
            left: false,
            sync_cursor: None,
            configured_members: 1,
            indirect_probe_at: None,
            local_layout: None,
            pulls: BTreeMap::new(),
            state_retries: BTreeMap::new(),
            pull_generation: 0,
            datagram_from: None,
            announced_incarnation: 0,
            contact_notices: BTreeMap::new(),
            metrics: GossipMetrics::default(),
        };
        let sync_at = now + membership.jitter(membership.config.sync_interval);
        membership.arm(sync_at, TimerKind::Sync);
        membership.arm(now + STATE_RETRY_FIRST, TimerKind::StateCheck);
        let rejoin_at = now + membership.config.rejoin_interval;
        membership.arm(rejoin_at, TimerKind::Rejoin);
        membership.publish(now);
        Ok(membership)
    }

    /// Our current life (the incarnation grows if the cluster declared us down and we rejoined).
    pub fn local_id(&self) -> &MemberId {
        &self.me
    }

    /// Records into `metrics` from now on: a registry's instance that outlives this member (the
    /// speaker registers one set and keeps it across restarts of its membership).
    pub fn use_metrics(&mut self, metrics: GossipMetrics) {
        self.metrics = metrics;
    }

    /// The metrics of this member; register them with [`GossipMetrics::register`].
    pub fn metrics(&self) -> &GossipMetrics {
        &self.metrics
    }

    /// Replaces the metrics handle (to share one registered set across restarts of the core).
    pub fn set_metrics(&mut self, metrics: GossipMetrics) {
        self.metrics = metrics;
    }

    /// Replaces the keyring (key rotation). The primary of the new ring seals from now on.
    pub fn set_keyring(&mut self, keyring: Keyring) {
        self.transport.set_keyring(keyring);
    }

    /// Adds members known to be alive without contacting them first: for restoring the view after a
    /// restart, or for a simulation that starts from a converged cluster. They are probed like any
    /// other member and declared down if they do not answer.
    pub fn assume_alive(&mut self, now: Instant, members: Vec<MemberId>) {
        if self.left {
            return;
        }
        let members: Vec<Member<FocaId>> = members
            .into_iter()
            .filter(|id| id.name != self.me.name && !id.name.is_placeholder())
            .map(|id| Member::alive(FocaId(id)))
            .collect();
        let backlog = self.swim.updates_backlog();
        // Not broadcast: everyone is assumed to know these already.
        let _ = self
            .swim
            .apply_many(members.into_iter(), false, &mut self.collector);
        self.after_swim(now, true, backlog);
    }

    /// Every member we know (not us), ordered by name.
    pub fn members(&self) -> Vec<MemberSnapshot> {
        let shared = self.shared.lock();
        self.view
            .values()
            .map(|entry| MemberSnapshot {
                id: entry.id.clone(),
                liveness: entry.liveness,
                state: shared
                    .states
                    .get(&entry.id.name)
                    .filter(|r| r.member == entry.id)
                    .map(|r| r.state.clone()),
            })
            .collect()
    }

    /// The names of the active (alive or suspect) members, us included.
    pub fn active_names(&self) -> BTreeSet<NodeName> {
        let mut names: BTreeSet<NodeName> = self
            .view
            .values()
            .filter(|e| e.liveness.is_active())
            .map(|e| e.id.name.clone())
            .collect();
        if !self.left {
            names.insert(self.me.name.clone());
        }
        names
    }

    /// Whether [`Input::Leave`] was handled.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// The next deadline at which [`Input::Timeout`] must be handled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// The next output.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Publishes the claims; fails if there are more than [`CLAIMS_MAX`] or they do not fit the
    /// pages of this MTU ([`Input::SetClaims`] ignores such a set and keeps the previous one).
    pub fn set_claims(&mut self, now: Instant, claims: BTreeSet<IpAddr>) -> Result<(), StateError> {
        self.layout_for(&claims)?;
        self.handle(now, Input::SetClaims(claims));
        Ok(())
    }

    /// The pages of `claims` (`None` when they fit inline), or why they cannot be published.
    fn layout_for(&self, claims: &BTreeSet<IpAddr>) -> Result<Option<Layout>, StateError> {
        if claims.len() > CLAIMS_MAX {
            return Err(StateError::TooManyClaims {
                claims: claims.len(),
            });
        }
        if claims.len() <= INLINE_CLAIMS_MAX {
            return Ok(None);
        }
        let plaintext_bytes = self.page_bytes_max();
        let page_bytes =
            plaintext_bytes.saturating_sub(wire::claims_page_overhead_bytes(&self.layout_id()));
        let digest_room =
            plaintext_bytes.saturating_sub(wire::directory_overhead_bytes(&self.layout_id()));
        // The largest power of two whose digests fit a directory (and a pull request).
        let mut pages_max = 1usize;
        while pages_max * 2 * pages::PAGE_DIGEST_BYTES <= digest_room
            && pages_max * 2 <= pages::PAGES_MAX
        {
            pages_max *= 2;
        }
        pages::layout(claims, page_bytes, pages_max)
            .map(Some)
            .ok_or(StateError::DoNotFit {
                claims: claims.len(),
                pages: pages_max,
                page_bytes,
            })
    }

    /// Our identity with the largest incarnation, so a rejoin (incarnation + 1) never makes a
    /// page that fitted too large.
    fn layout_id(&self) -> MemberId {
        MemberId {
            incarnation: u64::MAX,
            ..self.me.clone()
        }
    }

    /// Handles one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Datagram { from, bytes } => self.handle_datagram(now, from, &bytes),
            Input::Timeout => self.handle_timeout(now),
            Input::Join(seeds) => self.join(now, seeds),
            Input::SetClaims(claims) => {
                if self.left || claims == self.local_state.claims {
                    return;
                }
                let Ok(layout) = self.layout_for(&claims) else {
                    return;
                };
                self.local_state.claims = claims;
                self.local_layout = layout;
                self.publish(now);
            }
            Input::SetLeaving(leaving) => {
                if self.left || leaving == self.local_state.leaving {
                    return;
                }
                self.local_state.leaving = leaving;
                self.publish(now);
            }
            Input::Leave => self.leave(now),
        }
        self.start_pulls(now);
    }

    fn jitter(&mut self, interval: Duration) -> Duration {
        // Spread periodic work by up to a quarter of its interval so members do not tick together.
        let quarter_ms = (interval.as_millis() / 4).max(1) as u64;
        interval + Duration::from_millis(self.rng.next_u64() % quarter_ms)
    }

    fn arm(&mut self, at: Instant, kind: TimerKind) {
        self.timer_sequence += 1;
        self.timers.insert((at, self.timer_sequence), kind);
    }

    fn join(&mut self, now: Instant, seeds: Vec<SocketAddr>) {
        for seed in seeds {
            if self.seeds.len() >= SEEDS_MAX {
                break;
            }
            if seed != self.me.addr {
                self.seeds.insert(seed);
            }
        }
        self.announce_to_seeds(now);
    }

    fn announce_to_seeds(&mut self, now: Instant) {
        if self.left {
            return;
        }
        let alive: BTreeSet<SocketAddr> = self
            .view
            .values()
            .filter(|e| e.liveness.is_active())
            .map(|e| e.id.addr)
            .collect();
        let targets: Vec<SocketAddr> = self
            .seeds
            .iter()
            .filter(|s| !alive.contains(s))
            .copied()
            .collect();
        let backlog = self.swim.updates_backlog();
        for seed in targets {
            // We do not know the seed's name or incarnation yet: foca accepts an announce addressed
            // to any identity with the right address.
            let placeholder = FocaId(MemberId::new(NodeName::placeholder(), 0, seed));
            let _ = self.swim.announce(placeholder, &mut self.collector);
        }
        self.after_swim(now, false, backlog);
    }

    /// A new version of our record, stored in the shared table; returns the broadcast item.
    fn next_local_record(&mut self) -> Vec<u8> {
        self.local_version += 1;
        let record = StateRecord {
            member: self.me.clone(),
            version: self.local_version,
            state: self.local_state.clone(),
            paged: self
                .local_layout
                .as_ref()
                .and_then(|layout| PagedHeader::of(&self.local_state.claims, layout.page_count)),
        };
        let item = encode_item(&Item::State(record.summary()));
        self.shared.lock().apply_record(record, true);
        item
    }

    fn publish(&mut self, now: Instant) {
        let item = self.next_local_record();
        let backlog = self.swim.updates_backlog();
        // Queues the record (stored above) for dissemination.
        let _ = self.swim.add_broadcast(&item);
        let _ = self.swim.broadcast(&mut self.collector);
        self.after_swim(now, false, backlog);
    }

    fn leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.local_state.leaving = true;
        self.publish(now);
        let me = self.me.clone();
        self.shared.lock().apply_goodbye(me.clone());
        let _ = self
            .swim
            .add_broadcast(&encode_item(&Item::Goodbye(me.clone())));
        // Tell every active member directly, so all see `Left` within one trip.
        let mut frame = vec![wire::KIND_GOODBYE];
        wire::put_member_id(&mut frame, &me);
        let targets: Vec<SocketAddr> = self
            .view
            .values()
            .filter(|e| e.liveness.is_active())
            .map(|e| e.id.addr)
            .collect();
        for to in targets {
            self.send_frame(to, &frame);
        }
        let backlog = self.swim.updates_backlog();
        let _ = self.swim.leave_cluster(&mut self.collector);
        self.after_swim(now, false, backlog);
        self.left = true;
        self.timers.clear();
    }

    fn handle_timeout(&mut self, now: Instant) {
        // Bounded: timers armed while handling are due later than `now` (foca never asks for a zero
        // delay in practice), and the bound stops a pathological loop anyway.
        for _ in 0..10_000 {
            let Some((&key, _)) = self.timers.iter().next() else {
                break;
            };
            if key.0 > now {
                break;
            }
            let Some(kind) = self.timers.remove(&key) else {
                break;
            };
            match kind {
                TimerKind::Foca(timer) => {
                    if let Timer::SendIndirectProbe { .. } = timer {
                        self.indirect_probe_at = Some(now);
                    }
                    if let Timer::ProbeRandomMember(_) = timer {
                        // Local health: if we were stalled, the indirect probes went out late and
                        // had no time to be answered. Give them the window foca normally gives
                        // (probe_period - probe_timeout) before judging the probe failed.
                        let window = self
                            .config
                            .probe_period
                            .saturating_sub(self.config.probe_timeout);
                        if let Some(sent) = self.indirect_probe_at.take() {
                            if now < sent + window {
                                self.arm(sent + window, TimerKind::Foca(timer));
                                continue;
                            }
                        }
                    }
                    let force = matches!(
                        timer,
                        Timer::ChangeSuspectToDown { .. } | Timer::RemoveDown(_)
                    );
                    let backlog = self.swim.updates_backlog();
                    let _ = self.swim.handle_timer(timer, &mut self.collector);
                    self.after_swim(now, force, backlog);
                }
                TimerKind::Sync => {
                    self.sync_push();
                    let at = now + self.jitter(self.config.sync_interval);
                    self.arm(at, TimerKind::Sync);
                }
                TimerKind::StateCheck => {
                    self.ask_for_missing_states(now);
                    self.arm(now + STATE_RETRY_FIRST, TimerKind::StateCheck);
                }
                TimerKind::Rejoin => {
                    self.announce_to_seeds(now);
                    let at = now + self.jitter(self.config.rejoin_interval);
                    self.arm(at, TimerKind::Rejoin);
                }
                TimerKind::Pull { name, generation } => {
                    if self
                        .pulls
                        .get(&name)
                        .is_some_and(|pull| pull.generation == generation)
                    {
                        self.pull(now, &name);
                    }
                }
                TimerKind::SuspectNotice {
                    id,
                    swim_incarnation,
                    remaining,
                } => {
                    let still = self.view.get(&id.name).is_some_and(|e| {
                        e.id == id
                            && e.liveness == Liveness::Suspect
                            && e.swim_incarnation == swim_incarnation
                    });
                    if still {
                        self.suspect_notice(now, id, swim_incarnation, remaining);
                    }
                }
            }
        }
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.metrics.received_bytes.inc_by(bytes.len() as u64);
        self.metrics.received_datagrams.inc();
        if self.left {
            return;
        }
        let plaintext = match self.transport.open(from, bytes) {
            Ok(plaintext) => plaintext,
            Err(reason) => {
                self.metrics.drop_datagram(reason);
                return;
            }
        };
        let Ok(frame) = decode_frame(&plaintext) else {
            self.metrics.drop_datagram(DropReason::Malformed);
            return;
        };
        self.notice_on_contact(now, from);
        match frame {
            Frame::Foca(payload) => {
                let backlog = self.swim.updates_backlog();
                self.datagram_from = Some(from);
                if let Err(error) = self.swim.handle_data(&payload, &mut self.collector) {
                    self.metrics.drop_datagram(match error {
                        foca::Error::Decode(_)
                        | foca::Error::MalformedPacket
                        | foca::Error::DataTooBig => DropReason::Malformed,
                        _ => DropReason::Rejected,
                    });
                }
                self.after_swim(now, false, backlog);
                self.datagram_from = None;
            }
            Frame::StatePage(records) => {
                {
                    let mut shared = self.shared.lock();
                    for record in records {
                        shared.apply_summary(record);
                    }
                }
                self.after_swim(now, false, self.swim.updates_backlog());
            }
            Frame::PullRequest {
                owner,
                page_count,
                digests,
            } => {
                // Only members get pages: an answer is up to PAGES_MAX datagrams, which must not
                // be aimed at a spoofed source (insecure mode has no authentication).
                let member = self
                    .view
                    .values()
                    .any(|e| e.id.addr == from && e.liveness.is_active());
                if owner.name != self.me.name || !member {
                    self.metrics.drop_datagram(DropReason::Rejected);
                    return;
                }
                self.answer_pull(from, page_count, &digests);
            }
            Frame::Directory(directory) => self.receive_directory(now, directory),
            Frame::ClaimsPage(page) => self.receive_claims_page(now, page),
            Frame::SyncRequest => self.sync_reply(from),
            Frame::SuspectNotice(id, swim_incarnation) => {
                if id != self.me {
                    // About an older life of ours or someone else: nothing to refute.
                    return;
                }
                // foca refutes a suspicion about itself by raising its SWIM incarnation.
                let backlog = self.swim.updates_backlog();
                let suspected = Member::new(FocaId(id), swim_incarnation, State::Suspect);
                let _ = self
                    .swim
                    .apply_many(std::iter::once(suspected), true, &mut self.collector);
                self.after_swim(now, false, backlog);
            }
            Frame::AliveNotice(id, swim_incarnation) => {
                if id.name == self.me.name || id.name.is_placeholder() {
                    self.metrics.drop_datagram(DropReason::Rejected);
                    return;
                }
                // Only about a life we know: a notice never adds a member.
                let known = self.view.get(&id.name).is_some_and(|e| e.id == id);
                if !known {
                    return;
                }
                let backlog = self.swim.updates_backlog();
                let alive = Member::new(FocaId(id), swim_incarnation, State::Alive);
                let _ = self
                    .swim
                    .apply_many(std::iter::once(alive), true, &mut self.collector);
                self.after_swim(now, true, backlog);
            }
            Frame::Goodbye(id) => {
                if id.name == self.me.name || id.name.is_placeholder() {
                    self.metrics.drop_datagram(DropReason::Rejected);
                    return;
                }
                self.shared.lock().apply_goodbye(id.clone());
                let backlog = self.swim.updates_backlog();
                let _ = self.swim.apply_many(
                    std::iter::once(Member::down(FocaId(id))),
                    true,
                    &mut self.collector,
                );
                self.after_swim(now, true, backlog);
            }
        }
    }

    fn send_frame(&mut self, to: SocketAddr, frame: &[u8]) {
        // Sealing fails only for an oversized frame or an exhausted nonce counter: the datagram is
        // then not sent (never in clear).
        if let Ok(bytes) = self.transport.seal(frame) {
            self.metrics.sent_bytes.inc_by(bytes.len() as u64);
            self.metrics.sent_datagrams.inc();
            self.actions.push_back(Action::Send { to, bytes });
        }
    }

    /// Runs after every call into foca: sends, timers, events, and pushing news at once.
    fn after_swim(&mut self, now: Instant, mut force_diff: bool, _backlog_before: usize) {
        let mut want_sync = false;
        for _round in 0..ROUNDS_MAX {
            let sends = std::mem::take(&mut self.collector.sends);
            let timers = std::mem::take(&mut self.collector.timers);
            let notifications = std::mem::take(&mut self.collector.notifications);
            for (after, timer) in timers {
                if let Timer::ChangeSuspectToDown {
                    member_id,
                    incarnation,
                    ..
                } = &timer
                {
                    // A member just became suspect here: tell it directly, so it can refute.
                    force_diff = true;
                    self.suspect_notice(now, member_id.0.clone(), *incarnation, SUSPECT_NOTICES);
                }
                if !self.left {
                    self.arm(now + after, TimerKind::Foca(timer));
                }
            }
            let mut republish = false;
            for notification in &notifications {
                match notification {
                    // We just joined (or came back): ask for everyone's state at once, once `diff`
                    // has put the members in the view (the request goes to one of them).
                    OwnedNotification::Active => want_sync = true,
                    OwnedNotification::Rejoin(new) => {
                        // The cluster declared our previous life down; foca moved us to a new one.
                        self.me = new.0.clone();
                        self.announced_incarnation = 0;
                        republish = true;
                        want_sync = true;
                    }
                    _ => {}
                }
            }
            if !notifications.is_empty() {
                force_diff = true;
            }
            if !force_diff {
                force_diff = self.observed_differs();
            } else {
                let mut shared = self.shared.lock();
                shared.observed.clear();
                shared.observed_overflow = false;
            }
            let mut news = false;
            let mut superseded = Vec::new();
            if force_diff {
                let (changed, stale) = self.diff();
                news = changed;
                superseded = stale;
                self.adjust_config();
            }
            if want_sync && self.view.values().any(|e| e.liveness.is_active()) {
                // Found by the simulator (H4): requested before `diff`, it had no member to go to,
                // and a restarted node learnt the others' claims only from anti-entropy (~2 s).
                // Ask the member whose datagram made us active (it is alive: a random one may be
                // a dead member we have not detected yet).
                want_sync = false;
                match self.datagram_from {
                    Some(from) => self.send_frame(from, &[wire::KIND_SYNC_REQUEST]),
                    None => self.sync_request(),
                }
            }
            self.emit_updates();
            for (to, payload) in sends {
                self.send_swim(to, payload);
            }
            if republish {
                self.publish_without_flush();
            }
            if !superseded.is_empty() {
                // An older life of a node is still alive in foca while a newer one is up: retire it.
                let _ = self.swim.apply_many(
                    superseded.into_iter().map(|id| Member::down(FocaId(id))),
                    true,
                    &mut self.collector,
                );
            }
            if !self.left && news {
                // Push urgent news (suspicion, death, leave, refutation seen) now instead of at the
                // next gossip tick. Joins are not urgent: they ride the periodic gossip, which keeps
                // a join storm from turning into a flood. (foca pushes its own refutations.)
                let _ = self.swim.gossip(&mut self.collector);
            }
            force_diff = false;
            if self.collector.sends.is_empty()
                && self.collector.timers.is_empty()
                && self.collector.notifications.is_empty()
            {
                return;
            }
        }
        // Flush whatever the last round produced without deriving more news.
        let sends = std::mem::take(&mut self.collector.sends);
        for (to, payload) in sends {
            self.send_swim(to, payload);
        }
        for (after, timer) in std::mem::take(&mut self.collector.timers) {
            if !self.left {
                self.arm(now + after, TimerKind::Foca(timer));
            }
        }
        self.collector.notifications.clear();
    }

    fn send_swim(&mut self, to: FocaId, payload: Vec<u8>) {
        // foca 2.0.0 sends `TurnUndead` when a suspicion timer fires even if the suspect refuted in
        // time (the failed condition still reaches the courtesy message), which would force a live
        // member into a new life. Only tell members that are really down.
        if let Some(destination) = wire::turn_undead_destination(&payload) {
            let refuted = self
                .view
                .get(&destination.name)
                .is_some_and(|entry| entry.id == destination && entry.liveness.is_active());
            if refuted {
                return;
            }
        }
        let refuted = wire::src_incarnation(&payload)
            .filter(|incarnation| *incarnation > self.announced_incarnation);
        let mut frame = Vec::with_capacity(payload.len() + 1);
        frame.push(wire::KIND_FOCA);
        frame.extend_from_slice(&payload);
        self.send_frame(to.0.addr, &frame);
        if let Some(incarnation) = refuted {
            // We just refuted a suspicion. foca only tells the members it happens to message (a
            // few random ones); any other member that heard the suspicion declares us down when
            // its timer fires, and Down is final. Tell every member directly (measured: 44 false
            // Downs in 10 min at 5 members and 2 % loss without this).
            self.announced_incarnation = incarnation;
            let mut notice = vec![wire::KIND_ALIVE_NOTICE];
            wire::put_member_id(&mut notice, &self.me);
            notice.extend_from_slice(&incarnation.to_be_bytes());
            let targets: Vec<SocketAddr> = self
                .view
                .values()
                .filter(|e| e.liveness.is_active())
                .map(|e| e.id.addr)
                .collect();
            for target in targets {
                self.send_frame(target, &notice);
            }
        }
    }

    /// A member we suspect just sent us a datagram, so it is reachable now (a partition healed, a
    /// stall ended): tell it at once that it is suspected rather than at the next scheduled
    /// notice, which may come after our suspicion timer. At most once per probe timeout.
    fn notice_on_contact(&mut self, now: Instant, from: SocketAddr) {
        let Some(entry) = self
            .view
            .values()
            .find(|e| e.id.addr == from && e.liveness == Liveness::Suspect)
        else {
            return;
        };
        let (id, swim_incarnation) = (entry.id.clone(), entry.swim_incarnation);
        if self
            .contact_notices
            .get(&id.name)
            .is_some_and(|at| now < *at + self.config.probe_timeout)
        {
            return;
        }
        if self.contact_notices.len() >= SEEDS_MAX {
            self.contact_notices.clear();
        }
        self.contact_notices.insert(id.name.clone(), now);
        // One notice, no repeats (the scheduled ones continue).
        self.suspect_notice(now, id, swim_incarnation, 1);
    }

    fn suspect_notice(&mut self, now: Instant, id: MemberId, swim_incarnation: u16, remaining: u8) {
        if self.left || remaining == 0 {
            return;
        }
        let mut frame = vec![wire::KIND_SUSPECT_NOTICE];
        wire::put_member_id(&mut frame, &id);
        frame.extend_from_slice(&swim_incarnation.to_be_bytes());
        self.send_frame(id.addr, &frame);
        let every =
            self.config.suspicion_timeout(self.configured_members) / u32::from(SUSPECT_NOTICES);
        self.arm(
            now + every,
            TimerKind::SuspectNotice {
                id,
                swim_incarnation,
                remaining: remaining - 1,
            },
        );
    }

    fn publish_without_flush(&mut self) {
        let item = self.next_local_record();
        let _ = self.swim.add_broadcast(&item);
    }

    fn observed_differs(&mut self) -> bool {
        let mut shared = self.shared.lock();
        let observed = std::mem::take(&mut shared.observed);
        let overflow = std::mem::replace(&mut shared.observed_overflow, false);
        drop(shared);
        if overflow {
            return true;
        }
        observed.iter().any(|seen| {
            if seen.id.name == self.me.name || seen.id.name.is_placeholder() {
                return false;
            }
            match self.view.get(&seen.id.name) {
                None => seen.state != State::Down,
                Some(entry) => {
                    if entry.id != seen.id {
                        return seen.id.incarnation > entry.id.incarnation;
                    }
                    let liveness = match seen.state {
                        State::Alive => Liveness::Alive,
                        State::Suspect => Liveness::Suspect,
                        State::Down => Liveness::Down,
                    };
                    entry.swim_incarnation != seen.swim_incarnation
                        || (liveness != entry.liveness
                            && !(liveness == Liveness::Down && entry.liveness == Liveness::Left))
                }
            }
        })
    }

    /// Compares foca's members with our view and emits events. Returns whether a liveness changed
    /// and the older lives to retire.
    fn diff(&mut self) -> (bool, Vec<MemberId>) {
        let mut best: BTreeMap<NodeName, (MemberId, u16, State)> = BTreeMap::new();
        let mut all_active: Vec<MemberId> = Vec::new();
        for member in self.swim.iter_membership_state() {
            let id = &member.id().0;
            if id.name.is_placeholder() || id.name == self.me.name {
                continue;
            }
            if member.state() != State::Down {
                all_active.push(id.clone());
            }
            let replace = match best.get(&id.name) {
                None => true,
                Some((existing, _, _)) => id.incarnation > existing.incarnation,
            };
            if replace {
                best.insert(
                    id.name.clone(),
                    (id.clone(), member.incarnation(), member.state()),
                );
            }
        }
        let superseded: Vec<MemberId> = all_active
            .into_iter()
            .filter(|id| {
                best.get(&id.name)
                    .is_some_and(|(newest, _, _)| newest.incarnation > id.incarnation)
            })
            .collect();
        let departed = self.shared.lock().departed.clone();
        let mut events = Vec::new();
        let mut news = false;
        for (name, (id, swim_incarnation, state)) in &best {
            let liveness = match state {
                State::Alive => Liveness::Alive,
                State::Suspect => Liveness::Suspect,
                State::Down if departed.contains(id) => Liveness::Left,
                State::Down => Liveness::Down,
            };
            match self.view.get_mut(name) {
                Some(entry) if entry.id == *id => {
                    entry.swim_incarnation = *swim_incarnation;
                    let before = entry.liveness;
                    if before == liveness
                        || (before == Liveness::Left && liveness == Liveness::Down)
                    {
                        continue;
                    }
                    entry.liveness = liveness;
                    news = true;
                    match (before, liveness) {
                        (Liveness::Alive, Liveness::Suspect) => {
                            events.push(MemberEvent::Suspect(id.clone()))
                        }
                        (Liveness::Suspect, Liveness::Alive) => {
                            events.push(MemberEvent::Alive(id.clone()))
                        }
                        (Liveness::Alive | Liveness::Suspect, Liveness::Down) => {
                            events.push(MemberEvent::Down(id.clone()))
                        }
                        (Liveness::Alive | Liveness::Suspect, Liveness::Left) => {
                            events.push(MemberEvent::Left(id.clone()))
                        }
                        (Liveness::Down | Liveness::Left, Liveness::Alive | Liveness::Suspect) => {
                            events.push(MemberEvent::Up(id.clone()));
                            if liveness == Liveness::Suspect {
                                events.push(MemberEvent::Suspect(id.clone()));
                            }
                        }
                        _ => {}
                    }
                }
                Some(entry) if entry.id.incarnation > id.incarnation => {}
                existing => {
                    // A node we did not know, or a newer life of one we did.
                    if let Some(old) = existing {
                        if old.liveness.is_active() {
                            news = true;
                            events.push(if departed.contains(&old.id) {
                                MemberEvent::Left(old.id.clone())
                            } else {
                                MemberEvent::Down(old.id.clone())
                            });
                        }
                    }
                    self.view.insert(
                        name.clone(),
                        ViewEntry {
                            id: id.clone(),
                            swim_incarnation: *swim_incarnation,
                            liveness,
                        },
                    );
                    if liveness.is_active() {
                        events.push(MemberEvent::Up(id.clone()));
                        if liveness == Liveness::Suspect {
                            events.push(MemberEvent::Suspect(id.clone()));
                        }
                        self.shared.lock().changed.insert(name.clone());
                    }
                }
            }
        }
        // Members foca forgot (down for `forget_down_after`).
        let forgotten: Vec<NodeName> = self
            .view
            .keys()
            .filter(|n| !best.contains_key(*n))
            .cloned()
            .collect();
        for name in forgotten {
            if let Some(entry) = self.view.remove(&name) {
                if entry.liveness.is_active() {
                    events.push(MemberEvent::Down(entry.id));
                }
            }
            let mut shared = self.shared.lock();
            shared.states.remove(&name);
            shared.pending.remove(&name);
            drop(shared);
            self.pulls.remove(&name);
        }
        for event in events {
            self.record_event(event);
        }
        let mut counts: BTreeMap<Liveness, usize> = BTreeMap::new();
        for entry in self.view.values() {
            *counts.entry(entry.liveness).or_default() += 1;
        }
        for liveness in [
            Liveness::Alive,
            Liveness::Suspect,
            Liveness::Down,
            Liveness::Left,
        ] {
            self.metrics.set_members(
                liveness.as_str(),
                counts.get(&liveness).copied().unwrap_or(0),
            );
        }
        (news, superseded)
    }

    fn record_event(&mut self, event: MemberEvent) {
        let label = match &event {
            MemberEvent::Up(_) => "up",
            MemberEvent::Suspect(_) => "suspect",
            MemberEvent::Alive(_) => "alive",
            MemberEvent::Down(_) => "down",
            MemberEvent::Left(_) => "left",
            MemberEvent::Updated(..) => "updated",
        };
        self.metrics.detection(label);
        self.actions.push_back(Action::Event(event));
    }

    fn emit_updates(&mut self) {
        let updates: Vec<(MemberId, NodeState)> = {
            let mut shared = self.shared.lock();
            let changed = std::mem::take(&mut shared.changed);
            changed
                .into_iter()
                .filter_map(|name| {
                    let entry = self.view.get(&name)?;
                    let record = shared.states.get(&name)?;
                    (entry.liveness.is_active() && record.member == entry.id)
                        .then(|| (record.member.clone(), record.state.clone()))
                })
                .collect()
        };
        for (id, state) in updates {
            self.record_event(MemberEvent::Updated(id, state));
        }
    }

    fn adjust_config(&mut self) {
        let members = self
            .view
            .values()
            .filter(|e| e.liveness.is_active())
            .count()
            + 1;
        if members == self.configured_members {
            return;
        }
        let old = foca_config(&self.config, self.configured_members);
        let new = foca_config(&self.config, members);
        if old.suspect_to_down_after != new.suspect_to_down_after
            || old.max_transmissions != new.max_transmissions
        {
            let _ = self.swim.set_config(new);
        }
        self.configured_members = members;
    }

    fn random_active(&mut self) -> Option<SocketAddr> {
        let active: Vec<SocketAddr> = self
            .view
            .values()
            .filter(|e| e.liveness.is_active())
            .map(|e| e.id.addr)
            .collect();
        if active.is_empty() {
            return None;
        }
        let index = (self.rng.next_u64() % active.len() as u64) as usize;
        active.get(index).copied()
    }

    /// Sends a sync request to every active member whose current life has no state record here
    /// and whose retry is due; forgets members that are no longer missing.
    fn ask_for_missing_states(&mut self, now: Instant) {
        if self.left {
            return;
        }
        let missing: BTreeMap<NodeName, MemberId> = {
            let shared = self.shared.lock();
            self.view
                .values()
                .filter(|e| e.liveness.is_active() && e.id != self.me)
                .filter(|e| {
                    shared
                        .states
                        .get(&e.id.name)
                        .is_none_or(|record| record.member != e.id)
                })
                .map(|e| (e.id.name.clone(), e.id.clone()))
                .collect()
        };
        self.state_retries
            .retain(|name, retry| missing.get(name) == Some(&retry.id));
        let sync_interval = self.config.sync_interval;
        let mut due = Vec::new();
        for (name, id) in missing {
            // A member seen missing for the first time gets one period for the usual paths (the
            // join sync, its own broadcast) before we ask.
            let retry = self
                .state_retries
                .entry(name)
                .or_insert_with(|| StateRetry {
                    id: id.clone(),
                    next_at: now + STATE_RETRY_FIRST,
                    delay: STATE_RETRY_FIRST * 2,
                });
            if now >= retry.next_at {
                due.push(id.addr);
                retry.next_at = now + retry.delay;
                retry.delay = (retry.delay * 2).min(sync_interval);
            }
        }
        for to in due {
            self.send_frame(to, &[wire::KIND_SYNC_REQUEST]);
        }
    }

    fn sync_request(&mut self) {
        if let Some(to) = self.random_active() {
            self.send_frame(to, &[wire::KIND_SYNC_REQUEST]);
        }
    }

    /// Records worth syncing: ours and those of the active members' current lives, by name (paged
    /// ones as their summary).
    fn sync_records(&self) -> Vec<Summary> {
        let shared = self.shared.lock();
        shared
            .states
            .values()
            .filter(|record| {
                record.member == self.me
                    || self
                        .view
                        .get(&record.member.name)
                        .is_some_and(|e| e.liveness.is_active() && e.id == record.member)
            })
            .map(StateRecord::summary)
            .collect()
    }

    fn page_bytes_max(&self) -> usize {
        self.transport.mtu_bytes().saturating_sub(OVERHEAD_BYTES)
    }

    fn sync_push(&mut self) {
        if self.left {
            return;
        }
        let Some(to) = self.random_active() else {
            return;
        };
        let records = self.sync_records();
        // Rotate through the table one page per tick, starting after the last name sent.
        let start = match &self.sync_cursor {
            Some(cursor) => records
                .iter()
                .position(|r| r.member.name > *cursor)
                .unwrap_or(0),
            None => 0,
        };
        let ordered = records.iter().skip(start).chain(records.iter().take(start));
        let (frame, count) = wire::encode_page(ordered, self.page_bytes_max());
        if count == 0 {
            return;
        }
        self.sync_cursor = records
            .iter()
            .cycle()
            .skip(start)
            .take(count)
            .last()
            .map(|r| r.member.name.clone());
        self.send_frame(to, &frame);
    }

    fn sync_reply(&mut self, to: SocketAddr) {
        let records = self.sync_records();
        let mut offset = 0;
        for _ in 0..SYNC_REPLY_DATAGRAMS_MAX {
            if offset >= records.len() {
                break;
            }
            let (frame, count) =
                wire::encode_page(records.iter().skip(offset), self.page_bytes_max());
            if count == 0 {
                break;
            }
            offset += count;
            self.send_frame(to, &frame);
        }
    }

    /// Starts a pull for every name whose pending summary is new.
    fn start_pulls(&mut self, now: Instant) {
        let names = std::mem::take(&mut self.shared.lock().pull_needed);
        for name in names {
            if !self.pulls.contains_key(&name) {
                self.pulls.insert(
                    name.clone(),
                    Pull {
                        generation: 0,
                        attempts: 0,
                        assembly: None,
                        full: false,
                    },
                );
                self.pull(now, &name);
            }
        }
    }

    /// The pending summary of `name` if its pages are still wanted: newer than what we hold, and
    /// its owner not known to be dead, gone or replaced by a newer life.
    fn pending_summary(&self, name: &NodeName) -> Option<Summary> {
        let shared = self.shared.lock();
        let summary = shared.pending.get(name)?;
        if shared
            .states
            .get(name)
            .is_some_and(|record| record.order() >= summary.order())
        {
            return None;
        }
        if let Some(entry) = self.view.get(name) {
            if entry.id.incarnation > summary.member.incarnation
                || (entry.id == summary.member && !entry.liveness.is_active())
            {
                return None;
            }
        }
        Some(summary.clone())
    }

    /// The digest of each of `page_count` pages as we hold them: pages already collected for the
    /// pull in progress, else our copy of the owner's claims bucketed the same way.
    fn held_digests(
        &self,
        name: &NodeName,
        page_count: u16,
        assembly: Option<&Assembly>,
    ) -> Vec<PageDigest> {
        let held = self
            .shared
            .lock()
            .states
            .get(name)
            .map(|record| record.state.claims.clone())
            .unwrap_or_default();
        let assembly = assembly.filter(|a| a.directory.header.page_count == page_count);
        pages::split(&held, page_count)
            .iter()
            .enumerate()
            .map(|(index, page)| {
                match assembly
                    .and_then(|a| a.pages.get(index))
                    .and_then(Option::as_ref)
                {
                    Some(collected) => pages::page_digest(collected),
                    None => pages::page_digest(page),
                }
            })
            .collect()
    }

    /// Sends (again) the pull request for `name` to its owner and arms the retry.
    fn pull(&mut self, now: Instant, name: &NodeName) {
        let attempts = self.pulls.get(name).map_or(0, |pull| pull.attempts);
        let wanted = self.pending_summary(name);
        let gave_up = wanted.is_some() && attempts >= PULL_ATTEMPTS_MAX;
        let Some((summary, SummaryClaims::Paged(header))) = wanted.filter(|_| !gave_up).map(|s| {
            let claims = s.claims.clone();
            (s, claims)
        }) else {
            // Not wanted any more (a newer record arrived, or the owner is down, gone or
            // replaced), or the owner never answered: forget it (a newer summary, or the next
            // anti-entropy page, starts again).
            let superseded = {
                let shared = self.shared.lock();
                match (shared.pending.get(name), shared.states.get(name)) {
                    (None, _) => true,
                    (Some(pending), Some(held)) => held.order() >= pending.order(),
                    (Some(_), None) => false,
                }
            };
            if self.pulls.remove(name).is_some() && (gave_up || !superseded) {
                self.metrics.claim_pull("abandoned");
            }
            self.shared.lock().pending.remove(name);
            return;
        };
        let digests = match self.pulls.get(name) {
            Some(pull) if pull.full => Vec::new(),
            pull => self.held_digests(
                name,
                header.page_count,
                pull.and_then(|p| p.assembly.as_ref()),
            ),
        };
        let frame = wire::encode_pull_request(&summary.member, header.page_count, &digests);
        self.send_frame(summary.member.addr, &frame);
        self.metrics.claim_pull("requested");
        self.pull_generation += 1;
        let generation = self.pull_generation;
        if let Some(pull) = self.pulls.get_mut(name) {
            pull.generation = generation;
            pull.attempts += 1;
        }
        self.arm(
            now + pages::pull_retry(self.config.probe_period),
            TimerKind::Pull {
                name: name.clone(),
                generation,
            },
        );
    }

    /// Answers a pull: our directory, then every page whose digest differs from the requester's.
    fn answer_pull(&mut self, to: SocketAddr, page_count: u16, digests: &[PageDigest]) {
        let record = self.shared.lock().states.get(&self.me.name).cloned();
        let Some(record) = record.filter(|r| r.member == self.me) else {
            return;
        };
        let (Some(layout), Some(header)) = (self.local_layout.clone(), record.paged.clone()) else {
            // Our claims fit inline now: the record itself answers.
            let summaries = [record.summary()];
            let (frame, count) = wire::encode_page(summaries.iter(), self.page_bytes_max());
            if count > 0 {
                self.send_frame(to, &frame);
            }
            return;
        };
        let directory = Directory {
            member: record.member.clone(),
            version: record.version,
            leaving: record.state.leaving,
            protocol_version: record.state.protocol_version,
            header,
            page_digests: layout.digests.clone(),
        };
        self.send_frame(to, &wire::encode_directory(&directory));
        let same_layout = page_count == layout.page_count && digests.len() == layout.digests.len();
        for (index, (page, digest)) in layout.pages.iter().zip(&layout.digests).enumerate() {
            if same_layout && digests.get(index) == Some(digest) {
                continue;
            }
            let Ok(index) = u16::try_from(index) else {
                break;
            };
            let frame = wire::encode_claims_page(&ClaimsPage {
                member: record.member.clone(),
                version: record.version,
                page_count: layout.page_count,
                index,
                ips: page.clone(),
            });
            self.send_frame(to, &frame);
            self.metrics.claim_pages_sent.inc();
        }
    }

    fn receive_directory(&mut self, now: Instant, directory: Directory) {
        let name = directory.member.name.clone();
        let page_count = directory.header.page_count;
        if directory.page_digests.len() != usize::from(page_count) {
            return;
        }
        let held = {
            let shared = self.shared.lock();
            match shared.states.get(&name) {
                Some(record) if record.order() >= directory.order() => return,
                Some(record) => record.state.claims.clone(),
                None => BTreeSet::new(),
            }
        };
        // Only answers to our own requests are taken.
        let Some(pull) = self.pulls.get_mut(&name) else {
            return;
        };
        if let Some(existing) = &pull.assembly {
            if existing.directory.order() > directory.order() || existing.directory == directory {
                return;
            }
        }
        // After an inconsistent assembly (a page digest collision), reuse nothing.
        let reuse = !pull.full;
        let old = pull
            .assembly
            .take()
            .filter(|a| reuse && a.directory.header.page_count == page_count);
        let held_pages = if reuse {
            pages::split(&held, page_count)
        } else {
            Vec::new()
        };
        let pages = directory
            .page_digests
            .iter()
            .enumerate()
            .map(|(index, wanted)| {
                let collected = old
                    .as_ref()
                    .and_then(|a| a.pages.get(index))
                    .and_then(Option::as_ref)
                    .filter(|ips| pages::page_digest(ips) == *wanted);
                let held = held_pages
                    .get(index)
                    .filter(|ips| pages::page_digest(ips) == *wanted);
                collected.or(held).cloned()
            })
            .collect();
        pull.assembly = Some(Assembly { directory, pages });
        self.try_complete(now, &name);
    }

    fn receive_claims_page(&mut self, now: Instant, page: ClaimsPage) {
        let name = page.member.name.clone();
        let Some(assembly) = self
            .pulls
            .get_mut(&name)
            .and_then(|pull| pull.assembly.as_mut())
        else {
            return;
        };
        let directory = &assembly.directory;
        if directory.member != page.member
            || directory.version != page.version
            || directory.header.page_count != page.page_count
        {
            return;
        }
        let index = usize::from(page.index);
        if directory.page_digests.get(index) != Some(&pages::page_digest(&page.ips)) {
            return;
        }
        if let Some(slot) = assembly.pages.get_mut(index) {
            *slot = Some(page.ips);
        }
        self.try_complete(now, &name);
    }

    /// Applies the collected pages once every one is there and the whole set checks out.
    fn try_complete(&mut self, now: Instant, name: &NodeName) {
        let Some(pull) = self.pulls.get_mut(name) else {
            return;
        };
        if pull
            .assembly
            .as_ref()
            .is_none_or(|a| a.pages.iter().any(Option::is_none))
        {
            return;
        }
        let Some(assembly) = pull.assembly.take() else {
            return;
        };
        let claims: BTreeSet<IpAddr> = assembly.pages.into_iter().flatten().flatten().collect();
        let directory = assembly.directory;
        if claims.len() != directory.header.total as usize
            || pages::state_digest(&claims) != directory.header.digest
        {
            // A page digest collided with a stale page: ask for every page next time.
            pull.full = true;
            self.metrics.claim_pull("inconsistent");
            return;
        }
        pull.full = false;
        pull.attempts = 0;
        let record = StateRecord {
            member: directory.member,
            version: directory.version,
            state: NodeState {
                claims,
                leaving: directory.leaving,
                protocol_version: directory.protocol_version,
            },
            paged: Some(directory.header),
        };
        self.shared.lock().apply_record(record, false);
        self.metrics.claim_pull("completed");
        if self.pending_summary(name).is_some() {
            // A newer summary arrived meanwhile.
            self.pull(now, name);
        } else {
            self.pulls.remove(name);
        }
        self.emit_updates();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4s(count: u32, base: u32) -> BTreeSet<IpAddr> {
        (0..count)
            .map(|i| IpAddr::V4(Ipv4Addr::from(base + i)))
            .collect()
    }

    #[test]
    fn an_inconsistent_assembly_asks_for_every_page_next() {
        let now = Instant::now();
        let name = |n: &str| NodeName::new(n).unwrap();
        let me = MemberId::new(name("me"), 1, "10.0.0.1:7946".parse().unwrap());
        let owner = MemberId::new(name("owner"), 1, "10.0.0.2:7946".parse().unwrap());
        let keyring = Keyring::new(&[7u8; 32]).unwrap();
        let mut core = Membership::new(Config::lan("c"), me, keyring, 1, now).unwrap();
        let claims = v4s(100, 0x0a00_0000);
        let header = PagedHeader::of(&claims, 2).unwrap();
        // We hold version 1 of the owner's claims; version 2 is announced.
        core.shared.lock().apply_record(
            StateRecord {
                member: owner.clone(),
                version: 1,
                state: NodeState {
                    claims: claims.clone(),
                    leaving: false,
                    protocol_version: PROTOCOL_VERSION,
                },
                paged: Some(header.clone()),
            },
            false,
        );
        let summary = Summary {
            member: owner.clone(),
            version: 2,
            leaving: false,
            protocol_version: PROTOCOL_VERSION,
            claims: SummaryClaims::Paged(header.clone()),
        };
        assert!(core.shared.lock().apply_summary(summary));
        core.start_pulls(now);
        assert_eq!(core.metrics.claim_pull_count("requested"), 1);
        // Every page digest matches what we hold, but the whole set does not (as when a changed
        // page collides with the stale one).
        let pages = pages::split(&claims, 2);
        let directory = Directory {
            member: owner.clone(),
            version: 2,
            leaving: false,
            protocol_version: PROTOCOL_VERSION,
            header: PagedHeader {
                digest: pages::state_digest(&v4s(100, 0x0b00_0000)),
                ..header
            },
            page_digests: pages.iter().map(|p| pages::page_digest(p)).collect(),
        };
        core.receive_directory(now, directory.clone());
        assert_eq!(core.metrics.claim_pull_count("inconsistent"), 1);
        assert_eq!(core.metrics.claim_pull_count("completed"), 0);
        let pull = core.pulls.get(&owner.name).unwrap();
        assert!(pull.full && pull.assembly.is_none());
        // The next answer reuses nothing we hold: every page must come from the owner.
        core.receive_directory(now, directory);
        assert_eq!(core.metrics.claim_pull_count("inconsistent"), 1);
        let pull = core.pulls.get(&owner.name).unwrap();
        let assembly = pull.assembly.as_ref().unwrap();
        assert!(assembly.pages.iter().all(Option::is_none));
        assert_eq!(
            core.shared
                .lock()
                .states
                .get(&owner.name)
                .map(|r| r.version),
            Some(1)
        );
    }
}
