//! Server-side apply with `metadata.managedFields` (reference §6.12): kube-rs and kubectl 1.32
//! against an in-process stand-in.

mod common;

use ironlb_apiserver::Config;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Value};

const PORT_80: &str = "k:{\"port\":80,\"protocol\":\"TCP\"}";

fn service(body: Value) -> Value {
    let mut value = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
    if let (Some(target), Some(source)) = (value.as_object_mut(), body.as_object()) {
        for (k, v) in source {
            target.insert(k.clone(), v.clone());
        }
    }
    value
}

fn api_error(error: kube::Error) -> Box<kube::core::Status> {
    match error {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other}"),
    }
}

fn managed_fields(object: &impl serde::Serialize) -> Vec<Value> {
    let value = serde_json::to_value(object).unwrap_or_default();
    value["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn entry(entries: &[Value], manager: &str, operation: &str) -> Value {
    entries
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .cloned()
        .unwrap_or_else(|| panic!("no {manager}/{operation} entry in {entries:#?}"))
}

async fn apply(
    services: &Api<Service>,
    manager: &str,
    force: bool,
    body: &Value,
) -> Result<Service, kube::Error> {
    let mut params = PatchParams::apply(manager);
    params.force = force;
    services.patch("web", &params, &Patch::Apply(body)).await
}

// Create by apply, ownership entries, removal of fields the applier stops applying, no-op
// applies, conflicts and force, and an Update taking fields from an applier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_tracks_ownership_removes_and_conflicts() {
    let handle = common::start().await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");

    // Create: 201 with one Apply entry.
    let first = service(json!({
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                           {"name": "https", "port": 443, "targetPort": 8443}]},
    }));
    let created = common::raw(
        &handle,
        "PATCH",
        "/api/v1/namespaces/default/services/web?fieldManager=alpha",
        &[("Content-Type", "application/apply-patch+yaml")],
        first.to_string().as_bytes(),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let entries = created.json()["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let alpha = &entries[0];
    assert_eq!(alpha["manager"], "alpha");
    assert_eq!(alpha["operation"], "Apply");
    assert_eq!(alpha["apiVersion"], "v1");
    assert_eq!(alpha["fieldsType"], "FieldsV1");
    assert!(
        alpha["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{alpha}"
    );
    assert!(alpha.get("subresource").is_none());
    assert_eq!(
        alpha["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {"f:app": {}, "f:tier": {}}},
            "f:spec": {
                "f:ports": {
                    PORT_80: {".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}},
                    "k:{\"port\":443,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}},
                },
                "f:selector": {},
                "f:type": {},
            },
        })
    );

    // The same config again changes nothing: same RV, same timestamps.
    let again = apply(&services, "alpha", false, &first)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        again.resource_version().as_deref(),
        created.json()["metadata"]["resourceVersion"].as_str()
    );
    assert_eq!(json!(managed_fields(&again)), json!(entries));

    // Omitting a label and a port removes them; server-set fields stay.
    let second = service(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                 "ports": [{"port": 80, "targetPort": 8080}]},
    }));
    let trimmed = apply(&services, "alpha", false, &second)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        trimmed.labels().get("tier"),
        None,
        "label the applier dropped is gone"
    );
    let spec = trimmed.spec.clone().unwrap_or_default();
    let ports = spec.ports.unwrap_or_default();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert!(ports[0].node_port.is_some(), "allocated nodePort stays");
    assert!(spec.cluster_ip.is_some(), "allocated clusterIP stays");

    // Another applier changing alpha's field: 409 naming it.
    let beta = service(json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}));
    let conflict = api_error(
        apply(&services, "beta", false, &beta)
            .await
            .err()
            .unwrap_or_else(|| panic!("conflicting apply accepted")),
    );
    assert_eq!(conflict.code, 409);
    assert_eq!(conflict.reason, "Conflict");
    assert_eq!(
        conflict.message,
        "Apply failed with 1 conflict: conflict with \"alpha\": .spec.ports[port=80,protocol=\"TCP\"].targetPort"
    );
    let raw = common::raw(
        &handle,
        "PATCH",
        "/api/v1/namespaces/default/services/web?fieldManager=beta",
        &[("Content-Type", "application/apply-patch+yaml")],
        beta.to_string().as_bytes(),
    )
    .await;
    assert_eq!(raw.status, 409);
    assert_eq!(
        raw.json()["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"alpha\"",
                "field": ".spec.ports[port=80,protocol=\"TCP\"].targetPort"}])
    );
    // The same value is shared ownership, not a conflict.
    let shared = service(json!({"spec": {"type": "LoadBalancer"}}));
    apply(&services, "beta", false, &shared)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // force takes the field over.
    let forced = apply(&services, "beta", true, &beta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ports = forced
        .spec
        .clone()
        .unwrap_or_default()
        .ports
        .unwrap_or_default();
    assert_eq!(
        ports[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090))
    );
    let entries = managed_fields(&forced);
    let alpha = entry(&entries, "alpha", "Apply");
    assert!(
        alpha["fieldsV1"]["f:spec"]["f:ports"][PORT_80]
            .get("f:targetPort")
            .is_none(),
        "{alpha}"
    );
    assert!(alpha["fieldsV1"]["f:spec"].get("f:type").is_some());
    let beta_entry = entry(&entries, "beta", "Apply");
    assert_eq!(
        beta_entry["fieldsV1"],
        json!({"f:spec": {"f:ports": {PORT_80: {".": {}, "f:port": {}, "f:targetPort": {}}}}}),
        "beta's set is its last applied configuration"
    );

    // An Update by another manager takes the field it changes; alpha re-applying its old
    // value then conflicts with that Update manager.
    let merge = PatchParams {
        field_manager: Some("gamma".into()),
        ..PatchParams::default()
    };
    let updated = services
        .patch(
            "web",
            &merge,
            &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let entries = managed_fields(&updated);
    let gamma = entry(&entries, "gamma", "Update");
    assert_eq!(gamma["apiVersion"], "v1");
    assert_eq!(
        gamma["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:app": {}}}})
    );
    assert!(
        entry(&entries, "alpha", "Apply")["fieldsV1"]["f:metadata"].is_null(),
        "alpha lost the label: {entries:#?}"
    );
    let conflict = api_error(
        apply(&services, "alpha", false, &second)
            .await
            .err()
            .unwrap_or_else(|| panic!("apply over an Update accepted")),
    );
    assert_eq!(conflict.code, 409);
    assert!(
        conflict.message.starts_with("Apply failed with "),
        "{}",
        conflict.message
    );
    assert!(
        conflict
            .message
            .contains("conflicts with \"gamma\" using v1:\n- .metadata.labels.app"),
        "{}",
        conflict.message
    );
    assert!(
        conflict
            .message
            .contains("conflicts with \"beta\":\n- .spec.ports"),
        "{}",
        conflict.message
    );
}

