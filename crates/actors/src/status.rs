//! `ironlb status`: what users ask first when something is wrong. Reads the Services, the
//! `ServiceL2Status` / `ServiceBGPStatus` objects and the `ConfigurationState`s, and optionally
//! one speaker's `/debug/members` (its gossip view and its per-Service decisions), and prints per
//! Service IP the announcing node(s), their interfaces or BGP peers, since when, and why the
//! other nodes do not announce.
//!
//! [`collect`] does the IO (API lists, one HTTP GET); [`render`] is pure and table-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, ListParams};
use kube::Client;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::tree::{metallb_resource, Protocol};

/// How long the `--gossip` request may take.
pub const DEBUG_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `/debug/members` answer read.
pub const DEBUG_RESPONSE_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Why `ironlb status` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// An API list failed.
    #[error("listing {kind}")]
    List {
        /// The kind.
        kind: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The speaker's debug endpoint could not be read.
    #[error("asking the speaker at {addr} for /debug/members")]
    Debug {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The speaker's answer is not the expected JSON.
    #[error("the speaker at {addr} answered /debug/members with {detail}")]
    DebugAnswer {
        /// The address.
        addr: SocketAddr,
        /// What was wrong.
        detail: String,
    },
}

/// One member in a speaker's gossip view.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDebug {
    /// Alive or suspect.
    pub active: bool,
    /// Handing its IPs over.
    pub leaving: bool,
    /// The IPs it announces (layer 2).
    pub claims: BTreeSet<IpAddr>,
}

/// One Service as one speaker decided it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDebug {
    /// Announced in layer 2 by this speaker.
    pub layer2_announced: bool,
    /// Why not (MetalLB's reason), in layer 2.
    pub layer2_reason: Option<String>,
    /// The owner this speaker computed, when it is another node.
    pub layer2_owner: Option<String>,
    /// The BGPPeers this speaker advertises it to.
    pub bgp_peers: BTreeSet<String>,
    /// Why not, over BGP.
    pub bgp_reason: Option<String>,
}

/// The JSON of a speaker's `/debug/members`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakerDebug {
    /// The speaker's node.
    pub node: String,
    /// Gossip is enabled.
    pub gossip: bool,
    /// The start-up settle is over.
    pub settled: bool,
    /// Its gossip view (itself excluded), by node.
    pub members: BTreeMap<String, MemberDebug>,
    /// Its decisions, by `namespace/name`.
    pub services: BTreeMap<String, ServiceDebug>,
    /// Its BGP sessions, by BGPPeer: state and last error.
    pub sessions: BTreeMap<String, SessionDebug>,
}

/// One BGP session, as `/debug/members` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDebug {
    /// `ip:port`.
    pub peer: String,
    /// RFC 4271 state.
    pub state: String,
    /// The last error.
    pub last_error: Option<String>,
    /// BFD state.
    pub bfd: Option<String>,
}

/// One status object: which node announces a Service, how, since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcer {
    /// The node.
    pub node: String,
    /// Interfaces (layer 2; empty: all) or BGPPeers (bgp).
    pub via: Vec<String>,
    /// `metadata.creationTimestamp` of the status object (RFC 3339).
    pub since: Option<String>,
}

/// One `ConfigurationState`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentState {
    /// Its name (`controller`, `speaker-<node>`).
    pub name: String,
    /// `Valid`, `Invalid`, `Unknown`.
    pub result: String,
    /// The errors.
    pub error_summary: String,
}

/// Everything [`render`] reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusInputs {
    /// LoadBalancer Services with IPs: `namespace/name` → IPs.
    pub services: BTreeMap<String, Vec<IpAddr>>,
    /// Layer 2 announcers by Service.
    pub layer2: BTreeMap<String, Vec<Announcer>>,
    /// BGP announcers by Service.
    pub bgp: BTreeMap<String, Vec<Announcer>>,
    /// The `ConfigurationState`s.
    pub components: Vec<ComponentState>,
    /// One speaker's view, with `--gossip`.
    pub speaker: Option<SpeakerDebug>,
}

fn text(value: &serde_json::Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

fn announcers(objects: &[DynamicObject], protocol: Protocol) -> BTreeMap<String, Vec<Announcer>> {
    let mut by_service: BTreeMap<String, Vec<Announcer>> = BTreeMap::new();
    for object in objects {
        let status = &object.data["status"];
        let (Some(node), Some(namespace), Some(name)) = (
            text(&status["node"]),
            text(&status["serviceNamespace"]),
            text(&status["serviceName"]),
        ) else {
            continue;
        };
        let via = match protocol {
            Protocol::Layer2 => status["interfaces"]
                .as_array()
                .map(|list| list.iter().filter_map(|i| text(&i["name"])).collect())
                .unwrap_or_default(),
            Protocol::Bgp => status["peers"]
                .as_array()
                .map(|list| list.iter().filter_map(text).collect())
                .unwrap_or_default(),
        };
        by_service
            .entry(format!("{namespace}/{name}"))
            .or_default()
            .push(Announcer {
                node,
                via,
                since: object
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string()),
            });
    }
    for list in by_service.values_mut() {
        list.sort_by(|a, b| a.node.cmp(&b.node));
    }
    by_service
}

