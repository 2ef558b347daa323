//! The client-side outage probe: a request to the Service IP every 10 ms (UDP, or HTTP `GET`),
//! recording for each one the client's monotonic time and which node answered (or a timeout).
//!
//! **Outage** after a kill = from the last answer that arrived before the kill to the first answer
//! that arrived for a request *sent after* the kill, both by the probe's monotonic clock. Requiring
//! the request to be sent after the kill keeps an answer that was already in flight from hiding
//! the outage. The resolution is the probe interval: a perfect failover measures about one
//! interval plus one round trip.
//!
//! The parts, top-down:
//! - [`ProbeCore`]: the sans-IO core (which request to send when, which reply matches which
//!   request, when a request has timed out). Call order: [`ProbeCore::handle`] for every reply and
//!   mark (with the instant it was *received*), [`ProbeCore::handle_timeout`] when
//!   [`ProbeCore::poll_timeout`] is due, then drain [`ProbeCore::poll_action`].
//! - [`run`]: the blocking driver with real sockets; `ironlb lab probe` wraps it and prints every
//!   [`ProbeEvent`] as one JSON line. Marks come in as [`Command`]s, timestamped by the sender.
//! - [`ProbeLog`]: the serializable record (what the demo prints, plots and writes as JSON), with
//!   the analysis: [`ProbeLog::outage_after`], [`ProbeLog::segments`], [`ProbeLog::gaps`].
//! - [`ProbeProcess`]: the harness side: runs `ironlb lab probe` in the client namespace as a child
//!   process, sends it marks on stdin (`kill <node>`, `mark <label>`, `stop`) and collects its
//!   events. Marks travel on the probe's own clock, so no clock is shared between processes.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, ChildStdin, Command as ProcessCommand, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The default time between two requests.
pub const INTERVAL_MS_DEFAULT: u64 = 10;
/// The default time after which an unanswered request counts as lost.
pub const TIMEOUT_MS_DEFAULT: u64 = 1000;
/// The most requests in flight at once (a limit on the pending table and on HTTP threads).
pub const PENDING_MAX: usize = 2000;
/// The prefix of every UDP request, so a stray datagram is never taken for a reply.
const REQUEST_PREFIX: &str = "ironlb-probe";

/// UDP datagrams or HTTP `GET`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// One datagram per request, answered by the backend's UDP port.
    Udp,
    /// One TCP connection and `GET /` per request.
    Http,
}

impl std::str::FromStr for Protocol {
    type Err = ProbeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "udp" => Ok(Self::Udp),
            "http" => Ok(Self::Http),
            other => Err(ProbeError::BadProtocol {
                protocol: other.to_owned(),
            }),
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Udp => "udp",
            Self::Http => "http",
        })
    }
}

/// What to probe and how often.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// The Service IP and port.
    pub target: SocketAddr,
    /// UDP or HTTP.
    pub protocol: Protocol,
    /// Time between two requests.
    pub interval_ms: u64,
    /// Time after which an unanswered request counts as lost.
    pub timeout_ms: u64,
}

impl ProbeConfig {
    /// A UDP probe of `target` every 10 ms with a 1 s timeout.
    pub fn udp(target: SocketAddr) -> Self {
        Self {
            target,
            protocol: Protocol::Udp,
            interval_ms: INTERVAL_MS_DEFAULT,
            timeout_ms: TIMEOUT_MS_DEFAULT,
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.max(1))
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

/// Why probing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The protocol name is neither `udp` nor `http`.
    #[error("probe protocol {protocol:?} is not udp or http")]
    BadProtocol {
        /// The rejected name.
        protocol: String,
    },
    /// A socket could not be opened.
    #[error("probe cannot open its socket towards {target}")]
    Socket {
        /// The probed address.
        target: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The probe process could not be started or talked to.
    #[error("probe process: {what}")]
    Process {
        /// What failed.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The probe process wrote a line that is not a [`ProbeEvent`].
    #[error("probe process printed an unreadable line {line:?}")]
    BadLine {
        /// The line.
        line: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// One request and what became of it. Times are microseconds since the probe started, on the
/// probe's monotonic clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The request's sequence number (0, 1, …).
    pub seq: u64,
    /// When the request was sent.
    pub sent_us: u64,
    /// The answer, or `None` when the request timed out.
    pub answer: Option<Answer>,
}

/// Who answered a request, and when the answer arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The node name the backend answered with.
    pub node: String,
    /// When the answer arrived.
    pub received_us: u64,
}

/// An instant of interest on the probe's clock (a kill, a gratuitous ARP, a phase change).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// When the probe received the mark.
    pub at_us: u64,
    /// Free text (`kill node-b`, `garp`).
    pub label: String,
    /// For a kill mark, the node that was killed: outages are computed after these marks.
    pub killed_node: Option<String>,
}

/// Everything the probe prints, one JSON line each (`{"event":"sample",...}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProbeEvent {
    /// The probe started: its configuration and wall-clock start (to align captures by time).
    Start(ProbeStart),
    /// A request was answered or timed out.
    Sample(Sample),
    /// A mark was received.
    Mark(Mark),
    /// The probe stopped; the summary of the whole run.
    Summary(ProbeSummary),
}

/// The first event of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStart {
    /// What was probed.
    pub config: ProbeConfig,
    /// The wall-clock time of the probe's time zero, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
}

