//! The operations: get, list, create, update, patch, delete, with the per-kind strategies
//! (reference §6.1–§6.6, §6.9–§6.12). Everything runs under the one store lock.

use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::{watch, Notify};

use crate::cel::CompiledRules;
use crate::error::{qualified, ApiError, Cause};
use crate::events::{core_to_events, events_to_core, validate_events_v1};
use crate::fields::Selectors;
use crate::meta::{
    finalizers, format_rfc3339, generate_suffix, is_dns1035_label, is_dns1123_label,
    is_dns1123_subdomain, meta_str, metadata_mut, new_uid, now_secs,
};
use crate::patch::{
    builtin_list_merge, json_patch, merge_patch, strategic_merge, ListMerge, PatchError,
};
use crate::registry::{Registry, ResourceInfo, StorageKey, Strategy};
use crate::schema;
use crate::service::allocation_of;
use crate::ssa;
use crate::store::{view_prefix, Committed, SharedHistory, State, Stored};

/// `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Strict,
    /// The server default when the parameter is absent.
    #[default]
    Warn,
    Ignore,
}

/// Query parameters the server honours.
#[derive(Clone, Debug, Default)]
pub(crate) struct Params {
    pub(crate) field_manager: Option<String>,
    pub(crate) field_validation: FieldValidation,
    pub(crate) dry_run: bool,
    pub(crate) force: bool,
    pub(crate) label_selector: Option<String>,
    pub(crate) field_selector: Option<String>,
    pub(crate) limit: Option<usize>,
    pub(crate) continue_token: Option<String>,
    pub(crate) resource_version: Option<String>,
    pub(crate) resource_version_match: Option<String>,
    pub(crate) watch: bool,
    pub(crate) allow_watch_bookmarks: bool,
    pub(crate) send_initial_events: bool,
    pub(crate) timeout_seconds: Option<u64>,
    /// The request's `User-Agent` (the field manager when `fieldManager` is absent).
    pub(crate) user_agent: String,
}

impl Params {
    /// Parses a query string with form-urlencoded rules; unknown parameters are ignored.
    pub(crate) fn parse(query: &str) -> Result<Self, ApiError> {
        let mut params = Self::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            let flag = || matches!(value.as_str(), "true" | "1" | "True" | "TRUE");
            match key.as_ref() {
                "fieldManager" => params.field_manager = Some(value),
                "fieldValidation" => {
                    params.field_validation = match value.as_str() {
                        "Strict" => FieldValidation::Strict,
                        "Warn" | "" => FieldValidation::Warn,
                        "Ignore" => FieldValidation::Ignore,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "fieldValidation parameter unsupported: {other:?}"
                            )))
                        }
                    }
                }
                "dryRun" => params.dry_run = value == "All",
                "force" => params.force = flag(),
                "labelSelector" => params.label_selector = Some(value),
                "fieldSelector" => params.field_selector = Some(value),
                "limit" => params.limit = value.parse().ok().filter(|l| *l > 0),
                "continue" => params.continue_token = Some(value).filter(|v| !v.is_empty()),
                "resourceVersion" => {
                    params.resource_version = Some(value).filter(|v| !v.is_empty())
                }
                "resourceVersionMatch" => {
                    params.resource_version_match = Some(value).filter(|v| !v.is_empty())
                }
                "watch" => params.watch = flag(),
                "allowWatchBookmarks" => params.allow_watch_bookmarks = flag(),
                "sendInitialEvents" => params.send_initial_events = flag(),
                "timeoutSeconds" => params.timeout_seconds = value.parse().ok(),
                _ => {}
            }
        }
        Ok(params)
    }
}

/// What a request addresses.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) info: Arc<ResourceInfo>,
    /// Namespace from the path (namespaced kinds; `None` = all namespaces).
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    /// `/status` subresource.
    pub(crate) status: bool,
}

impl Target {
    fn namespace_key(&self) -> String {
        if self.info.namespaced {
            self.namespace.clone().unwrap_or_default()
        } else {
            String::new()
        }
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
}

/// The result of a write.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) object: Value,
    /// `object` already encoded, when the stored bytes are the client's form.
    pub(crate) json: Option<Bytes>,
    pub(crate) code: u16,
    pub(crate) warnings: Vec<String>,
}

impl Outcome {
    fn of_value(object: Value, code: u16, warnings: Vec<String>) -> Self {
        Self {
            object,
            json: None,
            code,
            warnings,
        }
    }

    /// The client's view of a committed object, reusing the stored bytes when they are it.
    fn of_committed(
        info: &ResourceInfo,
        committed: Committed,
        code: u16,
        warnings: Vec<String>,
    ) -> Self {
        match view_json(info, &committed.stored) {
            Some(json) => Self {
                object: committed.value,
                json: Some(json),
                code,
                warnings,
            },
            None => Self::of_value(to_view(info, &committed.value), code, warnings),
        }
    }
}

/// An object read from the store, in the client's form.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// The stored bytes, which already are the client's form.
    Json(Bytes),
    /// The decoded view.
    Value(Value),
}

impl Fetched {
    fn of(info: &ResourceInfo, stored: &Stored) -> Self {
        match view_json(info, stored) {
            Some(json) => Self::Json(json),
            None => Self::Value(to_view(info, &stored.value())),
        }
    }

    /// The decoded object.
    pub(crate) fn into_value(self) -> Value {
        match self {
            Self::Json(json) => serde_json::from_slice(&json).unwrap_or(Value::Null),
            Self::Value(value) => value,
        }
    }
}

