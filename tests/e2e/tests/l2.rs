//! Layer 2 end to end: three `ironlb speaker` processes in node namespaces, the API stand-in and
//! the controller in the control-plane namespace, a client on the LAN (issue 8's namespace
//! tests, issue 11's L2 flows). Every test builds its own lab (prefix `h2<letter>`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ironlb_e2e::{require_lab, Env, EnvSpec, CONVERGE_TIMEOUT};
use ironlb_lab::cluster::speaker_name;
use ironlb_lab::manifests::ServiceSpec;
use ironlb_lab::observe::Capture;
use ironlb_lab::process::Signal;

fn all_nodes(env: &Env) -> Vec<String> {
    env.lab().nodes()
}

fn in_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            (a, b, c) == (192, 168, 1) && (240..=250).contains(&d)
        }
        IpAddr::V6(_) => false,
    }
}

#[test]
fn service_gets_one_owner_that_answers_arp_and_http() {
    require_lab!(false);
    let env = Env::start(&EnvSpec::l2("h2a"));
    let spec = ServiceSpec::new("web");
    let ip = env
        .cluster
        .create_service(&spec, &all_nodes(&env))
        .expect("service");
    assert!(in_range(ip), "{ip} comes from the tutorial's range");
    let owner = env.wait_single_owner("web", ip);
    env.wait_curl_answered_by(ip, &owner);
    // Still exactly one answerer a moment later (no flapping, no second announcer).
    assert_eq!(env.arp_answerers(ip), vec![owner.clone()]);
    let text = env
        .cluster
        .kubectl(&["get", "svc", "web", "-n", "default"])
        .expect("kubectl get svc");
    assert!(text.contains(&ip.to_string()), "EXTERNAL-IP shown: {text}");
}

#[test]
fn local_traffic_policy_announces_only_from_nodes_with_endpoints() {
    require_lab!(false);
    let env = Env::start(&EnvSpec::l2("h2b"));
    let mut spec = ServiceSpec::new("local");
    spec.local = true;
    let ip = env
        .cluster
        .create_service(&spec, &["node2".to_owned()])
        .expect("service");
    assert_eq!(env.wait_single_owner("local", ip), "node2");
    env.wait_curl_answered_by(ip, "node2");
    // The endpoint moves to node3: so does the IP (node2 has no endpoint left).
    env.cluster
        .set_endpoints(&spec, &["node3".to_owned()])
        .expect("endpoints");
    assert_eq!(
        env.wait_single_owner_not("local", ip, Some("node2")),
        "node3"
    );
    env.wait_curl_answered_by(ip, "node3");
}

#[test]
fn node_selector_and_exclude_label_are_honoured() {
    require_lab!(false);
    let mut env_spec = EnvSpec::l2("h2c");
    env_spec.l2 = false;
    env_spec.node_labels = vec![
        ("node1".into(), "lab/announce".into(), "yes".into()),
        ("node2".into(), "lab/announce".into(), "yes".into()),
        (
            "node1".into(),
            "node.kubernetes.io/exclude-from-external-load-balancers".into(),
            "".into(),
        ),
    ];
    let env = Env::start(&env_spec);
    // Only nodes labelled lab/announce=yes may announce (node1, node2), and node1 is excluded
    // from external load balancers: node2 must own every Service.
    env.cluster
        .apply(
            "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: metallb-system
spec:
  addresses:
  - 192.168.1.240-192.168.1.250
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: selected
  namespace: metallb-system
spec:
  ipAddressPools:
  - first-pool
  nodeSelectors:
  - matchLabels:
      lab/announce: \"yes\"
",
        )
        .expect("config");
    for name in ["s1", "s2", "s3", "s4"] {
        let ip = env
            .cluster
            .create_service(&ServiceSpec::new(name), &all_nodes(&env))
            .expect("service");
        assert_eq!(env.wait_single_owner(name, ip), "node2", "{name} ({ip})");
    }
}