/// The last event of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeSummary {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered in time.
    pub answered: u64,
    /// Answers per node.
    pub per_node: BTreeMap<String, u64>,
    /// The outage after every kill mark, in mark order.
    pub outages: Vec<Outage>,
}

/// The outage after one kill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    /// When the kill mark was received.
    pub kill_us: u64,
    /// The node that was killed, if the mark said.
    pub killed_node: Option<String>,
    /// The last answer that arrived before the kill.
    pub last_before: Option<Answer>,
    /// The first answer to a request sent after the kill (from another node than the killed one).
    pub first_after: Option<Answer>,
    /// `first_after - last_before` in milliseconds; `None` when either is missing.
    pub outage_ms: Option<f64>,
}

/// A run of consecutive answers from one node (what a plot colours by node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The node that answered.
    pub node: String,
    /// Arrival of the first answer of the run.
    pub from_us: u64,
    /// Arrival of the last answer of the run.
    pub to_us: u64,
    /// How many answers the run has.
    pub answers: u64,
}

/// A time without answers longer than a threshold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Arrival of the answer before the gap.
    pub from_us: u64,
    /// Arrival of the answer after the gap.
    pub to_us: u64,
    /// The node before the gap.
    pub node_before: String,
    /// The node after the gap.
    pub node_after: String,
}

impl Gap {
    /// The gap's length in milliseconds.
    pub fn length_ms(&self) -> f64 {
        micros_to_ms(self.to_us.saturating_sub(self.from_us))
    }
}

/// The record of a run: what the demo prints, plots and writes as JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeLog {
    /// The start event, once received.
    pub start: Option<ProbeStart>,
    /// Every resolved request, in the order they were resolved.
    pub samples: Vec<Sample>,
    /// Every mark, in order.
    pub marks: Vec<Mark>,
}

impl ProbeLog {
    /// Adds one event (a summary is derived data and is ignored).
    pub fn push(&mut self, event: ProbeEvent) {
        match event {
            ProbeEvent::Start(start) => self.start = Some(start),
            ProbeEvent::Sample(sample) => self.samples.push(sample),
            ProbeEvent::Mark(mark) => self.marks.push(mark),
            ProbeEvent::Summary(_) => {}
        }
    }

    /// Every answer with its request's send time, sorted by arrival (then by sequence number).
    fn answers(&self) -> Vec<(u64, &Answer, u64)> {
        let mut answers: Vec<(u64, &Answer, u64)> = self
            .samples
            .iter()
            .filter_map(|sample| {
                sample
                    .answer
                    .as_ref()
                    .map(|answer| (answer.received_us, answer, sample.sent_us))
            })
            .collect();
        answers.sort_by_key(|(received_us, _, sent_us)| (*received_us, *sent_us));
        answers
    }

    /// The last answer received, if any.
    pub fn last_answer(&self) -> Option<&Answer> {
        self.answers().last().map(|(_, answer, _)| *answer)
    }

    /// Requests sent and answered so far.
    pub fn counts(&self) -> (u64, u64) {
        let answered = self
            .samples
            .iter()
            .filter(|sample| sample.answer.is_some())
            .count();
        (self.samples.len() as u64, answered as u64)
    }

    /// Answers per node.
    pub fn per_node(&self) -> BTreeMap<String, u64> {
        let mut per_node = BTreeMap::new();
        for (_, answer, _) in self.answers() {
            *per_node.entry(answer.node.clone()).or_insert(0) += 1;
        }
        per_node
    }

    /// The outage after a kill at `kill_us`: from the last answer that arrived before it to the
    /// first answer, from another node than `killed_node`, to a request sent after it.
    pub fn outage_after(&self, kill_us: u64, killed_node: Option<&str>) -> Outage {
        let answers = self.answers();
        let last_before = answers
            .iter()
            .rfind(|(received_us, _, _)| *received_us <= kill_us)
            .map(|(_, answer, _)| (*answer).clone());
        let first_after = answers
            .iter()
            .find(|(_, answer, sent_us)| {
                *sent_us > kill_us && Some(answer.node.as_str()) != killed_node
            })
            .map(|(_, answer, _)| (*answer).clone());
        let outage_ms = match (&last_before, &first_after) {
            (Some(before), Some(after)) => Some(micros_to_ms(
                after.received_us.saturating_sub(before.received_us),
            )),
            _ => None,
        };
        Outage {
            kill_us,
            killed_node: killed_node.map(str::to_owned),
            last_before,
            first_after,
            outage_ms,
        }
    }

