//! The publishing side of the shell: everything the controller writes to the API.
//!
//! Each writer is a task fed by a bounded channel from the index task. Writers retry transient
//! API errors with capped exponential backoff and never panic on an API answer. A `409 Conflict`
//! on a Service status write is not retried: it means a newer Service is on its way through the
//! watch, and the index converges again when it arrives.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::core::{ConfigState, PoolCounters, ServiceEvent, StatusWrite};
use crate::metrics::Metrics;
use crate::view::{ServiceKey, ANNOTATION_ALLOCATED_FROM_POOL};

/// The reporting controller of every Event, as MetalLB's.
pub const REPORTING_CONTROLLER: &str = "metallb-controller";
/// Status writes in flight at once.
pub const STATUS_WRITES_IN_FLIGHT_MAX: usize = 32;
/// Event publications in flight at once.
pub const EVENTS_IN_FLIGHT_MAX: usize = 8;
/// Events one kube-rs `Recorder` publishes before it is replaced by a fresh one (its cache of
/// published events, used to aggregate repeats into a series, holds at most this many).
pub const RECORDER_EVENTS_MAX: usize = 256;
/// The first retry delay after a failed write.
pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
/// The longest retry delay.
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(10);
/// The field manager of the controller's writes.
pub const FIELD_MANAGER: &str = "ironlb-controller";

/// The `IPAddressPool` resource (metallb.io/v1beta1), addressed dynamically so a malformed
/// object can never break a typed decode here.
pub fn ip_address_pool_resource() -> ApiResource {
    metallb_resource("IPAddressPool", "ipaddresspools")
}

/// The `ConfigurationState` resource (metallb.io/v1beta1).
pub fn configuration_state_resource() -> ApiResource {
    metallb_resource("ConfigurationState", "configurationstates")
}

/// A metallb.io/v1beta1 resource.
pub fn metallb_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "metallb.io".into(),
        version: "v1beta1".into(),
        api_version: "metallb.io/v1beta1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Doubles `delay`, capped at [`RETRY_DELAY_MAX`].
fn next_delay(delay: Duration) -> Duration {
    (delay * 2).min(RETRY_DELAY_MAX)
}

/// The outcome of one status write.
enum WriteOutcome {
    /// Written, or nothing to retry (409, 404, 422: a newer object or none exists).
    Done,
    /// A transient failure: try again later.
    Retry,
}

/// The merge patch for `/status` that writes the ingress IPs and the pool annotation in one
/// request, locked on the resourceVersion the decision was made on.
pub fn status_patch(write: &StatusWrite) -> serde_json::Value {
    let ingress: Vec<_> = write
        .status
        .ips
        .iter()
        .map(|ip| json!({ "ip": ip.to_string() }))
        .collect();
    let ingress = if ingress.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::Array(ingress)
    };
    let mut metadata = json!({
        "annotations": { ANNOTATION_ALLOCATED_FROM_POOL: write.status.pool },
    });
    if !write.resource_version.is_empty() {
        metadata["resourceVersion"] = json!(write.resource_version);
    }
    json!({
        "metadata": metadata,
        "status": { "loadBalancer": { "ingress": ingress } },
    })
}

