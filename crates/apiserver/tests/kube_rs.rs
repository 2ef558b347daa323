//! The reference's §8 kube-rs verification list, against an in-process stand-in.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::events::{Event as RecorderEvent, EventType, Recorder, Reporter};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Discovery, Resource, ResourceExt};
use serde_json::{json, Value};

fn pools(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "metallb.io",
        "v1beta1",
        "IPAddressPool",
    ));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

fn service(name: &str, body: Value) -> Service {
    let mut value = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}});
    if let (Some(target), Some(source)) = (value.as_object_mut(), body.as_object()) {
        for (k, v) in source {
            target.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(value).unwrap_or_else(|error| panic!("service fixture: {error}"))
}

fn pool(name: &str, addresses: &[&str]) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "metallb-system"},
        "spec": {"addresses": addresses},
    }))
    .unwrap_or_else(|error| panic!("pool fixture: {error}"))
}

async fn metallb_namespace(client: &kube::Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "metallb-system"}})).unwrap_or_default();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|error| panic!("namespace: {error}"));
}

fn api_error(error: kube::Error) -> Box<kube::core::Status> {
    match error {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other}"),
    }
}

// 1. Version and discovery.
#[tokio::test]
async fn version_and_discovery() {
    let handle = common::start().await;
    let client = common::client(&handle);
    let version = client
        .apiserver_version()
        .await
        .unwrap_or_else(|error| panic!("version: {error}"));
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "32")
    );
    for aggregated in [false, true] {
        let discovery = Discovery::new(client.clone());
        let discovery = if aggregated {
            discovery.run_aggregated().await
        } else {
            discovery.run().await
        };
        let discovery = discovery
            .unwrap_or_else(|error| panic!("discovery (aggregated={aggregated}): {error}"));
        let Some(group) = discovery.get("metallb.io") else {
            panic!("metallb.io not discovered (aggregated={aggregated})")
        };
        let versions: Vec<&str> = group.versions().collect();
        assert_eq!(versions, ["v1beta2", "v1beta1"], "aggregated={aggregated}");
        assert_eq!(group.preferred_version_or_latest(), "v1beta2");
        let kinds: Vec<String> = group
            .versioned_resources("v1beta1")
            .into_iter()
            .map(|(r, _)| r.kind)
            .collect();
        assert!(kinds.contains(&"IPAddressPool".to_string()), "{kinds:?}");
        let peers: Vec<String> = group
            .versioned_resources("v1beta2")
            .into_iter()
            .map(|(r, _)| r.kind)
            .collect();
        assert_eq!(peers, ["BGPPeer"]);
        let core = discovery
            .get("")
            .unwrap_or_else(|| panic!("core group missing (aggregated={aggregated})"));
        assert!(core
            .versioned_resources("v1")
            .iter()
            .any(|(r, caps)| r.kind == "Service"
                && caps
                    .subresources
                    .iter()
                    .any(|(s, _)| s.plural == "services/status" || s.plural == "status")));
    }
}

