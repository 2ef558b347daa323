//! `StatusWriter`: `ServiceL2Status`, `ServiceBGPStatus`, the `speaker-<node>`
//! `ConfigurationState` and the Service Events, coalesced and written off the announcing path.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::{json, Value};

use super::{
    Shared, NODE_LABEL, SERVICE_NAMESPACE_LABEL, SERVICE_NAME_LABEL, STATUS_COALESCE,
    STATUS_CONCURRENCY_MAX,
};
use crate::bgp::BgpStatus;
use crate::layer2::L2Status;
use crate::model::ServiceKey;

/// Label of a `ConfigurationState`: `controller` or `speaker`.
pub const COMPONENT_TYPE_LABEL: &str = "metallb.io/component-type";
/// Label of a speaker's `ConfigurationState`: its node.
pub const NODE_NAME_LABEL: &str = "metallb.io/node-name";
/// The condition type a speaker writes in its `ConfigurationState`.
pub const CONFIG_CONDITION: &str = "configReconcilerValid";

/// The announcing protocol of a status object or Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// `ServiceL2Status`.
    Layer2,
    /// `ServiceBGPStatus`.
    Bgp,
}

impl Protocol {
    /// Both.
    pub const ALL: [Self; 2] = [Self::Layer2, Self::Bgp];

    /// MetalLB's spelling in Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Layer2 => "layer2",
            Self::Bgp => "bgp",
        }
    }

    /// The status kind.
    pub fn resource(self) -> ApiResource {
        let (kind, plural) = match self {
            Self::Layer2 => ("ServiceL2Status", "servicel2statuses"),
            Self::Bgp => ("ServiceBGPStatus", "servicebgpstatuses"),
        };
        metallb_resource(kind, plural)
    }

    fn generate_name(self) -> &'static str {
        match self {
            Self::Layer2 => "l2-",
            Self::Bgp => "bgp-",
        }
    }
}

/// A `metallb.io/v1beta1` kind.
pub fn metallb_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "metallb.io".into(),
        version: "v1beta1".into(),
        api_version: "metallb.io/v1beta1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Messages of [`StatusWriter`].
#[derive(Debug)]
pub enum StatusMsg {
    /// Desired `ServiceL2Status` of this node for one Service (None: delete it).
    L2(ServiceKey, Option<L2Status>),
    /// Desired `ServiceBGPStatus` of this node for one Service (None: delete it).
    Bgp(ServiceKey, Option<BgpStatus>),
    /// Event `nodeAssigned` on the Service.
    Assigned(ServiceKey, Vec<IpAddr>, Protocol),
    /// Event `announceFailed` (Warning) on the Service: none of the interfaces the
    /// L2Advertisements name exists on this node.
    AnnounceFailed(ServiceKey, IpAddr),
    /// The errors of the latest configuration (empty: valid) for `ConfigurationState`.
    Config(Vec<String>),
    /// Write what is pending.
    Flush,
    /// Write what is pending now and answer (planned shutdown).
    FlushNow(ractor::RpcReplyPort<()>),
    /// Fault injection: panic.
    Panic,
}

/// Writes the status objects and Events, coalesced, off the announcing path.
#[derive(Debug)]
pub struct StatusWriter;

/// One Event to publish.
#[derive(Clone, Debug)]
struct ServiceEvent {
    service: ServiceKey,
    warning: bool,
    reason: &'static str,
    note: String,
}

/// Its state.
pub struct StatusState {
    shared: Arc<Shared>,
    client: Client,
    pending: BTreeMap<(Protocol, ServiceKey), Option<Value>>,
    events: Vec<ServiceEvent>,
    names: BTreeMap<(Protocol, ServiceKey), String>,
    /// Protocols whose objects from an earlier life of this speaker are not adopted yet (the
    /// list failed, e.g. the API server was unreachable at start): retried by every flush.
    unadopted: BTreeSet<Protocol>,
    /// Objects a late adoption found for a Service that has another object by now (written
    /// while the earlier ones were unknown): deleted by the next flush.
    orphans: BTreeSet<(Protocol, String)>,
    config: Option<Vec<String>>,
    scheduled: bool,
    recorder: Recorder,
}

