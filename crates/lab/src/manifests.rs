//! The manifests a lab applies, as a user following MetalLB's tutorials would write them: an
//! `IPAddressPool` with an `a-b` range and an `L2Advertisement`; for BGP a `BGPPeer` (the lab's
//! router) and a `BGPAdvertisement`; and `type: LoadBalancer` Services whose EndpointSlices
//! point at the backends on the nodes.

use std::fmt::Write as _;

use crate::frr::{NODE_ASN, ROUTER_ASN};

/// The layer 2 pool's IPv4 range (inside the LAN, as in the tutorial).
pub const L2_RANGE_V4: &str = "192.168.1.240-192.168.1.250";
/// The layer 2 pool's IPv6 range.
pub const L2_RANGE_V6: &str = "fd00:1::240-fd00:1::250";
/// The BGP pool (outside the LAN: only the router's routes reach it).
pub const BGP_POOL_V4: &str = "192.168.10.10-192.168.10.50";
/// The prefix the client routes through the router (it holds the BGP pool).
pub const BGP_CLIENT_ROUTE_V4: &str = "192.168.10.0/24";
/// The BGP pool, IPv6.
pub const BGP_POOL_V6: &str = "fd00:10::10-fd00:10::50";
/// The IPv6 prefix the client routes through the router.
pub const BGP_CLIENT_ROUTE_V6: &str = "fd00:10::/64";
/// The HTTP port of every Service (the backends listen on it).
pub const HTTP_PORT: u16 = 80;
/// The UDP port of every Service (the outage probe's).
pub const UDP_PORT: u16 = 7777;

/// The tutorial's layer 2 configuration: pool `first-pool` (IPv4 range, plus the IPv6 range
/// when `ipv6`) and `L2Advertisement` `example`.
pub fn l2_config(ipv6: bool) -> String {
    let mut addresses = format!("  - {L2_RANGE_V4}\n");
    if ipv6 {
        let _ = writeln!(addresses, "  - {L2_RANGE_V6}");
    }
    format!(
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: metallb-system
spec:
  addresses:
{addresses}---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: example
  namespace: metallb-system
spec:
  ipAddressPools:
  - first-pool
"
    )
}

/// The tutorial's BGP configuration: a `BGPPeer` per router address (`peer_addresses`), pool
/// `bgp-pool` and a `BGPAdvertisement` of /32 (and /128) routes.
pub fn bgp_config(peer_address: &str, bfd: bool) -> String {
    bgp_config_with(peer_address, bfd, false)
}

/// As [`bgp_config`], with `enableGracefulRestart` on the peer when `graceful_restart`.
pub fn bgp_config_with(peer_address: &str, bfd: bool, graceful_restart: bool) -> String {
    bgp_config_peers(&[("router", peer_address)], bfd, graceful_restart)
}

/// The BGP configuration with one `BGPPeer` per (name, address) of `peers`.
pub fn bgp_config_peers(peers: &[(&str, &str)], bfd: bool, graceful_restart: bool) -> String {
    let bfd_profile = if bfd {
        "apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata:
  name: fast
  namespace: metallb-system
spec:
  receiveInterval: 300
  transmitInterval: 300
  detectMultiplier: 3
---
"
    } else {
        ""
    };
    let mut peer_bfd = if bfd { "  bfdProfile: fast\n" } else { "" }.to_owned();
    if graceful_restart {
        peer_bfd.push_str("  enableGracefulRestart: true\n");
    }
    let mut peer_objects = String::new();
    for (name, address) in peers {
        let _ = write!(
            peer_objects,
            "apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata:
  name: {name}
  namespace: metallb-system
spec:
  myASN: {NODE_ASN}
  peerASN: {ROUTER_ASN}
  peerAddress: {address}
  holdTime: 9s
{peer_bfd}---
"
        );
    }
    format!(
        "{peer_objects}{bfd_profile}apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: bgp-pool
  namespace: metallb-system
spec:
  addresses:
  - {BGP_POOL_V4}
  - {BGP_POOL_V6}
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: local
  namespace: metallb-system
spec:
  ipAddressPools:
  - bgp-pool
"
    )
}