/// Reads everything over the API (and, with `speaker`, one speaker's debug endpoint).
pub async fn collect(
    client: Client,
    namespace: &str,
    speaker: Option<SocketAddr>,
) -> Result<StatusInputs, StatusError> {
    let list_error = |kind: &str| {
        let kind = kind.to_owned();
        move |source| StatusError::List { kind, source }
    };
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(list_error("Services"))?;
    let mut inputs = StatusInputs::default();
    for service in services.items {
        let is_load_balancer =
            service.spec.as_ref().and_then(|spec| spec.type_.as_deref()) == Some("LoadBalancer");
        if !is_load_balancer {
            continue;
        }
        let ips: Vec<IpAddr> = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|ingress| {
                ingress
                    .iter()
                    .filter_map(|i| i.ip.as_deref().and_then(|ip| ip.parse().ok()))
                    .collect()
            })
            .unwrap_or_default();
        let key = format!(
            "{}/{}",
            service.metadata.namespace.unwrap_or_default(),
            service.metadata.name.unwrap_or_default()
        );
        inputs.services.insert(key, ips);
    }
    for protocol in Protocol::ALL {
        let resource = protocol.resource();
        let objects = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
            .list(&ListParams::default())
            .await
            .map_err(list_error(&resource.kind))?;
        let found = announcers(&objects.items, protocol);
        match protocol {
            Protocol::Layer2 => inputs.layer2 = found,
            Protocol::Bgp => inputs.bgp = found,
        }
    }
    let states = Api::<DynamicObject>::namespaced_with(
        client,
        namespace,
        &metallb_resource("ConfigurationState", "configurationstates"),
    )
    .list(&ListParams::default())
    .await
    .map_err(list_error("ConfigurationStates"))?;
    for object in states.items {
        inputs.components.push(ComponentState {
            name: object.metadata.name.clone().unwrap_or_default(),
            result: text(&object.data["status"]["result"]).unwrap_or_else(|| "Unknown".into()),
            error_summary: text(&object.data["status"]["errorSummary"]).unwrap_or_default(),
        });
    }
    if let Some(addr) = speaker {
        inputs.speaker = Some(ask_speaker(addr).await?);
    }
    Ok(inputs)
}

/// GET `/debug/members` from a speaker's health listener.
pub async fn ask_speaker(addr: SocketAddr) -> Result<SpeakerDebug, StatusError> {
    let io = |source| StatusError::Debug { addr, source };
    let body = tokio::time::timeout(DEBUG_REQUEST_TIMEOUT, async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /debug/members HTTP/1.0\r\nHost: speaker\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream
            .take(DEBUG_RESPONSE_MAX_BYTES)
            .read_to_end(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    })
    .await
    .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
    .map_err(io)?;
    let split = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| StatusError::DebugAnswer {
            addr,
            detail: "no HTTP header".into(),
        })?;
    let (head, payload) = body.split_at(split + 4);
    if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
        let line = String::from_utf8_lossy(head.split(|b| *b == b'\r').next().unwrap_or(b""));
        return Err(StatusError::DebugAnswer {
            addr,
            detail: line.into_owned(),
        });
    }
    serde_json::from_slice(payload).map_err(|error| StatusError::DebugAnswer {
        addr,
        detail: error.to_string(),
    })
}

fn join_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_owned()
    } else {
        items.join(",")
    }
}

/// One line per node announcing a Service IP with `protocol`: the node, what it announces
/// `via` (`none` when the list is empty) and since when.
fn write_announcers(
    out: &mut String,
    protocol: &str,
    via: &str,
    none: &str,
    announcers: &[Announcer],
) {
    for announcer in announcers {
        let _ = writeln!(
            out,
            "  {protocol:<8}node {}  {via} {}  since {}",
            announcer.node,
            join_or(&announcer.via, none),
            announcer.since.as_deref().unwrap_or("?")
        );
    }
}