#[test]
fn killed_speaker_is_replaced_and_does_not_take_the_ip_back() {
    require_lab!(false);
    let mut env = Env::start(&EnvSpec::l2("h2d"));
    let ip = env
        .cluster
        .create_service(&ServiceSpec::new("web"), &all_nodes(&env))
        .expect("service");
    let owner = env.wait_single_owner("web", ip);
    let mut capture = Capture::start(&mut env.cluster.lab, "takeover").expect("tcpdump");
    let before = capture.announcements(env.lab(), ip).len();

    env.kill_speaker(&owner);
    let successor = env.wait_takeover("web", ip, &owner);
    // The successor announced itself with gratuitous ARP.
    let successor_macs: Vec<String> = env
        .node_of_mac
        .iter()
        .filter(|(_, node)| **node == successor)
        .map(|(mac, _)| mac.clone())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = capture.announcements(env.lab(), ip);
        if seen[before.min(seen.len())..]
            .iter()
            .any(|a| successor_macs.contains(&a.mac))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no gratuitous ARP from {successor} for {ip}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    env.wait_curl_answered_by(ip, &successor);

    // The old owner's speaker comes back: ownership is sticky, it must not take the IP back.
    env.cluster
        .lab
        .restart(&speaker_name(&owner))
        .expect("restart speaker");
    capture = Capture::start(&mut env.cluster.lab, "return").expect("tcpdump");
    // Watch for longer than the restarted speaker may take to start, settle (--gossip-settle
    // 1 s, plus at most 4 s waiting for the others' claims) and elect.
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        assert_eq!(
            env.arp_answerers(ip),
            vec![successor.clone()],
            "only {successor} answers after {owner} came back; logs in {}",
            env.logs()
        );
    }
    let returning: Vec<String> = env
        .node_of_mac
        .iter()
        .filter(|(_, node)| **node == owner)
        .map(|(mac, _)| mac.clone())
        .collect();
    assert!(
        !capture
            .announcements(env.lab(), ip)
            .iter()
            .any(|a| returning.contains(&a.mac)),
        "{owner} sent no gratuitous ARP for {ip} after its restart"
    );
    // The restarted speaker, not the owner, deleted the status object it had left behind.
    env.wait_status("web", &[successor.as_str()]);
}

#[test]
fn sigterm_hands_over_without_a_gap_in_arp_answers() {
    require_lab!(false);
    let mut env = Env::start(&EnvSpec::l2("h2e"));
    let ip = env
        .cluster
        .create_service(&ServiceSpec::new("web"), &all_nodes(&env))
        .expect("service");
    let owner = env.wait_single_owner("web", ip);
    env.cluster
        .lab
        .signal(&speaker_name(&owner), Signal::Term)
        .expect("sigterm");
    // One ARP request at a time, each waiting up to 1 s for an answer, throughout the
    // handover and until the old speaker has exited: every one must be answered.
    let mut asked = 0;
    let mut unanswered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let exited = env
            .cluster
            .lab
            .wait_exit(&speaker_name(&owner), Duration::from_millis(1))
            .is_ok();
        let answerers = ironlb_lab::observe::arping_macs(env.lab(), ip, 1);
        asked += 1;
        if answerers.is_empty() {
            unanswered.push(asked);
        }
        if exited && asked >= 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the speaker on {owner} did not exit after SIGTERM; logs in {}",
            env.logs()
        );
    }
    assert!(
        unanswered.is_empty(),
        "ARP requests {unanswered:?} of {asked} went unanswered during the handover; logs in {}",
        env.logs()
    );
    let successor = env.wait_takeover("web", ip, &owner);
    env.wait_curl_answered_by(ip, &successor);
    // A node that hands over on purpose deletes its ServiceL2Status before it exits.
    env.wait_status("web", &[successor.as_str()]);
}

#[test]
fn without_the_api_server_announcements_and_failover_continue() {
    require_lab!(false);
    let mut env = Env::start(&EnvSpec::l2("h2f"));
    let ip = env
        .cluster
        .create_service(&ServiceSpec::new("web"), &all_nodes(&env))
        .expect("service");
    let owner = env.wait_single_owner("web", ip);
    env.kill_apiserver();
    // Announcements continue from the last known state.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(env.arp_answerers(ip), vec![owner.clone()]);
    }
    // A node dies: gossip alone moves its IP to a survivor.
    env.cluster.lab.kill_node(&owner).expect("kill node");
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let successor = loop {
        let answerers = env.arp_answerers(ip);
        if answerers.len() == 1 && answerers[0] != owner {
            break answerers[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no survivor took {ip} without the API server: {answerers:?}; logs in {}",
            env.logs()
        );
    };
    env.wait_curl_answered_by(ip, &successor);
    // And a second node's death too: the last node takes it.
    env.cluster.lab.kill_node(&successor).expect("kill node");
    let last = env
        .lab()
        .nodes()
        .into_iter()
        .find(|node| *node != owner && *node != successor)
        .expect("three nodes");
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while env.arp_answerers(ip) != vec![last.clone()] {
        assert!(
            Instant::now() < deadline,
            "{last} did not take {ip} after the second death; logs in {}",
            env.logs()
        );
    }
    env.wait_curl_answered_by(ip, &last);
}
