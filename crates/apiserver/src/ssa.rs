//! Server-side apply and field ownership (reference §6.12): `metadata.managedFields`.
//!
//! Every create, update and patch records which manager owns which fields, as a real
//! kube-apiserver does: one entry per (manager, operation, subresource) — and per apiVersion
//! for `Update` entries — holding a `FieldsV1` set (`f:<field>`, `k:{keys}` for items of
//! associative lists, `v:<value>` for set items, `.` for a node that is itself a member).
//!
//! - **Update** (POST, PUT, merge/JSON/strategic patch): the fields the write added or changed
//!   move to the writer (taken from any other manager), removed fields leave every manager;
//!   the writer's timestamp moves only when it changed something.
//! - **Apply** (`application/apply-patch+yaml`): the applied configuration is merged into the
//!   live object by the schema's list and map types; fields the same manager applied before
//!   and omits now are removed unless another manager owns them; a changed field that another
//!   manager owns is a conflict (409 `Apply failed with N conflict(s)`), unless `force=true`,
//!   which takes it over. `kubectl` (the manager of `kubectl apply --server-side`) may take
//!   fields whose live value is still the one in its client-side last-applied annotation, and
//!   that annotation is kept in step with what it applies.
//!
//! Fields are tracked on the object as the client sees it; server-set metadata (`name`,
//! `uid`, `resourceVersion`, …) is never owned, and the half of the object a request cannot
//! change (`status` for the main resource, the rest for `/status`) is left out of its sets.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::error::{ApiError, Cause};
use crate::meta::{format_rfc3339, now_secs};
use crate::patch::ListMerge;
use crate::registry::{ResourceInfo, Strategy};
use crate::schema;

/// The annotation client-side `kubectl apply` keeps its configuration in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The longest field manager name the server records (bytes).
const MANAGER_MAX_BYTES: usize = 128;

/// A set of field paths: a trie keyed by `FieldsV1` path elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    /// The node itself is in the set (`.` in `FieldsV1`, or a leaf).
    member: bool,
    children: BTreeMap<String, Self>,
}

impl FieldSet {
    fn child(&mut self, element: String) -> &mut Self {
        self.children.entry(element).or_default()
    }

    fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(Self::is_empty)
    }

    fn insert(&mut self, at: &[String]) {
        match at.split_first() {
            None => self.member = true,
            Some((first, rest)) => self.child(first.clone()).insert(rest),
        }
    }

    /// Drops children that hold nothing.
    fn normalize(&mut self) {
        for child in self.children.values_mut() {
            child.normalize();
        }
        self.children.retain(|_, child| !child.is_empty());
    }

    fn union_with(&mut self, other: &Self) {
        self.member |= other.member;
        for (element, child) in &other.children {
            self.child(element.clone()).union_with(child);
        }
    }

    fn union(&self, other: &Self) -> Self {
        let mut union = self.clone();
        union.union_with(other);
        union
    }

    /// Removes the members of `other` (not their descendants); returns whether any went.
    fn subtract(&mut self, other: &Self) -> bool {
        let mut removed = other.member && self.member;
        if other.member {
            self.member = false;
        }
        for (element, theirs) in &other.children {
            if let Some(mine) = self.children.get_mut(element) {
                removed |= mine.subtract(theirs);
                if mine.is_empty() {
                    self.children.remove(element);
                }
            }
        }
        removed
    }

    fn intersection(&self, other: &Self) -> Self {
        let mut both = Self {
            member: self.member && other.member,
            children: self
                .children
                .iter()
                .filter_map(|(element, mine)| {
                    other
                        .children
                        .get(element)
                        .map(|theirs| (element.clone(), mine.intersection(theirs)))
                })
                .collect(),
        };
        both.normalize();
        both
    }

    /// Every member, as a path in the form conflicts are reported (`.spec.ports[port=80,…]`).
    fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_paths(&mut String::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut String, out: &mut Vec<String>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (element, child) in &self.children {
            let length = prefix.len();
            prefix.push_str(&display_element(element));
            child.collect_paths(prefix, out);
            prefix.truncate(length);
        }
    }

    /// The `fieldsV1` JSON.
    fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), json!({}));
        }
        for (element, child) in &self.children {
            map.insert(element.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    fn from_fields_v1(value: &Value) -> Option<Self> {
        let map = value.as_object()?;
        let mut set = Self {
            member: map.is_empty(),
            children: BTreeMap::new(),
        };
        for (element, child) in map {
            if element == "." {
                set.member = true;
                continue;
            }
            if !["f:", "k:", "v:", "i:"]
                .iter()
                .any(|prefix| element.starts_with(prefix))
            {
                return None;
            }
            set.children
                .insert(element.clone(), Self::from_fields_v1(child)?);
        }
        Some(set)
    }
}

/// `f:name` → `.name`, `k:{"port":80}` → `[port=80]`, `v:"a"` → `[="a"]`, `i:3` → `[3]`.
fn display_element(element: &str) -> String {
    if let Some(name) = element.strip_prefix("f:") {
        format!(".{name}")
    } else if let Some(keys) = element.strip_prefix("k:") {
        let keys: Map<String, Value> = serde_json::from_str(keys).unwrap_or_default();
        let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("[{}]", parts.join(","))
    } else if let Some(value) = element.strip_prefix("v:") {
        format!("[={value}]")
    } else if let Some(index) = element.strip_prefix("i:") {
        format!("[{index}]")
    } else {
        element.to_string()
    }
}

/// How a kind's lists and maps merge and are tracked: the CRD schema for custom resources,
/// the Kubernetes API's `x-kubernetes-list-type` / `mapType` markers for built-ins.
pub(crate) struct Shape<'a> {
    info: &'a ResourceInfo,
}

impl<'a> Shape<'a> {
    pub(crate) fn new(info: &'a ResourceInfo) -> Self {
        Self { info }
    }

    fn list(&self, path: &[&str]) -> ListMerge {
        match path {
            ["metadata", "ownerReferences"] => return keyed(&["uid"]),
            ["metadata", "finalizers"] => return ListMerge::Set,
            ["metadata", ..] => return ListMerge::Atomic,
            _ => {}
        }
        match &self.info.custom {
            Some(custom) => schema::schema_at(&custom.schema, path)
                .map(schema::list_merge)
                .unwrap_or(ListMerge::Atomic),
            None => builtin_list(&self.info.kind, path),
        }
    }

    fn atomic_map(&self, path: &[&str]) -> bool {
        match &self.info.custom {
            Some(custom) => {
                schema::schema_at(&custom.schema, path)
                    .and_then(|node| node.get("x-kubernetes-map-type"))
                    .and_then(Value::as_str)
                    == Some("atomic")
            }
            None => builtin_atomic_map(&self.info.kind, path),
        }
    }

