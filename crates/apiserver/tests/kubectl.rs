//! The reference's §8 kubectl verification list: real kubectl 1.32 runs, each with a fresh
//! `--cache-dir` and a kubeconfig written by the stand-in.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use ironlb_apiserver::Config;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event as RecorderEvent, EventType, Recorder, Reporter};
use kube::Resource;
use serde_json::json;

const MANIFEST: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: LoadBalancer
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: pool
  namespace: metallb-system
spec:
  addresses:
  - 192.168.10.0/24
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: l2
  namespace: metallb-system
spec:
  ipAddressPools:
  - pool
"#;

fn crds_yaml() -> String {
    common::metallb_crds()
        .iter()
        .map(|crd| serde_yaml::to_string(crd).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

// 1 + 2 + 3 + 4: version, CRDs from a manifest, namespaces over protobuf, apply round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_namespaces_and_apply() {
    let handle = common::start_with(Config::default()).await;
    let Some(kubectl) = common::Kubectl::new(&handle) else {
        return;
    };
    let version = kubectl.ok(&["version"]).await;
    assert!(version.contains("Server Version: v1.32"), "{version}");
    let crds = kubectl.file("crds.yaml", &crds_yaml());
    let applied = kubectl.ok(&["apply", "-f", &crds]).await;
    assert!(
        applied.contains(
            "customresourcedefinition.apiextensions.k8s.io/ipaddresspools.metallb.io created"
        ),
        "{applied}"
    );
    kubectl
        .ok(&[
            "wait",
            "--for",
            "condition=established",
            "--timeout=20s",
            "crd/ipaddresspools.metallb.io",
        ])
        .await;
    let resources = kubectl
        .ok(&["api-resources", "--api-group=metallb.io"])
        .await;
    for kind in [
        "IPAddressPool",
        "L2Advertisement",
        "BGPAdvertisement",
        "BGPPeer",
        "BFDProfile",
        "Community",
        "ServiceL2Status",
        "ServiceBGPStatus",
        "ConfigurationState",
    ] {
        assert!(resources.contains(kind), "{kind} missing from {resources}");
    }
    let versions = kubectl.ok(&["api-versions"]).await;
    assert!(
        versions.contains("metallb.io/v1beta1") && versions.contains("metallb.io/v1beta2"),
        "{versions}"
    );

    handle.clear_request_log();
    kubectl.ok(&["create", "namespace", "metallb-system"]).await;
    assert!(
        handle.request_log().iter().any(|r| r.method == "POST"
            && r.path == "/api/v1/namespaces"
            && r.content_type.contains("protobuf")),
        "kubectl create namespace posts protobuf"
    );
    let namespace = kubectl.ok(&["get", "ns", "metallb-system"]).await;
    assert!(namespace.contains("Active"), "{namespace}");

    let manifest = kubectl.file("manifest.yaml", MANIFEST);
    let first = kubectl.ok(&["apply", "-f", &manifest]).await;
    assert_eq!(first.matches(" created").count(), 3, "{first}");
    let second = kubectl.ok(&["apply", "-f", &manifest]).await;
    assert_eq!(second.matches(" unchanged").count(), 3, "{second}");
    handle.clear_request_log();
    let changed = kubectl.file(
        "changed.yaml",
        &MANIFEST
            .replace("8080", "9090")
            .replace("192.168.10.0", "192.168.20.0"),
    );
    let third = kubectl.ok(&["apply", "-f", &changed]).await;
    assert!(
        third.contains("service/web configured")
            && third.contains("ipaddresspool.metallb.io/pool configured"),
        "{third}"
    );
    let log = handle.request_log();
    assert!(
        log.iter().any(|r| r.method == "PATCH"
            && r.path.ends_with("/services/web")
            && r.content_type
                .starts_with("application/strategic-merge-patch+json")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|r| r.method == "PATCH"
            && r.path.ends_with("/ipaddresspools/pool")
            && r.content_type.starts_with("application/merge-patch+json")),
        "{log:#?}"
    );
    let target = kubectl
        .ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}",
        ])
        .await;
    assert_eq!(target, "9090");

    // Server-side apply on existing and new objects.
    let ssa = kubectl.file(
        "ssa.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fresh\ndata:\n  a: b\n",
            MANIFEST
        ),
    );
    let server_side = kubectl.ok(&["apply", "--server-side", "-f", &ssa]).await;
    assert_eq!(
        server_side.matches("serverside-applied").count(),
        4,
        "{server_side}"
    );
    assert_eq!(
        kubectl
            .ok(&["get", "cm", "fresh", "-o", "jsonpath={.data.a}"])
            .await,
        "b"
    );

    // create twice → AlreadyExists, rc 1.
    let create = kubectl.file(
        "create.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: once\n",
    );
    kubectl.ok(&["create", "-f", &create]).await;
    let again = kubectl.run(&["create", "-f", &create]).await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("AlreadyExists"), "{again:?}");
}

