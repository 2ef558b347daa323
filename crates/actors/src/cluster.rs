//! The one index the watchers feed: Services, EndpointSlices, Nodes and the configuration
//! objects, turned into an immutable [`Snapshot`] the announcers read. Pure (no IO).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ironlb_api::config::Config;
use ironlb_controller::run::{MetallbKind, RawConfig};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::DynamicObject;

use crate::model::{Endpoints, NodeInfo, Nodes, ServiceInfo, ServiceKey, SliceSummary};

/// One watched object.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // One object per watch event; boxing would only add noise.
pub enum Object {
    /// A Service.
    Service(Service),
    /// An EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// A Node.
    Node(Node),
    /// A Namespace.
    Namespace(Namespace),
    /// A Secret of the speaker's namespace.
    Secret(Secret),
    /// A ConfigMap of the speaker's namespace (the legacy configuration).
    ConfigMap(ConfigMap),
    /// A metallb.io object.
    Metallb(MetallbKind, DynamicObject),
    /// A speaker's Lease `ironlb-speaker-<node>` (liveness seen through the API).
    Lease(Lease),
    /// A `ServiceL2Status` (which nodes claim to own a Service).
    L2Status(DynamicObject),
}

/// Which watch an event comes from (a relist replaces everything of one source).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// Services.
    Services,
    /// EndpointSlices.
    EndpointSlices,
    /// Nodes.
    Nodes,
    /// Namespaces.
    Namespaces,
    /// Secrets.
    Secrets,
    /// ConfigMaps.
    ConfigMaps,
    /// One metallb.io kind.
    Metallb(MetallbKind),
    /// The speakers' Leases.
    Leases,
    /// `ServiceL2Status` objects.
    L2Statuses,
}

/// A watch event.
#[derive(Clone, Debug)]
pub enum Change {
    /// A full list of one source.
    Reset(Source, Vec<Object>),
    /// Created or changed.
    Applied(Object),
    /// Deleted.
    Deleted(Object),
}

/// What the announcers read: the last valid configuration and the cluster objects.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The last configuration that parsed (`None` before the first).
    pub config: Option<Arc<Config>>,
    /// The problems of the latest configuration, if it did not parse (the speaker keeps
    /// running on the last valid one).
    pub config_errors: Vec<String>,
    /// LoadBalancer Services.
    pub services: BTreeMap<ServiceKey, ServiceInfo>,
    /// Endpoints per Service.
    pub endpoints: BTreeMap<ServiceKey, Endpoints>,
    /// Nodes.
    pub nodes: Nodes,
    /// Every source has listed at least once.
    pub synced: bool,
    /// Speakers' Leases by node: when they were renewed and how many members their gossip
    /// sees (the partition rule of `layer2`).
    pub speaker_leases: BTreeMap<String, SpeakerLease>,
    /// The nodes holding a `ServiceL2Status`, by Service.
    pub l2_owners: BTreeMap<ServiceKey, BTreeSet<String>>,
}

/// Prefix of a speaker's Lease name; the node name follows.
pub const SPEAKER_LEASE_PREFIX: &str = "ironlb-speaker-";
/// Annotation of a speaker's Lease: the active members of its gossip view (itself included).
pub const ALIVE_MEMBERS_ANNOTATION: &str = "ironlb.io/alive-members";

/// One speaker's Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpeakerLease {
    /// `spec.renewTime` in microseconds since the Unix epoch.
    pub renewed_unix_micros: i64,
    /// [`ALIVE_MEMBERS_ANNOTATION`].
    pub alive_members: u32,
}

impl SpeakerLease {
    /// Reads a Lease named `ironlb-speaker-<node>`: `None` for other Leases or without a
    /// renew time.
    pub fn from_lease(lease: &Lease) -> Option<(String, Self)> {
        let node = lease
            .metadata
            .name
            .as_deref()?
            .strip_prefix(SPEAKER_LEASE_PREFIX)?
            .to_owned();
        let renewed = lease.spec.as_ref()?.renew_time.as_ref()?;
        let alive_members = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ALIVE_MEMBERS_ANNOTATION))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        Some((
            node,
            Self {
                renewed_unix_micros: renewed.0.as_microsecond(),
                alive_members,
            },
        ))
    }
}

/// The index (watch → pure index → snapshot).
#[derive(Debug, Default)]
pub struct ClusterIndex {
    namespace: String,
    services: BTreeMap<String, Service>,
    slices: BTreeMap<String, EndpointSlice>,
    nodes: BTreeMap<String, Node>,
    namespaces: BTreeMap<String, Namespace>,
    secrets: BTreeMap<String, Secret>,
    config_maps: BTreeMap<String, ConfigMap>,
    metallb: BTreeMap<MetallbKind, BTreeMap<String, DynamicObject>>,
    leases: BTreeMap<String, Lease>,
    l2_statuses: BTreeMap<String, DynamicObject>,
    listed: BTreeSet<Source>,
    last_config: Option<Arc<Config>>,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

impl ClusterIndex {
    /// Every source the speaker watches.
    pub fn sources() -> Vec<Source> {
        let mut sources = vec![
            Source::Services,
            Source::EndpointSlices,
            Source::Nodes,
            Source::Namespaces,
            Source::Secrets,
            Source::ConfigMaps,
        ];
        sources.extend(MetallbKind::ALL.into_iter().map(Source::Metallb));
        sources.push(Source::Leases);
        sources.push(Source::L2Statuses);
        sources
    }