    /// Whether a map key is a declared field (false for keys of a free-form map, whose
    /// object values are members themselves).
    fn declared(&self, path: &[&str]) -> bool {
        let (Some(custom), Some((key, parent))) = (&self.info.custom, path.split_last()) else {
            return true;
        };
        if parent.first() == Some(&"metadata") || parent.is_empty() {
            return true;
        }
        match schema::schema_at(&custom.schema, parent) {
            Some(node) => node
                .get("properties")
                .and_then(|properties| properties.get(*key))
                .is_some(),
            None => true,
        }
    }

    /// The default of a list-map key field the item omits (`protocol: TCP` of ports).
    fn key_default(&self, list_path: &[&str], key: &str) -> Option<Value> {
        match &self.info.custom {
            Some(custom) => {
                let mut path = list_path.to_vec();
                path.extend(["*", key]);
                schema::schema_at(&custom.schema, &path)
                    .and_then(|node| node.get("default"))
                    .cloned()
            }
            None => (key == "protocol").then(|| json!("TCP")),
        }
    }

    /// The path element of a list item.
    fn item_element(&self, list_path: &[&str], rule: &ListMerge, item: &Value) -> String {
        match (rule, item) {
            (ListMerge::Map(keys), Value::Object(fields)) => {
                let mut key = Map::new();
                for name in keys {
                    let value = fields
                        .get(name)
                        .cloned()
                        .or_else(|| self.key_default(list_path, name));
                    if let Some(value) = value {
                        key.insert(name.clone(), value);
                    }
                }
                format!("k:{}", Value::Object(key))
            }
            _ => format!("v:{item}"),
        }
    }
}

fn keyed(keys: &[&str]) -> ListMerge {
    ListMerge::Map(keys.iter().map(|k| (*k).to_string()).collect())
}

/// List types of the built-in kinds the stand-in serves (`+listType` markers of k8s.io/api).
fn builtin_list(kind: &str, path: &[&str]) -> ListMerge {
    match (kind, path) {
        (_, ["status", "conditions"]) => keyed(&["type"]),
        ("Service", ["spec", "ports"]) => keyed(&["port", "protocol"]),
        ("Node", ["status", "addresses"]) => keyed(&["type"]),
        ("Node", ["spec", "podCIDRs"]) => ListMerge::Set,
        ("Pod", ["spec", rest @ ..]) => pod_spec_list(rest),
        ("Deployment" | "DaemonSet", ["spec", "template", "spec", rest @ ..]) => {
            pod_spec_list(rest)
        }
        _ => ListMerge::Atomic,
    }
}

fn pod_spec_list(path: &[&str]) -> ListMerge {
    const CONTAINERS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
    match path {
        [list] if CONTAINERS.contains(list) => keyed(&["name"]),
        ["volumes" | "imagePullSecrets" | "resourceClaims"] => keyed(&["name"]),
        ["hostAliases"] => keyed(&["ip"]),
        ["topologySpreadConstraints"] => keyed(&["topologyKey", "whenUnsatisfiable"]),
        [list, "*", "env"] if CONTAINERS.contains(list) => keyed(&["name"]),
        [list, "*", "ports"] if CONTAINERS.contains(list) => keyed(&["containerPort", "protocol"]),
        [list, "*", "volumeMounts"] if CONTAINERS.contains(list) => keyed(&["mountPath"]),
        _ => ListMerge::Atomic,
    }
}

/// Maps and structs marked atomic in k8s.io/api (label selectors, object references).
fn builtin_atomic_map(kind: &str, path: &[&str]) -> bool {
    matches!(
        (kind, path),
        ("Service", ["spec", "selector"])
            | ("Pod", ["spec", "nodeSelector"])
            | ("Deployment" | "DaemonSet", ["spec", "selector"])
            | (
                "Deployment" | "DaemonSet",
                ["spec", "template", "spec", "nodeSelector"]
            )
            | ("Event", ["involvedObject" | "related" | "regarding"])
    )
}

fn view(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

/// The fields an applied configuration sets (structured-merge-diff's `ToFieldSet`).
pub(crate) fn field_set(object: &Value, shape: &Shape<'_>) -> FieldSet {
    let mut set = FieldSet::default();
    if let Value::Object(map) = object {
        set_of_map(map, shape, &mut Vec::new(), &mut set);
    }
    set.normalize();
    set
}

fn set_of_map(
    map: &Map<String, Value>,
    shape: &Shape<'_>,
    path: &mut Vec<String>,
    out: &mut FieldSet,
) {
    for (key, value) in map {
        path.push(key.clone());
        let node = out.child(format!("f:{key}"));
        match value {
            Value::Object(inner) if !inner.is_empty() && !shape.atomic_map(&view(path)) => {
                set_of_map(inner, shape, path, node);
                if !shape.declared(&view(path)) {
                    node.member = true;
                }
            }
            Value::Array(items) => set_of_list(items, shape, path, node),
            _ => node.member = true,
        }
        path.pop();
    }
}

fn set_of_list(items: &[Value], shape: &Shape<'_>, path: &mut Vec<String>, node: &mut FieldSet) {
    let rule = shape.list(&view(path));
    if rule == ListMerge::Atomic {
        node.member = true;
        return;
    }
    for item in items {
        let element = shape.item_element(&view(path), &rule, item);
        let child = node.child(element);
        child.member = true;
        if let (ListMerge::Map(_), Value::Object(fields)) = (&rule, item) {
            path.push("*".into());
            set_of_map(fields, shape, path, child);
            path.pop();
        }
    }
}

/// What changed between two objects, as field sets.
#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Comparison {
    fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }
}

/// Compares two objects (their `metadata.managedFields` left out).
fn compare(old: &Value, new: &Value, shape: &Shape<'_>) -> Comparison {
    let mut out = Comparison::default();
    let mut walk = Walk {
        shape,
        path: Vec::new(),
        at: Vec::new(),
        out: &mut out,
    };
    walk.value(Some(old), Some(new));
    out.added.normalize();
    out.modified.normalize();
    out.removed.normalize();
    out
}

enum Node {
    Leaf,
    Map,
    List(ListMerge),
}

/// A path element while walking: a field borrowed from the objects, or a list item's
/// computed element.
enum Element<'a> {
    Field(&'a str),
    Item(String),
}

/// The state of one comparison walk: the schema path (`*` for list items) and the field
/// path, both borrowed from the compared objects; field-set elements are only built for
/// the paths that end up in a set.
struct Walk<'a, 's, 'o> {
    shape: &'s Shape<'s>,
    path: Vec<&'a str>,
    at: Vec<Element<'a>>,
    out: &'o mut Comparison,
}