// 5 + 6 + 9: get / wide / watch / jsonpath, label / annotate / patch, wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_patch_and_wait() {
    let handle = common::start().await;
    let Some(kubectl) = common::Kubectl::new(&handle) else {
        return;
    };
    kubectl.ok(&["create", "namespace", "metallb-system"]).await;
    let manifest = kubectl.file("manifest.yaml", MANIFEST);
    kubectl.ok(&["apply", "-f", &manifest]).await;
    let wide = kubectl.ok(&["get", "svc", "-o", "wide"]).await;
    let row = wide
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("{wide}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "LoadBalancer", "{wide}");
    let ip: std::net::IpAddr = cells[2].parse().unwrap_or_else(|e| panic!("{e}: {wide}"));
    assert!("10.96.0.0/12"
        .parse::<ipnet::IpNet>()
        .is_ok_and(|n| n.contains(&ip)));
    assert_eq!(cells[3], "<pending>");
    assert!(
        cells[4].starts_with("80:3") && cells[4].ends_with("/TCP"),
        "{wide}"
    );
    assert_eq!(cells[6], "app=web", "{wide}");
    let pools = kubectl
        .ok(&["get", "ipaddresspools.metallb.io", "-n", "metallb-system"])
        .await;
    assert!(
        pools.contains("AUTO ASSIGN")
            && pools
                .lines()
                .any(|l| l.starts_with("pool") && l.contains("true")),
        "{pools}"
    );

    // get -w prints a new row on a status write.
    let mut watch = kubectl.command(&["get", "-w", "svc", "web"]);
    watch.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = watch.spawn().unwrap_or_else(|e| panic!("{e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(20), lines_rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert!(first.contains("NAME"), "{first}");
    let _ = tokio::time::timeout(Duration::from_secs(20), lines_rx.recv()).await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    // kubectl wait for the IP, while another client writes the status.
    let waiter = {
        let mut command = kubectl.command(&[
            "wait",
            "--for=jsonpath={.status.loadBalancer.ingress[0].ip}=192.168.10.1",
            "--timeout=30s",
            "svc/web",
        ]);
        tokio::task::spawn_blocking(move || command.output())
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.1"}]}}});
    services
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let row = tokio::time::timeout(Duration::from_secs(20), lines_rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert!(row.contains("192.168.10.1"), "watch row: {row}");
    let _ = child.kill();
    let _ = child.wait();
    let waited = waiter
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(waited.status.success(), "{waited:?}");
    assert_eq!(
        kubectl
            .ok(&[
                "get",
                "svc",
                "web",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}"
            ])
            .await,
        "192.168.10.1"
    );
    assert_eq!(
        kubectl
            .ok(&[
                "get",
                "svc",
                "web",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ipMode}"
            ])
            .await,
        "VIP"
    );

    // label / annotate / patch types.
    kubectl.ok(&["label", "svc", "web", "tier=front"]).await;
    kubectl.ok(&["annotate", "svc", "web", "note=hello"]).await;
    kubectl
        .ok(&[
            "patch",
            "svc",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"merged":"yes"}}}"#,
        ])
        .await;
    kubectl
        .ok(&[
            "patch",
            "svc",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/metadata/labels/json","value":"yes"}]"#,
        ])
        .await;
    kubectl
        .ok(&[
            "patch",
            "svc",
            "web",
            "-p",
            r#"{"spec":{"ports":[{"port":80,"targetPort":7070}]}}"#,
        ])
        .await;
    let labels = kubectl
        .ok(&["get", "svc", "web", "-o", "jsonpath={.metadata.labels}"])
        .await;
    for label in ["tier", "merged", "json"] {
        assert!(labels.contains(label), "{labels}");
    }
    assert_eq!(
        kubectl
            .ok(&[
                "get",
                "svc",
                "web",
                "-o",
                "jsonpath={.metadata.annotations.note}"
            ])
            .await,
        "hello"
    );
    assert_eq!(
        kubectl
            .ok(&[
                "get",
                "svc",
                "web",
                "-o",
                "jsonpath={.spec.ports[0].targetPort}"
            ])
            .await,
        "7070"
    );
    let refused = kubectl
        .run(&[
            "patch",
            "ipaddresspool",
            "pool",
            "-n",
            "metallb-system",
            "-p",
            r#"{"spec":{"autoAssign":false}}"#,
        ])
        .await;
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("application/strategic-merge-patch+json is not supported by metallb.io/v1beta1, Kind=IPAddressPool"),
        "{refused:?}"
    );
    kubectl
        .ok(&[
            "patch",
            "svc",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.168.10.2"}]}}}"#,
        ])
        .await;
    assert_eq!(
        kubectl
            .ok(&[
                "get",
                "svc",
                "web",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}"
            ])
            .await,
        "192.168.10.2"
    );

    // kubectl wait --for=delete while another client deletes.
    let waiter = {
        let mut command = kubectl.command(&["wait", "--for=delete", "--timeout=30s", "svc/web"]);
        tokio::task::spawn_blocking(move || command.output())
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waited = waiter
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(waited.status.success(), "{waited:?}");
}

