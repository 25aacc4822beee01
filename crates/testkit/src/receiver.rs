//! A fake upload API over real TLS, strict about `contracts/site24x7-upload.md` §7.
//!
//! Every request is checked (method, path, all headers, `Log-Size` recomputed, gzip, a JSON array of flat
//! records, ≤500 records, ≤5 MB uncompressed, ≤1 MB per record, `upload-id` 32 hex and never reused for other
//! content); a violation is answered 400 and recorded, so a test can assert there were none. Accepted batches
//! are kept by `upload-id`, as a deduplicating server would.
//!
//! Faults are scripted per request: queued ones are used first, then the persistent one (if any).

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, body::Incoming};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the receiver does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Accept normally (to script "first request fine, then …" before a persistent fault).
    Accept,
    /// Answer with this status and no `x-uploadid` (records not accepted).
    Status(u16),
    /// Answer with this status and these headers (quota signals, `Retry-After`, redirects with `Location`,
    /// an empty `x-uploadid`), records not accepted.
    Headers(u16, Vec<(String, String)>),
    /// Accept the batch, then wait this long before answering (the client may time out and retry).
    SlowAccept(Duration),
    /// Close the connection without answering (records not accepted).
    Drop,
    /// Answer 200 without `x-uploadid` (records not accepted).
    OkWithoutUploadId,
}

/// One accepted request.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub upload_id: String,
    pub records: Vec<Value>,
    pub log_size: u64,
    pub user_agent: String,
}

#[derive(Default)]
struct State {
    api_key: String,
    log_type: String,
    script: Mutex<VecDeque<Fault>>,
    always: Mutex<Option<Fault>>,
    accepted: Mutex<BTreeMap<String, Accepted>>,
    /// `upload-id` of every request that arrived, in order, faults included.
    attempts: Mutex<Vec<String>>,
    violations: Mutex<Vec<String>>,
    /// TLS handshakes completed: one per connection the client opened.
    handshakes: std::sync::atomic::AtomicUsize,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    /// PEM of the CA that signed the server certificate: point `SSL_CERT_FILE` at it.
    pub ca_file: PathBuf,
    _dir: TempDir,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Minimal temp dir (keeps the testkit's dependencies small).
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("kaf-receiver-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// The receiver's server certificate, to provoke each TLS failure an operator must be able to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerCert {
    /// Valid for `localhost` and `127.0.0.1`.
    #[default]
    Valid,
    /// Valid, but for another name only (`upload.example.net`).
    WrongName,
    /// For the right names, but expired a year ago.
    Expired,
}

impl Receiver {
    /// Start on 127.0.0.1 with a fresh CA; requests must carry `api_key` and `log_type`.
    pub async fn start(api_key: &str, log_type: &str) -> Self {
        Self::start_with_cert(api_key, log_type, ServerCert::Valid).await
    }

    /// [`Receiver::start`] with a chosen kind of server certificate.
    pub async fn start_with_cert(api_key: &str, log_type: &str, cert: ServerCert) -> Self {
        let (ca_pem, server_config) = tls(cert);
        let dir = temp_dir();
        let ca_file = dir.0.join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            api_key: api_key.into(),
            log_type: log_type.into(),
            ..State::default()
        });
        let acceptor = TlsAcceptor::from(Arc::new(server_config));
        let task = tokio::spawn(serve(listener, acceptor, state.clone()));
        Self {
            addr,
            ca_file,
            _dir: dir,
            state,
            task,
        }
    }

    /// `uploadDomain` value that reaches this receiver.
    pub fn upload_domain(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// Queue faults for the next requests, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.script.lock().unwrap().extend(faults);
    }

    /// A fault for every request after the queued ones (`None`: accept).
    pub fn set_always(&self, fault: Option<Fault>) {
        *self.state.always.lock().unwrap() = fault;
    }

    /// Accepted requests, one per distinct `upload-id`.
    /// TLS handshakes so far (connections are kept open, as the real endpoint's keep-alive does).
    pub fn handshakes(&self) -> usize {
        self.state
            .handshakes
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.state
            .accepted
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect()
    }

    /// All records of the accepted requests.
    pub fn records(&self) -> Vec<Value> {
        self.accepted()
            .into_iter()
            .flat_map(|a| a.records)
            .collect()
    }

    pub fn attempts(&self) -> Vec<String> {
        self.state.attempts.lock().unwrap().clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.violations.lock().unwrap().clone()
    }
}

/// Each receiver's CA has its own name, as two real CAs would (a foreign CA is then an unknown issuer).
fn next_ca() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn tls(cert: ServerCert) -> (String, rustls::ServerConfig) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("kube-audit-forwarder test CA {}", next_ca()),
    );
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let names = match cert {
        ServerCert::WrongName => vec!["upload.example.net".to_string()],
        _ => vec!["localhost".to_string(), "127.0.0.1".to_string()],
    };
    let mut leaf_params = rcgen::CertificateParams::new(names).unwrap();
    if cert == ServerCert::Expired {
        leaf_params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf_params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem(), config)
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<State>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, state) = (acceptor.clone(), state.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            state
                .handshakes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

#[derive(Debug)]
struct DropConnection;
impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault: drop connection")
    }
}
impl std::error::Error for DropConnection {}