impl<'a> Walk<'a, '_, '_> {
    fn kind(&self, old: Option<&Value>, new: Option<&Value>) -> Node {
        let objects = old.is_none_or(Value::is_object) && new.is_none_or(Value::is_object);
        if objects {
            let empty = old.is_none_or(|v| v.as_object().is_some_and(Map::is_empty))
                && new.is_none_or(|v| v.as_object().is_some_and(Map::is_empty));
            if empty || (!self.path.is_empty() && self.shape.atomic_map(&self.path)) {
                return Node::Leaf;
            }
            return Node::Map;
        }
        let arrays = old.is_none_or(Value::is_array) && new.is_none_or(Value::is_array);
        if arrays {
            let empty = old.is_none_or(|v| v.as_array().is_some_and(Vec::is_empty))
                && new.is_none_or(|v| v.as_array().is_some_and(Vec::is_empty));
            let rule = self.shape.list(&self.path);
            if empty || rule == ListMerge::Atomic {
                return Node::Leaf;
            }
            return Node::List(rule);
        }
        Node::Leaf
    }

    fn elements(&self) -> Vec<String> {
        self.at
            .iter()
            .map(|element| match element {
                Element::Field(name) => format!("f:{name}"),
                Element::Item(item) => item.clone(),
            })
            .collect()
    }

    fn value(&mut self, old: Option<&'a Value>, new: Option<&'a Value>) {
        match self.kind(old, new) {
            Node::Leaf => {
                if let (Some(old), Some(new)) = (old, new) {
                    if old != new {
                        let at = self.elements();
                        self.out.modified.insert(&at);
                    }
                }
            }
            Node::Map => {
                let old_map = old.and_then(Value::as_object);
                let new_map = new.and_then(Value::as_object);
                let top_metadata = self.path == ["metadata"];
                for (key, old_child) in old_map.into_iter().flatten() {
                    if top_metadata && key == "managedFields" {
                        continue;
                    }
                    self.child(key, Some(old_child), new_map.and_then(|m| m.get(key)));
                }
                for (key, new_child) in new_map.into_iter().flatten() {
                    if (top_metadata && key == "managedFields")
                        || old_map.is_some_and(|m| m.contains_key(key))
                    {
                        continue;
                    }
                    self.child(key, None, Some(new_child));
                }
            }
            Node::List(rule) => self.list(&rule, old, new),
        }
        if !self.at.is_empty() {
            match (old, new) {
                (None, Some(_)) => {
                    let at = self.elements();
                    self.out.added.insert(&at);
                }
                (Some(_), None) => {
                    let at = self.elements();
                    self.out.removed.insert(&at);
                }
                _ => {}
            }
        }
    }

    fn child(&mut self, key: &'a str, old: Option<&'a Value>, new: Option<&'a Value>) {
        self.path.push(key);
        self.at.push(Element::Field(key));
        self.value(old, new);
        self.at.pop();
        self.path.pop();
    }

    fn list(&mut self, rule: &ListMerge, old: Option<&'a Value>, new: Option<&'a Value>) {
        let index = |list: Option<&'a Value>| -> BTreeMap<String, &'a Value> {
            list.and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .map(|item| (self.shape.item_element(&self.path, rule, item), item))
                        .collect()
                })
                .unwrap_or_default()
        };
        let old_items = index(old);
        let new_items = index(new);
        let elements: Vec<&String> = old_items
            .keys()
            .chain(new_items.keys().filter(|k| !old_items.contains_key(*k)))
            .collect();
        for element in elements {
            let (old_item, new_item) = (
                old_items.get(element).copied(),
                new_items.get(element).copied(),
            );
            self.path.push("*");
            self.at.push(Element::Item(element.clone()));
            if matches!(rule, ListMerge::Map(_)) {
                self.value(old_item, new_item);
            } else if old_item.is_none() != new_item.is_none() {
                let at = self.elements();
                if old_item.is_none() {
                    self.out.added.insert(&at);
                } else {
                    self.out.removed.insert(&at);
                }
            }
            self.at.pop();
            self.path.pop();
        }
    }
}

/// Server-side apply's merge of a configuration into the live object: maps by field,
/// associative lists by key, sets by value, everything else replaced.
fn merge(target: &mut Value, config: &Value, shape: &Shape<'_>, path: &mut Vec<String>) {
    match config {
        Value::Object(fields) if !path.is_empty() && shape.atomic_map(&view(path)) => {
            *target = Value::Object(fields.clone());
        }
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let Value::Object(map) = target else {
                return;
            };
            for (key, value) in fields {
                if value.is_null() {
                    map.remove(key);
                    continue;
                }
                path.push(key.clone());
                merge(
                    map.entry(key.clone()).or_insert(Value::Null),
                    value,
                    shape,
                    path,
                );
                path.pop();
            }
        }
        Value::Array(items) => {
            let rule = shape.list(&view(path));
            if rule == ListMerge::Atomic {
                *target = config.clone();
                return;
            }
            let live: Vec<Value> = target.as_array().cloned().unwrap_or_default();
            let element = |item: &Value| shape.item_element(&view(path), &rule, item);
            let live_elements: Vec<String> = live.iter().map(element).collect();
            let config_elements: Vec<String> = items.iter().map(element).collect();
            let in_config: std::collections::BTreeSet<&String> = config_elements.iter().collect();
            let live_position: BTreeMap<&String, usize> = live_elements
                .iter()
                .enumerate()
                .rev()
                .map(|(i, e)| (e, i))
                .collect();
            let mut merged = Vec::with_capacity(live.len().max(items.len()));
            let mut done = std::collections::BTreeSet::new();
            let (mut l, mut r) = (0, 0);
            while l < live.len() || r < items.len() {
                if let (Some(live_element), Some(config_element)) =
                    (live_elements.get(l), config_elements.get(r))
                {
                    if live_element == config_element {
                        let mut item = live.get(l).cloned().unwrap_or(Value::Null);
                        merge_item(&mut item, items.get(r), &rule, shape, path);
                        merged.push(item);
                        done.insert(config_element.clone());
                        l += 1;
                        r += 1;
                        continue;
                    }
                }
                if let Some(live_element) = live_elements.get(l) {
                    if !in_config.contains(live_element) {
                        merged.extend(live.get(l).cloned());
                        l += 1;
                        continue;
                    }
                    if done.contains(live_element) {
                        l += 1;
                        continue;
                    }
                }
                if let Some(config_element) = config_elements.get(r) {
                    let mut item = live_position
                        .get(config_element)
                        .and_then(|p| live.get(*p).cloned())
                        .unwrap_or(Value::Null);
                    merge_item(&mut item, items.get(r), &rule, shape, path);
                    if !done.contains(config_element) {
                        merged.push(item);
                    }
                    done.insert(config_element.clone());
                    r += 1;
                } else {
                    l += 1;
                }
            }
            *target = Value::Array(merged);
        }
        other => *target = other.clone(),
    }
}

