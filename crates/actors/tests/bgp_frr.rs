//! The speaker's BGP against FRR, in network namespaces this test creates (prefix `h1`):
//! namespace `h1fa` (the speaker, 10.79.0.1) — veth — namespace `h1fb` (FRR bgpd, 10.79.0.2).
//! Needs root and FRR; skips with a printed reason otherwise.
//!
//! The outer test builds the namespaces and starts FRR, then runs this test binary again inside
//! `h1fa` (`ip netns exec`) for the inner test, which starts the API stand-in on that
//! namespace's loopback and the whole speaker tree in-process: every socket the speaker opens is
//! in `h1fa`. The inner test checks, through `vtysh -N h1fb`, that FRR receives the Service IP
//! with the advertisement's community, that the route is withdrawn when the Service goes, and
//! that a planned shutdown first re-advertises it with GRACEFUL_SHUTDOWN and then withdraws it.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{create, setup};
use ironlb_actors::tree::SpeakerMsg;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const SPEAKER_NS: &str = "h1fa";
const ROUTER_NS: &str = "h1fb";
const SPEAKER_V4: &str = "10.79.0.1";
const ROUTER_V4: &str = "10.79.0.2";
const INNER_ENV: &str = "IRONLB_H1_FRR_INNER";
const WAIT: Duration = Duration::from_secs(30);

fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return Some("not root".into());
    }
    for tool in ["/usr/lib/frr/bgpd", "/usr/lib/frr/zebra", "/usr/bin/vtysh"] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} missing"));
        }
    }
    None
}

