//! Structural OpenAPI v3 schemas of CRDs: pruning, defaulting and validation of custom
//! resources, and the structural check at CRD registration (reference §6.11).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::error::Cause;
use crate::meta::parse_rfc3339;
use crate::patch::ListMerge;

/// Removes fields the schema does not know; returns their paths (`spec.foo`).
pub(crate) fn prune(object: &mut Value, schema: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Value::Object(map) = object {
        let properties = schema.get("properties").and_then(Value::as_object);
        let preserve = preserves_unknown(schema);
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match properties.and_then(|p| p.get(&key)) {
                Some(child_schema) => {
                    if let Some(child) = map.get_mut(&key) {
                        prune_value(child, child_schema, &key, &mut unknown);
                    }
                }
                None if preserve => {}
                None => {
                    map.remove(&key);
                    unknown.push(key);
                }
            }
        }
    }
    unknown
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn prune_value(value: &mut Value, schema: &Value, path: &str, unknown: &mut Vec<String>) {
    if schema
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let preserve = preserves_unknown(schema)
                || schema.get("additionalProperties") == Some(&json!(true));
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child_path = format!("{path}.{key}");
                let child_schema = properties.and_then(|p| p.get(&key)).or(additional);
                match child_schema {
                    Some(child_schema) => {
                        if let Some(child) = map.get_mut(&key) {
                            prune_value(child, child_schema, &child_path, unknown);
                        }
                    }
                    None if preserve
                        || (properties.is_none()
                            && additional.is_none()
                            && schema.get("type").is_none()) => {}
                    None => {
                        map.remove(&key);
                        unknown.push(child_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    prune_value(item, item_schema, &format!("{path}[{index}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

/// Applies `default:` values where fields are absent (only under present parents).
pub(crate) fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, child_schema) in properties {
                    if matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
                        && schema.get("x-kubernetes-embedded-resource").is_none()
                        && map.contains_key("metadata")
                    {
                        continue;
                    }
                    if !map.contains_key(key) {
                        if let Some(default) = child_schema.get("default") {
                            map.insert(key.clone(), default.clone());
                        }
                    }
                    if let Some(child) = map.get_mut(key) {
                        apply_defaults(child, child_schema);
                    }
                }
            }
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    apply_defaults(child, additional);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

/// Validates a whole custom resource against its version's schema (skipping `metadata`,
/// `apiVersion`, `kind` at the root).
pub(crate) fn validate(object: &Value, schema: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(map) = object.as_object() else {
        causes.push(Cause::invalid("", object, "must be an object"));
        return causes;
    };
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (key, child_schema) in properties {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(child) = map.get(key) {
                validate_value(child, child_schema, key, &mut causes);
            }
        }
    }
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(required) = required.as_str() {
            if !map.contains_key(required) {
                causes.push(Cause::required(required, ""));
            }
        }
    }
    causes
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn validate_value(value: &Value, schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if schema.get("type").is_some() {
            let expected = schema
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            causes.push(Cause::invalid(
                path,
                &json!("null"),
                format!("{path} in body must be of type {expected}: \"null\""),
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    let actual = type_name(value);
    if int_or_string {
        if !matches!(actual, "integer" | "string") {
            causes.push(Cause::invalid(
                path,
                &json!(actual),
                format!("{path} in body must be of type integer-or-string: \"{actual}\""),
            ));
            return;
        }
    } else if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let ok = actual == expected || (expected == "number" && actual == "integer");
        if !ok {
            causes.push(Cause::invalid(
                path,
                &json!(actual),
                format!("{path} in body must be of type {expected}: \"{actual}\""),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let names: Vec<String> = allowed
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect();
            causes.push(Cause::not_supported(path, value, &names));
        }
    }
    match value {
        Value::String(text) => validate_string(text, value, schema, path, causes),
        Value::Number(number) => {
            let number = number.as_f64().unwrap_or(0.0);
            if let Some(minimum) = schema.get("minimum").and_then(Value::as_f64) {
                let exclusive =
                    schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
                if number < minimum || (exclusive && number <= minimum) {
                    let relation = if exclusive {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    causes.push(Cause::invalid(
                        path,
                        value,
                        format!(
                            "{path} in body should be {relation} {}",
                            render_number(minimum)
                        ),
                    ));
                }
            }
            if let Some(maximum) = schema.get("maximum").and_then(Value::as_f64) {
                let exclusive =
                    schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
                if number > maximum || (exclusive && number >= maximum) {
                    let relation = if exclusive {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    causes.push(Cause::invalid(
                        path,
                        value,
                        format!(
                            "{path} in body should be {relation} {}",
                            render_number(maximum)
                        ),
                    ));
                }
            }
            match schema.get("format").and_then(Value::as_str) {
                Some("int32") if !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&number) => {
                    causes.push(Cause::invalid(
                        path,
                        value,
                        format!("{path} in body must be of type int32"),
                    ));
                }
                _ => {}
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    causes.push(Cause::invalid(
                        path,
                        value,
                        format!("{path} in body should have at least {min} items"),
                    ));
                }
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if (items.len() as u64) > max {
                    causes.push(Cause::too_many(path, max));
                }
            }
            match list_merge(schema) {
                ListMerge::Set => {
                    let mut seen = Vec::new();
                    for (index, item) in items.iter().enumerate() {
                        if seen.contains(&item) {
                            causes.push(Cause::duplicate(format!("{path}[{index}]"), item));
                        }
                        seen.push(item);
                    }
                }
                ListMerge::Map(keys) => {
                    let mut seen = BTreeSet::new();
                    for (index, item) in items.iter().enumerate() {
                        let key: Vec<String> = keys
                            .iter()
                            .map(|k| item.get(k).map(Value::to_string).unwrap_or_default())
                            .collect();
                        if !seen.insert(key) {
                            causes.push(Cause::duplicate(format!("{path}[{index}]"), item));
                        }
                    }
                }
                ListMerge::Atomic => {}
            }
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    validate_value(item, item_schema, &format!("{path}[{index}]"), causes);
                }
            }
        }
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, child_schema) in properties {
                    if let Some(child) = map.get(key) {
                        validate_value(child, child_schema, &format!("{path}.{key}"), causes);
                    }
                }
            }
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (key, child) in map {
                    validate_value(child, additional, &format!("{path}.{key}"), causes);
                }
            }
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(required) = required.as_str() {
                    if !map.contains_key(required) {
                        causes.push(Cause::required(format!("{path}.{required}"), ""));
                    }
                }
            }
            if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
                if (map.len() as u64) < min {
                    causes.push(Cause::invalid(
                        path,
                        value,
                        format!("{path} in body should have at least {min} properties"),
                    ));
                }
            }
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
                if (map.len() as u64) > max {
                    causes.push(Cause::invalid(
                        path,
                        value,
                        format!("{path} in body should have at most {max} properties"),
                    ));
                }
            }
        }
        _ => {}
    }
}