// Status-subresource writes, the User-Agent manager, resets and what clients may not send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_resets_and_refusals() {
    let handle = common::start().await;
    let client = common::client(&handle);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let body = service(json!({"spec": {"ports": [{"port": 80}]}}));
    // A create without fieldManager: the manager is the User-Agent's product.
    let created = common::raw(
        &handle,
        "POST",
        "/api/v1/namespaces/default/services",
        &[
            ("Content-Type", "application/json"),
            ("User-Agent", "curl/8.5.0"),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let entries = created.json()["metadata"]["managedFields"].clone();
    assert_eq!(entries[0]["manager"], "curl");
    assert_eq!(entries[0]["operation"], "Update");
    assert_eq!(
        entries[0]["fieldsV1"]["f:spec"]["f:ports"]["."],
        json!({}),
        "a list the write created is itself a member"
    );
    let spec_fields = &entries[0]["fieldsV1"]["f:spec"];
    assert!(
        spec_fields.get("f:sessionAffinity").is_some(),
        "{spec_fields}"
    );
    for allocated in [
        "f:clusterIP",
        "f:clusterIPs",
        "f:ipFamilies",
        "f:ipFamilyPolicy",
    ] {
        assert!(
            spec_fields.get(allocated).is_none(),
            "allocations are not owned: {spec_fields}"
        );
    }

    // LIST and WATCH carry them as GET does.
    let list = common::raw(
        &handle,
        "GET",
        "/api/v1/namespaces/default/services?fieldSelector=metadata.name%3Dweb",
        &[],
        b"",
    )
    .await;
    assert_eq!(
        list.json()["items"][0]["metadata"]["managedFields"],
        entries,
        "{}",
        list.text()
    );
    let mut watch = common::WatchLines::open(
        &handle,
        "/api/v1/namespaces/default/services?watch=true&resourceVersion=0&fieldSelector=metadata.name%3Dweb",
        None,
    )
    .await;
    let event = watch
        .next(std::time::Duration::from_secs(10))
        .await
        .unwrap_or_default();
    assert_eq!(
        event["object"]["metadata"]["managedFields"], entries,
        "{event}"
    );

    // A status write records its own entry with `subresource: status`.
    let params = PatchParams {
        field_manager: Some("speaker".into()),
        ..PatchParams::default()
    };
    let status = services
        .patch_status(
            "web",
            &params,
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let entries = managed_fields(&status);
    let speaker = entry(&entries, "speaker", "Update");
    assert_eq!(speaker["subresource"], "status");
    assert_eq!(
        speaker["fieldsV1"],
        json!({"f:status": {"f:loadBalancer": {"f:ingress": {}}}})
    );
    // The same status again is a no-op: same RV, same entries.
    let same = services
        .patch_status(
            "web",
            &params,
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(same.resource_version(), status.resource_version());
    assert_eq!(managed_fields(&same), entries);

    // An apply body carrying managedFields is refused.
    let mut with_fields = body.clone();
    with_fields["metadata"]["managedFields"] = json!([{"manager": "x"}]);
    let refused = api_error(
        services
            .patch("web", &PatchParams::apply("x"), &Patch::Apply(&with_fields))
            .await
            .err()
            .unwrap_or_else(|| panic!("managedFields in apply accepted")),
    );
    assert_eq!(refused.code, 400);
    assert_eq!(refused.message, "metadata.managedFields must be nil");

    // fieldManager is at most 128 bytes; force is for apply patches only.
    let long = common::raw(
        &handle,
        "PATCH",
        &format!(
            "/api/v1/namespaces/default/services/web?fieldManager={}",
            "m".repeat(129)
        ),
        &[("Content-Type", "application/merge-patch+json")],
        b"{}",
    )
    .await;
    assert_eq!(long.status, 422, "{}", long.text());
    assert_eq!(
        long.json()["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes"
    );
    let forced = common::raw(
        &handle,
        "PATCH",
        "/api/v1/namespaces/default/services/web?fieldManager=x&force=true",
        &[("Content-Type", "application/merge-patch+json")],
        b"{}",
    )
    .await;
    assert_eq!(forced.status, 422, "{}", forced.text());
    assert_eq!(
        forced.json()["details"]["causes"][0]["field"],
        "force",
        "{}",
        forced.text()
    );

    // Updates that leave managedFields alone keep them; `[{}]` resets them.
    let kept = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        managed_fields(&kept).len(),
        3,
        "{:#?}",
        managed_fields(&kept)
    );
    let reset = common::raw(
        &handle,
        "PATCH",
        "/api/v1/namespaces/default/services/web",
        &[("Content-Type", "application/json-patch+json")],
        br#"[{"op": "replace", "path": "/metadata/managedFields", "value": [{}]}]"#,
    )
    .await;
    assert_eq!(reset.status, 200, "{}", reset.text());
    let reset: Service = serde_json::from_value(reset.json()).unwrap_or_else(|e| panic!("{e}"));
    assert!(reset.metadata.managed_fields.is_none(), "{reset:?}");
    assert_ne!(reset.resource_version(), kept.resource_version());

    // A PUT may carry valid entries (a restore); invalid ones leave the live entries alone.
    let mut restored = serde_json::to_value(&reset).unwrap_or_default();
    restored["metadata"]["managedFields"] = json!([{"manager": "restored", "operation": "Update",
        "apiVersion": "v1", "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:ports": {}}}}]);
    let put = common::raw(
        &handle,
        "PUT",
        "/api/v1/namespaces/default/services/web",
        &[("Content-Type", "application/json")],
        restored.to_string().as_bytes(),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        put.json()["metadata"]["managedFields"],
        restored["metadata"]["managedFields"]
    );
    let mut bogus = put.json();
    bogus["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus"}]);
    let put = common::raw(
        &handle,
        "PUT",
        "/api/v1/namespaces/default/services/web",
        &[("Content-Type", "application/json")],
        bogus.to_string().as_bytes(),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        put.json()["metadata"]["managedFields"],
        restored["metadata"]["managedFields"]
    );

    // A custom resource: fields by its schema, `f:spec` itself a member on create.
    let pools: Api<kube::core::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "metallb.io",
            "v1beta1",
            "IPAddressPool",
        )),
    );
    let pool = json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                      "metadata": {"name": "p"}, "spec": {"addresses": ["192.0.2.0/24"]}});
    let created = pools
        .patch("p", &PatchParams::apply("ops"), &Patch::Apply(&pool))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let entries = managed_fields(&created);
    assert_eq!(
        entry(&entries, "ops", "Apply")["fieldsV1"],
        json!({"f:spec": {"f:addresses": {}}})
    );
    assert_eq!(
        entry(&entries, "ops", "Apply")["apiVersion"],
        "metallb.io/v1beta1"
    );
}

