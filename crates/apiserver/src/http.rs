//! HTTP/1.1 front end: routing, content negotiation, body limits, the request log and the
//! `/__stand-in/` test hooks (reference §3, §4, §7).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};

use crate::api::{Core, Fetched, Outcome, Params, PatchType, Target};
use crate::error::ApiError;
use crate::table::{partial_metadata, partial_metadata_list, table};
use crate::watch::{self, Format};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Requests kept in the request log.
const REQUEST_LOG_MAX: usize = 20_000;

/// One logged request (test hook).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Request Content-Type, if any.
    pub content_type: String,
}

/// An injected failure for the next writes (test hook).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FailWrites {
    pub(crate) remaining: u32,
    pub(crate) code: u16,
    pub(crate) path_contains: String,
}

/// Mutable test-hook state.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    pub(crate) log: std::collections::VecDeque<LoggedRequest>,
    pub(crate) fail_writes: Option<FailWrites>,
    pub(crate) latency_ms: u64,
    /// Apply `latency_ms` to watch requests only.
    pub(crate) latency_watch_only: bool,
}

/// Everything a connection handler needs.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) core: Arc<Core>,
    pub(crate) hooks: Mutex<Hooks>,
    pub(crate) body_max_bytes: usize,
    pub(crate) bookmark_interval: Duration,
}

impl Shared {
    pub(crate) fn hooks(&self) -> std::sync::MutexGuard<'_, Hooks> {
        self.hooks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    json_response_typed(code, value, "application/json")
}

fn json_response_typed(code: u16, value: &Value, content_type: &str) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn error_response(error: &ApiError) -> Response<Body> {
    json_response(error.code, &error.status())
}

fn text_response(code: u16, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Entry point for every request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let content_type = header_text(&request, header::CONTENT_TYPE);
    let accept = header_text(&request, header::ACCEPT);
    let user_agent = header_text(&request, header::USER_AGENT);
    let latency_ms = {
        let mut hooks = shared.hooks();
        if !path.starts_with("/__stand-in/") {
            if hooks.log.len() >= REQUEST_LOG_MAX {
                hooks.log.pop_front();
            }
            hooks.log.push_back(LoggedRequest {
                method: method.to_string(),
                path: path.clone(),
                query: query.clone(),
                content_type: content_type.clone(),
            });
        }
        let is_watch = query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1");
        if hooks.latency_watch_only && !is_watch {
            0
        } else {
            hooks.latency_ms
        }
    };
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    let body = match Limited::new(request.into_body(), shared.body_max_bytes)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Ok(error_response(&ApiError::too_large(shared.body_max_bytes)));
            }
            return Ok(error_response(&ApiError::bad_request(format!(
                "error reading the request body: {error}"
            ))));
        }
    };
    let context = RequestContext {
        method,
        path,
        query,
        content_type,
        accept,
        user_agent,
        body,
    };
    let response = match route(&shared, &context).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    };
    Ok(response)
}

