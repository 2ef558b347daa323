//! The `Bgp` actor in the tree, against the in-process API stand-in: two BGPPeers pointing at
//! closed loopback ports (the sessions keep retrying, no packet leaves the host). The Service
//! gets a `ServiceBGPStatus` naming both peers, the speaker writes `ConfigurationState
//! speaker-<node>`, a panic in one session restarts that session only (the other session, Bgp
//! and Layer2 keep running), removing a peer stops its session and updates the status, and a
//! planned shutdown deletes the node's status objects before it returns.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{create, next_command, resource, setup, wait_list, NAMESPACE, WAIT_MAX};
use ironlb_actors::tree::{BgpMsg, Layer2Msg, SessionMsg, SpeakerMsg};
use ironlb_announce::l2::io::driver::Command;
use kube::api::{Api, DynamicObject};
use ractor::{ActorCell, ActorRef};
use serde_json::json;
use tokio::sync::mpsc;

fn peers_of(object: &DynamicObject) -> Vec<String> {
    object.data["status"]["peers"]
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn sessions(bgp: &ActorRef<BgpMsg>) -> BTreeMap<String, ActorCell> {
    ractor::call_t!(bgp, BgpMsg::Sessions, 5000).expect("sessions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bgp_sessions_status_and_a_crashed_session() {
    let (server, client) = setup().await;
    for (name, address) in [("peer-a", "127.0.0.2"), ("peer-b", "127.0.0.3")] {
        create(
            &client,
            "BGPPeer",
            "bgppeers",
            json!({
                "apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
                "metadata": {"name": name},
                "spec": {"myASN": 64500, "peerASN": 64501, "peerAddress": address,
                         "peerPort": 1}
            }),
        )
        .await;
    }
    create(
        &client,
        "BGPAdvertisement",
        "bgpadvertisements",
        json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
            "metadata": {"name": "bgp"},
            "spec": {"ipAddressPools": ["pool-a"]}
        }),
    )
    .await;
    let (tx, mut rx) = mpsc::channel(64);
    let (speaker, handle, shared) =
        common::start_speaker(&client, tx, Vec::new(), Duration::from_millis(200)).await;
    // Layer 2 announces too (the pool has both advertisements).
    assert!(matches!(
        next_command(&mut rx).await,
        Command::Announce { .. }
    ));

    let statuses = wait_list(
        &client,
        "ServiceBGPStatus",
        "servicebgpstatuses",
        "a ServiceBGPStatus naming both peers",
        |items| items.iter().any(|o| peers_of(o) == ["peer-a", "peer-b"]),
    )
    .await;
    let status = &statuses[0];
    assert_eq!(status.data["status"]["node"], "node-a");
    assert_eq!(status.data["status"]["serviceName"], "web");
    assert_eq!(
        status.metadata.labels.as_ref().expect("labels")["metallb.io/node"],
        "node-a"
    );
    let states = wait_list(
        &client,
        "ConfigurationState",
        "configurationstates",
        "ConfigurationState speaker-node-a Valid",
        |items| {
            items.iter().any(|o| {
                o.metadata.name.as_deref() == Some("speaker-node-a")
                    && o.data["status"]["result"] == "Valid"
            })
        },
    )
    .await;
    let state = states
        .iter()
        .find(|o| o.metadata.name.as_deref() == Some("speaker-node-a"))
        .expect("state");
    assert_eq!(
        state.data["status"]["conditions"][0]["type"],
        "configReconcilerValid"
    );
    assert_eq!(
        state.metadata.labels.as_ref().expect("labels")["metallb.io/component-type"],
        "speaker"
    );
    let routes = shared.bgp_sessions.borrow().clone();
    assert_eq!(routes.len(), 2, "{routes:?}");
    assert!(routes.values().all(|s| s.prefixes == 1), "{routes:?}");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &shared.metrics.registry())
        .expect("encode");
    assert!(
        text.contains("metallb_speaker_announced{service=\"default/web\",protocol=\"bgp\",node=\"node-a\",ip=\"10.20.0.5\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("metallb_speaker_announced{service=\"default/web\",protocol=\"layer2\",node=\"node-a\",ip=\"10.20.0.5\"} 1"),
        "{text}"
    );

    // A panic in peer-a's session: it is restarted; peer-b's session, Bgp and Layer2 are not.
    let bgp: ActorRef<BgpMsg> = ActorRef::where_is("node-a/bgp").expect("bgp");
    let layer2: ActorRef<Layer2Msg> = ActorRef::where_is("node-a/layer2").expect("layer2");
    let before = sessions(&bgp).await;
    let crashed: ActorRef<SessionMsg> = before["peer-a"].clone().into();
    crashed.cast(SessionMsg::Panic).expect("cast");
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    let after = loop {
        let now = sessions(&bgp).await;
        if now
            .get("peer-a")
            .is_some_and(|cell| cell.get_id() != before["peer-a"].get_id())
        {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "peer-a not restarted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(after["peer-b"].get_id(), before["peer-b"].get_id());
    let bgp_after: ActorRef<BgpMsg> = ActorRef::where_is("node-a/bgp").expect("bgp");
    assert_eq!(bgp_after.get_id(), bgp.get_id());
    let layer2_after: ActorRef<Layer2Msg> = ActorRef::where_is("node-a/layer2").expect("layer2");
    assert_eq!(layer2_after.get_id(), layer2.get_id());
    assert!(
        rx.try_recv().is_err(),
        "layer 2 did not re-announce: it never stopped"
    );
    // The restarted session found its routes again.
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    while shared
        .bgp_sessions
        .borrow()
        .get("peer-a")
        .is_none_or(|s| s.prefixes != 1)
    {
        assert!(tokio::time::Instant::now() < deadline, "routes of peer-a");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // peer-b removed: its session stops and the status names peer-a only.
    Api::<DynamicObject>::namespaced_with(
        client.clone(),
        NAMESPACE,
        &resource("BGPPeer", "bgppeers"),
    )
    .delete("peer-b", &Default::default())
    .await
    .expect("delete peer");
    wait_list(
        &client,
        "ServiceBGPStatus",
        "servicebgpstatuses",
        "the ServiceBGPStatus without peer-b",
        |items| items.len() == 1 && peers_of(&items[0]) == ["peer-a"],
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    while sessions(&bgp).await.contains_key("peer-b")
        || shared.bgp_sessions.borrow().contains_key("peer-b")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "peer-b session not stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The advertisement goes: the ServiceBGPStatus is deleted, layer 2 keeps announcing.
    Api::<DynamicObject>::namespaced_with(
        client.clone(),
        NAMESPACE,
        &resource("BGPAdvertisement", "bgpadvertisements"),
    )
    .delete("bgp", &Default::default())
    .await
    .expect("delete ad");
    wait_list(
        &client,
        "ServiceBGPStatus",
        "servicebgpstatuses",
        "no ServiceBGPStatus",
        <[DynamicObject]>::is_empty,
    )
    .await;
    assert!(rx.try_recv().is_err(), "layer 2 untouched");

    // A planned shutdown withdraws and deletes this node's ServiceL2Status before it returns.
    let grace = Duration::from_secs(1);
    ractor::call_t!(
        speaker,
        |reply| SpeakerMsg::Shutdown { grace, reply },
        10_000
    )
    .expect("shutdown");
    assert!(matches!(
        next_command(&mut rx).await,
        Command::Withdraw { .. }
    ));
    let left = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        NAMESPACE,
        &resource("ServiceL2Status", "servicel2statuses"),
    )
    .list(&Default::default())
    .await
    .expect("list");
    assert!(left.items.is_empty(), "{:?}", left.items);
    let _ = handle.await;
    drop(server);
}
