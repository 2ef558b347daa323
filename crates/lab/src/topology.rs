//! The lab's network: a LAN (a bridge in its own namespace), node namespaces, a control-plane
//! namespace, a client namespace and, optionally, an FRR router namespace.
//!
//! ```text
//!                    <prefix>-sw: bridge br0 (the LAN, 192.168.1.0/24 + fd00:1::/64)
//!     ┌──────────────┬──────────────┬──────────────┬──────────────┬───────────────┐
//!  <prefix>-router <prefix>-client <prefix>-cp   <prefix>-node1 … <prefix>-nodeN
//!  .1 / ::1        .2 / ::2        .3 / ::3      .11 / ::11      .(10+N) / ::(10+N)
//!  FRR (BGP)        eth0 on LAN     apiserver,    speaker, backend,
//!     │ eth1        │ eth1          controller    kube-ipvs0 (kube-proxy stand-in)
//!     └─────────────┘ 192.168.2.0/24 + fd00:2::/64 (client behind the router, for BGP)
//! ```
//!
//! Every namespace is `<prefix>-<role>`; nothing is created in the root namespace except the
//! namespace names themselves, so deleting the lab's namespaces deletes every link and address
//! it made. [`cleanup_prefix`] removes a stale lab of a crashed run; [`Lab`]'s `Drop` removes
//! its own lab unless [`Lab::keep`] was called.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::error::LabError;
use crate::process::{Process, ProcessSpec, Signal};

/// The LAN's IPv4 prefix length (192.168.1.0/24).
pub const LAN_V4_PREFIX_LEN: u8 = 24;
/// The LAN's IPv6 prefix length (fd00:1::/64).
pub const LAN_V6_PREFIX_LEN: u8 = 64;
/// The client–router link for BGP scenarios (the client sits behind the router).
pub const CLIENT_NET_V4: &str = "192.168.2.0/24";
/// The client–router link, IPv6.
pub const CLIENT_NET_V6: &str = "fd00:2::/64";
/// Upper bound on nodes (addresses .11 … .60 of the LAN).
pub const NODES_MAX: usize = 50;
/// The interface of every namespace on the LAN.
pub const LAN_INTERFACE: &str = "eth0";
/// The kube-proxy stand-in's interface (IPVS mode's name; MetalLB's speaker never announces on it).
pub const KUBE_PROXY_INTERFACE: &str = "kube-ipvs0";
/// The other end of the kube-proxy stand-in's interface where no dummy driver exists.
const KUBE_PROXY_PEER_INTERFACE: &str = "kube-ipvs0-peer";

/// The roles of the lab's non-node namespaces.
const SWITCH: &str = "sw";
/// The control plane: API stand-in and controller.
pub const CONTROL_PLANE: &str = "cp";
/// The client outside the cluster.
pub const CLIENT: &str = "client";
/// The FRR router.
pub const ROUTER: &str = "router";

/// What to build.
#[derive(Clone, Debug)]
pub struct LabSpec {
    /// Prefix of every namespace (`<prefix>-…`); short, `[a-z0-9]`.
    pub prefix: String,
    /// Number of node namespaces (`node1` … `nodeN`).
    pub nodes: usize,
    /// Also build the FRR router namespace with the client behind it.
    pub router: bool,
    /// Where process logs and generated files go (default `/tmp/ironlb-lab-<prefix>`).
    pub dir: Option<PathBuf>,
}

impl LabSpec {
    /// `nodes` nodes, no router, default directory.
    pub fn new(prefix: &str, nodes: usize) -> Self {
        Self {
            prefix: prefix.to_owned(),
            nodes,
            router: false,
            dir: None,
        }
    }

    fn validate(&self) -> Result<(), LabError> {
        if self.prefix.is_empty()
            || self.prefix.len() > 12
            || !self
                .prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(LabError::Spec(format!(
                "prefix {:?} must be 1 to 12 characters of [a-z0-9]",
                self.prefix
            )));
        }
        if self.nodes == 0 || self.nodes > NODES_MAX {
            return Err(LabError::Spec(format!(
                "nodes must be 1 to {NODES_MAX}, not {}",
                self.nodes
            )));
        }
        Ok(())
    }
}

