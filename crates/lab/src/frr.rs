//! The lab's BGP router: FRR's zebra, bgpd (and bfdd) in the router namespace, peering with
//! every node (eBGP, ECMP across them), and what it has learned, read with `vtysh -N`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use crate::error::LabError;
use crate::process::ProcessSpec;
use crate::topology::{frr_run_dir, run, Lab, ROUTER};

/// The router's AS (the tutorials' `peerASN`).
pub const ROUTER_ASN: u32 = 64501;
/// The nodes' AS (the tutorials' `myASN`).
pub const NODE_ASN: u32 = 64500;
/// ECMP paths the router installs at most.
pub const MAXIMUM_PATHS: u32 = 16;

/// Router options.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouterOptions {
    /// Run bfdd and enable BFD on every node session (300 ms × 3).
    pub bfd: bool,
    /// Keep routes of a restarting node (BGP graceful restart, helper mode).
    pub graceful_restart: bool,
}

/// FRR's configuration for a lab: one neighbor per node, all in one peer group.
pub fn frr_config(lab: &Lab, options: RouterOptions) -> Result<String, LabError> {
    frr_config_sessions(lab, options, false)
}

/// As [`frr_config`]; with `ipv6_sessions` the router also peers with every node over IPv6
/// (peer group `nodes6`, IPv6 unicast only).
pub fn frr_config_sessions(
    lab: &Lab,
    options: RouterOptions,
    ipv6_sessions: bool,
) -> Result<String, LabError> {
    let router_id = lab.v4(ROUTER)?;
    let mut text = format!(
        "frr defaults traditional\nhostname {}\nlog stdout informational\n!\n",
        lab.namespace(ROUTER)
    );
    if options.bfd {
        text.push_str("bfd\n profile lab\n  transmit-interval 300\n  receive-interval 300\n  detect-multiplier 3\n !\n!\n");
    }
    text.push_str(&format!(
        "router bgp {ROUTER_ASN}\n bgp router-id {router_id}\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n bgp bestpath as-path multipath-relax\n"
    ));
    if options.graceful_restart {
        text.push_str(" bgp graceful-restart\n");
    }
    text.push_str(&format!(
        " neighbor nodes peer-group\n neighbor nodes remote-as {NODE_ASN}\n neighbor nodes timers 3 9\n neighbor nodes timers connect 1\n"
    ));
    if options.bfd {
        text.push_str(" neighbor nodes bfd profile lab\n");
    }
    let groups: &[&str] = if ipv6_sessions {
        text.push_str(&format!(
            " neighbor nodes6 peer-group\n neighbor nodes6 remote-as {NODE_ASN}\n neighbor nodes6 timers 3 9\n neighbor nodes6 timers connect 1\n"
        ));
        if options.bfd {
            text.push_str(" neighbor nodes6 bfd profile lab\n");
        }
        &["nodes", "nodes6"]
    } else {
        &["nodes"]
    };
    for node in lab.nodes() {
        text.push_str(&format!(" neighbor {} peer-group nodes\n", lab.v4(&node)?));
        if ipv6_sessions {
            text.push_str(&format!(" neighbor {} peer-group nodes6\n", lab.v6(&node)?));
        }
    }
    for family in ["ipv4", "ipv6"] {
        text.push_str(&format!(" address-family {family} unicast\n"));
        for group in groups {
            // IPv4 sessions carry both families; IPv6 sessions only IPv6.
            if family == "ipv6" || *group == "nodes" {
                text.push_str(&format!("  neighbor {group} activate\n"));
            }
        }
        text.push_str(&format!(
            "  maximum-paths {MAXIMUM_PATHS}\n exit-address-family\n"
        ));
    }
    text.push_str("!\n");
    Ok(text)
}

/// The FRR daemons of the router namespace, started as lab processes `frr-zebra`, `frr-bgpd`
/// (and `frr-bfdd`).
#[derive(Debug)]
pub struct Router {
    namespace: String,
}

impl Router {
    /// Writes the configuration and starts the daemons; waits until bgpd answers vtysh.
    pub fn start(lab: &mut Lab, options: RouterOptions) -> Result<Self, LabError> {
        Self::start_sessions(lab, options, false)
    }

