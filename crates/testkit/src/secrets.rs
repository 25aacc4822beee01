//! A fake AWS Parameters and Secrets Lambda extension (`GET /secretsmanager/get?secretId=…`), strict about the
//! session-token header; unknown secrets get 400 as the extension answers for a missing secret.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct SecretsExtension {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SecretsExtension {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Store {
    token: String,
    secrets: HashMap<String, String>,
}

impl SecretsExtension {
    /// Serve `secrets` (id → SecretString) to callers presenting `token`.
    pub async fn start(token: &str, secrets: &[(&str, &str)]) -> Self {
        Self::start_on(0, token, secrets).await
    }

    /// [`SecretsExtension::start`] on `port` (0: any free one), e.g. one a function already polls, to start
    /// late as the real extension may.
    pub async fn start_on(port: u16, token: &str, secrets: &[(&str, &str)]) -> Self {
        let store = Arc::new(Store {
            token: token.into(),
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
        let app = Router::new()
            .route("/secretsmanager/get", get(get_secret))
            .with_state(store);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, task }
    }
}

async fn get_secret(
    State(store): State<Arc<Store>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<String, StatusCode> {
    let token = headers
        .get("X-Aws-Parameters-Secrets-Token")
        .and_then(|v| v.to_str().ok());
    if token != Some(store.token.as_str()) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let id = query.get("secretId").ok_or(StatusCode::BAD_REQUEST)?;
    let value = store.secrets.get(id).ok_or(StatusCode::BAD_REQUEST)?;
    Ok(serde_json::json!({"ARN": id, "Name": "logtypeconfig", "SecretString": value, "VersionStages": ["AWSCURRENT"]}).to_string())
}