/// The name of node `index` (0-based): `node1`, `node2`, …
pub fn node_name(index: usize) -> String {
    format!("node{}", index + 1)
}

/// The LAN IPv4 address of a role: router .1, client .2, control plane .3, node i .(11+i).
pub fn lan_v4(role: &str) -> Option<Ipv4Addr> {
    host_octet(role).map(|octet| Ipv4Addr::new(192, 168, 1, octet))
}

/// The LAN IPv6 address of a role (`fd00:1::<same number as the IPv4 host part, in hex digits>`).
pub fn lan_v6(role: &str) -> Option<Ipv6Addr> {
    host_octet(role).map(|octet| {
        // fd00:1::11 for .11: the decimal digits read as hex, so both addresses look alike.
        let readable = u16::from_str_radix(&octet.to_string(), 16).unwrap_or(u16::from(octet));
        Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, readable)
    })
}

/// The client's address behind the router (BGP scenarios).
pub const CLIENT_BEHIND_ROUTER_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 2);
/// The router's address on the client link.
pub const ROUTER_CLIENT_SIDE_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 1);
/// The client's IPv6 address behind the router.
pub const CLIENT_BEHIND_ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 2);
/// The router's IPv6 address on the client link.
pub const ROUTER_CLIENT_SIDE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);

fn host_octet(role: &str) -> Option<u8> {
    match role {
        ROUTER => Some(1),
        CLIENT => Some(2),
        CONTROL_PLANE => Some(3),
        _ => {
            let index: u8 = role.strip_prefix("node")?.parse().ok()?;
            (1..=NODES_MAX as u8).contains(&index).then(|| 10 + index)
        }
    }
}

/// Runs `program args` to completion; its stdout on success.
pub fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let mut command = Command::new(program);
    command.args(args);
    run_command(command)
}

