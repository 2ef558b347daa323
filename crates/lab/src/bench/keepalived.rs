//! keepalived (Debian's package) as the classic single-VIP failover: one VRRPv3 instance per
//! node on the LAN interface, all `state BACKUP` with the same priority and `nopreempt` (the
//! usual configuration for a shared VIP: a revived node does not take the VIP back, so only the
//! kills move it), the VIP on the LAN interface itself.

use std::net::Ipv4Addr;

use crate::error::LabError;
use crate::process::ProcessSpec;
use crate::topology::{Lab, LAN_INTERFACE};

/// keepalived's binary on Debian.
pub const KEEPALIVED: &str = "/usr/sbin/keepalived";
/// The smallest `advert_int` Debian's keepalived (2.2.7) accepts for VRRPv3, in centiseconds
/// (it rejects `0.001` with "outside range [0.010000, 255.000000]").
pub const ADVERT_INT_CS_MIN: u32 = 1;
/// The VRID of the bench's instance.
const VIRTUAL_ROUTER_ID: u8 = 51;
/// keepalived's default priority.
const PRIORITY: u8 = 100;

/// The process name of keepalived on `node`.
pub fn process_name(node: &str) -> String {
    format!("keepalived-{node}")
}

/// `advert_int` in centiseconds as keepalived's config writes it (`1`, `0.04`, `0.01`).
pub fn advert_int_text(advert_int_cs: u32) -> String {
    if advert_int_cs.is_multiple_of(100) {
        (advert_int_cs / 100).to_string()
    } else {
        format!("{}.{:02}", advert_int_cs / 100, advert_int_cs % 100)
    }
}

/// The configuration of `node`'s keepalived for `vip` at `advert_int_cs` centiseconds.
pub fn config(node: &str, vip: Ipv4Addr, advert_int_cs: u32) -> String {
    let advert_int = advert_int_text(advert_int_cs);
    format!(
        "global_defs {{
  router_id {node}
  vrrp_version 3
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface {LAN_INTERFACE}
  virtual_router_id {VIRTUAL_ROUTER_ID}
  priority {PRIORITY}
  advert_int {advert_int}
  nopreempt
  virtual_ipaddress {{
    {vip}/32 dev {LAN_INTERFACE}
  }}
}}
"
    )
}

/// Writes `node`'s configuration and starts keepalived (VRRP only, in the foreground, logging
/// to its lab log) in the node's namespace.
pub fn start(lab: &mut Lab, node: &str, vip: Ipv4Addr, advert_int_cs: u32) -> Result<(), LabError> {
    let config_path = lab.write_file(
        &format!("keepalived-{node}.conf"),
        &config(node, vip, advert_int_cs),
    )?;
    let dir = lab.dir().to_owned();
    let pid = dir
        .join(format!("keepalived-{node}.pid"))
        .display()
        .to_string();
    let vrrp_pid = dir
        .join(format!("keepalived-vrrp-{node}.pid"))
        .display()
        .to_string();
    let config_text = config_path.display().to_string();
    // keepalived refuses to start while its pid files name a live process; after a kill -9 the
    // files stay and their pids may have been reused by then, so a revival removes them first.
    // `exec` keeps the pid, so the lab still signals keepalived itself.
    let script = format!(
        "rm -f '{pid}' '{vrrp_pid}'; exec {KEEPALIVED} --dont-fork --log-console --vrrp \
         --use-file '{config_text}' --pid '{pid}' --vrrp_pid '{vrrp_pid}'"
    );
    let spec = ProcessSpec::new(&process_name(node), node, "/bin/sh", &["-c", &script]);
    lab.spawn(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advert_int_texts() {
        for (centiseconds, want) in [
            (100, "1"),
            (4, "0.04"),
            (1, "0.01"),
            (10, "0.10"),
            (150, "1.50"),
        ] {
            assert_eq!(advert_int_text(centiseconds), want);
        }
    }

    #[test]
    fn config_has_the_instance() {
        let text = config("node1", Ipv4Addr::new(192, 168, 1, 240), 4);
        for needle in [
            "vrrp_version 3",
            "advert_int 0.04",
            "nopreempt",
            "192.168.1.240/32 dev eth0",
            "router_id node1",
        ] {
            assert!(text.contains(needle), "{needle} missing in {text}");
        }
    }
}
