//! The controller's decision for one Service (MetalLB's `convergeBalancer` steps 6–9 and
//! `allocateIPs`), on top of the allocator's operations.
//!
//! This is the one implementation of that decision: `ironlb controller` runs it for every
//! Service (after its own checks of steps 1–5, which need the Service's events) and
//! `ironlb plan` runs it offline over a set of Services.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::allocator::{Allocator, Assignment};
use crate::error::AllocError;
use crate::request::{IpFamilyPolicy, Request, ServiceFamily};

/// The outcome of [`Allocator::converge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converged {
    /// The addresses the Service should carry in `status.loadBalancer.ingress`, and their pool
    /// (`metallb.io/ip-allocated-from-pool`); or why it gets none (its status is cleared).
    pub result: Result<Assignment, AllocError>,
    /// What happened on the way, in order: the controller turns these into Service events.
    pub events: Vec<ConvergeEvent>,
}

/// A step of [`Allocator::converge`] worth telling the user about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConvergeEvent {
    /// The current addresses are refused by the configuration; a new allocation follows
    /// (MetalLB's Normal event `ClearAssignment`).
    ClearAssignment {
        /// The addresses dropped.
        ips: Vec<IpAddr>,
        /// Why.
        error: AllocError,
    },
    /// The current addresses were dropped for a reason that is not an error.
    Cleared {
        /// The addresses dropped.
        ips: Vec<IpAddr>,
        /// Why.
        reason: ClearReason,
    },
    /// PreferDualStack could not get the missing family (Normal `AdditionalAssignFailed`).
    AdditionalAssignFailed {
        /// Why.
        error: AllocError,
    },
    /// PreferDualStack got the missing family (`IPAllocated` "Assigned additional IP").
    AdditionalIpAllocated {
        /// The new address.
        ip: IpAddr,
    },
    /// A new allocation (`IPAllocated` "Assigned IP").
    IpAllocated {
        /// The addresses.
        ips: Vec<IpAddr>,
    },
}

/// Why current addresses were dropped without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClearReason {
    /// Their family is not the service's (MetalLB: "should not happen", families are immutable).
    FamilyChanged,
    /// `metallb.io/address-pool` names another pool.
    DifferentPoolRequested,
    /// The requested IPs differ from the current ones.
    DifferentIpsRequested,
}

impl Allocator {
    /// Decides the addresses of one LoadBalancer Service, as MetalLB's controller does:
    /// `current` are the addresses in its `status.loadBalancer.ingress` (empty if none).
    ///
    /// Current addresses are kept if the configuration still allows them (same pool as a
    /// requested pool, same as requested IPs); a PreferDualStack service holding one address
    /// gets the other family from the same pool if possible; otherwise requested IPs, then the
    /// requested pool, then automatic allocation. On error the service holds nothing.
    ///
    /// Departure from MetalLB: the additional PreferDualStack family is only sought when the
    /// service has two cluster IPs and requests no IP; MetalLB also tries with one cluster IP,
    /// then clears the pair on the next pass as a family change, and flaps (and a pair would
    /// differ from one requested IP, and flap the same way).
    pub fn converge(&mut self, request: &Request, current: &[IpAddr]) -> Converged {
        let mut events = Vec::new();
        let result = self.converge_inner(request, current, &mut events);
        if result.is_err() {
            self.release(&request.service);
        }
        Converged { result, events }
    }