/// The stored bytes when a client of `info` gets exactly them (`to_view` would change
/// nothing): every kind but events.k8s.io Events, and custom resources read in the version
/// they were stored in.
pub(crate) fn view_json(info: &ResourceInfo, stored: &Stored) -> Option<Bytes> {
    (info.strategy != Strategy::EventsV1
        && stored.has_prefix(&view_prefix(&info.api_version(), &info.kind)))
    .then(|| stored.json.clone())
}

/// Whether a stored object matches the selectors (decoding it only when they filter).
pub(crate) fn selected(selectors: &Selectors, info: &ResourceInfo, stored: &Stored) -> bool {
    selectors.is_everything() || selectors.matches(info, &stored.value())
}

/// Patch content types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

/// The server core: state plus notification channels.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) state: Mutex<State>,
    /// The watch history (also reachable from the state, for writers).
    pub(crate) history: SharedHistory,
    /// The latest committed resourceVersion (wakes watchers).
    pub(crate) rv_tx: watch::Sender<u64>,
    /// Bumped to close every open watch (test hook).
    pub(crate) close_tx: watch::Sender<u64>,
    /// Wakes the in-process controllers.
    pub(crate) controllers: Notify,
}

impl Core {
    pub(crate) fn new(state: State) -> Self {
        Self {
            history: state.history.clone(),
            state: Mutex::new(state),
            rv_tx: watch::channel(0).0,
            close_tx: watch::channel(0).0,
            controllers: Notify::new(),
        }
    }