impl Actor for StatusWriter {
    type Msg = StatusMsg;
    type State = StatusState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let client = shared
            .client
            .clone()
            .ok_or("status writer needs an API client")?;
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "metallb-speaker".into(),
                instance: Some(shared.config.node.clone()),
            },
        );
        let mut state = StatusState {
            shared: shared.clone(),
            client,
            pending: BTreeMap::new(),
            events: Vec::new(),
            names: BTreeMap::new(),
            unadopted: Protocol::ALL.into_iter().collect(),
            orphans: BTreeSet::new(),
            config: {
                let snapshot = shared.snapshot.borrow();
                snapshot.synced.then(|| snapshot.config_errors.clone())
            },
            scheduled: false,
            recorder,
        };
        // A failed adoption is retried by the flushes.
        let _ = adopt(&mut state).await;
        // The announcers re-send what they want when they reconcile; give them a moment
        // before deleting.
        state.scheduled = true;
        myself.send_after(Duration::from_secs(2), || StatusMsg::Flush);
        shared.announcers_changed();
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let node = state.shared.config.node.clone();
        match message {
            StatusMsg::L2(key, status) => {
                let body = status.map(|s| {
                    let interfaces: Vec<Value> = s
                        .interfaces
                        .iter()
                        .map(|name| json!({ "name": name }))
                        .collect();
                    json!({ "interfaces": interfaces })
                });
                state.pending.insert((Protocol::Layer2, key), body);
            }
            StatusMsg::Bgp(key, status) => {
                let body = status.map(|s| json!({ "peers": s.peers }));
                state.pending.insert((Protocol::Bgp, key), body);
            }
            StatusMsg::Assigned(service, ips, protocol) => {
                let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
                state.events.push(ServiceEvent {
                    service,
                    warning: false,
                    reason: "nodeAssigned",
                    note: format!(
                        "announcing from node {node:?} with protocol {:?} ({})",
                        protocol.as_str(),
                        ips.join(", ")
                    ),
                });
            }
            StatusMsg::AnnounceFailed(service, ip) => {
                state.events.push(ServiceEvent {
                    service,
                    warning: true,
                    reason: "announceFailed",
                    note: format!(
                        "the interfaces specified by LB IP {:?} doesn't exist in assigned node {node:?} with protocol \"layer2\"",
                        ip.to_string()
                    ),
                });
            }
            StatusMsg::Config(errors) => state.config = Some(errors),
            StatusMsg::Flush => {
                state.scheduled = false;
                let failed = flush(state).await;
                if failed {
                    schedule_flush(&myself, state, Duration::from_secs(1));
                }
                return Ok(());
            }
            StatusMsg::FlushNow(reply) => {
                let _ = flush(state).await;
                let _ = reply.send(());
                return Ok(());
            }
            StatusMsg::Panic => panic!("fault injection: status writer"),
        }
        schedule_flush(&myself, state, STATUS_COALESCE);
        Ok(())
    }
}

fn schedule_flush(myself: &ActorRef<StatusMsg>, state: &mut StatusState, delay: Duration) {
    if !state.scheduled {
        state.scheduled = true;
        myself.send_after(delay, || StatusMsg::Flush);
    }
}

fn status_api(state: &StatusState, protocol: Protocol) -> Api<DynamicObject> {
    Api::namespaced_with(
        state.client.clone(),
        &state.shared.config.namespace,
        &protocol.resource(),
    )
}

