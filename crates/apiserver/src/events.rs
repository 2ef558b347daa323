//! Events: one store (core/v1 form), two views (reference §6.10).

use serde_json::{json, Map, Value};

use crate::error::Cause;
use crate::meta::is_qualified_name;

/// (events.k8s.io/v1 field, core/v1 field) renamed between the views.
const RENAMED: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedCount", "count"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
];

/// Stored core/v1 Event → events.k8s.io/v1 view.
pub(crate) fn core_to_events(core: &Value) -> Value {
    let Some(map) = core.as_object() else {
        return core.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let renamed = RENAMED
            .iter()
            .find(|(_, core_name)| core_name == key)
            .map(|(view, _)| *view);
        out.insert(renamed.unwrap_or(key).to_string(), value.clone());
    }
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// events.k8s.io/v1 body → stored core/v1 form.
pub(crate) fn events_to_core(view: &Value) -> Value {
    let Some(map) = view.as_object() else {
        return view.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let renamed = RENAMED
            .iter()
            .find(|(view_name, _)| view_name == key)
            .map(|(_, core)| *core);
        out.insert(renamed.unwrap_or(key).to_string(), value.clone());
    }
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// Validation of an events.k8s.io/v1 write (from Kubernetes' `ValidateEventCreate`/`Update`).
pub(crate) fn validate_events_v1(event: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let text = |field: &str| event.get(field).and_then(Value::as_str).unwrap_or_default();
    if event.get("eventTime").is_none_or(Value::is_null) {
        causes.push(Cause::required("eventTime", ""));
    }
    let controller = text("reportingController");
    if controller.is_empty() {
        causes.push(Cause::required("reportingController", ""));
    } else if !is_qualified_name(controller) {
        causes.push(Cause::invalid(
            "reportingController",
            &json!(controller),
            "must be a qualified name",
        ));
    }
    for (field, max) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        let value = text(field);
        if value.is_empty() {
            causes.push(Cause::required(field, ""));
        } else if value.len() > max {
            causes.push(Cause::too_long(field, max));
        }
    }
    if text("note").len() > 1024 {
        causes.push(Cause::too_long("note", 1024));
    }
    let event_type = text("type");
    if event_type != "Normal" && event_type != "Warning" {
        causes.push(Cause::not_supported(
            "type",
            &json!(event_type),
            &["Normal".into(), "Warning".into()],
        ));
    }
    if let Some(count) = event.get("series").and_then(|s| s.get("count")) {
        if count.as_i64().is_none_or(|c| c < 2) {
            causes.push(Cause::invalid(
                "series.count",
                count,
                "should be at least 2",
            ));
        }
    }
    for deprecated in [
        "deprecatedSource",
        "deprecatedCount",
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
    ] {
        if event
            .get(deprecated)
            .is_some_and(|v| !v.is_null() && v != &json!({}) && v != &json!(0))
        {
            causes.push(Cause::invalid(
                deprecated,
                event.get(deprecated).unwrap_or(&Value::Null),
                "needs to be unset",
            ));
        }
    }
    let namespace = event
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let regarding_namespace = event
        .get("regarding")
        .and_then(|r| r.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let namespace_ok = if regarding_namespace.is_empty() {
        namespace == "default" || namespace == "kube-system"
    } else {
        namespace == regarding_namespace
    };
    if !namespace_ok {
        causes.push(Cause::invalid(
            "metadata.namespace",
            &json!(namespace),
            "does not match event.namespace",
        ));
    }
    if let Some(old) = old {
        for field in [
            "action",
            "reason",
            "type",
            "note",
            "regarding",
            "related",
            "reportingController",
            "reportingInstance",
            "eventTime",
        ] {
            if event.get(field) != old.get(field) {
                causes.push(Cause::invalid(
                    field,
                    event.get(field).unwrap_or(&Value::Null),
                    "field is immutable",
                ));
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_round_trip() {
        let view = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "x"},
            "regarding": {"kind": "Service", "name": "web"}, "note": "hello", "reportingController": "ironlb.io/controller",
            "series": {"count": 2}});
        let core = events_to_core(&view);
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["message"], "hello");
        assert_eq!(core["reportingComponent"], "ironlb.io/controller");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core_to_events(&core), view);
    }

    #[test]
    fn validation_requires_fields() {
        let causes = validate_events_v1(
            &json!({"metadata": {"namespace": "default"}, "type": "Bogus"}),
            None,
        );
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        for field in [
            "eventTime",
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
            "type",
        ] {
            assert!(fields.contains(&field), "{field} in {fields:?}");
        }
    }
}
