//! End-to-end tests of ironlb: the real `ironlb` binary (API stand-in, controller, one speaker
//! per node) in a network-namespace lab (`ironlb-lab`), driven only through the API (kubectl)
//! and observed only from the network (the client's `arping`, `ndisc6`, `tcpdump`, `curl`).
//!
//! This library holds what the test files share: the skip rules (root, tools, the binary), a
//! bound on how many labs run at once, and the standard setup (control plane, backends,
//! speakers, the tutorial's layer 2 configuration). Each test uses its own namespace prefix
//! (`h2<letter>`), so tests may run in parallel.
//!
//! The `ironlb` binary is found next to the test executable's directory
//! (`$CARGO_TARGET_DIR/debug/ironlb`, built by `cargo build -p ironlb`, as `scripts/test.sh`
//! does before the tests) or at `$IRONLB_BIN`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ironlb_lab::cluster::{speaker_name, Cluster, APISERVER, CONTROLLER};
use ironlb_lab::frr::{Router, RouterOptions};
use ironlb_lab::manifests::{
    bgp_config_peers, l2_config, BGP_CLIENT_ROUTE_V4, BGP_CLIENT_ROUTE_V6, HTTP_PORT,
};
use ironlb_lab::observe::{arping_macs, curl, node_macs};
use ironlb_lab::topology::{
    is_root, missing_tools, Lab, LabSpec, CLIENT, ROUTER, TOOLS_BASE, TOOLS_BGP, TOOLS_L2,
};
use ironlb_lab::LabError;

/// How long convergence steps may take on a loaded CI machine (2 cores, other tests running).
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(45);
/// Labs running at once in one test binary (each runs ~8 processes).
const LABS_AT_ONCE_DEFAULT: usize = 2;

static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// A slot among the labs allowed to run at once; released on drop.
#[derive(Debug)]
pub struct Slot(());

impl Slot {
    /// Waits for a slot (`IRONLB_E2E_LABS` labs at once, default 2).
    pub fn acquire() -> Self {
        let limit = std::env::var("IRONLB_E2E_LABS")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(LABS_AT_ONCE_DEFAULT)
            .max(1);
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        while *running >= limit {
            running = FREED.wait(running).unwrap_or_else(PoisonError::into_inner);
        }
        *running += 1;
        Self(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        *running = running.saturating_sub(1);
        FREED.notify_one();
    }
}

/// The `ironlb` binary, or why it cannot be found.
pub fn ironlb_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("IRONLB_BIN") {
        return Ok(PathBuf::from(path));
    }
    // tests run from <target>/debug/deps/<test>-<hash>; the binary is <target>/debug/ironlb.
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let candidate = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("ironlb"))
        .ok_or("no target directory above the test executable")?;
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(format!(
            "{} is not built: run `cargo build -p ironlb` first (scripts/test.sh does)",
            candidate.display()
        ))
    }
}

/// Why this test cannot run here (not root, a tool or the binary missing), printed by the test.
pub fn skip_reason(bgp: bool) -> Option<String> {
    if !is_root() {
        return Some("end-to-end tests need root (network namespaces)".into());
    }
    let mut tools = TOOLS_BASE.to_vec();
    tools.extend_from_slice(TOOLS_L2);
    if bgp {
        tools.extend_from_slice(TOOLS_BGP);
    }
    let missing = missing_tools(&tools);
    if !missing.is_empty() {
        let names: Vec<String> = missing
            .iter()
            .map(|tool| format!("{} (apt package {})", tool.program, tool.package))
            .collect();
        return Some(format!(
            "missing tools: {} — run scripts/install-deps.sh",
            names.join(", ")
        ));
    }
    ironlb_binary().err()
}