/// Writes Service statuses: at most one write per Service in flight, at most
/// [`STATUS_WRITES_IN_FLIGHT_MAX`] overall, a newer write for a Service replacing an older
/// queued one, at most [`crate::run::STATUS_QUEUE_LEN`] waiting.
pub async fn run_status_writer(
    client: Client,
    mut writes: mpsc::Receiver<StatusWrite>,
    metrics: Metrics,
) {
    let mut pending: BTreeMap<ServiceKey, StatusWrite> = BTreeMap::new();
    let mut not_before: BTreeMap<ServiceKey, (Instant, Duration)> = BTreeMap::new();
    let mut in_flight: BTreeSet<ServiceKey> = BTreeSet::new();
    let mut tasks: JoinSet<(StatusWrite, WriteOutcome)> = JoinSet::new();
    let mut open = true;
    loop {
        // Start what may start.
        let now = Instant::now();
        let startable: Vec<ServiceKey> = pending
            .keys()
            .filter(|key| !in_flight.contains(*key))
            .filter(|key| not_before.get(*key).is_none_or(|(at, _)| *at <= now))
            .take(STATUS_WRITES_IN_FLIGHT_MAX.saturating_sub(in_flight.len()))
            .cloned()
            .collect();
        for key in startable {
            let Some(write) = pending.remove(&key) else {
                continue;
            };
            in_flight.insert(key);
            let client = client.clone();
            let metrics = metrics.clone();
            tasks.spawn(async move {
                let outcome = write_status(&client, &write, &metrics).await;
                (write, outcome)
            });
        }
        if !open && pending.is_empty() && tasks.is_empty() {
            return;
        }
        let next_retry = pending
            .keys()
            .filter_map(|key| not_before.get(key).map(|(at, _)| *at))
            .min();
        // Take no more writes while STATUS_QUEUE_LEN wait here: the index task then waits on
        // the channel, and produces the next ones only as fast as they are written.
        let accepting = open && pending.len() < crate::run::STATUS_QUEUE_LEN;
        tokio::select! {
            received = writes.recv(), if accepting => match received {
                Some(write) => {
                    pending.insert(write.key.clone(), write);
                }
                None => open = false,
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((write, outcome)) = joined else {
                    // A panicking write task is a bug; the Service converges again on its
                    // next event.
                    warn!("status write task failed");
                    continue;
                };
                in_flight.remove(&write.key);
                match outcome {
                    WriteOutcome::Done => {
                        not_before.remove(&write.key);
                    }
                    WriteOutcome::Retry => {
                        let delay = not_before
                            .get(&write.key)
                            .map_or(RETRY_DELAY_MIN, |(_, delay)| next_delay(*delay));
                        not_before.insert(write.key.clone(), (Instant::now() + delay, delay));
                        // A newer write queued meanwhile wins over the retry.
                        pending.entry(write.key.clone()).or_insert(write);
                    }
                }
            }
            () = sleep_until_opt(next_retry) => {}
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn write_status(client: &Client, write: &StatusWrite, metrics: &Metrics) -> WriteOutcome {
    let api: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), &write.key.namespace);
    let patch = status_patch(write);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    metrics.updates.inc();
    match api
        .patch_status(&write.key.name, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            debug!(service = %write.key, op = "setStatus", ips = ?write.status.ips, "status written");
            WriteOutcome::Done
        }
        Err(kube::Error::Api(status)) if status.is_conflict() || status.is_not_found() => {
            debug!(service = %write.key, op = "setStatus", reason = %status.reason, "status write superseded");
            WriteOutcome::Done
        }
        Err(kube::Error::Api(status)) if status.is_invalid() => {
            metrics.update_errors.inc();
            warn!(service = %write.key, op = "setStatus", message = %status.message, "status write rejected");
            WriteOutcome::Done
        }
        Err(error) => {
            metrics.update_errors.inc();
            warn!(service = %write.key, op = "setStatus", %error, "status write failed, will retry");
            WriteOutcome::Retry
        }
    }
}

/// Publishes Service events through kube-rs's [`Recorder`]. Events are best effort: a full
/// queue drops them (the index task uses `try_send`), a failed publication is logged.
pub async fn run_event_publisher(
    client: Client,
    mut events: mpsc::Receiver<ServiceEvent>,
    instance: Option<String>,
) {
    let reporter = Reporter {
        controller: REPORTING_CONTROLLER.into(),
        instance,
    };
    let mut recorder = Recorder::new(client.clone(), reporter.clone());
    let mut published_by_recorder = 0usize;
    let mut tasks = JoinSet::new();
    loop {
        // kube-rs's Recorder keeps every event it published for 6 minutes (to turn repeats
        // into a series) and scans them all on each publication: at 10,000 Services that is
        // ~18 MB and quadratic work. A fresh one every RECORDER_EVENTS_MAX events bounds both,
        // as client-go's bounded LRU of events does; a repeat after a renewal is a new Event.
        if published_by_recorder >= RECORDER_EVENTS_MAX {
            recorder = Recorder::new(client.clone(), reporter.clone());
            published_by_recorder = 0;
        }
        while tasks.len() >= EVENTS_IN_FLIGHT_MAX {
            let _ = tasks.join_next().await;
        }
        let Some(event) = events.recv().await else {
            while tasks.join_next().await.is_some() {}
            return;
        };
        let recorder = recorder.clone();
        published_by_recorder += 1;
        tasks.spawn(async move { publish_event(&recorder, &event).await });
        while tasks.try_join_next().is_some() {}
    }
}

