//! Two speakers gossiping on loopback (plaintext): a starting speaker publishes `leaving` until
//! it has settled, so the others do not elect it for an IP while it announces nothing yet.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{setup, NAMESPACE, WAIT_MAX};
use ironlb_actors::decide::Options;
use ironlb_actors::tree::{GossipSettings, L2Backend, Shared, Speaker, SpeakerConfig};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;

fn free_udp() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settling_speaker_is_published_leaving_until_settled() {
    let (server, client) = setup().await;
    Api::<Node>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "node-b"}}))
                .expect("node"),
        )
        .await
        .expect("node-b");
    let (a, b) = (free_udp(), free_udp());
    let start = |node: &str, bind: SocketAddr, seed: SocketAddr, settle: Duration| {
        let (tx, _rx) = mpsc::channel(64);
        Shared::new(
            SpeakerConfig {
                node: node.into(),
                namespace: NAMESPACE.into(),
                options: Options::default(),
                gossip: Some(GossipSettings {
                    bind,
                    advertise: bind,
                    secret: None,
                    seeds: vec![seed],
                    cluster: "test".into(),
                    settle,
                }),
                l2: L2Backend::Channel(tx),
                http: Vec::new(),
                bgp_shutdown_wait: Duration::from_millis(200),
            },
            Some(client.clone()),
        )
    };
    let shared_a = start("node-a", a, b, Duration::from_millis(200));
    let (speaker_a, handle_a) =
        ractor::Actor::spawn(Some("node-a/speaker".into()), Speaker, shared_a.clone())
            .await
            .expect("a starts");
    // node-b settles for at least 3 s: node-a must see it leaving first, then not.
    let shared_b = start("node-b", b, a, Duration::from_secs(3));
    let (speaker_b, handle_b) =
        ractor::Actor::spawn(Some("node-b/speaker".into()), Speaker, shared_b.clone())
            .await
            .expect("b starts");
    let view_of_b = || {
        shared_a
            .members
            .borrow()
            .as_ref()
            .and_then(|view| view.get("node-b").cloned())
    };
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    while !view_of_b().is_some_and(|m| m.active && m.leaving) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node-b seen leaving while settling"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!*shared_b.settled.borrow(), "node-b has not settled yet");
    while !view_of_b().is_some_and(|m| m.active && !m.leaving) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node-b not leaving once settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(*shared_b.settled.borrow());
    speaker_b.stop(None);
    speaker_a.stop(None);
    let _ = handle_b.await;
    let _ = handle_a.await;
    drop(server);
}
