//! The simulated API server: Services (real `v1.Service` objects, so that the controller and the
//! speakers read them with their own code), endpoints, Nodes and the metallb.io configuration
//! (written as YAML and parsed by `ironlb-api`, as `ironlb config check` does).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ironlb_actors::cluster::{Snapshot, SpeakerLease};
use ironlb_actors::model::{Endpoints, NodeInfo, ServiceInfo, ServiceKey, EXCLUDE_LB_LABEL};
use ironlb_api::config::Config;
use ironlb_controller::ipam::ControllerConfig;
use ironlb_controller::view::{DesiredStatus, ANNOTATION_ALLOCATED_FROM_POOL};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::bgp::{ROUTER_ADDRESS, ROUTER_ASN, SPEAKER_ASN};

/// Namespace of every simulated Service.
pub const NAMESPACE: &str = "default";
/// The annotation that lets Services share an IP.
pub const ALLOW_SHARED_IP: &str = "metallb.io/allow-shared-ip";
/// The label that puts a node under the L2Advertisement's node selector.
pub const L2_LABEL: &str = "ironlb-sim/l2";
/// The name of the one BGPPeer (the simulated router).
pub const BGP_PEER: &str = "router";
/// The address-pool sets pool churn cycles through (the first is the initial one).
pub const POOL_SETS: [&[&str]; 4] = [
    &["192.168.10.0/28"],
    &["192.168.10.0/29"],
    &["192.168.10.8/29", "192.168.20.0/29"],
    &["192.168.20.0/28"],
];

/// One Service as the simulator generates it, with the facts the checkers need.
#[derive(Clone, Debug)]
pub struct SimService {
    /// The object the API server stores (status and `resourceVersion` included).
    pub object: Arc<Service>,
    /// `allow-shared-ip` key, if any.
    pub sharing_key: Option<String>,
    /// TCP ports (disjoint between Services that share a key).
    pub ports: BTreeSet<u16>,
    /// `externalTrafficPolicy: Local`.
    pub local: bool,
    /// Nodes (by index) with a serving endpoint.
    pub endpoints: BTreeSet<usize>,
}

impl SimService {
    /// The IPs of `status.loadBalancer.ingress`.
    pub fn ips(&self) -> Vec<IpAddr> {
        self.object
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ip.as_deref())
            .filter_map(|ip| ip.parse().ok())
            .collect()
    }

    /// The `resourceVersion`.
    pub fn resource_version(&self) -> &str {
        self.object
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or("")
    }
}

/// The API server state.
#[derive(Debug)]
pub struct Api {
    /// Grows on every change.
    pub revision: u64,
    /// Grows on every configuration change.
    pub config_generation: u64,
    /// Reachable (an outage makes watches stall and writes fail).
    pub available: bool,
    /// Services by name.
    pub services: BTreeMap<String, SimService>,
    /// Node names, by index.
    pub node_names: Vec<String>,
    /// Nodes selected by the L2Advertisement.
    pub l2_nodes: BTreeSet<usize>,
    /// Nodes labelled exclude-from-external-load-balancers.
    pub excluded: BTreeSet<usize>,
    /// Index into [`POOL_SETS`].
    pub pool_set: usize,
    /// The parsed configuration.
    pub config: Arc<Config>,
    /// What the controller gets of it.
    pub controller_config: ControllerConfig,
    /// The speakers' Leases `ironlb-speaker-<node>`, by node name.
    pub leases: BTreeMap<String, SpeakerLease>,
    /// The `ServiceL2Status` objects: the nodes holding one, by Service.
    pub l2_statuses: BTreeMap<ServiceKey, BTreeSet<String>>,
    /// Grows on every Lease or `ServiceL2Status` change (kept apart from [`Self::revision`], which
    /// the checkers use to tell whether a speaker has seen the latest Services and
    /// configuration: a Lease renewal changes neither).
    pub objects_revision: u64,
    snapshot: Option<((u64, u64), Arc<Snapshot>)>,
}

/// The configuration did not parse (a simulator bug: it writes the YAML itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("simulated configuration does not parse: {0}")]
pub struct ConfigBroken(pub String);