// 2. watcher default / streaming lists / metadata watcher, and a reflector under a burst.
#[tokio::test]
async fn watchers_see_init_and_changes() {
    let handle = common::start().await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(
            &PostParams::default(),
            &service("before", json!({"spec": {"ports": [{"port": 80}]}})),
        )
        .await
        .unwrap_or_else(|error| panic!("create: {error}"));
    for mode in ["list-watch", "streaming", "metadata"] {
        let config = watcher::Config::default();
        let mut stream: futures::stream::BoxStream<
            'static,
            Result<(String, String), watcher::Error>,
        > = match mode {
            "list-watch" => watcher(services.clone(), config)
                .map_ok(label_event)
                .boxed(),
            "streaming" => watcher(services.clone(), config.streaming_lists())
                .map_ok(label_event)
                .boxed(),
            _ => {
                let metadata: Api<PartialObjectMeta<Service>> =
                    Api::namespaced(client.clone(), "default");
                watcher(metadata, config).map_ok(label_event).boxed()
            }
        };
        let mut seen = Vec::new();
        while let Ok(Some(Ok(event))) =
            tokio::time::timeout(Duration::from_secs(10), stream.next()).await
        {
            let done = event.0 == "InitDone";
            seen.push(event);
            if done {
                break;
            }
        }
        assert_eq!(
            seen.first().map(|e| e.0.as_str()),
            Some("Init"),
            "{mode}: {seen:?}"
        );
        assert!(
            seen.iter().any(|e| e.0 == "InitApply" && e.1 == "before"),
            "{mode}: {seen:?}"
        );
        let name = format!("web-{}", mode.replace('-', ""));
        services
            .create(
                &PostParams::default(),
                &service(&name, json!({"spec": {"ports": [{"port": 80}]}})),
            )
            .await
            .unwrap_or_else(|error| panic!("create: {error}"));
        services
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap_or_else(|error| panic!("delete: {error}"));
        let mut live = Vec::new();
        while live.len() < 2 {
            match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                Ok(Some(Ok(event))) if event.1 == name => live.push(event.0),
                Ok(Some(Ok(_))) => {}
                other => panic!("{mode}: stream ended early: {other:?} after {live:?}"),
            }
        }
        assert_eq!(live, ["Apply", "Delete"], "{mode}");
    }

    // A reflector store equals a fresh list after a burst of concurrent writes.
    let (reader, writer) = reflector::store::<Service>();
    let stream = reflector(
        writer,
        watcher(services.clone(), watcher::Config::default()),
    )
    .applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    reader
        .wait_until_ready()
        .await
        .unwrap_or_else(|error| panic!("ready: {error}"));
    let mut writes = Vec::new();
    for index in 0..40 {
        let services = services.clone();
        writes.push(tokio::spawn(async move {
            let name = format!("burst-{index}");
            let _ = services
                .create(
                    &PostParams::default(),
                    &service(&name, json!({"spec": {"ports": [{"port": 80}]}})),
                )
                .await;
            let patch = json!({"metadata": {"labels": {"round": index.to_string()}}});
            let _ = services
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            if index % 3 == 0 {
                let _ = services.delete(&name, &DeleteParams::default()).await;
            }
        }));
    }
    for write in writes {
        let _ = write.await;
    }
    let expected: BTreeMap<String, Option<String>> = services
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|error| panic!("list: {error}"))
        .items
        .into_iter()
        .map(|s| (s.name_any(), s.resource_version()))
        .collect();
    common::eventually("reflector converges", || {
        let reader = reader.clone();
        let expected = expected.clone();
        async move {
            let actual: BTreeMap<String, Option<String>> = reader
                .state()
                .iter()
                .map(|s| (s.name_any(), s.resource_version()))
                .collect();
            actual == expected
        }
    })
    .await;
    task.abort();
}

fn label_event<K: ResourceExt>(event: watcher::Event<K>) -> (String, String) {
    match event {
        watcher::Event::Init => ("Init".into(), String::new()),
        watcher::Event::InitApply(object) => ("InitApply".into(), object.name_any()),
        watcher::Event::InitDone => ("InitDone".into(), String::new()),
        watcher::Event::Apply(object) => ("Apply".into(), object.name_any()),
        watcher::Event::Delete(object) => ("Delete".into(), object.name_any()),
    }
}

