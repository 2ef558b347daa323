//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
//! for built-ins (reference §6.3); server-side apply lives in `ssa.rs`.

use serde_json::{Map, Value};

/// Why a patch could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PatchError {
    /// The patch document itself is malformed (400).
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch operation failed (`test` mismatch, missing path) (422).
    #[error("{0}")]
    Failed(String),
}

/// RFC 7386.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// RFC 6902.
pub(crate) fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Array(operations) = patch else {
        return Err(PatchError::Malformed(
            "json patch must be an array of operations".into(),
        ));
    };
    for operation in operations {
        let op = operation
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::Malformed("json patch operation without \"op\"".into()))?;
        let path = operation
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                PatchError::Malformed(format!("json patch {op} operation without \"path\""))
            })?;
        let pointer = parse_pointer(path)?;
        match op {
            "add" => add(target, &pointer, value_of(operation, op)?.clone())?,
            "remove" => {
                remove(target, &pointer)?;
            }
            "replace" => {
                let value = value_of(operation, op)?.clone();
                let slot = resolve_mut(target, &pointer).ok_or_else(|| missing(path))?;
                *slot = value;
            }
            "move" | "copy" => {
                let from = operation
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        PatchError::Malformed(format!("json patch {op} operation without \"from\""))
                    })?;
                let from_pointer = parse_pointer(from)?;
                let value = if op == "move" {
                    remove(target, &from_pointer)?
                } else {
                    resolve(target, &from_pointer)
                        .cloned()
                        .ok_or_else(|| missing(from))?
                };
                add(target, &pointer, value)?;
            }
            "test" => {
                let expected = value_of(operation, op)?;
                let actual = resolve(target, &pointer);
                // kube-rs's finalizer helper tests a missing path against null.
                let matches = match actual {
                    Some(actual) => actual == expected,
                    None => expected.is_null(),
                };
                if !matches {
                    return Err(PatchError::Failed(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => {
                return Err(PatchError::Malformed(format!(
                    "unexpected json patch operation {other:?}"
                )))
            }
        }
    }
    Ok(())
}

fn value_of<'a>(operation: &'a Value, op: &str) -> Result<&'a Value, PatchError> {
    operation.get("value").ok_or_else(|| {
        PatchError::Malformed(format!("json patch {op} operation without \"value\""))
    })
}

fn missing(path: &str) -> PatchError {
    PatchError::Failed(format!("doc is missing path: {path:?}: missing value"))
}

fn parse_pointer(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PatchError::Malformed(format!(
            "json pointer {path:?} must start with '/'"
        )));
    };
    Ok(rest
        .split('/')
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn resolve<'a>(target: &'a Value, pointer: &[String]) -> Option<&'a Value> {
    pointer.iter().try_fold(target, |value, token| match value {
        Value::Object(map) => map.get(token),
        Value::Array(list) => list.get(token.parse::<usize>().ok()?),
        _ => None,
    })
}

fn resolve_mut<'a>(target: &'a mut Value, pointer: &[String]) -> Option<&'a mut Value> {
    pointer.iter().try_fold(target, |value, token| match value {
        Value::Object(map) => map.get_mut(token),
        Value::Array(list) => list.get_mut(token.parse::<usize>().ok()?),
        _ => None,
    })
}

fn add(target: &mut Value, pointer: &[String], value: Value) -> Result<(), PatchError> {
    let Some((last, parent)) = pointer.split_last() else {
        *target = value;
        return Ok(());
    };
    let path = format!("/{}", pointer.join("/"));
    let parent = resolve_mut(target, parent).ok_or_else(|| missing(&path))?;
    match parent {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(list) => {
            let index = if last == "-" {
                list.len()
            } else {
                last.parse::<usize>().map_err(|_| missing(&path))?
            };
            if index > list.len() {
                return Err(missing(&path));
            }
            list.insert(index, value);
            Ok(())
        }
        _ => Err(missing(&path)),
    }
}