fn header_text<B>(request: &Request<B>, name: header::HeaderName) -> String {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

struct RequestContext {
    method: Method,
    path: String,
    query: String,
    content_type: String,
    accept: String,
    user_agent: String,
    body: Bytes,
}

async fn route(shared: &Arc<Shared>, request: &RequestContext) -> Result<Response<Body>, ApiError> {
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    let get = request.method == Method::GET;
    match segments.as_slice() {
        ["version"] if get => Ok(json_response(200, &version_info())),
        ["healthz" | "readyz" | "livez", ..] if get => Ok(text_response(200, "ok")),
        ["__stand-in", hook] => hooks(shared, request, hook),
        ["api"] if get => Ok(discovery(shared, request, true)),
        ["apis"] if get => Ok(discovery(shared, request, false)),
        ["openapi", "v3"] if get => Ok(json_response(200, &shared.core.registry().openapi_index())),
        ["openapi", "v3", "api", version] if get => shared
            .core
            .registry()
            .openapi_group_version("", version)
            .map(|doc| json_response(200, &doc))
            .ok_or_else(ApiError::no_route),
        ["openapi", "v3", "apis", group, version] if get => shared
            .core
            .registry()
            .openapi_group_version(group, version)
            .map(|doc| json_response(200, &doc))
            .ok_or_else(ApiError::no_route),
        ["api", version] if get => shared
            .core
            .registry()
            .api_resource_list("", version)
            .map(|doc| json_response(200, &doc))
            .ok_or_else(ApiError::no_route),
        ["apis", group] if get => shared
            .core
            .registry()
            .api_group_doc(group)
            .map(|doc| json_response(200, &doc))
            .ok_or_else(ApiError::no_route),
        ["apis", group, version] if get => shared
            .core
            .registry()
            .api_resource_list(group, version)
            .map(|doc| json_response(200, &doc))
            .ok_or_else(ApiError::no_route),
        ["api", version, rest @ ..] => resource(shared, request, "", version, rest).await,
        ["apis", group, version, rest @ ..] => {
            resource(shared, request, group, version, rest).await
        }
        _ => Err(ApiError::no_route()),
    }
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.4-ironlb-stand-in",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// Picks the aggregated discovery version the client asked for, if any.
fn aggregated_version(accept: &str) -> Option<&'static str> {
    for entry in accept.split(',') {
        let parameters: Vec<&str> = entry.split(';').map(str::trim).collect();
        let has = |wanted: &str| parameters.contains(&wanted);
        if has("as=APIGroupDiscoveryList") && has("g=apidiscovery.k8s.io") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

fn discovery(shared: &Shared, request: &RequestContext, legacy: bool) -> Response<Body> {
    let registry = shared.core.registry();
    match aggregated_version(&request.accept) {
        Some(version) => {
            let mut doc = registry.aggregated(legacy);
            doc["apiVersion"] = json!(format!("apidiscovery.k8s.io/{version}"));
            json_response_typed(
                200,
                &doc,
                &format!(
                    "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
                ),
            )
        }
        None if legacy => json_response(200, &registry.api_versions()),
        None => json_response(200, &registry.api_group_list()),
    }
}

fn response_format(accept: &str) -> Format {
    if accept.contains("as=Table") {
        Format::Table
    } else if accept.contains("as=PartialObjectMetadata") {
        Format::Metadata
    } else {
        Format::Json
    }
}

fn with_warnings(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    for warning in warnings {
        let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append("Warning", value);
        }
    }
    response
}

fn parse_body(
    request: &RequestContext,
    kind: &str,
    allow_protobuf: bool,
) -> Result<Value, ApiError> {
    let content_type = request
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    match content_type {
        "application/vnd.kubernetes.protobuf" => {
            if allow_protobuf {
                crate::protobuf::decode(kind, &request.body)
            } else {
                Err(ApiError::unsupported_media(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
                ))
            }
        }
        "application/yaml" => serde_yaml::from_slice(&request.body).map_err(|error| ApiError::bad_request(format!("error decoding YAML: {error}"))),
        "" | "application/json" | "*/*" => {
            if request.body.is_empty() {
                return Err(ApiError::bad_request("the request body is empty"));
            }
            serde_json::from_slice(&request.body).map_err(|error| {
                ApiError::bad_request(format!("couldn't get version/kind; json parse error: {error}"))
            })
        }
        other => Err(ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format ({other}) - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        ))),
    }
}

async fn resource(
    shared: &Arc<Shared>,
    request: &RequestContext,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let registry = shared.core.registry();
    // Split namespace / resource / name / subresource.
    let (namespace, rest) = match rest {
        ["namespaces", namespace, resource, tail @ ..]
            if group.is_empty() || !resource.is_empty() =>
        {
            // `/api/v1/namespaces/{name}/status` is the Namespace status subresource.
            if group.is_empty() && matches!(*resource, "status" | "finalize") && tail.is_empty() {
                (None, rest)
            } else {
                (Some((*namespace).to_string()), &rest[2..])
            }
        }
        _ => (None, rest),
    };
    let (resource_name, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some((*name).to_string()), None),
        [resource, name, sub] => (*resource, Some((*name).to_string()), Some(*sub)),
        _ => return Err(ApiError::no_route()),
    };
    let info = registry
        .get(group, version, resource_name)
        .ok_or_else(ApiError::no_route)?;
    if namespace.is_some() && !info.namespaced {
        return Err(ApiError::no_route());
    }
    let status = match subresource {
        None => false,
        Some("status") if info.has_status => true,
        Some("finalize") if info.resource == "namespaces" => true,
        _ => return Err(ApiError::no_route()),
    };
    if info.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::no_route());
    }
    let mut params = Params::parse(&request.query)?;
    params.user_agent.clone_from(&request.user_agent);
    let target = Target {
        info: info.clone(),
        namespace,
        name: name.clone(),
        status,
    };
    let format = response_format(&request.accept);
    let is_write = matches!(
        request.method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if is_write {
        injected_failure(shared, request)?;
    }
    let response = serve_resource(shared, request, target, &params, format).await?;
    Ok(match &info.deprecation_warning {
        Some(warning) => with_warnings(response, std::slice::from_ref(warning)),
        None => response,
    })
}

