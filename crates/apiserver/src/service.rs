//! The Service strategy: defaulting, clusterIP / nodePort allocation by `ipFamilyPolicy`,
//! validation, and type-change field dropping (reference §6.9).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Map, Value};

use crate::error::Cause;

/// NodePort range, inclusive.
const NODE_PORT_MIN: u16 = 30000;
const NODE_PORT_MAX: u16 = 32767;

/// Allocated cluster IPs and node ports.
#[derive(Debug)]
pub(crate) struct ServiceAllocator {
    cidrs: Vec<IpNet>,
    used_ips: BTreeSet<IpAddr>,
    used_ports: BTreeSet<u16>,
    /// Offset of the next IP to try, per CIDR (sequential allocation, wrapping).
    next_ip_offsets: Vec<u128>,
    next_port: u16,
}

/// IPs and ports taken by one Service object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Allocation {
    pub(crate) ips: BTreeSet<IpAddr>,
    pub(crate) ports: BTreeSet<u16>,
}

impl ServiceAllocator {
    /// An allocator over `cidrs` (the first is the primary family); the first host address of
    /// the primary CIDR is reserved for `default/kubernetes`.
    pub(crate) fn new(cidrs: Vec<IpNet>) -> Self {
        let count = cidrs.len();
        Self {
            cidrs,
            used_ips: BTreeSet::new(),
            used_ports: BTreeSet::new(),
            next_ip_offsets: vec![2; count],
            next_port: NODE_PORT_MIN,
        }
    }

    /// The first host address of the primary CIDR (for the `kubernetes` Service).
    pub(crate) fn kubernetes_ip(&self) -> Option<IpAddr> {
        self.cidrs.first().and_then(|cidr| offset_ip(cidr, 1))
    }

    fn family_cidr(&self, family: &str) -> Option<(usize, IpNet)> {
        self.cidrs
            .iter()
            .copied()
            .enumerate()
            .find(|(_, cidr)| family_of_net(cidr) == family)
    }

