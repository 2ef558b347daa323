//! Service → allocation request translation (`metallb.md` §2.1, §3.3).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ironlb_alloc::{Family, IpFamilyPolicy, PoolName, Port, Protocol, Request, ServiceKey};
use k8s_openapi::api::core::v1::Service;

/// Why a Service's request cannot be read (a `LoadBalancerFailed` event).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// `metadata.name` or `metadata.namespace` is missing.
    #[error("Service without name or namespace")]
    MissingName,
    /// Both `metallb.io/loadBalancerIPs` and `spec.loadBalancerIP` are set.
    #[error("service can not have both metallb.io/loadBalancerIPs and svc.Spec.LoadBalancerIP")]
    BothRequests,
    /// A requested address does not parse.
    #[error("invalid IP \"{text}\" in metallb.io/loadBalancerIPs or spec.loadBalancerIP")]
    InvalidIp {
        /// The text as written.
        text: String,
    },
}

/// Reads the annotation `stable`, falling back to its deprecated `metallb.universe.tf/` alias.
fn annotation<'a>(annotations: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    annotations
        .get(&format!("metallb.io/{name}"))
        .or_else(|| annotations.get(&format!("metallb.universe.tf/{name}")))
        .map(String::as_str)
}

/// Builds the allocator's request for `service`.
pub fn from_service(service: &Service) -> Result<Request, RequestError> {
    let meta = &service.metadata;
    let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) else {
        return Err(RequestError::MissingName);
    };
    let mut request = Request::new(ServiceKey::new(namespace.clone(), name.clone()));
    let empty = BTreeMap::new();
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);
    let spec = service.spec.clone().unwrap_or_default();
    request.labels = meta.labels.clone().unwrap_or_default();

    let mut cluster_ips = spec.cluster_ips.clone().unwrap_or_default();
    if cluster_ips.is_empty() {
        cluster_ips.extend(spec.cluster_ip.clone());
    }
    request.cluster_families = cluster_ips
        .iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(Family::of)
        .collect();
    request.primary_family = match spec.ip_families.as_ref().and_then(|f| f.first()) {
        Some(family) if family == "IPv6" => Family::V6,
        _ => Family::V4,
    };
    request.policy = match spec.ip_family_policy.as_deref() {
        Some("PreferDualStack") => IpFamilyPolicy::PreferDualStack,
        Some("RequireDualStack") => IpFamilyPolicy::RequireDualStack,
        _ => IpFamilyPolicy::SingleStack,
    };
    request.sharing_key = annotation(annotations, "allow-shared-ip")
        .unwrap_or_default()
        .to_owned();
    if spec.external_traffic_policy.as_deref() == Some("Local") {
        // `labels.Set(selector).String()`: sorted `k=v` pairs joined with commas.
        let selector = spec.selector.clone().unwrap_or_default();
        request.backend_key = selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
    }
    request.ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let protocol = match port.protocol.as_deref() {
                None | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                Some(_) => return None,
            };
            let port = u16::try_from(port.port).ok()?;
            Some(Port { protocol, port })
        })
        .collect();
    let from_annotation = annotation(annotations, "loadBalancerIPs").filter(|s| !s.is_empty());
    let from_spec = spec.load_balancer_ip.as_deref().filter(|s| !s.is_empty());
    let texts: Vec<&str> = match (from_annotation, from_spec) {
        (Some(_), Some(_)) => return Err(RequestError::BothRequests),
        (Some(list), None) => list.split(',').map(str::trim).collect(),
        (None, Some(ip)) => vec![ip.trim()],
        (None, None) => Vec::new(),
    };
    request.requested_ips = texts
        .into_iter()
        .map(|text| {
            text.parse().map_err(|_| RequestError::InvalidIp {
                text: text.to_owned(),
            })
        })
        .collect::<Result<_, _>>()?;
    request.requested_pool = annotation(annotations, "address-pool")
        .filter(|pool| !pool.is_empty())
        .map(PoolName::from);
    Ok(request)
}