/// IP families of a Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// A `type: LoadBalancer` Service without a selector (the lab writes its EndpointSlices).
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// Its name (namespace `default`).
    pub name: String,
    /// Its family.
    pub family: Family,
    /// `externalTrafficPolicy: Local` instead of `Cluster`.
    pub local: bool,
    /// Annotations (`metallb.io/address-pool`, `metallb.io/allow-shared-ip` …).
    pub annotations: Vec<(String, String)>,
    /// Ports: (name, port, protocol).
    pub ports: Vec<(String, u16, String)>,
}

impl ServiceSpec {
    /// An IPv4 Service `name` with the HTTP and UDP ports, ETP Cluster.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            family: Family::V4,
            local: false,
            annotations: Vec::new(),
            ports: vec![
                ("http".to_owned(), HTTP_PORT, "TCP".to_owned()),
                ("probe".to_owned(), UDP_PORT, "UDP".to_owned()),
            ],
        }
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The Service's YAML.
    pub fn yaml(&self) -> String {
        let mut annotations = String::new();
        if !self.annotations.is_empty() {
            annotations.push_str("  annotations:\n");
            for (key, value) in &self.annotations {
                let _ = writeln!(annotations, "    {key}: {value:?}");
            }
        }
        let family = match self.family {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        };
        let policy = if self.local { "Local" } else { "Cluster" };
        let mut ports = String::new();
        for (name, port, protocol) in &self.ports {
            let _ = write!(
                ports,
                "  - name: {name}\n    port: {port}\n    protocol: {protocol}\n    targetPort: {port}\n"
            );
        }
        format!(
            "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
{annotations}spec:
  type: LoadBalancer
  externalTrafficPolicy: {policy}
  ipFamilyPolicy: SingleStack
  ipFamilies: [{family}]
  ports:
{ports}",
            name = self.name
        )
    }

    /// The (name, port, protocol) triples for an EndpointSlice.
    pub fn slice_ports(&self) -> Vec<(&str, u16, &str)> {
        self.ports
            .iter()
            .map(|(name, port, protocol)| (name.as_str(), *port, protocol.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_yaml_carries_policy_family_annotations_and_ports() {
        let mut spec = ServiceSpec::new("web").annotation("metallb.io/allow-shared-ip", "key");
        spec.local = true;
        spec.family = Family::V6;
        let yaml = spec.yaml();
        for want in [
            "name: web",
            "externalTrafficPolicy: Local",
            "ipFamilies: [IPv6]",
            "metallb.io/allow-shared-ip: \"key\"",
            "port: 80\n    protocol: TCP",
            "port: 7777\n    protocol: UDP",
        ] {
            assert!(yaml.contains(want), "{want} in {yaml}");
        }
    }

    #[test]
    fn bgp_config_documents_are_separated() {
        let text = bgp_config_peers(&[("a", "192.168.1.1"), ("b", "fd00:1::1")], true, true);
        let kinds: Vec<&str> = text
            .split("---\n")
            .map(|doc| {
                doc.lines()
                    .find_map(|line| line.strip_prefix("kind: "))
                    .unwrap_or("")
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "BGPPeer",
                "BGPPeer",
                "BFDProfile",
                "IPAddressPool",
                "BGPAdvertisement"
            ]
        );
        assert_eq!(text.matches("enableGracefulRestart: true").count(), 2);
        assert_eq!(text.matches("bfdProfile: fast").count(), 2);
    }

    #[test]
    fn l2_config_has_the_ranges_asked_for() {
        assert!(l2_config(false).contains(L2_RANGE_V4));
        assert!(!l2_config(false).contains(L2_RANGE_V6));
        assert!(l2_config(true).contains(L2_RANGE_V6));
    }
}
