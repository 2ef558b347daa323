//! What the controller reads from a `v1/Service`: a plain, already-parsed view, so the core never
//! touches optional Kubernetes fields and never panics on a malformed object.
//!
//! The view is all the controller keeps of a Service: the watch decodes a `Service`, the view is
//! built from it and the object is dropped at once. At 10,000 Services a decoded `Service` costs
//! ≈ 2.6 KB of heap in ≈ 40 allocations, its view a fraction of that (see the README).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ironlb_alloc::Request;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};

/// The annotation the controller writes with the pool an IP came from.
pub const ANNOTATION_ALLOCATED_FROM_POOL: &str = "metallb.io/ip-allocated-from-pool";
/// The prefix of MetalLB's deprecated annotations.
pub const DEPRECATED_ANNOTATION_PREFIX: &str = "metallb.universe.tf/";

/// `namespace/name` of a Service: the allocator's key, so the core and the allocator share it.
pub use ironlb_alloc::ServiceKey;

/// `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FamilyPolicy {
    /// `SingleStack` (the default).
    #[default]
    SingleStack,
    /// `PreferDualStack`.
    PreferDualStack,
    /// `RequireDualStack`.
    RequireDualStack,
}

/// One `status.loadBalancer.ingress[]` entry, as far as the controller cares. `ipMode` and
/// `ports` are left out on purpose: a real apiserver adds `ipMode: VIP`, and comparing it would
/// make the controller rewrite status forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressEntry {
    /// `ip`, as written.
    pub ip: Option<String>,
    /// `hostname`, as written.
    pub hostname: Option<String>,
}

/// A Service as the controller sees it.
#[derive(Clone, Debug)]
pub struct ServiceView {
    /// `namespace/name`.
    pub key: ServiceKey,
    /// `metadata.uid` (Events name it).
    pub uid: Option<String>,
    /// `metadata.resourceVersion` (empty if missing).
    pub resource_version: String,
    /// `spec.type == LoadBalancer`.
    pub is_load_balancer: bool,
    /// `spec.loadBalancerClass`.
    pub load_balancer_class: Option<String>,
    /// `spec.clusterIPs` (or `spec.clusterIP`), parsed; `None` and unparseable entries dropped.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.ipFamilyPolicy`.
    pub family_policy: FamilyPolicy,
    /// Whether `spec.ipFamilies[0]` is `IPv6`.
    pub primary_is_ipv6: bool,
    /// `status.loadBalancer.ingress`.
    pub ingress: Vec<IngressEntry>,
    /// The `metallb.io/ip-allocated-from-pool` annotation.
    pub allocated_from_pool: Option<String>,
    /// Every `metallb.universe.tf/*` annotation key, sorted.
    pub deprecated_annotations: Vec<String>,
    /// What the Service asks of the allocator (`ironlb_api::service::service_request`), or why
    /// its spec, annotations or status do not translate (the `LoadBalancerFailed` message).
    pub request: Result<Request, String>,
}

/// Why a Service object cannot be viewed at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// `metadata.name` or `metadata.namespace` is missing.
    #[error("Service without metadata.name or metadata.namespace")]
    MissingName,
}

impl ServiceView {
    /// Reads `service`. Only a missing name is an error; every other field is optional.
    pub fn from_service(service: &Service) -> Result<Self, ViewError> {
        let meta = &service.metadata;
        let (Some(namespace), Some(name)) = (meta.namespace.as_ref(), meta.name.as_ref()) else {
            return Err(ViewError::MissingName);
        };
        let key = ServiceKey::new(namespace.clone(), name.clone());
        let default_spec = ServiceSpec::default();
        let spec = service.spec.as_ref().unwrap_or(&default_spec);
        let cluster_ips = match spec.cluster_ips.as_deref() {
            Some(list) if !list.is_empty() => list,
            _ => spec.cluster_ip.as_slice(),
        }
        .iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .collect();
        let family_policy = match spec.ip_family_policy.as_deref() {
            Some("PreferDualStack") => FamilyPolicy::PreferDualStack,
            Some("RequireDualStack") => FamilyPolicy::RequireDualStack,
            _ => FamilyPolicy::SingleStack,
        };
        let primary_is_ipv6 = spec
            .ip_families
            .as_ref()
            .and_then(|families| families.first())
            .is_some_and(|family| family == "IPv6");
        let ingress = service
            .status
            .as_ref()
            .and_then(|status| status.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|entries| {
                entries
                    .iter()
                    .map(|entry| IngressEntry {
                        ip: entry.ip.clone(),
                        hostname: entry.hostname.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let empty = BTreeMap::new();
        let annotations = meta.annotations.as_ref().unwrap_or(&empty);
        let deprecated_annotations = annotations
            .keys()
            .filter(|k| k.starts_with(DEPRECATED_ANNOTATION_PREFIX))
            .cloned()
            .collect();
        let request = ironlb_api::service::service_request(service)
            .map(|read| read.request)
            .map_err(|error| error.to_string());
        Ok(Self {
            key,
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            is_load_balancer: spec.type_.as_deref() == Some("LoadBalancer"),
            load_balancer_class: spec.load_balancer_class.clone(),
            cluster_ips,
            family_policy,
            primary_is_ipv6,
            ingress,
            allocated_from_pool: annotations.get(ANNOTATION_ALLOCATED_FROM_POOL).cloned(),
            deprecated_annotations,
            request,
        })
    }

    /// The allocation key (backend key and sharing key; empty when the request does not
    /// translate): when it changes, a pending Service may now be able to share (step 11).
    pub fn allocation_key(&self) -> String {
        match &self.request {
            Ok(request) => format!("{}\u{0}{}", request.backend_key, request.sharing_key),
            Err(_) => String::new(),
        }
    }

    /// The IPs of `status.loadBalancer.ingress[].ip` that parse, in order.
    pub fn status_ips(&self) -> Vec<IpAddr> {
        self.ingress
            .iter()
            .filter_map(|entry| entry.ip.as_deref())
            .filter_map(|ip| ip.parse().ok())
            .collect()
    }
}

/// What the controller wants a Service's status and pool annotation to be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredStatus {
    /// `status.loadBalancer.ingress[].ip`, IPv4 first.
    pub ips: Vec<IpAddr>,
    /// The `metallb.io/ip-allocated-from-pool` annotation; `None` removes it.
    pub pool: Option<String>,
}

impl DesiredStatus {
    /// The empty status: no IP, no annotation.
    pub fn cleared() -> Self {
        Self::default()
    }

    /// Builds a status with `ips` sorted IPv4 first (MetalLB writes dual-stack pairs IPv4 first,
    /// whatever the order of `ipFamilies`).
    pub fn assigned(mut ips: Vec<IpAddr>, pool: String) -> Self {
        ips.sort_by_key(IpAddr::is_ipv6);
        Self {
            ips,
            pool: Some(pool),
        }
    }

    /// Whether `view` already shows this status. Only `ip` and `hostname` of the ingress entries
    /// are compared: server-added fields such as `ipMode: VIP` never cause a rewrite.
    pub fn is_shown_by(&self, view: &ServiceView) -> bool {
        let ingress_matches = view.ingress.len() == self.ips.len()
            && view.ingress.iter().zip(&self.ips).all(|(entry, ip)| {
                entry.hostname.is_none()
                    && entry
                        .ip
                        .as_deref()
                        .and_then(|text| text.parse::<IpAddr>().ok())
                        .is_some_and(|seen| seen == *ip)
            });
        ingress_matches && view.allocated_from_pool == self.pool
    }
}