    /// The outage after every kill mark, in mark order.
    pub fn outages(&self) -> Vec<Outage> {
        self.marks
            .iter()
            .filter(|mark| mark.killed_node.is_some())
            .map(|mark| self.outage_after(mark.at_us, mark.killed_node.as_deref()))
            .collect()
    }

    /// Runs of consecutive answers by the same node, by arrival time.
    pub fn segments(&self) -> Vec<Segment> {
        let mut segments: Vec<Segment> = Vec::new();
        for (received_us, answer, _) in self.answers() {
            match segments.last_mut() {
                Some(last) if last.node == answer.node => {
                    last.to_us = received_us;
                    last.answers += 1;
                }
                _ => segments.push(Segment {
                    node: answer.node.clone(),
                    from_us: received_us,
                    to_us: received_us,
                    answers: 1,
                }),
            }
        }
        segments
    }

    /// Every time between two consecutive answers longer than `threshold_ms`.
    pub fn gaps(&self, threshold_ms: f64) -> Vec<Gap> {
        let answers = self.answers();
        answers
            .windows(2)
            .filter_map(|pair| match pair {
                [(from_us, before, _), (to_us, after, _)]
                    if micros_to_ms(to_us.saturating_sub(*from_us)) > threshold_ms =>
                {
                    Some(Gap {
                        from_us: *from_us,
                        to_us: *to_us,
                        node_before: before.node.clone(),
                        node_after: after.node.clone(),
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// The summary of the run.
    pub fn summary(&self) -> ProbeSummary {
        let (sent, answered) = self.counts();
        ProbeSummary {
            sent,
            answered,
            per_node: self.per_node(),
            outages: self.outages(),
        }
    }
}

/// Microseconds to milliseconds, for reports.
pub fn micros_to_ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// An input of [`ProbeCore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A reply to request `seq` from `node`.
    Reply {
        /// The request it answers.
        seq: u64,
        /// The node that answered.
        node: String,
    },
    /// A mark (see [`Mark`]).
    Mark {
        /// Free text.
        label: String,
        /// For a kill, the node killed.
        killed_node: Option<String>,
    },
}

/// An output of [`ProbeCore`].
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send request `seq` (for UDP, `payload` is the datagram).
    Send {
        /// The request's sequence number.
        seq: u64,
        /// The UDP payload (`ironlb-probe <nonce> <seq>`).
        payload: Vec<u8>,
    },
    /// Report an event.
    Emit(ProbeEvent),
}

/// The probe's sans-IO core. See the module doc for the call order.
#[derive(Debug)]
pub struct ProbeCore {
    start: Instant,
    interval: Duration,
    timeout: Duration,
    nonce: u64,
    next_seq: u64,
    /// `None` once stopped: no more requests are sent.
    next_send: Option<Instant>,
    /// Requests in flight: sequence number to send instant.
    pending: BTreeMap<u64, Instant>,
    actions: VecDeque<Action>,
}

impl ProbeCore {
    /// A core whose time zero is `start`; `nonce` tells this run's requests from another's.
    pub fn new(config: &ProbeConfig, start: Instant, nonce: u64) -> Self {
        Self {
            start,
            interval: config.interval(),
            timeout: config.timeout(),
            nonce,
            next_seq: 0,
            next_send: Some(start),
            pending: BTreeMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// The request payload for `seq`.
    pub fn payload(&self, seq: u64) -> Vec<u8> {
        format!("{REQUEST_PREFIX} {} {seq}", self.nonce).into_bytes()
    }

    /// Parses a backend's UDP reply (`<node>\n<request>`) into (`seq`, node) if it answers one of
    /// this run's requests.
    pub fn parse_udp_reply(&self, reply: &[u8]) -> Option<(u64, String)> {
        let text = std::str::from_utf8(reply).ok()?;
        let (node, request) = text.split_once('\n')?;
        let mut words = request.split(' ');
        if words.next()? != REQUEST_PREFIX || words.next()?.parse::<u64>().ok()? != self.nonce {
            return None;
        }
        let seq = words.next()?.parse().ok()?;
        if node.is_empty() {
            return None;
        }
        Some((seq, node.to_owned()))
    }

    /// Microseconds from the core's time zero to `now` (0 before it).
    pub fn micros(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.start).as_micros()).unwrap_or(u64::MAX)
    }

    /// Feeds a reply or a mark received at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Reply { seq, node } => {
                // A reply to an expired or already answered request is ignored: the request has
                // been reported already.
                if let Some(sent) = self.pending.remove(&seq) {
                    if now.saturating_duration_since(sent) > self.timeout {
                        self.emit_sample(seq, sent, None);
                    } else {
                        let answer = Answer {
                            node,
                            received_us: self.micros(now),
                        };
                        self.emit_sample(seq, sent, Some(answer));
                    }
                }
            }
            Input::Mark { label, killed_node } => {
                let mark = Mark {
                    at_us: self.micros(now),
                    label,
                    killed_node,
                };
                self.actions.push_back(Action::Emit(ProbeEvent::Mark(mark)));
            }
        }
    }

    /// Sends the requests that are due and expires the ones that timed out.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<(u64, Instant)> = self
            .pending
            .iter()
            .filter(|(_, sent)| now.saturating_duration_since(**sent) > self.timeout)
            .map(|(seq, sent)| (*seq, *sent))
            .collect();
        for (seq, sent) in expired {
            self.pending.remove(&seq);
            self.emit_sample(seq, sent, None);
        }
        while let Some(next_send) = self.next_send {
            if next_send > now {
                break;
            }
            // Missed ticks (the driver was descheduled) are skipped, not sent in a burst: the
            // probe's cadence stays one request per interval.
            let seq = self.next_seq;
            self.next_seq += 1;
            if self.pending.len() >= PENDING_MAX {
                if let Some((oldest, sent)) = self.pending.pop_first() {
                    self.emit_sample(oldest, sent, None);
                }
            }
            self.pending.insert(seq, now);
            let payload = self.payload(seq);
            self.actions.push_back(Action::Send { seq, payload });
            let mut following = next_send + self.interval;
            while following <= now {
                following += self.interval;
            }
            self.next_send = Some(following);
        }
    }

