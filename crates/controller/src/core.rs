//! The pure controller core: MetalLB's `convergeBalancer` (`metallb.md` §2.2, steps 1–11) over
//! an index of Services, with no IO and no clock.
//!
//! # Call order
//!
//! 1. Feed what the watches saw with [`Core::handle`]: [`Input::ServiceApplied`],
//!    [`Input::ServiceDeleted`], [`Input::Config`], and once every watch has delivered its
//!    initial list, [`Input::Synced`]. Handling only records; it is cheap.
//! 2. Drain [`Core::poll_action`] until it returns `None`. Pending work (converge the Services
//!    that changed, or all of them) runs lazily, one Service at a time, whenever the queue of
//!    [`Action`]s is empty: a full pass over 10,000 Services never holds more than one Service's
//!    actions, so a caller that applies backpressure (a bounded channel) bounds the memory too.
//!
//! Nothing is converged before [`Input::Synced`] *and* a first valid configuration: a controller
//! that has not yet seen every Service or any pool would otherwise clear or steal IPs.
//!
//! # Restart safety
//!
//! The core keeps no state of its own across restarts: allocations are rebuilt from
//! `status.loadBalancer.ingress` of every Service. Each full pass (the first one, and every
//! reprocess-all) first *assigns* every Service's current IPs, silently, and only then converges
//! every Service, those holding IPs first. So a Service whose IP has become invalid can never take
//! an address that another Service still legitimately holds.
//!
//! # Write suppression
//!
//! A status write is queued only when the desired status differs from the observed one
//! ([`DesiredStatus::is_shown_by`], which ignores server-added fields such as `ipMode`), and not
//! twice for the same observed `resourceVersion`, so a reprocess-all while a write is in flight
//! does not duplicate it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::IpAddr;

use ironlb_alloc::{AllocError, ConvergeEvent, Converged, Request};

use crate::view::{DesiredStatus, FamilyPolicy, ServiceKey, ServiceView};

/// How many reprocess-all rounds may chain without new input (each round can free IPs that start
/// another).
pub const REPROCESS_ROUNDS_MAX: usize = 4;

/// Address counters of one pool, as `IPAddressPool.status` and the allocator metrics show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounters {
    /// IPv4 addresses in use.
    pub assigned_ipv4: u64,
    /// IPv6 addresses in use.
    pub assigned_ipv6: u64,
    /// IPv4 addresses still free (saturating for huge pools).
    pub available_ipv4: u64,
    /// IPv6 addresses still free (saturating for huge pools).
    pub available_ipv6: u64,
    /// Services holding an allocation from the pool.
    pub services: u64,
}

/// The allocator, as the core uses it. The real implementation wraps `ironlb_alloc::Allocator`
/// (see [`crate::ipam`]); the decision of steps 6–9 is `ironlb_alloc::Allocator::converge`, the
/// one `ironlb plan` runs too.
pub trait Ipam {
    /// The validated configuration.
    type Config: Clone + PartialEq;

    /// Installs the pools of `config`. Allocations whose IPs left every pool are dropped;
    /// the core reprocesses every Service afterwards.
    fn set_config(&mut self, config: &Self::Config);
    /// Whether the installed configuration has at least one pool.
    fn has_pools(&self) -> bool;
    /// Gives `ips` to `request`'s Service if the configuration and the sharing rules allow it;
    /// returns the pool. Assigning what the service already holds succeeds.
    fn assign(&mut self, request: &Request, ips: &[IpAddr]) -> Result<String, String>;
    /// `convergeBalancer` steps 6–9 for a Service currently showing `current`: keep, extend or
    /// replace its addresses, or refuse (and then it holds nothing).
    fn converge(&mut self, request: &Request, current: &[IpAddr]) -> Converged;
    /// Frees whatever `key` holds (no-op when nothing).
    fn release(&mut self, key: &ServiceKey);
    /// The pool `key` holds IPs from.
    fn pool_of(&self, key: &ServiceKey) -> Option<String>;
    /// The IPs `key` holds.
    fn ips_of(&self, key: &ServiceKey) -> Vec<IpAddr>;
    /// Counters per pool.
    fn counters(&self) -> BTreeMap<String, PoolCounters>;
}

