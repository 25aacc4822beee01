//! Test fakes for what cannot run here, faithful to `contracts/` and strict about them:
//!
//! - [`receiver`]: the upload API over real TLS (its own CA, trusted by the binary under test through
//!   `SSL_CERT_FILE`), checking every header, the gzip'd JSON array and the limits, with scripted faults
//!   (5xx, slow responses, dropped connections, quota headers, 200 without `x-uploadid`).
//! - [`runtime`]: the Lambda Runtime API (`/2018-06-01/runtime/...`), one invocation at a time, with deadlines,
//!   recorded responses and errors, and redelivery of an event.
//! - [`payloads`]: cloud wrappers around real sample events (CloudWatch subscription events).
//! - [`webhook`]: the kube-apiserver's audit webhook backend, configured from its kubeconfig, with retries.
//! - [`lumberjack`]: the apiserver log backend's writer: rename-rotation and gzip'd backups.
//! - [`pki`]: a CA with server and client certificates on disk.
//! - [`fixtures`]: paths of the bundled samples.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fixtures;
pub mod lumberjack;
pub mod payloads;
pub mod pki;
pub mod process;
pub mod receiver;
pub mod runtime;
pub mod secrets;
pub mod webhook;

use std::time::Duration;

/// A loopback port free right now (for a server that must come back on the same port after a restart).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `check` until it returns `Some`, or panic after `timeout` with `what`.
pub async fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
