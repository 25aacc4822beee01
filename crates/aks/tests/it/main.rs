//! End-to-end tests of the real `aks-handler` binary: an in-test Functions host sends the exact request
//! shapes of `contracts/azure-functions.md` (string-encoded arrays, double-encoded bodies, Metadata arrays as
//! strings) with real audit events wrapped as AKS records, and the strict TLS upload receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Upload faults: retries, failover, secrets.
mod failover;
/// Spawning the handler and speaking the host's protocol.
mod harness;
/// Routing, malformed bodies, oversize records, real AKS records.
mod invocations;
/// Production-sized invocations, the invocation size limit, unique ids.
mod limits;
/// The deployable zip built by templates/azure-functions/package.py.
mod packaging;
