//! Interop of ironlb's BGP speaker (`bgp-speaker`, the `ironlb bgp-announce` tool) with FRR
//! (bgpd, bfdd), BIRD 2 and GoBGP from Debian, in network namespaces this test creates
//! (prefix `ilbb`). Needs root and the daemons; skips with a printed reason otherwise.
//!
//! Topology of every test: namespace `<name>a` (ironlb, 10.77.0.1, fd77::1) — veth —
//! namespace `<name>b` (the router, 10.77.0.2, fd77::2). Tests run one at a time (a global
//! lock): they are short, but each starts real daemons.
//!
//! `IRONLB_CAPTURE_FIXTURES=1` makes `capture_fixtures` record what each daemon sends into
//! `testdata/bgp/` (see the README there).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

const SPEAKER: &str = env!("CARGO_BIN_EXE_bgp-speaker");
const IRONLB_V4: &str = "10.77.0.1";
const ROUTER_V4: &str = "10.77.0.2";
const IRONLB_V6: &str = "fd77::1";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn skip_reason() -> Option<String> {
    // SAFETY-free root check: /proc/self/status Uid line.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return Some("not root".to_string());
    }
    for tool in [
        "/usr/sbin/ip",
        "/usr/lib/frr/bgpd",
        "/usr/lib/frr/zebra",
        "/usr/bin/vtysh",
    ] {
        if !Path::new(tool).exists() && !Path::new(&tool.replace("/usr/sbin", "/sbin")).exists() {
            return Some(format!("{tool} missing"));
        }
    }
    None
}

macro_rules! require_root {
    () => {
        if let Some(reason) = skip_reason() {
            eprintln!("skipping: {reason}");
            return;
        }
    };
}

