//! The kube-rs shell: watchers feeding one index task that owns the [`Core`], and the writers
//! it feeds. See the crate documentation for the diagram.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret, Service};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

use crate::core::{Action, Core, CoreOptions, Input};
use crate::ipam::{parse_config, AllocatorIpam};
use crate::metrics::Metrics;
use crate::publish::{self, ClusterStatus};
use crate::view::{ServiceKey, ServiceView};

/// Messages queued from the watchers to the index task.
pub const INDEX_QUEUE_LEN: usize = 1024;
/// Status writes queued from the index task to the status writer.
pub const STATUS_QUEUE_LEN: usize = 1024;
/// Events queued to the event publisher; more are dropped (events are best effort).
pub const EVENT_QUEUE_LEN: usize = 4096;
/// Pool-status and ConfigurationState updates queued to their writer.
pub const CLUSTER_STATUS_QUEUE_LEN: usize = 64;
/// Messages the index task takes in one batch before it converges.
pub const INDEX_BATCH_MAX: usize = 4096;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the metallb.io configuration, the memberlist Secret and the legacy ConfigMap live.
    pub namespace: String,
    /// `--lb-class`.
    pub load_balancer_class: Option<String>,
    /// `/metrics` listen address; `None` disables metrics serving.
    pub metrics_addr: Option<SocketAddr>,
    /// `/healthz` and `/readyz` listen address; `None` disables it.
    pub health_addr: Option<SocketAddr>,
    /// The memberlist Secret's name.
    pub memberlist_secret: String,
    /// The reporting instance of Events (the pod name).
    pub instance: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: "metallb-system".into(),
            load_balancer_class: None,
            metrics_addr: None,
            health_addr: None,
            memberlist_secret: "memberlist".into(),
            instance: None,
        }
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The metrics or health port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
}

/// A running controller. Dropping it stops every task.
pub struct Running {
    /// Tasks that run for the controller's lifetime: one ending is a failure.
    tasks: JoinSet<()>,
    /// Tasks that finish on their own (the memberlist Secret check); aborted on drop.
    one_shot_tasks: JoinSet<()>,
    ready: Arc<AtomicBool>,
    metrics_addr: Option<SocketAddr>,
    health_addr: Option<SocketAddr>,
    registry: Arc<Registry>,
}

impl Running {
    /// Whether the first full pass over every Service is done.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The bound `/metrics` address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The bound health address.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
    }

    /// The metrics registry (what `/metrics` renders).
    pub fn render_metrics(&self) -> String {
        crate::metrics::render(&self.registry)
    }

    /// Stops every task.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
        self.one_shot_tasks.shutdown().await;
    }

    /// Waits until a lifetime task ends (they run forever unless the API client is gone).
    pub async fn wait(&mut self) {
        let _ = self.tasks.join_next().await;
    }
}

/// Starts the controller's tasks on the current tokio runtime.
pub async fn start(client: Client, options: Options) -> Result<Running, RunError> {
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let registry = Arc::new(registry);
    let ready = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();

    let bound = |addr: Option<SocketAddr>, registry: Option<Arc<Registry>>| {
        let ready = ready.clone();
        async move {
            let Some(addr) = addr else {
                return Ok(None);
            };
            let endpoints = crate::http::Endpoints { registry, ready };
            crate::http::serve(addr, endpoints)
                .await
                .map(Some)
                .map_err(|source| RunError::Listen { addr, source })
        }
    };
    let metrics_server = bound(options.metrics_addr, Some(registry.clone())).await?;
    let health_server = bound(options.health_addr, None).await?;
    let metrics_addr = metrics_server.as_ref().map(|(addr, _)| *addr);
    let health_addr = health_server.as_ref().map(|(addr, _)| *addr);
    for (_, handle) in metrics_server.into_iter().chain(health_server) {
        tasks.spawn(async move {
            let _ = handle.await;
        });
    }

    let (index_tx, index_rx) = mpsc::channel(INDEX_QUEUE_LEN);
    let (status_tx, status_rx) = mpsc::channel(STATUS_QUEUE_LEN);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE_LEN);
    let (cluster_tx, cluster_rx) = mpsc::channel(CLUSTER_STATUS_QUEUE_LEN);

    tasks.spawn(
        publish::run_status_writer(client.clone(), status_rx, metrics.clone())
            .instrument(tracing::info_span!("status_writer")),
    );
    tasks.spawn(
        publish::run_event_publisher(client.clone(), event_rx, options.instance.clone())
            .instrument(tracing::info_span!("events")),
    );
    tasks.spawn(
        publish::run_cluster_status_writer(
            client.clone(),
            options.namespace.clone(),
            cluster_rx,
            metrics.clone(),
        )
        .instrument(tracing::info_span!("cluster_status")),
    );
    let mut one_shot_tasks = JoinSet::new();
    one_shot_tasks.spawn(
        publish::ensure_memberlist_secret(
            client.clone(),
            options.namespace.clone(),
            options.memberlist_secret.clone(),
        )
        .instrument(tracing::info_span!("memberlist_secret")),
    );

    spawn_watchers(&mut tasks, &client, &options.namespace, &index_tx);
    drop(index_tx);

    let index = IndexTask {
        core: Core::new(
            AllocatorIpam::default(),
            CoreOptions {
                load_balancer_class: options.load_balancer_class.clone(),
                namespace: options.namespace.clone(),
            },
        ),
        namespace: options.namespace.clone(),
        objects: BTreeMap::new(),
        service_keys: BTreeSet::new(),
        synced: BTreeSet::new(),
        config_dirty: false,
        synced_fed: false,
        metrics,
        ready: ready.clone(),
        status_tx,
        event_tx,
        cluster_tx,
    };
    tasks.spawn(index.run(index_rx).instrument(tracing::info_span!("index")));
    info!(namespace = %options.namespace, lb_class = ?options.load_balancer_class, "controller started");
    Ok(Running {
        tasks,
        one_shot_tasks,
        ready,
        metrics_addr,
        health_addr,
        registry,
    })
}

