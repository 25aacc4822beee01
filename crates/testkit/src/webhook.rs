//! A stand-in for the kube-apiserver's audit webhook backend: it reads the `--audit-webhook-config-file`
//! kubeconfig (server, CA, token or client certificate, relative paths resolved like client-go), posts
//! batches as `EventList`s whose items carry no `kind`/`apiVersion`, and resends a whole batch on 500, 504,
//! 429 or any answer with `Retry-After` (scaled down for tests), as `webhook.DefaultShouldRetry` does, until it
//! gives up. It also resends on every connection error, where the apiserver only does on resets: the crash
//! tests restart the server behind it, and a real deployment covers that gap with a supervisor.

use rustls::pki_types::pem::PemObject as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Deserialize)]
struct Kubeconfig {
    clusters: Vec<Named<Cluster>>,
    users: Vec<Named<User>>,
    contexts: Vec<Named<Context>>,
    #[serde(rename = "current-context")]
    current_context: String,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: T,
}

#[derive(Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<PathBuf>,
    #[serde(rename = "client-key")]
    client_key: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    user: String,
}

/// How the client retries a batch.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub initial: Duration,
    /// `Retry-After` seconds are multiplied by this (tests cannot wait 10 s).
    pub retry_after_scale: f64,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 60,
            initial: Duration::from_millis(50),
            retry_after_scale: 0.01,
        }
    }
}

/// What became of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Answered 200: the receiver owns the events now.
    pub acknowledged: bool,
    /// Status of every attempt (0: no HTTP answer).
    pub statuses: Vec<u16>,
    pub retry_after: Vec<String>,
}

#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    pub retry: Retry,
}

impl WebhookClient {
    /// Configure from a kubeconfig file, as the apiserver does.
    pub fn from_kubeconfig(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap();
        let config: Kubeconfig = serde_saphyr::from_str(&text).unwrap();
        let base = path.parent().unwrap();
        let resolve = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        let context = &config
            .contexts
            .iter()
            .find(|c| c.name == config.current_context)
            .unwrap()
            .value;
        let cluster = &config
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .unwrap()
            .value;
        let user = &config
            .users
            .iter()
            .find(|u| u.name == context.user)
            .unwrap()
            .value;

        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(resolve(cluster.certificate_authority.as_ref().unwrap())).unwrap();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let tls = match (&user.client_certificate, &user.client_key) {
            (Some(cert), Some(key)) => {
                let chain = rustls::pki_types::CertificateDer::pem_file_iter(resolve(cert))
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = rustls::pki_types::PrivateKeyDer::from_pem_file(resolve(key)).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            _ => builder.with_no_client_auth(),
        };
        let token = user.token.clone().or_else(|| {
            user.token_file.as_ref().map(|f| {
                std::fs::read_to_string(resolve(f))
                    .unwrap()
                    .trim()
                    .to_string()
            })
        });
        Self {
            http: reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            url: cluster.server.clone(),
            token,
            retry: Retry::default(),
        }
    }

    /// The same endpoint with another (or no) token.
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    /// The endpoint's base URL (scheme, host, port) for other paths.
    pub fn base_url(&self) -> String {
        let after_scheme = self.url.find("://").map_or(0, |i| i + 3);
        let end = self.url[after_scheme..]
            .find('/')
            .map_or(self.url.len(), |i| after_scheme + i);
        self.url[..end].to_string()
    }

    /// GET `path` on the endpoint (no credentials): status and body.
    pub async fn get(&self, path: &str) -> Result<(u16, String), String> {
        let response = self
            .http
            .get(format!("{}{path}", self.base_url()))
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.unwrap_or_default()))
    }

    /// One POST of a raw body: status, `Retry-After` and body, or the transport error.
    pub async fn post_raw(
        &self,
        body: Vec<u8>,
        gzip: bool,
    ) -> Result<(u16, Option<String>, String), String> {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if gzip {
            request = request.header("content-encoding", "gzip");
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((
            status,
            retry_after,
            response.text().await.unwrap_or_default(),
        ))
    }

    /// Send `events` as one batch, resending it whole until it is acknowledged or the attempts run out.
    pub async fn send_batch(&self, events: &[Value]) -> Outcome {
        let body = event_list(events);
        let mut outcome = Outcome {
            acknowledged: false,
            statuses: Vec::new(),
            retry_after: Vec::new(),
        };
        let mut delay = self.retry.initial;
        for _ in 0..self.retry.attempts {
            let wait = match self.post_raw(body.clone(), false).await {
                Ok((200, _, _)) => {
                    outcome.statuses.push(200);
                    outcome.acknowledged = true;
                    return outcome;
                }
                // k8s.io/apiserver `webhook.DefaultShouldRetry`: 500, 504, 429, or any answer with Retry-After.
                Ok((status, retry_after, _))
                    if matches!(status, 429 | 500 | 504) || retry_after.is_some() =>
                {
                    outcome.statuses.push(status);
                    match retry_after {
                        Some(secs) => {
                            let scaled =
                                secs.parse::<f64>().unwrap_or(1.0) * self.retry.retry_after_scale;
                            outcome.retry_after.push(secs);
                            Duration::from_secs_f64(scaled)
                        }
                        None => delay,
                    }
                }
                Ok((status, _, _)) => {
                    // Anything else (4xx, a bare 503): the apiserver gives up on the batch.
                    outcome.statuses.push(status);
                    return outcome;
                }
                Err(_) => {
                    outcome.statuses.push(0);
                    delay
                }
            };
            tokio::time::sleep(wait).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(1));
        }
        outcome
    }
}

/// An `EventList` body as the webhook backend sends it: items without `kind`/`apiVersion`.
pub fn event_list(events: &[Value]) -> Vec<u8> {
    let items: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut item = e.clone();
            if let Some(map) = item.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            item
        })
        .collect();
    serde_json::to_vec(&json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}))
        .unwrap()
}
