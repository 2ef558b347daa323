//! serf (HashiCorp's memberlist, the failure detector MetalLB's speakers use) as MetalLB's
//! lower bound: one `serf agent` per node with the default LAN profile and encryption on. Its
//! time-to-detect a dead node is the first `EventMemberFailed: <node>` logged by a survivor; a
//! MetalLB speaker cannot move an IP before that, so MetalLB's outage is at least this long.

use crate::error::LabError;
use crate::process::ProcessSpec;
use crate::topology::Lab;

/// serf's binary (Debian's package).
pub const SERF: &str = "serf";
/// serf's gossip port.
pub const PORT: u16 = 7946;

/// The process name of the serf agent on `node`.
pub fn process_name(node: &str) -> String {
    format!("serf-{node}")
}

/// serf's `-encrypt` key: `bytes` (16, 24 or 32 of them) in standard base64.
pub fn encrypt_key(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The `serf agent` arguments for `node`: bound to its LAN address, joining (and re-joining
/// every second after a restart) every other node.
pub fn agent_args(lab: &Lab, node: &str, key_base64: &str) -> Result<Vec<String>, LabError> {
    let mut args = vec![
        "agent".to_owned(),
        format!("-node={node}"),
        format!("-bind={}:{PORT}", lab.v4(node)?),
        format!("-encrypt={key_base64}"),
        "-profile=lan".to_owned(),
        "-log-level=info".to_owned(),
        "-retry-interval=1s".to_owned(),
    ];
    for other in lab.nodes() {
        if other != node {
            args.push(format!("-retry-join={}:{PORT}", lab.v4(&other)?));
        }
    }
    Ok(args)
}

/// Starts the serf agent of `node`.
pub fn start(lab: &mut Lab, node: &str, key_base64: &str) -> Result<(), LabError> {
    let args = agent_args(lab, node, key_base64)?;
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.spawn(ProcessSpec::new(&process_name(node), node, SERF, &refs))
}

/// How many times a serf log says `event` (`EventMemberFailed`, `EventMemberJoin`) about `node`.
pub fn count_events(log: &str, event: &str, node: &str) -> usize {
    let needle = format!("{event}: {node} ");
    log.lines().filter(|line| line.contains(&needle)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_key_is_standard_base64() {
        assert_eq!(encrypt_key(b"foobar"), "Zm9vYmFy");
        assert_eq!(encrypt_key(&[0xff; 16]).len(), 24);
    }

    #[test]
    fn counts_events_of_one_node() {
        let log = "2026/11/23 23:00:00 [INFO] serf: EventMemberJoin: node1 192.168.1.11\n\
                   2026/11/23 23:00:05 [INFO] serf: EventMemberFailed: node1 192.168.1.11\n\
                   2026/11/23 23:00:06 [INFO] serf: EventMemberFailed: node12 192.168.1.22\n";
        assert_eq!(count_events(log, "EventMemberFailed", "node1"), 1);
        assert_eq!(count_events(log, "EventMemberJoin", "node1"), 1);
        assert_eq!(count_events(log, "EventMemberJoin", "node2"), 0);
    }
}