fn remove(target: &mut Value, pointer: &[String]) -> Result<Value, PatchError> {
    let path = format!("/{}", pointer.join("/"));
    let Some((last, parent)) = pointer.split_last() else {
        return Err(PatchError::Failed(
            "cannot remove the whole document".into(),
        ));
    };
    let parent = resolve_mut(target, parent).ok_or_else(|| missing(&path))?;
    match parent {
        Value::Object(map) => map.remove(last).ok_or_else(|| missing(&path)),
        Value::Array(list) => {
            let index = last.parse::<usize>().map_err(|_| missing(&path))?;
            if index >= list.len() {
                return Err(missing(&path));
            }
            Ok(list.remove(index))
        }
        _ => Err(missing(&path)),
    }
}

/// How a list at a path merges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListMerge {
    /// Replace the whole list.
    Atomic,
    /// Merge elements by these keys.
    Map(Vec<String>),
    /// Union of primitive values.
    Set,
}

/// The strategic-merge-patch list rules of the built-in kinds (reference §6.3).
pub(crate) fn builtin_list_merge(kind: &str, path: &[&str]) -> ListMerge {
    match (kind, path) {
        (_, ["metadata", "ownerReferences"]) => ListMerge::Map(vec!["uid".into()]),
        (_, ["metadata", "finalizers"]) => ListMerge::Set,
        (_, ["status", "conditions"]) => ListMerge::Map(vec!["type".into()]),
        ("Service", ["spec", "ports"]) => ListMerge::Map(vec!["port".into()]),
        ("Node", ["status", "addresses"]) => ListMerge::Map(vec!["type".into()]),
        ("Pod", ["spec", rest @ ..]) => pod_spec_list_merge(rest),
        ("Deployment" | "DaemonSet", ["spec", "template", "spec", rest @ ..]) => {
            pod_spec_list_merge(rest)
        }
        _ => ListMerge::Atomic,
    }
}

/// List strategies inside a PodSpec (a Pod's `spec`, a workload's `spec.template.spec`).
fn pod_spec_list_merge(path: &[&str]) -> ListMerge {
    match path {
        ["containers" | "initContainers" | "volumes"] => ListMerge::Map(vec!["name".into()]),
        ["containers" | "initContainers", "*", list @ ("env" | "ports" | "volumeMounts")] => {
            let key = match *list {
                "ports" => "containerPort",
                "volumeMounts" => "mountPath",
                _ => "name",
            };
            ListMerge::Map(vec![key.into()])
        }
        _ => ListMerge::Atomic,
    }
}

/// Strategic merge patch, with `rules(path)` naming the list strategy at a path (list
/// elements appear as `*` in the path).
pub(crate) fn strategic_merge(
    target: &mut Value,
    patch: &Value,
    rules: &dyn Fn(&[&str]) -> ListMerge,
) -> Result<(), PatchError> {
    let mut path = Vec::new();
    strategic_object(target, patch, rules, &mut path)
}

fn strategic_object(
    target: &mut Value,
    patch: &Value,
    rules: &dyn Fn(&[&str]) -> ListMerge,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replacement = patch.clone();
        replacement.remove("$patch");
        *target = Value::Object(replacement);
        return Ok(());
    }
    if patch.get("$patch").and_then(Value::as_str) == Some("delete") {
        *target = Value::Null;
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        return Ok(());
    };
    // `$retainKeys`: drop keys not listed (before merging).
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        map.retain(|key, _| keep.contains(&key.as_str()));
    }
    for (key, value) in patch {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(remove)) = (map.get_mut(field), value) {
                list.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if value.is_null() {
            map.remove(key);
            continue;
        }
        path.push(key.clone());
        let slot = map.entry(key.clone()).or_insert(Value::Null);
        match value {
            Value::Object(_) => strategic_object(slot, value, rules, path)?,
            Value::Array(items) => {
                let view: Vec<&str> = path.iter().map(String::as_str).collect();
                let rule = rules(&view);
                merge_list(slot, items, &rule, rules, path)?;
            }
            _ => *slot = value.clone(),
        }
        if slot.is_null() {
            map.remove(key);
        }
        path.pop();
    }
    Ok(())
}

