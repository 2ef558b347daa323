//! Benchmark: ironlb gossip against serf (hashicorp memberlist), kill -9 in network namespaces.
//!
//! ```text
//! sudo cargo run --release -p ironlb-gossip --bin gossip-bench -- [--sizes 5,20] [--kills 20]
//!      [--serf-sizes 5] [--serf-kills 10] [--healthy-secs 60] [--loss-percent 2] [--sim-members 1000]
//!      [--member-args "--probe-period-ms 35 --suspicion-multiplier 3"] [--loss-only true]
//! ```
//!
//! Packet loss: this kernel has neither `sch_netem` nor `act_gact`, so `tc netem` cannot be used;
//! the loss phase starts the members with `--loss-per-mille`, which drops that share of received
//! datagrams at random inside each member (one drop chance per datagram, as netem on one egress).
//!
//! Topology: namespace `ilbg-hub` holds bridge `br0`; member i lives in namespace `ilbg-mNN` with
//! `eth0` = 10.77.0.i/24, a veth into the bridge. Every member is a separate process
//! (`gossip-member`, or `serf agent`), so it can be killed with SIGKILL. The bench timestamps each
//! line a member prints when it arrives, and measures from just before the kill to the first and to
//! the last survivor reporting the victim down. `--healthy-secs 600` gives the 10-minute version.
//! Everything is torn down on exit (namespaces with the `ilbg` prefix only).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ironlb_gossip::sim::{sim_addr, SimNetwork};
use ironlb_gossip::{Config, Input, Keyring};

const PREFIX: &str = "ilbg";
const SECRET_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const SERF_KEY_BASE64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct Options {
    sizes: Vec<usize>,
    kills: usize,
    serf_sizes: Vec<usize>,
    serf_kills: usize,
    healthy_secs: u64,
    loss_percent: f64,
    /// Skip the lossless phase (and so the kills): only the healthy period at `loss_percent`.
    loss_only: bool,
    sim_members: usize,
    member_bin: String,
    /// Extra flags for every `gossip-member` (tuning runs), e.g. `--probe-period-ms 35`.
    member_args: Vec<String>,
}

fn options() -> Result<Options, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let member_bin = exe
        .with_file_name("gossip-member")
        .to_string_lossy()
        .into_owned();
    let mut options = Options {
        sizes: vec![5, 20],
        kills: 20,
        serf_sizes: vec![5],
        serf_kills: 10,
        healthy_secs: 60,
        loss_percent: 2.0,
        loss_only: false,
        sim_members: 1000,
        member_bin,
        member_args: Vec::new(),
    };
    let list = |v: &str| -> Result<Vec<usize>, String> {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|e| format!("{s}: {e}")))
            .collect()
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let value = iter.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sizes" => options.sizes = list(&value)?,
            "--kills" => options.kills = value.parse().map_err(|e| format!("--kills: {e}"))?,
            "--serf-sizes" => options.serf_sizes = list(&value)?,
            "--serf-kills" => {
                options.serf_kills = value.parse().map_err(|e| format!("--serf-kills: {e}"))?
            }
            "--healthy-secs" => {
                options.healthy_secs = value.parse().map_err(|e| format!("--healthy-secs: {e}"))?
            }
            "--loss-only" => options.loss_only = value == "true",
            "--loss-percent" => {
                options.loss_percent = value.parse().map_err(|e| format!("--loss-percent: {e}"))?
            }
            "--sim-members" => {
                options.sim_members = value.parse().map_err(|e| format!("--sim-members: {e}"))?
            }
            "--member-bin" => options.member_bin = value,
            "--member-args" => {
                options.member_args = value.split_whitespace().map(str::to_string).collect()
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(options)
}

fn sh(args: &[&str]) -> Result<(), String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn namespace(index: usize) -> String {
    format!("{PREFIX}-m{index:02}")
}

fn address(index: usize) -> String {
    format!("10.77.0.{index}")
}

/// Our namespaces; removed on drop, also on panic.
struct Topology;

