//! `/metrics`, `/healthz`, `/readyz` and `/debug/members` (this speaker's gossip view and
//! decisions, JSON, read by `ironlb status --gossip`) over plain HTTP/1.1 (hyper).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::status::{MemberDebug, ServiceDebug, SessionDebug, SpeakerDebug};
use crate::tree::Shared;

/// Accepts connections until the task is aborted.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&request, &shared)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn route(request: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let (status, body) = match request.uri().path() {
        "/metrics" => {
            let mut text = String::new();
            let registry = shared.metrics.registry();
            match prometheus_client::encoding::text::encode(&mut text, &registry) {
                Ok(()) => (StatusCode::OK, text),
                Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encode failed\n".into()),
            }
        }
        "/healthz" => (StatusCode::OK, "ok\n".into()),
        "/debug/members" => match serde_json::to_string_pretty(&debug_view(shared)) {
            Ok(json) => (StatusCode::OK, json),
            Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encode failed\n".into()),
        },
        "/readyz" if shared.metrics.is_ready() => (StatusCode::OK, "ok\n".into()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not synced\n".into()),
        _ => (StatusCode::NOT_FOUND, "not found\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// What `/debug/members` shows: the gossip view, the per-Service decisions, the BGP sessions.
pub fn debug_view(shared: &Shared) -> SpeakerDebug {
    let members = shared
        .members
        .borrow()
        .as_ref()
        .map(|view| {
            view.iter()
                .map(|(name, member)| {
                    (
                        name.clone(),
                        MemberDebug {
                            active: member.active,
                            leaving: member.leaving,
                            claims: member.claims.clone(),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut services: BTreeMap<String, ServiceDebug> = BTreeMap::new();
    for (key, state) in shared.services.borrow().iter() {
        let entry = services.entry(key.to_string()).or_default();
        entry.layer2_announced = state.announced;
        entry.layer2_reason = state.reason.map(|r| r.as_str().to_owned());
        entry.layer2_owner = state.owner.clone();
    }
    for (key, state) in shared.bgp_services.borrow().iter() {
        let entry = services.entry(key.to_string()).or_default();
        entry.bgp_peers = state.peers.clone();
        entry.bgp_reason = state.reason.map(|r| r.as_str().to_owned());
    }
    let sessions = shared
        .bgp_sessions
        .borrow()
        .iter()
        .map(|(name, view)| {
            (
                name.clone(),
                SessionDebug {
                    peer: view.peer.to_string(),
                    state: view.state.clone(),
                    last_error: view.last_error.clone(),
                    bfd: view.bfd.clone(),
                },
            )
        })
        .collect();
    SpeakerDebug {
        node: shared.config.node.clone(),
        gossip: shared.config.gossip.is_some(),
        settled: *shared.settled.borrow(),
        members,
        services,
        sessions,
    }
}