    fn primary_family(&self) -> &'static str {
        self.cidrs.first().map(family_of_net).unwrap_or("IPv4")
    }

    fn allocate_ip(&mut self, family: &str) -> Option<IpAddr> {
        let (index, cidr) = self.family_cidr(family)?;
        let size = net_size(&cidr);
        let start = self.next_ip_offsets.get(index).copied().unwrap_or(1);
        for step in 0..size.min(1 << 20) {
            let offset = 1 + (start - 1 + step) % (size - 2).max(1);
            let Some(ip) = offset_ip(&cidr, offset) else {
                continue;
            };
            if !self.used_ips.contains(&ip) {
                self.used_ips.insert(ip);
                if let Some(next) = self.next_ip_offsets.get_mut(index) {
                    *next = offset + 1;
                }
                return Some(ip);
            }
        }
        None
    }

    fn allocate_port(&mut self) -> Option<u16> {
        let span = NODE_PORT_MAX - NODE_PORT_MIN + 1;
        for step in 0..span {
            let port = NODE_PORT_MIN + (self.next_port - NODE_PORT_MIN + step) % span;
            if !self.used_ports.contains(&port) {
                self.used_ports.insert(port);
                self.next_port = if port == NODE_PORT_MAX {
                    NODE_PORT_MIN
                } else {
                    port + 1
                };
                return Some(port);
            }
        }
        None
    }

    /// Frees what a Service held.
    pub(crate) fn release(&mut self, allocation: &Allocation) {
        for ip in &allocation.ips {
            self.used_ips.remove(ip);
        }
        for port in &allocation.ports {
            self.used_ports.remove(port);
        }
    }

    /// Defaults, validates and allocates for a create (`old` None) or an update of a Service
    /// spec. On success the caller owns the returned allocation delta: `(newly taken, to free)`.
    pub(crate) fn prepare(
        &mut self,
        service: &mut Value,
        old: Option<&Value>,
    ) -> Result<(Allocation, Allocation), Vec<Cause>> {
        set_defaults(service);
        if let Some(old) = old {
            patch_allocated_values(service, old);
            drop_type_dependent_fields(service, old);
        }
        let mut causes = validate_spec(service, old);
        if !causes.is_empty() {
            return Err(causes);
        }
        let old_allocation = old.map(allocation_of).unwrap_or_default();
        let mut taken = Allocation::default();
        let result = self.allocate(service, &old_allocation, &mut taken, &mut causes);
        if result.is_none() || !causes.is_empty() {
            self.release(&taken);
            return Err(causes);
        }
        let new_allocation = allocation_of(service);
        let freed = Allocation {
            ips: old_allocation
                .ips
                .difference(&new_allocation.ips)
                .copied()
                .collect(),
            ports: old_allocation
                .ports
                .difference(&new_allocation.ports)
                .copied()
                .collect(),
        };
        Ok((taken, freed))
    }

    fn allocate(
        &mut self,
        service: &mut Value,
        old: &Allocation,
        taken: &mut Allocation,
        causes: &mut Vec<Cause>,
    ) -> Option<()> {
        let spec = service.get_mut("spec")?.as_object_mut()?;
        let service_type = spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        // IP families.
        if service_type != "ExternalName" {
            let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
            let policy = spec
                .get("ipFamilyPolicy")
                .and_then(Value::as_str)
                .unwrap_or("SingleStack")
                .to_string();
            let mut families: Vec<String> = spec
                .get("ipFamilies")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let requested_ips: Vec<String> = match spec.get("clusterIPs").and_then(Value::as_array)
            {
                Some(list) if !list.is_empty() => list
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => spec
                    .get("clusterIP")
                    .and_then(Value::as_str)
                    .filter(|ip| !ip.is_empty())
                    .map(|ip| vec![ip.to_string()])
                    .unwrap_or_default(),
            };
            if families.is_empty() {
                for ip in &requested_ips {
                    if let Ok(parsed) = ip.parse::<IpAddr>() {
                        families.push(family_of_ip(&parsed).to_string());
                    }
                }
            }
            if families.is_empty() {
                families.push(self.primary_family().to_string());
            }
            let server_families: Vec<&str> = self.cidrs.iter().map(family_of_net).collect();
            match policy.as_str() {
                "SingleStack" => families.truncate(1),
                "PreferDualStack" | "RequireDualStack" => {
                    if server_families.len() < 2 && policy == "RequireDualStack" {
                        causes.push(Cause::invalid(
                            "spec.ipFamilyPolicy",
                            &json!(policy),
                            "this cluster is not configured for dual-stack services",
                        ));
                        return None;
                    }
                    for family in &server_families {
                        if families.len() < 2 && !families.iter().any(|f| f == family) {
                            families.push((*family).to_string());
                        }
                    }
                }
                other => {
                    causes.push(Cause::not_supported(
                        "spec.ipFamilyPolicy",
                        &json!(other),
                        &[
                            "SingleStack".into(),
                            "PreferDualStack".into(),
                            "RequireDualStack".into(),
                        ],
                    ));
                    return None;
                }
            }
            for (index, family) in families.iter().enumerate() {
                if !server_families.contains(&family.as_str()) {
                    causes.push(Cause::invalid(
                        format!("spec.ipFamilies[{index}]"),
                        &json!(family),
                        "not configured on this cluster",
                    ));
                    return None;
                }
            }
            spec.insert("ipFamilyPolicy".into(), json!(policy));
            spec.insert("ipFamilies".into(), json!(families));
            if headless {
                spec.insert("clusterIPs".into(), json!(["None"]));
            } else {
                let mut ips = Vec::new();
                for (index, family) in families.iter().enumerate() {
                    match requested_ips.get(index) {
                        Some(text) => {
                            let Ok(ip) = text.parse::<IpAddr>() else {
                                causes.push(Cause::invalid(
                                    format!("spec.clusterIPs[{index}]"),
                                    &json!(text),
                                    "must be a valid IP address",
                                ));
                                return None;
                            };
                            if !old.ips.contains(&ip) {
                                let in_range = self
                                    .family_cidr(family)
                                    .is_some_and(|(_, cidr)| cidr.contains(&ip));
                                if !in_range {
                                    causes.push(Cause::invalid(
                                        format!("spec.clusterIPs[{index}]"),
                                        &json!(text),
                                        "failed to allocate IP: the provided IP is not in the valid range",
                                    ));
                                    return None;
                                }
                                if self.used_ips.contains(&ip) {
                                    causes.push(Cause::invalid(
                                        format!("spec.clusterIPs[{index}]"),
                                        &json!(text),
                                        "failed to allocate IP: provided IP is already allocated",
                                    ));
                                    return None;
                                }
                                self.used_ips.insert(ip);
                                taken.ips.insert(ip);
                            }
                            ips.push(ip.to_string());
                        }
                        None => {
                            let Some(ip) = self.allocate_ip(family) else {
                                causes.push(Cause::invalid(
                                    "spec.clusterIPs",
                                    &Value::Null,
                                    "failed to allocate IP: range is full",
                                ));
                                return None;
                            };
                            taken.ips.insert(ip);
                            ips.push(ip.to_string());
                        }
                    }
                }
                spec.insert(
                    "clusterIP".into(),
                    json!(ips.first().cloned().unwrap_or_default()),
                );
                spec.insert("clusterIPs".into(), json!(ips));
            }
        }
        // Node ports.
        let wants_node_ports = service_type == "NodePort"
            || (service_type == "LoadBalancer"
                && spec
                    .get("allocateLoadBalancerNodePorts")
                    .and_then(Value::as_bool)
                    != Some(false));
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for (index, port) in ports.iter_mut().enumerate() {
                let Some(port) = port.as_object_mut() else {
                    continue;
                };
                let requested = port
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .filter(|p| *p != 0);
                match requested {
                    Some(requested) => {
                        let Ok(requested) = u16::try_from(requested) else {
                            continue;
                        };
                        if !old.ports.contains(&requested) && !taken.ports.contains(&requested) {
                            if !(NODE_PORT_MIN..=NODE_PORT_MAX).contains(&requested) {
                                causes.push(Cause::invalid(
                                    format!("spec.ports[{index}].nodePort"),
                                    &json!(requested),
                                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                                ));
                                return None;
                            }
                            if self.used_ports.contains(&requested) {
                                causes.push(Cause::invalid(
                                    format!("spec.ports[{index}].nodePort"),
                                    &json!(requested),
                                    "provided port is already allocated",
                                ));
                                return None;
                            }
                            self.used_ports.insert(requested);
                            taken.ports.insert(requested);
                        }
                    }
                    None if wants_node_ports => {
                        let Some(allocated) = self.allocate_port() else {
                            causes.push(Cause::invalid(
                                format!("spec.ports[{index}].nodePort"),
                                &Value::Null,
                                "range is full",
                            ));
                            return None;
                        };
                        taken.ports.insert(allocated);
                        port.insert("nodePort".into(), json!(allocated));
                    }
                    None => {}
                }
            }
        }
        // Health check node port.
        let local = spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local");
        if service_type == "LoadBalancer" && local {
            let requested = spec
                .get("healthCheckNodePort")
                .and_then(Value::as_u64)
                .filter(|p| *p != 0);
            match requested.and_then(|p| u16::try_from(p).ok()) {
                Some(port) => {
                    if !old.ports.contains(&port) && !taken.ports.contains(&port) {
                        if self.used_ports.contains(&port) {
                            causes.push(Cause::invalid(
                                "spec.healthCheckNodePort",
                                &json!(port),
                                "provided port is already allocated",
                            ));
                            return None;
                        }
                        self.used_ports.insert(port);
                        taken.ports.insert(port);
                    }
                }
                None => {
                    let port = self.allocate_port()?;
                    taken.ports.insert(port);
                    spec.insert("healthCheckNodePort".into(), json!(port));
                }
            }
        } else {
            spec.remove("healthCheckNodePort");
        }
        Some(())
    }
}

