//! The watched configuration objects → `ironlb_api`'s [`ConfigInputs`] → [`ControllerConfig`].
//!
//! The metallb.io objects are watched untyped ([`DynamicObject`]) so that one object that does
//! not decode can never break a watch; it is decoded here, and a failure becomes a configuration
//! problem naming the object (`Kind/name: <root>: …`), reported like any other. The legacy
//! `config` ConfigMap is converted by `ironlb_api::legacy` and used only when no metallb.io
//! object exists (CRs win, `decisions.md`).

use ironlb_api::config::{Config, ConfigError, ConfigInputs};
use ironlb_api::legacy;
use kube::api::DynamicObject;
use serde::de::DeserializeOwned;

use crate::core::{ConfigUpdate, LegacyNotice};
use crate::ipam::ControllerConfig;
use crate::run::{MetallbKind, RawConfig};

/// Decodes every object of `kind` into `T`, recording the ones that do not decode.
fn decode<T: DeserializeOwned>(
    raw: &RawConfig,
    kind: MetallbKind,
    problems: &mut Vec<ConfigError>,
) -> Vec<T> {
    let mut decoded = Vec::new();
    for object in raw.metallb.get(&kind).into_iter().flatten() {
        match decode_one(object) {
            Ok(value) => decoded.push(value),
            Err(error) => problems.push(ConfigError::new(
                kind.resource().kind,
                object
                    .metadata
                    .name
                    .clone()
                    .unwrap_or_else(|| "<unnamed>".into()),
                "<root>",
                format!("cannot decode: {error}"),
            )),
        }
    }
    decoded
}

fn decode_one<T: DeserializeOwned>(object: &DynamicObject) -> Result<T, serde_json::Error> {
    serde_json::to_value(object).and_then(serde_json::from_value)
}

/// Builds the inputs of [`Config::parse`] from the watched objects, with the legacy ConfigMap
/// folded in when there is no metallb.io object.
pub fn inputs(raw: &RawConfig) -> (ConfigInputs, Option<LegacyNotice>) {
    let mut problems = Vec::new();
    let mut inputs = ConfigInputs {
        namespace: raw.namespace.clone(),
        pools: decode(raw, MetallbKind::IpAddressPool, &mut problems),
        l2_advertisements: decode(raw, MetallbKind::L2Advertisement, &mut problems),
        bgp_advertisements: decode(raw, MetallbKind::BgpAdvertisement, &mut problems),
        bgp_peers: decode(raw, MetallbKind::BgpPeer, &mut problems),
        bfd_profiles: decode(raw, MetallbKind::BfdProfile, &mut problems),
        communities: decode(raw, MetallbKind::Community, &mut problems),
        namespaces: raw.namespaces.clone(),
        nodes: raw.nodes.clone(),
        secrets: raw.secrets.clone(),
        problems: Vec::new(),
    };
    let legacy_map = raw.config_maps.iter().find(|map| {
        map.metadata.name.as_deref() == Some(legacy::LEGACY_CONFIG_MAP_NAME)
            && map
                .data
                .as_ref()
                .is_some_and(|data| data.contains_key(legacy::LEGACY_CONFIG_MAP_NAME))
    });
    let mut notice = None;
    match legacy_map {
        Some(map) if inputs.has_no_metallb_objects() && problems.is_empty() => {
            match legacy::convert_config_map(map) {
                Ok(resources) => {
                    let mut replacement_objects = Vec::new();
                    let named = |kind: &str, name: &Option<String>| {
                        format!("{kind}/{}", name.as_deref().unwrap_or(""))
                    };
                    replacement_objects.extend(
                        resources
                            .pools
                            .iter()
                            .map(|o| named("IPAddressPool", &o.metadata.name)),
                    );
                    replacement_objects.extend(
                        resources
                            .l2_advertisements
                            .iter()
                            .map(|o| named("L2Advertisement", &o.metadata.name)),
                    );
                    replacement_objects.extend(
                        resources
                            .bgp_advertisements
                            .iter()
                            .map(|o| named("BGPAdvertisement", &o.metadata.name)),
                    );
                    replacement_objects.extend(
                        resources
                            .bgp_peers
                            .iter()
                            .map(|o| named("BGPPeer", &o.metadata.name)),
                    );
                    replacement_objects.extend(
                        resources
                            .bfd_profiles
                            .iter()
                            .map(|o| named("BFDProfile", &o.metadata.name)),
                    );
                    replacement_objects.extend(
                        resources
                            .communities
                            .iter()
                            .map(|o| named("Community", &o.metadata.name)),
                    );
                    resources.extend_inputs(&mut inputs);
                    notice = Some(LegacyNotice {
                        namespace: raw.namespace.clone(),
                        name: legacy::LEGACY_CONFIG_MAP_NAME.to_owned(),
                        replacement_objects,
                    });
                }
                Err(error) => problems.push(error),
            }
        }
        Some(_) => {
            tracing::warn!(
                op = "setConfig",
                "legacy config ConfigMap ignored: metallb.io objects exist and win"
            );
        }
        None => {}
    }
    inputs.problems = problems;
    (inputs, notice)
}

/// Parses the watched objects; every problem is reported as `Kind/name: field: message`.
pub fn parse(raw: &RawConfig) -> ConfigUpdate<ControllerConfig> {
    let (inputs, legacy_configmap) = inputs(raw);
    let result = match Config::parse(&inputs) {
        Ok(config) => {
            for warning in config.warnings() {
                tracing::debug!(op = "setConfig", %warning, "configuration warning");
            }
            Ok(ControllerConfig {
                pools: config.pools().values().cloned().collect(),
            })
        }
        Err(errors) => Err(errors.errors().iter().map(ToString::to_string).collect()),
    };
    ConfigUpdate {
        result,
        legacy_configmap,
    }
}
