//! The resources served: built-in kinds plus those defined by CRDs, and the discovery and
//! OpenAPI v3 documents derived from them (reference §2, §3 rows 3–6, §4.2).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::cel::CompiledRules;

/// Which per-kind strategy handles writes (the real apiserver's `rest.RESTCreateStrategy`s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// No per-kind behaviour (Secrets, ConfigMaps, Endpoints, Leases).
    Generic,
    /// Services: defaulting, allocation, validation, status metadata rules.
    Service,
    /// Nodes: status kept on create.
    Node,
    /// Pods.
    Pod,
    /// Namespaces: phase, deletion of contents.
    Namespace,
    /// core/v1 Events (the stored form).
    CoreEvent,
    /// events.k8s.io/v1 Events (a view over the core store).
    EventsV1,
    /// EndpointSlices (generation).
    EndpointSlice,
    /// CustomResourceDefinitions.
    Crd,
    /// Custom resources.
    Custom,
}

/// Where objects of a resource are stored: `(group, resource)` of the storage form.
pub(crate) type StorageKey = (String, String);

/// What a CRD says about one served version.
#[derive(Debug)]
pub(crate) struct CustomVersion {
    /// The storage version of the CRD.
    pub(crate) storage_version: String,
    /// `openAPIV3Schema` of this version.
    pub(crate) schema: Value,
    /// `additionalPrinterColumns` of this version.
    pub(crate) printer_columns: Vec<Value>,
    /// CEL rules of this version's schema.
    pub(crate) rules: CompiledRules,
}

/// One served (group, version, resource).
#[derive(Debug)]
pub(crate) struct ResourceInfo {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) resource: String,
    pub(crate) kind: String,
    pub(crate) singular: String,
    pub(crate) namespaced: bool,
    pub(crate) short_names: Vec<String>,
    pub(crate) categories: Vec<String>,
    pub(crate) has_status: bool,
    pub(crate) has_generation: bool,
    pub(crate) strategy: Strategy,
    pub(crate) storage: StorageKey,
    pub(crate) custom: Option<CustomVersion>,
    /// `deprecationWarning` (or the default text) of a deprecated CRD version.
    pub(crate) deprecation_warning: Option<String>,
}

impl ResourceInfo {
    /// `v1` or `metallb.io/v1beta1`.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether protobuf / strategic merge patch etc. treat it as a built-in.
    pub(crate) fn is_builtin(&self) -> bool {
        self.custom.is_none()
    }
}

/// The set of resources currently served.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    resources: BTreeMap<(String, String, String), Arc<ResourceInfo>>,
    /// Groups in discovery order, each with versions in preference order.
    groups: Vec<(String, Vec<String>)>,
    /// Bumped on every rebuild, used as the OpenAPI hash.
    pub(crate) epoch: u64,
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    has_status: bool,
    has_generation: bool,
    strategy: Strategy,
    storage: (&'static str, &'static str),
}

const BUILTINS: &[Builtin] = &[
    builtin(
        "",
        "services",
        "Service",
        true,
        &["svc"],
        true,
        false,
        Strategy::Service,
    ),
    builtin(
        "",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        false,
        false,
        Strategy::Generic,
    ),
    builtin(
        "",
        "secrets",
        "Secret",
        true,
        &[],
        false,
        false,
        Strategy::Generic,
    ),
    builtin(
        "",
        "configmaps",
        "ConfigMap",
        true,
        &["cm"],
        false,
        false,
        Strategy::Generic,
    ),
    builtin(
        "",
        "events",
        "Event",
        true,
        &["ev"],
        false,
        false,
        Strategy::CoreEvent,
    ),
    builtin("", "pods", "Pod", true, &["po"], true, false, Strategy::Pod),
    builtin(
        "",
        "nodes",
        "Node",
        false,
        &["no"],
        true,
        false,
        Strategy::Node,
    ),
    builtin(
        "",
        "namespaces",
        "Namespace",
        false,
        &["ns"],
        true,
        false,
        Strategy::Namespace,
    ),
    builtin(
        "",
        "serviceaccounts",
        "ServiceAccount",
        true,
        &["sa"],
        false,
        false,
        Strategy::Generic,
    ),
    builtin(
        "discovery.k8s.io",
        "endpointslices",
        "EndpointSlice",
        true,
        &[],
        false,
        true,
        Strategy::EndpointSlice,
    ),
    builtin(
        "coordination.k8s.io",
        "leases",
        "Lease",
        true,
        &[],
        false,
        false,
        Strategy::Generic,
    ),
    builtin(
        "apps",
        "deployments",
        "Deployment",
        true,
        &["deploy"],
        true,
        true,
        Strategy::Generic,
    ),
    builtin(
        "apps",
        "daemonsets",
        "DaemonSet",
        true,
        &["ds"],
        true,
        true,
        Strategy::Generic,
    ),
    builtin(
        "rbac.authorization.k8s.io",
        "roles",
        "Role",
        true,
        &[],
        false,
        false,
        Strategy::Generic,
    ),
    builtin(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
        false,
        false,
        Strategy::Generic,
    ),
    builtin(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
        false,
        false,
        Strategy::Generic,
    ),
    builtin(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
        false,
        false,
        Strategy::Generic,
    ),
    Builtin {
        group: "events.k8s.io",
        version: "v1",
        resource: "events",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        has_status: false,
        has_generation: false,
        strategy: Strategy::EventsV1,
        storage: ("", "events"),
    },
    builtin(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
        true,
        Strategy::Crd,
    ),
];

