//! A `v1` Service → the allocator's [`Request`].
//!
//! Reads what MetalLB's controller reads (`controller/service.go`, `k8salloc`): the annotations
//! `metallb.io/loadBalancerIPs`, `metallb.io/address-pool` and `metallb.io/allow-shared-ip`
//! (the stable key wins over its deprecated `metallb.universe.tf/*` alias when both are
//! present, even if empty), `spec.loadBalancerIP`, `spec.clusterIPs` (or `spec.clusterIP`),
//! `spec.ipFamilies`, `spec.ipFamilyPolicy`, `spec.externalTrafficPolicy` with `spec.selector`
//! (the backend key), `spec.ports`, `spec.loadBalancerClass` and the current
//! `status.loadBalancer.ingress[].ip`.

use std::net::IpAddr;

use ironlb_alloc::{Family, IpFamilyPolicy, PoolName, Port, Protocol, Request, ServiceKey};
use k8s_openapi::api::core::v1::Service;

/// The stable annotation naming the requested IPs.
pub const ANNOTATION_LOAD_BALANCER_IPS: &str = "metallb.io/loadBalancerIPs";
/// The stable annotation naming the requested pool.
pub const ANNOTATION_ADDRESS_POOL: &str = "metallb.io/address-pool";
/// The stable annotation carrying the sharing key.
pub const ANNOTATION_ALLOW_SHARED_IP: &str = "metallb.io/allow-shared-ip";
/// The annotation the controller writes with the pool name.
pub const ANNOTATION_IP_ALLOCATED_FROM_POOL: &str = "metallb.io/ip-allocated-from-pool";
/// The prefix of MetalLB's deprecated annotations.
pub const DEPRECATED_PREFIX: &str = "metallb.universe.tf/";

const DEPRECATED_LOAD_BALANCER_IPS: &str = "metallb.universe.tf/loadBalancerIPs";
const DEPRECATED_ADDRESS_POOL: &str = "metallb.universe.tf/address-pool";
const DEPRECATED_ALLOW_SHARED_IP: &str = "metallb.universe.tf/allow-shared-ip";

/// A Service as the allocator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRequest {
    /// The request for the allocator.
    pub request: Request,
    /// `spec.type == LoadBalancer`.
    pub is_load_balancer: bool,
    /// `spec.loadBalancerClass`; a controller without `--lb-class` handles only services
    /// without one.
    pub load_balancer_class: Option<String>,
    /// `status.loadBalancer.ingress[].ip`, in order: the current assignment.
    pub current_ips: Vec<IpAddr>,
    /// Every `metallb.universe.tf/*` annotation present, sorted (each deserves MetalLB's
    /// Warning event `deprecatedAnnotation`).
    pub deprecated_annotations: Vec<String>,
}

impl ServiceRequest {
    /// Whether a controller handling `class` (`None` = the default controller) should
    /// allocate for this Service (MetalLB's `filterByLoadBalancerClass`, plus the type check).
    pub fn handled_by(&self, class: Option<&str>) -> bool {
        self.is_load_balancer && self.load_balancer_class.as_deref() == class
    }
}

