//! The HTTP side: `POST /` or `/audit` takes an `EventList` and answers only once it is on disk;
//! `GET /healthz` and `GET /metrics` need no credentials. Answers are Kubernetes `Status` objects, which
//! the apiserver's webhook client understands (429 + `Retry-After` makes it back off and resend).

use super::auth::{Auth, Denied, PeerCert};
use super::metrics::{CodeLabel, Metrics};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kaf_spool::{Spool, SpoolError};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;

pub struct AppState {
    pub spool: Arc<Spool>,
    pub auth: Auth,
    pub metrics: Metrics,
    pub retry_after_secs: u64,
    pub max_body_bytes: usize,
    /// How long a client may take to send a body.
    pub body_timeout: std::time::Duration,
    /// Wakes the delivery loop when a segment was written.
    pub spooled: Notify,
}

/// The connection a request came on (remote address and verified client certificate).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub cert: PeerCert,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", post(ingest))
        .route("/audit", post(ingest))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let stats = state.spool.stats();
    state.metrics.spool_bytes.set(stats.bytes as i64);
    state.metrics.spool_events.set(stats.events as i64);
    state.metrics.spool_segments.set(stats.segments as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn ingest(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    request: Request,
) -> Response {
    let response = ingest_inner(&state, &peer, request).await;
    state
        .metrics
        .requests
        .get_or_create(&CodeLabel {
            code: response.status().as_u16(),
        })
        .inc();
    response
}

/// Credentials are checked before the body is read, so an unauthenticated client cannot make us buffer one.
async fn ingest_inner(state: &AppState, peer: &Peer, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.auth.check(&peer.cert, authorization) {
        Ok(()) => {}
        Err(Denied::Unauthenticated(why)) => {
            tracing::warn!(remote = %peer.addr, reason = why, "webhook request refused");
            return status(StatusCode::UNAUTHORIZED, "Unauthorized", why);
        }
        Err(Denied::Forbidden(why)) => {
            tracing::warn!(remote = %peer.addr, reason = %why, "webhook request refused");
            return status(StatusCode::FORBIDDEN, "Forbidden", &why);
        }
    }
    let body = match tokio::time::timeout(
        state.body_timeout,
        axum::body::to_bytes(body, state.max_body_bytes),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "body over --max-body-bytes, or cut off",
            );
        }
        Err(_) => {
            tracing::warn!(remote = %peer.addr, "webhook body not received within --body-timeout-secs");
            return status(
                StatusCode::REQUEST_TIMEOUT,
                "Timeout",
                "body not received within --body-timeout-secs",
            );
        }
    };
    let body = match decode_body(headers, body, state.max_body_bytes) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let items = match kaf_envelope::webhook::event_list_items(&body) {
        Ok(items) => items,
        Err(e) => {
            tracing::warn!(remote = %peer.addr, error = %e, "webhook body refused");
            return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string());
        }
    };
    let unparsed = items
        .iter()
        .filter(|i| matches!(i, kaf_envelope::webhook::Item::Unparsed { .. }))
        .count();
    if unparsed > 0 {
        // Kept: spooled raw and forwarded as records that say they could not be parsed.
        tracing::warn!(remote = %peer.addr, unparsed, "webhook items the JSON parser cannot take; kept raw");
    }
    let spool = state.spool.clone();
    let appended = tokio::task::spawn_blocking(move || spool.append(&items)).await;
    match appended {
        Ok(Ok(appended)) => {
            state.metrics.events_spooled.inc_by(appended.spooled as u64);
            state
                .metrics
                .events_duplicate
                .inc_by(appended.duplicates as u64);
            if appended.spooled > 0 {
                state.spooled.notify_one();
            }
            status(StatusCode::OK, "", "")
        }
        Ok(Err(SpoolError::Full { bytes, max })) => {
            tracing::warn!(
                bytes,
                max,
                "spool full: asking the apiserver to retry later"
            );
            retry_later(
                state,
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "spool full, retry later",
            )
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot spool webhook batch");
            retry_later(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "spool not writable",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "spool task failed");
            retry_later(
                state,
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "spool task failed",
            )
        }
    }
}

/// A refusal the apiserver's webhook client retries: it resends on 429 and on any answer with `Retry-After`
/// (a bare 503 would make it drop the batch).
fn retry_later(state: &AppState, code: StatusCode, reason: &str, message: &str) -> Response {
    let mut response = status(code, reason, message);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(state.retry_after_secs),
    );
    response
}

/// The body, gunzipped if sent with `Content-Encoding: gzip` (bounded like the plain body).
fn decode_body(headers: &HeaderMap, body: Bytes, max: usize) -> Result<Bytes, Box<Response>> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    match encoding {
        "identity" => Ok(body),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|_| {
                    status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "body is not valid gzip",
                    )
                })?;
            if out.len() > max {
                return Err(Box::new(status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    "decompressed body over --max-body-bytes",
                )));
            }
            Ok(out.into())
        }
        _ => Err(Box::new(status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "Content-Encoding must be identity or gzip",
        ))),
    }
}

/// A `meta/v1` `Status` body.
fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let mut body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": if code.is_success() { "Success" } else { "Failure" },
        "code": code.as_u16(),
    });
    if !reason.is_empty() {
        body["reason"] = reason.into();
        body["message"] = message.into();
    }
    (code, axum::Json(body)).into_response()
}
