//! End-to-end tests of the real `kube-audit-forwarder` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// `detect`: rule reports, 403 reports, operator rule files, conformance.
mod detect;
/// `doctor` against the fake upload API.
mod doctor;
/// Golden files: the default profile on real samples (`BLESS=1` rewrites them).
mod golden;
/// Running the binary from the repository root.
mod harness;
/// Every replay input shape gives the same records.
mod replay;
/// `serve`: the webhook receiver, its auth, spool, backpressure and crash safety.
mod serve;
/// `tail`: following the log backend's file across rotation and restarts.
mod tail;
/// Uploading with a logtypeconfig: delivery, exit codes, secrets.
mod upload;
/// Usage lines and wording a person reads.
mod usage;
