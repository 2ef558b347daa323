//! BGP end to end (issue 11): three speakers peer with an FRR router (BFD on), the client sits
//! behind the router. ECMP across every node, `externalTrafficPolicy: Local` announced only
//! from nodes with endpoints, a node's death removes only its path, deletion withdraws.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ironlb_e2e::{require_lab, Env, EnvSpec, CONVERGE_TIMEOUT};
use ironlb_lab::manifests::{ServiceSpec, HTTP_PORT};
use ironlb_lab::observe::curl;
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
    let mut env = Env::start(&EnvSpec::bgp("h2i"));
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