/// Runs the controller until a task ends (normally never).
pub async fn run(client: Client, options: Options) -> Result<(), RunError> {
    let mut running = start(client, options).await?;
    running.wait().await;
    Ok(())
}

/// What a watcher watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Services, all namespaces.
    Services,
    /// A metallb.io kind, in the controller's namespace.
    Metallb(MetallbKind),
    /// Namespaces (pool `namespaceSelectors`).
    Namespaces,
    /// Nodes (BGPPeer and advertisement node selectors are validated against them).
    Nodes,
    /// Secrets in the controller's namespace (BGP passwords, memberlist).
    Secrets,
    /// ConfigMaps in the controller's namespace (the legacy `config`).
    ConfigMaps,
}

/// The metallb.io configuration kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetallbKind {
    /// `IPAddressPool`.
    IpAddressPool,
    /// `L2Advertisement`.
    L2Advertisement,
    /// `BGPAdvertisement`.
    BgpAdvertisement,
    /// `BGPPeer` (v1beta2).
    BgpPeer,
    /// `BFDProfile`.
    BfdProfile,
    /// `Community`.
    Community,
}

impl MetallbKind {
    /// Every kind.
    pub const ALL: [Self; 6] = [
        Self::IpAddressPool,
        Self::L2Advertisement,
        Self::BgpAdvertisement,
        Self::BgpPeer,
        Self::BfdProfile,
        Self::Community,
    ];

    /// The API resource.
    pub fn resource(self) -> ApiResource {
        let (kind, plural, version) = match self {
            Self::IpAddressPool => ("IPAddressPool", "ipaddresspools", "v1beta1"),
            Self::L2Advertisement => ("L2Advertisement", "l2advertisements", "v1beta1"),
            Self::BgpAdvertisement => ("BGPAdvertisement", "bgpadvertisements", "v1beta1"),
            Self::BgpPeer => ("BGPPeer", "bgppeers", "v1beta2"),
            Self::BfdProfile => ("BFDProfile", "bfdprofiles", "v1beta1"),
            Self::Community => ("Community", "communities", "v1beta1"),
        };
        ApiResource {
            group: "metallb.io".into(),
            version: version.into(),
            api_version: format!("metallb.io/{version}"),
            kind: kind.into(),
            plural: plural.into(),
        }
    }
}

/// One watched object.
#[derive(Clone, Debug)]
pub enum Object {
    /// A Service, already reduced to what the controller reads (the decoded object is dropped
    /// in the watcher task).
    Service(Box<ServiceView>),
    /// A metallb.io object, kept untyped until the configuration is parsed.
    Metallb(Box<DynamicObject>),
    /// A Namespace.
    Namespace(Box<Namespace>),
    /// A Node.
    Node(Box<Node>),
    /// A Secret.
    Secret(Box<Secret>),
    /// A ConfigMap.
    ConfigMap(Box<ConfigMap>),
}

impl Object {
    /// `namespace/name` (namespace empty for cluster-scoped objects).
    fn store_key(&self) -> String {
        let meta = match self {
            Self::Service(view) => return view.key.to_string(),
            Self::Metallb(o) => &o.metadata,
            Self::Namespace(o) => &o.metadata,
            Self::Node(o) => &o.metadata,
            Self::Secret(o) => &o.metadata,
            Self::ConfigMap(o) => &o.metadata,
        };
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or(""),
            meta.name.as_deref().unwrap_or("")
        )
    }
}

