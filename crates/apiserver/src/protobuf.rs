//! Protobuf request bodies for Secret, ConfigMap and Namespace creates (reference §4.3),
//! decoded with hand-declared messages and turned into JSON.

use std::collections::BTreeMap;

use base64::Engine;
use prost::Message;
use serde_json::{json, Map, Value};

use crate::error::ApiError;

const MAGIC: [u8; 4] = [0x6b, 0x38, 0x73, 0x00];

/// `runtime.Unknown`, the envelope after the magic bytes.
#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
    #[prost(string, optional, tag = "4")]
    content_type: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    generate_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    secret_type: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: BTreeMap<String, String>,
    #[prost(btree_map = "string, bytes", tag = "3")]
    binary_data: BTreeMap<String, Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct NamespaceSpec {
    #[prost(string, repeated, tag = "1")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Namespace {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<NamespaceSpec>,
}

fn unsupported() -> ApiError {
    ApiError::unsupported_media(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
    )
}

/// Decodes a protobuf body of the given kind into its JSON form.
pub(crate) fn decode(kind: &str, body: &[u8]) -> Result<Value, ApiError> {
    if !matches!(kind, "Secret" | "ConfigMap" | "Namespace") {
        return Err(unsupported());
    }
    let Some(envelope) = body.strip_prefix(&MAGIC) else {
        return Err(ApiError::bad_request(
            "protobuf body does not start with the k8s magic bytes",
        ));
    };
    let unknown = Unknown::decode(envelope)
        .map_err(|error| ApiError::bad_request(format!("invalid protobuf envelope: {error}")))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let body_kind = type_meta.kind.unwrap_or_default();
    if !body_kind.is_empty() && body_kind != kind {
        return Err(unsupported());
    }
    let raw = unknown.raw.unwrap_or_default();
    let bad = |error: prost::DecodeError| {
        ApiError::bad_request(format!("invalid protobuf {kind}: {error}"))
    };
    let base64 =
        |bytes: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    let mut object = match kind {
        "Secret" => {
            let secret = Secret::decode(raw.as_slice()).map_err(bad)?;
            let mut object = json!({"metadata": metadata_json(secret.metadata)});
            if !secret.data.is_empty() {
                object["data"] = Value::Object(
                    secret
                        .data
                        .iter()
                        .map(|(k, v)| (k.clone(), base64(v)))
                        .collect(),
                );
            }
            if !secret.string_data.is_empty() {
                object["stringData"] = json!(secret.string_data);
            }
            if let Some(secret_type) = secret.secret_type.filter(|t| !t.is_empty()) {
                object["type"] = json!(secret_type);
            }
            if let Some(immutable) = secret.immutable {
                object["immutable"] = json!(immutable);
            }
            object
        }
        "ConfigMap" => {
            let config_map = ConfigMap::decode(raw.as_slice()).map_err(bad)?;
            let mut object = json!({"metadata": metadata_json(config_map.metadata)});
            if !config_map.data.is_empty() {
                object["data"] = json!(config_map.data);
            }
            if !config_map.binary_data.is_empty() {
                object["binaryData"] = Value::Object(
                    config_map
                        .binary_data
                        .iter()
                        .map(|(k, v)| (k.clone(), base64(v)))
                        .collect(),
                );
            }
            if let Some(immutable) = config_map.immutable {
                object["immutable"] = json!(immutable);
            }
            object
        }
        _ => {
            let namespace = Namespace::decode(raw.as_slice()).map_err(bad)?;
            let mut object = json!({"metadata": metadata_json(namespace.metadata)});
            if let Some(spec) = namespace.spec.filter(|s| !s.finalizers.is_empty()) {
                object["spec"] = json!({"finalizers": spec.finalizers});
            }
            object
        }
    };
    object["apiVersion"] = json!(type_meta
        .api_version
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "v1".into()));
    object["kind"] = json!(kind);
    Ok(object)
}

fn metadata_json(metadata: Option<ObjectMeta>) -> Value {
    let metadata = metadata.unwrap_or_default();
    let mut map = Map::new();
    if let Some(name) = metadata.name.filter(|n| !n.is_empty()) {
        map.insert("name".into(), json!(name));
    }
    if let Some(generate_name) = metadata.generate_name.filter(|n| !n.is_empty()) {
        map.insert("generateName".into(), json!(generate_name));
    }
    if let Some(namespace) = metadata.namespace.filter(|n| !n.is_empty()) {
        map.insert("namespace".into(), json!(namespace));
    }
    if !metadata.labels.is_empty() {
        map.insert("labels".into(), json!(metadata.labels));
    }
    if !metadata.annotations.is_empty() {
        map.insert("annotations".into(), json!(metadata.annotations));
    }
    if !metadata.finalizers.is_empty() {
        map.insert("finalizers".into(), json!(metadata.finalizers));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_secret() -> Vec<u8> {
        let secret = Secret {
            metadata: Some(ObjectMeta {
                name: Some("memberlist".into()),
                namespace: Some("metallb-system".into()),
                ..ObjectMeta::default()
            }),
            data: BTreeMap::from([("secretkey".to_string(), b"abc".to_vec())]),
            secret_type: Some("Opaque".into()),
            ..Secret::default()
        };
        let envelope = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("v1".into()),
                kind: Some("Secret".into()),
            }),
            raw: Some(secret.encode_to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(envelope.encode_to_vec());
        body
    }

    #[test]
    fn secret_round_trip() {
        let decoded = decode("Secret", &encode_secret());
        let Ok(object) = decoded else {
            panic!("{decoded:?}")
        };
        assert_eq!(object["data"]["secretkey"], "YWJj");
        assert_eq!(object["type"], "Opaque");
        assert_eq!(object["metadata"]["name"], "memberlist");
    }

    #[test]
    fn rejects_other_kinds_and_garbage() {
        assert_eq!(
            decode("Service", &encode_secret()).map_err(|e| e.code),
            Err(415)
        );
        assert_eq!(decode("Secret", b"nope").map_err(|e| e.code), Err(400));
        let body = encode_secret();
        for cut in 4..body.len() {
            // Every truncation is an error or a partial object, never a panic.
            let _ = decode("Secret", &body[..cut]);
        }
    }
}
