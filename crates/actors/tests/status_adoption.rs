//! A speaker that starts while the API server is unreachable still adopts the status objects
//! of its earlier life once the API answers: the one of a Service it no longer announces is
//! deleted (else the other nodes would keep taking this node for the claimant and nobody
//! would announce the IP), and the one of a Service it announces is updated, not duplicated.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{create, setup, wait_list, NAMESPACE};
use ironlb_actors::layer2::L2Status;
use ironlb_actors::model::ServiceKey;
use ironlb_actors::tree::{L2Backend, Shared, SpeakerConfig, StatusMsg, StatusWriter};
use kube::api::DynamicObject;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long the API stays unreachable: longer than the writer's first flush (2 s), so that
/// the adoption fails at start and again in that flush.
const OUTAGE: Duration = Duration::from_millis(3500);

/// A TCP forwarder to `upstream` that drops every connection until `up` is set.
async fn gate(upstream: SocketAddr, up: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if !up.load(Ordering::SeqCst) {
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    addr
}

fn client_for(addr: SocketAddr) -> kube::Client {
    let url = format!("http://{addr}").parse().expect("url");
    let mut config = kube::Config::new(url);
    config.read_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(config).expect("client")
}

fn l2_status(name: &str, service: &str) -> serde_json::Value {
    json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "ServiceL2Status",
        "metadata": {"name": name, "labels": {
            "metallb.io/node": "node-a",
            "metallb.io/service-name": service,
            "metallb.io/service-namespace": "default",
        }},
        "spec": {},
    })
}

fn service_of(object: &DynamicObject) -> Option<&str> {
    object
        .metadata
        .labels
        .as_ref()?
        .get("metallb.io/service-name")
        .map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_of_an_earlier_life_are_adopted_once_the_api_answers() {
    let (server, admin) = setup().await;
    // What the earlier life left: a status for a Service no longer announced here, and one for
    // a Service still announced.
    create(
        &admin,
        "ServiceL2Status",
        "servicel2statuses",
        l2_status("l2-gone", "gone"),
    )
    .await;
    create(
        &admin,
        "ServiceL2Status",
        "servicel2statuses",
        l2_status("l2-web", "web"),
    )
    .await;

    let up = Arc::new(AtomicBool::new(false));
    let gated = gate(server.addr(), up.clone()).await;
    let (l2, _commands) = mpsc::channel(8);
    let shared = Shared::new(
        SpeakerConfig {
            node: "node-a".into(),
            namespace: NAMESPACE.into(),
            options: ironlb_actors::decide::Options::default(),
            gossip: None,
            l2: L2Backend::Channel(l2),
            http: Vec::new(),
            bgp_shutdown_wait: Duration::from_secs(1),
        },
        Some(client_for(gated)),
    );
    let (writer, task) = ractor::Actor::spawn(None, StatusWriter, shared)
        .await
        .expect("status writer starts without the API");
    writer
        .cast(StatusMsg::L2(
            ServiceKey::new("default", "web"),
            Some(L2Status {
                interfaces: Vec::new(),
            }),
        ))
        .expect("cast");
    tokio::time::sleep(OUTAGE).await;
    up.store(true, Ordering::SeqCst);

    let items = wait_list(
        &admin,
        "ServiceL2Status",
        "servicel2statuses",
        "the earlier life's gone status deleted and its web status updated",
        |items| {
            items.len() == 1
                && items[0].metadata.name.as_deref() == Some("l2-web")
                && items[0].data["status"]["node"] == "node-a"
        },
    )
    .await;
    assert_eq!(service_of(&items[0]), Some("web"));
    writer.stop(None);
    let _ = task.await;
}