impl Topology {
    fn cleanup() {
        if let Ok(output) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or("");
                if name.starts_with(&format!("{PREFIX}-")) {
                    let _ = sh(&["ip", "netns", "del", name]);
                }
            }
        }
    }

    fn create(members: usize) -> Result<Self, String> {
        Self::cleanup();
        let _ = members;
        let topology = Self;
        let hub = format!("{PREFIX}-hub");
        sh(&["ip", "netns", "add", &hub])?;
        sh(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        for index in 1..=members {
            let ns = namespace(index);
            let peer = format!("{PREFIX}-p{index:02}");
            sh(&["ip", "netns", "add", &ns])?;
            sh(&[
                "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &peer,
                "netns", &hub,
            ])?;
            sh(&[
                "ip", "-n", &hub, "link", "set", &peer, "master", "br0", "up",
            ])?;
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", address(index)),
                "dev",
                "eth0",
            ])?;
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(topology)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        Self::cleanup();
    }
}

/// A line from member `index`, stamped on arrival.
struct Line {
    index: usize,
    at: Instant,
    text: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ironlb,
    Serf,
}

struct Cluster {
    kind: Kind,
    size: usize,
    children: BTreeMap<usize, Child>,
    lines: mpsc::Receiver<Line>,
    sender: mpsc::Sender<Line>,
    member_bin: String,
    member_args: Vec<String>,
    loss_per_mille: u32,
    /// Per observer, the members it considers alive (name → incarnation for ironlb, 0 for serf).
    alive: BTreeMap<usize, BTreeMap<String, u64>>,
    /// Latest STATS per member: (time, sent bytes).
    stats: BTreeMap<usize, (Instant, u64)>,
    incarnations: BTreeMap<usize, u64>,
}

fn member_name(kind: Kind, index: usize) -> String {
    match kind {
        Kind::Ironlb => format!("m{index:02}"),
        Kind::Serf => format!("s{index:02}"),
    }
}

impl Cluster {
    fn new(kind: Kind, size: usize, member_bin: &str) -> Self {
        let (sender, lines) = mpsc::channel();
        Self {
            kind,
            size,
            children: BTreeMap::new(),
            lines,
            sender,
            member_bin: member_bin.to_string(),
            member_args: Vec::new(),
            loss_per_mille: 0,
            alive: BTreeMap::new(),
            stats: BTreeMap::new(),
            incarnations: BTreeMap::new(),
        }
    }

