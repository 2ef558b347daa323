//! BGP end to end (issue 11): three speakers peer with an FRR router (BFD on), the client sits
//! behind the router. ECMP across every node, `externalTrafficPolicy: Local` announced only
//! from nodes with endpoints, a node's death removes only its path, deletion withdraws.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ironlb_e2e::{require_lab, Env, EnvSpec, CONVERGE_TIMEOUT};
use ironlb_lab::manifests::{Family, ServiceSpec, HTTP_PORT, UDP_PORT};
use std::net::SocketAddr;

use ironlb_lab::cluster::speaker_name;
use ironlb_lab::observe::curl;
use ironlb_lab::probe::{ProbeConfig, ProbeProcess};
use ironlb_lab::process::Signal;
use ironlb_lab::topology::CLIENT;

fn bgp_service(name: &str) -> ServiceSpec {
    ServiceSpec::new(name).annotation("metallb.io/address-pool", "bgp-pool")
}

/// The client (behind the router) reaches `ip`; returns the node that answered.
fn reach(env: &Env, ip: IpAddr, among: &[&str]) -> String {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let body = curl(env.lab(), CLIENT, ip, HTTP_PORT, Duration::from_secs(2));
        if let Some(node) = body.filter(|node| among.contains(&node.as_str())) {
            return node;
        }
        assert!(
            Instant::now() < deadline,
            "the client did not reach {ip} on {among:?}; logs in {}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ecmp_local_policy_node_death_and_withdrawal() {
    require_lab!(true);
    let mut spec = EnvSpec::bgp("h2i");
    spec.ipv6_sessions = true;
    let mut env = Env::start(&spec);
    let nodes = env.lab().nodes();
    let all: Vec<&str> = nodes.iter().map(String::as_str).collect();

    let cluster_ip = env
        .cluster
        .create_service(&bgp_service("web"), &nodes)
        .expect("web");
    assert!(
        matches!(cluster_ip, IpAddr::V4(v4) if v4.octets()[..3] == [192, 168, 10]),
        "{cluster_ip} comes from bgp-pool"
    );
    env.wait_next_hops(cluster_ip, &all);
    reach(&env, cluster_ip, &all);

    // IPv6 (over the IPv6 sessions): the same ECMP, next hops are the nodes' IPv6 addresses.
    let mut web6 = bgp_service("web6");
    web6.family = Family::V6;
    let ip6 = env.cluster.create_service(&web6, &nodes).expect("web6");
    assert!(ip6.is_ipv6(), "{ip6} is IPv6");
    env.wait_next_hops(ip6, &all);
    reach(&env, ip6, &all);

    let mut local = bgp_service("local");
    local.local = true;
    let local_ip = env
        .cluster
        .create_service(&local, &["node2".to_owned()])
        .expect("local");
    env.wait_next_hops(local_ip, &["node2"]);
    assert_eq!(reach(&env, local_ip, &all), "node2");

    // node3 dies: only its path goes; the others keep serving.
    env.cluster.lab.kill_node("node3").expect("kill node3");
    env.wait_next_hops(cluster_ip, &["node1", "node2"]);
    env.wait_next_hops(local_ip, &["node2"]);
    reach(&env, cluster_ip, &["node1", "node2"]);

    // Deleting a Service withdraws its route from every node.
    env.cluster
        .delete(&bgp_service("web").yaml())
        .expect("delete");
    env.wait_next_hops(cluster_ip, &[]);
    env.wait_next_hops(local_ip, &["node2"]);
}

#[test]
fn graceful_restart_keeps_the_route_and_sigterm_loses_no_request() {
    require_lab!(true);
    let mut spec = EnvSpec::bgp("h2j");
    spec.graceful_restart = true;
    let mut env = Env::start(&spec);
    let nodes = env.lab().nodes();
    let all: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let ip = env
        .cluster
        .create_service(&bgp_service("web"), &nodes)
        .expect("web");
    env.wait_next_hops(ip, &all);
    let router_has_session = |env: &Env, node: &str| {
        let address = IpAddr::V4(env.lab().v4(node).expect("node address"));
        env.router
            .as_ref()
            .is_some_and(|router| router.established().contains(&address))
    };
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while !all.iter().all(|node| router_has_session(&env, node)) {
        assert!(
            Instant::now() < deadline,
            "sessions not established; logs in {}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Graceful restart: node1's speaker dies (its backend keeps running) and comes back; the
    // router keeps node1's path throughout (stale, then refreshed).
    env.kill_speaker("node1");
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        assert_eq!(
            env.next_hop_nodes(ip).as_deref(),
            Some(&nodes[..]),
            "the router kept every path while node1's speaker was down; logs in {}",
            env.logs()
        );
    }
    env.cluster
        .lab
        .restart(&speaker_name("node1"))
        .expect("restart speaker");
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while !router_has_session(&env, "node1") {
        assert_eq!(
            env.next_hop_nodes(ip).as_deref(),
            Some(&nodes[..]),
            "the router kept every path until node1's speaker was back; logs in {}",
            env.logs()
        );
        assert!(
            Instant::now() < deadline,
            "node1 did not re-establish; logs in {}",
            env.logs()
        );
    }
    env.wait_next_hops(ip, &all);

    // Planned handover: the node serving the probe's flow gets SIGTERM; its speaker shuts the
    // routes down gracefully, then withdraws. No request may go unanswered.
    let binary = env.cluster.binary().display().to_string();
    let mut command = env.lab().command(CLIENT, &binary);
    command.args(ProbeProcess::args(&ProbeConfig::udp(SocketAddr::new(
        ip, UDP_PORT,
    ))));
    let probe = ProbeProcess::spawn(command).expect("probe");
    assert!(
        probe.wait_for_answers(None, 0, 30, CONVERGE_TIMEOUT),
        "the probe got answers"
    );
    let serving = probe
        .log()
        .last_answer()
        .map(|answer| answer.node.clone())
        .expect("an answer");
    env.cluster
        .lab
        .signal(&speaker_name(&serving), Signal::Term)
        .expect("sigterm");
    let others: Vec<&str> = all
        .iter()
        .copied()
        .filter(|node| *node != serving)
        .collect();
    env.wait_next_hops(ip, &others);
    env.cluster
        .lab
        .wait_exit(&speaker_name(&serving), CONVERGE_TIMEOUT)
        .expect("the speaker exits after its handover");
    let after = probe.latest_us();
    assert!(
        probe.wait_for_answers(None, after, 30, CONVERGE_TIMEOUT),
        "answers after the handover"
    );
    let log = probe.stop().expect("probe log");
    let lost: Vec<u64> = log
        .samples
        .iter()
        .filter(|sample| sample.answer.is_none())
        .map(|sample| sample.seq)
        .collect();
    assert!(
        lost.is_empty(),
        "requests {lost:?} of {} went unanswered during the planned handover of {serving}; logs in {}",
        log.samples.len(),
        env.logs()
    );
}