fn run(args: &[&str]) {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The namespaces, the veth and FRR; everything removed on drop (also when the test fails).
struct Topology {
    daemons: Vec<Child>,
    dir: std::path::PathBuf,
}

impl Topology {
    fn cleanup() {
        for ns in [SPEAKER_NS, ROUTER_NS] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/frr/{ROUTER_NS}"));
    }

    fn new() -> Self {
        Self::cleanup();
        let dir = std::env::temp_dir().join(format!("h1-frr-{}", std::process::id()));
        let mut topology = Self {
            daemons: Vec::new(),
            dir: dir.clone(),
        };
        run(&["ip", "netns", "add", SPEAKER_NS]);
        run(&["ip", "netns", "add", ROUTER_NS]);
        run(&[
            "ip", "link", "add", SPEAKER_NS, "netns", SPEAKER_NS, "type", "veth", "peer", "name",
            ROUTER_NS, "netns", ROUTER_NS,
        ]);
        for (ns, address) in [(SPEAKER_NS, SPEAKER_V4), (ROUTER_NS, ROUTER_V4)] {
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                ns,
            ]);
            run(&["ip", "-n", ns, "link", "set", ns, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        std::fs::create_dir_all(&dir).unwrap();
        let frr_run = format!("/var/run/frr/{ROUTER_NS}");
        std::fs::create_dir_all(&frr_run).unwrap();
        run(&["chown", "frr:frr", &frr_run, dir.to_str().unwrap()]);
        let config = format!(
            "frr defaults traditional\nhostname router\nlog file /dev/null\n!\nrouter bgp 64501\n bgp router-id {ROUTER_V4}\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n neighbor {SPEAKER_V4} remote-as 64500\n address-family ipv4 unicast\n  neighbor {SPEAKER_V4} activate\n exit-address-family\n!\n"
        );
        let path = dir.join("frr.conf");
        std::fs::write(&path, config).unwrap();
        run(&["chown", "frr:frr", path.to_str().unwrap()]);
        for daemon in ["zebra", "bgpd"] {
            let child = Command::new("ip")
                .args(["netns", "exec", ROUTER_NS])
                .arg(format!("/usr/lib/frr/{daemon}"))
                .args(["-N", ROUTER_NS, "-f", path.to_str().unwrap()])
                .args(["-i", &format!("{frr_run}/{daemon}.pid")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            topology.daemons.push(child);
            std::thread::sleep(Duration::from_millis(300));
        }
        let start = Instant::now();
        while vtysh("show bgp summary json").is_null() {
            assert!(start.elapsed() < WAIT, "FRR bgpd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        topology
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for child in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
        Self::cleanup();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn vtysh(command: &str) -> Value {
    Command::new("vtysh")
        .args(["-N", ROUTER_NS, "-c", command])
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|output| serde_json::from_slice(&output.stdout).ok())
        .unwrap_or(Value::Null)
}

/// The paths FRR holds for `prefix` from the speaker.
fn paths(prefix: &str) -> Vec<Value> {
    vtysh(&format!("show bgp ipv4 unicast {prefix} json"))["paths"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn wait_for(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    loop {
        let done = tokio::task::block_in_place(&check);
        if done {
            return;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn speaker_advertises_to_frr_withdraws_and_shuts_down_gracefully() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping: {reason}");
        return;
    }
    let topology = Topology::new();
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("ip")
        .args(["netns", "exec", SPEAKER_NS])
        .arg(exe)
        .args([
            "--exact",
            "inner_speaker_in_namespace",
            "--ignored",
            "--nocapture",
        ])
        .env(INNER_ENV, "1")
        .status()
        .unwrap();
    drop(topology);
    assert!(status.success(), "the inner test failed: {status}");
}

/// Run by the outer test inside `h1fa`; does nothing on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by speaker_advertises_to_frr_withdraws_and_shuts_down_gracefully in its namespace"]
async fn inner_speaker_in_namespace() {
    if std::env::var_os(INNER_ENV).is_none() {
        eprintln!("skipping: only run inside the namespace by the outer test");
        return;
    }
    let (server, client) = setup().await;
    create(
        &client,
        "BGPPeer",
        "bgppeers",
        json!({
            "apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
            "metadata": {"name": "router"},
            "spec": {"myASN": 64500, "peerASN": 64501, "peerAddress": ROUTER_V4,
                     "holdTime": "9s"}
        }),
    )
    .await;
    create(
        &client,
        "BGPAdvertisement",
        "bgpadvertisements",
        json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
            "metadata": {"name": "bgp"},
            "spec": {"ipAddressPools": ["pool-a"], "communities": ["65000:7"]}
        }),
    )
    .await;
    let (tx, _rx) = mpsc::channel(64);
    let (speaker, handle, _shared) =
        common::start_speaker(&client, tx, Vec::new(), Duration::from_secs(3)).await;
    let host = "10.20.0.5/32";
    wait_for("the Service IP at FRR with community 65000:7", || {
        paths(host)
            .iter()
            .any(|path| path["community"].to_string().contains("65000:7"))
    })
    .await;

    // The Service goes: withdrawn.
    let services = Api::<Service>::namespaced(client.clone(), "default");
    services.delete("web", &Default::default()).await.unwrap();
    wait_for("the withdraw at FRR", || paths(host).is_empty()).await;

    // It comes back, then a planned shutdown: GRACEFUL_SHUTDOWN first, then the withdraw.
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    services
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.20.0.5"}]}}})),
        )
        .await
        .unwrap();
    wait_for("the Service IP at FRR again", || !paths(host).is_empty()).await;
    let grace = Duration::from_secs(8);
    let shutdown = tokio::spawn(async move {
        ractor::call_t!(
            speaker,
            |reply| SpeakerMsg::Shutdown { grace, reply },
            12_000
        )
    });
    wait_for("GRACEFUL_SHUTDOWN on the route", || {
        paths(host).iter().any(|path| {
            let communities = path["community"].to_string();
            communities.contains("gracefulShutdown") || communities.contains("graceful-shutdown")
        })
    })
    .await;
    wait_for("the withdraw after GRACEFUL_SHUTDOWN", || {
        paths(host).is_empty()
    })
    .await;
    shutdown.await.unwrap().unwrap();
    let _ = handle.await;
    drop(server);
}