/// One input to the core.
#[derive(Clone, Debug)]
pub enum Input<C> {
    /// A Service was created or changed (watch `Apply`, or part of an initial list).
    ServiceApplied(Box<ServiceView>),
    /// A Service is gone.
    ServiceDeleted(ServiceKey),
    /// The configuration inputs changed and were parsed.
    Config(ConfigUpdate<C>),
    /// Every watch has delivered its initial list.
    Synced,
}

/// A parsed configuration, or why it did not parse.
#[derive(Clone, Debug)]
pub struct ConfigUpdate<C> {
    /// The configuration, or the errors (`Kind/name: field: message`, one per problem).
    pub result: Result<C, Vec<String>>,
    /// Set when the configuration came from the legacy `config` ConfigMap: the name of the
    /// ConfigMap and the CRs to apply instead.
    pub legacy_configmap: Option<LegacyNotice>,
}

/// The deprecation notice for a configuration read from the legacy ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyNotice {
    /// The ConfigMap's namespace.
    pub namespace: String,
    /// The ConfigMap's name.
    pub name: String,
    /// `Kind/name` of each CR to apply instead.
    pub replacement_objects: Vec<String>,
}

/// The object an event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventObject {
    /// A Service.
    Service {
        /// Its key.
        key: ServiceKey,
        /// Its `metadata.uid` (kubectl describe matches on it).
        uid: Option<String>,
    },
    /// The controller's `ConfigurationState` object.
    ConfigurationState {
        /// Its namespace.
        namespace: String,
    },
    /// A ConfigMap (the legacy configuration).
    ConfigMap {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// An Event to publish, with MetalLB's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEvent {
    /// What it is about.
    pub object: EventObject,
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// MetalLB's reason (`IPAllocated`, `AllocationFailed`, …).
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

/// A status write for one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusWrite {
    /// The Service.
    pub key: ServiceKey,
    /// The resourceVersion the decision was made on (the write is locked on it).
    pub resource_version: String,
    /// Ingress IPs and pool annotation.
    pub status: DesiredStatus,
}

/// The controller's `ConfigurationState` content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigState {
    /// The configuration errors; empty means `Valid`.
    pub errors: Vec<String>,
}

/// Something the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write a Service's status and pool annotation in one `/status` request.
    WriteStatus(StatusWrite),
    /// Publish an Event.
    Event(ServiceEvent),
    /// Publish the pool counters (`IPAddressPool.status` and metrics).
    PoolCounters(BTreeMap<String, PoolCounters>),
    /// Publish the `ConfigurationState`.
    ConfigurationState(ConfigState),
    /// Set the configuration metrics.
    ConfigMetrics {
        /// `metallb_k8s_client_config_loaded_bool`.
        loaded: bool,
        /// `metallb_k8s_client_config_stale_bool`.
        stale: bool,
    },
    /// The first full pass is done: the controller is ready.
    Ready,
}

/// Options of the core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreOptions {
    /// `--lb-class`: `None` handles Services without `spec.loadBalancerClass`; `Some(c)` handles
    /// only those of class `c`.
    pub load_balancer_class: Option<String>,
    /// `--namespace`, where the configuration and the ConfigurationState live.
    pub namespace: String,
}

/// The IP families of a set of addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Families {
    V4,
    V6,
    Dual,
}

impl fmt::Display for Families {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
            Self::Dual => "dual-stack",
        })
    }
}

/// The families of `ips`: one IP, or two of different families. Anything else is `None`.
fn families_of(ips: &[IpAddr]) -> Option<Families> {
    match ips {
        [ip] if ip.is_ipv4() => Some(Families::V4),
        [_] => Some(Families::V6),
        [a, b] if a.is_ipv4() != b.is_ipv4() => Some(Families::Dual),
        _ => None,
    }
}