#[allow(clippy::too_many_arguments)] // A const table row.
const fn builtin(
    group: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    has_status: bool,
    has_generation: bool,
    strategy: Strategy,
) -> Builtin {
    Builtin {
        group,
        version: "v1",
        resource,
        kind,
        namespaced,
        short_names,
        has_status,
        has_generation,
        strategy,
        storage: (group, resource),
    }
}

/// The verbs of every served resource.
const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl Registry {
    /// Built-ins plus the kinds of the given (established) CRD objects.
    pub(crate) fn build(crds: &[&Value], epoch: u64) -> Self {
        let mut registry = Self {
            epoch,
            ..Self::default()
        };
        let mut group_versions: Vec<(String, Vec<String>)> = Vec::new();
        for builtin in BUILTINS {
            let info = ResourceInfo {
                group: builtin.group.into(),
                version: builtin.version.into(),
                resource: builtin.resource.into(),
                kind: builtin.kind.into(),
                singular: builtin.kind.to_ascii_lowercase(),
                namespaced: builtin.namespaced,
                short_names: builtin.short_names.iter().map(|s| s.to_string()).collect(),
                categories: Vec::new(),
                has_status: builtin.has_status,
                has_generation: builtin.has_generation,
                strategy: builtin.strategy,
                storage: (builtin.storage.0.into(), builtin.storage.1.into()),
                custom: None,
                deprecation_warning: None,
            };
            add_group_version(&mut group_versions, builtin.group, builtin.version);
            registry.insert(info);
        }
        let mut custom_groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for crd in crds {
            for info in infos_from_crd(crd) {
                custom_groups
                    .entry(info.group.clone())
                    .or_default()
                    .insert(info.version.clone());
                registry.insert(info);
            }
        }
        for (group, versions) in custom_groups {
            let mut versions: Vec<String> = versions.into_iter().collect();
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
            group_versions.push((group, versions));
        }
        registry.groups = group_versions;
        registry
    }

    fn insert(&mut self, info: ResourceInfo) {
        let key = (
            info.group.clone(),
            info.version.clone(),
            info.resource.clone(),
        );
        self.resources.insert(key, Arc::new(info));
    }

    /// The resource served at `group/version/resource`.
    pub(crate) fn get(
        &self,
        group: &str,
        version: &str,
        resource: &str,
    ) -> Option<Arc<ResourceInfo>> {
        self.resources
            .get(&(group.to_string(), version.to_string(), resource.to_string()))
            .cloned()
    }

    /// Every served version of a storage key.
    pub(crate) fn by_storage(&self, storage: &StorageKey) -> Vec<Arc<ResourceInfo>> {
        self.resources
            .values()
            .filter(|info| &info.storage == storage)
            .cloned()
            .collect()
    }

    /// Every distinct storage key.
    pub(crate) fn storage_keys(&self) -> BTreeSet<StorageKey> {
        self.resources
            .values()
            .map(|info| info.storage.clone())
            .collect()
    }

    /// Whether a group/version is served.
    pub(crate) fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.groups
            .iter()
            .any(|(g, versions)| g == group && versions.iter().any(|v| v == version))
    }

    fn resources_of(&self, group: &str, version: &str) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        let (group, version) = (group.to_string(), version.to_string());
        self.resources
            .values()
            .filter(move |info| info.group == group && info.version == version)
    }

    /// `GET /api` (legacy).
    pub(crate) fn api_versions(&self) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        })
    }

    fn api_group(&self, group: &str, versions: &[String]) -> Value {
        let versions: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
            .collect();
        json!({
            "name": group,
            "versions": versions,
            "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
        })
    }

    /// `GET /apis` (legacy).
    pub(crate) fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups
            .iter()
            .filter(|(group, _)| !group.is_empty())
            .map(|(group, versions)| self.api_group(group, versions))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /apis/{group}`.
    pub(crate) fn api_group_doc(&self, group: &str) -> Option<Value> {
        let (_, versions) = self
            .groups
            .iter()
            .find(|(g, _)| g == group && !g.is_empty())?;
        let mut doc = self.api_group(group, versions);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        Some(doc)
    }

    /// `GET /api/v1` or `/apis/{group}/{version}`.
    pub(crate) fn api_resource_list(&self, group: &str, version: &str) -> Option<Value> {
        if !self.serves_group_version(group, version) {
            return None;
        }
        let mut resources = Vec::new();
        for info in self.resources_of(group, version) {
            let mut entry = json!({
                "name": info.resource,
                "singularName": info.singular,
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": VERBS,
            });
            if !info.short_names.is_empty() {
                entry["shortNames"] = json!(info.short_names);
            }
            if !info.categories.is_empty() {
                entry["categories"] = json!(info.categories);
            }
            if info
                .custom
                .as_ref()
                .is_some_and(|c| c.storage_version == info.version)
            {
                entry["storageVersionHash"] = json!("");
            }
            resources.push(entry);
            if info.has_status {
                resources.push(json!({
                    "name": format!("{}/status", info.resource),
                    "singularName": "",
                    "namespaced": info.namespaced,
                    "kind": info.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }))
    }

    /// Aggregated discovery (`apidiscovery.k8s.io/v2`) for `/api` (`legacy`) or `/apis`.
    pub(crate) fn aggregated(&self, legacy: bool) -> Value {
        let items: Vec<Value> = self
            .groups
            .iter()
            .filter(|(group, _)| group.is_empty() == legacy)
            .map(|(group, versions)| {
                let versions: Vec<Value> = versions
                    .iter()
                    .map(|version| {
                        let resources: Vec<Value> = self
                            .resources_of(group, version)
                            .map(|info| {
                                let mut entry = json!({
                                    "resource": info.resource,
                                    "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
                                    "scope": if info.namespaced { "Namespaced" } else { "Cluster" },
                                    "singularResource": info.singular,
                                    "verbs": VERBS,
                                });
                                if !info.short_names.is_empty() {
                                    entry["shortNames"] = json!(info.short_names);
                                }
                                if !info.categories.is_empty() {
                                    entry["categories"] = json!(info.categories);
                                }
                                if info.has_status {
                                    entry["subresources"] = json!([{
                                        "subresource": "status",
                                        "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
                                        "verbs": ["get", "patch", "update"],
                                    }]);
                                }
                                entry
                            })
                            .collect();
                        json!({"version": version, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                let mut metadata = json!({"creationTimestamp": null});
                if !group.is_empty() {
                    metadata["name"] = json!(group);
                }
                json!({"metadata": metadata, "versions": versions})
            })
            .collect();
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        })
    }

    /// `GET /openapi/v3`.
    pub(crate) fn openapi_index(&self) -> Value {
        let mut paths = serde_json::Map::new();
        for (group, versions) in &self.groups {
            for version in versions {
                let key = if group.is_empty() {
                    format!("api/{version}")
                } else {
                    format!("apis/{group}/{version}")
                };
                let url = format!("/openapi/v3/{key}?hash={:016X}", self.epoch);
                paths.insert(key, json!({"serverRelativeURL": url}));
            }
        }
        json!({"paths": paths})
    }

    /// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/{g}/{v}`: the §4.2 minimum.
    pub(crate) fn openapi_group_version(&self, group: &str, version: &str) -> Option<Value> {
        if !self.serves_group_version(group, version) {
            return None;
        }
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let mut paths = serde_json::Map::new();
        for info in self.resources_of(group, version) {
            let gvk = json!({"group": info.group, "version": info.version, "kind": info.kind});
            let scope = if info.namespaced {
                "/namespaces/{namespace}"
            } else {
                ""
            };
            let parameters = json!([
                {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
            ]);
            let operation = |verb: &str| {
                json!({
                    "operationId": format!("{verb}{}", info.kind),
                    "parameters": parameters,
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": verb,
                    "x-kubernetes-group-version-kind": gvk,
                })
            };
            paths.insert(
                format!("{prefix}{scope}/{}/{{name}}", info.resource),
                json!({"get": operation("get"), "put": operation("put"), "patch": operation("patch"), "delete": operation("delete")}),
            );
            paths.insert(
                format!("{prefix}{scope}/{}", info.resource),
                json!({"get": operation("list"), "post": operation("post")}),
            );
        }
        Some(json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.4"},
            "paths": paths,
            "components": {"schemas": {}},
        }))
    }
}