// kubectl: `apply --server-side` twice with a field removed, conflicts and
// `--force-conflicts`, `--show-managed-fields`, and client-side apply's Update entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply() {
    let handle = common::start_with(Config {
        crds: common::metallb_crds(),
        ..Config::default()
    })
    .await;
    let Some(kubectl) = common::Kubectl::new(&handle) else {
        return;
    };
    let manifest = |annotation: &str, target_port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n{annotation}spec:\n  type: LoadBalancer\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: {target_port}\n"
        )
    };
    let first = kubectl.file(
        "first.yaml",
        &manifest("  annotations:\n    team: blue\n", 8080),
    );
    let out = kubectl.ok(&["apply", "--server-side", "-f", &first]).await;
    assert!(out.contains("service/web serverside-applied"), "{out}");
    let second = kubectl.file("second.yaml", &manifest("", 8080));
    kubectl.ok(&["apply", "--server-side", "-f", &second]).await;
    let annotations = kubectl
        .ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.metadata.annotations}",
        ])
        .await;
    assert!(!annotations.contains("team"), "{annotations}");

    // Hidden by default, shown with --show-managed-fields.
    let plain = kubectl.ok(&["get", "svc", "web", "-o", "yaml"]).await;
    assert!(!plain.contains("managedFields"), "{plain}");
    let shown = kubectl
        .ok(&["get", "svc", "web", "-o", "yaml", "--show-managed-fields"])
        .await;
    for needle in [
        "managedFields:",
        "manager: kubectl",
        "operation: Apply",
        "fieldsType: FieldsV1",
        "f:targetPort: {}",
    ] {
        assert!(shown.contains(needle), "{needle} missing in {shown}");
    }
    assert!(!shown.contains("f:team"), "{shown}");

    // Another manager changing targetPort: conflict, then --force-conflicts.
    let other = kubectl.file("other.yaml", &manifest("", 9090));
    let refused = kubectl
        .run(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            &other,
        ])
        .await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.ports[port=80,protocol=\"TCP\"].targetPort"
        ),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("--force-conflicts"), "{refused:?}");
    kubectl
        .ok(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            &other,
        ])
        .await;
    let port = kubectl
        .ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}",
        ])
        .await;
    assert_eq!(port, "9090");

    // Client-side apply records kubectl-client-side-apply as an Update; server-side apply
    // by kubectl may then change the fields it had applied client-side.
    let config = |value: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: {value}\n")
    };
    let client_side = kubectl.file("cm.yaml", &config("fast"));
    let out = kubectl.ok(&["apply", "-f", &client_side]).await;
    assert!(out.contains("configmap/settings created"), "{out}");
    let fields = kubectl
        .ok(&[
            "get",
            "cm",
            "settings",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await;
    let object: Value = serde_json::from_str(&fields).unwrap_or_default();
    let entries = object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let csa = entry(&entries, "kubectl-client-side-apply", "Update");
    assert_eq!(
        csa["fieldsV1"]["f:metadata"]["f:annotations"]
            ["f:kubectl.kubernetes.io/last-applied-configuration"],
        json!({})
    );
    assert_eq!(csa["fieldsV1"]["f:data"], json!({".": {}, "f:mode": {}}));
    let again = kubectl.ok(&["apply", "-f", &client_side]).await;
    assert!(again.contains("unchanged"), "{again}");
    let server_side = kubectl.file("cm2.yaml", &config("slow"));
    kubectl
        .ok(&["apply", "--server-side", "-f", &server_side])
        .await;
    let mode = kubectl
        .ok(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"])
        .await;
    assert_eq!(mode, "slow");
    let last_applied = kubectl
        .ok(&[
            "get",
            "cm",
            "settings",
            "-o",
            "jsonpath={.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}",
        ])
        .await;
    assert!(last_applied.contains("\"slow\""), "{last_applied}");

    // A ConfigMap another client wrote is still someone else's: kubectl conflicts with it.
    let client = common::client(&handle);
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut params = PatchParams::apply("operator");
    params.force = true;
    maps.patch(
        "owned",
        &params,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "owned"}, "data": {"k": "v"}})),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mine = kubectl.file(
        "owned.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\ndata:\n  k: w\n",
    );
    let refused = kubectl.run(&["apply", "--server-side", "-f", &mine]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("conflict with \"operator\": .data.k"),
        "{refused:?}"
    );
}