/// Formats IPs as Go's `%q` of a string slice would: `["1.2.3.4" "fc00::1"]`.
fn quote_ips(ips: &[IpAddr]) -> String {
    let quoted: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
    format!("[{}]", quoted.join(" "))
}

/// The controller core. See the module documentation for the call order.
#[derive(Debug)]
pub struct Core<I: Ipam> {
    ipam: I,
    options: CoreOptions,
    /// The last configuration that parsed.
    config: Option<I::Config>,
    /// Every Service the controller handles (class filter passed), by key. Boxed: a map node
    /// then holds keys and pointers, not 11 views of which a third are empty slots.
    services: BTreeMap<ServiceKey, Box<ServiceView>>,
    /// Services to converge once the current work is done.
    dirty: BTreeSet<ServiceKey>,
    /// Converge every Service once the current work is done.
    reprocess_all: bool,
    /// The Services left to converge in the current round, in order.
    work: VecDeque<ServiceKey>,
    /// Reprocess-all rounds started since the last input.
    rounds: usize,
    /// Every watch has delivered its initial list.
    inputs_synced: bool,
    /// The first full pass is done.
    ready: bool,
    /// The allocation key each Service had when it was last converged.
    allocation_keys: BTreeMap<ServiceKey, String>,
    /// The last write queued per Service, with the resourceVersion it was decided on.
    queued_writes: BTreeMap<ServiceKey, StatusWrite>,
    /// The counters last published.
    published_counters: Option<BTreeMap<String, PoolCounters>>,
    /// The legacy ConfigMap notice already published.
    legacy_notice_published: Option<LegacyNotice>,
    actions: VecDeque<Action>,
}

impl<I: Ipam> Core<I> {
    /// A core around `ipam`.
    pub fn new(ipam: I, options: CoreOptions) -> Self {
        Self {
            ipam,
            options,
            config: None,
            services: BTreeMap::new(),
            dirty: BTreeSet::new(),
            reprocess_all: false,
            work: VecDeque::new(),
            rounds: 0,
            inputs_synced: false,
            ready: false,
            allocation_keys: BTreeMap::new(),
            queued_writes: BTreeMap::new(),
            published_counters: None,
            legacy_notice_published: None,
            actions: VecDeque::new(),
        }
    }

    /// The allocator, for inspection.
    pub fn ipam(&self) -> &I {
        &self.ipam
    }

    /// Whether the first full pass is done.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Number of Services handled.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Records one input. Work happens in [`Core::poll_action`].
    pub fn handle(&mut self, input: Input<I::Config>) {
        self.rounds = 0;
        match input {
            Input::ServiceApplied(view) => self.service_applied(view),
            Input::ServiceDeleted(key) => self.service_deleted(&key),
            Input::Config(update) => self.config_update(update),
            Input::Synced => {
                if !self.inputs_synced {
                    self.inputs_synced = true;
                    self.reprocess_all = true;
                }
            }
        }
    }

    /// The next action, running pending work (one Service at a time) while none is queued.
    pub fn poll_action(&mut self) -> Option<Action> {
        loop {
            if let Some(action) = self.actions.pop_front() {
                return Some(action);
            }
            if !self.step() {
                return None;
            }
        }
    }

    /// Whether the Service passes the `--lb-class` filter.
    fn handles_class(&self, view: &ServiceView) -> bool {
        view.load_balancer_class == self.options.load_balancer_class
    }

    fn service_applied(&mut self, view: Box<ServiceView>) {
        if !self.handles_class(&view) {
            // Not ours (any more): forget it, without touching its status.
            let key = view.key.clone();
            self.service_deleted(&key);
            return;
        }
        let key = view.key.clone();
        self.services.insert(key.clone(), view);
        self.dirty.insert(key);
    }

