//! `fake-upload`: a local stand-in for the upload API, to try `bootstrap` and `aks-handler` without an
//! account. It is the strict fake the tests use (TLS with its own CA, every header and limit of the contract
//! checked), started on 127.0.0.1 with the production-shaped logtypeconfig (a).
//!
//! It writes an env file (`logTypeConfig` pointed at it, `SSL_CERT_FILE` at its CA) for the function, prints
//! every record it accepts as a JSON line on stdout, and every contract violation on stderr. Ctrl-C stops it.
//!
//! Usage: `cargo run -p kaf-testkit --bin fake-upload -- [ENV_FILE]` (default `target/local/upload.env`).

use kaf_testkit::{fixtures, receiver::Receiver};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env_file = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/local/upload.env".into()),
    );
    let config = fixtures::bench_config("logtypeconfig-a-default-profile.json");
    let rx = Receiver::start(
        config["apiKey"].as_str().unwrap_or_default(),
        config["logType"].as_str().unwrap_or_default(),
    )
    .await;
    if let Some(dir) = env_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // The CA next to the env file, where it outlives this process's temp dir for inspection.
    let ca = env_file.with_extension("ca.pem");
    std::fs::copy(&rx.ca_file, &ca)?;
    let ca = std::fs::canonicalize(&ca)?;
    std::fs::write(
        &env_file,
        format!(
            "logTypeConfig=\"{}\"\nSSL_CERT_FILE=\"{}\"\n",
            fixtures::encoded_config(&config, &rx.upload_domain()),
            ca.display()
        ),
    )?;
    eprintln!(
        "fake upload API on https://{}; environment for the function in {}; accepted records follow on stdout",
        rx.upload_domain(),
        env_file.display()
    );
    let (mut printed, mut reported) = (0, 0);
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let records = rx.records();
        let mut out = std::io::stdout().lock();
        for record in &records[printed..] {
            writeln!(out, "{record}")?;
        }
        out.flush()?;
        printed = records.len();
        let violations = rx.violations();
        for violation in &violations[reported..] {
            eprintln!("contract violation: {violation}");
        }
        reported = violations.len();
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = &mut stop => return Ok(()),
        }
    }
}
