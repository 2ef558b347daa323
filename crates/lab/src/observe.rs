//! What the client sees, with Linux's own tools: `arping` (who answers ARP), `ndisc6` (who
//! answers NDP), `tcpdump` (gratuitous ARP / unsolicited NA on the LAN) and `curl` (which node's
//! backend answers).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::error::LabError;
use crate::process::ProcessSpec;
use crate::topology::{Lab, CLIENT, LAN_INTERFACE};

/// MAC → node name for every node's LAN interface.
pub fn node_macs(lab: &Lab) -> Result<BTreeMap<String, String>, LabError> {
    let mut macs = BTreeMap::new();
    for node in lab.nodes() {
        macs.insert(lab.mac(&node, LAN_INTERFACE)?, node);
    }
    Ok(macs)
}

/// The MACs in the client's `arping` replies for `ip` (`count` requests, one a second at
/// most `count + 2` seconds), lower-case, in order.
pub fn arping_macs(lab: &Lab, ip: IpAddr, count: u32) -> Vec<String> {
    let count_text = count.to_string();
    let deadline = (count + 2).to_string();
    let text = lab.exec_output(
        CLIENT,
        "arping",
        &[
            "-c",
            &count_text,
            "-w",
            &deadline,
            "-i",
            "0.2",
            "-I",
            LAN_INTERFACE,
            &ip.to_string(),
        ],
    );
    text.lines()
        .filter(|line| line.contains("bytes from"))
        .filter_map(|line| line.split_whitespace().nth(3))
        .map(str::to_lowercase)
        .collect()
}

/// The MAC `ndisc6` resolves `ip` to from the client, if any.
pub fn ndisc6_mac(lab: &Lab, ip: IpAddr) -> Option<String> {
    let text = lab.exec_output(
        CLIENT,
        "ndisc6",
        &["-1", "-r", "3", "-w", "500", &ip.to_string(), LAN_INTERFACE],
    );
    text.lines()
        .find_map(|line| line.strip_prefix("Target link-layer address: "))
        .map(|mac| mac.trim().to_lowercase())
}

/// One HTTP GET from `role` to `http://ip:port/`; the body (the backend's node name), or
/// `None` when nothing answered within `timeout`.
pub fn curl(lab: &Lab, role: &str, ip: IpAddr, port: u16, timeout: Duration) -> Option<String> {
    let url = match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{port}/"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}/"),
    };
    let seconds = format!("{:.1}", timeout.as_secs_f64());
    let mut command = lab.command(role, "curl");
    command.args(["-s", "-f", "--max-time", &seconds, &url]);
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|body| !body.is_empty())
}

/// A `tcpdump` of ARP and neighbour advertisements on the client's LAN interface, as a lab
/// process (`capture-<name>`); lines are read from its log.
#[derive(Debug)]
pub struct Capture {
    name: String,
}

/// A gratuitous ARP or unsolicited NA seen by a [`Capture`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The sender's MAC.
    pub mac: String,
    /// The announced IP.
    pub ip: IpAddr,
    /// When it was captured, in microseconds since the Unix epoch (tcpdump `-tt`), if known.
    pub at_unix_us: Option<u64>,
}

impl Capture {
    /// Starts the capture; waits until tcpdump listens.
    pub fn start(lab: &mut Lab, name: &str) -> Result<Self, LabError> {
        let name = format!("capture-{name}");
        // --immediate-mode: without it libpcap hands packets over in blocks.
        let spec = ProcessSpec::new(
            &name,
            CLIENT,
            "tcpdump",
            &[
                "--immediate-mode",
                "-l",
                "-n",
                "-e",
                "-tt",
                "-i",
                LAN_INTERFACE,
                "arp or (icmp6 and ip6[40] = 136)",
            ],
        );
        lab.spawn(spec)?;
        lab.wait_log(&name, "listening on", Duration::from_secs(20))?;
        Ok(Self { name })
    }

    /// Gratuitous ARP replies/requests (`tell` or `is-at` for the IP itself) and unsolicited
    /// NAs (to ff02::1) seen so far for `ip`.
    pub fn announcements(&self, lab: &Lab, ip: IpAddr) -> Vec<Announcement> {
        let text = lab
            .process(&self.name)
            .map(|process| process.log_text())
            .unwrap_or_default();
        parse_announcements(&text, ip)
    }
}

/// Parses tcpdump `-e -n` lines for announcements of `ip`.
pub fn parse_announcements(text: &str, ip: IpAddr) -> Vec<Announcement> {
    let ip_text = ip.to_string();
    text.lines()
        .filter(|line| match ip {
            IpAddr::V4(_) => {
                line.contains(&format!(
                    "Request who-has {ip_text} (ff:ff:ff:ff:ff:ff) tell {ip_text}"
                )) || line.contains(&format!("Reply {ip_text} is-at"))
                    && line.contains("ff:ff:ff:ff:ff:ff")
            }
            IpAddr::V6(_) => {
                line.contains("ff02::1") && line.contains(&format!("tgt is {ip_text}"))
            }
        })
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let at_unix_us = words.next().and_then(parse_unix_us);
            Some(Announcement {
                mac: words.next()?.to_lowercase(),
                ip,
                at_unix_us,
            })
        })
        .collect()
}

/// `1700000000.123456` (tcpdump `-tt`) in microseconds.
fn parse_unix_us(text: &str) -> Option<u64> {
    let (seconds, fraction) = text.split_once('.')?;
    let seconds: u64 = seconds.parse().ok()?;
    let digits: String = fraction.chars().take(6).collect();
    let micros: u64 = format!("{digits:0<6}").parse().ok()?;
    seconds.checked_mul(1_000_000)?.checked_add(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_from_tcpdump_lines() {
        let text = "\
1700000000.000001 aa:bb:cc:dd:ee:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 192.168.1.240 (ff:ff:ff:ff:ff:ff) tell 192.168.1.240, length 28
1700000000.000002 aa:bb:cc:dd:ee:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Reply 192.168.1.240 is-at aa:bb:cc:dd:ee:01, length 28
1700000000.000003 aa:bb:cc:dd:ee:02 > aa:bb:cc:dd:ee:09, ethertype ARP (0x0806), length 42: Reply 192.168.1.240 is-at aa:bb:cc:dd:ee:02, length 28
1700000000.000004 aa:bb:cc:dd:ee:03 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 192.168.1.241 (ff:ff:ff:ff:ff:ff) tell 192.168.1.241, length 28
1700000000.000005 aa:bb:cc:dd:ee:04 > 33:33:00:00:00:01, ethertype IPv6 (0x86dd), length 86: fd00:1::11 > ff02::1: ICMP6, neighbor advertisement, tgt is fd00:1::240, length 32
";
        let v4: IpAddr = "192.168.1.240"
            .parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let seen: Vec<String> = parse_announcements(text, v4)
            .into_iter()
            .map(|a| a.mac)
            .collect();
        assert_eq!(
            seen,
            ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:01"],
            "unicast replies are not announcements"
        );
        let v6: IpAddr = "fd00:1::240"
            .parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let seen: Vec<String> = parse_announcements(text, v6)
            .into_iter()
            .map(|a| a.mac)
            .collect();
        assert_eq!(seen, ["aa:bb:cc:dd:ee:04"]);
        let first = parse_announcements(text, v4)
            .first()
            .and_then(|a| a.at_unix_us);
        assert_eq!(first, Some(1_700_000_000_000_001));
    }
}