    /// Locks the state; a poisoned lock (a panic elsewhere) is recovered, since every write
    /// leaves the state consistent before it can panic.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn registry(&self) -> Arc<Registry> {
        self.lock().registry.clone()
    }

    /// Publishes the new resourceVersion after writes.
    pub(crate) fn notify(&self, state: &State) {
        self.rv_tx.send_replace(state.rv);
        if state.controllers_due {
            self.controllers.notify_one();
        }
    }

    /// GET of one object.
    pub(crate) fn get(&self, target: &Target) -> Result<Fetched, ApiError> {
        let info = &target.info;
        let object = self
            .lock()
            .get(&info.storage, &target.namespace_key(), target.name())
            .ok_or_else(|| ApiError::not_found(&info.group, &info.resource, target.name()))?;
        Ok(Fetched::of(info, &object))
    }

    /// LIST: objects (view form) and the list metadata.
    pub(crate) fn list(
        &self,
        target: &Target,
        params: &Params,
    ) -> Result<(Vec<Fetched>, Value), ApiError> {
        let info = &target.info;
        let selectors = Selectors::parse(
            info,
            params.label_selector.as_deref(),
            params.field_selector.as_deref(),
        )?;
        let state = self.lock();
        if params.resource_version_match.as_deref() == Some("Exact") {
            let requested: u64 = params
                .resource_version
                .as_deref()
                .unwrap_or("0")
                .parse()
                .map_err(|_| ApiError::bad_request("invalid resourceVersion"))?;
            if requested != state.rv {
                return Err(ApiError::expired(requested, state.rv));
            }
        }
        let (list_rv, start_after) = match &params.continue_token {
            Some(token) => decode_continue(token)?,
            None => (state.rv, None),
        };
        let namespace = if info.namespaced {
            target.namespace.as_deref()
        } else {
            None
        };
        let mut items = Vec::new();
        let mut next = None;
        let mut last_key: Option<&(String, String)> = None;
        for (key, object) in state.entries(&info.storage, namespace) {
            if let Some(after) = &start_after {
                if key <= after {
                    continue;
                }
            }
            if !selected(&selectors, info, object) {
                continue;
            }
            if params.limit.is_some_and(|limit| items.len() >= limit) {
                next = last_key.map(|last| encode_continue(list_rv, last));
                break;
            }
            items.push(object.clone());
            last_key = Some(key);
        }
        drop(state);
        let items = items
            .iter()
            .map(|object| Fetched::of(info, object))
            .collect();
        let mut metadata = json!({"resourceVersion": list_rv.to_string()});
        if let Some(token) = next {
            metadata["continue"] = json!(token);
        }
        Ok((items, metadata))
    }

    /// POST.
    pub(crate) fn create(
        &self,
        target: &Target,
        body: Value,
        params: &Params,
    ) -> Result<Outcome, ApiError> {
        ssa::check_options(
            params.field_manager.as_deref(),
            false,
            false,
            "CreateOptions",
        )?;
        let admitted = admit_create(target, body, params)?;
        let mut state = self.lock();
        let outcome = commit_create(&mut state, admitted, params)?;
        self.notify(&state);
        Ok(outcome)
    }

    /// PUT.
    pub(crate) fn update(
        &self,
        target: &Target,
        body: Value,
        params: &Params,
    ) -> Result<Outcome, ApiError> {
        ssa::check_options(
            params.field_manager.as_deref(),
            false,
            false,
            "UpdateOptions",
        )?;
        let mut state = self.lock();
        let info = target.info.clone();
        let old = state
            .get_value(&info.storage, &target.namespace_key(), target.name())
            .ok_or_else(|| ApiError::not_found(&info.group, &info.resource, target.name()))?;
        let body_rv = body
            .get("metadata")
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if body_rv.is_empty() && !info.is_builtin() {
            return Err(ApiError::invalid(
                &info.group,
                &info.kind,
                target.name(),
                vec![Cause::invalid(
                    "metadata.resourceVersion",
                    &json!("0x0"),
                    "must be specified for an update",
                )],
            ));
        }
        if !body_rv.is_empty() && Some(body_rv.as_str()) != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(
                &info.group,
                &info.resource,
                target.name(),
            ));
        }
        if let Some(name) = meta_str(&body, "name") {
            if name != target.name() {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({name}) does not match the name on the URL ({})",
                    target.name()
                )));
            }
        }
        let outcome = update_locked(&mut state, target, &old, body, params, None)?;
        self.notify(&state);
        Ok(outcome)
    }

    /// PATCH (including apply, which may create).
    pub(crate) fn patch(
        &self,
        target: &Target,
        patch_type: PatchType,
        body: &[u8],
        params: &Params,
    ) -> Result<Outcome, ApiError> {
        let info = target.info.clone();
        ssa::check_options(
            params.field_manager.as_deref(),
            params.force,
            patch_type == PatchType::Apply,
            "PatchOptions",
        )?;
        if patch_type == PatchType::Strategic && !info.is_builtin() {
            return Err(ApiError::unsupported_media(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        let patch: Value = match patch_type {
            PatchType::Apply => {
                if params.field_manager.as_deref().is_none_or(str::is_empty) {
                    return Err(ApiError::bad_request(
                        "PATCH, application/apply-patch+yaml requires fieldManager parameter",
                    ));
                }
                serde_yaml::from_slice(body).map_err(|error| {
                    ApiError::bad_request(format!("error decoding YAML: {error}"))
                })?
            }
            _ => serde_json::from_slice(body)
                .map_err(|error| ApiError::bad_request(format!("error decoding patch: {error}")))?,
        };
        let mut state = self.lock();
        let existing = state.get_value(&info.storage, &target.namespace_key(), target.name());
        let Some(old) = existing else {
            if patch_type == PatchType::Apply && !target.status {
                let applied = ssa::applied_config(&info, false, &patch, params.force)?;
                let mut admitted = admit_create(target, patch, params)?;
                admitted.applied = Some(applied);
                let outcome = commit_create(&mut state, admitted, params)?;
                self.notify(&state);
                return Ok(outcome);
            }
            return Err(ApiError::not_found(
                &info.group,
                &info.resource,
                target.name(),
            ));
        };
        let current = to_view(&info, &old);
        let mut patched = current.clone();
        let rules = list_rules(&info);
        let mut applied = None;
        let result = match patch_type {
            PatchType::Merge => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request("merge patch must be a JSON object"));
                }
                merge_patch(&mut patched, &patch);
                Ok(())
            }
            PatchType::Json => json_patch(&mut patched, &patch),
            PatchType::Strategic => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request(
                        "strategic merge patch must be a JSON object",
                    ));
                }
                strategic_merge(&mut patched, &patch, &*rules)
            }
            PatchType::Apply => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request("apply patch must be an object"));
                }
                let manager =
                    ssa::manager_name(params.field_manager.as_deref(), &params.user_agent);
                let (merged, config) = ssa::apply(
                    &info,
                    target.status,
                    &manager,
                    &current,
                    &patch,
                    params.force,
                )?;
                patched = merged;
                applied = Some(config);
                Ok(())
            }
        };
        match result {
            Ok(()) => {}
            Err(PatchError::Malformed(message)) => return Err(ApiError::bad_request(message)),
            Err(PatchError::Failed(message)) => {
                return Err(ApiError::invalid(
                    &info.group,
                    &info.kind,
                    target.name(),
                    vec![Cause {
                        reason: "FieldValueInvalid",
                        field: String::new(),
                        message,
                    }],
                ))
            }
        }
        if meta_str(&patched, "resourceVersion") != meta_str(&current, "resourceVersion") {
            return Err(ApiError::conflict(
                &info.group,
                &info.resource,
                target.name(),
            ));
        }
        let outcome = update_locked(&mut state, target, &old, patched, params, applied)?;
        self.notify(&state);
        Ok(outcome)
    }

    /// DELETE of one object.
    pub(crate) fn delete(
        &self,
        target: &Target,
        options: &Value,
        params: &Params,
    ) -> Result<Outcome, ApiError> {
        let mut state = self.lock();
        let outcome = delete_locked(
            &mut state,
            &target.info,
            &target.namespace_key(),
            target.name(),
            options,
            params.dry_run,
        )?;
        self.notify(&state);
        Ok(Outcome::of_value(
            to_view(&target.info, &outcome),
            200,
            Vec::new(),
        ))
    }

    /// DELETE of a collection.
    pub(crate) fn delete_collection(
        &self,
        target: &Target,
        options: &Value,
        params: &Params,
    ) -> Result<Vec<Value>, ApiError> {
        let info = &target.info;
        let selectors = Selectors::parse(
            info,
            params.label_selector.as_deref(),
            params.field_selector.as_deref(),
        )?;
        let mut state = self.lock();
        let namespace = if info.namespaced {
            target.namespace.as_deref()
        } else {
            None
        };
        let victims: Vec<(String, String)> = state
            .entries(&info.storage, namespace)
            .filter(|(_, object)| selected(&selectors, info, object))
            .map(|(key, _)| key.clone())
            .collect();
        let mut deleted = Vec::new();
        for (namespace, name) in victims {
            let object =
                delete_locked(&mut state, info, &namespace, &name, options, params.dry_run)?;
            deleted.push(to_view(info, &object));
        }
        self.notify(&state);
        Ok(deleted)
    }
}