/// What an already stored Service holds.
pub(crate) fn allocation_of(service: &Value) -> Allocation {
    let mut allocation = Allocation::default();
    let Some(spec) = service.get("spec") else {
        return allocation;
    };
    for ip in spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(ip) = ip.as_str().and_then(|ip| ip.parse().ok()) {
            allocation.ips.insert(ip);
        }
    }
    for port in spec
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(port) = port
            .get("nodePort")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
        {
            allocation.ports.insert(port);
        }
    }
    if let Some(port) = spec
        .get("healthCheckNodePort")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
    {
        allocation.ports.insert(port);
    }
    allocation
}

fn family_of_net(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    }
}

fn family_of_ip(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

fn net_size(net: &IpNet) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    if host_bits >= 64 {
        1 << 64
    } else {
        1u128 << host_bits
    }
}

fn offset_ip(net: &IpNet, offset: u128) -> Option<IpAddr> {
    if offset >= net_size(net) {
        return None;
    }
    match net.network() {
        IpAddr::V4(base) => {
            let value = u32::from(base).checked_add(u32::try_from(offset).ok()?)?;
            Some(IpAddr::V4(value.into()))
        }
        IpAddr::V6(base) => {
            let value = u128::from(base).checked_add(offset)?;
            Some(IpAddr::V6(value.into()))
        }
    }
}

