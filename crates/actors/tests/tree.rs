//! The supervisor tree against the in-process API stand-in, with the layer 2 commands captured
//! on a channel (no sockets, no root): a Service gets announced and its `ServiceL2Status`
//! written; a panicking child is restarted while its siblings keep their state.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{next_command, resource, setup, NAMESPACE, WAIT_MAX};
use ironlb_actors::tree::{Layer2Msg, StatusMsg, WatchMsg};
use ironlb_announce::l2::io::driver::Command;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, ListParams};
use ractor::ActorRef;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announces_writes_status_and_survives_a_crashed_child() {
    let (server, client) = setup().await;
    let (tx, mut rx) = mpsc::channel(64);
    let (speaker, handle, shared) = common::start_speaker(
        &client,
        tx,
        vec!["127.0.0.1:0".parse().expect("addr")],
        Duration::from_millis(200),
    )
    .await;
    let ip: IpAddr = "10.20.0.5".parse().expect("ip");
    match next_command(&mut rx).await {
        Command::Announce { ip: got, .. } => assert_eq!(got, ip),
        other => panic!("{other:?}"),
    }
    // ServiceL2Status written by the owner.
    let statuses = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        NAMESPACE,
        &resource("ServiceL2Status", "servicel2statuses"),
    );
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    loop {
        let list = statuses.list(&ListParams::default()).await.expect("list");
        let found = list.items.iter().any(|o| {
            o.data["status"]["node"] == "node-a" && o.data["status"]["serviceName"] == "web"
        });
        if found {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no ServiceL2Status");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = shared.metrics.registry();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics).expect("encode");
    assert!(
        text.contains("metallb_speaker_announced{service=\"default/web\",protocol=\"layer2\",node=\"node-a\",ip=\"10.20.0.5\"} 1"),
        "{text}"
    );

    // Panic in Layer2: it is restarted and announces again (its driver is new); ClusterWatch
    // keeps running (its snapshot is not rebuilt).
    let watch_before: ActorRef<WatchMsg> =
        ActorRef::where_is("node-a/cluster-watch").expect("watch");
    let layer2: ActorRef<Layer2Msg> = ActorRef::where_is("node-a/layer2").expect("layer2");
    layer2.cast(Layer2Msg::Panic).expect("cast");
    match next_command(&mut rx).await {
        Command::Announce { ip: got, .. } => assert_eq!(got, ip),
        other => panic!("{other:?}"),
    }
    let watch_after: ActorRef<WatchMsg> =
        ActorRef::where_is("node-a/cluster-watch").expect("watch");
    assert_eq!(
        watch_before.get_id(),
        watch_after.get_id(),
        "sibling untouched"
    );
    let layer2_after: ActorRef<Layer2Msg> = ActorRef::where_is("node-a/layer2").expect("layer2");
    assert_ne!(layer2.get_id(), layer2_after.get_id(), "layer2 restarted");

    // The endpoint goes away: withdraw, and the status object is deleted.
    Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .delete("web-1", &Default::default())
        .await
        .expect("delete slice");
    match next_command(&mut rx).await {
        Command::Withdraw { ip: got } => assert_eq!(got, ip),
        other => panic!("{other:?}"),
    }
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    loop {
        let list = statuses.list(&ListParams::default()).await.expect("list");
        if list.items.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ServiceL2Status not deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let writer: Option<ActorRef<StatusMsg>> = ActorRef::where_is("node-a/status-writer");
    assert!(writer.is_some());
    speaker.stop(None);
    let _ = handle.await;
    drop(server);
}