/// The stored form → what the client asked for (another CR version, or the events.k8s.io view).
pub(crate) fn to_view(info: &ResourceInfo, object: &Value) -> Value {
    match info.strategy {
        Strategy::EventsV1 => core_to_events(object),
        Strategy::Custom => {
            let mut view = object.clone();
            if let Some(map) = view.as_object_mut() {
                map.insert("apiVersion".into(), json!(info.api_version()));
                map.insert("kind".into(), json!(info.kind));
            }
            view
        }
        _ => {
            let mut view = object.clone();
            if let Some(map) = view.as_object_mut() {
                map.insert("apiVersion".into(), json!(info.api_version()));
                map.insert("kind".into(), json!(info.kind));
            }
            view
        }
    }
}

fn encode_continue(rv: u64, key: &(String, String)) -> String {
    let raw = json!({"rv": rv, "ns": key.0, "name": key.1}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Result<(u64, Option<(String, String)>), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid: illegal base64 data");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = value.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let namespace = value.get("ns").and_then(Value::as_str).ok_or_else(bad)?;
    let name = value.get("name").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, Some((namespace.to_string(), name.to_string()))))
}

/// List merge rules for strategic / apply patches of a kind.
/// A list-merge rule lookup by path.
type ListRules = Box<dyn Fn(&[&str]) -> ListMerge>;

fn list_rules(info: &Arc<ResourceInfo>) -> ListRules {
    let info = info.clone();
    Box::new(move |path: &[&str]| {
        if let Some(custom) = &info.custom {
            match path {
                ["metadata", "finalizers"] => ListMerge::Set,
                ["metadata", "ownerReferences"] => ListMerge::Map(vec!["uid".into()]),
                _ => schema::schema_at(&custom.schema, path)
                    .map(schema::list_merge)
                    .unwrap_or(ListMerge::Atomic),
            }
        } else {
            builtin_list_merge(&info.kind, path)
        }
    })
}

fn namespace_of_body(body: &Value) -> Option<String> {
    meta_str(body, "namespace")
        .filter(|ns| !ns.is_empty())
        .map(str::to_string)
}

/// Checks body kind / apiVersion / namespace against the request, prunes unknown fields,
/// applies schema defaults and validation for CRs. Returns warnings.
///
/// `old` is the stored object an update replaces: a built-in's top-level fields equal to it
/// were admitted before, so only the others go through the typed round trip.
fn admit_body(
    info: &ResourceInfo,
    target: &Target,
    body: &mut Value,
    params: &Params,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    let name = target
        .name
        .clone()
        .or_else(|| meta_str(body, "name").map(str::to_string))
        .unwrap_or_default();
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    if let Some(kind) = body.get("kind").and_then(Value::as_str) {
        if kind != info.kind && !kind.is_empty() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({}) or the kind ({kind}) does not match {}",
                body.get("apiVersion").and_then(Value::as_str).unwrap_or_default(),
                info.api_version(),
                info.kind
            )));
        }
    }
    if info.namespaced {
        if let (Some(body_namespace), Some(path_namespace)) =
            (namespace_of_body(body), target.namespace.as_ref())
        {
            if &body_namespace != path_namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        let namespace = target.namespace.clone().unwrap_or_default();
        metadata_mut(body).insert("namespace".into(), json!(namespace));
    } else {
        metadata_mut(body).remove("namespace");
    }
    if let Some(map) = body.as_object_mut() {
        map.insert("apiVersion".into(), json!(info.api_version()));
        map.insert("kind".into(), json!(info.kind));
    }
    let unknown = match &info.custom {
        Some(custom) => schema::prune(body, &custom.schema),
        None => match old.and_then(Value::as_object) {
            Some(old) => crate::builtin::prune_unknown_changed(&info.group, &info.kind, body, old),
            None => crate::builtin::prune_unknown(&info.group, &info.kind, body),
        },
    };
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        match params.field_validation {
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|field| format!("unknown field \"{field}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "{} in body: strict decoding error: {}",
                    qualified_kind(info, &name),
                    list.join(", ")
                ))
                .with_message_prefix_free());
            }
            FieldValidation::Warn => warnings.extend(
                unknown
                    .iter()
                    .map(|field| format!("unknown field \"{field}\"")),
            ),
            FieldValidation::Ignore => {}
        }
    }
    if let Some(custom) = &info.custom {
        schema::apply_defaults(body, &custom.schema);
    }
    Ok(warnings)
}

fn qualified_kind(info: &ResourceInfo, name: &str) -> String {
    let kind = if info.group.is_empty() {
        info.kind.clone()
    } else {
        format!("{}.{}", info.kind, info.group)
    };
    format!("{kind} \"{name}\"")
}

impl ApiError {
    /// Kubernetes' strict-decoding message is `strict decoding error: …`; keep the whole text.
    fn with_message_prefix_free(mut self) -> Self {
        if let Some(position) = self.message.find("strict decoding error") {
            self.message = self.message[position..].to_string();
        }
        self
    }
}