    fn start(&mut self, index: usize) -> Result<(), String> {
        let ns = namespace(index);
        let bind = format!("{}:7946", address(index));
        let seeds: Vec<String> = (1..=3.min(self.size))
            .filter(|s| *s != index)
            .map(|s| format!("{}:7946", address(s)))
            .collect();
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &ns]);
        match self.kind {
            Kind::Ironlb => {
                command.arg(&self.member_bin).args([
                    "--name",
                    &member_name(self.kind, index),
                    "--bind",
                    &bind,
                    "--seeds",
                    &seeds.join(","),
                    "--secret-hex",
                    SECRET_HEX,
                    "--cluster",
                    "bench",
                    "--stats-ms",
                    "1000",
                    "--loss-per-mille",
                    &self.loss_per_mille.to_string(),
                ]);
                command.args(&self.member_args);
            }
            Kind::Serf => {
                command.args([
                    "serf",
                    "agent",
                    "-node",
                    &member_name(self.kind, index),
                    "-bind",
                    &bind,
                ]);
                command.args([
                    "-rpc-addr=127.0.0.1:7373",
                    &format!("-encrypt={SERF_KEY_BASE64}"),
                    "-log-level=info",
                ]);
                // `-retry-join` rather than `-join`: an agent started before its seeds keeps trying.
                for seed in &seeds {
                    command.arg(format!("-retry-join={seed}"));
                }
                command.arg("-retry-interval=1s");
            }
        }
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        let mut child = command
            .spawn()
            .map_err(|e| format!("spawn member {index}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let sender = self.sender.clone();
        std::thread::spawn(move || {
            for text in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender
                    .send(Line {
                        index,
                        at: Instant::now(),
                        text,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
        self.children.insert(index, child);
        self.alive.insert(index, BTreeMap::new());
        Ok(())
    }

    fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children.remove(&index) {
            // `ip netns exec` execs the member, so this SIGKILLs the member itself.
            let _ = child.kill();
            let _ = child.wait();
        }
        self.alive.remove(&index);
        self.stats.remove(&index);
    }

    fn stop(&mut self) {
        let indexes: Vec<usize> = self.children.keys().copied().collect();
        for index in indexes {
            self.kill(index);
        }
    }

    /// Applies one line; returns (observer, event, subject name, incarnation).
    fn apply(&mut self, line: &Line) -> Option<(String, String, u64)> {
        let words: Vec<&str> = line.text.split_whitespace().collect();
        match self.kind {
            Kind::Ironlb => match words.as_slice() {
                ["READY", _, incarnation] => {
                    self.incarnations
                        .insert(line.index, incarnation.parse().unwrap_or(0));
                    None
                }
                ["EVENT", kind, name, incarnation] => {
                    let incarnation: u64 = incarnation.parse().unwrap_or(0);
                    let alive = self.alive.entry(line.index).or_default();
                    match *kind {
                        "UP" => {
                            alive.insert(name.to_string(), incarnation);
                        }
                        "DOWN" | "LEFT" if alive.get(*name) == Some(&incarnation) => {
                            alive.remove(*name);
                        }
                        _ => {}
                    }
                    Some((kind.to_string(), name.to_string(), incarnation))
                }
                ["STATS", sent, ..] => {
                    self.stats
                        .insert(line.index, (line.at, sent.parse().unwrap_or(0)));
                    None
                }
                _ => None,
            },
            Kind::Serf => {
                // "... serf: EventMemberJoin: s03 10.77.0.3" / "EventMemberFailed" / "EventMemberLeave"
                let position = words.iter().position(|w| w.starts_with("EventMember"))?;
                let event = words.get(position)?.trim_end_matches(':');
                let name = words.get(position + 1)?.to_string();
                let alive = self.alive.entry(line.index).or_default();
                let kind = match event {
                    "EventMemberJoin" => {
                        alive.insert(name.clone(), 0);
                        "UP"
                    }
                    "EventMemberFailed" => {
                        alive.remove(&name);
                        "DOWN"
                    }
                    "EventMemberLeave" => {
                        alive.remove(&name);
                        "LEFT"
                    }
                    _ => return None,
                };
                Some((kind.to_string(), name, 0))
            }
        }
    }

    /// Pumps lines until `done` holds or `timeout` passes; calls `on_event` for each event.
    fn pump(
        &mut self,
        timeout: Duration,
        mut on_event: impl FnMut(&Line, &str, &str, u64),
        done: impl Fn(&Self) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            match self
                .lines
                .recv_timeout((deadline - now).min(Duration::from_millis(100)))
            {
                Ok(line) => {
                    if !self.children.contains_key(&line.index) {
                        continue;
                    }
                    if let Some((kind, name, incarnation)) = self.apply(&line) {
                        on_event(&line, &kind, &name, incarnation);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    fn converged(&self) -> bool {
        let names: BTreeSet<String> = self
            .children
            .keys()
            .map(|i| member_name(self.kind, *i))
            .collect();
        self.children.keys().all(|observer| {
            let own = member_name(self.kind, *observer);
            let alive: BTreeSet<String> = self
                .alive
                .get(observer)
                .map(|a| a.keys().cloned().collect())
                .unwrap_or_default();
            names
                .iter()
                .filter(|n| **n != own)
                .all(|n| alive.contains(n))
        })
    }
}

fn percentile(values: &[f64], quantile: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct KillResult {
    first_ms: Vec<f64>,
    last_ms: Vec<f64>,
    missed: usize,
}

fn measure_kills(cluster: &mut Cluster, kills: usize, detect_timeout: Duration) -> KillResult {
    let mut result = KillResult {
        first_ms: Vec::new(),
        last_ms: Vec::new(),
        missed: 0,
    };
    // Kill members outside the seed set (seeds are 1..=3), in turn.
    let victims: Vec<usize> = (1..=cluster.size)
        .filter(|i| *i > 3.min(cluster.size - 1))
        .collect();
    for kill in 0..kills {
        let victim = victims[kill % victims.len()];
        let name = member_name(cluster.kind, victim);
        let incarnation = cluster.incarnations.get(&victim).copied().unwrap_or(0);
        let survivors: BTreeSet<usize> = cluster
            .children
            .keys()
            .copied()
            .filter(|i| *i != victim)
            .collect();
        let killed_at = Instant::now();
        cluster.kill(victim);
        let mut seen: BTreeMap<usize, Instant> = BTreeMap::new();
        let kind = cluster.kind;
        let complete = {
            let seen_ref = &mut seen;
            let survivors_ref = &survivors;
            let name_ref = &name;
            let seen_count = std::cell::Cell::new(0usize);
            cluster.pump(
                detect_timeout,
                |line, event, subject, subject_incarnation| {
                    let matches_life = kind == Kind::Serf || subject_incarnation == incarnation;
                    if event == "DOWN"
                        && subject == name_ref
                        && matches_life
                        && survivors_ref.contains(&line.index)
                    {
                        seen_ref.entry(line.index).or_insert(line.at);
                        seen_count.set(seen_ref.len());
                    }
                },
                |_| seen_count.get() >= survivors.len(),
            )
        };
        if !complete {
            result.missed += 1;
            eprintln!(
                "kill {kill}: only {}/{} survivors saw {name} down",
                seen.len(),
                survivors.len()
            );
        }
        if let (Some(first), Some(last)) = (seen.values().min(), seen.values().max()) {
            result
                .first_ms
                .push((*first - killed_at).as_secs_f64() * 1000.0);
            result
                .last_ms
                .push((*last - killed_at).as_secs_f64() * 1000.0);
        }
        // Bring the victim back as a new life and wait until everyone sees it.
        if let Err(error) = cluster.start(victim) {
            eprintln!("restart: {error}");
        }
        if !cluster.pump(Duration::from_secs(60), |_, _, _, _| {}, Cluster::converged) {
            eprintln!("kill {kill}: cluster did not reconverge after restarting {name}");
        }
        // Let the news of the death and the rejoin settle before the next kill.
        cluster.pump(
            Duration::from_millis(if kind == Kind::Serf { 3000 } else { 1000 }),
            |_, _, _, _| {},
            |_| false,
        );
        eprint!(".");
    }
    eprintln!();
    result
}

struct HealthyResult {
    false_downs: usize,
    suspicions: usize,
    bytes_per_member_per_sec: f64,
}

fn measure_healthy(cluster: &mut Cluster, seconds: u64) -> HealthyResult {
    // Baseline stats at the start.
    cluster.pump(Duration::from_millis(1100), |_, _, _, _| {}, |_| false);
    let start: BTreeMap<usize, (Instant, u64)> = cluster.stats.clone();
    let mut false_downs = 0;
    let mut suspicions = 0;
    cluster.pump(
        Duration::from_secs(seconds),
        |_, event, _, _| match event {
            "DOWN" | "LEFT" => false_downs += 1,
            "SUSPECT" => suspicions += 1,
            _ => {}
        },
        |_| false,
    );
    let mut rates = Vec::new();
    for (index, (end_at, end_bytes)) in &cluster.stats {
        if let Some((start_at, start_bytes)) = start.get(index) {
            let seconds = (*end_at - *start_at).as_secs_f64();
            if seconds > 0.5 {
                rates.push((end_bytes - start_bytes) as f64 / seconds);
            }
        }
    }
    let bytes_per_member_per_sec = if rates.is_empty() {
        f64::NAN
    } else {
        rates.iter().sum::<f64>() / rates.len() as f64
    };
    HealthyResult {
        false_downs,
        suspicions,
        bytes_per_member_per_sec,
    }
}

fn simulated_bytes_per_second(members: usize) -> f64 {
    let mut net = SimNetwork::new(42);
    net.record = false;
    let config = Config::lan("bench");
    let secret: Vec<u8> = (0u8..32).collect();
    let addrs: Vec<_> = (0..members as u32).map(sim_addr).collect();
    for (index, addr) in addrs.iter().enumerate() {
        net.add(
            config.clone(),
            &format!("m{index:04}"),
            1000,
            *addr,
            Keyring::new(&secret).unwrap_or_else(|e| panic!("{e}")),
        );
    }
    // Start converged (a 1,000-member join storm costs minutes of CPU to simulate), then let the
    // initial state broadcasts die out before measuring the steady state.
    net.assume_converged();
    for addr in &addrs {
        net.input(*addr, Input::Join(addrs.iter().take(3).copied().collect()));
    }
    net.run_for(Duration::from_secs(10));
    let joined = addrs
        .iter()
        .filter(|a| net.member(**a).map(|m| m.active_names().len()) == Some(members))
        .count();
    let before = net.sent_bytes.clone();
    let window = Duration::from_secs(10);
    net.run_for(window);
    let total: u64 = net
        .sent_bytes
        .iter()
        .map(|(a, b)| b - before.get(a).copied().unwrap_or(0))
        .sum();
    if joined < members {
        eprintln!("simulation: only {joined}/{members} members saw the whole cluster");
    }
    total as f64 / members as f64 / window.as_secs_f64()
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` gives them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn print_kill_row(name: &str, size: usize, result: &KillResult) {
    println!(
        "row kill: {name} members {size} load {} kills {} first_p50_ms {:.0} first_p99_ms {:.0} last_p50_ms {:.0} last_p99_ms {:.0} last_max_ms {:.0} missed {} last_all_ms {:?}",
        load_average(),
        result.last_ms.len(),
        percentile(&result.first_ms, 0.5),
        percentile(&result.first_ms, 0.99),
        percentile(&result.last_ms, 0.5),
        percentile(&result.last_ms, 0.99),
        percentile(&result.last_ms, 1.0),
        result.missed,
        result.last_ms.iter().map(|v| v.round() as i64).collect::<Vec<_>>()
    );
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("gossip-bench: {error}");
            std::process::exit(2);
        }
    };
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        eprintln!("gossip-bench needs root (network namespaces)");
        std::process::exit(2);
    }
    let largest = options
        .sizes
        .iter()
        .chain(&options.serf_sizes)
        .copied()
        .max()
        .unwrap_or(5);
    let topology = match Topology::create(largest) {
        Ok(topology) => topology,
        Err(error) => {
            eprintln!("gossip-bench: topology: {error}");
            Topology::cleanup();
            std::process::exit(1);
        }
    };
    // Each row keeps the load average at its end: figures on this shared machine depend on it.
    let mut kill_rows: Vec<(String, usize, KillResult, String)> = Vec::new();
    let mut healthy_rows: Vec<(usize, f64, HealthyResult, String)> = Vec::new();
    println!("load average at start: {}", load_average());
    for &size in &options.sizes {
        let losses = if options.loss_only {
            vec![options.loss_percent]
        } else {
            vec![0.0, options.loss_percent]
        };
        for loss in losses {
            eprintln!("ironlb: {size} members, {loss}% loss");
            let mut cluster = Cluster::new(Kind::Ironlb, size, &options.member_bin);
            cluster.member_args = options.member_args.clone();
            cluster.loss_per_mille = (loss * 10.0).round() as u32;
            for index in 1..=size {
                if let Err(error) = cluster.start(index) {
                    eprintln!("{error}");
                    return;
                }
            }
            if !cluster.pump(Duration::from_secs(60), |_, _, _, _| {}, Cluster::converged) {
                eprintln!("ironlb {size}: did not converge");
            }
            eprintln!("  healthy {}s", options.healthy_secs);
            let result = measure_healthy(&mut cluster, options.healthy_secs);
            println!(
                "row healthy: members {size} loss {loss}% load {} secs {} false_downs {} suspicions {} bytes_per_s_per_member {:.0}",
                load_average(), options.healthy_secs, result.false_downs, result.suspicions, result.bytes_per_member_per_sec
            );
            healthy_rows.push((size, loss, result, load_average()));
            if loss == 0.0 {
                eprintln!("  {} kills", options.kills);
                let result = measure_kills(&mut cluster, options.kills, Duration::from_secs(10));
                print_kill_row("ironlb", size, &result);
                kill_rows.push(("ironlb".into(), size, result, load_average()));
            }
            cluster.stop();
        }
    }
    for &size in &options.serf_sizes {
        if options.serf_kills == 0 {
            continue;
        }
        eprintln!("serf: {size} members");
        let mut cluster = Cluster::new(Kind::Serf, size, &options.member_bin);
        for index in 1..=size {
            if let Err(error) = cluster.start(index) {
                eprintln!("{error}");
                return;
            }
        }
        if !cluster.pump(
            Duration::from_secs(120),
            |_, _, _, _| {},
            Cluster::converged,
        ) {
            eprintln!("serf {size}: did not converge");
        }
        eprintln!("  {} kills", options.serf_kills);
        let result = measure_kills(&mut cluster, options.serf_kills, Duration::from_secs(30));
        print_kill_row("serf", size, &result);
        kill_rows.push(("serf".into(), size, result, load_average()));
        cluster.stop();
    }
    drop(topology);

    let mut sim_rows = Vec::new();
    for members in [5, 20, options.sim_members] {
        if members == 0 {
            continue;
        }
        eprintln!("simulating {members} members");
        let started = Instant::now();
        let rate = simulated_bytes_per_second(members);
        println!(
            "row sim: members {members} bytes_per_s_per_member {rate:.0} (simulated in {:.0?})",
            started.elapsed()
        );
        sim_rows.push((members, rate));
    }

    println!("\n== kill -9 → marked Down (ms), encrypted, network namespaces");
    println!(
        "{:<7} {:>7} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6}  {:<17}",
        "impl",
        "members",
        "kills",
        "first p50",
        "first p99",
        "last p50",
        "last p99",
        "last max",
        "missed",
        "load (1/5/15 min)"
    );
    for (name, size, result, load) in &kill_rows {
        println!(
            "{:<7} {:>7} {:>5} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>6}  {}",
            name,
            size,
            result.last_ms.len(),
            percentile(&result.first_ms, 0.5),
            percentile(&result.first_ms, 0.99),
            percentile(&result.last_ms, 0.5),
            percentile(&result.last_ms, 0.99),
            percentile(&result.last_ms, 1.0),
            result.missed,
            load
        );
    }
    for (name, size, result, _) in kill_rows.iter().filter(|(n, _, _, _)| n == "serf") {
        let _ = name;
        if let Some((_, _, ours, _)) = kill_rows
            .iter()
            .find(|(n, s, _, _)| n == "ironlb" && s == size)
        {
            println!(
                "ratio serf/ironlb at {size} members: last p50 {:.1}x, last p99 {:.1}x, first p50 {:.1}x",
                percentile(&result.last_ms, 0.5) / percentile(&ours.last_ms, 0.5),
                percentile(&result.last_ms, 0.99) / percentile(&ours.last_ms, 0.99),
                percentile(&result.first_ms, 0.5) / percentile(&ours.first_ms, 0.5),
            );
        }
    }
    println!("\n== healthy period ({} s each): false Downs, suspicions, bytes/s sent per member (UDP payload)", options.healthy_secs);
    println!(
        "{:>7} {:>6} {:>11} {:>11} {:>14}  {:<17}",
        "members", "loss%", "false Downs", "suspicions", "bytes/s/member", "load (1/5/15 min)"
    );
    for (size, loss, result, load) in &healthy_rows {
        println!(
            "{:>7} {:>6} {:>11} {:>11} {:>14.0}  {}",
            size,
            loss,
            result.false_downs,
            result.suspicions,
            result.bytes_per_member_per_sec,
            load
        );
    }
    println!("\n== simulated (virtual time, same core, no loss): bytes/s sent per member");
    for (members, rate) in &sim_rows {
        println!("{members:>7} members: {rate:>8.0} B/s");
    }
}
