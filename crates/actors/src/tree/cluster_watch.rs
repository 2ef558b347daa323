//! `ClusterWatch`: the kube-rs watchers and the task that feeds the [`ClusterIndex`] and
//! publishes snapshots.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::{
    node_seeds, tell, MembershipMsg, Protocol, Shared, StatusMsg, TaskSet, INDEX_BATCH_MAX,
    INDEX_DEBOUNCE, LEASE_RENEW, WATCH_QUEUE_MAX,
};
use crate::cluster::{
    Change, ClusterIndex, Object, Source, ALIVE_MEMBERS_ANNOTATION, SPEAKER_LEASE_PREFIX,
};

/// Messages of [`ClusterWatch`].
#[derive(Debug)]
pub enum WatchMsg {
    /// Fault injection: panic (tests of supervision).
    Panic,
}

/// Owns the kube-rs watchers and the [`ClusterIndex`] task.
#[derive(Debug)]
pub struct ClusterWatch;

impl Actor for ClusterWatch {
    type Msg = WatchMsg;
    type State = TaskSet;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let client = shared
            .client
            .clone()
            .ok_or("cluster watch needs an API client")?;
        let namespace = shared.config.namespace.clone();
        let (tx, rx) = mpsc::channel(WATCH_QUEUE_MAX);
        let mut tasks = vec![
            tokio::spawn(watch_one(
                Api::<Service>::all(client.clone()),
                Source::Services,
                Object::Service,
                tx.clone(),
                shared.clone(),
            )),
            tokio::spawn(watch_one(
                Api::<EndpointSlice>::all(client.clone()),
                Source::EndpointSlices,
                Object::EndpointSlice,
                tx.clone(),
                shared.clone(),
            )),
            tokio::spawn(watch_one(
                Api::<Node>::all(client.clone()),
                Source::Nodes,
                Object::Node,
                tx.clone(),
                shared.clone(),
            )),
            tokio::spawn(watch_one(
                Api::<Namespace>::all(client.clone()),
                Source::Namespaces,
                Object::Namespace,
                tx.clone(),
                shared.clone(),
            )),
            tokio::spawn(watch_one(
                Api::<Secret>::namespaced(client.clone(), &namespace),
                Source::Secrets,
                Object::Secret,
                tx.clone(),
                shared.clone(),
            )),
            tokio::spawn(watch_one(
                Api::<ConfigMap>::namespaced(client.clone(), &namespace),
                Source::ConfigMaps,
                Object::ConfigMap,
                tx.clone(),
                shared.clone(),
            )),
        ];
        for kind in ironlb_controller::run::MetallbKind::ALL {
            let api =
                Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &kind.resource());
            tasks.push(tokio::spawn(watch_one(
                api,
                Source::Metallb(kind),
                move |o| Object::Metallb(kind, o),
                tx.clone(),
                shared.clone(),
            )));
        }
        tasks.push(tokio::spawn(watch_one(
            Api::<Lease>::namespaced(client.clone(), &namespace),
            Source::Leases,
            Object::Lease,
            tx.clone(),
            shared.clone(),
        )));
        tasks.push(tokio::spawn(watch_one(
            Api::<DynamicObject>::namespaced_with(
                client.clone(),
                &namespace,
                &Protocol::Layer2.resource(),
            ),
            Source::L2Statuses,
            Object::L2Status,
            tx.clone(),
            shared.clone(),
        )));
        drop(tx);
        tasks.push(tokio::spawn(renew_lease(client, shared.clone())));
        tasks.push(tokio::spawn(index_task(rx, shared)));
        Ok(TaskSet(tasks))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WatchMsg::Panic => panic!("fault injection: cluster watch"),
        }
    }
}

