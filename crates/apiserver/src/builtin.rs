//! Unknown-field detection for built-in kinds: a round trip through the k8s-openapi types,
//! which drop fields they do not know (reference §6.11, last sentence of (3)).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Option<Value> {
    // Deserialising from `&Value` reads the tree in place (no deep copy of the body).
    let typed = T::deserialize(value).ok()?;
    serde_json::to_value(typed).ok()
}

/// Round-trips an object of a built-in kind; `None` when the kind is unknown here or the
/// object does not decode (validation then reports what is wrong).
fn typed_round_trip(group: &str, kind: &str, value: &Value) -> Option<Value> {
    use k8s_openapi::api::{apps, coordination, core, discovery, events, rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
    match (group, kind) {
        ("", "Service") => round_trip::<core::v1::Service>(value),
        ("", "Endpoints") => round_trip::<core::v1::Endpoints>(value),
        ("", "Secret") => round_trip::<core::v1::Secret>(value),
        ("", "ConfigMap") => round_trip::<core::v1::ConfigMap>(value),
        ("", "Event") => round_trip::<core::v1::Event>(value),
        ("", "Pod") => round_trip::<core::v1::Pod>(value),
        ("", "Node") => round_trip::<core::v1::Node>(value),
        ("", "Namespace") => round_trip::<core::v1::Namespace>(value),
        ("", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>(value),
        ("discovery.k8s.io", "EndpointSlice") => round_trip::<discovery::v1::EndpointSlice>(value),
        ("coordination.k8s.io", "Lease") => round_trip::<coordination::v1::Lease>(value),
        ("apps", "Deployment") => round_trip::<apps::v1::Deployment>(value),
        ("apps", "DaemonSet") => round_trip::<apps::v1::DaemonSet>(value),
        ("rbac.authorization.k8s.io", "Role") => round_trip::<rbac::v1::Role>(value),
        ("rbac.authorization.k8s.io", "RoleBinding") => round_trip::<rbac::v1::RoleBinding>(value),
        ("rbac.authorization.k8s.io", "ClusterRole") => round_trip::<rbac::v1::ClusterRole>(value),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            round_trip::<rbac::v1::ClusterRoleBinding>(value)
        }
        ("events.k8s.io", "Event") => round_trip::<events::v1::Event>(value),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            round_trip::<apiextensions::v1::CustomResourceDefinition>(value)
        }
        _ => None,
    }
}

/// Removes fields the typed form does not know and returns their paths.
pub(crate) fn prune_unknown(group: &str, kind: &str, value: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(typed) = typed_round_trip(group, kind, value) {
        prune_against(value, &typed, "", &mut unknown);
    }
    unknown
}

/// [`prune_unknown`] for an update: top-level fields equal to the stored object's were admitted
/// when it was written, so only the changed ones (with `apiVersion` and `kind`) are round
/// tripped. Each top-level field of a built-in decodes on its own, so the unknown fields found
/// are the same as a round trip of the whole object would find.
pub(crate) fn prune_unknown_changed(
    group: &str,
    kind: &str,
    value: &mut Value,
    old: &Map<String, Value>,
) -> Vec<String> {
    let Some(map) = value.as_object_mut() else {
        return prune_unknown(group, kind, value);
    };
    let changed: Vec<String> = map
        .iter()
        .filter(|(key, field)| {
            !matches!(key.as_str(), "apiVersion" | "kind") && old.get(*key) != Some(*field)
        })
        .map(|(key, _)| key.clone())
        .collect();
    if changed.is_empty() {
        return Vec::new();
    }
    let mut partial = Map::new();
    for key in ["apiVersion", "kind"] {
        if let Some(field) = map.get(key) {
            partial.insert(key.into(), field.clone());
        }
    }
    for key in &changed {
        if let Some(field) = map.remove(key) {
            partial.insert(key.clone(), field);
        }
    }
    let mut partial = Value::Object(partial);
    let unknown = prune_unknown(group, kind, &mut partial);
    if let Value::Object(mut partial) = partial {
        for key in changed {
            // An unknown top-level field was removed from `partial`: it stays out.
            if let Some(field) = partial.remove(&key) {
                map.insert(key, field);
            }
        }
    }
    unknown
}

fn prune_against(value: &mut Value, typed: &Value, path: &str, unknown: &mut Vec<String>) {
    match (value, typed) {
        (Value::Object(map), Value::Object(known)) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match known.get(&key) {
                    Some(known_child) => {
                        if let Some(child) = map.get_mut(&key) {
                            prune_against(child, known_child, &child_path, unknown);
                        }
                    }
                    None => {
                        let is_empty = map
                            .get(&key)
                            .is_none_or(|v| v.is_null() || v == &Value::Object(Default::default()));
                        // A free-form map (labels, data, selector) round-trips whole, so a
                        // missing key here is a field the type does not have, unless it was
                        // null or empty (serialisation skips those).
                        if !is_empty {
                            map.remove(&key);
                            unknown.push(child_path);
                        }
                    }
                }
            }
        }
        (Value::Array(items), Value::Array(known)) => {
            for (index, (item, known_item)) in items.iter_mut().zip(known).enumerate() {
                prune_against(item, known_item, &format!("{path}[{index}]"), unknown);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn service_unknown_fields_are_found() {
        let mut service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"a": "b"}},
            "spec": {"ports": [{"port": 80, "bogus": 1}], "selector": {"app": "web"}, "foo": "bar", "clusterIP": null}});
        let unknown = prune_unknown("", "Service", &mut service);
        assert_eq!(
            unknown,
            vec!["spec.foo".to_string(), "spec.ports[0].bogus".to_string()]
        );
        assert!(service["spec"].get("foo").is_none());
        assert_eq!(service["metadata"]["labels"]["a"], "b");
    }

    #[test]
    fn an_update_round_trips_only_changed_fields_and_finds_the_same_unknowns() {
        let old = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}});
        let cases = [
            // Only status changed, with an unknown field in it.
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}},
                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "bogus": 1}]}}}),
            // Spec changed with an unknown field, metadata gained a label.
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"a": "b"}},
                "spec": {"ports": [{"port": 81, "bogus": 1}], "selector": {"app": "web"}}}),
            // An unknown top-level field.
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}, "extra": {"x": 1}}),
            // Nothing changed.
            old.clone(),
        ];
        let old_map = old.as_object().cloned().unwrap_or_default();
        for case in cases {
            let mut whole = case.clone();
            let mut changed = case.clone();
            let expected = prune_unknown("", "Service", &mut whole);
            let found = prune_unknown_changed("", "Service", &mut changed, &old_map);
            assert_eq!(found, expected, "{case}");
            assert_eq!(changed, whole, "{case}");
        }
    }
}