// 7 + 8: describe with Recorder events; create secret generic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_events_and_secrets() {
    let handle = common::start().await;
    let Some(kubectl) = common::Kubectl::new(&handle) else {
        return;
    };
    kubectl.ok(&["create", "namespace", "metallb-system"]).await;
    kubectl
        .ok(&[
            "create",
            "secret",
            "generic",
            "memberlist",
            "--from-literal=secretkey=abc",
            "-n",
            "metallb-system",
        ])
        .await;
    let data = kubectl
        .ok(&[
            "get",
            "secret",
            "memberlist",
            "-n",
            "metallb-system",
            "-o",
            "jsonpath={.data.secretkey}",
        ])
        .await;
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .unwrap_or_default(),
        b"abc"
    );
    assert_eq!(
        kubectl
            .ok(&[
                "get",
                "secret",
                "memberlist",
                "-n",
                "metallb-system",
                "-o",
                "jsonpath={.type}"
            ])
            .await,
        "Opaque"
    );
    kubectl
        .ok(&["create", "configmap", "settings", "--from-literal=a=b"])
        .await;
    assert_eq!(
        kubectl
            .ok(&["get", "cm", "settings", "-o", "jsonpath={.data.a}"])
            .await,
        "b"
    );

    let manifest = kubectl.file("manifest.yaml", MANIFEST);
    kubectl.ok(&["apply", "-f", &manifest]).await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web = services.get("web").await.unwrap_or_else(|e| panic!("{e}"));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "ironlb-controller".into(),
            instance: None,
        },
    );
    let event = RecorderEvent {
        type_: EventType::Normal,
        reason: "IPAllocated".into(),
        note: Some("Assigned IP 192.168.10.1".into()),
        action: "Allocate".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &web.object_ref(&()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    recorder
        .publish(&event, &web.object_ref(&()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let described = kubectl.ok(&["describe", "svc", "web"]).await;
    assert!(described.contains("IPAllocated"), "{described}");
    assert!(described.contains("(x2 over"), "{described}");
    assert!(described.contains("ironlb-controller"), "{described}");
    assert!(
        described.contains("Assigned IP 192.168.10.1"),
        "{described}"
    );
}

// 10: delete flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_flows() {
    let handle = common::start().await;
    let Some(kubectl) = common::Kubectl::new(&handle) else {
        return;
    };
    kubectl.ok(&["create", "namespace", "metallb-system"]).await;
    let manifest = kubectl.file("manifest.yaml", MANIFEST);
    kubectl.ok(&["apply", "-f", &manifest]).await;
    let deleted = kubectl.ok(&["delete", "-f", &manifest]).await;
    assert_eq!(deleted.matches("deleted").count(), 3, "{deleted}");
    kubectl.ok(&["apply", "-f", &manifest]).await;
    kubectl
        .ok(&[
            "patch",
            "svc",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["ironlb.io/test"]}}"#,
        ])
        .await;
    let deleter = {
        let mut command = kubectl.command(&["delete", "svc", "web", "--timeout=30s"]);
        tokio::task::spawn_blocking(move || command.output())
    };
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    common::eventually("deletionTimestamp set", || {
        let services = services.clone();
        async move {
            services
                .get("web")
                .await
                .ok()
                .is_some_and(|s| s.metadata.deletion_timestamp.is_some())
        }
    })
    .await;
    assert!(
        !deleter.is_finished(),
        "kubectl delete returned before the finalizer was removed"
    );
    let remove = json!({"metadata": {"finalizers": null}});
    services
        .patch("web", &PatchParams::default(), &Patch::Merge(&remove))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let output = deleter
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(output.status.success(), "{output:?}");
    let missing = kubectl.run(&["delete", "svc", "web"]).await;
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("NotFound"), "{missing:?}");
}