async fn watch_one<K, F>(
    api: Api<K>,
    source: Source,
    wrap: F,
    tx: mpsc::Sender<Change>,
    shared: Arc<Shared>,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(K) -> Object,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut listed = Vec::new();
    while let Some(event) = stream.next().await {
        let change = match event {
            Ok(watcher::Event::Init) => {
                listed.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(object)) => {
                listed.push(wrap(object));
                continue;
            }
            Ok(watcher::Event::InitDone) => Change::Reset(source, std::mem::take(&mut listed)),
            Ok(watcher::Event::Apply(object)) => Change::Applied(wrap(object)),
            Ok(watcher::Event::Delete(object)) => Change::Deleted(wrap(object)),
            Err(error) => {
                // The watcher retries with backoff; we keep announcing from the last snapshot.
                tracing::warn!(?source, %error, "watch failed; keeping the last known state");
                shared.metrics.update_errors.inc();
                shared.metrics.api_reachable.set(0);
                continue;
            }
        };
        shared.metrics.api_reachable.set(1);
        if tx.send(change).await.is_err() {
            return;
        }
    }
}

/// Renews this speaker's Lease `ironlb-speaker-<node>` every [`LEASE_RENEW`], with the count
/// of active members its gossip sees (the partition rule of `layer2`). Failures are counted and
/// retried on the next tick: the speaker keeps announcing without the API.
async fn renew_lease(client: Client, shared: Arc<Shared>) {
    let api = Api::<Lease>::namespaced(client, &shared.config.namespace);
    let name = format!("{SPEAKER_LEASE_PREFIX}{}", shared.config.node);
    let mut tick = tokio::time::interval(LEASE_RENEW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let alive = shared.members.borrow().as_ref().map_or(1, |view| {
            1 + view
                .iter()
                .filter(|(name, m)| name.as_str() != shared.config.node && m.active)
                .count()
        });
        let mut lease = match api.get_opt(&name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => Lease {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.clone()),
                    ..Default::default()
                },
                ..Lease::default()
            },
            Err(error) => {
                tracing::debug!(%error, "lease read failed");
                shared.metrics.update_errors.inc();
                continue;
            }
        };
        let exists = lease.metadata.resource_version.is_some();
        lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ALIVE_MEMBERS_ANNOTATION.to_owned(), alive.to_string());
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(shared.config.node.clone());
        spec.lease_duration_seconds = Some(2);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        let result = if exists {
            api.replace(&name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        } else {
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        };
        if let Err(error) = result {
            tracing::debug!(%error, "lease renewal failed");
            shared.metrics.update_errors.inc();
        }
    }
}

async fn index_task(mut rx: mpsc::Receiver<Change>, shared: Arc<Shared>) {
    let mut index = ClusterIndex::new(shared.config.namespace.clone());
    let mut seeds: Vec<SocketAddr> = Vec::new();
    // The configuration errors last handed to the StatusWriter (ConfigurationState).
    let mut reported: Option<Vec<String>> = None;
    while let Some(first) = rx.recv().await {
        index.apply(first);
        let mut applied = 1;
        let deadline = tokio::time::Instant::now() + INDEX_DEBOUNCE;
        while applied < INDEX_BATCH_MAX {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(change)) => {
                    index.apply(change);
                    applied += 1;
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        shared.metrics.updates.inc_by(applied as u64);
        let snapshot = index.snapshot();
        shared
            .metrics
            .config_loaded
            .set(i64::from(snapshot.config.is_some()));
        shared
            .metrics
            .config_stale
            .set(i64::from(!snapshot.config_errors.is_empty()));
        if snapshot.synced {
            shared.metrics.set_ready();
        }
        if let Some(gossip) = &shared.config.gossip {
            let mut found: Vec<SocketAddr> =
                node_seeds(&snapshot, &shared.config.node, gossip.bind.port()).collect();
            found.sort();
            if found != seeds {
                seeds = found;
                tell(shared.membership(), MembershipMsg::Seeds(seeds.clone()));
            }
        }
        let config_errors = snapshot.synced.then(|| snapshot.config_errors.clone());
        shared.snapshot.send_replace(Arc::new(snapshot));
        shared.announcers_changed();
        if config_errors.is_some() && config_errors != reported {
            if let (Some(writer), Some(errors)) = (shared.status_writer(), config_errors.clone()) {
                if writer.cast(StatusMsg::Config(errors)).is_ok() {
                    reported = config_errors;
                }
            }
        }
    }
}