    fn service_deleted(&mut self, key: &ServiceKey) {
        self.services.remove(key);
        self.dirty.remove(key);
        self.queued_writes.remove(key);
        self.allocation_keys.remove(key);
        if self.ipam.pool_of(key).is_some() {
            self.ipam.release(key);
            tracing::info!(service = %key, op = "release", "service deleted, ip released");
            // A freed IP may let a pending Service in.
            self.reprocess_all = true;
        }
    }

    fn config_update(&mut self, update: ConfigUpdate<I::Config>) {
        if let Some(notice) = update.legacy_configmap {
            if self.legacy_notice_published.as_ref() != Some(&notice) {
                tracing::warn!(
                    configmap = %format!("{}/{}", notice.namespace, notice.name),
                    replacements = ?notice.replacement_objects,
                    "the legacy config ConfigMap is deprecated, apply the equivalent CRs instead"
                );
                self.actions.push_back(Action::Event(ServiceEvent {
                    object: EventObject::ConfigMap {
                        namespace: notice.namespace.clone(),
                        name: notice.name.clone(),
                    },
                    warning: true,
                    reason: "deprecatedConfigMap",
                    message: format!(
                        "the legacy ConfigMap configuration is deprecated; apply these CRs instead: {}",
                        notice.replacement_objects.join(", ")
                    ),
                }));
                self.legacy_notice_published = Some(notice);
            }
        }
        match update.result {
            Ok(config) => {
                self.actions
                    .push_back(Action::ConfigurationState(ConfigState::default()));
                self.actions.push_back(Action::ConfigMetrics {
                    loaded: true,
                    stale: false,
                });
                if self.config.as_ref() == Some(&config) {
                    return;
                }
                tracing::info!(op = "setConfig", "configuration loaded");
                self.ipam.set_config(&config);
                self.config = Some(config);
                self.reprocess_all = true;
            }
            Err(errors) => {
                tracing::warn!(
                    op = "setConfig",
                    ?errors,
                    "configuration invalid, keeping the last good one"
                );
                self.actions.push_back(Action::Event(ServiceEvent {
                    object: EventObject::ConfigurationState {
                        namespace: self.options.namespace.clone(),
                    },
                    warning: true,
                    reason: "ConfigurationError",
                    message: format!(
                        "configuration rejected, running on the last good one: {}",
                        errors.join("; ")
                    ),
                }));
                self.actions
                    .push_back(Action::ConfigurationState(ConfigState { errors }));
                self.actions.push_back(Action::ConfigMetrics {
                    loaded: self.config.is_some(),
                    stale: true,
                });
            }
        }
    }

    /// Runs one unit of pending work: converge the next Service of the current round, or start
    /// a round (a full pass, or the dirty Services), or, with nothing left, queue `Ready` and the
    /// pool counters if they changed. Returns whether it did or queued anything.
    fn step(&mut self) -> bool {
        if !self.inputs_synced || self.config.is_none() {
            return false;
        }
        if let Some(key) = self.work.pop_front() {
            self.converge(&key);
            return true;
        }
        if self.reprocess_all {
            if self.rounds < REPROCESS_ROUNDS_MAX {
                self.rounds += 1;
                self.reprocess_all = false;
                self.dirty.clear();
                self.start_full_pass();
                return true;
            }
            tracing::warn!(
                rounds = self.rounds,
                "reprocess-all did not settle, continuing at the next input"
            );
        } else if !self.dirty.is_empty() {
            self.work = std::mem::take(&mut self.dirty).into_iter().collect();
            return true;
        }
        self.finish();
        !self.actions.is_empty()
    }

    /// Queues `Ready` after the first full pass and the pool counters when they changed.
    fn finish(&mut self) {
        if !self.ready {
            self.ready = true;
            self.actions.push_back(Action::Ready);
        }
        let counters = self.ipam.counters();
        if self.published_counters.as_ref() != Some(&counters) {
            self.published_counters = Some(counters.clone());
            self.actions.push_back(Action::PoolCounters(counters));
        }
    }

