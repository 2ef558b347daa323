//! An in-memory Kubernetes API server for demos and tests: **never for production**.
//!
//! This crate owns a stand-in for kube-apiserver that kubectl 1.32 and kube-rs use unchanged
//! over plain HTTP/1.1 (behaviour specified in `shared/reference/kubernetes-api.md`): discovery,
//! OpenAPI v3 minimum, CRUD, list/watch with resourceVersions, patches, the `/status`
//! subresource, Services with clusterIP/nodePort allocation, Events in two views, CRDs with
//! structural schemas and CEL rules, and test hooks under `/__stand-in/`. It owns no cluster
//! logic beyond the controllers the reference lists (namespace deletion, CRD cleanup,
//! ownerReference GC). It does not own TLS, authentication, RBAC or admission webhooks.
//!
//! IO boundary: [`Server::start`] binds a TCP listener and spawns tokio tasks; everything else
//! is synchronous code over one mutex-protected store.
//!
//! ```text
//!   TCP accept ──► connection task (hyper) ──► http::route ──► api::Core (Mutex<State>)
//!                                                  │                 │ rv_tx / close_tx
//!                                                  └── watch task ◄──┘
//!   controllers task ◄── Notify after writes they act on (deletes, Namespaces, CRDs), 250 ms tick
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

mod api;
mod builtin;
mod cel;
mod cel_k8s;
mod controllers;
mod error;
mod events;
mod fields;
mod http;
mod meta;
mod patch;
mod protobuf;
mod registry;
mod schema;
mod service;
mod ssa;
mod store;
mod table;
mod watch;

pub use crate::error::ApiError;
pub use crate::http::LoggedRequest;

/// Default watch history length.
pub const HISTORY_DEFAULT_EVENTS: usize = 10_000;
/// The real apiserver's request body limit (3 MiB).
pub const REQUEST_BODY_DEFAULT_MAX_BYTES: usize = 3 * 1024 * 1024;
/// How often the in-process controllers run without being woken.
const CONTROLLER_TICK: Duration = Duration::from_millis(250);

/// Startup configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:0` for tests).
    pub listen: SocketAddr,
    /// Service CIDRs; the first is the primary family.
    pub service_cidrs: Vec<IpNet>,
    /// CRD objects (JSON) registered at startup through the normal create path.
    pub crds: Vec<Value>,
    /// Watch events retained for resuming watches.
    pub history_events: usize,
    /// Interval of periodic BOOKMARK events.
    pub bookmark_interval: Duration,
    /// Largest accepted request body.
    pub request_body_max_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            service_cidrs: default_service_cidrs(),
            crds: Vec::new(),
            history_events: HISTORY_DEFAULT_EVENTS,
            bookmark_interval: Duration::from_secs(60),
            request_body_max_bytes: REQUEST_BODY_DEFAULT_MAX_BYTES,
        }
    }
}

/// `10.96.0.0/12` and `fd00:10:96::/112`.
pub fn default_service_cidrs() -> Vec<IpNet> {
    let mut cidrs = Vec::new();
    for text in ["10.96.0.0/12", "fd00:10:96::/112"] {
        if let Ok(cidr) = text.parse() {
            cidrs.push(cidr);
        }
    }
    cidrs
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Binding the listener failed.
    #[error("cannot listen on {address}")]
    Bind {
        /// The requested address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No service CIDR was given.
    #[error("at least one service CIDR is required")]
    NoServiceCidr,
    /// A startup object (CRD, namespace) was refused.
    #[error("startup object {name} refused: {source}")]
    Startup {
        /// The object's name.
        name: String,
        /// The API error.
        #[source]
        source: ApiError,
    },
}

/// The stand-in server.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Binds, creates the startup objects and starts serving. Must run inside a tokio runtime.
    pub async fn start(config: Config) -> Result<ServerHandle, StartError> {
        if config.service_cidrs.is_empty() {
            return Err(StartError::NoServiceCidr);
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    address: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            address: config.listen,
            source,
        })?;
        let allocator = service::ServiceAllocator::new(config.service_cidrs.clone());
        let kubernetes_ip = allocator.kubernetes_ip();
        let core = Arc::new(api::Core::new(store::State::new(
            config.history_events,
            allocator,
        )));
        bootstrap(&core, kubernetes_ip, &config.crds)?;
        let shared = Arc::new(http::Shared {
            core: core.clone(),
            hooks: std::sync::Mutex::new(http::Hooks::default()),
            body_max_bytes: config.request_body_max_bytes,
            bookmark_interval: config.bookmark_interval,
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        let controllers = tokio::spawn(controller_loop(core));
        Ok(ServerHandle {
            addr,
            shared,
            tasks: vec![accept, controllers],
        })
    }
}

fn bootstrap(
    core: &api::Core,
    kubernetes_ip: Option<std::net::IpAddr>,
    crds: &[Value],
) -> Result<(), StartError> {
    let mut state = core.lock();
    let registry = state.registry.clone();
    // What the server creates itself is recorded under its own field manager.
    let params = api::Params {
        field_manager: Some("kube-apiserver".into()),
        ..api::Params::default()
    };
    let target = |group: &str, resource: &str, namespace: Option<&str>| -> Option<api::Target> {
        Some(api::Target {
            info: registry.get(group, "v1", resource)?,
            namespace: namespace.map(str::to_string),
            name: None,
            status: false,
        })
    };
    for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        if let Some(target) = target("", "namespaces", None) {
            let body =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
            api::create_locked(&mut state, &target, body, &params).map_err(|source| {
                StartError::Startup {
                    name: namespace.to_string(),
                    source,
                }
            })?;
        }
    }
    if let (Some(target), Some(ip)) = (target("", "services", Some("default")), kubernetes_ip) {
        let body = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": ip.to_string(), "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
        });
        api::create_locked(&mut state, &target, body, &params).map_err(|source| {
            StartError::Startup {
                name: "kubernetes".to_string(),
                source,
            }
        })?;
    }
    for crd in crds {
        let name = crd
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>")
            .to_string();
        if let Some(target) = target("apiextensions.k8s.io", "customresourcedefinitions", None) {
            api::create_locked(&mut state, &target, crd.clone(), &params).map_err(|source| {
                StartError::Startup {
                    name: name.clone(),
                    source,
                }
            })?;
        }
    }
    core.notify(&state);
    Ok(())
}

