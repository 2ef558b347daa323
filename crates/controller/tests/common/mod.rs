//! Test harness: the API stand-in in-process, a kube client on it, and controllers started and
//! stopped at will.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

use ironlb_apiserver::{Server, ServerHandle};
use ironlb_controller::{Options, Running};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};

pub const NAMESPACE: &str = "metallb-system";
/// How long a wait may take before the test fails (generous: CI machines are busy).
pub const WAIT_MAX: Duration = Duration::from_secs(60);

pub struct Harness {
    pub server: ServerHandle,
    pub client: Client,
    pub controller: Option<Running>,
}

pub async fn client_for(server: &ServerHandle) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig()).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig loads");
    Client::try_from(config).expect("client builds")
}

impl Harness {
    /// A stand-in with ironlb's CRDs, the `metallb-system` namespace, and no controller yet.
    pub async fn new() -> Self {
        let crds = ironlb_api::crds()
            .into_iter()
            .map(|crd| serde_json::to_value(crd).expect("CRD serializes"))
            .collect();
        let server = Server::start(ironlb_apiserver::Config {
            crds,
            ..ironlb_apiserver::Config::default()
        })
        .await
        .expect("stand-in starts");
        let client = client_for(&server).await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap(),
            )
            .await
            .expect("namespace created");
        Self {
            server,
            client,
            controller: None,
        }
    }

    /// A harness with a controller already running.
    pub async fn with_controller() -> Self {
        let mut harness = Self::new().await;
        harness.start_controller(Options::default()).await;
        harness
    }

    pub async fn start_controller(&mut self, options: Options) {
        let running = ironlb_controller::start(self.client.clone(), options)
            .await
            .expect("controller starts");
        self.controller = Some(running);
    }

    pub async fn stop_controller(&mut self) {
        if let Some(running) = self.controller.take() {
            running.shutdown().await;
        }
    }

    pub fn metallb_api(&self, kind: &str, plural: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            NAMESPACE,
            &ironlb_controller::publish::metallb_resource(kind, plural),
        )
    }

    pub fn pools(&self) -> Api<DynamicObject> {
        self.metallb_api("IPAddressPool", "ipaddresspools")
    }

    /// Creates or replaces an IPAddressPool.
    pub async fn apply_pool(&self, name: &str, spec: Value) {
        let object = json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": spec,
        });
        self.pools()
            .patch(
                name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&object),
            )
            .await
            .expect("pool applied");
    }

    pub async fn delete_pool(&self, name: &str) {
        self.pools()
            .delete(name, &DeleteParams::default())
            .await
            .expect("pool deleted");
    }

    pub fn services(&self, namespace: &str) -> Api<Service> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates a Service from `body` (name, annotations, spec as JSON) in `default`.
    pub async fn create_service(&self, body: Value) -> Service {
        let service: Service = serde_json::from_value(body).expect("service JSON");
        self.services("default")
            .create(&PostParams::default(), &service)
            .await
            .expect("service created")
    }

    pub async fn service(&self, name: &str) -> Service {
        self.services("default")
            .get(name)
            .await
            .expect("service exists")
    }

    /// Waits until the Service has `want` ingress IPs (in order); returns the Service.
    pub async fn wait_ips(&self, name: &str, want: &[&str]) -> Service {
        let want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        wait(&format!("service {name} ingress {want:?}"), || async {
            let service = self.services("default").get(name).await.ok()?;
            (ingress_ips(&service) == want).then_some(service)
        })
        .await
    }

    /// Waits until the Service has any ingress IP; returns them.
    pub async fn wait_any_ip(&self, name: &str) -> Vec<String> {
        wait(&format!("service {name} gets an IP"), || async {
            let service = self.services("default").get(name).await.ok()?;
            let ips = ingress_ips(&service);
            (!ips.is_empty()).then_some(ips)
        })
        .await
    }

    /// Status writes (`/status` PUT or PATCH on Services) served so far.
    pub fn service_status_writes(&self) -> usize {
        self.server
            .request_log()
            .iter()
            .filter(|r| {
                (r.method == "PATCH" || r.method == "PUT")
                    && r.path.contains("/services/")
                    && r.path.ends_with("/status")
            })
            .count()
    }

    /// Event reasons recorded for a Service (core/v1 view).
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), "default");
        let list = events
            .list(&kube::api::ListParams::default())
            .await
            .expect("events list");
        list.items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .filter_map(|e| e.reason)
            .collect()
    }
}

pub fn ingress_ips(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| ingress.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

pub fn pool_annotation(service: &Service) -> Option<String> {
    service
        .metadata
        .annotations
        .as_ref()?
        .get("metallb.io/ip-allocated-from-pool")
        .cloned()
}

/// A LoadBalancer Service body with one TCP port.
pub fn lb_service(name: &str, port: i32) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}]},
    })
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after [`WAIT_MAX`].
pub async fn wait<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the controller to have processed everything so far: a marker Service created now
/// gets its IP only after every earlier event was handled (one index task, in order).
pub async fn settle(harness: &Harness, marker: &str) {
    harness.create_service(lb_service(marker, 1)).await;
    harness.wait_any_ip(marker).await;
}