impl Api {
    /// An API server with these nodes and pool set 0.
    pub fn new(
        node_names: Vec<String>,
        l2_nodes: BTreeSet<usize>,
        excluded: BTreeSet<usize>,
    ) -> Result<Self, ConfigBroken> {
        let (config, controller_config) = parse_config(&node_names, &l2_nodes, &excluded, 0)?;
        Ok(Self {
            revision: 1,
            config_generation: 1,
            available: true,
            services: BTreeMap::new(),
            node_names,
            l2_nodes,
            excluded,
            pool_set: 0,
            config,
            controller_config,
            leases: BTreeMap::new(),
            l2_statuses: BTreeMap::new(),
            objects_revision: 1,
            snapshot: None,
        })
    }

    /// Switches to another pool set.
    pub fn set_pools(&mut self, pool_set: usize) -> Result<(), ConfigBroken> {
        let (config, controller_config) =
            parse_config(&self.node_names, &self.l2_nodes, &self.excluded, pool_set)?;
        self.pool_set = pool_set;
        self.config = config;
        self.controller_config = controller_config;
        self.config_generation += 1;
        self.bump();
        Ok(())
    }

    /// Records a change.
    pub fn bump(&mut self) {
        self.revision += 1;
    }

    /// Creates a Service without IP.
    pub fn create_service(
        &mut self,
        name: &str,
        sharing_key: Option<String>,
        ports: BTreeSet<u16>,
        local: bool,
        endpoints: BTreeSet<usize>,
    ) {
        self.bump();
        let object = service_object(
            name,
            self.revision,
            sharing_key.as_deref(),
            &ports,
            local,
            &DesiredStatus::cleared(),
        );
        self.services.insert(
            name.to_owned(),
            SimService {
                object: Arc::new(object),
                sharing_key,
                ports,
                local,
                endpoints,
            },
        );
    }

    /// Changes a Service's endpoints (an EndpointSlice update: no new Service version).
    pub fn set_endpoints(&mut self, name: &str, endpoints: BTreeSet<usize>) {
        if let Some(service) = self.services.get_mut(name) {
            service.endpoints = endpoints;
            self.revision += 1;
        }
    }

    /// Flips `externalTrafficPolicy` (a spec change: a new Service version).
    pub fn toggle_local(&mut self, name: &str) {
        self.revision += 1;
        let revision = self.revision;
        if let Some(service) = self.services.get_mut(name) {
            service.local = !service.local;
            let mut object = (*service.object).clone();
            if let Some(spec) = object.spec.as_mut() {
                spec.external_traffic_policy =
                    Some(if service.local { "Local" } else { "Cluster" }.to_owned());
            }
            object.metadata.resource_version = Some(revision.to_string());
            service.object = Arc::new(object);
        }
    }

    /// Deletes a Service.
    pub fn delete_service(&mut self, name: &str) {
        if self.services.remove(name).is_some() {
            self.bump();
        }
    }

    /// A status write locked on `resource_version`: `Ok(true)` written, `Ok(false)` conflict or
    /// gone (dropped, as the controller's writer drops a 409 or 404).
    pub fn write_status(
        &mut self,
        name: &str,
        resource_version: &str,
        status: &DesiredStatus,
    ) -> bool {
        let Some(service) = self.services.get(name) else {
            return false;
        };
        if service.resource_version() != resource_version {
            return false;
        }
        self.revision += 1;
        let object = service_object(
            name,
            self.revision,
            service.sharing_key.as_deref(),
            &service.ports,
            service.local,
            status,
        );
        if let Some(service) = self.services.get_mut(name) {
            service.object = Arc::new(object);
        }
        true
    }

    /// Renews (or creates) the Lease of `node`, as the speaker's `renew_lease` does.
    pub fn renew_lease(&mut self, node: &str, renewed_unix_micros: i64, alive_members: u32) {
        self.leases.insert(
            node.to_owned(),
            SpeakerLease {
                renewed_unix_micros,
                alive_members,
            },
        );
        self.objects_revision += 1;
    }

    /// Creates (`present`) or deletes the `ServiceL2Status` of `node` for `service`. Returns
    /// whether anything changed.
    pub fn write_l2_status(&mut self, node: &str, service: &ServiceKey, present: bool) -> bool {
        let changed = if present {
            self.l2_statuses
                .entry(service.clone())
                .or_default()
                .insert(node.to_owned())
        } else {
            let removed = self
                .l2_statuses
                .get_mut(service)
                .is_some_and(|holders| holders.remove(node));
            self.l2_statuses.retain(|_, holders| !holders.is_empty());
            removed
        };
        if changed {
            self.objects_revision += 1;
        }
        changed
    }