// 3. Selectors.
#[tokio::test]
async fn selectors_filter_lists_and_watches() {
    let handle = common::start().await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    for (name, labels) in [
        ("x", json!({"a": "b"})),
        ("y", json!({"a": "c", "d": "1"})),
        ("z", json!({"a": "e"})),
    ] {
        let mut svc = service(name, json!({"spec": {"ports": [{"port": 80}]}}));
        svc.metadata.labels = serde_json::from_value(labels).ok();
        services
            .create(&PostParams::default(), &svc)
            .await
            .unwrap_or_else(|error| panic!("create: {error}"));
    }
    let names = |list: kube::core::ObjectList<Service>| {
        list.items
            .into_iter()
            .map(|s| s.name_any())
            .collect::<Vec<_>>()
    };
    let by_name = services
        .list(&ListParams::default().fields("metadata.name=x"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(by_name), ["x"]);
    let by_labels = services
        .list(&ListParams::default().labels("a in (b,c),!d"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(by_labels), ["x"]);
    let not_equal = services
        .list(&ListParams::default().labels("a!=b"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(not_equal), ["kubernetes", "y", "z"]);

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, node) in [("p1", "n1"), ("p2", "n2")] {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}})).unwrap_or_default();
        pods.create(&PostParams::default(), &pod)
            .await
            .unwrap_or_else(|error| panic!("pod: {error}"));
    }
    let on_node = pods
        .list(&ListParams::default().fields("spec.nodeName=n2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        on_node
            .items
            .iter()
            .map(|p| p.name_any())
            .collect::<Vec<_>>(),
        ["p2"]
    );

    let unsupported = services
        .list(&ListParams::default().fields("spec.type=LoadBalancer"))
        .await;
    let status = api_error(
        unsupported
            .err()
            .unwrap_or_else(|| panic!("unsupported field selector accepted")),
    );
    assert_eq!(status.code, 400);
    assert!(
        status.message.contains("field label not supported"),
        "{}",
        status.message
    );
    let bad_labels = services.list(&ListParams::default().labels("a in (")).await;
    assert_eq!(bad_labels.err().map(|e| api_error(e).code), Some(400));

    // Removing the label from a watched object yields Delete.
    let config = watcher::Config::default().labels("a=b");
    let mut stream = watcher(services.clone(), config).boxed();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(watcher::Event::InitDone))) => break,
            Ok(Some(Ok(_))) => {}
            other => panic!("watch did not initialise: {other:?}"),
        }
    }
    let patch = json!({"metadata": {"labels": {"a": null}}});
    services
        .patch("x", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(watcher::Event::Delete(svc)))) => assert_eq!(svc.name_any(), "x"),
        other => panic!("expected Delete, got {other:?}"),
    }
    let patch = json!({"metadata": {"labels": {"a": "b"}}});
    services
        .patch("x", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(watcher::Event::Apply(svc)))) => assert_eq!(svc.name_any(), "x"),
        other => panic!("expected Apply, got {other:?}"),
    }
}

