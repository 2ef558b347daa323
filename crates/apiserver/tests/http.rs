//! Wire-level behaviour over raw HTTP: discovery negotiation, OpenAPI, watch event framing
//! (410 as an ERROR event, bookmarks, initial events), error bodies, robustness, the in-process
//! controllers and CRD registration rules.

mod common;

use std::time::Duration;

use common::{raw, WatchLines};
use ironlb_apiserver::Config;
use serde_json::{json, Value};

const JSON: (&str, &str) = ("Content-Type", "application/json");

async fn post(handle: &ironlb_apiserver::ServerHandle, path: &str, body: Value) -> common::Raw {
    raw(handle, "POST", path, &[JSON], body.to_string().as_bytes()).await
}

fn svc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}})
}

#[tokio::test]
async fn discovery_openapi_and_version() {
    let handle = common::start().await;
    let version = raw(&handle, "GET", "/version?timeout=5s", &[], b"").await;
    assert_eq!(
        version.json()["gitVersion"]
            .as_str()
            .map(|v| v.starts_with("v1.32")),
        Some(true)
    );
    assert_eq!(raw(&handle, "GET", "/healthz", &[], b"").await.text(), "ok");
    let accept = ("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json");
    let aggregated = raw(&handle, "GET", "/apis", &[accept], b"").await;
    assert_eq!(
        aggregated.header("content-type"),
        Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    );
    let metallb = aggregated.json()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|g| g["metadata"]["name"] == "metallb.io");
    let versions: Vec<Value> = metallb
        .map(|g| g["versions"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(
        versions
            .iter()
            .map(|v| v["version"].clone())
            .collect::<Vec<_>>(),
        [json!("v1beta2"), json!("v1beta1")]
    );
    let legacy = raw(&handle, "GET", "/apis", &[], b"").await;
    assert_eq!(legacy.json()["kind"], "APIGroupList");
    let group = legacy.json()["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|g| g["name"] == "metallb.io")
        .unwrap_or_default();
    assert_eq!(group["preferredVersion"]["version"], "v1beta2");
    let core = raw(&handle, "GET", "/api/v1", &[], b"").await.json();
    let status = core["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|r| r["name"] == "services/status")
        .unwrap_or_default();
    assert_eq!(status["verbs"], json!(["get", "patch", "update"]));

    let index = raw(&handle, "GET", "/openapi/v3", &[], b"").await.json();
    let url = index["paths"]["apis/metallb.io/v1beta1"]["serverRelativeURL"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        url.starts_with("/openapi/v3/apis/metallb.io/v1beta1?hash="),
        "{index}"
    );
    let doc = raw(&handle, "GET", &url, &[], b"").await.json();
    let path = &doc["paths"]
        ["/apis/metallb.io/v1beta1/namespaces/{namespace}/ipaddresspools/{name}"]["patch"];
    assert_eq!(
        path["x-kubernetes-group-version-kind"],
        json!({"group": "metallb.io", "version": "v1beta1", "kind": "IPAddressPool"})
    );
    assert!(path["parameters"].as_array().is_some_and(|p| p
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")));
    assert_eq!(
        raw(&handle, "GET", "/openapi/v2", &[], b"").await.status,
        404
    );
}

#[tokio::test]
async fn error_bodies_and_routing() {
    let handle = common::start().await;
    let missing = raw(
        &handle,
        "GET",
        "/api/v1/namespaces/default/services/nope",
        &[],
        b"",
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "services \"nope\" not found", "reason": "NotFound", "details": {"name": "nope", "kind": "services"}, "code": 404})
    );
    let unknown_kind = raw(&handle, "GET", "/apis/example.com/v1/widgets", &[], b"").await;
    assert_eq!(unknown_kind.status, 404);
    assert_eq!(
        unknown_kind.json()["message"],
        "the server could not find the requested resource"
    );
    assert_eq!(
        raw(&handle, "GET", "/api/v1/namespaces/default/nodes", &[], b"")
            .await
            .status,
        404,
        "namespaced path to a cluster-scoped kind"
    );
    assert_eq!(
        raw(
            &handle,
            "POST",
            "/api/v1/namespaces/default/services/x",
            &[JSON],
            b"{}"
        )
        .await
        .status,
        405
    );
    let malformed = raw(
        &handle,
        "POST",
        "/api/v1/namespaces/default/services",
        &[JSON],
        b"{not json",
    )
    .await;
    assert_eq!(
        (malformed.status, malformed.json()["reason"].clone()),
        (400, json!("BadRequest"))
    );
    let array = raw(
        &handle,
        "POST",
        "/api/v1/namespaces/default/services",
        &[JSON],
        b"[1,2]",
    )
    .await;
    assert_eq!(array.status, 400);
    let wrong_kind = post(
        &handle,
        "/api/v1/namespaces/default/services",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}),
    )
    .await;
    assert_eq!(wrong_kind.status, 400);
    let protobuf = raw(
        &handle,
        "POST",
        "/api/v1/namespaces/default/services",
        &[("Content-Type", "application/vnd.kubernetes.protobuf")],
        b"k8s\0junk",
    )
    .await;
    assert_eq!(
        (protobuf.status, protobuf.json()["reason"].clone()),
        (415, json!("UnsupportedMediaType"))
    );
    let garbage = raw(
        &handle,
        "POST",
        "/api/v1/namespaces/default/secrets",
        &[("Content-Type", "application/vnd.kubernetes.protobuf")],
        b"k8s\0\xff\xff\xff",
    )
    .await;
    assert_eq!(garbage.status, 400);
    let unknown_patch = raw(
        &handle,
        "PATCH",
        "/api/v1/namespaces/default/services/kubernetes",
        &[("Content-Type", "text/plain")],
        b"x",
    )
    .await;
    assert_eq!(unknown_patch.status, 415);
    let other_namespace = post(&handle, "/api/v1/namespaces/default/services", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "kube-system"}, "spec": {"ports": [{"port": 80}]}})).await;
    assert_eq!(other_namespace.status, 400);
    let bad_name = post(
        &handle,
        "/api/v1/namespaces/default/services",
        svc("Bad_Name"),
    )
    .await;
    assert_eq!(
        (
            bad_name.status,
            bad_name.json()["details"]["causes"][0]["field"].clone()
        ),
        (422, json!("metadata.name"))
    );
    let invalid = post(&handle, "/api/v1/namespaces/default/services", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "p"}, "spec": {"ports": [{"port": 70000}]}})).await;
    assert_eq!(invalid.status, 422);
    let message = invalid.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.starts_with("Service \"p\" is invalid: [spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"), "{message}");
    // Oversize bodies get 413, not a crash.
    let huge = vec![b' '; 4 * 1024 * 1024];
    let too_large = raw(
        &handle,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[JSON],
        &huge,
    )
    .await;
    assert_eq!(too_large.status, 413);
    // Selectors that do not parse are 400.
    assert_eq!(
        raw(
            &handle,
            "GET",
            "/api/v1/services?labelSelector=a+in+%28",
            &[],
            b""
        )
        .await
        .status,
        400
    );
    assert_eq!(
        raw(
            &handle,
            "GET",
            "/api/v1/services?fieldSelector=spec.type%3DX",
            &[],
            b""
        )
        .await
        .status,
        400
    );
    // kube-rs' form-encoded queries with leading `&` and `+` for spaces.
    let listed = raw(&handle, "GET", "/api/v1/namespaces/default/services?&labelSelector=component+in+%28apiserver%29%2C%21legacy&limit=500", &[], b"").await;
    assert_eq!(listed.json()["items"].as_array().map(Vec::len), Some(1));
    // The server still serves after all of that.
    assert_eq!(
        raw(
            &handle,
            "GET",
            "/api/v1/namespaces/default/services/kubernetes",
            &[],
            b""
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn fuzzed_requests_never_crash() {
    let handle = common::start().await;
    let paths = [
        "/api/v1/namespaces/default/services",
        "/api/v1/namespaces/default/services/kubernetes",
        "/apis/metallb.io/v1beta1/namespaces/default/ipaddresspools",
        "/api/v1/namespaces/default/events",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "/api/v1/namespaces",
    ];
    let bodies: [&[u8]; 8] = [b"", b"null", b"{}", b"{\"metadata\":5}", b"{\"metadata\":{\"name\":[]},\"spec\":\"x\"}", b"[{\"op\":\"move\"}]", b"\xff\xfe", b"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"a\"},\"spec\":{\"ports\":[{\"port\":\"x\",\"nodePort\":-1}],\"clusterIPs\":[1],\"ipFamilyPolicy\":7}}"];
    let types = [
        "application/json",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
        "application/vnd.kubernetes.protobuf",
    ];
    for path in paths {
        for body in bodies {
            for content_type in types {
                for method in ["POST", "PUT", "PATCH", "DELETE"] {
                    let answer = raw(
                        &handle,
                        method,
                        &format!("{path}?fieldManager=f"),
                        &[("Content-Type", content_type)],
                        body,
                    )
                    .await;
                    assert!(
                        answer.status >= 200 && answer.status < 500,
                        "{method} {path} {content_type} {body:?}: {}",
                        answer.status
                    );
                }
            }
        }
    }
    assert_eq!(raw(&handle, "GET", "/healthz", &[], b"").await.status, 200);
    assert_eq!(
        raw(&handle, "GET", "/api/v1/services", &[], b"")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn watch_framing_410_bookmarks_and_initial_events() {
    let handle = common::start_with(Config {
        crds: common::metallb_crds(),
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let created = post(&handle, "/api/v1/namespaces/default/services", svc("a"))
        .await
        .json();
    let rv: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    // From an RV: later events only; bookmarks periodically; a clean end at timeoutSeconds.
    let mut watch = WatchLines::open(&handle, &format!("/api/v1/namespaces/default/services?watch=true&allowWatchBookmarks=true&timeoutSeconds=2&resourceVersion={rv}"), None).await;
    assert_eq!(watch.status, 200);
    post(&handle, "/api/v1/namespaces/default/services", svc("b")).await;
    let added = watch
        .next(Duration::from_secs(10))
        .await
        .unwrap_or_default();
    assert_eq!(
        (
            added["type"].clone(),
            added["object"]["metadata"]["name"].clone()
        ),
        (json!("ADDED"), json!("b"))
    );
    assert_eq!(added["object"]["kind"], "Service");
    let mut bookmarks = 0;
    while let Some(event) = watch.next(Duration::from_secs(10)).await {
        assert_eq!(event["type"], "BOOKMARK", "{event}");
        assert_eq!(event["object"]["kind"], "Service");
        assert_eq!(event["object"]["apiVersion"], "v1");
        assert!(event["object"]["metadata"]["resourceVersion"].is_string());
        bookmarks += 1;
    }
    assert!(bookmarks >= 2, "periodic and final bookmarks: {bookmarks}");

    // Compacted RV → HTTP 200 with one ERROR event (410 Expired), then the end.
    handle.compact();
    let mut expired = WatchLines::open(
        &handle,
        &format!("/api/v1/namespaces/default/services?watch=true&resourceVersion={rv}"),
        None,
    )
    .await;
    assert_eq!(expired.status, 200);
    let error = expired
        .next(Duration::from_secs(10))
        .await
        .unwrap_or_default();
    assert_eq!(error["type"], "ERROR");
    assert_eq!(error["object"]["code"], 410);
    assert_eq!(error["object"]["reason"], "Expired");
    assert!(
        error["object"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("too old resource version: {rv} (")),
        "{error}"
    );
    assert!(expired.next(Duration::from_secs(10)).await.is_none());

    // sendInitialEvents: ADDED for all, then the initial-events-end bookmark.
    let mut initial = WatchLines::open(&handle, "/api/v1/namespaces/default/services?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion=", None).await;
    let mut names = Vec::new();
    loop {
        let event = initial
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_default();
        if event["type"] == "BOOKMARK" {
            assert_eq!(
                event["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
                "true"
            );
            break;
        }
        assert_eq!(event["type"], "ADDED");
        names.push(
            event["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(names, ["a", "b", "kubernetes"]);
    // A future RV is accepted and silent.
    let mut future = WatchLines::open(
        &handle,
        "/api/v1/namespaces/default/services?watch=true&resourceVersion=999999",
        None,
    )
    .await;
    assert_eq!(future.status, 200);
    post(&handle, "/api/v1/namespaces/default/services", svc("c")).await;
    assert!(future.next(Duration::from_millis(300)).await.is_none());
    // Table watches: each event object is a one-row Table.
    let mut table = WatchLines::open(
        &handle,
        "/api/v1/namespaces/default/services?watch=true&fieldSelector=metadata.name%3Dc",
        Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
    )
    .await;
    let row = table
        .next(Duration::from_secs(10))
        .await
        .unwrap_or_default();
    assert_eq!(row["object"]["kind"], "Table");
    assert_eq!(row["object"]["rows"][0]["cells"][0], "c");
    // Metadata watches.
    let mut metadata = WatchLines::open(
        &handle,
        "/api/v1/namespaces/default/services?watch=true&fieldSelector=metadata.name%3Dc",
        Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"),
    )
    .await;
    let partial = metadata
        .next(Duration::from_secs(10))
        .await
        .unwrap_or_default();
    assert_eq!(partial["object"]["kind"], "PartialObjectMetadata");
    assert!(partial["object"].get("spec").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_and_disconnects() {
    let handle = common::start().await;
    let mut watchers = Vec::new();
    for _ in 0..200 {
        watchers.push(
            WatchLines::open(
                &handle,
                "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0",
                None,
            )
            .await,
        );
    }
    // A client that disconnects mid-watch does not disturb the others.
    let dropped: Vec<WatchLines> = (0..20).filter_map(|_| watchers.pop()).collect();
    drop(dropped);
    for index in 0..10 {
        post(&handle, "/api/v1/namespaces/default/configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{index}")}})).await;
    }
    let mut tasks = Vec::new();
    for mut watch in watchers {
        tasks.push(tokio::spawn(async move {
            let mut names = Vec::new();
            while names.len() < 10 {
                let Some(event) = watch.next(Duration::from_secs(30)).await else {
                    break;
                };
                names.push(
                    event["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            names
        }));
    }
    let expected: Vec<String> = (0..10).map(|i| format!("cm-{i}")).collect();
    for task in tasks {
        assert_eq!(task.await.unwrap_or_default(), expected);
    }
    assert_eq!(raw(&handle, "GET", "/healthz", &[], b"").await.status, 200);
}

#[tokio::test]
async fn lists_paginate_and_respect_rv_semantics() {
    let handle = common::start().await;
    for index in 0..7 {
        post(&handle, "/api/v1/namespaces/default/configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{index}")}})).await;
    }
    let mut names = Vec::new();
    let mut token = String::new();
    let mut rvs = Vec::new();
    loop {
        let query = if token.is_empty() {
            "limit=3".to_string()
        } else {
            format!("limit=3&continue={token}")
        };
        let page = raw(
            &handle,
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?{query}"),
            &[],
            b"",
        )
        .await
        .json();
        rvs.push(page["metadata"]["resourceVersion"].clone());
        names.extend(
            page["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|i| {
                    i["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                }),
        );
        match page["metadata"]["continue"].as_str() {
            Some(next) => token = next.to_string(),
            None => break,
        }
    }
    assert_eq!(names.len(), 7);
    assert!(
        rvs.windows(2).all(|w| w[0] == w[1]),
        "pages share the first page's RV: {rvs:?}"
    );
    let exact = raw(
        &handle,
        "GET",
        "/api/v1/namespaces/default/configmaps?resourceVersion=1&resourceVersionMatch=Exact",
        &[],
        b"",
    )
    .await;
    assert_eq!(exact.status, 410);
    assert_eq!(
        raw(&handle, "GET", "/api/v1/configmaps?continue=%%%", &[], b"")
            .await
            .status,
        400
    );
    let table = raw(
        &handle,
        "GET",
        "/api/v1/namespaces/default/configmaps?limit=500",
        &[(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )],
        b"",
    )
    .await
    .json();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"].as_array().map(Vec::len), Some(7));
}

#[tokio::test]
async fn namespaces_gc_and_terminating() {
    let handle = common::start().await;
    post(
        &handle,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}),
    )
    .await;
    let owner = post(
        &handle,
        "/api/v1/namespaces/doomed/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}),
    )
    .await
    .json();
    let uid = owner["metadata"]["uid"].clone();
    post(&handle, "/api/v1/namespaces/doomed/configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "child", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}})).await;
    post(&handle, "/api/v1/namespaces/doomed/configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "orphan", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}})).await;
    // Orphan strips the reference from dependents.
    raw(
        &handle,
        "DELETE",
        "/api/v1/namespaces/doomed/configmaps/owner",
        &[JSON],
        br#"{"propagationPolicy":"Orphan"}"#,
    )
    .await;
    let orphan = raw(
        &handle,
        "GET",
        "/api/v1/namespaces/doomed/configmaps/orphan",
        &[],
        b"",
    )
    .await
    .json();
    assert!(
        orphan["metadata"].get("ownerReferences").is_none(),
        "{orphan}"
    );
    let owner2 = post(
        &handle,
        "/api/v1/namespaces/doomed/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner2"}}),
    )
    .await
    .json();
    post(&handle, "/api/v1/namespaces/doomed/configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "child2", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner2["metadata"]["uid"]}]}})).await;
    raw(
        &handle,
        "DELETE",
        "/api/v1/namespaces/doomed/configmaps/owner2",
        &[JSON],
        b"{}",
    )
    .await;
    common::eventually("GC deletes child2", || async {
        raw(
            &handle,
            "GET",
            "/api/v1/namespaces/doomed/configmaps/child2",
            &[],
            b"",
        )
        .await
        .status
            == 404
    })
    .await;
    // A finalizer holds the namespace in Terminating; creates there are 403.
    post(&handle, "/api/v1/namespaces/doomed/configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["ironlb.io/hold"]}})).await;
    let deleting = raw(
        &handle,
        "DELETE",
        "/api/v1/namespaces/doomed",
        &[JSON],
        b"{}",
    )
    .await
    .json();
    assert_eq!(deleting["status"]["phase"], "Terminating");
    let forbidden = post(
        &handle,
        "/api/v1/namespaces/doomed/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}),
    )
    .await;
    assert_eq!(forbidden.status, 403);
    common::eventually("contents deleted", || async {
        raw(
            &handle,
            "GET",
            "/api/v1/namespaces/doomed/configmaps/orphan",
            &[],
            b"",
        )
        .await
        .status
            == 404
    })
    .await;
    assert_eq!(
        raw(&handle, "GET", "/api/v1/namespaces/doomed", &[], b"")
            .await
            .status,
        200,
        "held by the finalizer"
    );
    raw(
        &handle,
        "PATCH",
        "/api/v1/namespaces/doomed/configmaps/held",
        &[("Content-Type", "application/merge-patch+json")],
        br#"{"metadata":{"finalizers":null}}"#,
    )
    .await;
    common::eventually("namespace removed", || async {
        raw(&handle, "GET", "/api/v1/namespaces/doomed", &[], b"")
            .await
            .status
            == 404
    })
    .await;
}

fn widget_crd(rule: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}, {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-validations": [{"rule": rule, "message": "size must stay small"}],
                        "properties": {"size": {"type": "integer", "default": 1, "maximum": 100}, "mode": {"type": "string", "enum": ["a", "b"]}}},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}}}]}
    })
}