fn render_number(number: f64) -> String {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        format!("{}", number as i64)
    } else {
        number.to_string()
    }
}

fn validate_string(text: &str, value: &Value, schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    let length = text.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        if length < min {
            causes.push(Cause::invalid(
                path,
                value,
                format!("{path} in body should be at least {min} chars long"),
            ));
        }
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        if length > max {
            causes.push(Cause::too_long_chars(path, max));
        }
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(regex) if !regex.is_match(text) => {
                causes.push(Cause::invalid(
                    path,
                    value,
                    format!("{path} in body should match '{pattern}'"),
                ));
            }
            Ok(_) => {}
            Err(_) => causes.push(Cause::invalid(
                path,
                value,
                format!("the schema pattern '{pattern}' does not compile"),
            )),
        }
    }
    let format_ok = match schema.get("format").and_then(Value::as_str) {
        Some("date-time") => parse_rfc3339(text).is_some(),
        Some("ipv4") => text.parse::<std::net::Ipv4Addr>().is_ok(),
        Some("ipv6") => text.parse::<std::net::Ipv6Addr>().is_ok(),
        Some("cidr") => text.parse::<ipnet::IpNet>().is_ok(),
        Some("byte") => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .is_ok()
        }
        Some("date") => text.len() == 10 && parse_rfc3339(&format!("{text}T00:00:00Z")).is_some(),
        Some("duration") => parse_go_duration(text).is_some(),
        _ => true,
    };
    if !format_ok {
        let format = schema
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or_default();
        causes.push(Cause::invalid(
            path,
            value,
            format!("{path} in body must be of type {format}: {value}"),
        ));
    }
}

/// Go's `time.ParseDuration` subset: `1h2m3.5s`, `300ms`, `0`; returns milliseconds.
pub(crate) fn parse_go_duration(text: &str) -> Option<f64> {
    if text == "0" {
        return Some(0.0);
    }
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if digits == 0 {
            return None;
        }
        let number: f64 = rest.get(..digits)?.parse().ok()?;
        rest = rest.get(digits..)?;
        let unit_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic() || *b == 0xc2 || *b == 0xb5)
            .count();
        let unit = rest.get(..unit_len)?;
        rest = rest.get(unit_len..)?;
        let factor = match unit {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return None,
        };
        total += number * factor;
    }
    Some(if negative { -total } else { total })
}

/// The list merge strategy a schema node declares.
pub(crate) fn list_merge(schema: &Value) -> ListMerge {
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListMerge::Set,
        Some("map") => ListMerge::Map(
            schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => ListMerge::Atomic,
    }
}