    /// The Services for which `node` holds a `ServiceL2Status`.
    pub fn l2_statuses_of(&self, node: &str) -> Vec<ServiceKey> {
        self.l2_statuses
            .iter()
            .filter(|(_, holders)| holders.contains(node))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The speakers' view of the current revision (built once per revision).
    pub fn snapshot(&mut self) -> Arc<Snapshot> {
        let current = (self.revision, self.objects_revision);
        if let Some((revision, snapshot)) = &self.snapshot {
            if *revision == current {
                return snapshot.clone();
            }
        }
        let mut services = BTreeMap::new();
        let mut endpoints = BTreeMap::new();
        for service in self.services.values() {
            let Ok(info) = ServiceInfo::from_service(&service.object) else {
                continue;
            };
            endpoints.insert(
                info.key.clone(),
                Endpoints {
                    serving_anywhere: !service.endpoints.is_empty(),
                    serving_nodes: service
                        .endpoints
                        .iter()
                        .filter_map(|i| self.node_names.get(*i).cloned())
                        .collect(),
                },
            );
            services.insert(info.key.clone(), info);
        }
        let nodes = self
            .node_names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                (
                    name.clone(),
                    NodeInfo {
                        name: name.clone(),
                        labels: node_labels(name, &self.l2_nodes, &self.excluded, index),
                        network_unavailable: false,
                        internal_ips: Vec::new(),
                    },
                )
            })
            .collect();
        let snapshot = Arc::new(Snapshot {
            config: Some(self.config.clone()),
            config_errors: Vec::new(),
            services,
            endpoints,
            nodes,
            synced: true,
            speaker_leases: self.leases.clone(),
            l2_owners: self.l2_statuses.clone(),
        });
        self.snapshot = Some((current, snapshot.clone()));
        snapshot
    }

    /// Whether `ip` lies in a pool of the current configuration.
    pub fn in_pools(&self, ip: IpAddr) -> bool {
        self.config.pools().values().any(|pool| pool.contains(ip))
    }

    /// The BGP oracle: does node `index` advertise `service` (every node is selected by the
    /// BGPAdvertisement; not excluded; endpoints; `Local` policy)?
    pub fn advertises(&self, index: usize, service: &SimService) -> bool {
        !self.excluded.contains(&index)
            && !service.endpoints.is_empty()
            && (!service.local || service.endpoints.contains(&index))
            && service.ips().iter().all(|ip| self.in_pools(*ip))
    }

    /// The independent eligibility oracle: may node `index` announce `service` in layer 2 mode
    /// (selected by the L2Advertisement, not excluded, endpoints, `Local` policy)?
    pub fn is_candidate(&self, index: usize, service: &SimService) -> bool {
        self.l2_nodes.contains(&index)
            && !self.excluded.contains(&index)
            && !service.endpoints.is_empty()
            && (!service.local || service.endpoints.contains(&index))
            && service.ips().iter().all(|ip| self.in_pools(*ip))
    }

    /// The Services holding `ip` in their status.
    pub fn holders(&self, ip: IpAddr) -> Vec<&SimService> {
        self.services
            .values()
            .filter(|service| service.ips().contains(&ip))
            .collect()
    }

    /// Every IP in some Service's status, with its holders' names.
    pub fn allocated(&self) -> BTreeMap<IpAddr, Vec<String>> {
        let mut allocated: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        for (name, service) in &self.services {
            for ip in service.ips() {
                allocated.entry(ip).or_default().push(name.clone());
            }
        }
        allocated
    }
}

fn node_labels(
    name: &str,
    l2_nodes: &BTreeSet<usize>,
    excluded: &BTreeSet<usize>,
    index: usize,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([("kubernetes.io/hostname".to_owned(), name.to_owned())]);
    if l2_nodes.contains(&index) {
        labels.insert(L2_LABEL.to_owned(), "yes".to_owned());
    }
    if excluded.contains(&index) {
        labels.insert(EXCLUDE_LB_LABEL.to_owned(), String::new());
    }
    labels
}