fn merge_list(
    slot: &mut Value,
    items: &[Value],
    rule: &ListMerge,
    rules: &dyn Fn(&[&str]) -> ListMerge,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    match rule {
        ListMerge::Atomic => {
            *slot = Value::Array(
                items
                    .iter()
                    .filter(|item| item.get("$patch").is_none())
                    .cloned()
                    .collect(),
            );
        }
        ListMerge::Set => {
            let mut current = slot.as_array().cloned().unwrap_or_default();
            for item in items {
                if !current.contains(item) {
                    current.push(item.clone());
                }
            }
            *slot = Value::Array(current);
        }
        ListMerge::Map(keys) => {
            let mut current = slot.as_array().cloned().unwrap_or_default();
            let key_of = |item: &Value| -> Vec<Value> {
                keys.iter()
                    .map(|k| item.get(k).cloned().unwrap_or(Value::Null))
                    .collect()
            };
            if items
                .iter()
                .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                *slot = Value::Array(
                    items
                        .iter()
                        .filter(|item| item.get("$patch").is_none())
                        .cloned()
                        .collect(),
                );
                return Ok(());
            }
            for item in items {
                if !item.is_object() {
                    return Err(PatchError::Malformed(format!(
                        "list {} with a merge key holds a non-object",
                        path.join(".")
                    )));
                }
                let key = key_of(item);
                let position = current.iter().position(|existing| key_of(existing) == key);
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(position) = position {
                        current.remove(position);
                    }
                    continue;
                }
                path.push("*".into());
                match position {
                    Some(position) => {
                        if let Some(existing) = current.get_mut(position) {
                            strategic_object(existing, item, rules, path)?;
                        }
                    }
                    None => {
                        let mut fresh = Value::Object(Map::new());
                        strategic_object(&mut fresh, item, rules, path)?;
                        current.push(fresh);
                    }
                }
                path.pop();
            }
            *slot = Value::Array(current);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_rfc7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn json_patch_operations() {
        let mut target = json!({"metadata": {}});
        let ok = json_patch(
            &mut target,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": ["a"]},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": "b"},
                    {"op": "copy", "from": "/metadata/finalizers", "path": "/x"},
                    {"op": "move", "from": "/x", "path": "/y"},
                    {"op": "replace", "path": "/y/0", "value": "c"},
                    {"op": "remove", "path": "/metadata/finalizers/0"}]),
        );
        assert_eq!(ok, Ok(()));
        assert_eq!(
            target,
            json!({"metadata": {"finalizers": ["b"]}, "y": ["c", "b"]})
        );
        let failed = json_patch(
            &mut target,
            &json!([{"op": "test", "path": "/y/0", "value": "nope"}]),
        );
        assert!(matches!(failed, Err(PatchError::Failed(_))));
        let malformed = json_patch(&mut target, &json!({"op": "add"}));
        assert!(matches!(malformed, Err(PatchError::Malformed(_))));
    }

    #[test]
    fn strategic_merges_ports_by_key() {
        let mut service = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443}]}});
        let patch = json!({"spec": {"$setElementOrder/ports": [{"port": 80}], "ports": [{"port": 80, "targetPort": 9090}]}, "metadata": {"finalizers": ["x"]}});
        let rules = |path: &[&str]| builtin_list_merge("Service", path);
        assert_eq!(strategic_merge(&mut service, &patch, &rules), Ok(()));
        assert_eq!(
            service["spec"]["ports"][0],
            json!({"port": 80, "targetPort": 9090, "protocol": "TCP"})
        );
        assert_eq!(service["spec"]["ports"][1], json!({"port": 443}));
        let delete = json!({"spec": {"ports": [{"port": 443, "$patch": "delete"}]}});
        assert_eq!(strategic_merge(&mut service, &delete, &rules), Ok(()));
        assert_eq!(service["spec"]["ports"].as_array().map(Vec::len), Some(1));
    }
}