async fn accept_loop(listener: TcpListener, shared: Arc<http::Shared>) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            // Out of file descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| http::handle(shared.clone(), request));
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}

async fn controller_loop(core: Arc<api::Core>) {
    loop {
        tokio::select! {
            _ = core.controllers.notified() => {}
            _ = tokio::time::sleep(CONTROLLER_TICK) => {}
        }
        let mut state = core.lock();
        state.controllers_due = false;
        if controllers::run_once(&mut state) {
            core.rv_tx.send_replace(state.rv);
        }
    }
}

/// A running server; dropping it stops accepting connections.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<http::Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig that kubectl and kube-rs use unchanged.
    pub fn kubeconfig(&self) -> String {
        kubeconfig_for(&self.url())
    }

    /// Drops the watch history: the next watch from an older resourceVersion gets a 410 event.
    pub fn compact(&self) -> u64 {
        let mut state = self.shared.core.lock();
        state.compact();
        state.rv
    }

    /// Closes every open watch stream cleanly (a simulated apiserver restart).
    pub fn close_watches(&self) {
        self.shared
            .core
            .close_tx
            .send_modify(|generation| *generation += 1);
    }

    /// Fails the next `count` writes whose path contains `path_contains` with `code`
    /// (409, 429 or 5xx).
    pub fn fail_next_writes(&self, count: u32, code: u16, path_contains: &str) {
        self.shared.hooks().fail_writes = (count > 0).then(|| http::FailWrites {
            remaining: count,
            code,
            path_contains: path_contains.to_string(),
        });
    }

    /// Delays every request (or only watch requests) by `latency`.
    pub fn set_latency(&self, latency: Duration, watch_only: bool) {
        let mut hooks = self.shared.hooks();
        hooks.latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        hooks.latency_watch_only = watch_only;
    }

    /// Every request served so far (method, path, query, content type).
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared.hooks().log.iter().cloned().collect()
    }

    /// Clears the request log.
    pub fn clear_request_log(&self) {
        self.shared.hooks().log.clear();
    }

    /// The current resourceVersion counter.
    pub fn resource_version(&self) -> u64 {
        self.shared.core.lock().rv
    }

    /// Number of stored objects.
    pub fn object_count(&self) -> usize {
        self.shared.core.lock().object_count()
    }

    /// Stops serving.
    pub fn shutdown(self) {}
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared
            .core
            .close_tx
            .send_modify(|generation| *generation += 1);
    }
}

/// A kubeconfig pointing at `server` without credentials.
pub fn kubeconfig_for(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: {server}\n  name: ironlb-stand-in\ncontexts:\n- context:\n    cluster: ironlb-stand-in\n    namespace: default\n    user: ironlb-stand-in\n  name: ironlb-stand-in\ncurrent-context: ironlb-stand-in\npreferences: {{}}\nusers:\n- name: ironlb-stand-in\n  user: {{}}\n"
    )
}
