//! `ironlb status` against the in-process API stand-in with a running speaker tree (layer 2 on
//! a channel, its health listener on loopback): the report names the owner, its interfaces,
//! since when, the speaker's own reasons (`--gossip`) and the `ConfigurationState`; and the
//! pure renderer flags two layer 2 owners and a Service without an IP.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{next_command, setup, wait_list, NAMESPACE, WAIT_MAX};
use ironlb_actors::status::{self, Announcer, ComponentState, StatusInputs};
use ironlb_announce::l2::io::driver::Command;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_owner_reasons_and_configuration() {
    let (server, client) = setup().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr");
    let (tx, mut rx) = mpsc::channel(64);
    let (speaker, handle, _shared) =
        common::start_speaker(&client, tx, vec![port], Duration::from_millis(200)).await;
    assert!(matches!(
        next_command(&mut rx).await,
        Command::Announce { .. }
    ));
    wait_list(
        &client,
        "ServiceL2Status",
        "servicel2statuses",
        "the ServiceL2Status",
        |items| !items.is_empty(),
    )
    .await;
    wait_list(
        &client,
        "ConfigurationState",
        "configurationstates",
        "the ConfigurationState",
        |items| !items.is_empty(),
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    let report = loop {
        let inputs = status::collect(client.clone(), NAMESPACE, Some(port))
            .await
            .expect("collect");
        let report = status::render(&inputs);
        if report.contains("node-a (asked): layer2 announces") {
            break report;
        }
        assert!(tokio::time::Instant::now() < deadline, "{report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(report.contains("10.20.0.5  default/web"), "{report}");
    assert!(
        report.contains("  layer2  node node-a  interfaces all  since 20"),
        "{report}"
    );
    assert!(report.contains("speaker-node-a  Valid"), "{report}");
    assert!(
        report.contains("bgp noMatchingAdvertisement"),
        "no BGPAdvertisement: {report}"
    );
    assert!(
        report.contains("membership as seen by node-a (gossip off"),
        "{report}"
    );
    speaker.stop(None);
    let _ = handle.await;
    drop(server);
}

#[test]
fn render_flags_two_owners_no_ip_and_invalid_configuration() {
    let announcer = |node: &str| Announcer {
        node: node.into(),
        via: vec!["eth0".into()],
        since: Some("2026-01-01T00:00:00Z".into()),
    };
    let inputs = StatusInputs {
        services: BTreeMap::from([
            ("default/web".into(), vec!["10.0.0.1".parse().expect("ip")]),
            ("default/new".into(), Vec::new()),
        ]),
        layer2: BTreeMap::from([(
            "default/web".into(),
            vec![announcer("node-a"), announcer("node-b")],
        )]),
        bgp: BTreeMap::new(),
        components: vec![ComponentState {
            name: "speaker-node-c".into(),
            result: "Invalid".into(),
            error_summary: "BGPPeer p: bad".into(),
        }],
        speaker: None,
    };
    let report = status::render(&inputs);
    assert!(report.contains("default/new: no IP allocated"), "{report}");
    assert!(
        report.contains("WARNING: 2 nodes hold a ServiceL2Status (node-a, node-b)"),
        "{report}"
    );
    assert!(
        report.contains("layer2  node node-a  interfaces eth0  since 2026-01-01T00:00:00Z"),
        "{report}"
    );
    assert!(
        report.contains("speaker-node-c: configuration Invalid: BGPPeer p: bad"),
        "{report}"
    );
}
