//! `bgp-bench`: how fast FRR learns and unlearns prefixes advertised by ironlb, BIRD 2 and
//! GoBGP, and ironlb's memory with 100,000 prefixes to two peers. Prints figures; asserts
//! nothing. Root only; builds its own namespaces (`ilbbbn*`) and removes them.
//!
//! ```text
//! cargo run --release -p ironlb-announce --bin bgp-bench [-- --sizes 10000,100000 --runs 3]
//! ```
//!
//! Topology: namespace `ilbbbna` (the sender: ironlb's `bgp-speaker`, `bird` or `gobgpd`;
//! 10.77.0.1 and 10.77.0.3) — veth — namespace `ilbbbnb` (FRR 8.4 zebra + bgpd, 10.77.0.2).
//! For each sender and size: time from Established (first seen by polling FRR) until FRR holds
//! all /32s; withdraw all on the live session until FRR holds none; announce all again on the
//! live session until FRR holds all. FRR is polled every 10 ms through `vtysh`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const NS_SENDER: &str = "ilbbbna";
const NS_FRR: &str = "ilbbbnb";
const SENDER: &str = "10.77.0.1";
const SENDER_2: &str = "10.77.0.3";
const FRR: &str = "10.77.0.2";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--rss-child") {
        return rss_child(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100_000));
    }
    let mut sizes = vec![10_000u32, 100_000];
    let mut runs = 1;
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        match (flag.as_str(), iter.next()) {
            ("--sizes", Some(value)) => {
                sizes = value.split(',').filter_map(|s| s.parse().ok()).collect()
            }
            ("--runs", Some(value)) => runs = value.parse().unwrap_or(1),
            _ => {
                eprintln!("usage: bgp-bench [--sizes 10000,100000] [--runs N]");
                return ExitCode::from(2);
            }
        }
    }
    let bench = match Bench::new() {
        Ok(bench) => bench,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    // `run` consumes the bench; its Drop removes the namespaces.
    match bench.run(&sizes, runs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn sh(args: &[&str]) -> Result<String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn spawn(ns: &str, args: &[&str]) -> Result<Child> {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{args:?}: {e}"))
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The number after `"key":` in the JSON object of `peer` in FRR's summary.
fn peer_number(summary: &str, peer: &str, key: &str) -> Option<u64> {
    let start = summary.find(&format!("\"{peer}\":{{"))?;
    let rest = &summary[start..];
    let end = rest.find('}').unwrap_or(rest.len());
    let object = &rest[..end];
    let at = object.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = object[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

struct Bench {
    dir: PathBuf,
    frr: Vec<Child>,
}

impl Bench {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("ilbbbn-{}", std::process::id()));
        let bench = Self {
            dir,
            frr: Vec::new(),
        };
        bench.cleanup();
        std::fs::create_dir_all(&bench.dir).map_err(|e| e.to_string())?;
        sh(&["chown", "frr:frr", bench.dir.to_str().unwrap_or_default()])?;
        sh(&["ip", "netns", "add", NS_SENDER])?;
        sh(&["ip", "netns", "add", NS_FRR])?;
        sh(&[
            "ip", "link", "add", "ilbbbna", "netns", NS_SENDER, "type", "veth", "peer", "name",
            "ilbbbnb", "netns", NS_FRR,
        ])?;
        for (ns, link, addresses) in [
            (NS_SENDER, "ilbbbna", vec![SENDER, SENDER_2]),
            (NS_FRR, "ilbbbnb", vec![FRR]),
        ] {
            for address in addresses {
                sh(&[
                    "ip",
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{address}/24"),
                    "dev",
                    link,
                ])?;
            }
            sh(&["ip", "-n", ns, "link", "set", link, "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(bench)
    }

    fn cleanup(&self) {
        for ns in [NS_SENDER, NS_FRR] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/frr/{NS_FRR}"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn write(&self, name: &str, text: &str) -> Result<String> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        let path = path.to_string_lossy().into_owned();
        sh(&["chown", "frr:frr", &path])?;
        Ok(path)
    }

    fn start_frr(&mut self) -> Result<()> {
        for child in self.frr.drain(..) {
            stop(child);
        }
        let run_dir = format!("/var/run/frr/{NS_FRR}");
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;
        sh(&["chown", "frr:frr", &run_dir])?;
        let config = format!(
            "frr defaults traditional\nhostname frr\nlog file /dev/null\n!\nrouter bgp 64512\n bgp router-id {FRR}\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n neighbor {SENDER} remote-as external\n neighbor {SENDER} timers connect 1\n neighbor {SENDER_2} remote-as external\n neighbor {SENDER_2} timers connect 1\n address-family ipv4 unicast\n  neighbor {SENDER} activate\n  neighbor {SENDER_2} activate\n exit-address-family\n!\n"
        );
        let path = self.write("frr.conf", &config)?;
        for daemon in ["zebra", "bgpd"] {
            let pid = format!("{run_dir}/{daemon}.pid");
            self.frr.push(spawn(
                NS_FRR,
                &[
                    &format!("/usr/lib/frr/{daemon}"),
                    "-N",
                    NS_FRR,
                    "-f",
                    &path,
                    "-i",
                    &pid,
                ],
            )?);
            std::thread::sleep(Duration::from_millis(500));
        }
        wait("FRR up", Duration::from_secs(10), || {
            self.summary().contains("routerId")
        })?;
        Ok(())
    }

    fn poll_duration(&self) -> Duration {
        let start = Instant::now();
        let _ = self.summary();
        start.elapsed()
    }

    fn summary(&self) -> String {
        Command::new("vtysh")
            .args(["-N", NS_FRR, "-c", "show bgp ipv4 unicast summary json"])
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn received(&self, peer: &str) -> Option<(u64, u64)> {
        let summary = self.summary();
        if !summary.contains(&format!("\"{peer}\":{{"))
            || !summary.contains("\"state\":\"Established\"")
        {
            return None;
        }
        Some((
            peer_number(&summary, peer, "pfxRcd")?,
            peer_number(&summary, peer, "peerUptimeMsec")?,
        ))
    }

    /// Polls until FRR holds `count` prefixes from SENDER; returns the time since `since`, or,
    /// when `since` is None, since the start of the last poll that did not yet see the session
    /// Established (FRR's own uptime counter has a one-second resolution). Both ends are upper
    /// bounds, so the figure is too, by at most about two polls.
    fn until_count(
        &self,
        count: u64,
        since: Option<Instant>,
        timeout: Duration,
    ) -> Result<Duration> {
        let start = Instant::now();
        let mut established = since;
        let mut last_poll_start = start;
        loop {
            let poll_start = Instant::now();
            if let Some((received, _)) = self.received(SENDER) {
                let established_at = *established.get_or_insert(last_poll_start);
                if received == count {
                    return Ok(established_at.elapsed());
                }
            }
            last_poll_start = poll_start;
            if start.elapsed() > timeout {
                return Err(format!(
                    "FRR never held {count} prefixes ({:?})",
                    self.received(SENDER)
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn prefixes(count: u32) -> impl Iterator<Item = Ipv4Addr> {
        (0..count).map(|i| Ipv4Addr::from(0x0a64_0000 + i))
    }

    fn run(mut self, sizes: &[u32], runs: u32) -> Result<()> {
        let senders = [Sender::Ironlb, Sender::Bird, Sender::Gobgp];
        let mut rows: Vec<Row> = Vec::new();
        for &size in sizes {
            for sender in senders {
                for run in 0..runs {
                    self.start_frr()?;
                    let timeout = Duration::from_secs(120);
                    let mut running = sender.start(&self, size)?;
                    let initial = self.until_count(u64::from(size), None, timeout)?;
                    let start = Instant::now();
                    running.withdraw(&self)?;
                    let withdraw = self.until_count(0, Some(start), timeout)?;
                    let start = Instant::now();
                    running.announce(&self, size)?;
                    let added = self.until_count(u64::from(size), Some(start), timeout)?;
                    running.stop();
                    println!(
                        "{:>7} {:<6} run {run}: from Established {:>8.3} s, withdraw live {:>8.3} s, add live {:>8.3} s",
                        size,
                        sender.name(),
                        initial.as_secs_f64(),
                        withdraw.as_secs_f64(),
                        added.as_secs_f64()
                    );
                    rows.push((size, sender, initial, withdraw, added));
                }
            }
        }
        println!();
        println!(
            "median of {runs} run(s); ratio = ironlb / faster of BIRD and GoBGP (target <= 1.0)"
        );
        println!(
            "(times are upper bounds: FRR is polled through vtysh, one poll took {:?} here)",
            self.poll_duration()
        );
        println!(
            "{:>7} {:<22} {:>9} {:>9} {:>9} {:>7}",
            "size", "measure", "ironlb", "bird", "gobgp", "ratio"
        );
        for &size in sizes {
            let median = |sender: Sender, pick: Pick| {
                let mut values: Vec<Duration> = rows
                    .iter()
                    .filter(|r| r.0 == size && r.1 == sender)
                    .map(pick)
                    .collect();
                values.sort();
                values
                    .get(values.len() / 2)
                    .copied()
                    .unwrap_or_default()
                    .as_secs_f64()
            };
            let measures: [(&str, Pick); 3] = [
                ("from Established", |r| r.2),
                ("withdraw all (live)", |r| r.3),
                ("add all (live)", |r| r.4),
            ];
            for (name, pick) in measures {
                let (ironlb, bird, gobgp) = (
                    median(Sender::Ironlb, pick),
                    median(Sender::Bird, pick),
                    median(Sender::Gobgp, pick),
                );
                let ratio = ironlb / bird.min(gobgp).max(1e-9);
                println!(
                    "{size:>7} {name:<22} {ironlb:>9.3} {bird:>9.3} {gobgp:>9.3} {ratio:>7.2}"
                );
            }
        }
        // Memory: one ironlb process, 100,000 prefixes, two peers.
        self.start_frr()?;
        let rss_size: u32 = 100_000;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let child = spawn(
            NS_SENDER,
            &[
                exe.to_str().unwrap_or_default(),
                "--rss-child",
                &rss_size.to_string(),
            ],
        )?;
        let pid = child.id();
        let both = wait(
            "FRR holds 100,000 from both ironlb peers",
            Duration::from_secs(120),
            || {
                let summary = self.summary();
                peer_number(&summary, SENDER, "pfxRcd") == Some(u64::from(rss_size))
                    && peer_number(&summary, SENDER_2, "pfxRcd") == Some(u64::from(rss_size))
            },
        );
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        stop(child);
        both?;
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap_or("VmRSS: ?")
            .to_string();
        println!();
        println!("ironlb with {rss_size} prefixes to 2 peers: {rss} (target <= 64 MiB)");
        Ok(())
    }
}

/// One measurement: size, sender, from Established, withdraw live, add live.
type Row = (u32, Sender, Duration, Duration, Duration);
/// Picks one figure of a row.
type Pick = fn(&Row) -> Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sender {
    Ironlb,
    Bird,
    Gobgp,
}

struct Running {
    sender: Sender,
    child: Child,
    control: String,
    mrt: String,
}

impl Sender {
    fn name(self) -> &'static str {
        match self {
            Self::Ironlb => "ironlb",
            Self::Bird => "bird",
            Self::Gobgp => "gobgp",
        }
    }

    fn start(self, bench: &Bench, count: u32) -> Result<Running> {
        match self {
            Self::Ironlb => {
                let text: String = Bench::prefixes(count)
                    .map(|p| format!("{p}/32\n"))
                    .collect();
                let file = bench.write("prefixes.txt", &text)?;
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let speaker = exe.with_file_name("bgp-speaker");
                let child = spawn(
                    NS_SENDER,
                    &[
                        speaker.to_str().unwrap_or_default(),
                        "--peer",
                        FRR,
                        "--peer-asn",
                        "64512",
                        "--asn",
                        "64513",
                        "--source",
                        SENDER,
                        "--prefix-file",
                        &file,
                    ],
                )?;
                Ok(Running {
                    sender: self,
                    child,
                    control: String::new(),
                    mrt: String::new(),
                })
            }
            Self::Bird => {
                let mut config = format!(
                    "router id {SENDER};\nprotocol device {{}}\nprotocol static s4 {{\n ipv4;\n"
                );
                for prefix in Bench::prefixes(count) {
                    config.push_str(&format!(" route {prefix}/32 blackhole;\n"));
                }
                config.push_str(&format!(
                    "}}\nprotocol bgp frr {{\n local {SENDER} as 64513;\n neighbor {FRR} as 64512;\n ipv4 {{ import none; export all; next hop self; }};\n}}\n"
                ));
                let path = bench.write("bird.conf", &config)?;
                let control = bench.dir.join("bird.ctl").to_string_lossy().into_owned();
                let child = spawn(
                    NS_SENDER,
                    &["/usr/sbin/bird", "-f", "-c", &path, "-s", &control],
                )?;
                Ok(Running {
                    sender: self,
                    child,
                    control,
                    mrt: String::new(),
                })
            }
            Self::Gobgp => {
                let config = format!(
                    "[global.config]\n  as = 64513\n  router-id = \"{SENDER}\"\n  port = -1\n"
                );
                let path = bench.write("gobgp.toml", &config)?;
                let mrt = bench.dir.join("routes.mrt");
                std::fs::write(&mrt, mrt_table(count)).map_err(|e| e.to_string())?;
                let mrt = mrt.to_string_lossy().into_owned();
                let child = spawn(
                    NS_SENDER,
                    &[
                        "/usr/bin/gobgpd",
                        "-f",
                        &path,
                        "--api-hosts",
                        "127.0.0.1:50052",
                    ],
                )?;
                wait("gobgpd up", Duration::from_secs(10), || {
                    gobgp(&["global"]).is_ok()
                })?;
                gobgp(&["mrt", "inject", "global", &mrt])?;
                wait("gobgp rib loaded", Duration::from_secs(120), || {
                    gobgp(&["global", "rib", "summary", "-a", "ipv4"])
                        .is_ok_and(|text| text.contains(&format!("Destination: {count}")))
                })?;
                gobgp(&["neighbor", "add", FRR, "as", "64512"])?;
                Ok(Running {
                    sender: self,
                    child,
                    control: String::new(),
                    mrt,
                })
            }
        }
    }
}

fn gobgp(args: &[&str]) -> Result<String> {
    let mut command = vec!["ip", "netns", "exec", NS_SENDER, "gobgp", "-p", "50052"];
    command.extend_from_slice(args);
    sh(&command)
}

impl Running {
    fn withdraw(&mut self, _bench: &Bench) -> Result<()> {
        match self.sender {
            Sender::Ironlb => sh(&["kill", "-USR1", &self.child.id().to_string()]).map(drop),
            Sender::Bird => sh(&["birdc", "-s", &self.control, "disable", "s4"]).map(drop),
            Sender::Gobgp => gobgp(&["global", "rib", "-a", "ipv4", "del", "all"]).map(drop),
        }
    }

    fn announce(&mut self, _bench: &Bench, _count: u32) -> Result<()> {
        match self.sender {
            Sender::Ironlb => sh(&["kill", "-USR2", &self.child.id().to_string()]).map(drop),
            Sender::Bird => sh(&["birdc", "-s", &self.control, "enable", "s4"]).map(drop),
            Sender::Gobgp => gobgp(&["mrt", "inject", "global", &self.mrt]).map(drop),
        }
    }

    fn stop(self) {
        stop(self.child);
    }
}

/// An MRT TABLE_DUMP_V2 file (RFC 6396) with `count` /32s, for `gobgp mrt inject`.
fn mrt_table(count: u32) -> Vec<u8> {
    fn record(out: &mut Vec<u8>, subtype: u16, body: &[u8]) {
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&13u16.to_be_bytes());
        out.extend_from_slice(&subtype.to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
    }
    let sender: Ipv4Addr = SENDER.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut out = Vec::new();
    // PEER_INDEX_TABLE: collector id, empty view name, one peer (IPv4, 4-octet AS).
    let mut peers = sender.octets().to_vec();
    peers.extend_from_slice(&[0, 0, 0, 1, 0x02]);
    peers.extend_from_slice(&sender.octets());
    peers.extend_from_slice(&sender.octets());
    peers.extend_from_slice(&64513u32.to_be_bytes());
    record(&mut out, 1, &peers);
    // ORIGIN IGP, empty AS_PATH, NEXT_HOP = sender.
    let mut attributes = vec![0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4];
    attributes.extend_from_slice(&sender.octets());
    // `gobgp mrt inject` (3.10) loses the tail of its stream: repeat the first 4096 entries at
    // the end so only repeats can be lost.
    let repeat = Bench::prefixes(count.min(4096));
    for (sequence, prefix) in Bench::prefixes(count).chain(repeat).enumerate() {
        let mut body = (sequence as u32).to_be_bytes().to_vec();
        body.push(32);
        body.extend_from_slice(&prefix.octets());
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
        body.extend_from_slice(&attributes);
        record(&mut out, 2, &body);
    }
    out
}

impl Drop for Bench {
    fn drop(&mut self) {
        for child in self.frr.drain(..) {
            stop(child);
        }
        self.cleanup();
    }
}

fn wait(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("timed out waiting for {what}"))
}

/// Runs two ironlb peers in this process (sources 10.77.0.1 and 10.77.0.3) advertising `count`
/// prefixes each, until killed; the parent reads our RSS.
fn rss_child(count: u32) -> ExitCode {
    use ironlb_announce::bgp::driver::{self, PeerConfig};
    use ironlb_announce::bgp::rib::RouteAttributes;
    use ironlb_announce::bgp::session::{PeerAsn, SessionConfig};
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        // One shared copy of the routes for both peers, as the speaker would hold it.
        let routes: ironlb_announce::bgp::rib::Routes = std::sync::Arc::new(
            Bench::prefixes(count)
                .map(|p| {
                    (
                        ipnet::IpNet::V4(ipnet::Ipv4Net::from(p)),
                        RouteAttributes::default(),
                    )
                })
                .collect(),
        );
        let mut peers = Vec::new();
        for source in [SENDER, SENDER_2] {
            let config = PeerConfig {
                session: SessionConfig::new(64513, PeerAsn::Fixed(64512)),
                peer: std::net::SocketAddr::new(
                    FRR.parse()
                        .unwrap_or(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    179,
                ),
                source: source.parse().ok(),
                password: None,
                ebgp_multihop: false,
                bfd: None,
            };
            let peer = driver::spawn(config, None);
            peer.set_routes(routes.clone());
            peers.push(peer);
        }
        drop(routes);
        std::future::pending::<()>().await;
    });
    ExitCode::SUCCESS
}
