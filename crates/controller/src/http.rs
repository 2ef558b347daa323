//! The two small HTTP endpoints: `/metrics` on `--port`, `/healthz` and `/readyz` on
//! `--health-probe-port`. Plain HTTP/1.1 (MetalLB serves metrics over HTTPS behind its RBAC
//! proxy; ironlb leaves TLS to the deployment).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// What the endpoints serve.
#[derive(Clone)]
pub struct Endpoints {
    /// The registry `/metrics` renders; `None` on the health port.
    pub registry: Option<Arc<Registry>>,
    /// Set once the first full pass over every Service is done.
    pub ready: Arc<AtomicBool>,
}

/// Binds `addr` and serves `endpoints` until the task is dropped. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    endpoints: Endpoints,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    warn!(%error, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let endpoints = endpoints.clone();
                    async move { Ok::<_, Infallible>(respond(&endpoints, &request)) }
                });
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(%error, "http connection ended");
                }
            });
        }
    });
    Ok((local, task))
}

fn respond(endpoints: &Endpoints, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.uri().path(), &endpoints.registry) {
        ("/metrics", Some(registry)) => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            crate::metrics::render(registry),
        ),
        ("/healthz" | "/livez", _) => (StatusCode::OK, "text/plain", "ok".to_owned()),
        ("/readyz", _) if endpoints.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "text/plain", "ok".to_owned())
        }
        ("/readyz", _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not synced yet".to_owned(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}