/// Adopts the objects of an earlier life of this speaker, for every protocol not adopted yet:
/// one object per Service and protocol is tracked and, unless Layer2 or Bgp want it, deleted by
/// the flush; another one for the same Service becomes an orphan. Returns false if a list
/// failed (that protocol is tried again by the next flush).
async fn adopt(state: &mut StatusState) -> bool {
    let selector = format!("{NODE_LABEL}={}", state.shared.config.node);
    let mut adopted_all = true;
    for protocol in state.unadopted.clone() {
        let api = status_api(state, protocol);
        let list = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(kind = %protocol.resource().kind, %error, "cannot list status objects");
                adopted_all = false;
                continue;
            }
        };
        state.unadopted.remove(&protocol);
        for object in list.items {
            let labels = object.metadata.labels.unwrap_or_default();
            let (Some(namespace), Some(name), Some(object_name)) = (
                labels.get(SERVICE_NAMESPACE_LABEL),
                labels.get(SERVICE_NAME_LABEL),
                object.metadata.name,
            ) else {
                continue;
            };
            let key = (protocol, ServiceKey::new(namespace.clone(), name.clone()));
            match state.names.get(&key) {
                Some(known) if *known == object_name => {}
                Some(_) => {
                    state.orphans.insert((protocol, object_name));
                }
                None => {
                    state.names.insert(key.clone(), object_name);
                    state.pending.entry(key).or_insert(None);
                }
            }
        }
    }
    adopted_all
}

/// Deletes the orphans (see [`adopt`]); returns false if a delete failed (kept for the next
/// flush).
async fn delete_orphans(state: &mut StatusState) -> bool {
    let mut deleted_all = true;
    for (protocol, name) in std::mem::take(&mut state.orphans) {
        match status_api(state, protocol)
            .delete(&name, &Default::default())
            .await
        {
            Ok(_) => {
                state.shared.metrics.status_writes.inc();
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                tracing::warn!(kind = %protocol.resource().kind, %name, %error, "status delete failed; retrying");
                state.shared.metrics.update_errors.inc();
                state.orphans.insert((protocol, name));
                deleted_all = false;
            }
        }
    }
    deleted_all
}

/// One status write: the object, what was wanted, and the object name (None: deleted).
type WriteResult = (
    (Protocol, ServiceKey),
    Option<Value>,
    Result<Option<String>, kube::Error>,
);

/// Writes everything pending, after adopting what an earlier life left (see [`adopt`]);
/// returns true if something failed (kept pending, or the adoption is retried).
async fn flush(state: &mut StatusState) -> bool {
    let mut failed = !adopt(state).await;
    failed |= !delete_orphans(state).await;
    let node = state.shared.config.node.clone();
    let pending = std::mem::take(&mut state.pending);
    let names = state.names.clone();
    let apis: BTreeMap<Protocol, Api<DynamicObject>> = Protocol::ALL
        .into_iter()
        .map(|protocol| (protocol, status_api(state, protocol)))
        .collect();
    let results: Vec<WriteResult> = futures::stream::iter(pending)
        .map(|(key, desired)| {
            let api = apis.get(&key.0).cloned();
            let node = node.clone();
            let existing = names.get(&key).cloned();
            async move {
                let result = match api {
                    Some(api) => write_one(&api, &node, &key, existing, desired.as_ref()).await,
                    None => Ok(None),
                };
                (key, desired, result)
            }
        })
        .buffer_unordered(STATUS_CONCURRENCY_MAX)
        .collect()
        .await;
    for (key, desired, result) in results {
        match result {
            Ok(Some(name)) => {
                state.shared.metrics.status_writes.inc();
                state.names.insert(key, name);
            }
            Ok(None) => {
                state.shared.metrics.status_writes.inc();
                state.names.remove(&key);
            }
            Err(error) => {
                tracing::warn!(service = %key.1, kind = %key.0.resource().kind, %error, "status write failed; retrying");
                state.shared.metrics.update_errors.inc();
                state.pending.entry(key).or_insert(desired);
                failed = true;
            }
        }
    }
    if let Some(errors) = state.config.take() {
        if let Err(error) = write_configuration_state(state, &errors).await {
            tracing::warn!(%error, "ConfigurationState write failed; retrying");
            state.shared.metrics.update_errors.inc();
            state.config = Some(errors);
            failed = true;
        }
    }
    for event in std::mem::take(&mut state.events) {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(event.service.namespace.clone()),
            name: Some(event.service.name.clone()),
            ..Default::default()
        };
        let published = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.into(),
            note: Some(event.note),
            action: "Announce".into(),
            secondary: None,
        };
        if let Err(error) = state.recorder.publish(&published, &reference).await {
            tracing::debug!(service = %event.service, %error, "event not recorded");
        }
    }
    failed
}