async fn serve_resource(
    shared: &Arc<Shared>,
    request: &RequestContext,
    target: Target,
    params: &Params,
    format: Format,
) -> Result<Response<Body>, ApiError> {
    let core = &shared.core;
    let info = target.info.clone();
    let name = target.name.clone();
    let params = params.clone();
    match (&request.method, name.is_some()) {
        (&Method::GET, true) => match (core.get(&target)?, format) {
            (Fetched::Json(json), Format::Json) => Ok(bytes_response(200, json)),
            (object, format) => Ok(json_response(
                200,
                &render_one(&info, object.into_value(), format),
            )),
        },
        (&Method::GET, false) if params.watch => {
            let receiver = watch::start(
                core.clone(),
                target,
                &params,
                format,
                shared.bookmark_interval,
            )?;
            Ok(stream_response(receiver))
        }
        (&Method::GET, false) => {
            let (items, metadata) = core.list(&target, &params)?;
            if format == Format::Json {
                return Ok(bytes_response(200, list_json(&info, items, &metadata)));
            }
            let items: Vec<Value> = items.into_iter().map(Fetched::into_value).collect();
            let body = match format {
                Format::Metadata => partial_metadata_list(&items, metadata),
                _ => table(&info, &items, metadata),
            };
            Ok(json_response(200, &body))
        }
        (&Method::POST, false) => {
            let body = parse_body(request, &info.kind, info.is_builtin())?;
            let outcome = core.create(&target, body, &params)?;
            Ok(outcome_response(&info, outcome, format))
        }
        (&Method::PUT, true) => {
            let body = parse_body(request, &info.kind, false)?;
            let outcome = core.update(&target, body, &params)?;
            Ok(outcome_response(&info, outcome, format))
        }
        (&Method::PATCH, true) => {
            let patch_type = match request.content_type.split(';').next().unwrap_or_default().trim() {
                "application/merge-patch+json" => PatchType::Merge,
                "application/json-patch+json" => PatchType::Json,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+json" => PatchType::Apply,
                _ => {
                    return Err(ApiError::unsupported_media(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
                    ))
                }
            };
            let outcome = core.patch(&target, patch_type, &request.body, &params)?;
            Ok(outcome_response(&info, outcome, format))
        }
        (&Method::DELETE, true) => {
            let options = delete_options(request)?;
            let outcome = core.delete(&target, &options, &params)?;
            Ok(json_response(
                outcome.code,
                &render_one(&info, outcome.object, format),
            ))
        }
        (&Method::DELETE, false) => {
            let options = delete_options(request)?;
            let items = core.delete_collection(&target, &options, &params)?;
            let rv = core.lock().rv;
            Ok(json_response(
                200,
                &json!({
                    "kind": format!("{}List", info.kind),
                    "apiVersion": info.api_version(),
                    "metadata": {"resourceVersion": rv.to_string()},
                    "items": items,
                }),
            ))
        }
        (method, _) => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

/// A write's response: the object in the asked format, with the warnings.
fn outcome_response(
    info: &crate::registry::ResourceInfo,
    outcome: Outcome,
    format: Format,
) -> Response<Body> {
    let response = match (outcome.json, format) {
        (Some(json), Format::Json) => bytes_response(outcome.code, json),
        _ => json_response(outcome.code, &render_one(info, outcome.object, format)),
    };
    with_warnings(response, &outcome.warnings)
}

/// A `…List` of objects, assembled from their encoded forms.
fn list_json(info: &crate::registry::ResourceInfo, items: Vec<Fetched>, metadata: &Value) -> Bytes {
    let mut text = Vec::with_capacity(256 + items.len() * 1024);
    text.extend_from_slice(b"{\"apiVersion\":");
    text.extend_from_slice(Value::from(info.api_version()).to_string().as_bytes());
    text.extend_from_slice(b",\"items\":[");
    for (index, item) in items.into_iter().enumerate() {
        if index > 0 {
            text.push(b',');
        }
        match item {
            Fetched::Json(json) => text.extend_from_slice(&json),
            Fetched::Value(value) => {
                text.extend_from_slice(value.to_string().as_bytes());
            }
        }
    }
    text.extend_from_slice(b"],\"kind\":");
    text.extend_from_slice(
        Value::from(format!("{}List", info.kind))
            .to_string()
            .as_bytes(),
    );
    text.extend_from_slice(b",\"metadata\":");
    text.extend_from_slice(metadata.to_string().as_bytes());
    text.push(b'}');
    Bytes::from(text)
}

fn bytes_response(code: u16, json: Bytes) -> Response<Body> {
    let mut response = Response::new(full(json));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn render_one(info: &crate::registry::ResourceInfo, object: Value, format: Format) -> Value {
    match format {
        Format::Json => object,
        Format::Metadata => partial_metadata(&object),
        Format::Table => {
            let rv = object
                .get("metadata")
                .and_then(|m| m.get("resourceVersion"))
                .cloned()
                .unwrap_or(Value::Null);
            table(info, &[object], json!({"resourceVersion": rv}))
        }
    }
}

fn delete_options(request: &RequestContext) -> Result<Value, ApiError> {
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&request.body)
        .map_err(|error| ApiError::bad_request(format!("error decoding DeleteOptions: {error}")))
}

fn injected_failure(shared: &Shared, request: &RequestContext) -> Result<(), ApiError> {
    let mut hooks = shared.hooks();
    let Some(fail) = hooks.fail_writes.as_mut() else {
        return Ok(());
    };
    if !request.path.contains(&fail.path_contains) {
        return Ok(());
    }
    let code = fail.code;
    fail.remaining = fail.remaining.saturating_sub(1);
    if fail.remaining == 0 {
        hooks.fail_writes = None;
    }
    Err(match code {
        409 => ApiError::custom(409, "Conflict", "injected conflict (stand-in test hook)"),
        429 => ApiError::too_many_requests(),
        other => ApiError::custom(
            other,
            "InternalError",
            "injected failure (stand-in test hook)",
        ),
    })
}

fn stream_response(receiver: tokio::sync::mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        let item = receiver.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(item)), receiver))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn hooks(
    shared: &Shared,
    request: &RequestContext,
    hook: &str,
) -> Result<Response<Body>, ApiError> {
    let body: Value = if request.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&request.body)
            .map_err(|error| ApiError::bad_request(format!("bad hook body: {error}")))?
    };
    match (request.method.as_str(), hook) {
        ("POST", "compact") => {
            let rv = {
                let mut state = shared.core.lock();
                state.compact();
                state.rv
            };
            Ok(json_response(
                200,
                &json!({"compactedResourceVersion": rv.to_string()}),
            ))
        }
        ("POST", "close-watches") => {
            shared
                .core
                .close_tx
                .send_modify(|generation| *generation += 1);
            Ok(json_response(200, &json!({})))
        }
        ("POST", "fail-writes") => {
            let count = body.get("count").and_then(Value::as_u64).unwrap_or(1);
            let code = body.get("code").and_then(Value::as_u64).unwrap_or(500);
            let path_contains = body
                .get("pathContains")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let Ok(code @ (409 | 429 | 500..=599)) = u16::try_from(code) else {
                return Err(ApiError::bad_request("code must be 409, 429 or 5xx"));
            };
            shared.hooks().fail_writes = (count > 0).then(|| FailWrites {
                remaining: u32::try_from(count).unwrap_or(u32::MAX),
                code,
                path_contains,
            });
            Ok(json_response(200, &json!({})))
        }
        ("POST", "latency") => {
            let mut hooks = shared.hooks();
            hooks.latency_ms = body
                .get("ms")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(60_000);
            hooks.latency_watch_only = body
                .get("watchOnly")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Ok(json_response(200, &json!({})))
        }
        ("GET", "requests") => {
            let log = shared.hooks().log.clone();
            Ok(json_response(200, &json!({"items": log})))
        }
        ("DELETE", "requests") => {
            shared.hooks().log.clear();
            Ok(json_response(200, &json!({})))
        }
        _ => Err(ApiError::no_route()),
    }
}
