//! Network-namespace topologies for the layer 2 tests and benchmark (not used in production).
//!
//! A topology is a switch namespace `<prefix>-sw` holding a bridge `br0`, and leaf namespaces
//! `<prefix>-<name>` each connected to the bridge by a veth pair. Everything is created with
//! iproute2 and deleted when the [`Topology`] is dropped, also when a test fails. Only
//! namespaces whose names start with the given prefix are ever touched.

use std::io;
use std::process::{Command, Output};

use super::proto::packet::MacAddr;

/// A failed iproute2/sysctl command.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {stderr}")]
pub struct CommandError {
    /// The command line.
    pub command: String,
    /// Its standard error (or the spawn error).
    pub stderr: String,
}

fn run(program: &str, args: &[&str]) -> Result<String, CommandError> {
    let command = format!("{program} {}", args.join(" "));
    let output: io::Result<Output> = Command::new(program).args(args).output();
    match output {
        Ok(output) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Ok(output) => Err(CommandError {
            command,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }),
        Err(error) => Err(CommandError {
            command,
            stderr: error.to_string(),
        }),
    }
}

/// A bridge with namespaces around it; deleted on drop.
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    namespaces: Vec<String>,
    ports: usize,
}

impl Topology {
    /// Creates `<prefix>-sw` with an up bridge `br0` (deleting leftovers of a crashed run with
    /// the same prefix first). Multicast snooping stays on, as on a default Linux bridge, so
    /// NDP only works if the responder really joins the solicited-node group.
    pub fn new(prefix: &str) -> Result<Self, CommandError> {
        let mut topology = Self {
            prefix: prefix.to_owned(),
            namespaces: Vec::new(),
            ports: 0,
        };
        topology.delete_leftovers();
        let switch = topology.create_namespace("sw")?;
        run(
            "ip",
            &["-n", &switch, "link", "add", "br0", "type", "bridge"],
        )?;
        run("ip", &["-n", &switch, "link", "set", "br0", "up"])?;
        Ok(topology)
    }

    /// The full name of leaf `name`.
    pub fn namespace(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Creates leaf namespace `name` with lo up and no IPv6 DAD delay.
    pub fn add_namespace(&mut self, name: &str) -> Result<String, CommandError> {
        let namespace = self.create_namespace(name)?;
        run("ip", &["-n", &namespace, "link", "set", "lo", "up"])?;
        for setting in [
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ] {
            run(
                "ip",
                &["netns", "exec", &namespace, "sysctl", "-qw", setting],
            )?;
        }
        Ok(namespace)
    }

    /// Connects leaf `name` to the bridge with an interface `interface` (neighbour `locktime`
    /// 0); returns its MAC.
    pub fn connect(&mut self, name: &str, interface: &str) -> Result<MacAddr, CommandError> {
        let switch = self.namespace("sw");
        let namespace = self.namespace(name);
        self.ports += 1;
        let port = format!("p{}", self.ports);
        run(
            "ip",
            &[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", interface,
                "netns", &namespace,
            ],
        )?;
        run(
            "ip",
            &["-n", &switch, "link", "set", &port, "master", "br0", "up"],
        )?;
        run("ip", &["-n", &namespace, "link", "set", interface, "up"])?;
        // Linux ignores a new MAC for a neighbour within `locktime` of its last update.
        run(
            "ip",
            &[
                "netns",
                "exec",
                &namespace,
                "sysctl",
                "-qw",
                &format!("net.ipv4.neigh.{interface}.locktime=0"),
            ],
        )?;
        self.mac(name, interface)
    }

    /// The MAC of `interface` in leaf `name`.
    pub fn mac(&self, name: &str, interface: &str) -> Result<MacAddr, CommandError> {
        let namespace = self.namespace(name);
        let output = run(
            "ip",
            &["-n", &namespace, "-br", "link", "show", "dev", interface],
        )?;
        output
            .split_whitespace()
            .find_map(|word| word.parse::<MacAddr>().ok())
            .ok_or_else(|| CommandError {
                command: format!("mac of {interface}"),
                stderr: output.clone(),
            })
    }

    /// Runs `ip <args>` inside leaf `name`.
    pub fn ip(&self, name: &str, args: &[&str]) -> Result<String, CommandError> {
        let namespace = self.namespace(name);
        let mut all = vec!["-n", namespace.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command that runs `program args` inside leaf `name`.
    pub fn command(&self, name: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace(name), program]);
        command
    }

    fn create_namespace(&mut self, name: &str) -> Result<String, CommandError> {
        let namespace = self.namespace(name);
        run("ip", &["netns", "add", &namespace])?;
        self.namespaces.push(namespace.clone());
        Ok(namespace)
    }

    fn delete_leftovers(&self) {
        let Ok(list) = run("ip", &["netns", "list"]) else {
            return;
        };
        let own = format!("{}-", self.prefix);
        for line in list.lines() {
            if let Some(name) = line.split_whitespace().next() {
                if name.starts_with(&own) {
                    let _ = run("ip", &["netns", "del", name]);
                }
            }
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for namespace in self.namespaces.iter().rev() {
            let _ = run("ip", &["netns", "del", namespace]);
        }
    }
}

/// True when running as root (namespace tests need it).
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