/// The schema node at a path of property names (`*` for list items).
pub(crate) fn schema_at<'a>(schema: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(schema, |node, key| {
        if *key == "*" {
            node.get("items")
        } else {
            node.get("properties")
                .and_then(|p| p.get(*key))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))
        }
    })
}

/// Structural-schema check at CRD registration: every specified field has a type, the root
/// is an object.
pub(crate) fn check_structural(schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    if !schema.is_object() {
        causes.push(Cause::required(path, "schemas are required"));
        return;
    }
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        causes.push(Cause::invalid(
            format!("{path}.type"),
            schema.get("type").unwrap_or(&Value::Null),
            "must be object at the root",
        ));
    }
    check_node(schema, path, causes);
}

fn check_node(schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    const TYPES: [&str; 6] = ["object", "array", "string", "integer", "number", "boolean"];
    let has_type = schema.get("type").and_then(Value::as_str);
    let special = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
        || preserves_unknown(schema);
    match has_type {
        Some(kind) if !TYPES.contains(&kind) => {
            causes.push(Cause::not_supported(
                format!("{path}.type"),
                &json!(kind),
                &TYPES.map(String::from),
            ));
        }
        None if !special => {
            causes.push(Cause::required(
                format!("{path}.type"),
                "must not be empty for specified object fields",
            ));
        }
        _ => {}
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (key, child) in properties {
            check_node(child, &format!("{path}.properties[{key}]"), causes);
        }
    }
    if let Some(items) = schema.get("items") {
        check_node(items, &format!("{path}.items"), causes);
    } else if has_type == Some("array") {
        causes.push(Cause::required(
            format!("{path}.items"),
            "must be specified",
        ));
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        check_node(additional, &format!("{path}.additionalProperties"), causes);
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        if regex::Regex::new(pattern).is_err() {
            causes.push(Cause::invalid(
                format!("{path}.pattern"),
                &json!(pattern),
                "must be a valid regular expression",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["addresses"], "properties": {
                "addresses": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "autoAssign": {"type": "boolean", "default": true},
                "receiveInterval": {"type": "integer", "format": "int32", "minimum": 10, "maximum": 60000},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            }},
            "status": {"type": "object"},
        }})
    }

    #[test]
    fn prune_reports_unknown_fields() {
        let mut object = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "spec": {"addresses": [], "foo": 1, "free": {"any": 1}}, "top": 1});
        let unknown = prune(&mut object, &pool_schema());
        assert_eq!(unknown, vec!["spec.foo".to_string(), "top".to_string()]);
        assert_eq!(object["spec"]["free"]["any"], 1);
    }

    #[test]
    fn defaults_apply_under_present_parents() {
        let mut object = json!({"spec": {"addresses": []}});
        apply_defaults(&mut object, &pool_schema());
        assert_eq!(object["spec"]["autoAssign"], true);
        let mut empty = json!({});
        apply_defaults(&mut empty, &pool_schema());
        assert_eq!(empty, json!({}));
    }

    #[test]
    fn validation_table() {
        let cases = [
            (
                json!({"spec": {"addresses": [], "receiveInterval": 5}}),
                "spec.receiveInterval",
                "greater than or equal to 10",
            ),
            (
                json!({"spec": {"addresses": "x"}}),
                "spec.addresses",
                "must be of type array",
            ),
            (json!({"spec": {}}), "spec.addresses", "Required value"),
            (
                json!({"spec": {"addresses": ["a", "a"]}}),
                "spec.addresses[1]",
                "Duplicate value",
            ),
            (
                json!({"spec": {"addresses": [], "mode": "c"}}),
                "spec.mode",
                "Unsupported value",
            ),
            (
                json!({"spec": {"addresses": [], "name": "A"}}),
                "spec.name",
                "should match",
            ),
            (
                json!({"spec": {"addresses": [], "name": "abcdef"}}),
                "spec.name",
                "Too long",
            ),
        ];
        for (object, field, message) in cases {
            let causes = validate(&object, &pool_schema());
            assert!(
                causes
                    .iter()
                    .any(|c| c.field == field && c.message.contains(message)),
                "{field}: {causes:?}"
            );
        }
        assert!(validate(&json!({"spec": {"addresses": ["a"]}}), &pool_schema()).is_empty());
    }

    #[test]
    fn structural_check() {
        let mut causes = Vec::new();
        check_structural(
            &json!({"type": "object", "properties": {"spec": {"properties": {}}}}),
            "schema",
            &mut causes,
        );
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(parse_go_duration("1m30s"), Some(90_000.0));
        assert_eq!(parse_go_duration("abc"), None);
    }
}