async fn write_one(
    api: &Api<DynamicObject>,
    node: &str,
    (protocol, key): &(Protocol, ServiceKey),
    existing: Option<String>,
    desired: Option<&Value>,
) -> Result<Option<String>, kube::Error> {
    let Some(desired) = desired else {
        if let Some(name) = existing {
            match api.delete(&name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        return Ok(None);
    };
    let name = match existing {
        Some(name) => name,
        None => {
            let object: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "metallb.io/v1beta1",
                "kind": protocol.resource().kind,
                "metadata": {
                    "generateName": protocol.generate_name(),
                    "labels": {
                        NODE_LABEL: node,
                        SERVICE_NAME_LABEL: key.name,
                        SERVICE_NAMESPACE_LABEL: key.namespace,
                    },
                },
                "spec": {},
            }))
            .map_err(kube::Error::SerdeError)?;
            let created = api.create(&PostParams::default(), &object).await?;
            created.metadata.name.unwrap_or_default()
        }
    };
    let mut status = json!({
        "node": node,
        "serviceName": key.name,
        "serviceNamespace": key.namespace,
    });
    if let (Some(status), Some(extra)) = (status.as_object_mut(), desired.as_object()) {
        status.extend(extra.clone());
    }
    let patch = json!({ "status": status });
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(Some(name))
}

/// The name of this speaker's `ConfigurationState`.
pub fn configuration_state_name(node: &str) -> String {
    format!("speaker-{node}")
}

/// Creates (if missing) and updates `ConfigurationState` `speaker-<node>`: result `Valid` with
/// condition `configReconcilerValid=True/Reconciled`, or `Invalid` with
/// `False/ConfigurationError` and the messages (MetalLB's shape).
async fn write_configuration_state(
    state: &StatusState,
    errors: &[String],
) -> Result<(), kube::Error> {
    let node = &state.shared.config.node;
    let name = configuration_state_name(node);
    let api: Api<DynamicObject> = Api::namespaced_with(
        state.client.clone(),
        &state.shared.config.namespace,
        &metallb_resource("ConfigurationState", "configurationstates"),
    );
    if api.get_opt(&name).await?.is_none() {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "ConfigurationState",
            "metadata": {
                "name": name,
                "labels": { COMPONENT_TYPE_LABEL: "speaker", NODE_NAME_LABEL: node },
            },
            "spec": {},
        }))
        .map_err(kube::Error::SerdeError)?;
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    let (condition, reason, result) = if errors.is_empty() {
        ("True", "Reconciled", "Valid")
    } else {
        ("False", "ConfigurationError", "Invalid")
    };
    let summary = errors.join("\n");
    let patch = json!({
        "status": {
            "result": result,
            "errorSummary": summary,
            "conditions": [{
                "type": CONFIG_CONDITION,
                "status": condition,
                "reason": reason,
                "message": summary,
                "lastTransitionTime": Timestamp::now().to_string(),
            }],
        }
    });
    let params = PatchParams {
        field_manager: Some("configReconciler".into()),
        ..PatchParams::default()
    };
    api.patch_status(&name, &params, &Patch::Merge(&patch))
        .await
        .map(|_| ())
}
