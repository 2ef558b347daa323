//! The controller flow against the API stand-in, in-process (`metallb.md` §2).

mod common;

use std::time::Duration;

use common::{ingress_ips, lb_service, pool_annotation, wait, Harness, NAMESPACE};
use ironlb_controller::Options;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_on_create_with_annotation_events_and_pool_status() {
    let h = Harness::with_controller().await;
    h.apply_pool("pool-a", json!({"addresses": ["192.168.10.0/30"]}))
        .await;
    h.create_service(lb_service("web", 80)).await;
    let service = h.wait_ips("web", &["192.168.10.0"]).await;
    assert_eq!(pool_annotation(&service).as_deref(), Some("pool-a"));
    let reasons = wait("IPAllocated event", || async {
        let reasons = h.event_reasons("web").await;
        reasons
            .contains(&"IPAllocated".to_owned())
            .then_some(reasons)
    })
    .await;
    assert!(!reasons.contains(&"AllocationFailed".to_owned()));
    let status = wait("pool status counters", || async {
        let pool = h.pools().get("pool-a").await.ok()?;
        let status = pool.data.get("status")?.clone();
        (status.get("assignedIPv4")? == &json!(1)).then_some(status)
    })
    .await;
    assert_eq!(status["availableIPv4"], json!(3));
    assert_eq!(status["assignedIPv6"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_releases_and_pending_service_gets_the_ip() {
    let h = Harness::with_controller().await;
    h.apply_pool("one", json!({"addresses": ["192.168.20.1/32"]}))
        .await;
    h.create_service(lb_service("first", 80)).await;
    h.wait_ips("first", &["192.168.20.1"]).await;
    h.create_service(lb_service("second", 80)).await;
    wait("AllocationFailed on the pending service", || async {
        h.event_reasons("second")
            .await
            .contains(&"AllocationFailed".to_owned())
            .then_some(())
    })
    .await;
    assert!(ingress_ips(&h.service("second").await).is_empty());
    h.services("default")
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_ips("second", &["192.168.20.1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_change_clears_status_and_frees_the_ip() {
    let h = Harness::with_controller().await;
    h.apply_pool("one", json!({"addresses": ["192.168.21.1/32"]}))
        .await;
    h.create_service(lb_service("first", 80)).await;
    h.wait_ips("first", &["192.168.21.1"]).await;
    h.create_service(lb_service("second", 80)).await;
    h.services("default")
        .patch(
            "first",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "ClusterIP"}})),
        )
        .await
        .unwrap();
    h.wait_ips("second", &["192.168.21.1"]).await;
    let first = h.wait_ips("first", &[]).await;
    assert_eq!(pool_annotation(&first), None, "annotation removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_requested_ips_pool_annotation_and_auto_assign() {
    let h = Harness::with_controller().await;
    h.apply_pool("auto", json!({"addresses": ["192.168.30.0/30"]}))
        .await;
    h.apply_pool(
        "manual",
        json!({"addresses": ["192.168.31.0/30"], "autoAssign": false}),
    )
    .await;
    // Sharing: two services, same key, different ports, same IP.
    for (name, port) in [("share-a", 80), ("share-b", 443)] {
        let mut body = lb_service(name, port);
        body["metadata"]["annotations"] = json!({"metallb.io/allow-shared-ip": "k"});
        h.create_service(body).await;
    }
    let a = h.wait_any_ip("share-a").await;
    let b = h.wait_any_ip("share-b").await;
    assert_eq!(a, b, "shared IP");
    // Requested IP.
    let mut body = lb_service("requested", 80);
    body["metadata"]["annotations"] = json!({"metallb.io/loadBalancerIPs": "192.168.30.3"});
    h.create_service(body).await;
    h.wait_ips("requested", &["192.168.30.3"]).await;
    // Pool annotation picks the autoAssign=false pool.
    let mut body = lb_service("pinned", 80);
    body["metadata"]["annotations"] = json!({"metallb.io/address-pool": "manual"});
    h.create_service(body).await;
    let pinned = h.wait_ips("pinned", &["192.168.31.0"]).await;
    assert_eq!(pool_annotation(&pinned).as_deref(), Some("manual"));
    // autoAssign=false is never used automatically: fill "auto", the next one stays pending.
    h.create_service(lb_service("fill-1", 80)).await;
    h.create_service(lb_service("fill-2", 80)).await;
    h.wait_any_ip("fill-1").await;
    h.wait_any_ip("fill-2").await;
    h.create_service(lb_service("overflow", 80)).await;
    wait("overflow fails", || async {
        h.event_reasons("overflow")
            .await
            .contains(&"AllocationFailed".to_owned())
            .then_some(())
    })
    .await;
    assert!(ingress_ips(&h.service("overflow").await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_policies() {
    let h = Harness::with_controller().await;
    h.apply_pool(
        "dual",
        json!({"addresses": ["192.168.40.0/30", "fc00:40::/126"]}),
    )
    .await;
    let mut body = lb_service("require", 80);
    body["spec"]["ipFamilyPolicy"] = json!("RequireDualStack");
    body["spec"]["ipFamilies"] = json!(["IPv6", "IPv4"]);
    h.create_service(body).await;
    // Written IPv4 first whatever the order of ipFamilies.
    h.wait_ips("require", &["192.168.40.0", "fc00:40::"]).await;
    let mut body = lb_service("prefer", 80);
    body["spec"]["ipFamilyPolicy"] = json!("PreferDualStack");
    h.create_service(body).await;
    h.wait_ips("prefer", &["192.168.40.1", "fc00:40::1"]).await;
    let mut body = lb_service("v6", 80);
    body["spec"]["ipFamilies"] = json!(["IPv6"]);
    h.create_service(body).await;
    h.wait_ips("v6", &["fc00:40::2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_class_filter() {
    let mut h = Harness::new().await;
    h.start_controller(Options {
        load_balancer_class: Some("ironlb.io/lb".into()),
        ..Options::default()
    })
    .await;
    h.apply_pool("p", json!({"addresses": ["192.168.50.0/30"]}))
        .await;
    let mut mine = lb_service("mine", 80);
    mine["spec"]["loadBalancerClass"] = json!("ironlb.io/lb");
    h.create_service(mine).await;
    h.create_service(lb_service("classless", 80)).await;
    h.wait_ips("mine", &["192.168.50.0"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ingress_ips(&h.service("classless").await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_removal_reallocates() {
    let h = Harness::with_controller().await;
    h.apply_pool("old", json!({"addresses": ["192.168.60.0/30"]}))
        .await;
    h.create_service(lb_service("web", 80)).await;
    h.wait_ips("web", &["192.168.60.0"]).await;
    h.apply_pool("new", json!({"addresses": ["192.168.61.0/30"]}))
        .await;
    h.delete_pool("old").await;
    let service = h.wait_ips("web", &["192.168.61.0"]).await;
    assert_eq!(pool_annotation(&service).as_deref(), Some("new"));
    // Shrinking the pool under the IP moves it again.
    h.apply_pool("new", json!({"addresses": ["192.168.61.2/31"]}))
        .await;
    h.wait_ips("web", &["192.168.61.2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_keeps_the_last_good_one() {
    let h = Harness::with_controller().await;
    h.apply_pool("good", json!({"addresses": ["192.168.70.0/30"]}))
        .await;
    h.create_service(lb_service("before", 80)).await;
    h.wait_ips("before", &["192.168.70.0"]).await;
    // Overlapping pools are invalid as a set.
    h.apply_pool("bad", json!({"addresses": ["192.168.70.0/29"]}))
        .await;
    let state = wait("ConfigurationState Invalid", || async {
        let api = h.metallb_api("ConfigurationState", "configurationstates");
        let state = api.get("controller").await.ok()?;
        let status = state.data.get("status")?.clone();
        (status.get("result")? == &json!("Invalid")).then_some(status)
    })
    .await;
    assert!(state["errorSummary"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    let metrics = h.controller.as_ref().unwrap().render_metrics();
    assert!(
        metrics.contains("metallb_k8s_client_config_stale_bool 1"),
        "{metrics}"
    );
    // Still served from the last good configuration.
    h.create_service(lb_service("after", 80)).await;
    h.wait_ips("after", &["192.168.70.1"]).await;
    h.wait_ips("before", &["192.168.70.0"]).await;
    // Fixing it recovers.
    h.delete_pool("bad").await;
    wait("ConfigurationState Valid", || async {
        let api = h.metallb_api("ConfigurationState", "configurationstates");
        let state = api.get("controller").await.ok()?;
        (state.data.get("status")?.get("result")? == &json!("Valid")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_status_write_loop_with_ip_mode_and_memberlist_secret() {
    let h = Harness::with_controller().await;
    h.apply_pool("p", json!({"addresses": ["192.168.80.0/30"]}))
        .await;
    h.create_service(lb_service("web", 80)).await;
    let service = h.wait_ips("web", &["192.168.80.0"]).await;
    let ingress = service
        .status
        .unwrap()
        .load_balancer
        .unwrap()
        .ingress
        .unwrap();
    assert_eq!(
        ingress[0].ip_mode.as_deref(),
        Some("VIP"),
        "server added ipMode"
    );
    let writes = h.service_status_writes();
    assert_eq!(writes, 1, "one status write for one service");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.service_status_writes(), writes, "no rewrite loop");
    // The memberlist Secret was created with 32 bytes.
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NAMESPACE);
    let secret = wait("memberlist secret", || async {
        secrets.get("memberlist").await.ok()
    })
    .await;
    let key = secret.data.unwrap().remove("secretkey").unwrap();
    assert_eq!(key.0.len(), 32);
    // The secret task has finished; the controller keeps running.
    let mut h = h;
    let running = h.controller.as_mut().unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), running.wait()).await;
    assert!(waited.is_err(), "wait() returned while the controller runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_ip() {
    const SERVICES: usize = 1000;
    let mut h = Harness::with_controller().await;
    h.apply_pool("a", json!({"addresses": ["10.10.0.0/23"]}))
        .await;
    h.apply_pool("b", json!({"addresses": ["10.20.0.0/23"]}))
        .await;
    for index in 0..SERVICES {
        let mut body = lb_service(&format!("svc-{index:04}"), 80);
        if index % 3 == 0 {
            body["metadata"]["annotations"] = json!({"metallb.io/address-pool": "b"});
        }
        h.create_service(body).await;
    }
    let services = h.services("default");
    let before = wait("every service assigned", || async {
        let list = services.list(&Default::default()).await.ok()?;
        let assigned: std::collections::BTreeMap<String, Vec<String>> = list
            .items
            .iter()
            .filter(|s| s.metadata.name.as_deref() != Some("kubernetes"))
            .map(|s| (s.metadata.name.clone().unwrap_or_default(), ingress_ips(s)))
            .collect();
        (assigned.len() == SERVICES && assigned.values().all(|ips| !ips.is_empty()))
            .then_some(assigned)
    })
    .await;
    h.stop_controller().await;
    // A pending service created while the controller is down must not take anyone's IP.
    h.create_service(lb_service("late", 80)).await;
    let writes_before = h.service_status_writes();
    h.start_controller(Options::default()).await;
    h.wait_any_ip("late").await;
    wait("controller ready", || async {
        h.controller.as_ref().unwrap().is_ready().then_some(())
    })
    .await;
    let list = services.list(&Default::default()).await.unwrap();
    let mut changed = 0;
    for service in &list.items {
        let name = service.metadata.name.clone().unwrap_or_default();
        if let Some(old) = before.get(&name) {
            if *old != ingress_ips(service) {
                changed += 1;
            }
        }
    }
    assert_eq!(changed, 0, "no IP changed across the restart");
    assert_eq!(
        h.service_status_writes() - writes_before,
        1,
        "only the late service was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_configmap_is_used_until_crs_exist() {
    let h = Harness::with_controller().await;
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(h.client.clone(), NAMESPACE);
    let map = serde_json::from_value(json!({
        "metadata": {"name": "config", "namespace": NAMESPACE},
        "data": {"config": "address-pools:\n- name: default\n  protocol: layer2\n  addresses:\n  - 172.25.1.100-172.25.1.200\n"},
    }))
    .unwrap();
    maps.create(&Default::default(), &map).await.unwrap();
    h.create_service(lb_service("web", 80)).await;
    let service = h.wait_ips("web", &["172.25.1.100"]).await;
    assert_eq!(pool_annotation(&service).as_deref(), Some("default"));
    // The deprecation is reported on the ConfigMap.
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(h.client.clone(), NAMESPACE);
    wait("deprecatedConfigMap event", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("deprecatedConfigMap")
                    && e.involved_object.name.as_deref() == Some("config")
            })
            .then_some(())
    })
    .await;
    // CRs win: once a pool CR exists the ConfigMap is ignored and the service moves.
    h.apply_pool("crs", json!({"addresses": ["192.168.90.0/30"]}))
        .await;
    let service = h.wait_ips("web", &["192.168.90.0"]).await;
    assert_eq!(pool_annotation(&service).as_deref(), Some("crs"));
}