/// `SetDefaults_Service`, plus `ipMode: VIP` on LoadBalancer ingress entries with an `ip`.
pub(crate) fn set_defaults(service: &mut Value) {
    let Some(object) = service.as_object_mut() else {
        return;
    };
    let spec = object.entry("spec").or_insert_with(|| json!({}));
    if let Some(spec) = spec.as_object_mut() {
        let service_type = spec
            .entry("type")
            .or_insert_with(|| json!("ClusterIP"))
            .as_str()
            .unwrap_or("ClusterIP")
            .to_string();
        spec.entry("sessionAffinity")
            .or_insert_with(|| json!("None"));
        if service_type != "ExternalName" {
            spec.entry("internalTrafficPolicy")
                .or_insert_with(|| json!("Cluster"));
        }
        if service_type == "NodePort" || service_type == "LoadBalancer" {
            spec.entry("externalTrafficPolicy")
                .or_insert_with(|| json!("Cluster"));
        }
        if service_type == "LoadBalancer" {
            spec.entry("allocateLoadBalancerNodePorts")
                .or_insert_with(|| json!(true));
        }
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.entry("protocol").or_insert_with(|| json!("TCP"));
                if !port.contains_key("targetPort") || port.get("targetPort") == Some(&json!(0)) {
                    if let Some(number) = port.get("port").cloned() {
                        port.insert("targetPort".into(), number);
                    }
                }
            }
        }
    }
    let is_load_balancer = object
        .get("spec")
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        == Some("LoadBalancer");
    let status = object.entry("status").or_insert_with(|| json!({}));
    if let Some(status) = status.as_object_mut() {
        let load_balancer = status.entry("loadBalancer").or_insert_with(|| json!({}));
        if is_load_balancer {
            if let Some(Value::Array(ingress)) = load_balancer.get_mut("ingress") {
                for entry in ingress.iter_mut().filter_map(Value::as_object_mut) {
                    if entry
                        .get("ip")
                        .and_then(Value::as_str)
                        .is_some_and(|ip| !ip.is_empty())
                    {
                        entry.entry("ipMode").or_insert_with(|| json!("VIP"));
                    }
                }
            }
        }
    }
}

