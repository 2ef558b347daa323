//! Chaos tests of ironlb over real network namespaces (the labs of `ironlb-lab`): repeated node
//! deaths, link loss, a partition of the owner from the other nodes (but not from the client),
//! the API server stopped, the controller killed during churn, and a lossy LAN. This crate owns
//! the fault injection and the invariant checks; the tests live in `tests/chaos.rs`.
//!
//! Faults on the LAN are injected on the switch namespace's ports (the egress of port `p-<role>`
//! carries every frame delivered to `<role>`). This kernel has neither `netem` nor the `gact`
//! action nor nftables, so a lossy or partitioned port is an `htb` qdisc whose second class
//! ends in a `pfifo` of length 0 (it drops whatever it is given), with a classic-BPF classifier
//! choosing the frames to drop: at random (`ld rand`) for loss, by source MAC for a partition.
//!
//! Invariants checked after every run ([`Invariants`]):
//! - after convergence, at most one node answers ARP for each Service IP (exactly one while the
//!   Service has a live endpoint node);
//! - every IP of the pool that anything answers ARP for is allocated to a Service;
//! - no IP moved without a cause: every change of the node answering the probe follows a fault
//!   or repair mark recorded on the probe's clock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ironlb_lab::cluster::Cluster;
use ironlb_lab::manifests::{self, ServiceSpec, UDP_PORT};
use ironlb_lab::observe;
use ironlb_lab::probe::{ProbeConfig, ProbeLog, ProbeProcess};
use ironlb_lab::topology::{self, Lab, LabSpec, CLIENT};
use ironlb_lab::LabError;

/// Kill cycles of the default run; `IRONLB_CHAOS_CYCLES` overrides it (≥ 100 for the long run).
pub const CYCLES_DEFAULT: usize = 3;
/// The switch namespace's role (`<prefix>-sw`, see `ironlb_lab::topology`).
const SWITCH_ROLE: &str = "sw";
/// How long the system may take to converge after a fault or a repair.
pub const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(20);
/// The layer 2 pool's first and last IPv4 addresses (`manifests::L2_RANGE_V4`).
pub const POOL_V4: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(192, 168, 1, 240),
    Ipv4Addr::new(192, 168, 1, 250),
);

/// Whether this process may build labs; prints why a test is skipped otherwise.
pub fn root_or_skip(test: &str) -> bool {
    if topology::is_root() {
        return true;
    }
    eprintln!("skipping {test}: chaos tests build network namespaces and need root");
    false
}

/// The kill cycles to run (`IRONLB_CHAOS_CYCLES`, default [`CYCLES_DEFAULT`]).
pub fn cycles() -> usize {
    std::env::var("IRONLB_CHAOS_CYCLES")
        .ok()
        .and_then(|text| text.parse().ok())
        .filter(|cycles| *cycles > 0)
        .unwrap_or(CYCLES_DEFAULT)
}

/// The `ironlb` binary: `$IRONLB_BIN` or the workspace target directory's `debug/ironlb`
/// (`scripts/test.sh` builds it before the tests).
pub fn ironlb_binary() -> Result<PathBuf, String> {
    ironlb_lab::bench::locate_ironlb(None)
}

/// A running layer 2 lab: API stand-in, controller, a speaker and a backend per node, Service
/// `web` with endpoints on every node, and the probe from the client.
#[derive(Debug)]
pub struct ChaosLab {
    /// The cluster (its `lab` field is the network).
    pub cluster: Cluster,
    /// The probe of `web`'s IP from the client.
    pub probe: Option<ProbeProcess>,
    /// `web`'s IP.
    pub ip: IpAddr,
    /// The node names.
    pub nodes: Vec<String>,
    /// MAC → node.
    pub macs: BTreeMap<String, String>,
    /// Every Service IP allocated so far (kept when the API server is gone).
    pub allocated: BTreeSet<IpAddr>,
}

