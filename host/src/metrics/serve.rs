//! The HTTP endpoint at `metrics_addr`: `GET /metrics` (OpenMetrics text,
//! which Prometheus scrapes) and `GET /healthz` (200 or 503 with a JSON
//! reason), and whatever [`Pages`] the daemon adds (the status page).
//! HTTP/1 only, one task per connection, on the daemon's runtime.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Metrics;

/// A client has this long to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// More `GET` routes beside `/metrics` and `/healthz`, from a module
/// above this one (the status page), so no import runs back up.
pub(crate) trait Pages: Send + Sync {
    /// The reply to `GET path?query`: its content type and body; `None`
    /// when `path` is not one of these pages.
    fn get(&self, path: &str, query: Option<&str>) -> Option<(&'static str, String)>;
}

/// Serves `metrics` and `pages` on `listener` until `stop` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    pages: Option<Arc<dyn Pages>>,
    stop: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        if pages.is_some() {
            info!(%addr, "serving the status page (/), /api/v1/status, /metrics and /healthz");
        } else {
            info!(%addr, "serving /metrics and /healthz");
        }
    }
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, usually: give the pollers a moment.
                warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (metrics, pages) = (metrics.clone(), pages.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = respond(&metrics, pages.as_deref(), &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(
    metrics: &Metrics,
    pages: Option<&dyn Pages>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, content_type.parse().expect("valid header"));
        response
    };
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        );
    }
    if let Some((content_type, body)) =
        pages.and_then(|p| p.get(req.uri().path(), req.uri().query()))
    {
        return reply(StatusCode::OK, content_type, body);
    }
    match req.uri().path() {
        "/metrics" => match metrics.encode() {
            Ok(text) => reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{e}\n"),
            ),
        },
        "/healthz" => {
            let (status, body) = match metrics.health() {
                Ok(()) => (StatusCode::OK, serde_json::json!({"status": "ok"})),
                Err(reason) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({"status": "unhealthy", "reason": reason}),
                ),
            };
            reply(status, "application/json", format!("{body}\n"))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics or /healthz\n".to_owned(),
        ),
    }
}