fn validate_name(info: &ResourceInfo, name: &str) -> Option<Cause> {
    // RBAC objects only need a valid path segment (`system:controller:…` names).
    let path_segment = info.group == "rbac.authorization.k8s.io";
    let ok = match info.strategy {
        Strategy::Service => is_dns1035_label(name),
        Strategy::Namespace => is_dns1123_label(name),
        _ if path_segment => !matches!(name, "." | "..") && !name.contains(['/', '%']),
        _ => is_dns1123_subdomain(name),
    };
    (!ok).then(|| {
        let detail = match info.strategy {
            Strategy::Service => "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            Strategy::Namespace => "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            _ if path_segment => "may not be '.' or '..' and may not contain '/' or '%'",
            _ => "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        };
        Cause::invalid("metadata.name", &json!(name), detail)
    })
}

/// Checks the namespace of a namespaced create exists and is not terminating.
fn check_namespace(
    state: &State,
    info: &ResourceInfo,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    if !info.namespaced {
        return Ok(());
    }
    let key: StorageKey = (String::new(), "namespaces".into());
    let Some(ns) = state.get(&key, "", namespace) else {
        return Err(ApiError::not_found("", "namespaces", namespace));
    };
    if ns.deleting {
        return Err(ApiError::forbidden(
            &info.group,
            &info.resource,
            name,
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                qualified(&info.group, &info.resource)
            ),
        ));
    }
    Ok(())
}

pub(crate) fn create_locked(
    state: &mut State,
    target: &Target,
    body: Value,
    params: &Params,
) -> Result<Outcome, ApiError> {
    let admitted = admit_create(target, body, params)?;
    commit_create(state, admitted, params)
}

/// A create body checked against its request, before the store is involved.
pub(crate) struct AdmittedCreate {
    target: Target,
    body: Value,
    warnings: Vec<String>,
    /// The configuration of a create by server-side apply.
    applied: Option<ssa::Applied>,
}

