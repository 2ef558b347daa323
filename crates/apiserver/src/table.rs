//! `meta.k8s.io/v1` Table and PartialObjectMetadata renderings (reference §4 "Table").

use serde_json::{json, Value};

use crate::meta::{human_duration, meta_str, now_secs, parse_rfc3339};
use crate::registry::{ResourceInfo, Strategy};

/// A metadata-only view of an object.
pub(crate) fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A list of metadata-only views.
pub(crate) fn partial_metadata_list(objects: &[Value], list_metadata: Value) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "items": objects.iter().map(partial_metadata).collect::<Vec<_>>(),
    })
}

struct Column {
    name: String,
    column_type: String,
    format: String,
    description: String,
    priority: i64,
}

fn column(name: &str, column_type: &str, format: &str, priority: i64, description: &str) -> Column {
    Column {
        name: name.into(),
        column_type: column_type.into(),
        format: format.into(),
        description: description.into(),
        priority,
    }
}

fn columns(info: &ResourceInfo) -> Vec<Column> {
    let name = column(
        "Name",
        "string",
        "name",
        0,
        "Name must be unique within a namespace.",
    );
    let age = column("Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.");
    match info.strategy {
        Strategy::Service => vec![
            name,
            column("Type", "string", "", 0, "The type of service."),
            column(
                "Cluster-IP",
                "string",
                "",
                0,
                "The cluster IP of the service.",
            ),
            column(
                "External-IP",
                "string",
                "",
                0,
                "The external IPs of the service.",
            ),
            column("Port(s)", "string", "", 0, "The ports of the service."),
            age,
            column("Selector", "string", "", 1, "The selector of the service."),
        ],
        Strategy::Namespace => vec![
            name,
            column("Status", "string", "", 0, "The status of the namespace."),
            age,
        ],
        Strategy::Crd => vec![
            name,
            column("Created At", "date", "", 0, "The creation time."),
        ],
        Strategy::Custom => {
            let printer = info
                .custom
                .as_ref()
                .map(|c| c.printer_columns.as_slice())
                .unwrap_or_default();
            let mut result = vec![name];
            if printer.is_empty() {
                result.push(age);
            }
            for definition in printer {
                let text = |field: &str| {
                    definition
                        .get(field)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                };
                result.push(Column {
                    name: text("name").to_string(),
                    column_type: text("type").to_string(),
                    format: text("format").to_string(),
                    description: text("description").to_string(),
                    priority: definition
                        .get("priority")
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                });
            }
            result
        }
        _ => vec![name, age],
    }
}

/// The cells of one object's row.
fn cells(info: &ResourceInfo, object: &Value) -> Vec<Value> {
    let name = json!(meta_str(object, "name").unwrap_or_default());
    let age = json!(age_of(meta_str(object, "creationTimestamp")));
    match info.strategy {
        Strategy::Service => service_cells(object, name, age),
        Strategy::Namespace => vec![
            name,
            json!(object
                .get("status")
                .and_then(|s| s.get("phase"))
                .and_then(Value::as_str)
                .unwrap_or("Active")),
            age,
        ],
        Strategy::Crd => vec![
            name,
            json!(meta_str(object, "creationTimestamp").unwrap_or_default()),
        ],
        Strategy::Custom => {
            let printer = info
                .custom
                .as_ref()
                .map(|c| c.printer_columns.as_slice())
                .unwrap_or_default();
            let mut row = vec![name];
            if printer.is_empty() {
                row.push(age);
            }
            for definition in printer {
                let path = definition
                    .get("jsonPath")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let value = json_path(object, path);
                let kind = definition
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("string");
                row.push(match (kind, value) {
                    ("date", Some(Value::String(text))) => json!(age_of(Some(text))),
                    (_, Some(value @ (Value::Bool(_) | Value::Number(_) | Value::String(_)))) => {
                        value.clone()
                    }
                    (_, Some(other)) => json!(other.to_string()),
                    (_, None) => Value::Null,
                });
            }
            row
        }
        _ => vec![name, age],
    }
}

