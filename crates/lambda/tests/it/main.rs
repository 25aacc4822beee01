//! End-to-end tests of the real `bootstrap` binary against a fake Lambda Runtime API and a strict TLS upload
//! receiver (both in `kaf-testkit`), with real sample events wrapped as CloudWatch subscription events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Happy paths: every event exactly once, selection of streams and messages, limits.
mod delivery;
/// Local emulators (deadline shapes, the real `cargo lambda watch`) and hostile payloads (gzip bombs).
mod emulators;
/// Upload faults: recovery, deadline, error classes.
mod faults;
/// Spawning the binary with its environment.
mod harness;
/// Start-up: configuration errors, the secret ARN path, secrets kept out of logs.
mod init;