fn merge_item(
    item: &mut Value,
    config: Option<&Value>,
    rule: &ListMerge,
    shape: &Shape<'_>,
    path: &mut Vec<String>,
) {
    let Some(config) = config else {
        return;
    };
    if matches!(rule, ListMerge::Map(_)) {
        path.push("*".into());
        merge(item, config, shape, path);
        path.pop();
    } else {
        *item = config.clone();
    }
}

/// Removes from `value` what the applier owned before (`last`) and nobody keeps (`keep`):
/// a node the applier owned goes whole (an associative-list item with its defaulted and
/// allocated fields), a map it only had fields in goes once nothing is left in it; fields it
/// never applied stay.
fn prune(
    value: &mut Value,
    last: &FieldSet,
    keep: Option<&FieldSet>,
    shape: &Shape<'_>,
    path: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let element = format!("f:{key}");
                let Some(last_child) = last.children.get(&element) else {
                    continue;
                };
                let keep_child = keep.and_then(|k| k.children.get(&element));
                path.push(key.clone());
                let remove = match map.get_mut(&key) {
                    Some(child) => prune_child(child, last_child, keep_child, shape, path),
                    None => false,
                };
                path.pop();
                if remove {
                    map.remove(&key);
                }
            }
        }
        Value::Array(items) => {
            let rule = shape.list(&view(path));
            if rule == ListMerge::Atomic {
                return;
            }
            let list_path = view(path)
                .iter()
                .map(|s| (*s).to_string())
                .collect::<Vec<_>>();
            items.retain_mut(|item| {
                let element = shape.item_element(&view(&list_path), &rule, item);
                let Some(last_child) = last.children.get(&element) else {
                    return true;
                };
                let keep_child = keep.and_then(|k| k.children.get(&element));
                let mut item_path = list_path.clone();
                item_path.push("*".into());
                let keys: Vec<(String, Value)> = match (&rule, &*item) {
                    (ListMerge::Map(keys), Value::Object(fields)) => keys
                        .iter()
                        .filter_map(|k| fields.get(k).map(|v| (k.clone(), v.clone())))
                        .collect(),
                    _ => Vec::new(),
                };
                let remove = prune_child(item, last_child, keep_child, shape, &mut item_path);
                // An item that keeps fields of others keeps its key.
                if let (false, Value::Object(fields)) = (remove, &mut *item) {
                    for (key, value) in keys {
                        fields.entry(key).or_insert(value);
                    }
                }
                !remove
            });
        }
        _ => {}
    }
}

/// Prunes one node; returns whether it goes.
fn prune_child(
    child: &mut Value,
    last: &FieldSet,
    keep: Option<&FieldSet>,
    shape: &Shape<'_>,
    path: &mut Vec<String>,
) -> bool {
    let kept = keep.is_some_and(|k| k.member);
    // A node the applier owned itself goes with whatever it holds, unless others own part.
    if last.member && !kept && keep.is_none_or(FieldSet::is_empty) {
        return true;
    }
    let container = match &*child {
        Value::Object(map) => !map.is_empty() && !shape.atomic_map(&view(path)),
        Value::Array(items) => !items.is_empty() && shape.list(&view(path)) != ListMerge::Atomic,
        _ => false,
    };
    if !container {
        return last.member && !kept;
    }
    prune(child, last, keep, shape, path);
    let empty = match &*child {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    };
    empty && !kept
}

/// `Apply` or `Update`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    manager: String,
    operation: Operation,
    api_version: String,
    time: Option<String>,
    subresource: String,
    set: FieldSet,
    /// The entry as it was read from the live object, while this write left it unchanged
    /// (encoded again as it is).
    raw: Option<Value>,
}

impl Entry {
    /// Whether this entry is the one a write by (manager, operation, …) records into;
    /// appliers are one entry whatever the apiVersion.
    fn is(
        &self,
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    /// How conflicts name the manager (`"kubectl-client-side-apply" using v1`).
    fn describe(&self) -> String {
        let mut text = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            text.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            text.push_str(&format!(" using {}", self.api_version));
        }
        text
    }

    fn decode(value: &Value) -> Option<Self> {
        let text = |field: &str| value.get(field).and_then(Value::as_str);
        let operation = match text("operation")? {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        if text("fieldsType")? != "FieldsV1" {
            return None;
        }
        Some(Self {
            manager: text("manager").unwrap_or_default().to_string(),
            operation,
            api_version: text("apiVersion").unwrap_or_default().to_string(),
            time: text("time").map(str::to_string),
            subresource: text("subresource").unwrap_or_default().to_string(),
            set: FieldSet::from_fields_v1(value.get("fieldsV1").unwrap_or(&json!({})))?,
            raw: Some(value.clone()),
        })
    }

    /// Takes `fields` out of this entry's set.
    fn lose(&mut self, fields: &FieldSet) {
        if self.set.subtract(fields) {
            self.raw = None;
        }
    }

    fn encode(&self) -> Value {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation.as_str(),
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.set.to_fields_v1(),
        });
        if let Some(time) = &self.time {
            entry["time"] = json!(time);
        }
        if !self.subresource.is_empty() {
            entry["subresource"] = json!(self.subresource);
        }
        entry
    }
}

/// Decodes `managedFields`; `None` when anything in it is not a valid entry.
fn decode(value: Option<&Value>) -> Option<Vec<Entry>> {
    value?.as_array()?.iter().map(Entry::decode).collect()
}