/// Returns from the test, printing why, when it cannot run here.
#[macro_export]
macro_rules! require_lab {
    ($bgp:expr) => {
        if let Some(reason) = $crate::skip_reason($bgp) {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

/// A running lab with the control plane, backends and speakers.
#[derive(Debug)]
pub struct Env {
    /// The cluster (and its lab).
    pub cluster: Cluster,
    /// Node name of every node MAC on the LAN.
    pub node_of_mac: BTreeMap<String, String>,
    /// The FRR router, when the spec asked for BGP.
    pub router: Option<Router>,
    /// Node name of every node's IPv6 link-local address (IPv6 next hops).
    pub node_of_link_local: BTreeMap<IpAddr, String>,
    _slot: Slot,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct EnvSpec {
    /// Namespace prefix (`h2<letter>`).
    pub prefix: String,
    /// Node count.
    pub nodes: usize,
    /// Build the FRR router namespace too.
    pub router: bool,
    /// Apply the tutorial's layer 2 configuration (with the IPv6 range when `ipv6`).
    pub l2: bool,
    /// Add the IPv6 range to the layer 2 pool.
    pub ipv6: bool,
    /// Extra speaker flags.
    pub speaker_args: Vec<String>,
    /// Labels per node, set before the speakers start.
    pub node_labels: Vec<(String, String, String)>,
    /// Start the FRR router (BFD on) and apply the tutorial's BGP configuration.
    pub bgp: bool,
    /// BGP graceful restart on both sides (FRR helper, `enableGracefulRestart` on the peer).
    pub graceful_restart: bool,
    /// Also an IPv6 BGP session per node (a second `BGPPeer` on the router's IPv6 address).
    pub ipv6_sessions: bool,
}

impl EnvSpec {
    /// Three nodes, layer 2, IPv4.
    pub fn l2(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            nodes: 3,
            router: false,
            l2: true,
            ipv6: false,
            speaker_args: Vec::new(),
            node_labels: Vec::new(),
            bgp: false,
            graceful_restart: false,
            ipv6_sessions: false,
        }
    }

    /// Three nodes, BGP only (the FRR router, the client behind it).
    pub fn bgp(prefix: &str) -> Self {
        Self {
            router: true,
            l2: false,
            bgp: true,
            ..Self::l2(prefix)
        }
    }
}

impl Env {
    /// Builds the lab, starts the API stand-in, the controller, a backend and a speaker per
    /// node, and applies the layer 2 configuration. Panics (with the lab's log directory) when
    /// something fails: a test cannot go on without it.
    pub fn start(spec: &EnvSpec) -> Self {
        let slot = Slot::acquire();
        match Self::try_start(spec, slot) {
            Ok(env) => env,
            Err(error) => panic!("lab {} did not start: {error}", spec.prefix),
        }
    }

    fn try_start(spec: &EnvSpec, slot: Slot) -> Result<Self, LabError> {
        let binary = ironlb_binary().map_err(LabError::Spec)?;
        let mut lab_spec = LabSpec::new(&spec.prefix, spec.nodes);
        lab_spec.router = spec.router;
        let lab = Lab::create(lab_spec)?;
        let mut cluster = Cluster::start(lab, &binary)?;
        for (node, key, value) in &spec.node_labels {
            cluster.label_node(node, &[(key, Some(value))])?;
        }
        if spec.l2 {
            cluster.apply(&l2_config(spec.ipv6))?;
        }
        let mut router = None;
        if spec.bgp {
            let options = RouterOptions {
                bfd: true,
                graceful_restart: spec.graceful_restart,
            };
            router = Some(Router::start_sessions(
                &mut cluster.lab,
                options,
                spec.ipv6_sessions,
            )?);
            cluster.lab.route_client_via_router(BGP_CLIENT_ROUTE_V4)?;
            cluster.lab.route_client_via_router(BGP_CLIENT_ROUTE_V6)?;
            let v4 = cluster.lab.v4(ROUTER)?.to_string();
            let v6 = cluster.lab.v6(ROUTER)?.to_string();
            let mut peers = vec![("router", v4.as_str())];
            if spec.ipv6_sessions {
                peers.push(("router-v6", v6.as_str()));
            }
            cluster.apply(&bgp_config_peers(&peers, true, spec.graceful_restart))?;
        }
        cluster.start_controller()?;
        for node in cluster.lab.nodes() {
            cluster.start_backend(&node, &["--http-port", "80"])?;
        }
        let extra: Vec<&str> = spec.speaker_args.iter().map(String::as_str).collect();
        cluster.start_speakers(&extra)?;
        let node_of_mac = node_macs(&cluster.lab)?;
        let mut node_of_link_local = BTreeMap::new();
        for node in cluster.lab.nodes() {
            let address = cluster.lab.link_local_v6(&node)?;
            node_of_link_local.insert(IpAddr::V6(address), node);
        }
        Ok(Self {
            cluster,
            node_of_mac,
            router,
            node_of_link_local,
            _slot: slot,
        })
    }

    /// The lab.
    pub fn lab(&self) -> &Lab {
        &self.cluster.lab
    }

    /// Where the logs are (for failure messages).
    pub fn logs(&self) -> String {
        self.cluster.lab.dir().display().to_string()
    }

    /// Waits until the client's `curl` of `ip` is answered by `node`'s backend (the kube-proxy
    /// stand-in delivers locally on the node that got the packet).
    pub fn wait_curl_answered_by(&self, ip: IpAddr, node: &str) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let body = curl(self.lab(), CLIENT, ip, HTTP_PORT, Duration::from_secs(2));
            if body.as_deref() == Some(node) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "curl {ip} answered {body:?}, want {node}; logs in {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The nodes whose MACs answer the client's `arping` for `ip` (3 requests), sorted and
    /// deduplicated; a MAC that is not a node's appears as itself.
    pub fn arp_answerers(&self, ip: IpAddr) -> Vec<String> {
        let mut nodes: Vec<String> = arping_macs(self.lab(), ip, 3)
            .into_iter()
            .map(|mac| self.node_of_mac.get(&mac).cloned().unwrap_or(mac))
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Waits until exactly one node answers ARP for `ip` and `ServiceL2Status` names that
    /// node (and only it); returns the node.
    pub fn wait_single_owner(&self, service: &str, ip: IpAddr) -> String {
        self.wait_single_owner_not(service, ip, None)
    }

    /// As [`Env::wait_single_owner`], but the owner must not be `not`.
    pub fn wait_single_owner_not(&self, service: &str, ip: IpAddr, not: Option<&str>) -> String {
        self.wait_owner(service, ip, not, false)
    }

    /// After `dead`'s speaker died: waits until exactly one other node answers ARP for `ip` and
    /// `ServiceL2Status` names it. A dead speaker cannot delete its own status object, so it
    /// may still be listed next to the new owner (as with MetalLB); returns the new owner.
    pub fn wait_takeover(&self, service: &str, ip: IpAddr, dead: &str) -> String {
        self.wait_owner(service, ip, Some(dead), true)
    }

    fn wait_owner(
        &self,
        service: &str,
        ip: IpAddr,
        not: Option<&str>,
        stale_allowed: bool,
    ) -> String {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let answerers = self.arp_answerers(ip);
            let mut status = self.cluster.l2_status_nodes("default", service);
            if stale_allowed {
                status.retain(|node| Some(node.as_str()) != not);
            }
            if answerers.len() == 1 && status == answerers && Some(answerers[0].as_str()) != not {
                return answerers[0].clone();
            }
            assert!(
                Instant::now() < deadline,
                "{service} ({ip}): no single owner (other than {not:?}) within \
                 {CONVERGE_TIMEOUT:?}: arping answered by {answerers:?}, ServiceL2Status on \
                 {status:?}; logs in {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the `ServiceL2Status` objects of `service` name exactly `nodes`.
    pub fn wait_status(&self, service: &str, nodes: &[&str]) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let status = self.cluster.l2_status_nodes("default", service);
            if status == nodes {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{service}: ServiceL2Status on {status:?}, want {nodes:?}; logs in {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The router's active next hops for `ip`, as node names (sorted); `None` when the
    /// router's table could not be read.
    pub fn next_hop_nodes(&self, ip: IpAddr) -> Option<Vec<String>> {
        let router = self.router.as_ref()?;
        let prefix = match ip {
            IpAddr::V4(_) => format!("{ip}/32"),
            IpAddr::V6(_) => format!("{ip}/128"),
        };
        let mut routes = router.try_routes(ip.is_ipv6())?;
        let mut nodes: Vec<String> = routes
            .remove(&prefix)
            .unwrap_or_default()
            .into_iter()
            .map(|hop| {
                self.cluster
                    .lab
                    .node_of_address(hop)
                    .or_else(|| self.node_of_link_local.get(&hop).cloned())
                    .unwrap_or_else(|| hop.to_string())
            })
            .collect();
        nodes.sort();
        Some(nodes)
    }

    /// Waits until the router routes `ip` to exactly `nodes` (ECMP; none: no route).
    pub fn wait_next_hops(&self, ip: IpAddr, nodes: &[&str]) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let hops = self.next_hop_nodes(ip);
            if hops.as_deref().is_some_and(|hops| hops == nodes) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "router routes {ip} to {hops:?}, want {nodes:?}; logs in {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills (-9) a node's speaker only.
    pub fn kill_speaker(&mut self, node: &str) {
        self.cluster
            .lab
            .signal(&speaker_name(node), ironlb_lab::process::Signal::Kill)
            .unwrap_or_else(|e| panic!("kill speaker on {node}: {e}"));
    }

    /// Kills (-9) the API stand-in.
    pub fn kill_apiserver(&mut self) {
        self.cluster
            .lab
            .signal(APISERVER, ironlb_lab::process::Signal::Kill)
            .unwrap_or_else(|e| panic!("kill apiserver: {e}"));
    }

    /// Restarts the controller (kill -9, start again).
    pub fn restart_controller(&mut self) {
        self.cluster
            .lab
            .restart(CONTROLLER)
            .unwrap_or_else(|e| panic!("restart controller: {e}"));
    }
}