/// The part of a create that needs no state (request/body consistency, unknown-field pruning,
/// schema defaults): run outside the store lock.
pub(crate) fn admit_create(
    target: &Target,
    mut body: Value,
    params: &Params,
) -> Result<AdmittedCreate, ApiError> {
    let info = target.info.clone();
    if target.status
        || target.name.is_some()
            && target.name.as_deref() != meta_str(&body, "name")
            && meta_str(&body, "name").is_some()
    {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    if info.namespaced && target.namespace.is_none() {
        let namespace = namespace_of_body(&body).ok_or_else(|| {
            ApiError::bad_request(
                "the server could not find the requested resource (namespace required)",
            )
        })?;
        let mut scoped = target.clone();
        scoped.namespace = Some(namespace);
        return admit_create(&scoped, body, params);
    }
    let warnings = admit_body(&info, target, &mut body, params, None)?;
    Ok(AdmittedCreate {
        target: target.clone(),
        body,
        warnings,
        applied: None,
    })
}

/// The part of a create that reads and writes the store.
pub(crate) fn commit_create(
    state: &mut State,
    admitted: AdmittedCreate,
    params: &Params,
) -> Result<Outcome, ApiError> {
    let AdmittedCreate {
        target,
        mut body,
        mut warnings,
        applied,
    } = admitted;
    let target = &target;
    let info = target.info.clone();
    // Name.
    let meta = metadata_mut(&mut body);
    let requested_managed_fields = meta.get("managedFields").cloned();
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        name = target.name.clone().unwrap_or_default();
    }
    if name.is_empty() {
        if let Some(prefix) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
        {
            name = format!("{prefix}{}", generate_suffix());
        }
    }
    if name.is_empty() {
        return Err(ApiError::invalid(
            &info.group,
            &info.kind,
            "",
            vec![Cause::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    }
    meta.insert("name".into(), json!(name));
    let namespace = target.namespace_key();
    // System metadata.
    meta.insert("uid".into(), json!(new_uid()));
    meta.insert(
        "creationTimestamp".into(),
        json!(format_rfc3339(now_secs())),
    );
    for field in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
        "selfLink",
        "managedFields",
    ] {
        meta.remove(field);
    }
    if info.has_generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    let mut causes = Vec::new();
    if let Some(cause) = validate_name(&info, &name) {
        causes.push(cause);
    }
    if info.has_status && info.strategy != Strategy::Node {
        if let Some(map) = body.as_object_mut() {
            map.remove("status");
        }
    }
    check_namespace(state, &info, &namespace, &name)?;
    // What the request set, before the strategy allocates.
    let requested_spec = (info.strategy == Strategy::Service)
        .then(|| body.get("spec").cloned())
        .flatten();
    // Per-kind preparation.
    let mut service_taken = None;
    match info.strategy {
        Strategy::Namespace => {
            let meta = metadata_mut(&mut body);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            let spec = body
                .as_object_mut()
                .map(|m| m.entry("spec").or_insert_with(|| json!({})).clone());
            if let (Some(map), Some(mut spec)) = (body.as_object_mut(), spec) {
                if spec.get("finalizers").is_none() {
                    spec["finalizers"] = json!(["kubernetes"]);
                }
                map.insert("spec".into(), spec);
                map.insert("status".into(), json!({"phase": "Active"}));
            }
        }
        Strategy::Service if causes.is_empty() => match state.services.prepare(&mut body, None) {
            Ok((taken, _)) => service_taken = Some(taken),
            Err(service_causes) => causes.extend(service_causes),
        },
        Strategy::EventsV1 => causes.extend(validate_events_v1(&body, None)),
        Strategy::Generic if info.kind == "Secret" => {
            if let Some(map) = body.as_object_mut() {
                let secret_type = map.entry("type").or_insert_with(|| json!("Opaque"));
                if secret_type.as_str().is_none_or(str::is_empty) {
                    *secret_type = json!("Opaque");
                }
            }
        }
        Strategy::Crd => {
            causes.extend(validate_crd(&body));
            if causes.is_empty() {
                prepare_crd(&mut body, None);
            }
        }
        Strategy::Custom => {
            if let Some(custom) = &info.custom {
                causes.extend(schema::validate(&body, &custom.schema));
                causes.extend(custom.rules.validate(&body, None));
            }
        }
        _ => {}
    }
    let release = |state: &mut State, taken: &Option<crate::service::Allocation>| {
        if let Some(taken) = taken {
            state.services.release(taken);
        }
    };
    if !causes.is_empty() {
        release(state, &service_taken);
        return Err(ApiError::invalid(&info.group, &info.kind, &name, causes));
    }
    if state.get(&info.storage, &namespace, &name).is_some() {
        release(state, &service_taken);
        return Err(ApiError::already_exists(&info.group, &info.resource, &name));
    }
    let mut write = ssa::Write::new(params.field_manager.as_deref(), &params.user_agent, applied);
    if info.strategy == Strategy::Service {
        write = write.service_allocations(
            requested_spec.as_ref(),
            body.get("spec").unwrap_or(&Value::Null),
        );
    }
    if let Err(error) = ssa::record(
        &info,
        false,
        &write,
        None,
        requested_managed_fields,
        &mut body,
    ) {
        release(state, &service_taken);
        return Err(error);
    }
    let stored = to_storage(&info, body);
    if params.dry_run {
        release(state, &service_taken);
        let mut view = to_view(&info, &stored);
        metadata_mut(&mut view).remove("resourceVersion");
        return Ok(Outcome::of_value(view, 201, warnings));
    }
    let committed = state.put(&info.storage, stored);
    if info.strategy == Strategy::Crd {
        rebuild_registry(state);
    }
    warnings.dedup();
    Ok(Outcome::of_committed(&info, committed, 201, warnings))
}

/// The client's form → the stored form.
fn to_storage(info: &ResourceInfo, body: Value) -> Value {
    match (info.strategy, &info.custom) {
        (Strategy::EventsV1, _) => events_to_core(&body),
        (Strategy::Custom, Some(custom)) => {
            let mut body = body;
            if let Some(map) = body.as_object_mut() {
                map.insert(
                    "apiVersion".into(),
                    json!(format!("{}/{}", info.group, custom.storage_version)),
                );
            }
            body
        }
        _ => body,
    }
}

/// Everything outside `metadata` and (when it is a subresource) `status`.
fn spec_part(info: &ResourceInfo, object: &Value) -> Map<String, Value> {
    object
        .as_object()
        .map(|map| {
            map.iter()
                .filter(|(key, _)| {
                    !(matches!(key.as_str(), "metadata" | "apiVersion" | "kind")
                        || info.has_status && key.as_str() == "status")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn update_locked(
    state: &mut State,
    target: &Target,
    old: &Value,
    body: Value,
    params: &Params,
    applied: Option<ssa::Applied>,
) -> Result<Outcome, ApiError> {
    let info = target.info.clone();
    let name = target.name().to_string();
    let namespace = target.namespace_key();
    let mut body = body;
    let requested_managed_fields = body
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .cloned();
    let mut warnings = admit_body(&info, target, &mut body, params, Some(old))?;
    let old_view = to_view(&info, old);
    // Status subresource / main resource split.
    let mut new = if target.status {
        match info.strategy {
            Strategy::Custom | Strategy::Crd => {
                let mut merged = old_view.clone();
                if let Some(map) = merged.as_object_mut() {
                    match body.get("status") {
                        Some(status) => map.insert("status".into(), status.clone()),
                        None => map.remove("status"),
                    };
                }
                merged
            }
            _ => {
                let mut merged = body;
                if let Some(map) = merged.as_object_mut() {
                    map.retain(|key, _| {
                        matches!(key.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                    });
                    for (key, value) in spec_part(&info, &old_view) {
                        map.insert(key, value);
                    }
                }
                if info.strategy == Strategy::Pod {
                    let owners = old_view
                        .get("metadata")
                        .and_then(|m| m.get("ownerReferences"))
                        .cloned();
                    let meta = metadata_mut(&mut merged);
                    match owners {
                        Some(owners) => meta.insert("ownerReferences".into(), owners),
                        None => meta.remove("ownerReferences"),
                    };
                }
                merged
            }
        }
    } else {
        let mut merged = body;
        if info.has_status {
            if let Some(map) = merged.as_object_mut() {
                match old_view.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
            }
        }
        merged
    };
    // Immutable and system metadata come from the stored object.
    {
        let old_meta = old_view.get("metadata").and_then(Value::as_object);
        let meta = metadata_mut(&mut new);
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
            "name",
            "namespace",
        ] {
            match old_meta.and_then(|old_meta| old_meta.get(field)) {
                Some(value) => meta.insert(field.into(), value.clone()),
                None => meta.remove(field),
            };
        }
        meta.remove("managedFields");
        meta.remove("selfLink");
    }
    let mut causes = Vec::new();
    // No new finalizers while deleting.
    let deleting = old_view
        .get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some();
    if deleting {
        let old_finalizers = finalizers(&old_view);
        if finalizers(&new).iter().any(|f| !old_finalizers.contains(f)) {
            causes.push(Cause::forbidden(
                "metadata.finalizers",
                "no new finalizers can be added if the object is being deleted",
            ));
        }
    }
    let mut service_change = None;
    match info.strategy {
        Strategy::Service => {
            if target.status {
                crate::service::set_defaults(&mut new);
                causes.extend(crate::service::validate_status(&new));
            } else if causes.is_empty() {
                match state.services.prepare(&mut new, Some(&old_view)) {
                    Ok(change) => service_change = Some(change),
                    Err(service_causes) => causes.extend(service_causes),
                }
            }
        }
        Strategy::EventsV1 => causes.extend(validate_events_v1(&new, Some(&old_view))),
        Strategy::Crd if !target.status => {
            causes.extend(validate_crd(&new));
            if causes.is_empty() {
                prepare_crd(&mut new, Some(&old_view));
            }
        }
        Strategy::Custom => {
            if let Some(custom) = &info.custom {
                causes.extend(schema::validate(&new, &custom.schema));
                causes.extend(custom.rules.validate(&new, Some(&old_view)));
            }
        }
        Strategy::Namespace => {
            if let Some(map) = new.as_object_mut() {
                if !target.status {
                    if let Some(status) = old_view.get("status") {
                        map.insert("status".into(), status.clone());
                    }
                }
            }
        }
        _ => {}
    }
    let undo =
        |state: &mut State,
         change: &Option<(crate::service::Allocation, crate::service::Allocation)>| {
            if let Some((taken, _)) = change {
                state.services.release(taken);
            }
        };
    if !causes.is_empty() {
        undo(state, &service_change);
        return Err(ApiError::invalid(&info.group, &info.kind, &name, causes));
    }
    // Generation.
    if info.has_generation && spec_part(&info, &new) != spec_part(&info, &old_view) {
        let generation = old_view
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        metadata_mut(&mut new).insert("generation".into(), json!(generation + 1));
    }
    let write = ssa::Write::new(params.field_manager.as_deref(), &params.user_agent, applied);
    if let Err(error) = ssa::record(
        &info,
        target.status,
        &write,
        Some(&old_view),
        requested_managed_fields,
        &mut new,
    ) {
        undo(state, &service_change);
        return Err(error);
    }
    let stored = to_storage(&info, new);
    // No-op writes keep the RV and emit nothing.
    if &stored == old {
        undo(state, &service_change);
        return Ok(Outcome::of_value(old_view, 200, warnings));
    }
    if params.dry_run {
        undo(state, &service_change);
        return Ok(Outcome::of_value(to_view(&info, &stored), 200, warnings));
    }
    if let Some((_, freed)) = &service_change {
        state.services.release(freed);
    }
    let finished = deleting && finalizers(&stored).is_empty();
    warnings.dedup();
    if finished {
        let last = finish_delete(state, &info, &namespace, &name).unwrap_or(stored);
        if info.strategy == Strategy::Crd {
            rebuild_registry(state);
        }
        return Ok(Outcome::of_value(to_view(&info, &last), 200, warnings));
    }
    let committed = state.put(&info.storage, stored);
    if info.strategy == Strategy::Crd {
        rebuild_registry(state);
    }
    Ok(Outcome::of_committed(&info, committed, 200, warnings))
}

/// Removes an object for good, releasing what it held.
fn finish_delete(
    state: &mut State,
    info: &ResourceInfo,
    namespace: &str,
    name: &str,
) -> Option<Value> {
    let removed = state.remove(&info.storage, namespace, name)?.value;
    if info.strategy == Strategy::Service {
        state.services.release(&allocation_of(&removed));
    }
    if info.strategy == Strategy::Crd {
        rebuild_registry(state);
    }
    Some(removed)
}

pub(crate) fn delete_locked(
    state: &mut State,
    info: &Arc<ResourceInfo>,
    namespace: &str,
    name: &str,
    options: &Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let old = state
        .get_value(&info.storage, namespace, name)
        .ok_or_else(|| ApiError::not_found(&info.group, &info.resource, name))?;
    if let Some(preconditions) = options.get("preconditions") {
        if let Some(uid) = preconditions.get("uid").and_then(Value::as_str) {
            let actual = meta_str(&old, "uid").unwrap_or_default();
            if uid != actual {
                return Err(ApiError::conflict_message(
                    &info.group,
                    &info.resource,
                    name,
                    &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                ));
            }
        }
        if let Some(rv) = preconditions.get("resourceVersion").and_then(Value::as_str) {
            let actual = meta_str(&old, "resourceVersion").unwrap_or_default();
            if rv != actual {
                return Err(ApiError::conflict_message(
                    &info.group,
                    &info.resource,
                    name,
                    &format!("the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({actual}). The object might have been modified"),
                ));
            }
        }
    }
    if dry_run {
        return Ok(old);
    }
    let orphan = options.get("propagationPolicy").and_then(Value::as_str) == Some("Orphan")
        || options.get("orphanDependents").and_then(Value::as_bool) == Some(true);
    let is_namespace = info.strategy == Strategy::Namespace;
    if is_namespace || !finalizers(&old).is_empty() {
        if old
            .get("metadata")
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some()
        {
            return Ok(old);
        }
        let mut marked = old;
        let meta = metadata_mut(&mut marked);
        meta.insert(
            "deletionTimestamp".into(),
            json!(format_rfc3339(now_secs())),
        );
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if is_namespace {
            if let Some(map) = marked.as_object_mut() {
                map.insert("status".into(), json!({"phase": "Terminating"}));
            }
        }
        return Ok(state.put(&info.storage, marked).value);
    }
    let removed = finish_delete(state, info, namespace, name)
        .ok_or_else(|| ApiError::not_found(&info.group, &info.resource, name))?;
    if orphan {
        if let Some(uid) = meta_str(&removed, "uid") {
            orphan_dependents(state, uid);
        }
    }
    Ok(removed)
}

/// Strips owner references to `uid` from every object (propagationPolicy Orphan).
fn orphan_dependents(state: &mut State, uid: &str) {
    let mut updates = Vec::new();
    for (storage, objects) in &state.objects {
        for stored in objects.values() {
            if !stored.owner_uids.iter().any(|owner| &**owner == uid) {
                continue;
            }
            let object = stored.value();
            let Some(owners) = object
                .get("metadata")
                .and_then(|m| m.get("ownerReferences"))
                .and_then(Value::as_array)
            else {
                continue;
            };
            if owners
                .iter()
                .any(|o| o.get("uid").and_then(Value::as_str) == Some(uid))
            {
                let mut updated = object.clone();
                let kept: Vec<Value> = owners
                    .iter()
                    .filter(|o| o.get("uid").and_then(Value::as_str) != Some(uid))
                    .cloned()
                    .collect();
                let meta = metadata_mut(&mut updated);
                if kept.is_empty() {
                    meta.remove("ownerReferences");
                } else {
                    meta.insert("ownerReferences".into(), json!(kept));
                }
                updates.push((storage.clone(), updated));
            }
        }
    }
    for (storage, updated) in updates {
        state.put(&storage, updated);
    }
}

/// Rebuilds the registry from the stored CRDs.
pub(crate) fn rebuild_registry(state: &mut State) {
    let key: StorageKey = (
        "apiextensions.k8s.io".into(),
        "customresourcedefinitions".into(),
    );
    let crds = state.list_values(&key, None);
    let references: Vec<&Value> = crds.iter().collect();
    let epoch = state.registry.epoch + 1;
    state.registry = Arc::new(Registry::build(&references, epoch));
}

const CRD_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// CRD validation: names, scope, versions, structural schemas, CEL rules.
fn validate_crd(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let text = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let group = text(spec.get("group"));
    let plural = text(spec.get("names").and_then(|n| n.get("plural")));
    let kind = text(spec.get("names").and_then(|n| n.get("kind")));
    let name = meta_str(crd, "name").unwrap_or_default();
    if group.is_empty() {
        causes.push(Cause::required("spec.group", ""));
    } else if !group.contains('.') || !is_dns1123_subdomain(&group) {
        causes.push(Cause::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural", ""));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind", ""));
    }
    if name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = text(spec.get("scope"));
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(Cause::not_supported(
            "spec.scope",
            &json!(scope),
            &["Cluster".into(), "Namespaced".into()],
        ));
    }
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::invalid(
            "spec.versions",
            &json!([]),
            "must have exactly one version marked as storage version",
        ));
    }
    let storage_count = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage_count != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &json!(storage_count),
            "must have exactly one version marked as storage version",
        ));
    }
    for (index, version) in versions.iter().enumerate() {
        let path = format!("spec.versions[{index}].schema.openAPIV3Schema");
        match version.get("schema").and_then(|s| s.get("openAPIV3Schema")) {
            Some(schema_value) => {
                schema::check_structural(schema_value, &path, &mut causes);
                if let Err(errors) = CompiledRules::compile(schema_value) {
                    for error in errors {
                        causes.push(Cause::invalid(
                            format!(
                                "spec.versions[{index}].schema.{}.x-kubernetes-validations",
                                error.path
                            ),
                            &json!(error.rule),
                            format!("compilation failed: {}", error.detail),
                        ));
                    }
                }
            }
            None => causes.push(Cause::required(path, "schemas are required")),
        }
    }
    causes
}