/// Upstream's `patchAllocatedValues`: an update that leaves allocated fields unset (a client
/// replacing the whole spec) keeps the values already allocated.
fn patch_allocated_values(service: &mut Value, old: &Value) {
    let Some(old_spec) = old.get("spec") else {
        return;
    };
    let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let unset =
        |value: Option<&Value>| value.is_none_or(|v| v.is_null() || v == "" || v == &json!([]));
    let new_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if new_type != "ExternalName" && unset(spec.get("clusterIP")) && unset(spec.get("clusterIPs")) {
        for field in ["clusterIP", "clusterIPs"] {
            if let Some(value) = old_spec.get(field) {
                spec.insert(field.into(), value.clone());
            }
        }
        for field in ["ipFamilies", "ipFamilyPolicy"] {
            if unset(spec.get(field)) {
                if let Some(value) = old_spec.get(field) {
                    spec.insert(field.into(), value.clone());
                }
            }
        }
    }
    if new_type == "NodePort" || new_type == "LoadBalancer" {
        let old_ports = old_spec
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                if port
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .is_some_and(|p| p != 0)
                {
                    continue;
                }
                let protocol = port
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_string();
                let matching = old_ports.iter().find(|old_port| {
                    old_port.get("port") == port.get("port")
                        && old_port
                            .get("protocol")
                            .and_then(Value::as_str)
                            .unwrap_or("TCP")
                            == protocol
                });
                if let Some(node_port) = matching.and_then(|m| m.get("nodePort")) {
                    port.insert("nodePort".into(), node_port.clone());
                }
            }
        }
        if unset(spec.get("healthCheckNodePort")) {
            if let Some(value) = old_spec.get("healthCheckNodePort") {
                spec.insert("healthCheckNodePort".into(), value.clone());
            }
        }
    }
}

/// Upstream's `dropTypeDependentFields`: on a type change, drop what the old type allocated
/// automatically and the new type does not need. `status.loadBalancer` is never touched.
fn drop_type_dependent_fields(service: &mut Value, old: &Value) {
    let old_type = old
        .get("spec")
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let new_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if old_type == new_type {
        return;
    }
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    let needs_node_ports = new_type == "NodePort" || new_type == "LoadBalancer";
    if !needs_node_ports {
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for (index, port) in ports.iter_mut().enumerate() {
                let old_port = old_spec
                    .get("ports")
                    .and_then(|p| p.get(index))
                    .and_then(|p| p.get("nodePort"));
                if let Some(port) = port.as_object_mut() {
                    if port.get("nodePort").is_some() && port.get("nodePort") == old_port {
                        port.remove("nodePort");
                    }
                }
            }
        }
    }
    if new_type == "ExternalName" {
        if spec.get("clusterIP") == old_spec.get("clusterIP") {
            spec.remove("clusterIP");
        }
        if spec.get("clusterIPs") == old_spec.get("clusterIPs") {
            spec.remove("clusterIPs");
        }
        spec.remove("ipFamilies");
        spec.remove("ipFamilyPolicy");
    }
    if new_type != "LoadBalancer" {
        if spec.get("loadBalancerClass") == old_spec.get("loadBalancerClass") {
            spec.remove("loadBalancerClass");
        }
        if spec.get("allocateLoadBalancerNodePorts")
            == old_spec.get("allocateLoadBalancerNodePorts")
        {
            spec.remove("allocateLoadBalancerNodePorts");
        }
        if spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort") {
            spec.remove("healthCheckNodePort");
        }
    }
    if !needs_node_ports
        && spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy")
    {
        spec.remove("externalTrafficPolicy");
    }
}

