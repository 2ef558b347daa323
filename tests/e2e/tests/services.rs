//! Services end to end (issue 11): IPv6 with NDP, a shared IP, the pool annotation, a
//! controller restart that changes no IP, and deletion that withdraws the announcement. Each
//! test builds its own lab (prefix `h2<letter>`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ironlb_e2e::{require_lab, Env, EnvSpec, CONVERGE_TIMEOUT};
use ironlb_lab::manifests::{Family, ServiceSpec, HTTP_PORT, UDP_PORT};
use ironlb_lab::observe::ndisc6_mac;

#[test]
fn ipv6_service_is_resolved_by_ndp_to_its_single_owner() {
    require_lab!(false);
    let mut spec = EnvSpec::l2("h2g");
    spec.ipv6 = true;
    let env = Env::start(&spec);
    let mut service = ServiceSpec::new("web6");
    service.family = Family::V6;
    let ip = env
        .cluster
        .create_service(&service, &env.lab().nodes())
        .expect("service");
    assert!(ip.is_ipv6(), "an IPv6 Service gets an IPv6 address: {ip}");
    // The owner per ServiceL2Status; then the client's NDP must resolve to that node's MAC.
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let owner = loop {
        let status = env.cluster.l2_status_nodes("default", "web6");
        let resolved = ndisc6_mac(env.lab(), ip).and_then(|mac| env.node_of_mac.get(&mac).cloned());
        if status.len() == 1 && resolved.as_ref() == status.first() {
            break status[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{ip}: ServiceL2Status on {status:?}, ndisc6 resolved to {resolved:?}; logs in {}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    env.wait_curl_answered_by(ip, &owner);
}

#[test]
fn shared_ip_pool_annotation_controller_restart_and_deletion() {
    require_lab!(false);
    let mut env = Env::start(&EnvSpec::l2("h2h"));
    let nodes = env.lab().nodes();
    // A second pool that is only used on request, announced too.
    env.cluster
        .apply(
            "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: second-pool
  namespace: metallb-system
spec:
  addresses:
  - 192.168.1.230-192.168.1.235
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: second
  namespace: metallb-system
spec:
  ipAddressPools:
  - second-pool
",
        )
        .expect("second pool");

    // Two Services, one sharing key, different ports: one IP, one owner for both.
    let mut tcp = ServiceSpec::new("shared-tcp").annotation("metallb.io/allow-shared-ip", "web");
    tcp.ports.retain(|(_, port, _)| *port == HTTP_PORT);
    let mut udp = ServiceSpec::new("shared-udp").annotation("metallb.io/allow-shared-ip", "web");
    udp.ports.retain(|(_, port, _)| *port == UDP_PORT);
    let shared = env
        .cluster
        .create_service(&tcp, &nodes)
        .expect("shared-tcp");
    let shared_too = env
        .cluster
        .create_service(&udp, &nodes)
        .expect("shared-udp");
    assert_eq!(shared, shared_too, "both Services share one IP");
    let owner = env.wait_single_owner("shared-tcp", shared);
    assert_eq!(
        env.wait_single_owner("shared-udp", shared),
        owner,
        "one node announces a shared IP for every Service on it"
    );
    env.wait_curl_answered_by(shared, &owner);

    // The pool annotation picks the pool.
    let pinned_spec =
        ServiceSpec::new("pinned").annotation("metallb.io/address-pool", "second-pool");
    let pinned = env
        .cluster
        .create_service(&pinned_spec, &nodes)
        .expect("pinned");
    match pinned {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            assert!(
                (a, b, c) == (192, 168, 1) && (230..=235).contains(&d),
                "{pinned} comes from second-pool"
            );
        }
        IpAddr::V6(_) => panic!("{pinned} is not IPv4"),
    }
    let pinned_owner = env.wait_single_owner("pinned", pinned);
    env.wait_curl_answered_by(pinned, &pinned_owner);

    // A controller restart changes no IP: once a Service created after the restart has its
    // IP (the new controller has synced), the others still have theirs.
    env.restart_controller();
    let after = env
        .cluster
        .create_service(&ServiceSpec::new("after-restart"), &nodes)
        .expect("after-restart");
    assert!(
        after != shared && after != pinned,
        "the restarted controller hands out a free IP ({after})"
    );
    for (name, ip) in [
        ("shared-tcp", shared),
        ("shared-udp", shared),
        ("pinned", pinned),
    ] {
        assert_eq!(
            env.cluster.service_ips("default", name),
            vec![ip],
            "{name} kept its IP across the controller restart"
        );
    }

    // Deleting a Service withdraws its IP everywhere: no node answers ARP, no status left.
    env.cluster
        .delete(&pinned_spec.yaml())
        .expect("delete pinned");
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let answerers = env.arp_answerers(pinned);
        let status = env.cluster.l2_status_nodes("default", "pinned");
        if answerers.is_empty() && status.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pinned} still answered by {answerers:?}, status on {status:?}; logs in {}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The others are untouched.
    assert_eq!(env.arp_answerers(shared), vec![owner]);
}
