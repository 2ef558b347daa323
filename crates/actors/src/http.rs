//! `/metrics`, `/healthz` and `/readyz` over plain HTTP/1.1 (hyper).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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
        "/readyz" if shared.metrics.is_ready() => (StatusCode::OK, "ok\n".into()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not synced\n".into()),
        _ => (StatusCode::NOT_FOUND, "not found\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
