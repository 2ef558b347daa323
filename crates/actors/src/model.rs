//! The speaker's view of Kubernetes objects, as plain domain values, and the conversions from
//! the `k8s-openapi` types (pure functions, tested with object builders).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ironlb_labels::Labels;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// A Service's `namespace/name`: the allocator's key, so that both crates name a Service with
/// one type (same fields, order and `Display`).
pub use ironlb_alloc::ServiceKey;

/// The label that names an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// A node carrying this label never announces (unless `--ignore-exclude-lb`).
pub const EXCLUDE_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// `metallb.io/allow-shared-ip` and its deprecated spelling.
const ALLOW_SHARED_IP_ANNOTATIONS: [&str; 2] = [
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
];

/// What the decisions need from a `type: LoadBalancer` Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Its key.
    pub key: ServiceKey,
    /// `status.loadBalancer.ingress[].ip`, in order (the first enters the election hash).
    pub ips: Vec<IpAddr>,
    /// `metadata.labels` (matched by `serviceSelectors`).
    pub labels: Labels,
    /// `spec.externalTrafficPolicy: Local`.
    pub traffic_policy_local: bool,
    /// `spec.loadBalancerClass`.
    pub load_balancer_class: Option<String>,
    /// Carries the `allow-shared-ip` annotation.
    pub allows_shared_ip: bool,
}

/// Why a Service object is not taken into account.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceSkip {
    /// Not `type: LoadBalancer`.
    #[error("Service {0}: spec.type is not LoadBalancer")]
    NotLoadBalancer(ServiceKey),
    /// No name or namespace.
    #[error("Service without metadata.name or metadata.namespace")]
    Unnamed,
    /// An ingress IP that does not parse.
    #[error("Service {key}: status.loadBalancer.ingress[].ip: {value:?} is not an IP")]
    BadIngressIp {
        /// The service.
        key: ServiceKey,
        /// The text.
        value: String,
    },
}

impl ServiceInfo {
    /// Reads a Service. Services without an ingress IP are kept (with no IPs) so that the
    /// speaker withdraws what it announced for them.
    pub fn from_service(service: &Service) -> Result<Self, ServiceSkip> {
        let (Some(namespace), Some(name)) = (
            service.metadata.namespace.as_deref(),
            service.metadata.name.as_deref(),
        ) else {
            return Err(ServiceSkip::Unnamed);
        };
        let key = ServiceKey::new(namespace, name);
        let spec = service.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
            return Err(ServiceSkip::NotLoadBalancer(key));
        }
        let mut ips = Vec::new();
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        for entry in ingress.into_iter().flatten() {
            let Some(text) = entry.ip.as_deref() else {
                continue;
            };
            let ip: IpAddr = text.parse().map_err(|_| ServiceSkip::BadIngressIp {
                key: key.clone(),
                value: text.to_owned(),
            })?;
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        let annotations = service.metadata.annotations.as_ref();
        Ok(Self {
            key,
            ips,
            labels: service.metadata.labels.clone().unwrap_or_default(),
            traffic_policy_local: spec.and_then(|s| s.external_traffic_policy.as_deref())
                == Some("Local"),
            load_balancer_class: spec.and_then(|s| s.load_balancer_class.clone()),
            allows_shared_ip: annotations.is_some_and(|a| {
                ALLOW_SHARED_IP_ANNOTATIONS
                    .iter()
                    .any(|key| a.get(*key).is_some_and(|v| !v.is_empty()))
            }),
        })
    }
}

/// The endpoints of one Service, merged over its EndpointSlices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// At least one endpoint can serve, anywhere.
    pub serving_anywhere: bool,
    /// Nodes with at least one endpoint that can serve.
    pub serving_nodes: BTreeSet<String>,
}

/// One EndpointSlice reduced to what the decisions need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SliceSummary {
    /// Its Service (from the `kubernetes.io/service-name` label).
    pub service: Option<ServiceKey>,
    /// How many endpoints can serve.
    pub serving_count: usize,
    /// Nodes with an endpoint that can serve.
    pub serving_nodes: BTreeSet<String>,
}

impl SliceSummary {
    /// Reads an EndpointSlice. An endpoint can serve when `ready` is unset or true, or when
    /// `serving` is true (MetalLB's `epslices.EndpointCanServe`).
    pub fn from_slice(slice: &EndpointSlice) -> Self {
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .zip(slice.metadata.namespace.as_ref())
            .map(|(name, namespace)| ServiceKey::new(namespace.clone(), name.clone()));
        let mut summary = Self {
            service,
            ..Self::default()
        };
        for endpoint in &slice.endpoints {
            if endpoint.addresses.is_empty() {
                continue;
            }
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready);
            let serving = conditions.and_then(|c| c.serving);
            if !(ready.unwrap_or(true) || serving == Some(true)) {
                continue;
            }
            summary.serving_count += 1;
            if let Some(node) = &endpoint.node_name {
                summary.serving_nodes.insert(node.clone());
            }
        }
        summary
    }
}

impl Endpoints {
    /// Merges the slices of one Service.
    pub fn merge<'a>(slices: impl IntoIterator<Item = &'a SliceSummary>) -> Self {
        let mut merged = Self::default();
        for slice in slices {
            merged.serving_anywhere |= slice.serving_count > 0;
            merged
                .serving_nodes
                .extend(slice.serving_nodes.iter().cloned());
        }
        merged
    }
}

/// What the decisions need from a Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Labels,
    /// Condition `NetworkUnavailable=True`.
    pub network_unavailable: bool,
    /// `status.addresses[type=InternalIP]`, in order.
    pub internal_ips: Vec<IpAddr>,
}

impl NodeInfo {
    /// Reads a Node; `None` without a name.
    pub fn from_node(node: &Node) -> Option<Self> {
        let name = node.metadata.name.clone()?;
        let status = node.status.as_ref();
        let network_unavailable = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "NetworkUnavailable" && c.status == "True");
        let internal_ips = status
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        Some(Self {
            name,
            labels: node.metadata.labels.clone().unwrap_or_default(),
            network_unavailable,
            internal_ips,
        })
    }

    /// Carries the exclude-from-external-load-balancers label (any value, as MetalLB).
    pub fn excluded(&self) -> bool {
        self.labels.contains_key(EXCLUDE_LB_LABEL)
    }
}

/// Nodes by name.
pub type Nodes = BTreeMap<String, NodeInfo>;