/// Runs a prepared command to completion; its stdout on success.
pub fn run_command(mut command: Command) -> Result<String, LabError> {
    let line = command_line(&command);
    let output: std::io::Result<Output> = command.output();
    match output {
        Ok(output) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Ok(output) => Err(LabError::Command {
            command: line,
            stderr: format!(
                "{} {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }),
        Err(error) => Err(LabError::Command {
            command: line,
            stderr: error.to_string(),
        }),
    }
}

/// The command as a shell-like line (for errors and printed instructions).
pub fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when running as root (namespaces need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .map(|line| line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A tool a lab needs and the Debian package that provides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tool {
    /// The program name looked up in `PATH` (or an absolute path).
    pub program: &'static str,
    /// The Debian package to install.
    pub package: &'static str,
}

/// Tools every lab needs.
pub const TOOLS_BASE: &[Tool] = &[
    Tool {
        program: "ip",
        package: "iproute2",
    },
    Tool {
        program: "sysctl",
        package: "procps",
    },
    Tool {
        program: "kill",
        package: "procps",
    },
    Tool {
        program: "kubectl",
        package: "kubectl",
    },
];
/// Tools the layer 2 checks need.
pub const TOOLS_L2: &[Tool] = &[
    Tool {
        program: "arping",
        package: "arping",
    },
    Tool {
        program: "ndisc6",
        package: "ndisc6",
    },
    Tool {
        program: "tcpdump",
        package: "tcpdump",
    },
    Tool {
        program: "curl",
        package: "curl",
    },
];
/// Tools the BGP router needs.
pub const TOOLS_BGP: &[Tool] = &[
    Tool {
        program: "/usr/lib/frr/zebra",
        package: "frr",
    },
    Tool {
        program: "/usr/lib/frr/bgpd",
        package: "frr",
    },
    Tool {
        program: "vtysh",
        package: "frr",
    },
];

/// The tools of `tools` that are missing.
pub fn missing_tools(tools: &[Tool]) -> Vec<Tool> {
    tools
        .iter()
        .copied()
        .filter(|tool| !tool_present(tool.program))
        .collect()
}

fn tool_present(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).exists();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|dir| dir.join(program).is_file())
}

/// Removes every namespace named `<prefix>-…` (killing the processes inside first) and the
/// FRR runtime directory of the lab's router. Returns the namespaces removed.
pub fn cleanup_prefix(prefix: &str) -> Vec<String> {
    let own = format!("{prefix}-");
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if name.starts_with(&own) {
            kill_namespace_processes(name);
            if run("ip", &["netns", "del", name]).is_ok() {
                removed.push(name.to_owned());
            }
        }
    }
    let _ = std::fs::remove_dir_all(frr_run_dir(&format!("{prefix}-{ROUTER}")));
    removed
}

/// SIGKILLs every process inside namespace `namespace`; returns how many were signalled.
pub fn kill_namespace_processes(namespace: &str) -> usize {
    let Ok(pids) = run("ip", &["netns", "pids", namespace]) else {
        return 0;
    };
    let pids: Vec<&str> = pids.split_whitespace().collect();
    if pids.is_empty() {
        return 0;
    }
    let mut args = vec!["-KILL"];
    args.extend(pids.iter().copied());
    let _ = run("kill", &args);
    pids.len()
}

/// FRR's runtime directory for a namespace (`-N` daemons put their sockets there).
pub fn frr_run_dir(namespace: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/frr/{namespace}"))
}

/// A running lab: its namespaces, links, addresses and processes. Dropping it kills every
/// process and deletes every namespace (unless [`Lab::keep`] was called).
#[derive(Debug)]
pub struct Lab {
    spec: LabSpec,
    dir: PathBuf,
    namespaces: Vec<String>,
    processes: BTreeMap<String, Process>,
    keep: bool,
    interrupt_guard: Option<crate::interrupt::Registration>,
}

impl Lab {
    /// Builds the lab (removing a stale lab with the same prefix first).
    pub fn create(spec: LabSpec) -> Result<Self, LabError> {
        spec.validate()?;
        if !is_root() {
            return Err(LabError::Spec(
                "network namespaces need root: run as root (sudo)".into(),
            ));
        }
        cleanup_prefix(&spec.prefix);
        let dir = spec
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/tmp/ironlb-lab-{}", spec.prefix)));
        std::fs::create_dir_all(&dir).map_err(|source| LabError::File {
            path: dir.clone(),
            source,
        })?;
        let interrupt_guard = Some(crate::interrupt::register(&spec.prefix));
        let mut lab = Self {
            spec,
            dir,
            namespaces: Vec::new(),
            processes: BTreeMap::new(),
            keep: false,
            interrupt_guard,
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), LabError> {
        let switch = self.add_namespace(SWITCH)?;
        run(
            "ip",
            &["-n", &switch, "link", "add", "br0", "type", "bridge"],
        )?;
        run("ip", &["-n", &switch, "link", "set", "br0", "up"])?;
        let mut roles = vec![CLIENT.to_owned(), CONTROL_PLANE.to_owned()];
        if self.spec.router {
            roles.push(ROUTER.to_owned());
        }
        roles.extend((0..self.spec.nodes).map(node_name));
        for role in &roles {
            self.add_namespace(role)?;
            self.attach_to_lan(role)?;
        }
        if self.spec.router {
            self.link_client_to_router()?;
        }
        for index in 0..self.spec.nodes {
            self.add_kube_proxy_interface(&node_name(index))?;
        }
        Ok(())
    }

    /// The prefix of every namespace.
    pub fn prefix(&self) -> &str {
        &self.spec.prefix
    }

    /// The directory of logs and generated files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node names, in order.
    pub fn nodes(&self) -> Vec<String> {
        (0..self.spec.nodes).map(node_name).collect()
    }

    /// Whether the lab has the FRR router namespace.
    pub fn has_router(&self) -> bool {
        self.spec.router
    }

    /// The full namespace name of a role (`client`, `cp`, `router`, `node1` …).
    pub fn namespace(&self, role: &str) -> String {
        format!("{}-{role}", self.spec.prefix)
    }

    /// The LAN IPv4 address of a role of this lab.
    pub fn v4(&self, role: &str) -> Result<Ipv4Addr, LabError> {
        lan_v4(role).ok_or_else(|| LabError::Unknown {
            kind: "role",
            name: role.to_owned(),
        })
    }

    /// The LAN IPv6 address of a role of this lab.
    pub fn v6(&self, role: &str) -> Result<Ipv6Addr, LabError> {
        lan_v6(role).ok_or_else(|| LabError::Unknown {
            kind: "role",
            name: role.to_owned(),
        })
    }

    /// The node whose LAN address is `ip`, if any.
    pub fn node_of_address(&self, ip: IpAddr) -> Option<String> {
        self.nodes().into_iter().find(|node| {
            lan_v4(node).map(IpAddr::V4) == Some(ip) || lan_v6(node).map(IpAddr::V6) == Some(ip)
        })
    }

    /// Stops `Drop` from tearing the lab down (`--keep`): processes keep running.
    pub fn keep(&mut self) {
        self.keep = true;
        if let Some(registration) = &self.interrupt_guard {
            registration.keep();
        }
    }

    /// `ip -n <namespace of role> args…`.
    pub fn ip(&self, role: &str, args: &[&str]) -> Result<String, LabError> {
        let namespace = self.namespace(role);
        let mut all = vec!["-n", namespace.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command running `program` inside the namespace of `role`.
    pub fn command(&self, role: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace(role), program]);
        command
    }

    /// Runs `program args` inside `role` to completion; its stdout.
    pub fn exec(&self, role: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
        let mut command = self.command(role, program);
        command.args(args);
        run_command(command)
    }

    /// Runs `program args` inside `role`; stdout and stderr together, whatever the exit status.
    pub fn exec_output(&self, role: &str, program: &str, args: &[&str]) -> String {
        let mut command = self.command(role, program);
        command.args(args);
        match command.output() {
            Ok(output) => {
                String::from_utf8_lossy(&output.stdout).into_owned()
                    + &String::from_utf8_lossy(&output.stderr)
            }
            Err(error) => format!("cannot run {program}: {error}"),
        }
    }

    /// `sysctl -qw setting` inside `role`.
    pub fn sysctl(&self, role: &str, setting: &str) -> Result<(), LabError> {
        self.exec(role, "sysctl", &["-qw", setting]).map(drop)
    }

    /// The IPv6 link-local address of a role's LAN interface (routers often name next hops
    /// by it).
    pub fn link_local_v6(&self, role: &str) -> Result<Ipv6Addr, LabError> {
        let text = self.ip(
            role,
            &[
                "-6",
                "-br",
                "addr",
                "show",
                "dev",
                LAN_INTERFACE,
                "scope",
                "link",
            ],
        )?;
        text.split_whitespace()
            .filter_map(|word| word.split('/').next()?.parse::<Ipv6Addr>().ok())
            .find(|address| address.segments()[0] & 0xffc0 == 0xfe80)
            .ok_or_else(|| LabError::Parse {
                what: format!("link-local address of {LAN_INTERFACE} in {role}"),
                detail: text.clone(),
            })
    }

    /// The MAC address of `interface` in `role`.
    pub fn mac(&self, role: &str, interface: &str) -> Result<String, LabError> {
        let text = self.ip(role, &["-br", "link", "show", "dev", interface])?;
        text.split_whitespace()
            .find(|word| word.len() == 17 && word.matches(':').count() == 5)
            .map(str::to_owned)
            .ok_or_else(|| LabError::Parse {
                what: format!("MAC of {interface} in {role}"),
                detail: text.clone(),
            })
    }

    fn add_namespace(&mut self, role: &str) -> Result<String, LabError> {
        let namespace = self.namespace(role);
        run("ip", &["netns", "add", &namespace])?;
        self.namespaces.push(namespace.clone());
        self.ip(role, &["link", "set", "lo", "up"])?;
        if role != SWITCH {
            // Addresses are usable at once (no duplicate address detection delay).
            for setting in [
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ] {
                self.sysctl(role, setting)?;
            }
        }
        Ok(namespace)
    }

    /// The switch-side port of a role's LAN link.
    fn port(role: &str) -> String {
        format!("p-{role}")
    }

    fn attach_to_lan(&mut self, role: &str) -> Result<(), LabError> {
        let switch = self.namespace(SWITCH);
        let namespace = self.namespace(role);
        let port = Self::port(role);
        run(
            "ip",
            &[
                "-n",
                &switch,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                LAN_INTERFACE,
                "netns",
                &namespace,
            ],
        )?;
        run(
            "ip",
            &["-n", &switch, "link", "set", &port, "master", "br0", "up"],
        )?;
        let v4 = format!("{}/{LAN_V4_PREFIX_LEN}", self.v4(role)?);
        let v6 = format!("{}/{LAN_V6_PREFIX_LEN}", self.v6(role)?);
        self.ip(role, &["addr", "add", &v4, "dev", LAN_INTERFACE])?;
        self.ip(role, &["addr", "add", &v6, "dev", LAN_INTERFACE, "nodad"])?;
        self.ip(role, &["link", "set", LAN_INTERFACE, "up"])?;
        // A new MAC for a neighbour is accepted at once (Linux ignores updates within
        // `locktime` of the last one), so the client follows a takeover's gratuitous ARP.
        self.sysctl(role, &format!("net.ipv4.neigh.{LAN_INTERFACE}.locktime=0"))?;
        Ok(())
    }

    fn link_client_to_router(&mut self) -> Result<(), LabError> {
        let router = self.namespace(ROUTER);
        self.ip(
            CLIENT,
            &[
                "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", &router,
            ],
        )?;
        for (role, v4, v6) in [
            (CLIENT, CLIENT_BEHIND_ROUTER_V4, CLIENT_BEHIND_ROUTER_V6),
            (ROUTER, ROUTER_CLIENT_SIDE_V4, ROUTER_CLIENT_SIDE_V6),
        ] {
            self.ip(role, &["addr", "add", &format!("{v4}/24"), "dev", "eth1"])?;
            self.ip(
                role,
                &["addr", "add", &format!("{v6}/64"), "dev", "eth1", "nodad"],
            )?;
            self.ip(role, &["link", "set", "eth1", "up"])?;
        }
        for setting in [
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            // Layer-4 hashing spreads the client's flows over every ECMP next hop.
            "net.ipv4.fib_multipath_hash_policy=1",
            "net.ipv6.fib_multipath_hash_policy=1",
        ] {
            self.sysctl(ROUTER, setting)?;
        }
        // Nodes answer the client behind the router through the router.
        let router_v4 = self.v4(ROUTER)?.to_string();
        let router_v6 = self.v6(ROUTER)?.to_string();
        for node in self.nodes() {
            self.ip(&node, &["route", "add", CLIENT_NET_V4, "via", &router_v4])?;
            self.ip(
                &node,
                &["-6", "route", "add", CLIENT_NET_V6, "via", &router_v6],
            )?;
        }
        Ok(())
    }

    /// Routes the client's traffic for `prefix` (a BGP pool) through the router.
    pub fn route_client_via_router(&self, prefix: &str) -> Result<(), LabError> {
        let ipv6 = prefix.contains(':');
        let via = if ipv6 {
            ROUTER_CLIENT_SIDE_V6.to_string()
        } else {
            ROUTER_CLIENT_SIDE_V4.to_string()
        };
        let mut args = Vec::new();
        if ipv6 {
            args.push("-6");
        }
        args.extend(["route", "replace", prefix, "via", via.as_str()]);
        self.ip(CLIENT, &args).map(drop)
    }

    /// The kube-proxy stand-in's interface: IPVS mode puts every Service IP on a dummy
    /// interface of every node, so the node accepts traffic for it. With `arp_ignore=1` the
    /// node answers ARP only for addresses of the interface the request came in on, and with
    /// `arp_announce=2` it never uses such an address as an ARP source: without both, every
    /// node would answer ARP for every Service IP and the speaker's election would be moot.
    /// That is why MetalLB asks for kube-proxy's `strictARP`.
    fn add_kube_proxy_interface(&self, node: &str) -> Result<(), LabError> {
        if self
            .ip(
                node,
                &["link", "add", KUBE_PROXY_INTERFACE, "type", "dummy"],
            )
            .is_err()
        {
            // Kernels without the dummy driver (some containers): a veth pair with both ends
            // in the node plays the same part (addresses on it are local, it leads nowhere).
            self.ip(
                node,
                &[
                    "link",
                    "add",
                    KUBE_PROXY_INTERFACE,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    KUBE_PROXY_PEER_INTERFACE,
                ],
            )?;
            self.ip(node, &["link", "set", KUBE_PROXY_PEER_INTERFACE, "up"])?;
        }
        self.ip(node, &["link", "set", KUBE_PROXY_INTERFACE, "up"])?;
        for setting in [
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
        ] {
            self.sysctl(node, setting)?;
        }
        Ok(())
    }

    /// The kube-proxy stand-in delivers `ip` to every node: the IP goes on `kube-ipvs0`.
    /// IPv6 needs no sysctl: Linux answers neighbour solicitations only for addresses of the
    /// interface they arrive on.
    pub fn kube_proxy_add(&self, ip: IpAddr) -> Result<(), LabError> {
        let address = match ip {
            IpAddr::V4(v4) => format!("{v4}/32"),
            IpAddr::V6(v6) => format!("{v6}/128"),
        };
        for node in self.nodes() {
            let present = self.ip(&node, &["addr", "show", "dev", KUBE_PROXY_INTERFACE])?;
            if present.contains(&format!(" {address} ")) {
                continue;
            }
            let mut args = vec!["addr", "add", address.as_str(), "dev", KUBE_PROXY_INTERFACE];
            if ip.is_ipv6() {
                args.push("nodad");
            }
            self.ip(&node, &args)?;
        }
        Ok(())
    }

    /// The kube-proxy stand-in stops delivering `ip` (Service deleted).
    pub fn kube_proxy_remove(&self, ip: IpAddr) -> Result<(), LabError> {
        let address = match ip {
            IpAddr::V4(v4) => format!("{v4}/32"),
            IpAddr::V6(v6) => format!("{v6}/128"),
        };
        for node in self.nodes() {
            let _ = self.ip(
                &node,
                &["addr", "del", &address, "dev", KUBE_PROXY_INTERFACE],
            );
        }
        Ok(())
    }

    /// Sets a role's LAN link down (its switch port: the cable is pulled) or up.
    pub fn set_link(&self, role: &str, up: bool) -> Result<(), LabError> {
        let port = Self::port(role);
        let state = if up { "up" } else { "down" };
        run(
            "ip",
            &["-n", &self.namespace(SWITCH), "link", "set", &port, state],
        )
        .map(drop)
    }

    /// Starts a process in the lab; its stdout and stderr go to `<dir>/<name>.log`. A process
    /// of the same name that is still running is killed first.
    pub fn spawn(&mut self, spec: ProcessSpec) -> Result<(), LabError> {
        if let Some(mut old) = self.processes.remove(&spec.name) {
            old.kill();
        }
        let process = Process::start(spec, &self.dir, |role| self.namespace(role))?;
        self.processes.insert(process.spec().name.clone(), process);
        Ok(())
    }

    /// The process called `name`.
    pub fn process(&self, name: &str) -> Result<&Process, LabError> {
        self.processes.get(name).ok_or_else(|| LabError::Unknown {
            kind: "process",
            name: name.to_owned(),
        })
    }

    fn process_mut(&mut self, name: &str) -> Result<&mut Process, LabError> {
        self.processes
            .get_mut(name)
            .ok_or_else(|| LabError::Unknown {
                kind: "process",
                name: name.to_owned(),
            })
    }

    /// The names of the lab's processes.
    pub fn process_names(&self) -> Vec<String> {
        self.processes.keys().cloned().collect()
    }

    /// Sends `signal` to a process (SIGKILL also reaps it).
    pub fn signal(&mut self, name: &str, signal: Signal) -> Result<(), LabError> {
        self.process_mut(name)?.signal(signal)
    }

    /// Waits until a process has exited; its exit status text.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> Result<String, LabError> {
        self.process_mut(name)?.wait_exit(timeout)
    }

    /// Kills a process (-9) if it runs and starts it again with the same command.
    pub fn restart(&mut self, name: &str) -> Result<(), LabError> {
        let spec = {
            let process = self.process_mut(name)?;
            process.kill();
            process.spec().clone()
        };
        self.spawn(spec)
    }

    /// Waits until the log of process `name` contains `needle`; fails early if it exits.
    pub fn wait_log(
        &mut self,
        name: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let process = self.process_mut(name)?;
            if process.log_text().contains(needle) {
                return Ok(());
            }
            process.check_running()?;
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("{needle:?} in the log of {name}"),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A node's death: its LAN link goes down and every process in its namespace is killed
    /// with SIGKILL at once (killing only a daemon can leave the address working, or close
    /// TCP cleanly, and hides the real failover).
    pub fn kill_node(&mut self, node: &str) -> Result<(), LabError> {
        if !self.nodes().iter().any(|n| n == node) {
            return Err(LabError::Unknown {
                kind: "node",
                name: node.to_owned(),
            });
        }
        self.set_link(node, false)?;
        kill_namespace_processes(&self.namespace(node));
        for process in self.processes.values_mut() {
            if process.spec().role == node {
                process.kill();
            }
        }
        Ok(())
    }

    /// Brings a dead node back: link up and its processes started again.
    pub fn revive_node(&mut self, node: &str) -> Result<(), LabError> {
        self.set_link(node, true)?;
        let specs: Vec<ProcessSpec> = self
            .processes
            .values()
            .filter(|process| process.spec().role == node)
            .map(|process| process.spec().clone())
            .collect();
        for spec in specs {
            self.spawn(spec)?;
        }
        Ok(())
    }

    /// Writes a file into the lab directory; its path.
    pub fn write_file(&self, name: &str, contents: &str) -> Result<PathBuf, LabError> {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).map_err(|source| LabError::File {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Commands to explore and tear down a kept lab.
    pub fn explore_commands(&self) -> Vec<String> {
        let mut lines = vec![
            format!("ip netns list | grep '^{}-'", self.spec.prefix),
            format!(
                "ip netns exec {} curl -s http://<EXTERNAL-IP>/",
                self.namespace(CLIENT)
            ),
            format!("ls {}   # process logs", self.dir.display()),
        ];
        lines.push(format!(
            "ironlb demo --cleanup --prefix {}   # removes the lab",
            self.spec.prefix
        ));
        lines
    }

    /// Kills every process and deletes every namespace now (what `Drop` does).
    pub fn destroy(&mut self) {
        for process in self.processes.values_mut() {
            process.kill();
        }
        for namespace in self.namespaces.iter().rev() {
            kill_namespace_processes(namespace);
        }
        for namespace in self.namespaces.iter().rev() {
            let _ = run("ip", &["netns", "del", namespace]);
        }
        self.namespaces.clear();
        let _ = std::fs::remove_dir_all(frr_run_dir(&self.namespace(ROUTER)));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep {
            self.destroy();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_roles() {
        let table = [
            (ROUTER, "192.168.1.1", "fd00:1::1"),
            (CLIENT, "192.168.1.2", "fd00:1::2"),
            (CONTROL_PLANE, "192.168.1.3", "fd00:1::3"),
            ("node1", "192.168.1.11", "fd00:1::11"),
            ("node12", "192.168.1.22", "fd00:1::22"),
        ];
        for (role, v4, v6) in table {
            assert_eq!(lan_v4(role).map(|a| a.to_string()).as_deref(), Some(v4));
            assert_eq!(lan_v6(role).map(|a| a.to_string()).as_deref(), Some(v6));
        }
        for bad in ["node0", "node51", "nodex", "sw", ""] {
            assert_eq!(lan_v4(bad), None, "{bad}");
        }
    }

    #[test]
    fn spec_validation() {
        assert!(LabSpec::new("ilb", 3).validate().is_ok());
        for (prefix, nodes) in [("", 3), ("ILB", 3), ("a-b", 3), ("ilb", 0), ("ilb", 51)] {
            assert!(
                LabSpec::new(prefix, nodes).validate().is_err(),
                "{prefix} {nodes}"
            );
        }
    }
}