/// The entries as the server writes them: by operation, time, manager, apiVersion,
/// subresource.
fn encode(entries: &mut [Entry]) -> Value {
    entries.sort_by(|a, b| {
        (
            a.operation.as_str(),
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation.as_str(),
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    Value::Array(entries.iter().map(Entry::encode).collect())
}

/// The field manager of a request: `fieldManager`, else the User-Agent up to its first
/// `/` (printable characters, at most 128 bytes), else `unknown`.
pub(crate) fn manager_name(field_manager: Option<&str>, user_agent: &str) -> String {
    if let Some(manager) = field_manager.filter(|m| !m.is_empty()) {
        return manager.to_string();
    }
    let prefix = user_agent.split('/').next().unwrap_or_default();
    let mut manager = String::new();
    for c in prefix.chars().filter(|c| !c.is_control()) {
        if manager.len() + c.len_utf8() > MANAGER_MAX_BYTES {
            break;
        }
        manager.push(c);
    }
    if manager.is_empty() {
        "unknown".into()
    } else {
        manager
    }
}

/// The checks the server makes on `fieldManager` (and `force`) before anything else: at most
/// 128 bytes of printable characters; `force` only on apply patches. `options` names the
/// request's options kind (`CreateOptions`, `UpdateOptions`, `PatchOptions`).
pub(crate) fn check_options(
    field_manager: Option<&str>,
    force: bool,
    apply: bool,
    options: &str,
) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let manager = field_manager.unwrap_or_default();
    if manager.len() > MANAGER_MAX_BYTES {
        causes.push(Cause::too_long("fieldManager", MANAGER_MAX_BYTES));
    }
    for (position, c) in manager.char_indices() {
        if c.is_control() {
            causes.push(Cause::invalid(
                "fieldManager",
                &json!(manager),
                format!(
                    "invalid character U+{:04X} (at position {position})",
                    u32::from(c)
                ),
            ));
        }
    }
    if force && !apply {
        causes.push(Cause::forbidden(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("meta.k8s.io", options, "", causes))
    }
}

/// The ownership side of a write.
#[derive(Clone, Debug)]
pub(crate) struct Write {
    manager: String,
    apply: Option<Applied>,
    /// Fields the server set after field tracking (a Service's allocations on create).
    unowned: FieldSet,
}

impl Write {
    /// A write by `fieldManager` (or the User-Agent's manager), an apply when `apply` is set.
    pub(crate) fn new(
        field_manager: Option<&str>,
        user_agent: &str,
        apply: Option<Applied>,
    ) -> Self {
        Self {
            manager: manager_name(field_manager, user_agent),
            apply,
            unowned: FieldSet::default(),
        }
    }

    /// Leaves unowned what the Service strategy allocated on create and the request did not
    /// set (`clusterIP(s)`, `ipFamilies`, `ipFamilyPolicy`, `healthCheckNodePort`, ports'
    /// `nodePort`): the real server allocates them in its REST layer, after field tracking.
    pub(crate) fn service_allocations(
        mut self,
        requested: Option<&Value>,
        allocated: &Value,
    ) -> Self {
        let empty = Map::new();
        let requested = requested.and_then(Value::as_object).unwrap_or(&empty);
        let Some(allocated) = allocated.as_object() else {
            return self;
        };
        let spec = self.unowned.child("f:spec".into());
        for field in [
            "clusterIP",
            "clusterIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "healthCheckNodePort",
        ] {
            if allocated.contains_key(field) && !requested.contains_key(field) {
                spec.child(format!("f:{field}")).member = true;
            }
        }
        let ports = |spec: &Map<String, Value>| -> BTreeMap<String, Value> {
            spec.get("ports")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .map(|item| (service_port_element(item), item.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let requested_ports = ports(requested);
        for (element, port) in ports(allocated) {
            let asked = requested_ports
                .get(&element)
                .is_some_and(|p| p.get("nodePort").is_some());
            if port.get("nodePort").is_some() && !asked {
                spec.child("f:ports".into())
                    .child(element)
                    .child("f:nodePort".into())
                    .member = true;
            }
        }
        self.unowned.normalize();
        self
    }
}

/// The path element of a Service port (`k:{"port":80,"protocol":"TCP"}`).
fn service_port_element(port: &Value) -> String {
    let mut key = Map::new();
    key.insert(
        "port".into(),
        port.get("port").cloned().unwrap_or(Value::Null),
    );
    key.insert(
        "protocol".into(),
        port.get("protocol")
            .cloned()
            .unwrap_or_else(|| json!("TCP")),
    );
    format!("k:{}", Value::Object(key))
}

/// An apply request, after its configuration was merged in.
#[derive(Clone, Debug)]
pub(crate) struct Applied {
    /// The fields the configuration sets.
    set: FieldSet,
    force: bool,
    /// The configuration, for kubectl's last-applied annotation.
    config: Value,
}

/// Fields never owned: the object's identity and what the server sets, and the half of
/// the object a request to this endpoint cannot change.
fn strip(set: &mut FieldSet, info: &ResourceInfo, status: bool) {
    set.children.remove("f:apiVersion");
    set.children.remove("f:kind");
    if status {
        let keep_metadata = !matches!(info.strategy, Strategy::Custom | Strategy::Crd);
        set.children.retain(|element, _| {
            element == "f:status" || (keep_metadata && element == "f:metadata")
        });
    } else if info.has_status {
        set.children.remove("f:status");
    }
    if let Some(meta) = set.children.get_mut("f:metadata") {
        meta.member = false;
        for field in [
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "generation",
            "managedFields",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.children.remove(&format!("f:{field}"));
        }
    }
    set.member = false;
    set.normalize();
}

fn subresource(status: bool) -> &'static str {
    if status {
        "status"
    } else {
        ""
    }
}

/// Whether two objects are equal but for their `metadata.managedFields`.
fn same_ignoring_managed_fields(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let meta = |map: &Map<String, Value>| -> Option<Map<String, Value>> {
        map.get("metadata").and_then(Value::as_object).map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != "managedFields")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    };
    a.len() == b.len()
        && a.iter()
            .filter(|(k, _)| k.as_str() != "metadata")
            .all(|(k, v)| b.get(k) == Some(v))
        && meta(a) == meta(b)
}

#[cfg(test)]
fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    object
}

/// Checks an apply configuration and merges it into the live object (`current`, the client's
/// view with its managedFields): fields this manager applied before and omits now are
/// removed unless another manager owns them. Returns the merged object.
pub(crate) fn apply(
    info: &ResourceInfo,
    status: bool,
    manager: &str,
    current: &Value,
    config: &Value,
    force: bool,
) -> Result<(Value, Applied), ApiError> {
    let applied = applied_config(info, status, config, force)?;
    let shape = Shape::new(info);
    let entries =
        decode(current.get("metadata").and_then(|m| m.get("managedFields"))).unwrap_or_default();
    let mut merged = current.clone();
    let mut merge_config = config.clone();
    // The half of the object this endpoint cannot change is not merged (the strategy would
    // restore it anyway).
    if let Some(map) = merge_config.as_object_mut() {
        if status {
            map.retain(|key, _| {
                matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "status")
            });
        } else if info.has_status {
            map.remove("status");
        }
    }
    merge(&mut merged, &merge_config, &shape, &mut Vec::new());
    let sub = subresource(status);
    if let Some(last) = entries
        .iter()
        .find(|e| e.is(manager, Operation::Apply, "", sub))
    {
        let mut keep = applied.set.clone();
        for entry in entries
            .iter()
            .filter(|e| !e.is(manager, Operation::Apply, "", sub))
        {
            keep.union_with(&entry.set);
        }
        prune(&mut merged, &last.set, Some(&keep), &shape, &mut Vec::new());
    }
    Ok((merged, applied))
}

/// The checks an apply body gets, and its field set (also for an apply that creates).
pub(crate) fn applied_config(
    info: &ResourceInfo,
    status: bool,
    config: &Value,
    force: bool,
) -> Result<Applied, ApiError> {
    if config
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    if let Some(version) = config.get("apiVersion").and_then(Value::as_str) {
        let expected = info.api_version();
        if version != expected {
            return Err(ApiError::bad_request(format!(
                "Incorrect version specified in apply patch. Specified patch version: {version}, expected: {expected}"
            )));
        }
    }
    let mut set = field_set(config, &Shape::new(info));
    strip(&mut set, info, status);
    Ok(Applied {
        set,
        force,
        config: config.clone(),
    })
}

/// What a create compares against: the empty object of the kind (built-ins have empty
/// `spec`/`status` structs, custom resources nothing).
fn empty_object(info: &ResourceInfo) -> Value {
    let mut object = json!({"metadata": {}});
    if info.is_builtin() {
        let has_spec = matches!(
            info.strategy,
            Strategy::Service
                | Strategy::Pod
                | Strategy::Node
                | Strategy::Namespace
                | Strategy::Crd
        ) || matches!(info.kind.as_str(), "Deployment" | "DaemonSet" | "Lease");
        if has_spec {
            object["spec"] = json!({});
        }
        if info.has_status {
            object["status"] = json!({});
        }
    }
    object
}

/// Records a write's field ownership in `new`'s `metadata.managedFields` (`new` arrives
/// without them). `old` is the live object as the client sees it (`None` for a create),
/// `requested` the managedFields the request body carried.
pub(crate) fn record(
    info: &ResourceInfo,
    status: bool,
    write: &Write,
    old: Option<&Value>,
    requested: Option<Value>,
    new: &mut Value,
) -> Result<(), ApiError> {
    let shape = Shape::new(info);
    let sub = subresource(status);
    let api_version = info.api_version();
    let live = old
        .and_then(|o| o.get("metadata"))
        .and_then(|m| m.get("managedFields"));
    // The entries the write starts from: the live ones, unless an update resets them
    // (`[]` or `[{}]`) or carries other valid ones.
    let base = match (&write.apply, status, requested) {
        (None, false, Some(Value::Array(list)))
            if list.iter().all(|entry| entry == &json!({})) && list.len() <= 1 =>
        {
            Some(Vec::new())
        }
        (None, false, Some(requested)) if Some(&requested) != live => decode(Some(&requested))
            .filter(|entries| !entries.is_empty())
            .map(|mut entries| {
                for entry in &mut entries {
                    entry.raw = None;
                }
                entries
            }),
        _ => None,
    };
    let empty;
    let old_object = match old {
        Some(old) => old,
        None => {
            empty = empty_object(info);
            &empty
        }
    };
    let mut comparison = compare(old_object, new, &shape);
    for set in [
        &mut comparison.added,
        &mut comparison.modified,
        &mut comparison.removed,
    ] {
        strip(set, info, status);
    }
    if old.is_none() {
        comparison.added.subtract(&write.unowned);
    }
    // An update that changes nothing keeps the live entries as they are.
    let unchanged = comparison.added.is_empty()
        && comparison.modified.is_empty()
        && comparison.removed.is_empty();
    if write.apply.is_none() && base.is_none() && unchanged {
        let meta = crate::meta::metadata_mut(new);
        match live {
            Some(live) => meta.insert("managedFields".into(), live.clone()),
            None => meta.remove("managedFields"),
        };
        return Ok(());
    }
    let mut entries = base.unwrap_or_else(|| decode(live).unwrap_or_default());
    let changed = comparison.changed();
    let now = format_rfc3339(now_secs());
    match &write.apply {
        Some(applied) => {
            let is_self = |e: &Entry| e.is(&write.manager, Operation::Apply, "", sub);
            let conflicts: Vec<(usize, FieldSet)> = entries
                .iter()
                .enumerate()
                .filter(|(_, e)| !is_self(e))
                .map(|(i, e)| (i, e.set.intersection(&changed)))
                .filter(|(_, c)| !c.is_empty())
                .collect();
            if !conflicts.is_empty() && !applied.force {
                let allowed = if write.manager == "kubectl" && old.is_some() {
                    last_applied_fields(info, status, old_object)
                } else {
                    None
                };
                let all_allowed = allowed.is_some_and(|allowed| {
                    conflicts.iter().all(|(_, c)| {
                        let mut rest = c.clone();
                        rest.subtract(&allowed);
                        rest.is_empty()
                    })
                });
                if !all_allowed {
                    return Err(conflict_error(&entries, &conflicts));
                }
            }
            for (i, conflict) in &conflicts {
                if let Some(entry) = entries.get_mut(*i) {
                    entry.lose(conflict);
                }
            }
            let previous = entries.iter().position(is_self).map(|i| entries.remove(i));
            for entry in &mut entries {
                entry.lose(&comparison.removed);
            }
            let time = match previous {
                Some(previous) if same_ignoring_managed_fields(old_object, new) => previous.time,
                _ => Some(now),
            };
            entries.push(Entry {
                manager: write.manager.clone(),
                operation: Operation::Apply,
                api_version,
                time,
                subresource: sub.to_string(),
                set: applied.set.clone(),
                raw: None,
            });
        }
        None => {
            for entry in &mut entries {
                entry.lose(&changed);
                entry.lose(&comparison.removed);
            }
            if !changed.is_empty() {
                let is_self =
                    |e: &Entry| e.is(&write.manager, Operation::Update, &api_version, sub);
                let mut set = changed;
                if let Some(previous) = entries.iter().position(is_self).map(|i| entries.remove(i))
                {
                    set.union_with(&previous.set);
                }
                entries.push(Entry {
                    manager: write.manager.clone(),
                    operation: Operation::Update,
                    api_version,
                    time: Some(now),
                    subresource: sub.to_string(),
                    set,
                    raw: None,
                });
            }
        }
    }
    entries.retain(|e| !e.set.is_empty());
    if write.apply.is_none() {
        cap_update_managers(&mut entries);
    }
    if let Some(applied) = &write.apply {
        if write.manager == "kubectl" {
            sync_last_applied(new, old, &applied.config);
        }
    }
    let meta = crate::meta::metadata_mut(new);
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), encode(&mut entries));
    }
    Ok(())
}