    /// Assigns every Service's current IPs, then queues every Service for convergence, those
    /// holding IPs first.
    fn start_full_pass(&mut self) {
        let (with_ips, without_ips): (Vec<ServiceKey>, Vec<ServiceKey>) =
            self.services.keys().cloned().partition(|key| {
                self.services
                    .get(key)
                    .is_some_and(|view| !view.status_ips().is_empty())
            });
        for key in &with_ips {
            let Some(view) = self.services.get(key) else {
                continue;
            };
            let Ok(request) = &view.request else {
                continue;
            };
            if !view.is_load_balancer || self.ipam.pool_of(key).is_some() {
                continue;
            }
            let ips = view.status_ips();
            // Errors are handled by the converge below, with events.
            let _ = self.ipam.assign(request, &ips);
        }
        self.work = with_ips.into_iter().chain(without_ips).collect();
    }

    /// Converges one Service and queues its status write if needed.
    fn converge(&mut self, key: &ServiceKey) {
        // Out of the map while it is converged (the decision borrows the core mutably), rather
        // than cloned.
        let Some((key, view)) = self.services.remove_entry(key) else {
            return;
        };
        self.converge_view(&view);
        self.services.insert(key, view);
    }

    fn converge_view(&mut self, view: &ServiceView) {
        let key = &view.key;
        let had_allocation = self.ipam.pool_of(key).is_some();
        let Some(desired) = self.decide(view) else {
            return;
        };
        if had_allocation && self.ipam.pool_of(key).is_none() {
            self.reprocess_all = true;
        }
        // Step 11: a changed allocation key may let a pending Service share.
        if self.ipam.pool_of(key).is_some() {
            let allocation_key = view.allocation_key();
            let previous = self
                .allocation_keys
                .insert(key.clone(), allocation_key.clone());
            if previous.is_some_and(|previous| previous != allocation_key) {
                self.reprocess_all = true;
            }
        } else {
            self.allocation_keys.remove(key);
        }
        // Step 10.
        if desired.is_shown_by(view) {
            self.queued_writes.remove(key);
            return;
        }
        let write = StatusWrite {
            key: key.clone(),
            resource_version: view.resource_version.clone(),
            status: desired,
        };
        if self.queued_writes.get(key) == Some(&write) {
            return;
        }
        for annotation in &view.deprecated_annotations {
            self.event(
                view,
                true,
                "deprecatedAnnotation",
                format!("Service uses deprecated annotation {annotation}"),
            );
        }
        tracing::debug!(service = %key, op = "setStatus", ips = ?write.status.ips, pool = ?write.status.pool, "status change queued");
        self.queued_writes.insert(key.clone(), write.clone());
        self.actions.push_back(Action::WriteStatus(write));
    }

    fn event(&mut self, view: &ServiceView, warning: bool, reason: &'static str, message: String) {
        self.actions.push_back(Action::Event(ServiceEvent {
            object: EventObject::Service {
                key: view.key.clone(),
                uid: view.uid.clone(),
            },
            warning,
            reason,
            message,
        }));
    }

    /// Releases `view`'s allocation and returns the cleared status.
    fn clear(&mut self, view: &ServiceView) -> DesiredStatus {
        self.ipam.release(&view.key);
        DesiredStatus::cleared()
    }

