//! The lab itself, as root: the LAN connects every namespace, a node's death cuts its link and
//! kills its processes, its revival restarts them, the kube-proxy stand-in's addresses are
//! never answered by the kernel's ARP (`arp_ignore`), and dropping the lab removes every
//! namespace of its prefix. Skips with a printed reason when not root or tools are missing.

use std::net::IpAddr;
use std::time::Duration;

use ironlb_lab::observe::arping_macs;
use ironlb_lab::process::ProcessSpec;
use ironlb_lab::topology::{
    is_root, missing_tools, Lab, LabSpec, Tool, CLIENT, KUBE_PROXY_INTERFACE, TOOLS_BASE,
};

fn skip() -> bool {
    if !is_root() {
        eprintln!("skipped: network namespaces need root");
        return true;
    }
    let mut tools = TOOLS_BASE.to_vec();
    tools.extend_from_slice(&[
        Tool {
            program: "arping",
            package: "arping",
        },
        Tool {
            program: "ping",
            package: "iputils-ping",
        },
        Tool {
            program: "sleep",
            package: "coreutils",
        },
    ]);
    let missing = missing_tools(&tools);
    if !missing.is_empty() {
        eprintln!("skipped: missing {missing:?} (scripts/install-deps.sh)");
        return true;
    }
    false
}

fn pings(lab: &Lab, address: &str) -> bool {
    lab.exec(CLIENT, "ping", &["-c", "1", "-W", "1", address])
        .is_ok()
}

fn namespaces(prefix: &str) -> Vec<String> {
    let list = ironlb_lab::topology::run("ip", &["netns", "list"]).unwrap_or_default();
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(&format!("{prefix}-")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn node_death_revival_kube_proxy_and_cleanup() {
    if skip() {
        return;
    }
    let mut lab = Lab::create(LabSpec::new("h2z", 2)).expect("lab");
    assert_eq!(
        namespaces("h2z").len(),
        5,
        "sw, client, cp, node1, node2: {:?}",
        namespaces("h2z")
    );
    for node in ["node1", "node2"] {
        let address = lab.v4(node).expect("address").to_string();
        assert!(
            pings(&lab, &address),
            "the client reaches {node} on the LAN"
        );
    }
    let v6 = lab.v6("node1").expect("v6").to_string();
    assert!(pings(&lab, &v6), "and over IPv6");

    // arping works (a node's own address is answered by its MAC) …
    let node1_ip: IpAddr = lab.v4("node1").expect("address").into();
    let node1_mac = lab.mac("node1", "eth0").expect("mac");
    assert_eq!(arping_macs(&lab, node1_ip, 1), vec![node1_mac]);
    // … and the kube-proxy stand-in's IP is local to every node, yet no kernel answers ARP
    // for it.
    let service: IpAddr = "192.168.1.240".parse().expect("ip");
    lab.kube_proxy_add(service).expect("kube-proxy");
    for node in ["node1", "node2"] {
        let addresses = lab
            .ip(node, &["-br", "addr", "show", "dev", KUBE_PROXY_INTERFACE])
            .expect("addresses");
        assert!(
            addresses.contains("192.168.1.240/32"),
            "{node}: {addresses}"
        );
    }
    assert_eq!(
        arping_macs(&lab, service, 2),
        Vec::<String>::new(),
        "arp_ignore=1: only an announcer may answer ARP for a Service IP"
    );

    // A node's death: link down, every process killed; revival restarts them.
    lab.spawn(ProcessSpec::new("idle", "node1", "sleep", &["1000"]))
        .expect("spawn");
    let pid = lab.process("idle").expect("idle").pid();
    lab.kill_node("node1").expect("kill node1");
    assert!(
        lab.wait_exit("idle", Duration::from_secs(5)).is_ok(),
        "the node's processes are dead"
    );
    let node1 = lab.v4("node1").expect("address").to_string();
    assert!(!pings(&lab, &node1), "a dead node's link is down");
    lab.revive_node("node1").expect("revive");
    assert!(pings(&lab, &node1), "a revived node is reachable again");
    let process = lab.process("idle").expect("idle");
    assert_ne!(process.pid(), pid, "its process was started again");

    drop(lab);
    assert_eq!(namespaces("h2z"), Vec::<String>::new(), "the lab is gone");
}