/// Why a Service could not be read. Every variant names the Service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// `metadata.name` is missing.
    #[error("Service: metadata.name: missing")]
    MissingName,
    /// Both the annotation and `spec.loadBalancerIP` request IPs.
    #[error("Service/{service}: spec.loadBalancerIP: service can not have both {ANNOTATION_LOAD_BALANCER_IPS} and svc.Spec.LoadBalancerIP")]
    BothRequestedIps {
        /// The Service.
        service: ServiceKey,
    },
    /// An entry of the loadBalancerIPs annotation is not an IP address.
    #[error("Service/{service}: metadata.annotations[{annotation}]: invalid {ANNOTATION_LOAD_BALANCER_IPS}: {value:?}")]
    InvalidLoadBalancerIps {
        /// The Service.
        service: ServiceKey,
        /// Which annotation (stable or deprecated) carried it.
        annotation: &'static str,
        /// The annotation's value.
        value: String,
    },
    /// `spec.loadBalancerIP` is not an IP address.
    #[error("Service/{service}: spec.loadBalancerIP: invalid spec.loadBalancerIP {value:?}")]
    InvalidLoadBalancerIp {
        /// The Service.
        service: ServiceKey,
        /// The value.
        value: String,
    },
    /// A cluster IP is not an IP address.
    #[error("Service/{service}: spec.clusterIPs: invalid cluster IP {value:?}")]
    InvalidClusterIp {
        /// The Service.
        service: ServiceKey,
        /// The value.
        value: String,
    },
    /// An ingress IP in the status is not an IP address.
    #[error("Service/{service}: status.loadBalancer.ingress: invalid IP {value:?}")]
    InvalidIngressIp {
        /// The Service.
        service: ServiceKey,
        /// The value.
        value: String,
    },
    /// `spec.ipFamilyPolicy` is not one of Kubernetes' three values.
    #[error("Service/{service}: spec.ipFamilyPolicy: unknown policy {value:?}: must be SingleStack, PreferDualStack or RequireDualStack")]
    UnknownIpFamilyPolicy {
        /// The Service.
        service: ServiceKey,
        /// The value.
        value: String,
    },
    /// A port's protocol is not TCP, UDP or SCTP.
    #[error("Service/{service}: spec.ports[{index}].protocol: unknown protocol {value:?}: must be TCP, UDP or SCTP")]
    UnknownProtocol {
        /// The Service.
        service: ServiceKey,
        /// The port's index.
        index: usize,
        /// The value.
        value: String,
    },
    /// A port number outside 1–65535.
    #[error("Service/{service}: spec.ports[{index}].port: {value} is not in 1-65535")]
    InvalidPort {
        /// The Service.
        service: ServiceKey,
        /// The port's index.
        index: usize,
        /// The value.
        value: i32,
    },
}

/// The value of an annotation, the stable key winning over the deprecated one when both are
/// present (MetalLB's `valueForAnnotation`). Returns the key that was used.
fn annotation<'a>(
    annotations: Option<&'a std::collections::BTreeMap<String, String>>,
    stable: &'static str,
    deprecated: &'static str,
) -> Option<(&'static str, &'a str)> {
    let annotations = annotations?;
    if let Some(value) = annotations.get(stable) {
        return Some((stable, value));
    }
    annotations
        .get(deprecated)
        .map(|value| (deprecated, value.as_str()))
}