/// A watcher's report to the index task.
#[derive(Debug)]
pub enum Message {
    /// A full list (initial or after a relist): replaces everything of that source.
    Reset(Source, Vec<Object>),
    /// One object created or changed.
    Applied(Source, Object),
    /// One object deleted.
    Deleted(Source, Object),
}

/// The configuration objects, as the index task holds them, ready for `ironlb_api`.
#[derive(Clone, Debug, Default)]
pub struct RawConfig {
    /// The controller's namespace.
    pub namespace: String,
    /// metallb.io objects by kind.
    pub metallb: BTreeMap<MetallbKind, Vec<DynamicObject>>,
    /// Every Namespace.
    pub namespaces: Vec<Namespace>,
    /// Every Node.
    pub nodes: Vec<Node>,
    /// Secrets of the controller's namespace.
    pub secrets: Vec<Secret>,
    /// ConfigMaps of the controller's namespace.
    pub config_maps: Vec<ConfigMap>,
}

fn spawn_watchers(
    tasks: &mut JoinSet<()>,
    client: &Client,
    namespace: &str,
    tx: &mpsc::Sender<Message>,
) {
    tasks.spawn(watch(
        Api::<Service>::all(client.clone()),
        Source::Services,
        // Only the view is kept: the decoded Service (with its managedFields and
        // last-applied-configuration annotation, most of its size on a real cluster) is
        // dropped here, one object at a time.
        |o: Service| match ServiceView::from_service(&o) {
            Ok(view) => Some(Object::Service(Box::new(view))),
            Err(error) => {
                debug!(%error, "service ignored");
                None
            }
        },
        tx.clone(),
    ));
    for kind in MetallbKind::ALL {
        let api =
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &kind.resource());
        tasks.spawn(watch(
            api,
            Source::Metallb(kind),
            |o| Some(Object::Metallb(Box::new(o))),
            tx.clone(),
        ));
    }
    tasks.spawn(watch(
        Api::<Namespace>::all(client.clone()),
        Source::Namespaces,
        |o| Some(Object::Namespace(Box::new(o))),
        tx.clone(),
    ));
    tasks.spawn(watch(
        Api::<Node>::all(client.clone()),
        Source::Nodes,
        |o| Some(Object::Node(Box::new(o))),
        tx.clone(),
    ));
    tasks.spawn(watch(
        Api::<Secret>::namespaced(client.clone(), namespace),
        Source::Secrets,
        |o| Some(Object::Secret(Box::new(o))),
        tx.clone(),
    ));
    tasks.spawn(watch(
        Api::<ConfigMap>::namespaced(client.clone(), namespace),
        Source::ConfigMaps,
        |o| Some(Object::ConfigMap(Box::new(o))),
        tx.clone(),
    ));
}

/// Runs one watcher until the index task is gone. Errors are retried with kube-rs's default
/// backoff; a relist arrives as one [`Message::Reset`].
async fn watch<K, F>(api: Api<K>, source: Source, wrap: F, tx: mpsc::Sender<Message>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: Fn(K) -> Option<Object>,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut listed = Vec::new();
    while let Some(event) = stream.next().await {
        let message = match event {
            Ok(watcher::Event::Init) => {
                listed.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(object)) => {
                listed.extend(wrap(object));
                continue;
            }
            Ok(watcher::Event::InitDone) => Message::Reset(source, std::mem::take(&mut listed)),
            Ok(watcher::Event::Apply(object)) => match wrap(object) {
                Some(object) => Message::Applied(source, object),
                None => continue,
            },
            Ok(watcher::Event::Delete(object)) => match wrap(object) {
                Some(object) => Message::Deleted(source, object),
                None => continue,
            },
            Err(error) => {
                warn!(?source, %error, "watch failed, retrying");
                continue;
            }
        };
        if tx.send(message).await.is_err() {
            return;
        }
    }
}

/// The one task that owns the core.
struct IndexTask {
    core: Core<AllocatorIpam>,
    namespace: String,
    /// Configuration objects per source, by `namespace/name`.
    objects: BTreeMap<Source, BTreeMap<String, Object>>,
    /// Services known to the core.
    service_keys: BTreeSet<ServiceKey>,
    /// Sources that delivered their initial list.
    synced: BTreeSet<Source>,
    config_dirty: bool,
    synced_fed: bool,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    status_tx: mpsc::Sender<crate::core::StatusWrite>,
    event_tx: mpsc::Sender<crate::core::ServiceEvent>,
    cluster_tx: mpsc::Sender<ClusterStatus>,
}