/// The report: one block per Service IP, then the configuration states and the gossip view.
pub fn render(inputs: &StatusInputs) -> String {
    let mut out = String::new();
    if inputs.services.is_empty() {
        out.push_str("no LoadBalancer Services\n");
    }
    for (service, ips) in &inputs.services {
        let layer2 = inputs.layer2.get(service).map_or(&[][..], Vec::as_slice);
        let bgp = inputs.bgp.get(service).map_or(&[][..], Vec::as_slice);
        if ips.is_empty() {
            let _ = writeln!(
                out,
                "{service}: no IP allocated (see the controller's Events on the Service)"
            );
            continue;
        }
        for ip in ips {
            let _ = writeln!(out, "{ip}  {service}");
            write_announcers(&mut out, "layer2", "interfaces", "all", layer2);
            if layer2.len() > 1 {
                let nodes: Vec<&str> = layer2.iter().map(|a| a.node.as_str()).collect();
                let _ = writeln!(
                    out,
                    "  WARNING: {} nodes hold a ServiceL2Status ({}); one owner is expected (a handover in progress, or a split brain)",
                    layer2.len(),
                    nodes.join(", ")
                );
            }
            write_announcers(&mut out, "bgp", "peers", "-", bgp);
            if layer2.is_empty() && bgp.is_empty() {
                let _ = writeln!(out, "  not announced by any node");
            }
            let _ = writeln!(out, "  why the other nodes do not announce:");
            if let Some(owner) = layer2.first() {
                let _ = writeln!(
                    out,
                    "    layer2: one node answers ARP/NDP per IP; the others stand by (owner {})",
                    owner.node
                );
            }
            if let Some(speaker) = &inputs.speaker {
                let decided = speaker.services.get(service);
                match decided {
                    Some(d) => {
                        let l2 = if d.layer2_announced {
                            "announces".to_owned()
                        } else {
                            let mut why = d.layer2_reason.clone().unwrap_or_else(|| "-".into());
                            if let Some(owner) = &d.layer2_owner {
                                let _ = write!(why, " (owner {owner})");
                            }
                            why
                        };
                        let peers: Vec<String> = d.bgp_peers.iter().cloned().collect();
                        let bgp = if peers.is_empty() {
                            d.bgp_reason.clone().unwrap_or_else(|| "-".into())
                        } else {
                            format!("advertises to {}", peers.join(","))
                        };
                        let _ =
                            writeln!(out, "    {} (asked): layer2 {l2}; bgp {bgp}", speaker.node);
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "    {} (asked): does not know this Service (not synced, or another loadBalancerClass)",
                            speaker.node
                        );
                    }
                }
            } else {
                let _ = writeln!(
                    out,
                    "    (pass --gossip ADDR of a speaker's health listener for its reasons)"
                );
            }
            let invalid: Vec<&ComponentState> = inputs
                .components
                .iter()
                .filter(|c| c.result == "Invalid")
                .collect();
            for component in invalid {
                let _ = writeln!(
                    out,
                    "    {}: configuration Invalid: {}",
                    component.name,
                    component.error_summary.replace('\n', "; ")
                );
            }
        }
    }
    if !inputs.components.is_empty() {
        out.push_str("\nconfiguration:\n");
        for component in &inputs.components {
            let _ = write!(out, "  {}  {}", component.name, component.result);
            if !component.error_summary.is_empty() {
                let _ = write!(out, "  {}", component.error_summary.replace('\n', "; "));
            }
            out.push('\n');
        }
    }
    if let Some(speaker) = &inputs.speaker {
        let _ = writeln!(
            out,
            "\nmembership as seen by {} (gossip {}, {}):",
            speaker.node,
            if speaker.gossip {
                "on"
            } else {
                "off: every Node is a candidate"
            },
            if speaker.settled {
                "settled"
            } else {
                "settling"
            }
        );
        for (name, member) in &speaker.members {
            let claims: Vec<String> = member.claims.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "  {name}  {}{}  claims {}",
                if member.active { "active" } else { "dead" },
                if member.leaving { " leaving" } else { "" },
                join_or(&claims, "-")
            );
        }
        for (name, session) in &speaker.sessions {
            let _ = write!(out, "  bgp peer {name} {}  {}", session.peer, session.state);
            if let Some(bfd) = &session.bfd {
                let _ = write!(out, "  bfd {bfd}");
            }
            if let Some(error) = &session.last_error {
                let _ = write!(out, "  last error: {error}");
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{write_announcers, Announcer};

    fn announcer(node: &str, via: &[&str], since: Option<&str>) -> Announcer {
        Announcer {
            node: node.to_owned(),
            via: via.iter().map(|v| (*v).to_owned()).collect(),
            since: since.map(str::to_owned),
        }
    }

    #[test]
    fn announcer_lines_keep_their_columns() {
        let cases = [
            (
                "layer2",
                "interfaces",
                "all",
                announcer("node-a", &[], Some("2026-01-01T00:00:00Z")),
                "  layer2  node node-a  interfaces all  since 2026-01-01T00:00:00Z\n",
            ),
            (
                "layer2",
                "interfaces",
                "all",
                announcer("node-b", &["eth0", "eth1"], None),
                "  layer2  node node-b  interfaces eth0,eth1  since ?\n",
            ),
            (
                "bgp",
                "peers",
                "-",
                announcer("node-c", &[], None),
                "  bgp     node node-c  peers -  since ?\n",
            ),
            (
                "bgp",
                "peers",
                "-",
                announcer("node-c", &["router"], Some("2026-01-02T00:00:00Z")),
                "  bgp     node node-c  peers router  since 2026-01-02T00:00:00Z\n",
            ),
        ];
        for (protocol, via, none, announcer, want) in cases {
            let mut out = String::new();
            write_announcers(&mut out, protocol, via, none, &[announcer]);
            assert_eq!(out, want, "{protocol}");
        }
    }
}