fn service_cells(object: &Value, name: Value, age: Value) -> Vec<Value> {
    let spec = object.get("spec").cloned().unwrap_or(Value::Null);
    let text = |field: &str| {
        spec.get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let service_type = text("type");
    let cluster_ip = match text("clusterIP") {
        ip if ip.is_empty() => "<none>".to_string(),
        ip => ip,
    };
    let ingress: Vec<String> = object
        .get("status")
        .and_then(|s| s.get("loadBalancer"))
        .and_then(|l| l.get("ingress"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            entry
                .get("ip")
                .or_else(|| entry.get("hostname"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let external_ips: Vec<String> = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.as_str().map(str::to_string))
        .collect();
    let external = match service_type.as_str() {
        "ExternalName" => text("externalName"),
        "LoadBalancer" => {
            let mut all = ingress.clone();
            all.extend(external_ips.clone());
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        _ if !external_ips.is_empty() => external_ips.join(","),
        _ => "<none>".to_string(),
    };
    let ports: Vec<String> = spec
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|port| {
            let number = port.get("port").map(Value::to_string).unwrap_or_default();
            let protocol = port
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP");
            match port.get("nodePort").and_then(Value::as_u64) {
                Some(node_port) => format!("{number}:{node_port}/{protocol}"),
                None => format!("{number}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    let selector: Vec<String> = spec
        .get("selector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    let selector = if selector.is_empty() {
        "<none>".to_string()
    } else {
        selector.join(",")
    };
    vec![
        name,
        json!(service_type),
        json!(cluster_ip),
        json!(external),
        json!(ports),
        age,
        json!(selector),
    ]
}

fn age_of(timestamp: Option<&str>) -> String {
    match timestamp.and_then(parse_rfc3339) {
        Some(created) => human_duration(now_secs() - created),
        None => "<unknown>".to_string(),
    }
}

/// The small JSONPath subset printer columns use: `.spec.a.b`, `.spec.list[0].x`.
pub(crate) fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current = object;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (key, indexes) = match segment.find('[') {
            Some(position) => (&segment[..position], &segment[position..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            current = current.get(key)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let index: usize = index.trim_end_matches(']').parse().ok()?;
            current = current.get(index)?;
        }
    }
    Some(current)
}

/// A Table of the given objects.
pub(crate) fn table(info: &ResourceInfo, objects: &[Value], list_metadata: Value) -> Value {
    let definitions: Vec<Value> = columns(info)
        .into_iter()
        .map(|c| json!({"name": c.name, "type": c.column_type, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| json!({"cells": cells(info, object), "object": partial_metadata(object)}))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn service_row() {
        let registry = Registry::build(&[], 0);
        let Some(info) = registry.get("", "v1", "services") else {
            panic!("services not served")
        };
        let service = json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 31234, "protocol": "TCP"}], "selector": {"app": "web"}},
            "status": {"loadBalancer": {}}});
        let table = table(&info, std::slice::from_ref(&service), json!({}));
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[1], "LoadBalancer");
        assert_eq!(cells[3], "<pending>");
        assert_eq!(cells[4], "80:31234/TCP");
        assert_eq!(cells[6], "app=web");
        assert_eq!(table["columnDefinitions"][6]["priority"], 1);
        let mut assigned = service;
        assigned["status"]["loadBalancer"]["ingress"] =
            json!([{"ip": "192.0.2.1"}, {"ip": "192.0.2.2"}]);
        let table = super::table(&info, &[assigned], json!({}));
        assert_eq!(table["rows"][0]["cells"][3], "192.0.2.1,192.0.2.2");
    }

    #[test]
    fn json_path_subset() {
        let object = json!({"spec": {"list": [{"x": 1}], "flag": true}});
        assert_eq!(json_path(&object, ".spec.list[0].x"), Some(&json!(1)));
        assert_eq!(json_path(&object, ".spec.flag"), Some(&json!(true)));
        assert_eq!(json_path(&object, ".spec.missing"), None);
    }
}
