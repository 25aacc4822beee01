//! A fake Lambda Runtime API (`contracts/aws-lambda.md` §1): `next` long-polls for queued events and answers
//! with the headers AWS sends (or, on request, a deadline shaped as local emulators send it); `response`, `error` and `init/error` are recorded with the time
//! they arrived, so tests can check deadlines. One invocation at a time: a `next` while one is open, or an
//! answer for an unknown request id, is recorded as a violation.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Value),
    Error { error_type: String, body: Value },
}

/// A finished invocation.
#[derive(Debug, Clone)]
pub struct Finished {
    pub outcome: Outcome,
    /// Whether the answer came before the deadline given in `next`.
    pub before_deadline: bool,
    pub elapsed: Duration,
}

struct Pending {
    request_id: String,
    event: Value,
    timeout: Duration,
    deadline: DeadlineHeader,
}

/// How `next` sends `Lambda-Runtime-Deadline-Ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeadlineHeader {
    /// As AWS: epoch milliseconds of delivery time + timeout.
    #[default]
    Epoch,
    /// Not at all (some local emulators).
    Missing,
    /// The timeout as a duration in milliseconds (`cargo lambda watch` sends `600000`).
    Duration,
}

struct Open {
    deadline_ms: u128,
    started: Instant,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Pending>,
    open: BTreeMap<String, Open>,
    finished: BTreeMap<String, Finished>,
    init_error: Option<Value>,
    next_calls: usize,
    first_next: Option<Instant>,
    violations: Vec<String>,
    counter: u64,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    queued: Notify,
    /// TCP connections accepted.
    connections: AtomicUsize,
    /// Answer every request with `Connection: close` (an API that does not keep connections open).
    close_each: AtomicBool,
}

/// A running fake Runtime API; stops when dropped.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = app(shared.clone());
        let counted = shared.clone();
        let listener = axum::serve::ListenerExt::tap_io(listener, move |_| {
            counted.connections.fetch_add(1, Ordering::Relaxed);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// The environment a Lambda runtime finds on AWS (`lambda_runtime` panics without any of these).
    pub fn lambda_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.addr.to_string()),
            (
                "AWS_LAMBDA_FUNCTION_NAME",
                "kube-audit-forwarder".to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_string()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Queue an invocation with `timeout` (the function's timeout: deadline = delivery time + timeout).
    pub fn invoke(&self, event: Value, timeout: Duration) -> String {
        self.invoke_with(event, timeout, DeadlineHeader::Epoch)
    }

    /// [`RuntimeApi::invoke`] with the deadline header shaped as `deadline` says (the fake still holds the
    /// function to `timeout`).
    pub fn invoke_with(&self, event: Value, timeout: Duration, deadline: DeadlineHeader) -> String {
        self.queue(None, event, timeout, deadline)
    }

    /// [`RuntimeApi::invoke`] under a request id of the caller's (emulators do not all send UUIDs).
    pub fn invoke_as(&self, request_id: &str, event: Value, timeout: Duration) -> String {
        self.queue(Some(request_id), event, timeout, DeadlineHeader::Epoch)
    }

    fn queue(
        &self,
        request_id: Option<&str>,
        event: Value,
        timeout: Duration,
        deadline: DeadlineHeader,
    ) -> String {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.counter += 1;
        let request_id = request_id.map_or_else(
            || format!("00000000-0000-4000-8000-{:012}", inner.counter),
            str::to_string,
        );
        inner.queue.push_back(Pending {
            request_id: request_id.clone(),
            event,
            timeout,
            deadline,
        });
        drop(inner);
        self.shared.queued.notify_one();
        request_id
    }

    /// Wait until `request_id` finished.
    pub async fn finished(&self, request_id: &str, wait: Duration) -> Finished {
        crate::wait_for(wait, &format!("invocation {request_id}"), || {
            self.shared
                .inner
                .lock()
                .unwrap()
                .finished
                .get(request_id)
                .cloned()
        })
        .await
    }

    pub async fn init_error(&self, wait: Duration) -> Value {
        crate::wait_for(wait, "init error", || {
            self.shared.inner.lock().unwrap().init_error.clone()
        })
        .await
    }

    pub fn next_calls(&self) -> usize {
        self.shared.inner.lock().unwrap().next_calls
    }

    /// When the runtime first asked for work.
    pub fn first_next(&self) -> Option<Instant> {
        self.shared.inner.lock().unwrap().first_next
    }

    /// TCP connections the runtime opened so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// From now on, close the connection after every answer (`Connection: close`).
    pub fn close_after_each_answer(&self) {
        self.shared.close_each.store(true, Ordering::Relaxed);
    }

    pub fn violations(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().violations.clone()
    }
}

fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .layer(axum::middleware::map_response_with_state(
            shared.clone(),
            close_if_asked,
        ))
        .with_state(shared)
}

async fn close_if_asked(State(shared): State<Arc<Shared>>, mut response: Response) -> Response {
    if shared.close_each.load(Ordering::Relaxed) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    {
        let mut inner = shared.inner.lock().unwrap();
        inner.next_calls += 1;
        inner.first_next.get_or_insert_with(Instant::now);
        if !inner.open.is_empty() {
            inner
                .violations
                .push("next called while an invocation was still open".into());
        }
    }
    let pending = loop {
        let notified = shared.queued.notified();
        if let Some(p) = shared.inner.lock().unwrap().queue.pop_front() {
            break p;
        }
        notified.await;
    };
    let deadline_ms = now_ms() + pending.timeout.as_millis();
    shared.inner.lock().unwrap().open.insert(
        pending.request_id.clone(),
        Open {
            deadline_ms,
            started: Instant::now(),
        },
    );
    let mut headers = vec![
        ("Lambda-Runtime-Aws-Request-Id", pending.request_id.clone()),
        (
            "Lambda-Runtime-Invoked-Function-Arn",
            "arn:aws:lambda:eu-west-1:111122223333:function:kube-audit-forwarder".to_string(),
        ),
        (
            "Lambda-Runtime-Trace-Id",
            "Root=1-00000000-000000000000000000000000;Sampled=0".to_string(),
        ),
        ("Content-Type", "application/json".to_string()),
    ];
    match pending.deadline {
        DeadlineHeader::Epoch => {
            headers.push(("Lambda-Runtime-Deadline-Ms", deadline_ms.to_string()))
        }
        DeadlineHeader::Duration => headers.push((
            "Lambda-Runtime-Deadline-Ms",
            pending.timeout.as_millis().to_string(),
        )),
        DeadlineHeader::Missing => {}
    }
    let mut response = (StatusCode::OK, pending.event.to_string()).into_response();
    for (name, value) in headers {
        if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn finish(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    let mut inner = shared.inner.lock().unwrap();
    let Some(open) = inner.open.remove(id) else {
        inner
            .violations
            .push(format!("answer for unknown or finished request {id}"));
        return StatusCode::BAD_REQUEST;
    };
    let finished = Finished {
        outcome,
        before_deadline: now_ms() <= open.deadline_ms,
        elapsed: open.started.elapsed(),
    };
    inner.finished.insert(id.to_string(), finished);
    StatusCode::ACCEPTED
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    finish(&shared, &id, Outcome::Response(value))
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let error_type = headers
        .get("Lambda-Runtime-Function-Error-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    finish(&shared, &id, Outcome::Error { error_type, body })
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.inner.lock().unwrap().init_error = Some(body);
    StatusCode::ACCEPTED
}