fn validate_spec(service: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let empty = Map::new();
    let spec = service
        .get("spec")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let service_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    const TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !TYPES.contains(&service_type) {
        causes.push(Cause::not_supported(
            "spec.type",
            &json!(service_type),
            &TYPES.map(String::from),
        ));
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = spec
        .get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        causes.push(Cause::required("spec.ports", ""));
    }
    let mut seen = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (index, port) in ports.iter().enumerate() {
        let field = format!("spec.ports[{index}]");
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&number) {
            causes.push(Cause::invalid(
                format!("{field}.port"),
                port.get("port").unwrap_or(&Value::Null),
                "must be between 1 and 65535, inclusive",
            ));
        }
        let protocol = port
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP");
        if !["TCP", "UDP", "SCTP"].contains(&protocol) {
            causes.push(Cause::not_supported(
                format!("{field}.protocol"),
                &json!(protocol),
                &["SCTP".into(), "TCP".into(), "UDP".into()],
            ));
        }
        if !seen.insert((number, protocol.to_string())) {
            causes.push(Cause::duplicate(
                field.clone(),
                &json!({"port": number, "protocol": protocol}),
            ));
        }
        let name = port.get("name").and_then(Value::as_str).unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            causes.push(Cause::required(format!("{field}.name"), ""));
        }
        if !name.is_empty() && !names.insert(name.to_string()) {
            causes.push(Cause::duplicate(format!("{field}.name"), &json!(name)));
        }
        if let Some(target) = port.get("targetPort") {
            let ok = match target {
                Value::Number(n) => n.as_i64().is_some_and(|n| (1..=65535).contains(&n)),
                Value::String(s) => !s.is_empty() && s.len() <= 15,
                _ => false,
            };
            if !ok {
                causes.push(Cause::invalid(
                    format!("{field}.targetPort"),
                    target,
                    "must be between 1 and 65535, inclusive, or a valid port name",
                ));
            }
        }
    }
    if service_type == "ExternalName"
        && spec
            .get("externalName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        causes.push(Cause::required("spec.externalName", ""));
    }
    if let Some(old) = old {
        let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
        let old_type = old_spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP");
        for field in ["clusterIP", "clusterIPs"] {
            let before = old_spec.get(field);
            let after = spec.get(field);
            let before_set = before.is_some_and(|v| !v.is_null() && v != "" && v != &json!([]));
            let after_set = after.is_some_and(|v| !v.is_null() && v != "" && v != &json!([]));
            if before_set
                && after_set
                && before != after
                && old_type != "ExternalName"
                && service_type != "ExternalName"
            {
                let is_primary_kept = field == "clusterIPs"
                    && before.and_then(|b| b.get(0)) == after.and_then(|a| a.get(0));
                if !is_primary_kept {
                    causes.push(Cause::invalid(
                        format!("spec.{field}"),
                        after.unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
            }
        }
        let before = old_spec.get("loadBalancerClass");
        if before.is_some_and(|b| !b.is_null())
            && old_type == "LoadBalancer"
            && service_type == "LoadBalancer"
            && spec.get("loadBalancerClass") != before
        {
            causes.push(Cause::invalid(
                "spec.loadBalancerClass",
                spec.get("loadBalancerClass").unwrap_or(&Value::Null),
                "may not change once set",
            ));
        }
    }
    causes.extend(validate_status(service));
    causes
}

/// `status.loadBalancer.ingress[]`: `ip` must be an IP, `hostname` a DNS name and not an IP.
pub(crate) fn validate_status(service: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let ingress = service
        .get("status")
        .and_then(|s| s.get("loadBalancer"))
        .and_then(|l| l.get("ingress"))
        .and_then(Value::as_array);
    for (index, entry) in ingress.into_iter().flatten().enumerate() {
        if let Some(ip) = entry.get("ip") {
            if ip.as_str().and_then(|t| t.parse::<IpAddr>().ok()).is_none() {
                causes.push(Cause::invalid(
                    format!("status.loadBalancer.ingress[{index}].ip"),
                    ip,
                    "must be a valid IP address",
                ));
            }
        }
        if let Some(hostname) = entry.get("hostname") {
            let text = hostname.as_str().unwrap_or_default();
            if text.parse::<IpAddr>().is_ok() {
                causes.push(Cause::invalid(
                    format!("status.loadBalancer.ingress[{index}].hostname"),
                    hostname,
                    "must be a DNS name, not an IP address",
                ));
            } else if !crate::meta::is_dns1123_subdomain(text) {
                causes.push(Cause::invalid(
                    format!("status.loadBalancer.ingress[{index}].hostname"),
                    hostname,
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
                ));
            }
        }
        if let Some(mode) = entry.get("ipMode") {
            if !matches!(mode.as_str(), Some("VIP" | "Proxy")) {
                causes.push(Cause::not_supported(
                    format!("status.loadBalancer.ingress[{index}].ipMode"),
                    mode,
                    &["Proxy".into(), "VIP".into()],
                ));
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator() -> ServiceAllocator {
        ServiceAllocator::new(vec![
            "10.96.0.0/12".parse().unwrap_or_else(|_| unreachable!()),
            "fd00:10:96::/112"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        ])
    }

    #[test]
    fn load_balancer_gets_defaults_ip_and_node_port() {
        let mut allocator = allocator();
        let mut service = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        let result = allocator.prepare(&mut service, None);
        assert!(result.is_ok(), "{result:?}");
        let spec = &service["spec"];
        assert_eq!(spec["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["ports"][0]["targetPort"], 80);
        assert_eq!(spec["externalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        let ip: IpAddr = spec["clusterIP"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!("10.96.0.0/12"
            .parse::<IpNet>()
            .is_ok_and(|net| net.contains(&ip)));
        let port = spec["ports"][0]["nodePort"].as_u64().unwrap_or(0);
        assert!((30000..=32767).contains(&port));
    }

    #[test]
    fn dual_stack_and_conflicts() {
        let mut allocator = allocator();
        let mut service =
            json!({"spec": {"ipFamilyPolicy": "PreferDualStack", "ports": [{"port": 80}]}});
        assert!(allocator.prepare(&mut service, None).is_ok());
        assert_eq!(
            service["spec"]["clusterIPs"].as_array().map(Vec::len),
            Some(2)
        );
        let taken = service["spec"]["clusterIP"].clone();
        let mut clash = json!({"spec": {"clusterIP": taken, "ports": [{"port": 80}]}});
        let causes = allocator
            .prepare(&mut clash, None)
            .err()
            .unwrap_or_default();
        assert!(
            causes
                .iter()
                .any(|c| c.message.contains("already allocated")),
            "{causes:?}"
        );
        let mut single = ServiceAllocator::new(vec!["10.0.0.0/24"
            .parse()
            .unwrap_or_else(|_| unreachable!())]);
        let mut required =
            json!({"spec": {"ipFamilyPolicy": "RequireDualStack", "ports": [{"port": 80}]}});
        assert!(single.prepare(&mut required, None).is_err());
    }

    #[test]
    fn validation_table() {
        let cases = [
            (
                json!({"spec": {"ports": [{"port": 0}]}}),
                "spec.ports[0].port",
            ),
            (json!({"spec": {"ports": []}}), "spec.ports"),
            (
                json!({"spec": {"ports": [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]}}),
                "spec.ports[1]",
            ),
            (
                json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}}),
                "spec.ports[0].name",
            ),
            (
                json!({"spec": {"ports": [{"port": 80}]}, "status": {"loadBalancer": {"ingress": [{"ip": "nope"}]}}}),
                "status.loadBalancer.ingress[0].ip",
            ),
            (
                json!({"spec": {"ports": [{"port": 80}]}, "status": {"loadBalancer": {"ingress": [{"hostname": "1.2.3.4"}]}}}),
                "status.loadBalancer.ingress[0].hostname",
            ),
        ];
        for (mut service, field) in cases {
            set_defaults(&mut service);
            let causes = validate_spec(&service, None);
            assert!(
                causes.iter().any(|c| c.field == field),
                "{field}: {causes:?}"
            );
        }
    }
}