fn add_group_version(groups: &mut Vec<(String, Vec<String>)>, group: &str, version: &str) {
    match groups.iter_mut().find(|(g, _)| g == group) {
        Some((_, versions)) => {
            if !versions.iter().any(|v| v == version) {
                versions.push(version.to_string());
            }
        }
        None => groups.push((group.to_string(), vec![version.to_string()])),
    }
}

/// Kubernetes version priority: GA > beta > alpha, then higher numbers; others last, by name.
pub(crate) fn version_priority(version: &str) -> (u8, u64, u64, std::cmp::Reverse<String>) {
    let fallback = (0, 0, 0, std::cmp::Reverse(version.to_string()));
    let Some(rest) = version.strip_prefix('v') else {
        return fallback;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Ok(major) = rest[..digits].parse::<u64>() else {
        return fallback;
    };
    let tail = &rest[digits..];
    let (level, minor_text) = if tail.is_empty() {
        (3, "0")
    } else if let Some(minor) = tail.strip_prefix("beta") {
        (2, minor)
    } else if let Some(minor) = tail.strip_prefix("alpha") {
        (1, minor)
    } else {
        return fallback;
    };
    let Ok(minor) = minor_text.parse::<u64>() else {
        return fallback;
    };
    (level, major, minor, std::cmp::Reverse(String::new()))
}

/// One `ResourceInfo` per served version of a CRD object. Malformed CRDs (which validation
/// rejects before storing) yield nothing.
fn infos_from_crd(crd: &Value) -> Vec<ResourceInfo> {
    let Some(spec) = crd.get("spec") else {
        return Vec::new();
    };
    let text = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let group = text(spec.get("group"));
    let names = spec.get("names").cloned().unwrap_or(Value::Null);
    let plural = text(names.get("plural"));
    let kind = text(names.get("kind"));
    let mut singular = text(names.get("singular"));
    if singular.is_empty() {
        singular = kind.to_ascii_lowercase();
    }
    let string_list = |value: Option<&Value>| -> Vec<String> {
        value
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let short_names = string_list(names.get("shortNames"));
    let categories = string_list(names.get("categories"));
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| text(v.get("name")))
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        .map(|v| {
            let schema = v
                .get("schema")
                .and_then(|s| s.get("openAPIV3Schema"))
                .cloned()
                .unwrap_or(Value::Null);
            let rules = CompiledRules::compile(&schema).unwrap_or_default();
            ResourceInfo {
                group: group.clone(),
                version: text(v.get("name")),
                resource: plural.clone(),
                kind: kind.clone(),
                singular: singular.clone(),
                namespaced,
                short_names: short_names.clone(),
                categories: categories.clone(),
                has_status: v
                    .get("subresources")
                    .and_then(|s| s.get("status"))
                    .is_some(),
                has_generation: true,
                strategy: Strategy::Custom,
                storage: (group.clone(), plural.clone()),
                custom: Some(CustomVersion {
                    storage_version: storage_version.clone(),
                    schema,
                    printer_columns: v
                        .get("additionalPrinterColumns")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    rules,
                }),
                deprecation_warning: (v.get("deprecated").and_then(Value::as_bool) == Some(true))
                    .then(|| {
                        v.get("deprecationWarning")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .unwrap_or_else(|| {
                                format!("{group}/{} {kind} is deprecated", text(v.get("name")))
                            })
                    }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order_follows_kubernetes() {
        let mut versions = vec!["v1beta1", "v1", "v1alpha1", "v2beta1", "v1beta2", "foo"];
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(
            versions,
            ["v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn builtins_are_discoverable() {
        let registry = Registry::build(&[], 1);
        let list = registry.api_resource_list("", "v1").unwrap_or_default();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"services/status"));
        assert!(registry.get("events.k8s.io", "v1", "events").is_some());
        assert!(registry.openapi_group_version("", "v1").is_some());
    }
}