    /// Stops sending; the run is over once [`Self::is_done`].
    pub fn stop(&mut self) {
        self.next_send = None;
    }

    /// Stopped and nothing in flight.
    pub fn is_done(&self) -> bool {
        self.next_send.is_none() && self.pending.is_empty()
    }

    /// The next instant [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self
            .pending
            .values()
            .min()
            .map(|sent| *sent + self.timeout + Duration::from_micros(1));
        match (self.next_send, expiry) {
            (Some(send), Some(expiry)) => Some(send.min(expiry)),
            (send, expiry) => send.or(expiry),
        }
    }

    /// The next output.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn emit_sample(&mut self, seq: u64, sent: Instant, answer: Option<Answer>) {
        let sample = Sample {
            seq,
            sent_us: self.micros(sent),
            answer,
        };
        self.actions
            .push_back(Action::Emit(ProbeEvent::Sample(sample)));
    }
}

/// A command to a running probe, stamped with the instant it was received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Record a mark.
    Mark {
        /// When the command arrived.
        at: Instant,
        /// Free text.
        label: String,
        /// For a kill, the node killed.
        killed_node: Option<String>,
    },
    /// Stop sending, wait for the requests in flight, print the summary.
    Stop,
}

impl Command {
    /// Parses one stdin line: `kill <node>`, `mark <label>` or `stop`. Unknown lines give `None`.
    pub fn parse(line: &str, at: Instant) -> Option<Self> {
        let line = line.trim();
        if line == "stop" {
            return Some(Self::Stop);
        }
        if let Some(node) = line.strip_prefix("kill ") {
            let node = node.trim();
            return Some(Self::Mark {
                at,
                label: format!("kill {node}"),
                killed_node: Some(node.to_owned()),
            });
        }
        line.strip_prefix("mark ").map(|label| Self::Mark {
            at,
            label: label.trim().to_owned(),
            killed_node: None,
        })
    }
}

/// Reads commands from `input` (one per line) on a thread; each is stamped when read.
pub fn spawn_command_reader<R: Read + Send + 'static>(input: R, commands: Sender<Command>) {
    std::thread::spawn(move || {
        for line in BufReader::new(input).lines() {
            let Ok(line) = line else { break };
            let at = Instant::now();
            if let Some(command) = Command::parse(&line, at) {
                if commands.send(command).is_err() {
                    break;
                }
            }
        }
    });
}

enum DriverEvent {
    Reply { at: Instant, seq: u64, node: String },
    Command(Command),
}