/// At most this many `Update` entries are kept; the oldest are merged per apiVersion.
const MAX_UPDATE_MANAGERS: usize = 10;

/// Where the oldest `Update` entries are merged once there are too many.
const ANCIENT_MANAGER: &str = "ancient-changes";

/// Keeps at most [`MAX_UPDATE_MANAGERS`] `Update` entries: going from the oldest, an entry
/// with the same apiVersion as an older one is merged with it into the `ancient-changes`
/// entry of that version (so an object's managedFields stop growing with its writers).
fn cap_update_managers(entries: &mut Vec<Entry>) {
    loop {
        let mut updaters: Vec<(Option<String>, usize)> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.operation == Operation::Update)
            .map(|(i, e)| (e.time.clone(), i))
            .collect();
        if updaters.len() <= MAX_UPDATE_MANAGERS {
            return;
        }
        updaters.sort();
        let mut first_of_version: BTreeMap<String, usize> = BTreeMap::new();
        let pair = updaters.iter().find_map(|(_, i)| {
            let version = entries.get(*i)?.api_version.clone();
            match first_of_version.get(&version) {
                Some(first) => Some((*first, *i)),
                None => {
                    first_of_version.insert(version, *i);
                    None
                }
            }
        });
        let Some((first, second)) = pair else {
            return;
        };
        let (high, low) = (first.max(second), first.min(second));
        let newer = entries.remove(high);
        let older = entries.remove(low);
        let mut set = older.set.union(&newer.set);
        let mut time = older.time.max(newer.time);
        if let Some(bucket) = entries.iter().position(|e| {
            e.manager == ANCIENT_MANAGER
                && e.operation == Operation::Update
                && e.api_version == newer.api_version
                && e.subresource.is_empty()
        }) {
            let bucket = entries.remove(bucket);
            set.union_with(&bucket.set);
            time = time.max(bucket.time);
        }
        entries.push(Entry {
            manager: ANCIENT_MANAGER.into(),
            operation: Operation::Update,
            api_version: newer.api_version,
            time,
            subresource: String::new(),
            set,
            raw: None,
        });
    }
}