async fn publish_event(recorder: &Recorder, event: &ServiceEvent) {
    let reference = event.regarding();
    let published = Event {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.to_owned(),
        note: Some(truncate(&event.message, 1024)),
        action: event.action().to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&published, &reference).await {
        warn!(object = ?reference.name, reason = event.reason, %error, "event publication failed");
    }
}

fn truncate(text: &str, bytes_max: usize) -> String {
    if text.len() <= bytes_max {
        return text.to_owned();
    }
    let mut end = bytes_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl ServiceEvent {
    /// The object the event is about.
    pub fn regarding(&self) -> ObjectReference {
        match &self.object {
            crate::core::EventObject::Service { key, uid } => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Service".into()),
                namespace: Some(key.namespace.clone()),
                name: Some(key.name.clone()),
                uid: uid.clone(),
                ..ObjectReference::default()
            },
            crate::core::EventObject::ConfigurationState { namespace } => ObjectReference {
                api_version: Some("metallb.io/v1beta1".into()),
                kind: Some("ConfigurationState".into()),
                namespace: Some(namespace.clone()),
                name: Some(CONFIGURATION_STATE_NAME.into()),
                ..ObjectReference::default()
            },
            crate::core::EventObject::ConfigMap { namespace, name } => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("ConfigMap".into()),
                namespace: Some(namespace.clone()),
                name: Some(name.clone()),
                ..ObjectReference::default()
            },
        }
    }

    /// The `action` field of the events.k8s.io Event (required by the API).
    pub fn action(&self) -> &'static str {
        match &self.object {
            crate::core::EventObject::Service { .. } => "Allocate",
            _ => "Reconcile",
        }
    }
}

/// The name of the controller's `ConfigurationState`.
pub const CONFIGURATION_STATE_NAME: &str = "controller";

/// What the cluster-status writer publishes: the latest value of each, coalesced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterStatus {
    /// `IPAddressPool.status` counters of every pool.
    Pools(BTreeMap<String, PoolCounters>),
    /// The controller's `ConfigurationState`.
    Configuration(ConfigState),
}

/// Writes `IPAddressPool.status` and the `ConfigurationState` object, retrying with backoff. Only
/// pools whose counters changed since the last successful write are written.
pub async fn run_cluster_status_writer(
    client: Client,
    namespace: String,
    mut updates: mpsc::Receiver<ClusterStatus>,
    metrics: Metrics,
) {
    let pools_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, &ip_address_pool_resource());
    let state_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, &configuration_state_resource());
    let mut written_pools: BTreeMap<String, PoolCounters> = BTreeMap::new();
    let mut wanted_pools: Option<BTreeMap<String, PoolCounters>> = None;
    let mut wanted_state: Option<ConfigState> = None;
    let mut written_state: Option<ConfigState> = None;
    let mut delay = RETRY_DELAY_MIN;
    let mut open = true;
    loop {
        let dirty = wanted_pools.as_ref().is_some_and(|wanted| {
            wanted
                .iter()
                .any(|(name, counters)| written_pools.get(name) != Some(counters))
        }) || (wanted_state.is_some() && wanted_state != written_state);
        if !dirty {
            if !open {
                return;
            }
            match updates.recv().await {
                Some(update) => apply_cluster_status(update, &mut wanted_pools, &mut wanted_state),
                None => open = false,
            }
            continue;
        }
        // Coalesce whatever else is queued.
        while let Ok(update) = updates.try_recv() {
            apply_cluster_status(update, &mut wanted_pools, &mut wanted_state);
        }
        let mut failed = false;
        if let Some(wanted) = &wanted_pools {
            written_pools.retain(|name, _| wanted.contains_key(name));
            for (name, counters) in wanted {
                if written_pools.get(name) == Some(counters) {
                    continue;
                }
                metrics.updates.inc();
                match write_pool_status(&pools_api, name, counters).await {
                    Ok(()) => {
                        written_pools.insert(name.clone(), *counters);
                    }
                    Err(error) => {
                        metrics.update_errors.inc();
                        warn!(pool = %name, op = "poolStatus", %error, "pool status write failed, will retry");
                        failed = true;
                    }
                }
            }
        }
        if let Some(state) = wanted_state
            .clone()
            .filter(|s| Some(s) != written_state.as_ref())
        {
            metrics.updates.inc();
            match write_configuration_state(&state_api, &state).await {
                Ok(()) => written_state = Some(state),
                Err(error) => {
                    metrics.update_errors.inc();
                    warn!(op = "configurationState", %error, "configuration state write failed, will retry");
                    failed = true;
                }
            }
        }
        if failed {
            tokio::time::sleep(delay).await;
            delay = next_delay(delay);
        } else {
            delay = RETRY_DELAY_MIN;
        }
    }
}