fn parse_config(
    node_names: &[String],
    l2_nodes: &BTreeSet<usize>,
    excluded: &BTreeSet<usize>,
    pool_set: usize,
) -> Result<(Arc<Config>, ControllerConfig), ConfigBroken> {
    let mut yaml = String::new();
    for (index, name) in node_names.iter().enumerate() {
        let labels: Vec<String> = node_labels(name, l2_nodes, excluded, index)
            .iter()
            .map(|(k, v)| format!("{k}: {v:?}"))
            .collect();
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{{}}}}}\n---\n",
            labels.join(", ")
        ));
    }
    let addresses = POOL_SETS
        .get(pool_set)
        .copied()
        .unwrap_or(POOL_SETS[0])
        .join(", ");
    yaml.push_str(&format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: pool-a, namespace: metallb-system}}\nspec: {{addresses: [{addresses}]}}\n---\n"
    ));
    yaml.push_str(&format!(
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: l2, namespace: metallb-system}}\nspec: {{ipAddressPools: [pool-a], nodeSelectors: [{{matchLabels: {{{L2_LABEL}: \"yes\"}}}}]}}\n---\n"
    ));
    yaml.push_str(&format!(
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: bgp, namespace: metallb-system}}\nspec: {{ipAddressPools: [pool-a]}}\n---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {BGP_PEER}, namespace: metallb-system}}\nspec: {{myASN: {SPEAKER_ASN}, peerASN: {ROUTER_ASN}, peerAddress: {ROUTER_ADDRESS}}}\n"
    ));
    let set = ironlb_api::manifest::load_str(Path::new("simulated.yaml"), &yaml)
        .map_err(|error| ConfigBroken(error.to_string()))?;
    let config = Config::parse(&set.config_inputs())
        .map_err(|errors| ConfigBroken(format!("{errors:?}")))?;
    let controller_config = ControllerConfig {
        pools: config.pools().values().cloned().collect(),
    };
    Ok((Arc::new(config), controller_config))
}

fn service_object(
    name: &str,
    revision: u64,
    sharing_key: Option<&str>,
    ports: &BTreeSet<u16>,
    local: bool,
    status: &DesiredStatus,
) -> Service {
    let mut annotations = BTreeMap::new();
    if let Some(key) = sharing_key {
        annotations.insert(ALLOW_SHARED_IP.to_owned(), key.to_owned());
    }
    if let Some(pool) = &status.pool {
        annotations.insert(ANNOTATION_ALLOCATED_FROM_POOL.to_owned(), pool.clone());
    }
    let ingress: Vec<LoadBalancerIngress> = status
        .ips
        .iter()
        .map(|ip| LoadBalancerIngress {
            ip: Some(ip.to_string()),
            ..LoadBalancerIngress::default()
        })
        .collect();
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            resource_version: Some(revision.to_string()),
            uid: Some(format!("uid-{name}")),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".to_owned()),
            cluster_ip: Some("10.96.0.10".to_owned()),
            cluster_ips: Some(vec!["10.96.0.10".to_owned()]),
            ip_families: Some(vec!["IPv4".to_owned()]),
            ip_family_policy: Some("SingleStack".to_owned()),
            external_traffic_policy: Some(if local { "Local" } else { "Cluster" }.to_owned()),
            selector: Some(BTreeMap::from([("app".to_owned(), name.to_owned())])),
            ports: Some(
                ports
                    .iter()
                    .map(|port| ServicePort {
                        name: Some(format!("p{port}")),
                        port: i32::from(*port),
                        protocol: Some("TCP".to_owned()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: (!ingress.is_empty()).then_some(ingress),
            }),
            ..ServiceStatus::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Api {
        let names = vec!["node-0".to_owned(), "node-1".to_owned()];
        Api::new(names, BTreeSet::from([0, 1]), BTreeSet::new()).unwrap()
    }

    #[test]
    fn every_pool_set_parses() {
        let mut api = api();
        for set in 0..POOL_SETS.len() {
            api.set_pools(set).unwrap();
            assert!(!api.config.pools().is_empty());
        }
        assert_eq!(api.config.l2_advertisements().len(), 1);
        assert_eq!(api.config.bgp_advertisements().len(), 1);
        assert_eq!(api.config.peers().len(), 1);
    }

    #[test]
    fn status_write_is_locked_on_the_resource_version() {
        let mut api = api();
        api.create_service(
            "web",
            None,
            BTreeSet::from([80]),
            false,
            BTreeSet::from([0]),
        );
        let rv = api.services["web"].resource_version().to_owned();
        let status =
            DesiredStatus::assigned(vec!["192.168.10.1".parse().unwrap()], "pool-a".to_owned());
        assert!(!api.write_status("web", "stale", &status));
        assert!(api.write_status("web", &rv, &status));
        assert_eq!(
            api.services["web"].ips(),
            vec!["192.168.10.1".parse::<IpAddr>().unwrap()]
        );
        let snapshot = api.snapshot();
        assert_eq!(snapshot.services.len(), 1);
        assert_eq!(snapshot.nodes.len(), 2);
    }
}