/// The fields of kubectl's client-side last-applied configuration whose live value is still
/// the one it applied: `kubectl apply --server-side` may take those over without a conflict.
fn last_applied_fields(info: &ResourceInfo, status: bool, live: &Value) -> Option<FieldSet> {
    let text = live
        .get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    let last_applied: Value = serde_json::from_str(text).ok()?;
    let shape = Shape::new(info);
    let mut set = field_set(&last_applied, &shape);
    strip(&mut set, info, status);
    let comparison = compare(&last_applied, live, &shape);
    set.subtract(&comparison.modified);
    set.subtract(&comparison.added);
    set.subtract(&comparison.removed);
    Some(set)
}

/// `kubectl apply --server-side` keeps an existing last-applied annotation equal to what it
/// applied.
fn sync_last_applied(new: &mut Value, old: Option<&Value>, config: &Value) {
    let had = old
        .and_then(|o| o.get("metadata"))
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(LAST_APPLIED))
        .is_some();
    if !had {
        return;
    }
    let mut config = config.clone();
    if let Some(annotations) = config
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
    }
    let text = format!("{config}\n");
    let meta = crate::meta::metadata_mut(new);
    if let Some(annotations) = meta
        .entry("annotations")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        annotations.insert(LAST_APPLIED.into(), json!(text));
    }
}