fn run(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Two namespaces joined by a veth; everything started inside is killed on drop.
struct Topology {
    name: String,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Topology {
    fn new(name: &str) -> Self {
        assert!(name.len() <= 10, "namespace names are short");
        let name = format!("ilbb{name}");
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let topology = Self {
            name: name.clone(),
            dir: dir.clone(),
            children: Vec::new(),
        };
        topology.cleanup();
        std::fs::create_dir_all(&dir).unwrap();
        run(&["chown", "frr:frr", dir.to_str().unwrap()]);
        let (a, b) = (topology.ns("a"), topology.ns("b"));
        run(&["ip", "netns", "add", &a]);
        run(&["ip", "netns", "add", &b]);
        let (veth_a, veth_b) = (format!("{name}a"), format!("{name}b"));
        run(&[
            "ip", "link", "add", &veth_a, "netns", &a, "type", "veth", "peer", "name", &veth_b,
            "netns", &b,
        ]);
        for (ns, veth, v4, v6) in [
            (&a, &veth_a, IRONLB_V4, IRONLB_V6),
            (&b, &veth_b, ROUTER_V4, "fd77::2"),
        ] {
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                veth,
            ]);
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                veth,
                "nodad",
            ]);
            run(&["ip", "-n", ns, "link", "set", veth, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let frr_run = format!("/var/run/frr/{b}");
        std::fs::create_dir_all(&frr_run).unwrap();
        run(&["chown", "frr:frr", &frr_run]);
        topology
    }

    fn ns(&self, side: &str) -> String {
        format!("{}{side}", self.name)
    }

    fn cleanup(&self) {
        for side in ["a", "b"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(side)])
                .output();
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/frr/{}", self.ns("b")));
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn spawn(&mut self, ns: &str, args: &[&str]) -> usize {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    fn write(&self, file: &str, text: &str) -> String {
        let path = self.dir.join(file);
        std::fs::write(&path, text).unwrap();
        run(&["chown", "frr:frr", path.to_str().unwrap()]);
        path.to_string_lossy().into_owned()
    }

    /// Starts zebra, bgpd (and bfdd) of FRR in namespace b with `config`.
    fn start_frr(&mut self, config: &str, bfd: bool) -> Frr {
        let ns = self.ns("b");
        let path = self.write("frr.conf", config);
        let pid_dir = format!("/var/run/frr/{ns}");
        let mut daemons = vec!["zebra"];
        if bfd {
            daemons.push("bfdd");
        }
        daemons.push("bgpd");
        let mut bgpd = 0;
        for daemon in daemons {
            let binary = format!("/usr/lib/frr/{daemon}");
            let pid = format!("{pid_dir}/{daemon}.pid");
            let index = self.spawn(&ns, &[&binary, "-N", &ns, "-f", &path, "-i", &pid]);
            if daemon == "bgpd" {
                bgpd = index;
            }
            // zebra must be listening before the others connect.
            std::thread::sleep(Duration::from_millis(300));
        }
        let frr = Frr { ns };
        wait_until("FRR bgpd up", Duration::from_secs(10), || {
            frr.try_json("show bgp summary json").is_some()
        });
        let _ = bgpd;
        frr
    }

    fn pid_of(&self, index: usize) -> u32 {
        // `ip netns exec` execs the daemon: the child's pid is the daemon's.
        self.children[index].id()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .output();
            let _ = child.kill();
            let _ = child.wait();
        }
        self.cleanup();
    }
}

struct Frr {
    ns: String,
}

impl Frr {
    fn try_json(&self, command: &str) -> Option<Value> {
        let output = Command::new("vtysh")
            .args(["-N", &self.ns, "-c", command])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        serde_json::from_slice(&output.stdout).ok()
    }

    fn json(&self, command: &str) -> Value {
        self.try_json(command).unwrap_or(Value::Null)
    }

    /// The session state FRR reports; retries until vtysh answers.
    fn peer_state(&self) -> String {
        for _ in 0..20 {
            let summary = self.json("show bgp ipv4 unicast summary json");
            if let Some(state) = summary["peers"][IRONLB_V4]["state"].as_str() {
                return state.to_string();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("vtysh gave no peer state");
    }

    fn received(&self, family: &str) -> u64 {
        let summary = self.json(&format!("show bgp {family} unicast summary json"));
        summary["peers"][IRONLB_V4]["pfxRcd"].as_u64().unwrap_or(0)
    }

    fn route(&self, family: &str, prefix: &str) -> Value {
        self.json(&format!("show bgp {family} unicast {prefix} json"))
    }
}

fn frr_config(router_as: u32, ironlb_as: u32, neighbor: &str, global: &str) -> String {
    format!(
        "frr defaults traditional\nhostname router\nlog file /dev/null\n!\nrouter bgp {router_as}\n bgp router-id {ROUTER_V4}\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n{global} neighbor {IRONLB_V4} remote-as {ironlb_as}\n{neighbor} address-family ipv4 unicast\n  neighbor {IRONLB_V4} activate\n exit-address-family\n address-family ipv6 unicast\n  neighbor {IRONLB_V4} activate\n exit-address-family\n!\n"
    )
}

/// The bgp-speaker process in namespace a, with its `-v` output collected.
struct Speaker {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Speaker {
    fn start(topology: &Topology, args: &[&str]) -> Self {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &topology.ns("a"),
                SPEAKER,
                "-v",
                "--retry-min-ms",
                "200",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    fn saw(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(needle))
    }

    fn wait_for(&self, needle: &str, timeout: Duration) {
        wait_until(
            &format!(
                "speaker output {needle:?} (got {:?})",
                self.lines.lock().unwrap()
            ),
            timeout,
            || self.saw(needle),
        );
    }

    fn signal(&self, signal: &str) {
        run(&["kill", signal, &self.child.id().to_string()]);
    }

    fn wait_exit(&mut self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("speaker did not exit");
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `count` /32 and `count` /128 host prefixes to a file for `--prefix-file`.
fn prefix_file(topology: &Topology, count: u32) -> String {
    let mut text = String::new();
    for i in 0..count {
        text.push_str(&format!(
            "10.{}.{}.{}/32\n",
            100 + i / 65536,
            (i / 256) % 256,
            i % 256
        ));
        text.push_str(&format!("2001:db8::{:x}:{:x}/128\n", i / 65536, i % 65536));
    }
    topology.write("prefixes.txt", &text)
}

fn community_strings(path: &Value) -> (String, String) {
    (
        // Both the list ("noExport") and the string ("no-export") forms.
        path["community"].to_string(),
        path["largeCommunity"]["string"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

/// eBGP with 4-octet ASNs, 1,000 IPv4 and 1,000 IPv6 prefixes with communities; planned stop
/// sends GRACEFUL_SHUTDOWN, then withdraws everything.
#[test]
fn frr_ebgp_four_octet_prefixes_attributes_planned_stop() {
    require_root!();
    let _serial = serial();
    let mut topology = Topology::new("e4");
    let frr = topology.start_frr(&frr_config(4_200_000_002, 4_200_000_001, "", ""), false);
    let prefixes = prefix_file(&topology, 1000);
    let mut speaker = Speaker::start(
        &topology,
        &[
            "--peer",
            ROUTER_V4,
            "--peer-asn",
            "4200000002",
            "--asn",
            "4200000001",
            "--hold-time",
            "9",
            "--prefix-file",
            &prefixes,
            "--community",
            "65000:1",
            "--community",
            "large:4200000001:7:8",
            "--community",
            "no-export",
            "--shutdown-wait-ms",
            "3000",
        ],
    );
    speaker.wait_for("-> Established", Duration::from_secs(20));
    wait_until(
        "1000 + 1000 prefixes at FRR",
        Duration::from_secs(20),
        || frr.received("ipv4") == 1000 && frr.received("ipv6") == 1000,
    );
    let v4 = frr.route("ipv4", "10.100.3.7/32");
    let path = &v4["paths"][0];
    assert_eq!(path["nexthops"][0]["ip"], IRONLB_V4, "{v4}");
    assert_eq!(path["aspath"]["string"], "4200000001", "{v4}");
    let (communities, large) = community_strings(path);
    assert!(
        communities.contains("65000:1") && communities.contains("noExport"),
        "{v4}"
    );
    assert_eq!(large, "4200000001:7:8", "{v4}");
    let v6 = frr.route("ipv6", "2001:db8::307/128");
    let v6_text = v6.to_string();
    assert!(v6_text.contains(IRONLB_V6), "global next hop: {v6}");
    assert!(
        community_strings(&v6["paths"][0]).0.contains("65000:1"),
        "{v6}"
    );

    // Planned stop: GRACEFUL_SHUTDOWN first, then the withdrawal.
    speaker.signal("-TERM");
    wait_until(
        "graceful-shutdown community",
        Duration::from_secs(3),
        || {
            let route = frr.route("ipv4", "10.100.3.7/32");
            let (communities, _) = community_strings(&route["paths"][0]);
            communities.contains("gracefulShutdown") || communities.contains("graceful-shutdown")
        },
    );
    assert_eq!(
        frr.received("ipv4"),
        1000,
        "routes still there during the shutdown period"
    );
    wait_until("withdrawal", Duration::from_secs(10), || {
        frr.received("ipv4") == 0 && frr.received("ipv6") == 0
    });
    speaker.wait_exit(Duration::from_secs(5));
    assert!(
        speaker.saw("notification sent cease (6/2)"),
        "{:?}",
        speaker.lines.lock().unwrap()
    );
}

/// iBGP with 2-octet ASNs: LOCAL_PREF arrives; a withdrawal by route change is seen.
#[test]
fn frr_ibgp_two_octet_local_pref() {
    require_root!();
    let _serial = serial();
    let mut topology = Topology::new("i2");
    let frr = topology.start_frr(&frr_config(64512, 64512, "", ""), false);
    let _speaker = Speaker::start(
        &topology,
        &[
            "--peer",
            ROUTER_V4,
            "--peer-asn",
            "internal",
            "--asn",
            "64512",
            "--local-pref",
            "250",
            "--prefix",
            "192.0.2.10/32",
            "--prefix",
            "2001:db8:10::/64",
        ],
    );
    wait_until("routes at FRR", Duration::from_secs(20), || {
        frr.received("ipv4") == 1 && frr.received("ipv6") == 1
    });
    let route = frr.route("ipv4", "192.0.2.10/32");
    assert_eq!(route["paths"][0]["locPrf"], 250, "{route}");
    assert_eq!(route["paths"][0]["aspath"]["string"], "Local", "{route}");
    let route = frr.route("ipv6", "2001:db8:10::/64");
    assert_eq!(route["paths"][0]["locPrf"], 250, "{route}");
}

/// TCP MD5 (RFC 2385): the right password brings the session up, a wrong one never does.
#[test]
fn frr_md5_password() {
    require_root!();
    let _serial = serial();
    for (password, works) in [("s3cret", true), ("wrong", false)] {
        let mut topology = Topology::new("md");
        let neighbor = format!(" neighbor {IRONLB_V4} password s3cret\n");
        let frr = topology.start_frr(&frr_config(64512, 64513, &neighbor, ""), false);
        let speaker = Speaker::start(
            &topology,
            &[
                "--peer",
                ROUTER_V4,
                "--peer-asn",
                "64512",
                "--asn",
                "64513",
                "--md5",
                password,
                "--prefix",
                "192.0.2.1/32",
            ],
        );
        if works {
            speaker.wait_for("-> Established", Duration::from_secs(20));
            wait_until("route", Duration::from_secs(10), || {
                frr.received("ipv4") == 1
            });
        } else {
            std::thread::sleep(Duration::from_secs(4));
            assert!(
                !speaker.saw("-> OpenSent"),
                "{:?}",
                speaker.lines.lock().unwrap()
            );
            assert_ne!(frr.peer_state(), "Established");
        }
    }
}

/// A frozen peer is detected by the hold timer, in both directions.
#[test]
fn hold_timer_expiry_both_ways() {
    require_root!();
    let _serial = serial();
    let mut topology = Topology::new("ho");
    let neighbor =
        format!(" neighbor {IRONLB_V4} timers 1 3\n neighbor {IRONLB_V4} timers connect 1\n");
    let frr = topology.start_frr(&frr_config(64512, 64513, &neighbor, ""), false);
    let bgpd = topology.pid_of(topology.children.len() - 1).to_string();
    let speaker = Speaker::start(
        &topology,
        &[
            "--peer",
            ROUTER_V4,
            "--peer-asn",
            "64512",
            "--asn",
            "64513",
            "--hold-time",
            "3",
            "--prefix",
            "192.0.2.1/32",
        ],
    );
    speaker.wait_for("-> Established", Duration::from_secs(20));
    // FRR frozen: ironlb's hold timer fires (MetalLB's native mode never notices).
    run(&["kill", "-STOP", &bgpd]);
    let frozen = Instant::now();
    speaker.wait_for(
        "notification sent hold timer expired",
        Duration::from_secs(8),
    );
    let detected = frozen.elapsed();
    run(&["kill", "-CONT", &bgpd]);
    eprintln!("ironlb detected frozen FRR after {detected:?}");
    assert!(detected >= Duration::from_secs(2), "{detected:?}");
    // Back up, then ironlb frozen: FRR's hold timer fires.
    wait_until("re-established", Duration::from_secs(30), || {
        frr.peer_state() == "Established" && frr.received("ipv4") == 1
    });
    speaker.signal("-STOP");
    let frozen = Instant::now();
    wait_until(
        "FRR drops the frozen speaker",
        Duration::from_secs(8),
        || frr.peer_state() != "Established",
    );
    let dropped = frozen.elapsed();
    eprintln!("FRR dropped the frozen speaker after {dropped:?}");
    // Nothing closed the connection: only FRR's 3 s hold timer can have ended it.
    assert!(dropped >= Duration::from_secs(2), "{dropped:?}");
    speaker.signal("-CONT");
    // Thawed, ironlb comes back.
    wait_until("re-established after thaw", Duration::from_secs(20), || {
        frr.peer_state() == "Established"
    });
}

/// BFD with FRR: a frozen ironlb (no FIN, no packets) loses its routes at FRR within
/// 3 × 300 ms + 100 ms; then kill -9 is shown for reference.
#[test]
fn frr_bfd_removes_routes_of_a_dead_speaker() {
    require_root!();
    let _serial = serial();
    let mut topology = Topology::new("bf");
    // FRR's BFD defaults are 300 ms × 3, as ironlb's --bfd.
    let neighbor = format!(" neighbor {IRONLB_V4} bfd\n");
    let config = frr_config(64512, 64513, &neighbor, "");
    let frr = topology.start_frr(&config, true);
    let mut speaker = Speaker::start(
        &topology,
        &[
            "--peer",
            ROUTER_V4,
            "--peer-asn",
            "64512",
            "--asn",
            "64513",
            "--bfd",
            "--prefix",
            "192.0.2.1/32",
        ],
    );
    speaker.wait_for("-> Established", Duration::from_secs(20));
    speaker.wait_for("bfd state Up", Duration::from_secs(20));
    wait_until("route", Duration::from_secs(10), || {
        frr.received("ipv4") == 1
    });
    let peers = frr.json("show bfd peers json");
    assert!(peers.to_string().contains("\"status\":\"up\""), "{peers}");
    // Freeze: only BFD can notice within a second.
    speaker.signal("-STOP");
    let frozen = Instant::now();
    let mut polls = Vec::new();
    while frr.received("ipv4") == 1 {
        polls.push(frozen.elapsed());
        assert!(
            frozen.elapsed() < Duration::from_secs(5),
            "FRR kept the route of a frozen speaker"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let removed = frozen.elapsed();
    // The last poll that still saw the route bounds the observation error.
    let poll_gap = removed - polls.last().copied().unwrap_or_default();
    eprintln!("FRR removed the route {removed:?} after the freeze (poll gap {poll_gap:?})");
    assert!(
        removed <= Duration::from_millis(1000) + poll_gap,
        "{removed:?}"
    );
    speaker.signal("-CONT");
    speaker.signal("-KILL");
    speaker.wait_exit(Duration::from_secs(5));
}

/// Graceful restart: ironlb killed and restarted; FRR keeps the routes throughout and ends
/// with them fresh after End-of-RIB.
#[test]
fn frr_graceful_restart_keeps_routes() {
    require_root!();
    let _serial = serial();
    let mut topology = Topology::new("gr");
    let neighbor =
        format!(" neighbor {IRONLB_V4} graceful-restart\n neighbor {IRONLB_V4} timers connect 1\n");
    let frr = topology.start_frr(
        &frr_config(64512, 64513, &neighbor, " bgp graceful-restart\n"),
        false,
    );
    let args = [
        "--peer",
        ROUTER_V4,
        "--peer-asn",
        "64512",
        "--asn",
        "64513",
        "--graceful-restart",
        "60",
        "--prefix",
        "192.0.2.1/32",
        "--prefix",
        "2001:db8::1/128",
    ];
    let mut first = Speaker::start(&topology, &args);
    first.wait_for("-> Established", Duration::from_secs(20));
    wait_until("routes", Duration::from_secs(10), || {
        frr.received("ipv4") == 1 && frr.received("ipv6") == 1
    });
    first.signal("-KILL");
    first.wait_exit(Duration::from_secs(5));
    let mut saw_stale = false;
    // The speaker is dead for a while: FRR must hold the routes, marked stale.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        let route = frr.route("ipv4", "192.0.2.1/32");
        assert!(
            route["paths"][0].is_object(),
            "route lost while ironlb was down: {route}"
        );
        saw_stale |= route["paths"][0]["stale"].as_bool().unwrap_or(false);
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = Speaker::start(&topology, &args);
    // Throughout the restart the route stays; it is stale until the new End-of-RIB.
    loop {
        let route = frr.route("ipv4", "192.0.2.1/32");
        assert!(
            route["paths"][0].is_object(),
            "route lost during restart after {:?}: {route}",
            start.elapsed()
        );
        let stale = route["paths"][0]["stale"].as_bool().unwrap_or(false);
        saw_stale |= stale;
        if second.saw("-> Established") && !stale && frr.peer_state() == "Established" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never fresh again: {route}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        saw_stale,
        "FRR never marked the routes stale: graceful restart not in effect"
    );
    assert_eq!(frr.received("ipv6"), 1);
}

// ---- BIRD 2 ----

fn bird_available() -> bool {
    Path::new("/usr/sbin/bird").exists()
}

/// BIRD 2: eBGP (2-octet) and iBGP sessions, IPv4 and IPv6 prefixes with communities and
/// local-pref, then withdrawal.
#[test]
fn bird_ebgp_and_ibgp() {
    require_root!();
    if !bird_available() {
        eprintln!("skipping: bird missing");
        return;
    }
    let _serial = serial();
    for (router_as, ironlb_as, internal) in [(64512u32, 64513u32, false), (64512, 64512, true)] {
        let mut topology = Topology::new(if internal { "bi" } else { "be" });
        let config = format!(
            "router id {ROUTER_V4};\nprotocol device {{}}\nipv4 table t4;\nipv6 table t6;\nprotocol bgp ironlb {{\n local {ROUTER_V4} as {router_as};\n neighbor {IRONLB_V4} as {ironlb_as};\n passive on;\n ipv4 {{ table t4; import all; export none; }};\n ipv6 {{ table t6; import all; export none; }};\n}}\n"
        );
        let path = topology.write("bird.conf", &config);
        let socket = topology.dir.join("bird.ctl").to_string_lossy().into_owned();
        topology.spawn(
            &topology.ns("b"),
            &["/usr/sbin/bird", "-f", "-c", &path, "-s", &socket],
        );
        let birdc = |command: &str| -> String {
            let output = Command::new("birdc")
                .args(["-s", &socket, command])
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        wait_until("bird up", Duration::from_secs(10), || {
            birdc("show status").contains("Daemon is up")
        });
        let prefixes = prefix_file(&topology, 1000);
        let mut args = vec![
            "--peer",
            ROUTER_V4,
            "--peer-asn",
            if internal { "internal" } else { "64512" },
            "--asn",
        ];
        let ironlb_as_text = ironlb_as.to_string();
        args.push(&ironlb_as_text);
        args.extend([
            "--prefix-file",
            &prefixes,
            "--community",
            "65000:7",
            "--community",
            "large:64513:1:2",
            "--local-pref",
            "222",
            "--shutdown-wait-ms",
            "200",
        ]);
        let mut speaker = Speaker::start(&topology, &args);
        speaker.wait_for("-> Established", Duration::from_secs(20));
        wait_until(
            "1000 + 1000 routes in BIRD",
            Duration::from_secs(20),
            || {
                birdc("show route count table t4").contains("1000 of 1000 routes")
                    && birdc("show route count table t6").contains("1000 of 1000 routes")
            },
        );
        let route = birdc("show route 10.100.0.5/32 table t4 all");
        assert!(
            route.contains(&format!("BGP.next_hop: {IRONLB_V4}")),
            "{route}"
        );
        assert!(route.contains("BGP.community: (65000,7)"), "{route}");
        assert!(
            route.contains("BGP.large_community: (64513, 1, 2)"),
            "{route}"
        );
        if internal {
            assert!(route.contains("BGP.local_pref: 222"), "{route}");
        } else {
            // BIRD gives eBGP routes its own default (100); ours (222) must not arrive.
            assert!(
                !route.contains("BGP.local_pref: 222"),
                "no LOCAL_PREF over eBGP: {route}"
            );
            assert!(route.contains("BGP.as_path: 64513"), "{route}");
        }
        let route6 = birdc("show route 2001:db8::5/128 table t6 all");
        assert!(route6.contains(IRONLB_V6), "{route6}");
        speaker.signal("-TERM");
        wait_until("withdrawn from BIRD", Duration::from_secs(10), || {
            birdc("show route count table t4").contains("0 of 0 routes")
        });
        speaker.wait_exit(Duration::from_secs(5));
    }
}

// ---- GoBGP ----

/// GoBGP: eBGP with 2-octet and 4-octet ASNs, IPv4 and IPv6 prefixes with communities.
#[test]
fn gobgp_ebgp() {
    require_root!();
    if !Path::new("/usr/bin/gobgpd").exists() {
        eprintln!("skipping: gobgpd missing");
        return;
    }
    let _serial = serial();
    for (router_as, ironlb_as) in [(64512u32, 64513u32), (4_200_000_002, 4_200_000_001)] {
        let mut topology = Topology::new("go");
        let config = format!(
            "[global.config]\n  as = {router_as}\n  router-id = \"{ROUTER_V4}\"\n  port = 179\n  local-address-list = [\"{ROUTER_V4}\"]\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{IRONLB_V4}\"\n    peer-as = {ironlb_as}\n  [neighbors.transport.config]\n    passive-mode = true\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"\n"
        );
        let path = topology.write("gobgp.toml", &config);
        let ns = topology.ns("b");
        topology.spawn(
            &ns,
            &[
                "/usr/bin/gobgpd",
                "-f",
                &path,
                "--api-hosts",
                "127.0.0.1:50051",
            ],
        );
        let gobgp = |args: &[&str]| -> String {
            let output = Command::new("ip")
                .args(["netns", "exec", &ns, "gobgp", "-p", "50051"])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        wait_until("gobgpd up", Duration::from_secs(10), || {
            gobgp(&["global"]).contains("AS")
        });
        let prefixes = prefix_file(&topology, 1000);
        let ironlb_as_text = ironlb_as.to_string();
        let router_as_text = router_as.to_string();
        let mut speaker = Speaker::start(
            &topology,
            &[
                "--peer",
                ROUTER_V4,
                "--peer-asn",
                &router_as_text,
                "--asn",
                &ironlb_as_text,
                "--prefix-file",
                &prefixes,
                "--community",
                "65000:9",
                "--community",
                "large:1:2:3",
                "--shutdown-wait-ms",
                "200",
            ],
        );
        speaker.wait_for("-> Established", Duration::from_secs(20));
        let count = |family: &str| -> usize {
            let text = gobgp(&["global", "rib", "-a", family, "-j"]);
            serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.as_object().map(|o| o.len()))
                .unwrap_or(0)
        };
        wait_until(
            "1000 + 1000 routes in GoBGP",
            Duration::from_secs(20),
            || count("ipv4") == 1000 && count("ipv6") == 1000,
        );
        let route = gobgp(&["global", "rib", "-a", "ipv4", "10.100.0.5/32", "-j"]);
        assert!(
            route.contains(&format!("\"nexthop\":\"{IRONLB_V4}\"")),
            "{route}"
        );
        assert!(route.contains(&format!("{ironlb_as}")), "as path: {route}");
        // GoBGP prints communities as 32-bit numbers: 65000:9 = 4259840009.
        assert!(route.contains("4259840009"), "{route}");
        assert!(
            route.contains("{\"ASN\":1,\"LocalData1\":2,\"LocalData2\":3}"),
            "large community: {route}"
        );
        let route6 = gobgp(&["global", "rib", "-a", "ipv6", "2001:db8::5/128", "-j"]);
        assert!(route6.contains(IRONLB_V6), "{route6}");
        speaker.signal("-TERM");
        wait_until("withdrawn from GoBGP", Duration::from_secs(10), || {
            count("ipv4") == 0 && count("ipv6") == 0
        });
        speaker.wait_exit(Duration::from_secs(5));
    }
}

/// Records the TCP stream each daemon sends to ironlb into `testdata/bgp/<daemon>.bin`
/// (OPEN, KEEPALIVE, UPDATEs with communities, End-of-RIB). Runs only with
/// `IRONLB_CAPTURE_FIXTURES=1`; see testdata/bgp/README.md.
#[test]
fn capture_fixtures() {
    if std::env::var("IRONLB_CAPTURE_FIXTURES").is_err() {
        return;
    }
    require_root!();
    let _serial = serial();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/bgp");
    std::fs::create_dir_all(&out).unwrap();
    for daemon in ["frr", "bird", "gobgp"] {
        let mut topology = Topology::new("cap");
        let pcap = topology.dir.join("cap.pcap").to_string_lossy().into_owned();
        let ns_a = topology.ns("a");
        let dump = topology.spawn(
            &ns_a,
            &[
                "tcpdump",
                "-i",
                &format!("{}a", topology.name),
                "-w",
                &pcap,
                "-U",
                "tcp port 179",
            ],
        );
        std::thread::sleep(Duration::from_millis(500));
        match daemon {
            "frr" => {
                let neighbor = " neighbor 10.77.0.1 timers 3 9\n";
                let global = " no bgp network import-check\n";
                let mut config = frr_config(64512, 64513, neighbor, global);
                config = config.replace(
                    " address-family ipv4 unicast\n",
                    " address-family ipv4 unicast\n  network 203.0.113.0/24\n  network 198.51.100.128/25\n  neighbor 10.77.0.1 route-map tag out\n",
                );
                config = config.replace(
                    " address-family ipv6 unicast\n",
                    " address-family ipv6 unicast\n  network 2001:db8:ff::/48\n",
                );
                config.push_str("route-map tag permit 10\n set community 64512:1 no-export\n set large-community 64512:2:3\n!\n");
                let _frr = topology.start_frr(&config, false);
            }
            "bird" => {
                let config = format!(
                    "router id {ROUTER_V4};\nprotocol device {{}}\nprotocol static s4 {{ ipv4; route 203.0.113.0/24 blackhole {{ bgp_community.add((64512,1)); bgp_large_community.add((64512,2,3)); }}; }}\nprotocol static s6 {{ ipv6; route 2001:db8:ff::/48 blackhole; }}\nprotocol bgp ironlb {{\n local {ROUTER_V4} as 64512;\n neighbor {IRONLB_V4} as 64513;\n passive on;\n ipv4 {{ import none; export all; next hop self; }};\n ipv6 {{ import none; export all; next hop self; }};\n}}\n"
                );
                let path = topology.write("bird.conf", &config);
                let socket = topology.dir.join("bird.ctl").to_string_lossy().into_owned();
                topology.spawn(
                    &topology.ns("b"),
                    &["/usr/sbin/bird", "-f", "-c", &path, "-s", &socket],
                );
            }
            _ => {
                let config = format!(
                    "[global.config]\n  as = 64512\n  router-id = \"{ROUTER_V4}\"\n  local-address-list = [\"{ROUTER_V4}\"]\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{IRONLB_V4}\"\n    peer-as = 64513\n  [neighbors.transport.config]\n    passive-mode = true\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"\n"
                );
                let path = topology.write("gobgp.toml", &config);
                let ns = topology.ns("b");
                topology.spawn(
                    &ns,
                    &[
                        "/usr/bin/gobgpd",
                        "-f",
                        &path,
                        "--api-hosts",
                        "127.0.0.1:50051",
                    ],
                );
                std::thread::sleep(Duration::from_secs(2));
                for args in [
                    vec![
                        "global",
                        "rib",
                        "add",
                        "203.0.113.0/24",
                        "community",
                        "64512:1",
                        "large-community",
                        "64512:2:3",
                        "-a",
                        "ipv4",
                    ],
                    vec!["global", "rib", "add", "2001:db8:ff::/48", "-a", "ipv6"],
                ] {
                    let _ = Command::new("ip")
                        .args(["netns", "exec", &ns, "gobgp", "-p", "50051"])
                        .args(&args)
                        .output();
                }
            }
        }
        let speaker = Speaker::start(
            &topology,
            &[
                "--peer",
                ROUTER_V4,
                "--peer-asn",
                "64512",
                "--asn",
                "64513",
                "--prefix",
                "192.0.2.1/32",
            ],
        );
        speaker.wait_for("-> Established", Duration::from_secs(20));
        std::thread::sleep(Duration::from_secs(4));
        run(&["kill", "-INT", &topology.pid_of(dump).to_string()]);
        std::thread::sleep(Duration::from_millis(500));
        let stream = tcp_stream_from(Path::new(&pcap), ROUTER_V4);
        assert!(!stream.is_empty(), "{daemon}: nothing captured");
        std::fs::write(out.join(format!("{daemon}.bin")), &stream).unwrap();
        drop(speaker);
    }
}

/// The payload bytes `source` sent over TCP, in sequence order, from a pcap (Ethernet, IPv4).
fn tcp_stream_from(pcap: &Path, source: &str) -> Vec<u8> {
    let bytes = std::fs::read(pcap).unwrap();
    let source: std::net::Ipv4Addr = source.parse().unwrap();
    let mut segments = std::collections::BTreeMap::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let captured = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &bytes[at + 16..(at + 16 + captured).min(bytes.len())];
        at += 16 + captured;
        if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let header_len = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip[9] != 6 || ip[12..16] != source.octets() || ip.len() < total {
            continue;
        }
        let tcp = &ip[header_len..total];
        let data_offset = usize::from(tcp[12] >> 4) * 4;
        let sequence = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
        let payload = &tcp[data_offset..];
        if !payload.is_empty() {
            segments.insert(sequence, payload.to_vec());
        }
    }
    // Keep only the first connection's contiguous stream.
    let mut stream = Vec::new();
    let mut next = None;
    for (sequence, payload) in segments {
        if next.is_none_or(|n| n == sequence) {
            next = Some(sequence.wrapping_add(payload.len() as u32));
            stream.extend_from_slice(&payload);
        }
    }
    let _ = BTreeSet::<u8>::new();
    stream
}