fn apply_cluster_status(
    update: ClusterStatus,
    pools: &mut Option<BTreeMap<String, PoolCounters>>,
    state: &mut Option<ConfigState>,
) {
    match update {
        ClusterStatus::Pools(counters) => *pools = Some(counters),
        ClusterStatus::Configuration(config) => *state = Some(config),
    }
}

async fn write_pool_status(
    api: &Api<DynamicObject>,
    name: &str,
    counters: &PoolCounters,
) -> Result<(), kube::Error> {
    let clamp = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let patch = json!({
        "status": {
            "assignedIPv4": clamp(counters.assigned_ipv4),
            "assignedIPv6": clamp(counters.assigned_ipv6),
            "availableIPv4": clamp(counters.available_ipv4),
            "availableIPv6": clamp(counters.available_ipv6),
        }
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match api.patch_status(name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        // The pool was deleted meanwhile: nothing to write.
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(error) => Err(error),
    }
}

async fn write_configuration_state(
    api: &Api<DynamicObject>,
    state: &ConfigState,
) -> Result<(), kube::Error> {
    if api.get_opt(CONFIGURATION_STATE_NAME).await?.is_none() {
        let mut object =
            DynamicObject::new(CONFIGURATION_STATE_NAME, &configuration_state_resource());
        object.metadata.labels = Some(
            [(
                "metallb.io/component-type".to_owned(),
                "controller".to_owned(),
            )]
            .into_iter()
            .collect(),
        );
        object.data = json!({ "spec": {} });
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(error) => return Err(error),
        }
    }
    let (condition_status, reason, result) = if state.errors.is_empty() {
        ("True", "Reconciled", "Valid")
    } else {
        ("False", "ConfigurationError", "Invalid")
    };
    let summary = state.errors.join("\n");
    let patch = json!({
        "status": {
            "result": result,
            "errorSummary": summary,
            "conditions": [{
                "type": "poolReconcilerValid",
                "status": condition_status,
                "reason": reason,
                "message": summary,
                "lastTransitionTime": Timestamp::now().to_string(),
            }],
        }
    });
    let params = PatchParams {
        field_manager: Some("poolReconciler".into()),
        ..PatchParams::default()
    };
    api.patch_status(CONFIGURATION_STATE_NAME, &params, &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// The key of the memberlist Secret that holds the gossip key.
pub const MEMBERLIST_SECRET_KEY: &str = "secretkey";
/// Bytes of key material in a created memberlist Secret (`decisions.md`).
pub const MEMBERLIST_KEY_LEN_BYTES: usize = 32;

/// Creates the memberlist Secret with 32 random bytes when it is missing, retrying API errors
/// with backoff until it exists. An existing Secret is never modified.
pub async fn ensure_memberlist_secret(client: Client, namespace: String, name: String) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let mut delay = RETRY_DELAY_MIN;
    loop {
        match create_secret_if_missing(&api, &name).await {
            Ok(true) => {
                info!(secret = %name, namespace = %namespace, op = "createSecret", "memberlist secret created");
                return;
            }
            Ok(false) => {
                debug!(secret = %name, "memberlist secret exists");
                return;
            }
            Err(error) => {
                warn!(secret = %name, op = "createSecret", %error, "memberlist secret check failed, will retry");
                tokio::time::sleep(delay).await;
                delay = next_delay(delay);
            }
        }
    }
}

async fn create_secret_if_missing(api: &Api<Secret>, name: &str) -> Result<bool, kube::Error> {
    if api.get_opt(name).await?.is_some() {
        return Ok(false);
    }
    let key: [u8; MEMBERLIST_KEY_LEN_BYTES] = rand::random();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some(
            [(MEMBERLIST_SECRET_KEY.to_owned(), ByteString(key.to_vec()))]
                .into_iter()
                .collect(),
        ),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(false),
        Err(error) => Err(error),
    }
}

/// Shared handle type for the registry.
pub type SharedRegistry = Arc<prometheus_client::registry::Registry>;