// 4. Compaction → 410 → relist; closing watches → re-watch without relist.
#[tokio::test]
async fn watcher_recovers_from_compaction_and_closed_watches() {
    let handle = common::start().await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let (reader, writer) = reflector::store::<Service>();
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen_errors = errors.clone();
    let stream = reflector(
        writer,
        watcher(services.clone(), watcher::Config::default()),
    );
    let task = tokio::spawn(stream.for_each(move |event| {
        if let Err(error) = &event {
            seen_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(error.to_string());
        }
        async {}
    }));
    reader
        .wait_until_ready()
        .await
        .unwrap_or_else(|error| panic!("ready: {error}"));
    let lists = |handle: &ironlb_apiserver::ServerHandle| {
        handle
            .request_log()
            .iter()
            .filter(|r| {
                r.method == "GET"
                    && r.path == "/api/v1/namespaces/default/services"
                    && !r.query.contains("watch=")
            })
            .count()
    };
    common::eventually("watch opened", || async {
        handle
            .request_log()
            .iter()
            .any(|r| r.query.contains("watch=true"))
    })
    .await;

    // Close all watches: the watcher resumes from its last RV, without a relist.
    let lists_before = lists(&handle);
    handle.close_watches();
    services
        .create(
            &PostParams::default(),
            &service("after-close", json!({"spec": {"ports": [{"port": 80}]}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    common::eventually("store has after-close", || {
        let reader = reader.clone();
        async move { reader.state().iter().any(|s| s.name_any() == "after-close") }
    })
    .await;
    assert_eq!(
        lists(&handle),
        lists_before,
        "closing watches must not cause a relist: {:#?}",
        handle.request_log()
    );
    let rewatch = handle
        .request_log()
        .into_iter()
        .filter(|r| r.query.contains("watch=true"))
        .count();
    assert!(rewatch >= 2, "the watcher re-watched");

    // Compact, then force a re-watch: the 410 arrives as an ERROR event and the watcher relists.
    for index in 0..5 {
        services
            .create(
                &PostParams::default(),
                &service(
                    &format!("during-{index}"),
                    json!({"spec": {"ports": [{"port": 80}]}}),
                ),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    common::eventually("store has during-4", || {
        let reader = reader.clone();
        async move { reader.state().iter().any(|s| s.name_any() == "during-4") }
    })
    .await;
    // The re-watch is held back while writes happen and the history is compacted.
    handle.set_latency(Duration::from_secs(4), true);
    handle.close_watches();
    services
        .delete("during-0", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    services
        .create(
            &PostParams::default(),
            &service("after-compact", json!({"spec": {"ports": [{"port": 80}]}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    handle.compact();
    handle.set_latency(Duration::ZERO, false);
    common::eventually("watcher relisted after 410", || async {
        lists(&handle) > lists_before
    })
    .await;
    let expected: Vec<String> = {
        let mut names: Vec<String> = services
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .items
            .iter()
            .map(|s| s.name_any())
            .collect();
        names.sort();
        names
    };
    common::eventually("store converges after compaction", || {
        let reader = reader.clone();
        let expected = expected.clone();
        async move {
            let mut names: Vec<String> = reader.state().iter().map(|s| s.name_any()).collect();
            names.sort();
            names == expected
        }
    })
    .await;
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        errors.iter().any(|e| e.contains("410")
            || e.to_lowercase().contains("too old")
            || e.contains("Expired")),
        "{errors:?}"
    );
    task.abort();
}

// 5. Conflicts and the /status metadata rules.
#[tokio::test]
async fn replace_conflicts_and_status_rules() {
    let handle = common::start().await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let created = services
        .create(
            &PostParams::default(),
            &service(
                "web",
                json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stale = created.clone();
    services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stale.metadata.labels = Some(BTreeMap::from([("z".to_string(), "w".to_string())]));
    assert!(api_error(
        services
            .replace("web", &PostParams::default(), &stale)
            .await
            .err()
            .unwrap_or_else(|| panic!("stale replace accepted"))
    )
    .is_conflict());
    assert!(api_error(
        services
            .replace_status("web", &PostParams::default(), &stale)
            .await
            .err()
            .unwrap_or_else(|| panic!("stale replace_status accepted"))
    )
    .is_conflict());

    // replace_status on a Service keeps an annotation change (MetalLB relies on it).
    let mut current = services.get("web").await.unwrap_or_else(|e| panic!("{e}"));
    current.metadata.annotations = Some(BTreeMap::from([(
        "metallb.io/ip-allocated-from-pool".to_string(),
        "pool".to_string(),
    )]));
    current.status =
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}})).ok();
    let updated = services
        .replace_status("web", &PostParams::default(), &current)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        updated
            .annotations()
            .get("metallb.io/ip-allocated-from-pool")
            .map(String::as_str),
        Some("pool")
    );
    let ingress = updated
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|l| l.ingress)
        .unwrap_or_default();
    assert_eq!(
        ingress.first().and_then(|i| i.ip_mode.clone()).as_deref(),
        Some("VIP")
    );

    // A main-resource patch of status is ignored.
    let patched = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.99"}]}}}),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ip = patched
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|l| l.ingress)
        .and_then(|i| i.first().and_then(|i| i.ip.clone()));
    assert_eq!(ip.as_deref(), Some("192.0.2.10"));

    // On a custom resource, metadata sent to /status is dropped.
    metallb_namespace(&client).await;
    let pools = pools(&client, "metallb-system");
    pools
        .create(&PostParams::default(), &pool("p", &["192.0.2.0/24"]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut current = pools.get("p").await.unwrap_or_else(|e| panic!("{e}"));
    current.metadata.annotations =
        Some(BTreeMap::from([("dropped".to_string(), "yes".to_string())]));
    current.data["status"] =
        json!({"assignedIPv4": 1, "assignedIPv6": 0, "availableIPv4": 255, "availableIPv6": 0});
    let updated = pools
        .replace_status("p", &PostParams::default(), &current)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!updated.annotations().contains_key("dropped"));
    assert_eq!(updated.data["status"]["assignedIPv4"], 1);
}

// 6. Patch types.
#[tokio::test]
async fn patch_types() {
    let handle = common::start().await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &service("web", json!({"spec": {"ports": [{"name": "a", "port": 80, "targetPort": 8080}, {"port": 443, "name": "b"}]}})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let merged = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"m": "1"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(merged.labels().get("m").map(String::as_str), Some("1"));
    // kube's Patch::Json sends application/json-patch+json; the json-patch crate is not a
    // dependency here, so the same request goes over the raw client.
    let json_type = [("Content-Type", "application/json-patch+json")];
    let path = "/api/v1/namespaces/default/services/web";
    let added = common::raw(
        &handle,
        "PATCH",
        path,
        &json_type,
        br#"[{"op":"add","path":"/metadata/labels/j","value":"2"}]"#,
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.text());
    assert_eq!(added.json()["metadata"]["labels"]["j"], "2");
    let failing = common::raw(
        &handle,
        "PATCH",
        path,
        &json_type,
        br#"[{"op":"test","path":"/metadata/labels/j","value":"nope"}]"#,
    )
    .await;
    assert_eq!(failing.status, 422, "{}", failing.text());
    let status: kube::core::Status =
        serde_json::from_slice(&failing.body).unwrap_or_else(|e| panic!("{e}"));
    assert!(status.is_invalid());
    let strategic = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
    let patched = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(&strategic),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ports = patched.spec.and_then(|s| s.ports).unwrap_or_default();
    assert_eq!(ports.len(), 2, "strategic merge keeps the other port");
    assert_eq!(
        ports[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090))
    );

    metallb_namespace(&client).await;
    let pools = pools(&client, "metallb-system");
    pools
        .create(&PostParams::default(), &pool("p", &["192.0.2.0/24"]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let error = pools
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(&json!({"spec": {"autoAssign": false}})),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("SMP on a CR accepted"));
    assert_eq!(api_error(error).code, 415);

    // Apply: create, update, and on /status.
    let applied = json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "q", "namespace": "metallb-system"}, "spec": {"addresses": ["198.51.100.0/24"]}});
    let created = pools
        .patch("q", &PatchParams::apply("test"), &Patch::Apply(&applied))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created.data["spec"]["autoAssign"], true, "defaulted");
    let update = json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "q", "namespace": "metallb-system"}, "spec": {"autoAssign": false}});
    let updated = pools
        .patch(
            "q",
            &PatchParams::apply("other").force(),
            &Patch::Apply(&update),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(updated.data["spec"]["autoAssign"], false);
    assert_eq!(
        updated.data["spec"]["addresses"],
        json!(["198.51.100.0/24"]),
        "an apply keeps the fields another manager applied"
    );
    let status = json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "q", "namespace": "metallb-system"}, "status": {"assignedIPv4": 3, "assignedIPv6": 0, "availableIPv4": 253, "availableIPv6": 0}});
    let with_status = pools
        .patch_status("q", &PatchParams::apply("test"), &Patch::Apply(&status))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(with_status.data["status"]["assignedIPv4"], 3);
    let no_manager = pools
        .patch("q", &PatchParams::default(), &Patch::Apply(&update))
        .await
        .err()
        .unwrap_or_else(|| panic!("apply without fieldManager accepted"));
    assert_eq!(api_error(no_manager).code, 400);
}

