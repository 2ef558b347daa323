//! The supervisor tree against the in-process API stand-in, with the layer 2 commands captured
//! on a channel (no sockets, no root): a Service gets announced and its `ServiceL2Status`
//! written; a panicking child is restarted while its siblings keep their state.

use std::net::IpAddr;
use std::time::Duration;

use ironlb_actors::decide::Options;
use ironlb_actors::tree::{
    L2Backend, Layer2Msg, Shared, Speaker, SpeakerConfig, StatusMsg, WatchMsg,
};
use ironlb_announce::l2::io::driver::Command;
use ironlb_apiserver::Server;
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use kube::Client;
use ractor::ActorRef;
use serde_json::json;
use tokio::sync::mpsc;

const WAIT_MAX: Duration = Duration::from_secs(60);
const NAMESPACE: &str = "metallb-system";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "metallb.io".into(),
        version: "v1beta1".into(),
        api_version: "metallb.io/v1beta1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn setup() -> (ironlb_apiserver::ServerHandle, Client) {
    let crds = ironlb_api::crds()
        .into_iter()
        .map(|crd| serde_json::to_value(crd).expect("crd"))
        .collect();
    let server = Server::start(ironlb_apiserver::Config {
        crds,
        ..ironlb_apiserver::Config::default()
    })
    .await
    .expect("stand-in starts");
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    let client = Client::try_from(config).expect("client");
    let pp = PostParams::default();
    Api::<Namespace>::all(client.clone())
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).expect("ns"),
        )
        .await
        .expect("namespace");
    Api::<Node>::all(client.clone())
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "node-a"}})).expect("node"),
        )
        .await
        .expect("node");
    let pools = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        NAMESPACE,
        &resource("IPAddressPool", "ipaddresspools"),
    );
    pools
        .create(
            &pp,
            &serde_json::from_value(json!({
                "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                "metadata": {"name": "pool-a"},
                "spec": {"addresses": ["10.20.0.0/24"]}
            }))
            .expect("pool"),
        )
        .await
        .expect("pool");
    let ads = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        NAMESPACE,
        &resource("L2Advertisement", "l2advertisements"),
    );
    ads.create(
        &pp,
        &serde_json::from_value(json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
            "metadata": {"name": "l2"},
            "spec": {"ipAddressPools": ["pool-a"]}
        }))
        .expect("ad"),
    )
    .await
    .expect("ad");
    let services = Api::<Service>::namespaced(client.clone(), "default");
    services
        .create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}
            }))
            .expect("svc"),
        )
        .await
        .expect("svc");
    services
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.20.0.5"}]}}})),
        )
        .await
        .expect("svc status");
    Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": {"name": "web-1", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.1.0.5"], "nodeName": "node-a",
                               "conditions": {"ready": true}}]
            }))
            .expect("slice"),
        )
        .await
        .expect("slice");
    (server, client)
}

async fn next_command(rx: &mut mpsc::Receiver<Command>) -> Command {
    tokio::time::timeout(WAIT_MAX, rx.recv())
        .await
        .expect("a layer 2 command in time")
        .expect("channel open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announces_writes_status_and_survives_a_crashed_child() {
    let (server, client) = setup().await;
    let (tx, mut rx) = mpsc::channel(64);
    let shared = Shared::new(
        SpeakerConfig {
            node: "node-a".into(),
            namespace: NAMESPACE.into(),
            options: Options::default(),
            gossip: None,
            l2: L2Backend::Channel(tx),
            http: vec!["127.0.0.1:0".parse().expect("addr")],
        },
        Some(client.clone()),
    );
    let (speaker, handle) =
        ractor::Actor::spawn(Some("node-a/speaker".into()), Speaker, shared.clone())
            .await
            .expect("speaker starts");
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