/// Runs a probe until a [`Command::Stop`], the end of `commands` (every sender dropped) or
/// `duration`, handing every event to `on_event`, and returns the log of the run.
pub fn run(
    config: &ProbeConfig,
    commands: Receiver<Command>,
    duration: Option<Duration>,
    mut on_event: impl FnMut(&ProbeEvent),
) -> Result<ProbeLog, ProbeError> {
    let start = Instant::now();
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let nonce = started_unix_ms ^ u64::from(std::process::id()).rotate_left(32);
    let mut core = ProbeCore::new(config, start, nonce);
    let mut log = ProbeLog::default();
    let start_event = ProbeEvent::Start(ProbeStart {
        config: config.clone(),
        started_unix_ms,
    });
    on_event(&start_event);
    log.push(start_event);

    let (events_tx, events_rx) = mpsc::channel::<DriverEvent>();
    let stop_flag = Arc::new(AtomicBool::new(false));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let udp = match config.protocol {
        Protocol::Udp => {
            let socket = open_udp(config.target)?;
            let receiver = socket.try_clone().map_err(|source| ProbeError::Socket {
                target: config.target,
                source,
            })?;
            let parser = ProbeCore::new(config, start, nonce);
            let events_tx = events_tx.clone();
            let stop_flag = Arc::clone(&stop_flag);
            threads.push(std::thread::spawn(move || {
                receive_udp(&receiver, &parser, &events_tx, &stop_flag);
            }));
            Some(socket)
        }
        Protocol::Http => None,
    };
    // Commands are forwarded into the one event channel so the loop waits on one receiver.
    {
        let events_tx = events_tx.clone();
        std::thread::spawn(move || {
            for command in commands {
                if events_tx.send(DriverEvent::Command(command)).is_err() {
                    return;
                }
            }
            // The sender side is gone: nobody can stop the run any more, so stop it now.
            let _ = events_tx.send(DriverEvent::Command(Command::Stop));
        });
    }
    let deadline = duration.map(|duration| start + duration);
    let http_in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    loop {
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            core.stop();
        }
        core.handle_timeout(now);
        while let Some(action) = core.poll_action() {
            match action {
                Action::Send { seq, payload } => match &udp {
                    Some(socket) => {
                        if let Err(error) = socket.send_to(&payload, config.target) {
                            // A send error (no route, neighbour failed) is a lost request.
                            tracing::trace!(seq, %error, "probe send failed");
                        }
                    }
                    None => spawn_http_request(config, seq, &events_tx, &http_in_flight),
                },
                Action::Emit(event) => {
                    on_event(&event);
                    log.push(event);
                }
            }
        }
        if core.is_done() {
            break;
        }
        let wait = core
            .poll_timeout()
            .map_or(Duration::from_millis(100), |due| {
                due.saturating_duration_since(Instant::now())
            });
        match events_rx.recv_timeout(wait) {
            Ok(DriverEvent::Reply { at, seq, node }) => {
                core.handle(at, Input::Reply { seq, node });
            }
            Ok(DriverEvent::Command(Command::Mark {
                at,
                label,
                killed_node,
            })) => core.handle(at, Input::Mark { label, killed_node }),
            Ok(DriverEvent::Command(Command::Stop)) => core.stop(),
            Err(RecvTimeoutError::Timeout) => {}
            // Invariant: `events_tx` is held by this function, so the channel cannot close.
            Err(RecvTimeoutError::Disconnected) => core.stop(),
        }
    }
    stop_flag.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    let summary = ProbeEvent::Summary(log.summary());
    on_event(&summary);
    Ok(log)
}

fn open_udp(target: SocketAddr) -> Result<UdpSocket, ProbeError> {
    let local = match target.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = UdpSocket::bind(local).map_err(|source| ProbeError::Socket { target, source })?;
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|source| ProbeError::Socket { target, source })?;
    Ok(socket)
}

fn receive_udp(
    socket: &UdpSocket,
    parser: &ProbeCore,
    events: &Sender<DriverEvent>,
    stop: &AtomicBool,
) {
    let mut buffer = [0_u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buffer) {
            Ok((length, _peer)) => {
                let at = Instant::now();
                // Replies are matched by content: the backend's reply source is the node's
                // address when it binds the wildcard address (see `backend`).
                if let Some((seq, node)) =
                    parser.parse_udp_reply(buffer.get(..length).unwrap_or_default())
                {
                    if events.send(DriverEvent::Reply { at, seq, node }).is_err() {
                        break;
                    }
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // ICMP errors (port or host unreachable) surface here; the request times out.
            Err(_) => {}
        }
    }
}

fn spawn_http_request(
    config: &ProbeConfig,
    seq: u64,
    events: &Sender<DriverEvent>,
    in_flight: &Arc<std::sync::atomic::AtomicUsize>,
) {
    if in_flight.load(Ordering::Relaxed) >= PENDING_MAX {
        return;
    }
    in_flight.fetch_add(1, Ordering::Relaxed);
    let target = config.target;
    let timeout = config.timeout();
    let events = events.clone();
    let in_flight = Arc::clone(in_flight);
    std::thread::spawn(move || {
        if let Some(node) = http_get_node(target, timeout) {
            let _ = events.send(DriverEvent::Reply {
                at: Instant::now(),
                seq,
                node,
            });
        }
        in_flight.fetch_sub(1, Ordering::Relaxed);
    });
}

/// One `GET /` to `target`; the node name from the body of a `200`.
pub fn http_get_node(target: SocketAddr, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&target, timeout).ok()?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    stream
        .set_read_timeout(Some(remaining.max(Duration::from_millis(1))))
        .ok()?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
    let mut response = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut response).ok()?;
    parse_http_node(&response)
}

/// The node name in a backend's HTTP response (the body of a `200`).
pub fn parse_http_node(response: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(response).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
        return None;
    }
    let node = body.trim();
    (!node.is_empty() && !node.contains('\n')).then(|| node.to_owned())
}

/// A probe running as a child process (`ip netns exec <client> ironlb lab probe …`).
///
/// Its stdout events are collected into a [`ProbeLog`] on a thread; marks go to its stdin and
/// are timestamped by the probe itself when it reads them.
#[derive(Debug)]
pub struct ProbeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    log: Arc<Mutex<ProbeLog>>,
    reader: Option<JoinHandle<Result<(), ProbeError>>>,
}