/// Every source the index waits for before its first pass.
fn all_sources() -> BTreeSet<Source> {
    let mut sources: BTreeSet<Source> = MetallbKind::ALL.into_iter().map(Source::Metallb).collect();
    sources.extend([
        Source::Services,
        Source::Namespaces,
        Source::Nodes,
        Source::Secrets,
        Source::ConfigMaps,
    ]);
    sources
}

impl IndexTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let sources = all_sources();
        while let Some(message) = rx.recv().await {
            self.apply(message);
            let mut batch = 1;
            while batch < INDEX_BATCH_MAX {
                let Ok(message) = rx.try_recv() else {
                    break;
                };
                self.apply(message);
                batch += 1;
            }
            let all_synced = self.synced.is_superset(&sources);
            if self.config_dirty && all_synced {
                self.config_dirty = false;
                let update = parse_config(&self.raw_config());
                self.core.handle(Input::Config(update));
            }
            if all_synced && !self.synced_fed {
                self.synced_fed = true;
                self.core.handle(Input::Synced);
            }
            if self.dispatch().await.is_err() {
                return;
            }
        }
    }

    fn apply(&mut self, message: Message) {
        self.metrics.updates.inc();
        match message {
            Message::Reset(Source::Services, objects) => {
                self.synced.insert(Source::Services);
                let mut seen = BTreeSet::new();
                for object in objects {
                    if let Some(key) = self.service_applied(object) {
                        seen.insert(key);
                    }
                }
                let gone: Vec<ServiceKey> = self.service_keys.difference(&seen).cloned().collect();
                for key in gone {
                    self.core.handle(Input::ServiceDeleted(key));
                }
                self.service_keys = seen;
            }
            Message::Applied(Source::Services, object) => {
                if let Some(key) = self.service_applied(object) {
                    self.service_keys.insert(key);
                }
            }
            Message::Deleted(Source::Services, Object::Service(view)) => {
                self.service_keys.remove(&view.key);
                self.core.handle(Input::ServiceDeleted(view.key));
            }
            Message::Deleted(Source::Services, _) => {}
            Message::Reset(source, objects) => {
                self.synced.insert(source);
                let store = objects.into_iter().map(|o| (o.store_key(), o)).collect();
                self.objects.insert(source, store);
                self.config_dirty = true;
            }
            Message::Applied(source, object) => {
                self.objects
                    .entry(source)
                    .or_default()
                    .insert(object.store_key(), object);
                self.config_dirty = true;
            }
            Message::Deleted(source, object) => {
                if let Some(store) = self.objects.get_mut(&source) {
                    store.remove(&object.store_key());
                }
                self.config_dirty = true;
            }
        }
    }

    fn service_applied(&mut self, object: Object) -> Option<ServiceKey> {
        let Object::Service(view) = object else {
            return None;
        };
        let key = view.key.clone();
        self.core.handle(Input::ServiceApplied(view));
        Some(key)
    }

    fn raw_config(&self) -> RawConfig {
        let mut raw = RawConfig {
            namespace: self.namespace.clone(),
            ..RawConfig::default()
        };
        for (source, store) in &self.objects {
            for object in store.values() {
                match (source, object) {
                    (Source::Metallb(kind), Object::Metallb(o)) => {
                        raw.metallb.entry(*kind).or_default().push((**o).clone());
                    }
                    (_, Object::Namespace(o)) => raw.namespaces.push((**o).clone()),
                    (_, Object::Node(o)) => raw.nodes.push((**o).clone()),
                    (_, Object::Secret(o)) => raw.secrets.push((**o).clone()),
                    (_, Object::ConfigMap(o)) => raw.config_maps.push((**o).clone()),
                    _ => {}
                }
            }
        }
        raw
    }

    /// Runs the core's actions. Fails only when a writer task is gone.
    async fn dispatch(&mut self) -> Result<(), ()> {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::WriteStatus(write) => {
                    self.status_tx.send(write).await.map_err(|_| ())?;
                }
                Action::Event(event) => {
                    if self.event_tx.try_send(event).is_err() {
                        debug!("event queue full, event dropped");
                    }
                }
                Action::PoolCounters(counters) => {
                    self.metrics.set_pools(&counters);
                    self.cluster_tx
                        .send(ClusterStatus::Pools(counters))
                        .await
                        .map_err(|_| ())?;
                }
                Action::ConfigurationState(state) => {
                    self.cluster_tx
                        .send(ClusterStatus::Configuration(state))
                        .await
                        .map_err(|_| ())?;
                }
                Action::ConfigMetrics { loaded, stale } => {
                    self.metrics.config_loaded.set(i64::from(loaded));
                    self.metrics.config_stale.set(i64::from(stale));
                }
                Action::Ready => {
                    info!(
                        services = self.core.service_count(),
                        "first pass done, ready"
                    );
                    self.ready.store(true, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }
}
