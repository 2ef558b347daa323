//! Namespace tests against Linux's own `arping`, `ndisc6`, `ping` and neighbour table.
//!
//! Topology per test: a bridge in `ilb2<t>-sw`, a client namespace `-c` (10.0.0.1/24,
//! fd00::1/64) and node namespaces running the `l2-announce` binary (the same code as
//! `ironlb announce`). They need root; without it each test prints why it is skipped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironlb_announce::l2::netns::{is_root, Topology};
use ironlb_announce::l2::MacAddr;

const VIP4: &str = "10.0.0.100";
const VIP6: &str = "fd00::100";

fn skip() -> bool {
    if !is_root() {
        eprintln!("skipped: network-namespace tests need root");
        return true;
    }
    for tool in ["ip", "arping", "ndisc6", "tcpdump", "ping"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            eprintln!("skipped: {tool} is not installed (scripts/install-deps.sh)");
            return true;
        }
    }
    false
}

/// A background process whose stdout lines are collected; killed on drop.
struct Background {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Background {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Self { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a line contains `needle`; panics with the output after `timeout`.
    fn wait_for(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.lines().iter().any(|line| line.contains(needle)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "no line with {needle:?} within {timeout:?}; output: {:#?}",
            self.lines()
        );
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the announcer in node `node` with extra `args`; waits until `ready_interface` is up.
fn announce(topology: &Topology, node: &str, args: &[&str], ready_interface: &str) -> Background {
    let mut command = topology.command(node, env!("CARGO_BIN_EXE_l2-announce"));
    command.args(args).arg("-v");
    let announcer = Background::spawn(command);
    announcer.wait_for(
        &format!("interface up name={ready_interface}"),
        Duration::from_secs(20),
    );
    announcer
}

fn output(mut command: Command) -> String {
    let output = command.output().expect("run");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// MACs in `arping` reply lines ("60 bytes from MAC (IP): ...").
fn arping_macs(topology: &Topology, ip: &str, count: u32) -> Vec<MacAddr> {
    let mut command = topology.command("c", "arping");
    command.args(["-c", &count.to_string(), "-w", "5", "-I", "eth0", ip]);
    let text = output(command);
    text.lines()
        .filter(|line| line.contains("bytes from"))
        .filter_map(|line| {
            line.split_whitespace()
                .nth(3)
                .and_then(|mac| mac.parse().ok())
        })
        .collect()
}

/// The MAC `ndisc6` resolves `ip` to, if any.
fn ndisc6_mac(topology: &Topology, ip: &str) -> Option<MacAddr> {
    let mut command = topology.command("c", "ndisc6");
    command.args(["-1", "-r", "3", "-w", "500", ip, "eth0"]);
    let text = output(command);
    text.lines()
        .find_map(|line| line.strip_prefix("Target link-layer address: "))
        .and_then(|mac| mac.trim().to_lowercase().parse().ok())
}

/// The client's neighbour entry MAC for `ip`.
fn neighbour(topology: &Topology, ip: &str) -> Option<MacAddr> {
    let text = topology
        .ip("c", &["neigh", "show", ip, "dev", "eth0"])
        .ok()?;
    let mut words = text.split_whitespace();
    words.find(|word| *word == "lladdr")?;
    words.next()?.parse().ok()
}

/// Client + `nodes`, each with eth0 on the bridge; returns the node MACs.
fn topology(prefix: &str, nodes: &[&str]) -> (Topology, Vec<MacAddr>) {
    let mut topology = Topology::new(prefix).expect("topology");
    topology.add_namespace("c").unwrap();
    topology.connect("c", "eth0").unwrap();
    topology
        .ip("c", &["addr", "add", "10.0.0.1/24", "dev", "eth0"])
        .unwrap();
    topology
        .ip("c", &["addr", "add", "fd00::1/64", "dev", "eth0", "nodad"])
        .unwrap();
    let macs = nodes
        .iter()
        .map(|node| {
            topology.add_namespace(node).unwrap();
            topology.connect(node, "eth0").unwrap()
        })
        .collect();
    (topology, macs)
}

#[test]
fn only_the_owner_answers_arping_and_ndisc6() {
    if skip() {
        return;
    }
    let (topology, macs) = topology("ilb2a", &["n1", "n2"]);
    let _owner = announce(
        &topology,
        "n1",
        &["--interface", "eth0", "--ip", VIP4, "--ip", VIP6],
        "eth0",
    );
    // The other node announces a different IP, so it has a live responder too.
    let _other = announce(
        &topology,
        "n2",
        &[
            "--interface",
            "eth0",
            "--ip",
            "10.0.0.101",
            "--ip",
            "fd00::101",
        ],
        "eth0",
    );

    let joined = || {
        topology
            .ip("n1", &["-6", "maddr", "show", "dev", "eth0"])
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut groups = joined();
    while !groups.contains("ff02::1:ff00:100") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        groups = joined();
    }
    assert!(
        groups.contains("ff02::1:ff00:100"),
        "owner joined the VIP's solicited-node group: {groups}"
    );
    let replies = arping_macs(&topology, VIP4, 3);
    assert_eq!(
        replies,
        vec![macs[0]; 3],
        "three replies, all from the owner"
    );
    assert_eq!(
        ndisc6_mac(&topology, VIP6),
        Some(macs[0]),
        "ndisc6 resolves to the owner"
    );
    assert_eq!(arping_macs(&topology, "10.0.0.101", 1), vec![macs[1]]);
    assert_eq!(ndisc6_mac(&topology, "fd00::101"), Some(macs[1]));

    // Non-announced IPs get no reply from anyone.
    assert_eq!(arping_macs(&topology, "10.0.0.102", 2), vec![]);
    assert_eq!(ndisc6_mac(&topology, "fd00::102"), None);
}

#[test]
fn takeover_switches_the_client_neighbour_entry() {
    if skip() {
        return;
    }
    let (topology, macs) = topology("ilb2b", &["n1", "n2"]);
    let first = announce(
        &topology,
        "n1",
        &["--interface", "eth0", "--ip", VIP4, "--ip", VIP6],
        "eth0",
    );
    // The client's kernel resolves the VIP (the echo itself gets no answer: no node has the IP).
    for ip in [VIP4, VIP6] {
        let mut ping = topology.command("c", "ping");
        ping.args(["-c", "1", "-W", "1", ip]);
        let _ = output(ping);
        assert_eq!(
            neighbour(&topology, ip),
            Some(macs[0]),
            "client learned the first owner for {ip}"
        );
    }

    let mut capture = topology.command("c", "tcpdump");
    // --immediate-mode: without it libpcap hands packets over in blocks (up to its 1 s buffer
    // timeout), so a capture read right after the switch can still be empty.
    capture.args([
        "--immediate-mode",
        "-l",
        "-n",
        "-e",
        "-i",
        "eth0",
        "arp or (icmp6 and ip6[40] = 136)",
    ]);
    let capture = Background::spawn(capture);
    capture.wait_for("listening on", Duration::from_secs(10));

    drop(first); // the owner dies (SIGKILL: no goodbye)
    let start = Instant::now();
    let _second = announce(
        &topology,
        "n2",
        &["--interface", "eth0", "--ip", VIP4, "--ip", VIP6],
        "eth0",
    );
    let mut switched = Vec::new();
    for ip in [VIP4, VIP6] {
        while neighbour(&topology, ip) != Some(macs[1]) && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(
            neighbour(&topology, ip),
            Some(macs[1]),
            "client switched {ip} to the new owner"
        );
        switched.push((ip, start.elapsed()));
    }
    eprintln!("neighbour entries switched (since the new announcer was spawned): {switched:?}");
    // The frames have reached the client (its neighbour table switched); give tcpdump a bounded
    // time to print them.
    let new_mac = macs[1].to_string();
    let garp_request = format!("Request who-has {VIP4} (ff:ff:ff:ff:ff:ff) tell {VIP4}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = capture.lines();
    while Instant::now() < deadline
        && !(lines.iter().any(|l| l.contains(&garp_request))
            && lines.iter().any(|l| l.contains(&format!("tgt is {VIP6}"))))
    {
        std::thread::sleep(Duration::from_millis(20));
        lines = capture.lines();
    }
    assert!(
        lines.iter().any(|l| l.starts_with_ts_and(&new_mac)
            && l.contains(&format!(
                "Request who-has {VIP4} (ff:ff:ff:ff:ff:ff) tell {VIP4}"
            ))),
        "gratuitous ARP request seen: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with_ts_and(&new_mac)
            && l.contains(&format!("Reply {VIP4} is-at {new_mac}"))),
        "gratuitous ARP reply seen: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with_ts_and(&new_mac)
            && l.contains("ff02::1")
            && l.contains(&format!("tgt is {VIP6}"))),
        "unsolicited NA seen: {lines:#?}"
    );
}

trait CaptureLine {
    /// The tcpdump `-e` line was sent from `mac`.
    fn starts_with_ts_and(&self, mac: &str) -> bool;
}

impl CaptureLine for String {
    fn starts_with_ts_and(&self, mac: &str) -> bool {
        self.split_whitespace().nth(1) == Some(mac)
    }
}

#[test]
fn interface_limit_and_exclusion_are_honoured() {
    if skip() {
        return;
    }
    let (mut topology, macs) = topology("ilb2c", &["n1"]);
    let limited = topology.connect("n1", "eth1").unwrap();
    let excluded = topology.connect("n1", "veth1").unwrap();
    assert_ne!(limited, macs[0]);
    let mut capture = topology.command("c", "tcpdump");
    capture.args(["--immediate-mode", "-l", "-n", "-e", "-i", "eth0", "arp"]);
    let capture = Background::spawn(capture);
    capture.wait_for("listening on", Duration::from_secs(10));

    // Asked for eth1 and veth1; veth1 matches MetalLB's default `^veth.*` exclude; eth0 is not
    // selected.
    let announcer = announce(
        &topology,
        "n1",
        &["--interface", "eth1", "--interface", "veth1", "--ip", VIP4],
        "eth1",
    );
    announcer.wait_for("interface skipped name=veth1", Duration::from_secs(5));
    let replies = arping_macs(&topology, VIP4, 3);
    assert_eq!(
        replies,
        vec![limited; 3],
        "only the selected, non-excluded interface answers"
    );
    let lines = capture.lines();
    for (name, mac) in [("eth0", macs[0]), ("veth1", excluded)] {
        let mac = mac.to_string();
        assert!(
            !lines.iter().any(|l| l.starts_with_ts_and(&mac)),
            "{name} sent nothing: {lines:#?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with_ts_and(&limited.to_string())),
        "eth1 sent its gratuitous ARP"
    );
}

#[test]
fn malformed_frames_do_not_disturb_the_responder() {
    if skip() {
        return;
    }
    let (topology, macs) = topology("ilb2d", &["n1"]);
    let mut announcer = announce(
        &topology,
        "n1",
        &["--interface", "eth0", "--ip", VIP4, "--ip", VIP6],
        "eth0",
    );
    for vip in [VIP4, VIP6] {
        let mut inject = topology.command("c", env!("CARGO_BIN_EXE_l2-probe"));
        inject.args(["inject", "eth0", vip, "4000"]);
        let text = output(inject);
        assert!(text.contains("injected=4000"), "{text}");
    }
    assert!(
        announcer.alive(),
        "announcer survived: {:#?}",
        announcer.lines()
    );
    assert_eq!(arping_macs(&topology, VIP4, 3), vec![macs[0]; 3]);
    assert_eq!(ndisc6_mac(&topology, VIP6), Some(macs[0]));
    // Broken frames addressed to the responder were seen and counted as drops (-v prints them).
    announcer.wait_for("dropped interface=eth0", Duration::from_secs(5));
}

#[test]
fn a_new_interface_is_picked_up_and_announced() {
    if skip() {
        return;
    }
    let (mut topology, macs) = topology("ilb2e", &["n1"]);
    let announcer = announce(
        &topology,
        "n1",
        &["--interface", "eth0", "--interface", "eth1", "--ip", VIP4],
        "eth0",
    );
    let mut capture = topology.command("c", "tcpdump");
    capture.args(["--immediate-mode", "-l", "-n", "-e", "-i", "eth0", "arp"]);
    let capture = Background::spawn(capture);
    capture.wait_for("listening on", Duration::from_secs(10));

    // eth1 appears while the announcer runs: netlink tells it, it opens a responder and sends
    // the takeover burst on the new interface.
    let start = Instant::now();
    let added = topology.connect("n1", "eth1").unwrap();
    announcer.wait_for("interface up name=eth1", Duration::from_secs(10));
    eprintln!(
        "eth1 picked up {:?} after it was created and set up",
        start.elapsed()
    );
    let added_text = added.to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !capture
        .lines()
        .iter()
        .any(|l| l.starts_with_ts_and(&added_text) && l.contains(&format!("Reply {VIP4} is-at")))
    {
        assert!(
            Instant::now() < deadline,
            "gratuitous ARP on the new interface: {:#?}",
            capture.lines()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut replies = arping_macs(&topology, VIP4, 1);
    replies.sort();
    let mut want = vec![macs[0], added];
    want.sort();
    assert_eq!(replies, want, "both selected interfaces answer");
}

#[test]
fn split_brain_is_reported_as_duplicate_answers() {
    if skip() {
        return;
    }
    let (topology, macs) = topology("ilb2f", &["n1", "n2"]);
    let first = announce(
        &topology,
        "n1",
        &["--interface", "eth0", "--ip", VIP4, "--ip", VIP6],
        "eth0",
    );
    let second = announce(
        &topology,
        "n2",
        &["--interface", "eth0", "--ip", VIP4, "--ip", VIP6],
        "eth0",
    );
    // Each side sees the other's gratuitous ARP / unsolicited NA for the same IPs.
    for ip in [VIP4, VIP6] {
        first.wait_for(
            &format!("duplicate answer ip={ip} mac={}", macs[1]),
            Duration::from_secs(10),
        );
        second.wait_for(
            &format!("duplicate answer ip={ip} mac={}", macs[0]),
            Duration::from_secs(10),
        );
    }
}