    /// An empty index for configuration in `namespace`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            ..Self::default()
        }
    }

    /// Applies one watch event.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Reset(source, objects) => {
                self.listed.insert(source);
                match source {
                    Source::Services => self.services.clear(),
                    Source::EndpointSlices => self.slices.clear(),
                    Source::Nodes => self.nodes.clear(),
                    Source::Namespaces => self.namespaces.clear(),
                    Source::Secrets => self.secrets.clear(),
                    Source::ConfigMaps => self.config_maps.clear(),
                    Source::Metallb(kind) => {
                        self.metallb.remove(&kind);
                    }
                    Source::Leases => self.leases.clear(),
                    Source::L2Statuses => self.l2_statuses.clear(),
                }
                for object in objects {
                    self.upsert(object);
                }
            }
            Change::Applied(object) => self.upsert(object),
            Change::Deleted(object) => self.remove(object),
        }
    }

    fn upsert(&mut self, object: Object) {
        match object {
            Object::Service(o) => {
                self.services.insert(key_of(&o.metadata), o);
            }
            Object::EndpointSlice(o) => {
                self.slices.insert(key_of(&o.metadata), o);
            }
            Object::Node(o) => {
                self.nodes.insert(key_of(&o.metadata), o);
            }
            Object::Namespace(o) => {
                self.namespaces.insert(key_of(&o.metadata), o);
            }
            Object::Secret(o) => {
                self.secrets.insert(key_of(&o.metadata), o);
            }
            Object::ConfigMap(o) => {
                self.config_maps.insert(key_of(&o.metadata), o);
            }
            Object::Metallb(kind, o) => {
                self.metallb
                    .entry(kind)
                    .or_default()
                    .insert(key_of(&o.metadata), o);
            }
            Object::Lease(o) => {
                self.leases.insert(key_of(&o.metadata), o);
            }
            Object::L2Status(o) => {
                self.l2_statuses.insert(key_of(&o.metadata), o);
            }
        }
    }

    fn remove(&mut self, object: Object) {
        match object {
            Object::Service(o) => {
                self.services.remove(&key_of(&o.metadata));
            }
            Object::EndpointSlice(o) => {
                self.slices.remove(&key_of(&o.metadata));
            }
            Object::Node(o) => {
                self.nodes.remove(&key_of(&o.metadata));
            }
            Object::Namespace(o) => {
                self.namespaces.remove(&key_of(&o.metadata));
            }
            Object::Secret(o) => {
                self.secrets.remove(&key_of(&o.metadata));
            }
            Object::ConfigMap(o) => {
                self.config_maps.remove(&key_of(&o.metadata));
            }
            Object::Metallb(kind, o) => {
                if let Some(objects) = self.metallb.get_mut(&kind) {
                    objects.remove(&key_of(&o.metadata));
                }
            }
            Object::Lease(o) => {
                self.leases.remove(&key_of(&o.metadata));
            }
            Object::L2Status(o) => {
                self.l2_statuses.remove(&key_of(&o.metadata));
            }
        }
    }

    fn l2_owners(&self) -> BTreeMap<ServiceKey, BTreeSet<String>> {
        let mut owners: BTreeMap<ServiceKey, BTreeSet<String>> = BTreeMap::new();
        for object in self.l2_statuses.values() {
            let status = &object.data["status"];
            let (Some(node), Some(namespace), Some(name)) = (
                status["node"].as_str(),
                status["serviceNamespace"].as_str(),
                status["serviceName"].as_str(),
            ) else {
                continue;
            };
            owners
                .entry(ServiceKey::new(namespace, name))
                .or_default()
                .insert(node.to_owned());
        }
        owners
    }

    /// Builds the snapshot; parses the configuration, keeping the last valid one on error.
    pub fn snapshot(&mut self) -> Snapshot {
        let raw = RawConfig {
            namespace: self.namespace.clone(),
            metallb: self
                .metallb
                .iter()
                .map(|(kind, objects)| (*kind, objects.values().cloned().collect()))
                .collect(),
            namespaces: self.namespaces.values().cloned().collect(),
            nodes: self.nodes.values().cloned().collect(),
            secrets: self.secrets.values().cloned().collect(),
            config_maps: self.config_maps.values().cloned().collect(),
        };
        let (inputs, _legacy) = ironlb_controller::config::inputs(&raw);
        let mut config_errors = Vec::new();
        match Config::parse(&inputs) {
            Ok(config) => self.last_config = Some(Arc::new(config)),
            Err(errors) => {
                config_errors = errors.errors().iter().map(ToString::to_string).collect();
            }
        }
        let services = self
            .services
            .values()
            .filter_map(|s| ServiceInfo::from_service(s).ok())
            .map(|s| (s.key.clone(), s))
            .collect();
        let mut by_service: BTreeMap<ServiceKey, Vec<SliceSummary>> = BTreeMap::new();
        for slice in self.slices.values() {
            let summary = SliceSummary::from_slice(slice);
            if let Some(key) = summary.service.clone() {
                by_service.entry(key).or_default().push(summary);
            }
        }
        let endpoints = by_service
            .into_iter()
            .map(|(key, slices)| (key, Endpoints::merge(&slices)))
            .collect();
        let nodes = self
            .nodes
            .values()
            .filter_map(NodeInfo::from_node)
            .map(|n| (n.name.clone(), n))
            .collect();
        Snapshot {
            config: self.last_config.clone(),
            config_errors,
            services,
            endpoints,
            nodes,
            synced: Self::sources().iter().all(|s| self.listed.contains(s)),
            speaker_leases: self
                .leases
                .values()
                .filter_map(SpeakerLease::from_lease)
                .collect(),
            l2_owners: self.l2_owners(),
        }
    }
}