impl ChaosLab {
    /// Builds the lab `prefix` with `nodes` nodes and starts everything.
    pub fn start(prefix: &str, nodes: usize) -> Result<Self, LabError> {
        let binary = ironlb_binary().map_err(LabError::Spec)?;
        let lab = Lab::create(LabSpec::new(prefix, nodes))?;
        let mut cluster = Cluster::start(lab, &binary)?;
        cluster.apply(&manifests::l2_config(false))?;
        cluster.start_controller()?;
        let nodes = cluster.lab.nodes();
        for node in &nodes {
            cluster.start_backend(node, &[])?;
        }
        cluster.start_speakers(&[])?;
        let ip = cluster.create_service(&ServiceSpec::new("web"), &nodes)?;
        let macs = observe::node_macs(&cluster.lab)?;
        let mut command = cluster.lab.command(CLIENT, &binary.display().to_string());
        command.args(ProbeProcess::args(&ProbeConfig::udp(SocketAddr::new(
            ip, UDP_PORT,
        ))));
        let mut probe =
            ProbeProcess::spawn(command).map_err(|error| LabError::Spec(error.to_string()))?;
        // The Service was just created: the speakers' first election is a cause of moves.
        probe
            .mark("service web created")
            .map_err(|error| LabError::Spec(error.to_string()))?;
        let mut chaos = Self {
            cluster,
            probe: Some(probe),
            ip,
            nodes,
            macs,
            allocated: BTreeSet::from([ip]),
        };
        if !chaos
            .probe()?
            .wait_for_answers(None, 0, 20, Duration::from_secs(60))
        {
            return Err(LabError::Spec(format!(
                "the probe of {ip} got fewer than 20 answers in 60 s"
            )));
        }
        Ok(chaos)
    }

    /// The probe.
    pub fn probe(&mut self) -> Result<&mut ProbeProcess, LabError> {
        self.probe
            .as_mut()
            .ok_or_else(|| LabError::Spec("the probe was stopped".into()))
    }

    /// Records a cause (fault or repair) on the probe's clock.
    pub fn mark(&mut self, label: &str) -> Result<(), LabError> {
        self.probe()?
            .mark(label)
            .map_err(|error| LabError::Spec(error.to_string()))
    }

    /// The node answering the probe now (after `count` answers to requests sent from now on).
    pub fn owner(&mut self, count: usize, timeout: Duration) -> Result<String, LabError> {
        let probe = self.probe()?;
        let since_us = probe.latest_us();
        if !probe.wait_for_answers(None, since_us, count, timeout) {
            return Err(LabError::Timeout {
                what: format!("{count} probe answers"),
                timeout,
            });
        }
        probe
            .log()
            .last_answer()
            .map(|answer| answer.node.clone())
            .ok_or_else(|| LabError::Spec("no probe answer".into()))
    }

    /// Waits until a node other than `old` answers a request sent after the last mark; its name.
    pub fn wait_failover(&mut self, old: &str, timeout: Duration) -> Result<String, LabError> {
        let probe = self.probe()?;
        let since_us = probe.log().marks.last().map_or(0, |mark| mark.at_us);
        let moved = probe.wait_for(timeout, |log| {
            log.samples.iter().any(|sample| {
                sample.sent_us > since_us
                    && sample
                        .answer
                        .as_ref()
                        .is_some_and(|answer| answer.node != old)
            })
        });
        if !moved {
            return Err(LabError::Timeout {
                what: format!("another node than {old} answering the client"),
                timeout,
            });
        }
        probe
            .log()
            .samples
            .iter()
            .filter(|sample| sample.sent_us > since_us)
            .filter_map(|sample| sample.answer.as_ref())
            .find(|answer| answer.node != old)
            .map(|answer| answer.node.clone())
            .ok_or_else(|| LabError::Spec("failover answer vanished".into()))
    }