    /// As [`Router::start`], with IPv6 sessions too when `ipv6_sessions`.
    pub fn start_sessions(
        lab: &mut Lab,
        options: RouterOptions,
        ipv6_sessions: bool,
    ) -> Result<Self, LabError> {
        let namespace = lab.namespace(ROUTER);
        let run_dir = frr_run_dir(&namespace);
        std::fs::create_dir_all(&run_dir).map_err(|source| LabError::File {
            path: run_dir.clone(),
            source,
        })?;
        run("chown", &["frr:frr", &run_dir.display().to_string()])?;
        let config = lab.write_file(
            "frr.conf",
            &frr_config_sessions(lab, options, ipv6_sessions)?,
        )?;
        let config_text = config.display().to_string();
        run("chown", &["frr:frr", &config_text])?;
        let mut daemons = vec!["zebra"];
        if options.bfd {
            daemons.push("bfdd");
        }
        daemons.push("bgpd");
        let router = Self { namespace };
        for daemon in daemons {
            let pid_file = run_dir.join(format!("{daemon}.pid")).display().to_string();
            let spec = ProcessSpec::new(
                &format!("frr-{daemon}"),
                ROUTER,
                format!("/usr/lib/frr/{daemon}"),
                &["-N", &router.namespace, "-f", &config_text, "-i", &pid_file],
            );
            lab.spawn(spec)?;
            if daemon == "zebra" {
                // The other daemons connect to zebra's socket: wait until it exists.
                let socket = run_dir.join("zserv.api");
                wait(Duration::from_secs(10), "zebra's socket", || {
                    socket.exists()
                })?;
            }
        }
        wait(Duration::from_secs(20), "bgpd answering vtysh", || {
            router.json("show bgp summary json").is_some()
        })?;
        Ok(router)
    }

    /// The vtysh command for this router (for printed instructions).
    pub fn vtysh_line(&self) -> String {
        format!("vtysh -N {}", self.namespace)
    }

    /// `vtysh -N <ns> -c command` parsed as JSON.
    pub fn json(&self, command: &str) -> Option<Value> {
        let text = run("vtysh", &["-N", &self.namespace, "-c", command]).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// `vtysh -N <ns> -c command` as text.
    pub fn text(&self, command: &str) -> Result<String, LabError> {
        run("vtysh", &["-N", &self.namespace, "-c", command])
    }

    /// Neighbors in state Established (IPv4 sessions).
    pub fn established(&self) -> Vec<IpAddr> {
        let Some(summary) = self.json("show bgp ipv4 unicast summary json") else {
            return Vec::new();
        };
        summary["peers"]
            .as_object()
            .map(|peers| {
                peers
                    .iter()
                    .filter(|(_, peer)| peer["state"].as_str() == Some("Established"))
                    .filter_map(|(address, _)| address.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// BFD peers whose session is up.
    pub fn bfd_up(&self) -> Vec<IpAddr> {
        let Some(peers) = self.json("show bfd peers json") else {
            return Vec::new();
        };
        let mut up: Vec<IpAddr> = peers
            .as_array()
            .into_iter()
            .flatten()
            .filter(|peer| peer["status"].as_str() == Some("up"))
            .filter_map(|peer| peer["peer"].as_str()?.parse().ok())
            .collect();
        up.sort();
        up.dedup();
        up
    }

    /// The installed BGP routes: prefix → active next hops (sorted), for `ipv4` or `ipv6`.
    pub fn routes(&self, ipv6: bool) -> BTreeMap<String, Vec<IpAddr>> {
        self.try_routes(ipv6).unwrap_or_default()
    }

    /// As [`Router::routes`], but `None` when vtysh gave no readable table (so that "no
    /// route" is never confused with "no answer").
    pub fn try_routes(&self, ipv6: bool) -> Option<BTreeMap<String, Vec<IpAddr>>> {
        let command = if ipv6 {
            "show ipv6 route bgp json"
        } else {
            "show ip route bgp json"
        };
        let mut routes = BTreeMap::new();
        let table = self.json(command)?;
        let prefixes = table.as_object()?;
        for (prefix, entries) in prefixes {
            let mut hops: Vec<IpAddr> = entries
                .as_array()
                .into_iter()
                .flatten()
                .filter(|entry| entry["selected"].as_bool() == Some(true))
                .flat_map(|entry| entry["nexthops"].as_array().into_iter().flatten())
                .filter(|hop| hop["active"].as_bool() == Some(true))
                .filter_map(|hop| hop["ip"].as_str()?.parse().ok())
                .collect();
            hops.sort();
            hops.dedup();
            routes.insert(prefix.clone(), hops);
        }
        Some(routes)
    }

    /// The active next hops of the route to `prefix` (`a.b.c.d/32`), empty when none.
    pub fn next_hops(&self, prefix: &str) -> Vec<IpAddr> {
        self.routes(prefix.contains(':'))
            .remove(prefix)
            .unwrap_or_default()
    }
}

fn wait(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) -> Result<(), LabError> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(LabError::Timeout {
        what: what.to_owned(),
        timeout,
    })
}