/// Sets the CRD status an established CRD shows, and the cleanup finalizer.
fn prepare_crd(crd: &mut Value, old: Option<&Value>) {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let names = spec.get("names").cloned().unwrap_or_else(|| json!({}));
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut accepted = names.clone();
    if accepted.get("singular").is_none() {
        accepted["singular"] = json!(kind.to_ascii_lowercase());
    }
    if accepted.get("listKind").is_none() {
        accepted["listKind"] = json!(format!("{kind}List"));
    }
    if let Some(names) = crd
        .get_mut("spec")
        .and_then(|s| s.get_mut("names"))
        .and_then(Value::as_object_mut)
    {
        names
            .entry("singular")
            .or_insert_with(|| json!(kind.to_ascii_lowercase()));
        names
            .entry("listKind")
            .or_insert_with(|| json!(format!("{kind}List")));
    }
    let storage = spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    let mut stored_versions: Vec<String> = old
        .and_then(|o| o.get("status"))
        .and_then(|s| s.get("storedVersions"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !stored_versions.contains(&storage) {
        stored_versions.push(storage);
    }
    let transition = old
        .and_then(|o| o.get("status"))
        .and_then(|s| s.get("conditions"))
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("lastTransitionTime"))
        .cloned()
        .unwrap_or_else(|| json!(format_rfc3339(now_secs())));
    let status = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": transition},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": transition},
        ],
        "storedVersions": stored_versions,
    });
    if let Some(map) = crd.as_object_mut() {
        map.insert("status".into(), status);
    }
    let meta = metadata_mut(crd);
    let deleting = meta.contains_key("deletionTimestamp");
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        if !deleting && old.is_none() && !list.iter().any(|f| f == CRD_FINALIZER) {
            list.push(json!(CRD_FINALIZER));
        }
    }
    if meta.get("finalizers").is_some_and(|f| f == &json!([])) {
        meta.remove("finalizers");
    }
}