// 11: validation: unknown fields, schema, CEL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_strict_schema_and_cel() {
    let handle = common::start().await;
    let Some(kubectl) = common::Kubectl::new(&handle) else {
        return;
    };
    kubectl.ok(&["create", "namespace", "metallb-system"]).await;
    let unknown = kubectl.file(
        "unknown.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: odd\n  namespace: metallb-system\nspec:\n  addresses: [192.168.30.0/24]\n  foo: bar\n",
    );
    let strict = kubectl.run(&["apply", "-f", &unknown]).await;
    assert_eq!(strict.code, 1, "{strict:?}");
    assert!(
        strict.stderr.contains("unknown field \"spec.foo\""),
        "{strict:?}"
    );
    kubectl
        .ok(&["apply", "--validate=false", "-f", &unknown])
        .await;
    let spec = kubectl
        .ok(&[
            "get",
            "ipaddresspool",
            "odd",
            "-n",
            "metallb-system",
            "-o",
            "jsonpath={.spec}",
        ])
        .await;
    assert!(!spec.contains("foo"), "{spec}");
    let service_unknown = kubectl.file("svc-unknown.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: odd\nspec:\n  ports: [{port: 80}]\n  bogus: 1\n");
    let strict = kubectl.run(&["apply", "-f", &service_unknown]).await;
    assert!(
        strict.code == 1 && strict.stderr.contains("unknown field \"spec.bogus\""),
        "{strict:?}"
    );

    let bfd = kubectl.file("bfd.yaml", "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata:\n  name: fast\n  namespace: metallb-system\nspec:\n  receiveInterval: 5\n");
    let invalid = kubectl.run(&["apply", "-f", &bfd]).await;
    assert_eq!(invalid.code, 1);
    assert!(
        invalid.stderr.contains("spec.receiveInterval") && invalid.stderr.contains("Invalid"),
        "{invalid:?}"
    );

    let peer = "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata:\n  name: peer\n  namespace: metallb-system\nspec:\n  myASN: 64500\n  peerASN: 64501\n  peerAddress: 192.0.2.1\n  enableGracefulRestart: GR\n";
    let created = kubectl.file("peer.yaml", &peer.replace("GR", "true"));
    kubectl.ok(&["apply", "-f", &created]).await;
    let flipped = kubectl.file("peer2.yaml", &peer.replace("GR", "false"));
    let refused = kubectl.run(&["apply", "-f", &flipped]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("EnableGracefulRestart cannot be changed after creation"),
        "{refused:?}"
    );
}