/// 409 `Apply failed with N conflict(s)`, with one `FieldManagerConflict` cause per field.
fn conflict_error(entries: &[Entry], conflicts: &[(usize, FieldSet)]) -> ApiError {
    let mut by_manager: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut causes = Vec::new();
    for (i, set) in conflicts {
        let Some(entry) = entries.get(*i) else {
            continue;
        };
        let manager = entry.describe();
        for path in set.paths() {
            causes.push(json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {manager}"),
                "field": path,
            }));
            by_manager.entry(manager.clone()).or_default().push(path);
        }
    }
    let message = if causes.len() == 1 {
        let (manager, paths) = by_manager.iter().next().map_or_else(
            || (String::new(), String::new()),
            |(m, p)| (m.clone(), p.join("")),
        );
        format!("Apply failed with 1 conflict: conflict with {manager}: {paths}")
    } else {
        let mut lines = Vec::new();
        for (manager, paths) in &by_manager {
            lines.push(format!("conflicts with {manager}:"));
            lines.extend(paths.iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            causes.len(),
            lines.join("\n")
        )
    };
    let mut error = ApiError::custom(409, "Conflict", message);
    error.details = Some(json!({ "causes": causes }));
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: &str) -> ResourceInfo {
        let strategy = if kind == "Service" {
            Strategy::Service
        } else {
            Strategy::Generic
        };
        ResourceInfo {
            group: String::new(),
            version: "v1".into(),
            resource: format!("{}s", kind.to_lowercase()),
            kind: kind.into(),
            singular: kind.to_lowercase(),
            namespaced: true,
            short_names: Vec::new(),
            categories: Vec::new(),
            has_status: kind == "Service",
            has_generation: false,
            strategy,
            storage: (String::new(), format!("{}s", kind.to_lowercase())),
            custom: None,
            deprecation_warning: None,
        }
    }

    fn service(ports: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
               "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": ports}})
    }

    #[test]
    fn field_sets_encode_as_fields_v1() {
        let info = info("Service");
        let mut set = field_set(
            &service(json!([{"port": 80, "targetPort": 8080}])),
            &Shape::new(&info),
        );
        strip(&mut set, &info, false);
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}},
                    "f:selector": {},
                    "f:type": {},
                },
            })
        );
        assert_eq!(
            FieldSet::from_fields_v1(&set.to_fields_v1()),
            Some(set.clone())
        );
        assert_eq!(
            set.paths(),
            [
                ".metadata.labels.app",
                ".spec.ports[port=80,protocol=\"TCP\"]",
                ".spec.ports[port=80,protocol=\"TCP\"].port",
                ".spec.ports[port=80,protocol=\"TCP\"].targetPort",
                ".spec.selector",
                ".spec.type",
            ]
        );
        assert_eq!(FieldSet::from_fields_v1(&json!({"x": {}})), None);
    }

    #[test]
    fn updates_take_changed_fields_and_mark_new_containers() {
        let info = info("ConfigMap");
        let write = Write::new(Some("a"), "", None);
        let mut created = json!({"metadata": {"name": "c"}, "data": {"x": "1"}});
        assert_eq!(
            record(&info, false, &write, None, None, &mut created),
            Ok(())
        );
        let entries = &created["metadata"]["managedFields"];
        assert_eq!(entries[0]["manager"], "a");
        assert_eq!(entries[0]["operation"], "Update");
        assert_eq!(
            entries[0]["fieldsV1"],
            json!({"f:data": {".": {}, "f:x": {}}})
        );
        // Another manager changes x and adds y: it takes x.
        let other = Write::new(Some("b"), "", None);
        let mut updated = json!({"metadata": {"name": "c"}, "data": {"x": "2", "y": "3"}});
        assert_eq!(
            record(&info, false, &other, Some(&created), None, &mut updated),
            Ok(())
        );
        let entries = updated["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(entries.len(), 2);
        let of = |manager: &str| {
            entries
                .iter()
                .find(|e| e["manager"] == manager)
                .map(|e| e["fieldsV1"].clone())
        };
        assert_eq!(of("a"), Some(json!({"f:data": {}})));
        assert_eq!(of("b"), Some(json!({"f:data": {"f:x": {}, "f:y": {}}})));
        // A reset (`managedFields: [{}]`) with no change leaves nothing.
        let mut reset = without_managed_fields(&updated);
        assert_eq!(
            record(
                &info,
                false,
                &other,
                Some(&updated),
                Some(json!([{}])),
                &mut reset
            ),
            Ok(())
        );
        assert!(reset["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn apply_merges_prunes_and_conflicts() {
        let info = info("Service");
        let shape = Shape::new(&info);
        let live = {
            let mut live = service(
                json!([{"port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080}]),
            );
            live["spec"]["clusterIP"] = json!("10.96.0.10");
            let applied = applied_config(
                &info,
                false,
                &service(json!([{"port": 80, "targetPort": 8080}])),
                false,
            );
            let write = Write::new(Some("a"), "", applied.ok());
            let mut live_new = live.clone();
            assert_eq!(
                record(&info, false, &write, None, None, &mut live_new),
                Ok(())
            );
            live_new
        };
        // The same manager drops the label and a port field: both go, server fields stay.
        let mut config = service(json!([{"port": 80}]));
        config["metadata"]["labels"] = json!(null);
        let (merged, _) =
            apply(&info, false, "a", &live, &config, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            merged["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP", "nodePort": 30080}])
        );
        assert!(merged["metadata"].get("labels").is_none(), "{merged}");
        assert_eq!(merged["spec"]["clusterIP"], "10.96.0.10");
        // Another manager changing a field of a is a conflict; force takes it.
        let mut other = service(json!([{"port": 80, "targetPort": 9090}]));
        other["spec"] = json!({"ports": [{"port": 80, "targetPort": 9090}]});
        let (mut merged, applied) =
            apply(&info, false, "b", &live, &other, false).unwrap_or_else(|e| panic!("{e}"));
        merged["metadata"]
            .as_object_mut()
            .map(|m| m.remove("managedFields"));
        let write = Write::new(Some("b"), "", Some(applied.clone()));
        let error = record(&info, false, &write, Some(&live), None, &mut merged.clone())
            .err()
            .unwrap_or_else(|| panic!("no conflict"));
        assert_eq!(error.code, 409);
        assert_eq!(
            error.message,
            "Apply failed with 1 conflict: conflict with \"a\": .spec.ports[port=80,protocol=\"TCP\"].targetPort"
        );
        let cause = error
            .details
            .as_ref()
            .map(|d| d["causes"][0].clone())
            .unwrap_or_default();
        assert_eq!(cause["reason"], "FieldManagerConflict");
        assert_eq!(cause["message"], "conflict with \"a\"");
        let forced = Write::new(
            Some("b"),
            "",
            Some(Applied {
                force: true,
                ..applied
            }),
        );
        assert_eq!(
            record(&info, false, &forced, Some(&live), None, &mut merged),
            Ok(())
        );
        let entries = merged["metadata"]["managedFields"].clone();
        let a = entries
            .as_array()
            .and_then(|l| l.iter().find(|e| e["manager"] == "a"))
            .cloned()
            .unwrap_or_default();
        assert!(
            a["fieldsV1"]["f:spec"]["f:ports"]["k:{\"port\":80,\"protocol\":\"TCP\"}"]
                .get("f:targetPort")
                .is_none(),
            "{a}"
        );
        let _ = shape;
    }

    #[test]
    fn lists_merge_by_type_and_prune_by_owner() {
        let info = info("Pod");
        let shape = Shape::new(&info);
        let mut live = json!({
            "metadata": {"finalizers": ["a", "b"]},
            "spec": {"containers": [{"name": "x", "image": "x:1"}, {"name": "y", "image": "y:1"}],
                     "tolerations": [{"key": "k"}]},
        });
        let config = json!({
            "metadata": {"finalizers": ["c"]},
            "spec": {"containers": [{"name": "y", "image": "y:2"}, {"name": "z", "image": "z:1"}],
                     "tolerations": [{"key": "n"}]},
        });
        merge(&mut live, &config, &shape, &mut Vec::new());
        assert_eq!(
            live["metadata"]["finalizers"],
            json!(["a", "b", "c"]),
            "set: union"
        );
        assert_eq!(
            live["spec"]["containers"],
            json!([{"name": "x", "image": "x:1"}, {"name": "y", "image": "y:2"}, {"name": "z", "image": "z:1"}]),
            "map list: by key"
        );
        assert_eq!(
            live["spec"]["tolerations"],
            json!([{"key": "n"}]),
            "atomic: replaced"
        );
        let set = field_set(&config, &shape);
        assert_eq!(
            set.to_fields_v1()["f:metadata"]["f:finalizers"],
            json!({"v:\"c\"": {}})
        );
        // The applier stops applying z and c; y's image is also another manager's.
        let last = set;
        let mut keep = field_set(&json!({"spec": {"containers": [{"name": "y"}]}}), &shape);
        keep.union_with(&field_set(
            &json!({"spec": {"containers": [{"name": "y", "image": "y:2"}]}}),
            &Shape::new(&info),
        ));
        prune(&mut live, &last, Some(&keep), &shape, &mut Vec::new());
        assert_eq!(live["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            live["spec"]["containers"],
            json!([{"name": "x", "image": "x:1"}, {"name": "y", "image": "y:2"}])
        );
        assert!(live["spec"].get("tolerations").is_none());
    }

    #[test]
    fn update_entries_are_capped() {
        let info = info("ConfigMap");
        let mut object = json!({"metadata": {"name": "c"}, "data": {}});
        for writer in 0..12 {
            let old = object.clone();
            let mut new = without_managed_fields(&object);
            new["data"][format!("k{writer}")] = json!("v");
            let write = Write::new(Some(&format!("w{writer}")), "", None);
            assert_eq!(
                record(&info, false, &write, Some(&old), None, &mut new),
                Ok(())
            );
            object = new;
        }
        let entries = object["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(entries.len(), MAX_UPDATE_MANAGERS, "{entries:#?}");
        let ancient = entries
            .iter()
            .find(|e| e["manager"] == ANCIENT_MANAGER)
            .cloned()
            .unwrap_or_default();
        assert_eq!(ancient["operation"], "Update");
        assert_eq!(
            ancient["fieldsV1"]["f:data"].as_object().map(Map::len),
            Some(3),
            "{ancient}"
        );
        assert!(entries.iter().any(|e| e["manager"] == "w11"));
    }

    #[test]
    fn managers_come_from_the_user_agent() {
        assert_eq!(manager_name(Some("mgr"), "kubectl/v1.32.4"), "mgr");
        assert_eq!(
            manager_name(None, "kubectl/v1.32.4 (linux/amd64)"),
            "kubectl"
        );
        assert_eq!(manager_name(Some(""), ""), "unknown");
        assert_eq!(manager_name(None, &"x".repeat(300)).len(), 128);
    }
}