    /// Steps 1–9 of `convergeBalancer`: the status the Service should have, or `None` to leave
    /// it as it is.
    fn decide(&mut self, view: &ServiceView) -> Option<DesiredStatus> {
        let key = &view.key;
        // Step 1.
        if !view.is_load_balancer {
            return Some(self.clear(view));
        }
        // Step 2.
        if !self.ipam.has_pools() {
            tracing::debug!(service = %key, "no address pools configured");
            return Some(self.clear(view));
        }
        if view.cluster_ips.is_empty() {
            return Some(self.clear(view));
        }
        // Step 3.
        if view.family_policy == FamilyPolicy::RequireDualStack && view.cluster_ips.len() < 2 {
            self.event(
                view,
                true,
                "not enough clusterips",
                format!(
                    "RequireDualStack service has {} cluster IP(s), needs one per family",
                    view.cluster_ips.len()
                ),
            );
            return Some(self.clear(view));
        }
        let Some(cluster_families) = families_of(&view.cluster_ips) else {
            self.event(
                view,
                true,
                "noclusterIPsIPFamily",
                "Failed to retrieve clusterIPs family".to_owned(),
            );
            return None;
        };
        // Step 4.
        let mut current = view.status_ips();
        let unparsed = view
            .ingress
            .iter()
            .filter(|entry| {
                entry
                    .ip
                    .as_deref()
                    .is_some_and(|ip| ip.parse::<IpAddr>().is_err())
            })
            .count();
        // Step 5.
        if !current.is_empty() {
            match families_of(&current) {
                None => {
                    self.event(
                        view,
                        true,
                        "nolbIPsIPFamily",
                        "Failed to retrieve lbIPs family".to_owned(),
                    );
                    self.ipam.release(key);
                    current.clear();
                }
                Some(lb_families)
                    if lb_families != cluster_families
                        && view.family_policy != FamilyPolicy::PreferDualStack =>
                {
                    tracing::info!(service = %key, %lb_families, %cluster_families, "load balancer ip family differs from cluster ip family, clearing");
                    self.ipam.release(key);
                    current.clear();
                }
                Some(_) => {}
            }
        } else if unparsed > 0 {
            self.event(
                view,
                true,
                "nolbIPsIPFamily",
                "Failed to retrieve lbIPs family".to_owned(),
            );
        }
        // Step 7, first half: an unparseable request leaves the Service as it is (MetalLB
        // checks it after step 6, whose `Assign` cannot fail on it).
        let request = match &view.request {
            Ok(request) => request,
            Err(reason) => {
                self.event(view, true, "LoadBalancerFailed", reason.clone());
                return None;
            }
        };
        // Steps 6 to 9.
        let converged = self.ipam.converge(request, &current);
        for step in converged.events {
            self.converge_event(view, step);
        }
        match converged.result {
            Ok(assignment) => Some(DesiredStatus::assigned(assignment.ips, assignment.pool.0)),
            Err(error @ AllocError::Inconsistent { .. }) => {
                self.event(view, true, "InternalError", error.to_string());
                Some(self.clear(view))
            }
            Err(reason) => {
                tracing::info!(service = %key, op = "allocate", %reason, "allocation failed");
                self.event(
                    view,
                    true,
                    "AllocationFailed",
                    format!("Failed to allocate IP for \"{key}\": {reason}"),
                );
                Some(self.clear(view))
            }
        }
    }

    /// The Event (or log line) for a step of [`Ipam::converge`].
    fn converge_event(&mut self, view: &ServiceView, step: ConvergeEvent) {
        let key = &view.key;
        match step {
            ConvergeEvent::ClearAssignment { error, .. } => {
                self.event(
                    view,
                    false,
                    "ClearAssignment",
                    format!(
                        "current IP for \"{key}\" not allowed by config, will attempt for new IP assignment: {error}"
                    ),
                );
                tracing::info!(service = %key, op = "clearAssignment", reason = %error, "current ip not allowed by config");
            }
            ConvergeEvent::Cleared { ips, reason } => {
                tracing::info!(service = %key, ?ips, ?reason, "current ips dropped, reallocating");
            }
            ConvergeEvent::AdditionalAssignFailed { error } => {
                self.event(view, false, "AdditionalAssignFailed", error.to_string());
            }
            ConvergeEvent::AdditionalIpAllocated { ip } => {
                self.event(
                    view,
                    false,
                    "IPAllocated",
                    format!("Assigned additional IP \"{ip}\""),
                );
            }
            ConvergeEvent::IpAllocated { ips } => {
                tracing::info!(service = %key, pool = ?self.ipam.pool_of(key), op = "allocate", ?ips, "ip allocated");
                self.event(
                    view,
                    false,
                    "IPAllocated",
                    format!("Assigned IP {}", quote_ips(&ips)),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