/// Reads a Service. A missing namespace is `default`, as for `kubectl apply`.
pub fn service_request(service: &Service) -> Result<ServiceRequest, ServiceError> {
    let metadata = &service.metadata;
    let name = metadata.name.clone().ok_or(ServiceError::MissingName)?;
    let namespace = metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let key = ServiceKey::new(namespace, name);
    let annotations = metadata.annotations.as_ref();
    let spec = service.spec.clone().unwrap_or_default();

    let mut request = Request::new(key.clone());
    request.labels = metadata.labels.clone().unwrap_or_default();

    // Cluster IPs and families.
    let cluster_ips: Vec<String> = match &spec.cluster_ips {
        Some(list) if !list.is_empty() => list.clone(),
        _ => spec
            .cluster_ip
            .iter()
            .filter(|ip| !ip.is_empty() && ip.as_str() != "None")
            .cloned()
            .collect(),
    };
    request.cluster_families = cluster_ips
        .iter()
        .filter(|ip| ip.as_str() != "None")
        .map(|ip| {
            ip.parse::<IpAddr>()
                .map(Family::of)
                .map_err(|_| ServiceError::InvalidClusterIp {
                    service: key.clone(),
                    value: ip.clone(),
                })
        })
        .collect::<Result<_, _>>()?;
    request.primary_family = match spec.ip_families.as_deref() {
        Some([first, ..]) if first == "IPv6" => Family::V6,
        _ => Family::V4,
    };
    request.policy = match spec.ip_family_policy.as_deref() {
        None | Some("SingleStack") => IpFamilyPolicy::SingleStack,
        Some("PreferDualStack") => IpFamilyPolicy::PreferDualStack,
        Some("RequireDualStack") => IpFamilyPolicy::RequireDualStack,
        Some(other) => {
            return Err(ServiceError::UnknownIpFamilyPolicy {
                service: key,
                value: other.to_owned(),
            })
        }
    };

    // Sharing and backend keys (MetalLB's `SharingKey` and `k8salloc.BackendKey`).
    let mut deprecated_annotations: Vec<String> = annotations
        .map(|all| {
            all.keys()
                .filter(|name| name.starts_with(DEPRECATED_PREFIX))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    deprecated_annotations.sort();
    if let Some((_, value)) = annotation(
        annotations,
        ANNOTATION_ALLOW_SHARED_IP,
        DEPRECATED_ALLOW_SHARED_IP,
    ) {
        request.sharing_key = value.to_owned();
    }
    if spec.external_traffic_policy.as_deref() == Some("Local") {
        // `labels.Set(selector).String()`: `k=v` pairs sorted by key, joined by commas.
        request.backend_key = spec
            .selector
            .iter()
            .flatten()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(",");
    }

    // Ports.
    for (index, port) in spec.ports.iter().flatten().enumerate() {
        let protocol = match port.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            Some(other) => {
                return Err(ServiceError::UnknownProtocol {
                    service: key,
                    index,
                    value: other.to_owned(),
                })
            }
        };
        let number = u16::try_from(port.port)
            .ok()
            .filter(|&number| number != 0)
            .ok_or_else(|| ServiceError::InvalidPort {
                service: key.clone(),
                index,
                value: port.port,
            })?;
        request.ports.push(Port {
            protocol,
            port: number,
        });
    }

    // Requested IPs (MetalLB's `getDesiredLbIPs`) and pool.
    let requested = annotation(
        annotations,
        ANNOTATION_LOAD_BALANCER_IPS,
        DEPRECATED_LOAD_BALANCER_IPS,
    )
    .filter(|(_, value)| !value.is_empty());
    let spec_ip = spec
        .load_balancer_ip
        .as_deref()
        .filter(|value| !value.is_empty());
    request.requested_ips = match (requested, spec_ip) {
        (Some(_), Some(_)) => return Err(ServiceError::BothRequestedIps { service: key }),
        (Some((annotation, value)), None) => value
            .split(',')
            .map(|entry| {
                entry
                    .trim()
                    .parse::<IpAddr>()
                    .map_err(|_| ServiceError::InvalidLoadBalancerIps {
                        service: key.clone(),
                        annotation,
                        value: value.to_owned(),
                    })
            })
            .collect::<Result<_, _>>()?,
        (None, Some(value)) => {
            vec![value
                .parse::<IpAddr>()
                .map_err(|_| ServiceError::InvalidLoadBalancerIp {
                    service: key.clone(),
                    value: value.to_owned(),
                })?]
        }
        (None, None) => Vec::new(),
    };
    request.requested_pool = annotation(
        annotations,
        ANNOTATION_ADDRESS_POOL,
        DEPRECATED_ADDRESS_POOL,
    )
    .filter(|(_, value)| !value.is_empty())
    .map(|(_, value)| PoolName::from(value));

    // Current assignment.
    let current_ips = service
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref())
        .and_then(|load_balancer| load_balancer.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ingress| ingress.ip.as_deref())
        .filter(|ip| !ip.is_empty())
        .map(|ip| {
            ip.parse::<IpAddr>()
                .map_err(|_| ServiceError::InvalidIngressIp {
                    service: key.clone(),
                    value: ip.to_owned(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;

    Ok(ServiceRequest {
        request,
        is_load_balancer: spec.type_.as_deref() == Some("LoadBalancer"),
        load_balancer_class: spec.load_balancer_class.filter(|class| !class.is_empty()),
        current_ips,
        deprecated_annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    const BASE: &str = "
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: LoadBalancer
  clusterIPs: [10.96.0.10]
  ports:
  - port: 80
";

    fn with(extra_metadata: &str, extra_spec: &str) -> Service {
        let mut text = String::from(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\n",
        );
        text.push_str(extra_metadata);
        text.push_str("spec:\n  type: LoadBalancer\n");
        text.push_str(extra_spec);
        if !extra_spec.contains("clusterIP") {
            text.push_str("  clusterIPs: [10.96.0.10]\n");
        }
        service(&text)
    }

    #[test]
    fn plain_service() {
        let got = service_request(&service(BASE)).unwrap();
        assert!(got.is_load_balancer);
        assert!(got.handled_by(None));
        assert!(!got.handled_by(Some("ironlb")));
        assert_eq!(got.request.service, ServiceKey::new("shop", "web"));
        assert_eq!(got.request.cluster_families, vec![Family::V4]);
        assert_eq!(got.request.ports, vec![Port::tcp(80)]);
        assert_eq!(got.request.policy, IpFamilyPolicy::SingleStack);
        assert!(got.request.sharing_key.is_empty());
        assert!(got.request.backend_key.is_empty());
        assert!(got.current_ips.is_empty());
    }

    #[test]
    fn annotations_table() {
        struct Case {
            desc: &'static str,
            annotations: &'static str,
            spec: &'static str,
            want_ips: Result<Vec<IpAddr>, &'static str>,
            want_pool: Option<&'static str>,
            want_share: &'static str,
            want_deprecated: Vec<&'static str>,
        }
        let cases = vec![
            Case {
                desc: "stable loadBalancerIPs, two families",
                annotations: "    metallb.io/loadBalancerIPs: 192.168.1.5, fc00::5\n",
                spec: "",
                want_ips: Ok(ips(&["192.168.1.5", "fc00::5"])),
                want_pool: None,
                want_share: "",
                want_deprecated: vec![],
            },
            Case {
                desc: "deprecated loadBalancerIPs",
                annotations: "    metallb.universe.tf/loadBalancerIPs: 192.168.1.5\n",
                spec: "",
                want_ips: Ok(ips(&["192.168.1.5"])),
                want_pool: None,
                want_share: "",
                want_deprecated: vec!["metallb.universe.tf/loadBalancerIPs"],
            },
            Case {
                desc: "stable wins over deprecated",
                annotations: "    metallb.io/address-pool: new\n    metallb.universe.tf/address-pool: old\n    metallb.io/allow-shared-ip: k\n    metallb.universe.tf/allow-shared-ip: old\n",
                spec: "",
                want_ips: Ok(vec![]),
                want_pool: Some("new"),
                want_share: "k",
                want_deprecated: vec![
                    "metallb.universe.tf/address-pool",
                    "metallb.universe.tf/allow-shared-ip",
                ],
            },
            Case {
                desc: "deprecated pool and sharing alone",
                annotations: "    metallb.universe.tf/address-pool: old\n    metallb.universe.tf/allow-shared-ip: s\n",
                spec: "",
                want_ips: Ok(vec![]),
                want_pool: Some("old"),
                want_share: "s",
                want_deprecated: vec![
                    "metallb.universe.tf/address-pool",
                    "metallb.universe.tf/allow-shared-ip",
                ],
            },
            Case {
                desc: "spec.loadBalancerIP",
                annotations: "",
                spec: "  loadBalancerIP: 192.168.1.7\n",
                want_ips: Ok(ips(&["192.168.1.7"])),
                want_pool: None,
                want_share: "",
                want_deprecated: vec![],
            },
            Case {
                desc: "both requested IP sources",
                annotations: "    metallb.io/loadBalancerIPs: 192.168.1.5\n",
                spec: "  loadBalancerIP: 192.168.1.7\n",
                want_ips: Err("Service/shop/web: spec.loadBalancerIP: service can not have both metallb.io/loadBalancerIPs and svc.Spec.LoadBalancerIP"),
                want_pool: None,
                want_share: "",
                want_deprecated: vec![],
            },
            Case {
                desc: "bad annotation IP",
                annotations: "    metallb.io/loadBalancerIPs: 192.168.1.5,nope\n",
                spec: "",
                want_ips: Err("Service/shop/web: metadata.annotations[metallb.io/loadBalancerIPs]: invalid metallb.io/loadBalancerIPs: \"192.168.1.5,nope\""),
                want_pool: None,
                want_share: "",
                want_deprecated: vec![],
            },
            Case {
                desc: "bad spec IP",
                annotations: "",
                spec: "  loadBalancerIP: 300.1.1.1\n",
                want_ips: Err("Service/shop/web: spec.loadBalancerIP: invalid spec.loadBalancerIP \"300.1.1.1\""),
                want_pool: None,
                want_share: "",
                want_deprecated: vec![],
            },
        ];
        for case in cases {
            let metadata = if case.annotations.is_empty() {
                String::new()
            } else {
                format!("  annotations:\n{}", case.annotations)
            };
            let got = service_request(&with(&metadata, case.spec));
            match (&got, &case.want_ips) {
                (Ok(got), Ok(want)) => {
                    assert_eq!(&got.request.requested_ips, want, "{}", case.desc);
                    assert_eq!(
                        got.request.requested_pool,
                        case.want_pool.map(PoolName::from),
                        "{}",
                        case.desc
                    );
                    assert_eq!(got.request.sharing_key, case.want_share, "{}", case.desc);
                    assert_eq!(
                        got.deprecated_annotations, case.want_deprecated,
                        "{}",
                        case.desc
                    );
                }
                (Err(error), Err(want)) => assert_eq!(&error.to_string(), want, "{}", case.desc),
                (got, want) => panic!("{}: got {got:?}, want {want:?}", case.desc),
            }
        }
    }

    #[test]
    fn families_and_policies() {
        let got = service_request(&with(
            "",
            "  clusterIPs: [fd00::10, 10.96.0.10]\n  ipFamilies: [IPv6, IPv4]\n  ipFamilyPolicy: PreferDualStack\n",
        ))
        .unwrap();
        assert_eq!(got.request.cluster_families, vec![Family::V6, Family::V4]);
        assert_eq!(got.request.primary_family, Family::V6);
        assert_eq!(got.request.policy, IpFamilyPolicy::PreferDualStack);

        let got = service_request(&with("", "  clusterIP: 10.96.0.1\n")).unwrap();
        assert_eq!(got.request.cluster_families, vec![Family::V4]);
        let got = service_request(&with("", "  clusterIP: None\n")).unwrap();
        assert!(got.request.cluster_families.is_empty());

        let error = service_request(&with("", "  clusterIPs: [x]\n")).unwrap_err();
        assert!(matches!(error, ServiceError::InvalidClusterIp { .. }));
        let error = service_request(&with("", "  ipFamilyPolicy: Sometimes\n")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Service/shop/web: spec.ipFamilyPolicy: unknown policy \"Sometimes\": must be SingleStack, PreferDualStack or RequireDualStack"
        );
    }

    #[test]
    fn backend_key_ports_class_status() {
        let got = service_request(&service(
            "
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: kube-system}
spec:
  type: LoadBalancer
  clusterIPs: [10.96.0.10]
  externalTrafficPolicy: Local
  selector: {k8s-app: kube-dns, app: dns}
  loadBalancerClass: other
  ports:
  - {port: 53, protocol: UDP}
  - {port: 53, protocol: TCP}
  - {port: 9153, protocol: SCTP}
status:
  loadBalancer:
    ingress: [{ip: 192.168.1.9}, {hostname: lb.example}]
",
        ))
        .unwrap();
        assert_eq!(got.request.backend_key, "app=dns,k8s-app=kube-dns");
        assert_eq!(
            got.request.ports,
            vec![
                Port::udp(53),
                Port::tcp(53),
                Port {
                    protocol: Protocol::Sctp,
                    port: 9153
                }
            ]
        );
        assert_eq!(got.load_balancer_class.as_deref(), Some("other"));
        assert!(!got.handled_by(None));
        assert!(got.handled_by(Some("other")));
        assert_eq!(got.current_ips, ips(&["192.168.1.9"]));

        let cluster = service_request(&with(
            "",
            "  externalTrafficPolicy: Cluster\n  selector: {a: b}\n",
        ))
        .unwrap();
        assert_eq!(cluster.request.backend_key, "");

        let not_lb = service_request(&service(
            "apiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec: {type: ClusterIP}\n",
        ))
        .unwrap();
        assert!(!not_lb.is_load_balancer);
        assert_eq!(not_lb.request.service.namespace, "default");

        let error = service_request(&with("", "  ports: [{port: 70000}]\n")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Service/shop/web: spec.ports[0].port: 70000 is not in 1-65535"
        );
        let error =
            service_request(&with("", "  ports: [{port: 80, protocol: ICMP}]\n")).unwrap_err();
        assert!(matches!(
            error,
            ServiceError::UnknownProtocol { index: 0, .. }
        ));
        let error =
            service_request(&service("apiVersion: v1\nkind: Service\nmetadata: {}\n")).unwrap_err();
        assert_eq!(error, ServiceError::MissingName);
    }
}
