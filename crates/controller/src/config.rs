//! The watched configuration objects → [`ControllerConfig`].

use ironlb_alloc::{parse_address_entry, Pool, PoolName};
use serde_json::Value;

use crate::core::ConfigUpdate;
use crate::ipam::ControllerConfig;
use crate::run::{MetallbKind, RawConfig};

/// Parses the pools of `raw`; every problem is reported as `Kind/name: field: message`.
pub fn parse(raw: &RawConfig) -> ConfigUpdate<ControllerConfig> {
    let mut errors = Vec::new();
    let mut pools = Vec::new();
    for object in raw
        .metallb
        .get(&MetallbKind::IpAddressPool)
        .into_iter()
        .flatten()
    {
        let name = object.metadata.name.clone().unwrap_or_default();
        let spec = object.data.get("spec").cloned().unwrap_or(Value::Null);
        let mut cidrs = Vec::new();
        let addresses = spec.get("addresses").and_then(Value::as_array);
        for entry in addresses.into_iter().flatten() {
            let Some(text) = entry.as_str() else {
                errors.push(format!(
                    "IPAddressPool/{name}: spec.addresses: not a string"
                ));
                continue;
            };
            match parse_address_entry(text) {
                Ok(parsed) => cidrs.extend(parsed),
                Err(error) => errors.push(format!("IPAddressPool/{name}: spec.addresses: {error}")),
            }
        }
        let auto_assign = spec
            .get("autoAssign")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let avoid_buggy_ips = spec
            .get("avoidBuggyIPs")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        match Pool::new(
            PoolName(name.clone()),
            cidrs,
            auto_assign,
            avoid_buggy_ips,
            None,
        ) {
            Ok(pool) => pools.push(pool),
            Err(error) => errors.push(format!("IPAddressPool/{name}: spec.addresses: {error}")),
        }
    }
    ConfigUpdate {
        result: if errors.is_empty() {
            Ok(ControllerConfig { pools })
        } else {
            Err(errors)
        },
        legacy_configmap: None,
    }
}