#[tokio::test]
async fn crd_lifecycle_defaults_validation_and_cleanup() {
    let handle = common::start_with(Config::default()).await;
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let refused = post(&handle, crds, widget_crd("isSemver(self.mode)")).await;
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert!(
        refused.text().contains("isSemver(self.mode)"),
        "names the rule: {}",
        refused.text()
    );
    let mut bad_name = widget_crd("self.size < 50");
    bad_name["metadata"]["name"] = json!("gadgets.example.com");
    assert_eq!(post(&handle, crds, bad_name).await.status, 422);
    let created = post(&handle, crds, widget_crd("self.size < 50")).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let conditions = created.json()["status"]["conditions"].clone();
    assert!(
        conditions.as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")),
        "{conditions}"
    );
    let widgets = "/apis/example.com/v1/namespaces/default/widgets";
    let widget = post(&handle, widgets, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"extra": true}})).await;
    assert_eq!(widget.status, 201, "{}", widget.text());
    assert_eq!(
        widget.json()["spec"],
        json!({"size": 1}),
        "pruned and defaulted"
    );
    assert!(
        widget
            .header("warning")
            .is_some_and(|w| w.contains("unknown field \\\"spec.extra\\\"")),
        "{:?}",
        widget.headers
    );
    let strict = raw(&handle, "POST", &format!("{widgets}?fieldValidation=Strict"), &[JSON], json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "s"}, "spec": {"extra": true}}).to_string().as_bytes()).await;
    assert_eq!(strict.status, 400);
    assert!(
        strict.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("strict decoding error: unknown field \"spec.extra\""),
        "{}",
        strict.text()
    );
    let invalid = post(&handle, widgets, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "i"}, "spec": {"size": 200, "mode": "c"}})).await;
    assert_eq!(invalid.status, 422);
    let causes: Vec<Value> = invalid.json()["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let fields: Vec<&str> = causes.iter().filter_map(|c| c["field"].as_str()).collect();
    assert!(
        fields.contains(&"spec.size") && fields.contains(&"spec.mode"),
        "{causes:?}"
    );
    let cel = post(&handle, widgets, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "c"}, "spec": {"size": 60}})).await;
    assert_eq!(cel.status, 422);
    assert!(
        cel.text().contains("size must stay small"),
        "{}",
        cel.text()
    );
    let smp = raw(
        &handle,
        "PATCH",
        &format!("{widgets}/w"),
        &[("Content-Type", "application/strategic-merge-patch+json")],
        b"{}",
    )
    .await;
    assert_eq!(smp.status, 415);
    let empty_rv = raw(&handle, "PUT", &format!("{widgets}/w"), &[JSON], json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}}).to_string().as_bytes()).await;
    assert_eq!(
        empty_rv.status, 422,
        "an update without RV is invalid for CRs"
    );
    let table = raw(
        &handle,
        "GET",
        widgets,
        &[("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
        b"",
    )
    .await
    .json();
    let columns: Vec<Value> = table["columnDefinitions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(columns, [json!("Name"), json!("Size"), json!("Age")]);
    assert_eq!(table["rows"][0]["cells"][1], 1);
    // Deleting the CRD deletes its objects, then the kind leaves discovery.
    raw(
        &handle,
        "DELETE",
        &format!("{crds}/widgets.example.com"),
        &[JSON],
        b"{}",
    )
    .await;
    common::eventually("widgets gone from discovery", || async {
        raw(&handle, "GET", "/apis/example.com/v1", &[], b"")
            .await
            .status
            == 404
    })
    .await;
    assert_eq!(
        raw(&handle, "GET", &format!("{widgets}/w"), &[], b"")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn events_v1_validation_and_hooks() {
    let handle = common::start().await;
    let invalid = post(&handle, "/apis/events.k8s.io/v1/namespaces/default/events", json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "type": "Odd"})).await;
    assert_eq!(invalid.status, 422);
    let fields: Vec<Value> = invalid.json()["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| c["field"].clone())
        .collect();
    for field in [
        "eventTime",
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
        "type",
    ] {
        assert!(fields.contains(&json!(field)), "{field}: {fields:?}");
    }
    // fail-writes hook: the next write to a matching path fails with the chosen code.
    raw(
        &handle,
        "POST",
        "/__stand-in/fail-writes",
        &[JSON],
        br#"{"count":1,"code":429,"pathContains":"/configmaps"}"#,
    )
    .await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    assert_eq!(
        post(&handle, "/api/v1/namespaces/default/configmaps", cm.clone())
            .await
            .status,
        429
    );
    assert_eq!(
        post(&handle, "/api/v1/namespaces/default/configmaps", cm)
            .await
            .status,
        201
    );
    let log = raw(&handle, "GET", "/__stand-in/requests", &[], b"")
        .await
        .json();
    let posts = log["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/api/v1/namespaces/default/configmaps")
        .count();
    assert_eq!(posts, 2);
    // dryRun runs everything but stores nothing.
    let dry = raw(
        &handle,
        "POST",
        "/api/v1/namespaces/default/configmaps?dryRun=All",
        &[JSON],
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dry"}}"#,
    )
    .await;
    assert_eq!(dry.status, 201);
    assert_eq!(
        raw(
            &handle,
            "GET",
            "/api/v1/namespaces/default/configmaps/dry",
            &[],
            b""
        )
        .await
        .status,
        404
    );
    // generateName.
    let generated = post(
        &handle,
        "/api/v1/namespaces/default/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}),
    )
    .await
    .json();
    let name = generated["metadata"]["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
}

/// apps/v1 workloads and rbac.authorization.k8s.io/v1 (what `deploy/ironlb.yaml` applies):
/// served, scoped, generation and status rules, unknown-field warnings, strategic merge of
/// pod-template containers by name.
#[tokio::test]
async fn workloads_and_rbac_are_served() {
    let handle = common::start().await;
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "controller", "labels": {"app": "ironlb"}},
        "spec": {
            "selector": {"matchLabels": {"app": "ironlb"}},
            "template": {
                "metadata": {"labels": {"app": "ironlb"}},
                "spec": {"containers": [
                    {"name": "controller", "image": "ironlb:1", "bogus": 1},
                    {"name": "sidecar", "image": "sidecar:1"},
                ]},
            },
        },
        "status": {"replicas": 3},
    });
    let created = post(
        &handle,
        "/apis/apps/v1/namespaces/default/deployments",
        deployment,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(
        created
            .header("warning")
            .is_some_and(|w| w.contains("spec.template.spec.containers[0].bogus")),
        "{:?}",
        created.headers
    );
    let object = created.json();
    assert_eq!(object["metadata"]["generation"], 1);
    assert_eq!(object.get("status"), None, "status is dropped on create");
    // A strategic merge patch changes one container by name and bumps the generation.
    let patched = raw(
        &handle,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/controller",
        &[("Content-Type", "application/strategic-merge-patch+json")],
        br#"{"spec":{"template":{"spec":{"containers":[{"name":"controller","image":"ironlb:2"}]}}}}"#,
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let containers = patched.json()["spec"]["template"]["spec"]["containers"].clone();
    assert_eq!(containers[0]["image"], "ironlb:2");
    assert_eq!(containers[1]["name"], "sidecar");
    assert_eq!(patched.json()["metadata"]["generation"], 2);
    let daemonset = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "speaker"},
        "spec": {"selector": {"matchLabels": {"app": "s"}}, "template": {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": [{"name": "speaker", "image": "ironlb:1"}]}}},
    });
    assert_eq!(
        post(
            &handle,
            "/apis/apps/v1/namespaces/default/daemonsets",
            daemonset
        )
        .await
        .status,
        201
    );
    let rules =
        json!([{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}]);
    let cluster_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "ironlb:controller"}, "rules": rules});
    assert_eq!(
        post(
            &handle,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            cluster_role
        )
        .await
        .status,
        201
    );
    // Cluster-scoped: no namespaced path.
    let namespaced = raw(
        &handle,
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/clusterroles",
        &[],
        b"",
    )
    .await;
    assert_eq!(namespaced.status, 404);
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "pod-lister"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-lister"},
        "subjects": [{"kind": "ServiceAccount", "name": "controller", "namespace": "default"}],
    });
    assert_eq!(
        post(
            &handle,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            binding
        )
        .await
        .status,
        201
    );
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "pod-lister"}, "rules": rules});
    assert_eq!(
        post(
            &handle,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
            role
        )
        .await
        .status,
        201
    );
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "controller"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ironlb:controller"},
        "subjects": [{"kind": "ServiceAccount", "name": "controller", "namespace": "default"}],
    });
    assert_eq!(
        post(
            &handle,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            binding
        )
        .await
        .status,
        201
    );
    let discovery = raw(&handle, "GET", "/apis/apps/v1", &[], b"").await.json();
    let names: Vec<Value> = discovery["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    for name in ["deployments", "deployments/status", "daemonsets"] {
        assert!(names.contains(&json!(name)), "{name}: {names:?}");
    }
}