fn response(status: u16, headers: &[(&str, &str)]) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let upload_id = header(&parts.headers, "upload-id").unwrap_or_default();
    state.attempts.lock().unwrap().push(upload_id.clone());

    let batch = match check(&parts, &body, &state) {
        Ok(b) => b,
        Err(violation) => {
            state.violations.lock().unwrap().push(violation);
            return Ok(response(400, &[]));
        }
    };
    let fault = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| state.always.lock().unwrap().clone());
    match fault {
        None | Some(Fault::Accept) => {}
        Some(Fault::Status(s)) => return Ok(response(s, &[])),
        Some(Fault::Headers(s, h)) => {
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            return Ok(response(s, &h));
        }
        Some(Fault::Drop) => return Err(DropConnection),
        Some(Fault::OkWithoutUploadId) => return Ok(response(200, &[])),
        Some(Fault::SlowAccept(d)) => {
            accept(&state, batch);
            tokio::time::sleep(d).await;
            return Ok(response(200, &[("x-uploadid", &upload_id)]));
        }
    }
    accept(&state, batch);
    Ok(response(200, &[("x-uploadid", &upload_id)]))
}

fn accept(state: &State, batch: Accepted) {
    let mut accepted = state.accepted.lock().unwrap();
    if let Some(previous) = accepted.get(&batch.upload_id) {
        if previous.records != batch.records {
            state.violations.lock().unwrap().push(format!(
                "upload-id {} reused for different records",
                batch.upload_id
            ));
        }
        return;
    }
    accepted.insert(batch.upload_id.clone(), batch);
}

fn header(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn check(
    parts: &hyper::http::request::Parts,
    body: &[u8],
    state: &State,
) -> Result<Accepted, String> {
    if parts.method != hyper::Method::POST || parts.uri.path() != "/upload" {
        return Err(format!(
            "expected POST /upload, got {} {}",
            parts.method,
            parts.uri.path()
        ));
    }
    let h = &parts.headers;
    let expect = |name: &str, value: &str| match header(h, name) {
        Some(v) if v == value => Ok(()),
        Some(_) => Err(format!("header {name} has the wrong value")),
        None => Err(format!("header {name} missing")),
    };
    expect("x-devicekey", &state.api_key)?;
    expect("x-logtype", &state.log_type)?;
    expect("x-streammode", "1")?;
    expect("content-type", "application/json")?;
    expect("content-encoding", "gzip")?;
    let upload_id = header(h, "upload-id").ok_or("header upload-id missing")?;
    if upload_id.len() != 32 || !upload_id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("upload-id is not 32 hex characters".into());
    }
    let log_size: u64 = header(h, "log-size")
        .ok_or("header Log-Size missing")?
        .parse()
        .map_err(|_| "Log-Size is not a decimal number")?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut json)
        .map_err(|e| format!("body is not gzip: {e}"))?;
    if json.len() > 5_000_000 {
        return Err(format!(
            "uncompressed body of {} bytes exceeds 5 MB",
            json.len()
        ));
    }
    let Value::Array(records) =
        serde_json::from_slice(&json).map_err(|e| format!("body is not JSON: {e}"))?
    else {
        return Err("body is not a JSON array".into());
    };
    if records.is_empty() || records.len() > 500 {
        return Err(format!(
            "{} records in one request (1..=500 allowed)",
            records.len()
        ));
    }
    let mut expected_size = 0u64;
    for (i, r) in records.iter().enumerate() {
        let Value::Object(map) = r else {
            return Err(format!("record {i} is not an object"));
        };
        if r.to_string().len() > 1_000_000 {
            return Err(format!("record {i} exceeds 1 MB"));
        }
        for (k, v) in map {
            if v.is_object() {
                return Err(format!(
                    "record {i} field {k} is a nested object (records are flat)"
                ));
            }
            if !(k.starts_with("_zl") || k.starts_with("s247") || k.starts_with("inode")) {
                expected_size += match v {
                    Value::String(s) => s.len() as u64,
                    other => other.to_string().len() as u64,
                };
            }
        }
        let timestamp = map.get("_zl_timestamp").and_then(Value::as_i64);
        // Milliseconds, and a real time: 0, seconds or an absurd value is a forwarder bug.
        if timestamp.is_none_or(|t| !(946_684_800_000..=32_503_680_000_000).contains(&t)) {
            return Err(format!(
                "record {i} has no _zl_timestamp in milliseconds between 2000 and 3000"
            ));
        }
    }
    if expected_size != log_size {
        return Err(format!(
            "Log-Size {log_size} but field values sum to {expected_size}"
        ));
    }
    Ok(Accepted {
        upload_id,
        records,
        log_size,
        user_agent: header(h, "user-agent").unwrap_or_default(),
    })
}