    /// Kills `node` (link down + SIGKILL of everything in it), marking it on the probe first.
    pub fn kill(&mut self, node: &str) -> Result<(), LabError> {
        self.probe()?
            .mark_kill(node)
            .map_err(|error| LabError::Spec(error.to_string()))?;
        self.cluster.lab.kill_node(node)
    }

    /// Revives `node` (link up, its processes started again), marking it on the probe.
    pub fn revive(&mut self, node: &str) -> Result<(), LabError> {
        self.mark(&format!("revive {node}"))?;
        self.cluster.lab.revive_node(node)
    }

    /// The nodes that answer ARP for `ip` from the client (3 requests).
    pub fn arp_owners(&self, ip: IpAddr) -> BTreeSet<String> {
        observe::arping_macs(&self.cluster.lab, ip, 3)
            .iter()
            .map(|mac| {
                self.macs
                    .get(mac)
                    .cloned()
                    .unwrap_or_else(|| format!("unknown MAC {mac}"))
            })
            .collect()
    }

    /// Waits until exactly one node answers ARP for `ip`; the time it took, or an error naming
    /// the owners last seen.
    pub fn wait_single_arp_owner(
        &self,
        ip: IpAddr,
        timeout: Duration,
    ) -> Result<(Duration, String), LabError> {
        let start = Instant::now();
        loop {
            let owners = self.arp_owners(ip);
            if owners.len() == 1 {
                let owner = owners.into_iter().next().unwrap_or_default();
                return Ok((start.elapsed(), owner));
            }
            if start.elapsed() >= timeout {
                return Err(LabError::Spec(format!(
                    "invariant: after {} s, {} node(s) answer ARP for {ip}: {owners:?}",
                    timeout.as_secs(),
                    owners.len()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The Service IPs the API reports now (added to [`Self::allocated`]); `None` if the API
    /// does not answer.
    pub fn refresh_allocated(&mut self) -> Option<BTreeMap<String, Vec<IpAddr>>> {
        let text = self
            .cluster
            .kubectl(&["get", "services", "-A", "-o", "json"])
            .ok()?;
        let services = service_ips(&text)?;
        for ips in services.values() {
            self.allocated.extend(ips.iter().copied());
        }
        Some(services)
    }

    /// Checks every invariant and stops the probe; returns its log for the test's own checks.
    /// The allocations are the API's current ones, or the last known when the API is down.
    pub fn finish(mut self) -> Result<ProbeLog, LabError> {
        let current = self.refresh_allocated();
        let api_up = current.is_some();
        let allocated: BTreeSet<IpAddr> = match current {
            Some(services) => services.into_values().flatten().collect(),
            None => self.allocated.clone(),
        };
        let log = match self.probe.take() {
            Some(probe) => probe
                .stop()
                .map_err(|error| LabError::Spec(error.to_string()))?,
            None => ProbeLog::default(),
        };
        let invariants = Invariants::check(&self, &log, &allocated, api_up);
        invariants.print();
        if invariants.violations.is_empty() {
            Ok(log)
        } else {
            Err(LabError::Spec(format!(
                "invariants violated: {}",
                invariants.violations.join("; ")
            )))
        }
    }
}

/// The Service IPs of a `kubectl get services -A -o json` list: `namespace/name` → IPs.
pub fn service_ips(json: &str) -> Option<BTreeMap<String, Vec<IpAddr>>> {
    let list: serde_json::Value = serde_json::from_str(json).ok()?;
    let mut services = BTreeMap::new();
    for item in list["items"].as_array()? {
        if item["spec"]["type"].as_str() != Some("LoadBalancer") {
            continue;
        }
        let key = format!(
            "{}/{}",
            item["metadata"]["namespace"].as_str().unwrap_or_default(),
            item["metadata"]["name"].as_str().unwrap_or_default()
        );
        let ips: Vec<IpAddr> = item["status"]["loadBalancer"]["ingress"]
            .as_array()
            .map(|ingress| {
                ingress
                    .iter()
                    .filter_map(|entry| entry["ip"].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        services.insert(key, ips);
    }
    Some(services)
}

/// IPs allocated to more than one Service.
pub fn duplicate_ips(services: &BTreeMap<String, Vec<IpAddr>>) -> BTreeMap<IpAddr, Vec<String>> {
    let mut by_ip: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for (service, ips) in services {
        for ip in ips {
            by_ip.entry(*ip).or_default().push(service.clone());
        }
    }
    by_ip.retain(|_, services| services.len() > 1);
    by_ip
}

/// How long after a fault or repair the owner may still change because of it (failover, the
/// two sides of a healed partition settling on one owner, a revived node taking its IPs back).
pub const CAUSE_WINDOW: Duration = Duration::from_secs(10);

/// Every change of the node answering the probe that no mark explains: a change is explained
/// by a mark (fault or repair) at most `window` before the first answer of the new node.
pub fn unexplained_moves(log: &ProbeLog, window: Duration) -> Vec<String> {
    let window_us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
    log.segments()
        .windows(2)
        .filter_map(|pair| {
            let [before, after] = pair else { return None };
            let explained = log
                .marks
                .iter()
                .any(|mark| mark.at_us <= after.from_us && after.from_us - mark.at_us <= window_us);
            (!explained).then(|| {
                format!(
                    "{} -> {} at {:.3} s without a fault or repair in the {} s before",
                    before.node,
                    after.node,
                    after.from_us as f64 / 1e6,
                    window.as_secs()
                )
            })
        })
        .collect()
}

/// The owner changes seen by the probe after the mark labelled `label` (within
/// [`CAUSE_WINDOW`]), and the time from the mark to the last of them.
pub fn moves_after(log: &ProbeLog, label: &str) -> (usize, Option<Duration>) {
    let Some(mark) = log.marks.iter().find(|mark| mark.label == label) else {
        return (0, None);
    };
    let window_us = u64::try_from(CAUSE_WINDOW.as_micros()).unwrap_or(u64::MAX);
    let starts: Vec<u64> = log
        .segments()
        .iter()
        .skip(1)
        .map(|segment| segment.from_us)
        .filter(|from_us| *from_us >= mark.at_us && from_us - mark.at_us <= window_us)
        .collect();
    let last = starts
        .last()
        .map(|from_us| Duration::from_micros(from_us - mark.at_us));
    (starts.len(), last)
}

/// The result of the invariant checks.
#[derive(Debug, Default)]
pub struct Invariants {
    /// What was checked, one line each.
    pub checked: Vec<String>,
    /// What failed, one line each.
    pub violations: Vec<String>,
}

impl Invariants {
    /// Runs every check on a lab after convergence and on its probe log.
    pub fn check(
        chaos: &ChaosLab,
        log: &ProbeLog,
        allocated: &BTreeSet<IpAddr>,
        api_up: bool,
    ) -> Self {
        let mut result = Self::default();
        // At most one ARP owner per allocated IP.
        for ip in allocated {
            let owners = chaos.arp_owners(*ip);
            result
                .checked
                .push(format!("ARP owners of {ip}: {owners:?}"));
            if owners.len() > 1 {
                result
                    .violations
                    .push(format!("{ip} has {} ARP owners: {owners:?}", owners.len()));
            }
        }
        // Every IP of the pool that is answered for is allocated (a withdrawal may still be
        // on its way: a few sweeps, a second apart).
        let mut answered = BTreeSet::new();
        for _ in 0..3 {
            answered = arp_sweep(&chaos.cluster.lab, POOL_V4);
            if answered.is_subset(allocated) {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        for ip in answered.difference(allocated) {
            result.violations.push(format!(
                "{ip} is announced (answers ARP) but allocated to no Service"
            ));
        }
        result.checked.push(format!(
            "announced pool IPs {answered:?} within allocated {allocated:?} (API {})",
            if api_up {
                "up"
            } else {
                "down: last known allocations"
            }
        ));
        // No move without a cause.
        let moves = unexplained_moves(log, CAUSE_WINDOW);
        result.checked.push(format!(
            "{} owner changes seen by the probe, {} unexplained",
            log.segments().len().saturating_sub(1),
            moves.len()
        ));
        result.violations.extend(moves);
        result
    }

    /// Prints the checks (shown with `--nocapture` or on failure).
    pub fn print(&self) {
        for line in &self.checked {
            println!("invariant checked: {line}");
        }
        for line in &self.violations {
            println!("INVARIANT VIOLATED: {line}");
        }
    }
}

/// The IPs of `range` (inclusive) that anything answers ARP for from the client (in parallel).
pub fn arp_sweep(lab: &Lab, range: (Ipv4Addr, Ipv4Addr)) -> BTreeSet<IpAddr> {
    let (first, last) = (u32::from(range.0), u32::from(range.1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (first..=last)
            .map(|address| {
                let ip = IpAddr::V4(Ipv4Addr::from(address));
                scope.spawn(move || (ip, !observe::arping_macs(lab, ip, 1).is_empty()))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|handle| handle.join().ok())
            .filter(|(_, answered)| *answered)
            .map(|(ip, _)| ip)
            .collect()
    })
}

/// Classic-BPF programs for `tc filter … bpf bytecode`: a non-zero return (here -1, "use the
/// filter's flowid") selects the dropping class.
pub mod cbpf {
    /// `ld [k]` (32-bit absolute load).
    const LD_W_ABS: u16 = 0x20;
    /// `ldh [k]`.
    const LD_H_ABS: u16 = 0x28;
    /// `jeq #k, jt, jf`.
    const JEQ_K: u16 = 0x15;
    /// `jge #k, jt, jf`.
    const JGE_K: u16 = 0x35;
    /// `ret #k`.
    const RET_K: u16 = 0x06;
    /// `SKF_AD_OFF + SKF_AD_RANDOM`: the ancillary load of a random 32-bit number.
    const RANDOM: u32 = 0xFFFF_F000 + 56;
    /// Return value meaning "matched: classify into the filter's flowid".
    const MATCH: u32 = u32::MAX;

    type Instruction = (u16, u8, u8, u32);

    fn text(program: &[Instruction]) -> String {
        let mut out = program.len().to_string();
        for (code, jt, jf, k) in program {
            out.push_str(&format!(",{code} {jt} {jf} {k}"));
        }
        out
    }

    /// Matches a random `permille` of frames.
    pub fn random_permille(permille: u32) -> String {
        let threshold =
            (u64::from(permille.min(1000)) * (1_u64 << 32) / 1000).min(u64::from(u32::MAX));
        text(&[
            (LD_W_ABS, 0, 0, RANDOM),
            // Below the threshold: fall through to the match.
            (JGE_K, 1, 0, threshold as u32),
            (RET_K, 0, 0, MATCH),
            (RET_K, 0, 0, 0),
        ])
    }

    /// Matches frames whose source MAC is one of `macs` (`aa:bb:cc:dd:ee:ff`); `None` if a
    /// MAC does not parse or there are too many for the jump offsets.
    pub fn source_mac_in(macs: &[String]) -> Option<String> {
        if macs.is_empty() || macs.len() > 60 {
            return None;
        }
        let mut program: Vec<Instruction> = Vec::new();
        let count = macs.len();
        for (index, mac) in macs.iter().enumerate() {
            let bytes: Vec<u8> = mac
                .split(':')
                .map(|part| u8::from_str_radix(part, 16))
                .collect::<Result<_, _>>()
                .ok()?;
            let [b0, b1, b2, b3, b4, b5] = bytes.as_slice() else {
                return None;
            };
            let high = u32::from(u16::from_be_bytes([*b0, *b1]));
            let low = u32::from_be_bytes([*b2, *b3, *b4, *b5]);
            // Block `index` is 4 instructions; the no-match return follows the last block and
            // the match return follows it.
            let to_match = u8::try_from(4 * (count - index) - 3).ok()?;
            program.push((LD_H_ABS, 0, 0, 6));
            program.push((JEQ_K, 0, 2, high));
            program.push((LD_W_ABS, 0, 0, 8));
            program.push((JEQ_K, to_match, 0, low));
        }
        program.push((RET_K, 0, 0, 0));
        program.push((RET_K, 0, 0, MATCH));
        Some(text(&program))
    }
}

/// A fault on the LAN: dropping filters on switch ports, removed on drop.
#[derive(Debug)]
pub struct PortFilters {
    switch_namespace: String,
    ports: Vec<String>,
}

impl PortFilters {
    /// The switch-side port of `role` (`p-<role>`, as `ironlb_lab::topology` names it).
    pub fn port(role: &str) -> String {
        format!("p-{role}")
    }

    /// No filters yet.
    pub fn new(lab: &Lab) -> Self {
        Self {
            switch_namespace: format!("{}-{SWITCH_ROLE}", lab.prefix()),
            ports: Vec::new(),
        }
    }

    /// Drops the frames `program` (classic BPF, [`cbpf`]) matches on their way out of the switch
    /// to `role`.
    pub fn add(&mut self, role: &str, program: &str) -> Result<(), LabError> {
        let port = Self::port(role);
        let namespace = self.switch_namespace.clone();
        let tc = |args: &[&str]| -> Result<String, LabError> {
            let mut all = vec!["-n", namespace.as_str()];
            all.extend_from_slice(args);
            topology::run("tc", &all)
        };
        if !self.ports.contains(&port) {
            tc(&[
                "qdisc", "add", "dev", &port, "root", "handle", "1:", "htb", "default", "1",
            ])?;
            self.ports.push(port.clone());
            tc(&[
                "class", "add", "dev", &port, "parent", "1:", "classid", "1:1", "htb", "rate",
                "10gbit",
            ])?;
            tc(&[
                "class", "add", "dev", &port, "parent", "1:", "classid", "1:2", "htb", "rate",
                "8bit",
            ])?;
            // A FIFO of length 0 drops everything classified into it.
            tc(&[
                "qdisc", "add", "dev", &port, "parent", "1:2", "handle", "2:", "pfifo", "limit",
                "0",
            ])?;
        }
        tc(&[
            "filter", "add", "dev", &port, "parent", "1:", "bpf", "bytecode", program, "flowid",
            "1:2",
        ])
        .map(drop)
    }

    /// Frames dropped so far on every filtered port.
    pub fn dropped(&self) -> u64 {
        self.ports
            .iter()
            .filter_map(|port| {
                topology::run(
                    "tc",
                    &[
                        "-n",
                        &self.switch_namespace,
                        "-s",
                        "qdisc",
                        "show",
                        "dev",
                        port,
                    ],
                )
                .ok()
            })
            .map(|text| {
                // The `pfifo 2:` section's "dropped N".
                text.split("qdisc pfifo 2:")
                    .nth(1)
                    .and_then(|section| section.split("dropped ").nth(1))
                    .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|digits| digits.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Removes every filter now.
    pub fn clear(&mut self) {
        for port in self.ports.drain(..) {
            let _ = topology::run(
                "tc",
                &[
                    "-n",
                    &self.switch_namespace,
                    "qdisc",
                    "del",
                    "dev",
                    &port,
                    "root",
                ],
            );
        }
    }
}

impl Drop for PortFilters {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use ironlb_lab::probe::{Answer, Mark, Sample};

    use super::*;

    fn log(answers: &[(u64, &str)], marks: &[u64]) -> ProbeLog {
        ProbeLog {
            start: None,
            samples: answers
                .iter()
                .enumerate()
                .map(|(seq, (at_us, node))| Sample {
                    seq: seq as u64,
                    sent_us: at_us.saturating_sub(100),
                    answer: Some(Answer {
                        node: (*node).to_owned(),
                        received_us: *at_us,
                    }),
                })
                .collect(),
            marks: marks
                .iter()
                .map(|at_us| Mark {
                    at_us: *at_us,
                    label: "cause".to_owned(),
                    killed_node: None,
                })
                .collect(),
        }
    }

    #[test]
    fn moves_need_a_cause() {
        struct Case {
            desc: &'static str,
            answers: Vec<(u64, &'static str)>,
            marks: Vec<u64>,
            unexplained: usize,
        }
        let cases = [
            Case {
                desc: "no move",
                answers: vec![(10, "a"), (20, "a")],
                marks: vec![],
                unexplained: 0,
            },
            Case {
                desc: "move after a kill",
                answers: vec![(10, "a"), (20, "a"), (40, "b")],
                marks: vec![25],
                unexplained: 0,
            },
            Case {
                desc: "move without a mark",
                answers: vec![(10, "a"), (40, "b")],
                marks: vec![],
                unexplained: 1,
            },
            Case {
                desc: "a mark too long before does not explain",
                answers: vec![(10, "a"), (40, "b"), (50, "a")],
                marks: vec![30],
                unexplained: 1,
            },
            Case {
                desc: "kill then revive: two moves, two causes",
                answers: vec![(10, "a"), (40, "b"), (70, "a")],
                marks: vec![30, 60],
                unexplained: 0,
            },
            Case {
                desc: "a mark after the move does not explain it",
                answers: vec![(10, "a"), (40, "b")],
                marks: vec![45],
                unexplained: 1,
            },
        ];
        for case in cases {
            let moves =
                unexplained_moves(&log(&case.answers, &case.marks), Duration::from_micros(15));
            assert_eq!(moves.len(), case.unexplained, "{}: {moves:?}", case.desc);
        }
    }

    #[test]
    fn service_ips_and_duplicates() {
        let json = r#"{"items":[
            {"metadata":{"namespace":"default","name":"a"},"spec":{"type":"LoadBalancer"},
             "status":{"loadBalancer":{"ingress":[{"ip":"192.168.1.240"}]}}},
            {"metadata":{"namespace":"default","name":"b"},"spec":{"type":"LoadBalancer"},
             "status":{"loadBalancer":{"ingress":[{"ip":"192.168.1.240"}]}}},
            {"metadata":{"namespace":"default","name":"c"},"spec":{"type":"LoadBalancer"},"status":{}},
            {"metadata":{"namespace":"default","name":"kubernetes"},"spec":{"type":"ClusterIP"}}
        ]}"#;
        let services = service_ips(json).unwrap();
        assert_eq!(services.len(), 3);
        assert_eq!(services["default/c"], Vec::<IpAddr>::new());
        let duplicates = duplicate_ips(&services);
        assert_eq!(duplicates.len(), 1);
        assert_eq!(
            duplicates[&"192.168.1.240".parse::<IpAddr>().unwrap()],
            vec!["default/a".to_owned(), "default/b".to_owned()]
        );
        assert_eq!(service_ips("not json"), None);
    }

    #[test]
    fn cbpf_programs() {
        assert_eq!(
            cbpf::random_permille(20),
            "4,32 0 0 4294963256,53 1 0 85899345,6 0 0 4294967295,6 0 0 0"
        );
        let two =
            cbpf::source_mac_in(&["02:00:00:00:00:01".into(), "0a:0b:0c:0d:0e:0f".into()]).unwrap();
        assert_eq!(
            two,
            "10,40 0 0 6,21 0 2 512,32 0 0 8,21 5 0 1,40 0 0 6,21 0 2 2571,32 0 0 8,21 1 0 202182159,6 0 0 0,6 0 0 4294967295"
        );
        assert_eq!(cbpf::source_mac_in(&["zz".into()]), None);
        assert_eq!(cbpf::source_mac_in(&[]), None);
    }
}
