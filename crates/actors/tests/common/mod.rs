//! Shared set-up of the tree tests: the in-process API stand-in with one Node, a pool, an
//! L2Advertisement, a Service with an IP and a ready endpoint.

#![allow(dead_code)]

use std::time::Duration;

use ironlb_announce::l2::io::driver::Command;
use ironlb_apiserver::Server;
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use kube::Client;
use serde_json::json;
use tokio::sync::mpsc;

pub(crate) const WAIT_MAX: Duration = Duration::from_secs(60);
pub(crate) const NAMESPACE: &str = "metallb-system";

pub(crate) fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "metallb.io".into(),
        version: "v1beta1".into(),
        api_version: "metallb.io/v1beta1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub(crate) async fn setup() -> (ironlb_apiserver::ServerHandle, Client) {
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

pub(crate) async fn next_command(rx: &mut mpsc::Receiver<Command>) -> Command {
    tokio::time::timeout(WAIT_MAX, rx.recv())
        .await
        .expect("a layer 2 command in time")
        .expect("channel open")
}

/// Creates a metallb.io object from JSON in [`NAMESPACE`].
pub(crate) async fn create(client: &Client, kind: &str, plural: &str, object: serde_json::Value) {
    let api =
        Api::<DynamicObject>::namespaced_with(client.clone(), NAMESPACE, &resource(kind, plural));
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).expect("object"),
    )
    .await
    .expect("create");
}

/// Lists a metallb.io kind in [`NAMESPACE`] until `check` accepts the list.
pub(crate) async fn wait_list(
    client: &Client,
    kind: &str,
    plural: &str,
    what: &str,
    check: impl Fn(&[DynamicObject]) -> bool,
) -> Vec<DynamicObject> {
    let api =
        Api::<DynamicObject>::namespaced_with(client.clone(), NAMESPACE, &resource(kind, plural));
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    loop {
        let list = api.list(&Default::default()).await.expect("list");
        if check(&list.items) {
            return list.items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            list.items
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the speaker tree of `node-a` with layer 2 commands on `l2` and health on `http`.
pub(crate) async fn start_speaker(
    client: &Client,
    l2: mpsc::Sender<Command>,
    http: Vec<std::net::SocketAddr>,
    bgp_shutdown_wait: Duration,
) -> (
    ractor::ActorRef<ironlb_actors::tree::SpeakerMsg>,
    tokio::task::JoinHandle<()>,
    std::sync::Arc<ironlb_actors::tree::Shared>,
) {
    let shared = ironlb_actors::tree::Shared::new(
        ironlb_actors::tree::SpeakerConfig {
            node: "node-a".into(),
            namespace: NAMESPACE.into(),
            options: ironlb_actors::decide::Options::default(),
            gossip: None,
            l2: ironlb_actors::tree::L2Backend::Channel(l2),
            http,
            bgp_shutdown_wait,
        },
        Some(client.clone()),
    );
    let (speaker, handle) = ractor::Actor::spawn(
        Some("node-a/speaker".into()),
        ironlb_actors::tree::Speaker,
        shared.clone(),
    )
    .await
    .expect("speaker starts");
    (speaker, handle, shared)
}