impl ProbeProcess {
    /// Starts `command` (a `ironlb lab probe …` command line, usually wrapped in
    /// `ip netns exec`) with piped stdin and stdout.
    pub fn spawn(mut command: ProcessCommand) -> Result<Self, ProbeError> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|source| ProbeError::Process {
                what: "cannot start the probe",
                source,
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or(ProbeError::Process {
            what: "the probe has no stdout",
            source: std::io::Error::other("stdout not piped"),
        })?;
        let log = Arc::new(Mutex::new(ProbeLog::default()));
        let reader_log = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.map_err(|source| ProbeError::Process {
                    what: "cannot read the probe's output",
                    source,
                })?;
                if line.trim().is_empty() {
                    continue;
                }
                let event: ProbeEvent = serde_json::from_str(&line)
                    .map_err(|source| ProbeError::BadLine { line, source })?;
                if let Ok(mut log) = reader_log.lock() {
                    log.push(event);
                }
            }
            Ok(())
        });
        Ok(Self {
            child,
            stdin,
            log,
            reader: Some(reader),
        })
    }

    /// The `ironlb lab probe` arguments for `config` (append them to the binary's command).
    pub fn args(config: &ProbeConfig) -> Vec<String> {
        vec![
            "lab".to_owned(),
            "probe".to_owned(),
            "--target".to_owned(),
            config.target.to_string(),
            "--protocol".to_owned(),
            config.protocol.to_string(),
            "--interval-ms".to_owned(),
            config.interval_ms.to_string(),
            "--timeout-ms".to_owned(),
            config.timeout_ms.to_string(),
        ]
    }

    /// Marks a kill of `node` (send it right before killing).
    pub fn mark_kill(&mut self, node: &str) -> Result<(), ProbeError> {
        self.send_line(&format!("kill {node}"))
    }

    /// Marks an instant with a label.
    pub fn mark(&mut self, label: &str) -> Result<(), ProbeError> {
        self.send_line(&format!("mark {label}"))
    }

    fn send_line(&mut self, line: &str) -> Result<(), ProbeError> {
        let stdin = self.stdin.as_mut().ok_or(ProbeError::Process {
            what: "the probe's stdin is closed",
            source: std::io::Error::other("stdin closed"),
        })?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|source| ProbeError::Process {
                what: "cannot write to the probe",
                source,
            })
    }

    /// A copy of the log so far.
    pub fn log(&self) -> ProbeLog {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Waits until `condition` holds on the log, at most `timeout`; returns whether it held.
    pub fn wait_for(&self, timeout: Duration, condition: impl Fn(&ProbeLog) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let held = self.log.lock().map(|log| condition(&log)).unwrap_or(false);
            if held {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `node` answered `count` requests sent after `after_us` (0: any), at most
    /// `timeout`.
    pub fn wait_for_answers(
        &self,
        node: Option<&str>,
        after_us: u64,
        count: usize,
        timeout: Duration,
    ) -> bool {
        self.wait_for(timeout, |log| {
            log.samples
                .iter()
                .filter(|sample| sample.sent_us > after_us)
                .filter_map(|sample| sample.answer.as_ref())
                .filter(|answer| node.is_none_or(|node| answer.node == node))
                .count()
                >= count
        })
    }

    /// The probe's clock now, approximately: the send time of the latest resolved request.
    pub fn latest_us(&self) -> u64 {
        self.log
            .lock()
            .map(|log| {
                log.samples
                    .iter()
                    .map(|sample| sample.sent_us)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    /// Stops the probe (waiting for requests in flight, at most its timeout plus 3 s) and returns
    /// its log.
    pub fn stop(mut self) -> Result<ProbeLog, ProbeError> {
        let timeout_ms = self
            .log()
            .start
            .map_or(TIMEOUT_MS_DEFAULT, |start| start.config.timeout_ms);
        let _ = self.send_line("stop");
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms) + Duration::from_secs(3);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        if let Some(reader) = self.reader.take() {
            match reader.join() {
                Ok(result) => result?,
                Err(_) => {
                    return Err(ProbeError::Process {
                        what: "the probe reader thread panicked",
                        source: std::io::Error::other("panic"),
                    })
                }
            }
        }
        Ok(self.log())
    }
}

impl Drop for ProbeProcess {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(seq: u64, sent_us: u64, node: &str, received_us: u64) -> Sample {
        Sample {
            seq,
            sent_us,
            answer: Some(Answer {
                node: node.to_owned(),
                received_us,
            }),
        }
    }

    fn lost(seq: u64, sent_us: u64) -> Sample {
        Sample {
            seq,
            sent_us,
            answer: None,
        }
    }

    fn log_of(samples: Vec<Sample>) -> ProbeLog {
        ProbeLog {
            start: None,
            samples,
            marks: Vec::new(),
        }
    }

    #[test]
    fn outage_table() {
        struct Case {
            desc: &'static str,
            samples: Vec<Sample>,
            kill_us: u64,
            killed: Option<&'static str>,
            want_ms: Option<f64>,
            want_after: Option<&'static str>,
        }
        let cases = vec![
            Case {
                desc: "clean failover: a to b after two lost requests",
                samples: vec![
                    answered(0, 0, "a", 500),
                    answered(1, 10_000, "a", 10_500),
                    lost(2, 20_000),
                    lost(3, 30_000),
                    answered(4, 40_000, "b", 40_700),
                ],
                kill_us: 15_000,
                killed: Some("a"),
                want_ms: Some(30.2),
                want_after: Some("b"),
            },
            Case {
                desc: "an answer in flight at the kill does not end the outage",
                samples: vec![
                    answered(0, 0, "a", 500),
                    answered(1, 10_000, "a", 15_100),
                    lost(2, 20_000),
                    answered(3, 30_000, "b", 30_400),
                ],
                kill_us: 15_000,
                killed: Some("a"),
                want_ms: Some(29.9),
                want_after: Some("b"),
            },
            Case {
                desc: "the killed node answering again does not end the outage",
                samples: vec![
                    answered(0, 0, "a", 500),
                    answered(1, 20_000, "a", 20_300),
                    answered(2, 100_000, "b", 100_200),
                ],
                kill_us: 10_000,
                killed: Some("a"),
                want_ms: Some(99.7),
                want_after: Some("b"),
            },
            Case {
                desc: "without a killed node any answer after ends it",
                samples: vec![
                    answered(0, 0, "a", 500),
                    answered(1, 20_000, "a", 20_300),
                    answered(2, 100_000, "b", 100_200),
                ],
                kill_us: 10_000,
                killed: None,
                want_ms: Some(19.8),
                want_after: Some("a"),
            },
            Case {
                desc: "no recovery: no outage figure",
                samples: vec![answered(0, 0, "a", 500), lost(1, 10_000), lost(2, 20_000)],
                kill_us: 5_000,
                killed: Some("a"),
                want_ms: None,
                want_after: None,
            },
            Case {
                desc: "no answer before the kill: no outage figure",
                samples: vec![lost(0, 0), answered(1, 10_000, "b", 10_300)],
                kill_us: 5_000,
                killed: Some("a"),
                want_ms: None,
                want_after: Some("b"),
            },
            Case {
                desc: "samples resolved out of order are sorted by arrival",
                samples: vec![
                    lost(2, 20_000),
                    answered(4, 40_000, "b", 40_700),
                    answered(1, 10_000, "a", 10_500),
                    answered(0, 0, "a", 500),
                ],
                kill_us: 15_000,
                killed: Some("a"),
                want_ms: Some(30.2),
                want_after: Some("b"),
            },
        ];
        for case in cases {
            let outage = log_of(case.samples).outage_after(case.kill_us, case.killed);
            match (outage.outage_ms, case.want_ms) {
                (Some(got), Some(want)) => {
                    assert!((got - want).abs() < 1e-6, "{}: {got} != {want}", case.desc);
                }
                (got, want) => assert_eq!(got, want, "{}", case.desc),
            }
            assert_eq!(
                outage
                    .first_after
                    .as_ref()
                    .map(|answer| answer.node.as_str()),
                case.want_after,
                "{}",
                case.desc
            );
        }
    }

    #[test]
    fn segments_gaps_and_per_node() {
        let mut log = log_of(vec![
            answered(0, 0, "a", 100),
            answered(1, 10_000, "a", 10_100),
            lost(2, 20_000),
            answered(3, 30_000, "b", 30_100),
            answered(4, 40_000, "b", 40_100),
        ]);
        log.marks.push(Mark {
            at_us: 15_000,
            label: "kill a".to_owned(),
            killed_node: Some("a".to_owned()),
        });
        log.marks.push(Mark {
            at_us: 16_000,
            label: "garp".to_owned(),
            killed_node: None,
        });
        assert_eq!(
            log.segments(),
            vec![
                Segment {
                    node: "a".to_owned(),
                    from_us: 100,
                    to_us: 10_100,
                    answers: 2
                },
                Segment {
                    node: "b".to_owned(),
                    from_us: 30_100,
                    to_us: 40_100,
                    answers: 2
                },
            ]
        );
        let gaps = log.gaps(15.0);
        assert_eq!(gaps.len(), 1);
        assert!((gaps[0].length_ms() - 20.0).abs() < 1e-6);
        assert_eq!(gaps[0].node_after, "b");
        let summary = log.summary();
        assert_eq!((summary.sent, summary.answered), (5, 4));
        assert_eq!(summary.per_node.get("a"), Some(&2));
        assert_eq!(summary.outages.len(), 1, "only kill marks give outages");
        let json = serde_json::to_string(&log).unwrap();
        let back: ProbeLog = serde_json::from_str(&json).unwrap();
        assert_eq!(back, log);
    }

    #[test]
    fn core_sends_every_interval_matches_replies_and_expires() {
        let config = ProbeConfig {
            target: "192.0.2.1:7777".parse().unwrap(),
            protocol: Protocol::Udp,
            interval_ms: 10,
            timeout_ms: 100,
        };
        let start = Instant::now();
        let mut core = ProbeCore::new(&config, start, 42);
        let mut sent = Vec::new();
        let mut samples = Vec::new();
        fn drain(core: &mut ProbeCore, sent: &mut Vec<(u64, Vec<u8>)>, samples: &mut Vec<Sample>) {
            while let Some(action) = core.poll_action() {
                match action {
                    Action::Send { seq, payload } => sent.push((seq, payload)),
                    Action::Emit(ProbeEvent::Sample(sample)) => samples.push(sample),
                    Action::Emit(_) => {}
                }
            }
        }
        core.handle_timeout(start);
        drain(&mut core, &mut sent, &mut samples);
        assert_eq!(sent.len(), 1);
        assert_eq!(core.poll_timeout(), Some(start + Duration::from_millis(10)));
        // A late driver skips missed ticks instead of sending a burst.
        core.handle_timeout(start + Duration::from_millis(35));
        drain(&mut core, &mut sent, &mut samples);
        assert_eq!(sent.len(), 2);
        assert_eq!(core.poll_timeout(), Some(start + Duration::from_millis(40)));
        // Reply to seq 0 (parsed from a backend reply), a duplicate and a stranger's reply.
        let reply = crate::backend::udp_reply("node-a", &sent[0].1);
        let (seq, node) = core.parse_udp_reply(&reply).unwrap();
        assert_eq!((seq, node.as_str()), (0, "node-a"));
        assert_eq!(core.parse_udp_reply(b"node-a\nironlb-probe 41 0"), None);
        assert_eq!(core.parse_udp_reply(b"garbage"), None);
        core.handle(
            start + Duration::from_millis(36),
            Input::Reply {
                seq,
                node: node.clone(),
            },
        );
        core.handle(
            start + Duration::from_millis(37),
            Input::Reply { seq, node },
        );
        drain(&mut core, &mut sent, &mut samples);
        assert_eq!(samples, vec![answered(0, 0, "node-a", 36_000)]);
        // Seq 1 (sent at 35 ms) expires after 100 ms; stop ends the run once nothing is pending.
        core.stop();
        core.handle_timeout(start + Duration::from_millis(136));
        drain(&mut core, &mut sent, &mut samples);
        assert_eq!(samples.last(), Some(&lost(1, 35_000)));
        assert!(core.is_done());
        assert_eq!(core.poll_timeout(), None);
    }

    #[test]
    fn commands_parse() {
        let at = Instant::now();
        assert_eq!(Command::parse("stop\n", at), Some(Command::Stop));
        assert_eq!(
            Command::parse("kill node-b", at),
            Some(Command::Mark {
                at,
                label: "kill node-b".to_owned(),
                killed_node: Some("node-b".to_owned())
            })
        );
        assert_eq!(
            Command::parse("mark garp", at),
            Some(Command::Mark {
                at,
                label: "garp".to_owned(),
                killed_node: None
            })
        );
        assert_eq!(Command::parse("hello", at), None);
        assert_eq!(
            parse_http_node(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nnode-c\n"),
            Some("node-c".to_owned())
        );
        assert_eq!(parse_http_node(b"HTTP/1.1 500 Oops\r\n\r\nnode-c\n"), None);
    }

    #[test]
    fn probes_a_loopback_backend_udp_and_http() {
        let backend = crate::backend::Backend::start(&crate::backend::BackendConfig {
            node_name: "node-a".to_owned(),
            udp_port: Some(0),
            http_port: Some(0),
        })
        .unwrap();
        for (protocol, addr) in [
            (Protocol::Udp, backend.udp_addr().unwrap()),
            (Protocol::Http, backend.http_addr().unwrap()),
        ] {
            let config = ProbeConfig {
                target: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
                protocol,
                interval_ms: 10,
                timeout_ms: 2000,
            };
            let (commands, commands_rx) = mpsc::channel();
            let mut events = 0;
            commands
                .send(Command::Mark {
                    at: Instant::now(),
                    label: "hello".to_owned(),
                    killed_node: None,
                })
                .unwrap();
            let stopper = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                commands.send(Command::Stop).unwrap();
            });
            let log = run(&config, commands_rx, Some(Duration::from_secs(20)), |_| {
                events += 1
            })
            .unwrap();
            stopper.join().unwrap();
            let (sent, answered) = log.counts();
            // Timing-independent: at least one request went out and every one was answered (a
            // 2 s timeout on loopback).
            assert!(sent >= 1, "{protocol}: nothing sent");
            assert_eq!(answered, sent, "{protocol}: {log:?}");
            assert_eq!(log.per_node().keys().collect::<Vec<_>>(), vec!["node-a"]);
            assert_eq!(log.marks.len(), 1);
            assert!(events as u64 >= sent + 2);
        }
    }
}