// 7. The kube-runtime finalizer flow.
#[tokio::test]
async fn finalizer_flow() {
    use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
    let handle = common::start().await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(
            &PostParams::default(),
            &service("fin", json!({"spec": {"ports": [{"port": 80}]}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stream = watcher(
        services.clone(),
        watcher::Config::default().fields("metadata.name=fin"),
    )
    .applied_objects()
    .boxed();
    let mut phases = Vec::new();
    let mut deleted = false;
    for _ in 0..10 {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        let Ok(Some(Ok(object))) = next else { break };
        let result = finalizer(
            &services,
            "ironlb.io/test",
            std::sync::Arc::new(object),
            |event| async move {
                match event {
                    FinalizerEvent::Apply(_) | FinalizerEvent::Cleanup(_) => {
                        Ok::<_, std::convert::Infallible>(
                            kube::runtime::controller::Action::await_change(),
                        )
                    }
                }
            },
        )
        .await;
        phases.push(result.is_ok());
        let current = services
            .get_opt("fin")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        match current {
            Some(svc) if svc.finalizers().iter().any(|f| f == "ironlb.io/test") && !deleted => {
                // The finalizer is in place: delete, which only sets deletionTimestamp.
                let response = services
                    .delete("fin", &DeleteParams::default())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let marked = response
                    .left()
                    .unwrap_or_else(|| panic!("delete with finalizers returns the object"));
                assert!(marked.metadata.deletion_timestamp.is_some());
                deleted = true;
            }
            None => break,
            _ => {}
        }
    }
    assert!(deleted, "the finalizer was added and the object marked");
    common::eventually("object removed once the finalizer is gone", || {
        let services = services.clone();
        async move { services.get_opt("fin").await.ok().flatten().is_none() }
    })
    .await;
    assert!(phases.iter().all(|ok| *ok));
}

// 8. Error helpers.
#[tokio::test]
async fn error_statuses() {
    let handle = common::start().await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = service("dup", json!({"spec": {"ports": [{"port": 80}]}}));
    services
        .create(&PostParams::default(), &svc)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(api_error(
        services
            .create(&PostParams::default(), &svc)
            .await
            .err()
            .unwrap_or_else(|| panic!("duplicate accepted"))
    )
    .is_already_exists());
    assert!(api_error(
        services
            .get("missing")
            .await
            .err()
            .unwrap_or_else(|| panic!("missing found"))
    )
    .is_not_found());
    let wrong = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    assert_eq!(
        api_error(
            services
                .delete("dup", &wrong)
                .await
                .err()
                .unwrap_or_else(|| panic!("precondition ignored"))
        )
        .code,
        409
    );
    let elsewhere: Api<Service> = Api::namespaced(client.clone(), "nowhere");
    let status = api_error(
        elsewhere
            .create(&PostParams::default(), &svc)
            .await
            .err()
            .unwrap_or_else(|| panic!("created in a missing namespace")),
    );
    assert_eq!(status.code, 404);
    assert_eq!(status.message, "namespaces \"nowhere\" not found");
}

// 9. Recorder events, visible through core/v1.
#[tokio::test]
async fn recorder_events_share_one_store() {
    let handle = common::start().await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web = services
        .create(
            &PostParams::default(),
            &service("web", json!({"spec": {"ports": [{"port": 80}]}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "ironlb-controller".into(),
            instance: Some("ironlb-controller-0".into()),
        },
    );
    let event = RecorderEvent {
        type_: EventType::Normal,
        reason: "IPAllocated".into(),
        note: Some("Assigned IP".into()),
        action: "Allocate".into(),
        secondary: None,
    };
    let reference = web.object_ref(&());
    recorder
        .publish(&event, &reference)
        .await
        .unwrap_or_else(|e| panic!("first publish: {e}"));
    recorder
        .publish(&event, &reference)
        .await
        .unwrap_or_else(|e| panic!("second publish: {e}"));
    let core_events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let selector = format!("involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=Service,involvedObject.uid={}", web.uid().unwrap_or_default());
    let list = core_events
        .list(&ListParams::default().fields(&selector))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(list.items.len(), 1, "one event, not two");
    let only = &list.items[0];
    assert_eq!(only.series.as_ref().and_then(|s| s.count), Some(2));
    assert_eq!(only.involved_object.name.as_deref(), Some("web"));
    assert_eq!(only.message.as_deref(), Some("Assigned IP"));
    assert_eq!(
        only.reporting_component.as_deref(),
        Some("ironlb-controller")
    );
    let v1: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    let same = v1
        .get(&only.name_any())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(same.uid(), only.uid());
    assert_eq!(same.resource_version(), only.resource_version());
}

// 10. Lease race.
#[tokio::test]
async fn lease_race_has_one_winner() {
    let handle = common::start().await;
    let client = common::client(&handle);
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let lease: Lease = serde_json::from_value(
        json!({"metadata": {"name": "ironlb"}, "spec": {"holderIdentity": "nobody"}}),
    )
    .unwrap_or_default();
    let created = leases
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut attempts = Vec::new();
    for holder in ["a", "b"] {
        let leases = leases.clone();
        let mut mine = created.clone();
        attempts.push(tokio::spawn(async move {
            if let Some(spec) = mine.spec.as_mut() {
                spec.holder_identity = Some(holder.into());
            }
            leases
                .replace("ironlb", &PostParams::default(), &mine)
                .await
        }));
    }
    let mut wins = 0;
    let mut conflicts = 0;
    for attempt in attempts {
        match attempt.await.unwrap_or_else(|e| panic!("{e}")) {
            Ok(_) => wins += 1,
            Err(kube::Error::Api(status)) if status.is_conflict() => conflicts += 1,
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!((wins, conflicts), (1, 1));
}

// 11. Services, no-op writes, generation.
#[tokio::test]
async fn services_allocation_noop_and_generation() {
    let handle = common::start().await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let cidr: ipnet::IpNet = "10.96.0.0/12".parse().unwrap_or_else(|e| panic!("{e}"));
    let mut ips = std::collections::BTreeSet::new();
    let mut ports = std::collections::BTreeSet::new();
    for index in 0..5 {
        let svc = service(
            &format!("lb-{index}"),
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
        );
        let created = services
            .create(&PostParams::default(), &svc)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let spec = created.spec.clone().unwrap_or_default();
        let ip: std::net::IpAddr = spec
            .cluster_ip
            .unwrap_or_default()
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(cidr.contains(&ip));
        assert!(ips.insert(ip), "cluster IPs are unique");
        let port = spec.ports.unwrap_or_default()[0].node_port.unwrap_or(0);
        assert!((30000..=32767).contains(&port));
        assert!(ports.insert(port), "node ports are unique");
        let ingress = created
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress);
        assert!(
            ingress.is_none_or(|i| i.is_empty()),
            "status sent on create is dropped"
        );
    }
    let dual = services
        .create(
            &PostParams::default(),
            &service(
                "dual",
                json!({"spec": {"ipFamilyPolicy": "PreferDualStack", "ports": [{"port": 80}]}}),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        dual.spec.and_then(|s| s.cluster_ips).map(|ips| ips.len()),
        Some(2)
    );
    let taken = ips
        .iter()
        .next()
        .map(ToString::to_string)
        .unwrap_or_default();
    let clash = services
        .create(
            &PostParams::default(),
            &service(
                "clash",
                json!({"spec": {"clusterIP": taken, "ports": [{"port": 80}]}}),
            ),
        )
        .await;
    let status = api_error(
        clash
            .err()
            .unwrap_or_else(|| panic!("duplicate clusterIP accepted")),
    );
    assert!(
        status.is_invalid() && status.message.contains("already allocated"),
        "{}",
        status.message
    );

    // ipMode defaulted; a no-op status write keeps the RV and emits no event.
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
    let written = services
        .patch_status("lb-0", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rv = written.resource_version();
    let ingress = written
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|l| l.ingress)
        .unwrap_or_default();
    assert_eq!(ingress[0].ip_mode.as_deref(), Some("VIP"));
    let mut watch = common::WatchLines::open(
        &handle,
        &format!(
            "/api/v1/namespaces/default/services?watch=true&resourceVersion={}",
            rv.clone().unwrap_or_default()
        ),
        None,
    )
    .await;
    let again = services
        .patch_status("lb-0", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.resource_version(), rv, "no-op write keeps the RV");
    assert!(
        watch.next(Duration::from_millis(500)).await.is_none(),
        "no-op write emits no event"
    );

    // A CR's generation moves on spec changes only.
    metallb_namespace(&client).await;
    let pools = pools(&client, "metallb-system");
    let created = pools
        .create(&PostParams::default(), &pool("g", &["192.0.2.0/24"]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created.metadata.generation, Some(1));
    let labelled = pools
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(labelled.metadata.generation, Some(1));
    let status = pools.patch_status("g", &PatchParams::default(), &Patch::Merge(&json!({"status": {"assignedIPv4": 1, "assignedIPv6": 0, "availableIPv4": 255, "availableIPv6": 0}}))).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.metadata.generation, Some(1));
    let spec = pools
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"autoAssign": false}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.metadata.generation, Some(2));
}