    fn converge_inner(
        &mut self,
        request: &Request,
        current: &[IpAddr],
        events: &mut Vec<ConvergeEvent>,
    ) -> Result<Assignment, AllocError> {
        if !self.has_pools() {
            return Err(AllocError::NoPools);
        }
        if request.cluster_families.is_empty() {
            return Err(AllocError::NoClusterIps);
        }
        if request.policy == IpFamilyPolicy::RequireDualStack && request.cluster_families.len() < 2
        {
            return Err(AllocError::NotEnoughClusterIps {
                count: request.cluster_families.len(),
            });
        }
        let family = request.service_family()?;
        let mut held: Vec<IpAddr> = current.to_vec();
        if held.is_empty() {
            self.release(&request.service);
        } else {
            let changed = match ServiceFamily::of_ips(&held) {
                Err(_) => true,
                Ok(held_family) => {
                    held_family != family
                        && !(family == ServiceFamily::Dual
                            && request.policy == IpFamilyPolicy::PreferDualStack)
                }
            };
            if changed {
                self.release(&request.service);
                events.push(ConvergeEvent::Cleared {
                    ips: std::mem::take(&mut held),
                    reason: ClearReason::FamilyChanged,
                });
            }
        }
        if !held.is_empty() {
            if let Err(error) = self.assign(request, &held) {
                self.release(&request.service);
                events.push(ConvergeEvent::ClearAssignment {
                    ips: std::mem::take(&mut held),
                    error,
                });
            }
            if let Some(pool) = &request.requested_pool {
                if !held.is_empty() && self.pool_of(&request.service) != Some(pool) {
                    self.release(&request.service);
                    events.push(ConvergeEvent::Cleared {
                        ips: std::mem::take(&mut held),
                        reason: ClearReason::DifferentPoolRequested,
                    });
                }
            }
            if !request.requested_ips.is_empty() {
                ServiceFamily::of_ips(&request.requested_ips).map_err(|reason| {
                    AllocError::RequestedIpsInvalid {
                        ips: request.requested_ips.clone(),
                        reason,
                    }
                })?;
                if !held.is_empty() && !same_set(&held, &request.requested_ips) {
                    self.release(&request.service);
                    events.push(ConvergeEvent::Cleared {
                        ips: std::mem::take(&mut held),
                        reason: ClearReason::DifferentIpsRequested,
                    });
                }
            }
        }
        if held.len() == 1
            && request.policy == IpFamilyPolicy::PreferDualStack
            && family == ServiceFamily::Dual
            && request.requested_ips.is_empty()
        {
            match self.allocate_additional_family(request) {
                Ok(ip) => {
                    held.push(ip);
                    events.push(ConvergeEvent::AdditionalIpAllocated { ip });
                }
                Err(error) => events.push(ConvergeEvent::AdditionalAssignFailed { error }),
            }
        }
        if held.is_empty() {
            held = self.allocate_ips(request, family)?;
            events.push(ConvergeEvent::IpAllocated { ips: held.clone() });
        }
        match self.assignment(&request.service) {
            Some(assignment) if same_set(&assignment.ips, &held) => Ok(assignment),
            held_by_allocator => Err(AllocError::Inconsistent {
                service: request.service.clone(),
                decided: held,
                held: held_by_allocator
                    .map(|assignment| assignment.ips)
                    .unwrap_or_default(),
            }),
        }
    }

    /// MetalLB's `allocateIPs`: requested IPs, then the requested pool, then automatic.
    fn allocate_ips(
        &mut self,
        request: &Request,
        family: ServiceFamily,
    ) -> Result<Vec<IpAddr>, AllocError> {
        if !request.requested_ips.is_empty() {
            let ips = &request.requested_ips;
            let requested =
                ServiceFamily::of_ips(ips).map_err(|reason| AllocError::RequestedIpsInvalid {
                    ips: ips.clone(),
                    reason,
                })?;
            if requested != family {
                return Err(AllocError::RequestedFamilyMismatch { ips: ips.clone() });
            }
            self.assign(request, ips)?;
            if let Some(pool) = &request.requested_pool {
                if self.pool_of(&request.service) != Some(pool) {
                    self.release(&request.service);
                    return Err(AllocError::RequestedPoolMismatch {
                        ips: ips.clone(),
                        pool: pool.clone(),
                    });
                }
            }
            return Ok(ips.clone());
        }
        if let Some(pool) = &request.requested_pool {
            return self.allocate_from_pool(request, pool);
        }
        self.allocate(request)
    }
}

fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}
