//! The blob side of drain mode against a real Azurite (the Azure Storage emulator, npm package `azurite`),
//! on loopback, over TLS, with OAuth: the SDK's `BlobCheckpointStore` writes checkpoints and ownership
//! claims that a new store reads back after Azurite itself was restarted, and the failover container
//! ([`BlobSink`]) keeps parked batches as failover records.
//!
//! Azurite is found at `AZURITE_BLOB` or as `azurite-blob` on `PATH`; without it the tests say so and pass,
//! unless `KAF_REQUIRE_AZURITE=1` (CI) makes its absence a failure.

#![allow(clippy::unwrap_used)]

use super::{BlobSink, container};
use crate::drain::DrainMetrics;
use crate::drain::tests::{MemorySource, batches, drain_until_done, quota};
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{Transport, Url};
use azure_core::time::OffsetDateTime;
use azure_messaging_eventhubs::CheckpointStore;
use azure_messaging_eventhubs::models::{Checkpoint, Ownership};
use azure_messaging_eventhubs_checkpointstore_blob::BlobCheckpointStore;
use azure_storage_blob::BlobContainerClient;
use base64::Engine as _;
use kaf_testkit::pki::Pki;
use kaf_testkit::receiver::Receiver;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NAMESPACE: &str = "kaf-test.servicebus.windows.net";
const HUB: &str = "aks-audit";
const GROUP: &str = "kube-audit-forwarder";

fn azurite_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AZURITE_BLOB") {
        return Some(PathBuf::from(path));
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("azurite-blob"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("KAF_REQUIRE_AZURITE").as_deref() != Ok("1"),
            "KAF_REQUIRE_AZURITE=1 but azurite-blob is neither at AZURITE_BLOB nor on PATH"
        );
        eprintln!(
            "skipped: azurite-blob not found (npm install azurite@3.35.0, then AZURITE_BLOB or PATH)"
        );
    }
    found
}

/// An Azurite blob service on 127.0.0.1, HTTPS with the test CA, OAuth bearer tokens checked.
struct Azurite {
    child: Child,
    port: u16,
}

impl Azurite {
    fn start(binary: &Path, data: &Path, pki: &Pki, port: u16) -> Self {
        let child = Command::new(binary)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--cert")
            .arg(&pki.server_cert)
            .arg("--key")
            .arg(&pki.server_key)
            .args(["--oauth", "basic", "--location"])
            .arg(data)
            // The SDK speaks a newer service version than the emulator knows; the calls it makes exist in both.
            .args(["--silent", "--skipApiVersionCheck", "--loose"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "azurite did not listen on {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port }
    }

    fn container_url(&self, name: &str) -> Url {
        Url::parse(&format!(
            "https://127.0.0.1:{}/devstoreaccount1/{name}",
            self.port
        ))
        .unwrap()
    }

    /// SIGTERM: Azurite saves its metadata database on the way out (SIGKILL would lose the last seconds).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What Azurite's `--oauth basic` accepts: a JWT for `audience` from an Entra ID issuer, within its
/// lifetime, `iat` included (the signature is not checked, so it stays unsigned). Asked for any scope but
/// Storage's, it fails the test.
#[derive(Debug)]
struct EmulatorCredential {
    audience: &'static str,
}

const STORAGE: EmulatorCredential = EmulatorCredential {
    audience: "https://storage.azure.com",
};

#[async_trait::async_trait]
impl TokenCredential for EmulatorCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, ["https://storage.azure.com/.default"]);
        let now = OffsetDateTime::now_utc();
        let part = |value: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
        };
        let token = format!(
            "{}.{}.unsigned",
            part(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
            part(serde_json::json!({
                "aud": self.audience,
                "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
                "oid": "11111111-1111-1111-1111-111111111111",
                "iat": now.unix_timestamp() - 60,
                "nbf": now.unix_timestamp() - 60,
                "exp": now.unix_timestamp() + 3600,
            }))
        );
        Ok(AccessToken::new(token, now + Duration::from_secs(3600)))
    }
}

/// One test's emulator set-up: the binary, a scratch directory (its data and PKI), a port.
struct Fixture {
    binary: PathBuf,
    dir: tempfile::TempDir,
    pki: Pki,
    port: u16,
}

impl Fixture {
    /// `None`: no Azurite here (the test is skipped, see [`azurite_binary`]).
    fn new() -> Option<Self> {
        let binary = azurite_binary()?;
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(&dir.path().join("pki"), "azurite");
        Some(Self {
            binary,
            dir,
            pki,
            port: kaf_testkit::free_port(),
        })
    }

    /// Azurite on this fixture's data and port (again after a stop: the same data).
    fn start(&self) -> Azurite {
        Azurite::start(
            &self.binary,
            &self.dir.path().join("data"),
            &self.pki,
            self.port,
        )
    }

    fn client(
        &self,
        azurite: &Azurite,
        name: &str,
        credential: EmulatorCredential,
    ) -> BlobContainerClient {
        container(
            azurite.container_url(name),
            Arc::new(credential),
            Some(transport(&self.pki)),
        )
        .unwrap()
    }

    /// The container `name`, created.
    async fn created(&self, azurite: &Azurite, name: &str) -> BlobContainerClient {
        let client = self.client(azurite, name, STORAGE);
        client.create(None).await.unwrap();
        client
    }
}

/// The SDK's pipeline over our reqwest, trusting only the test CA (verification on, as in production).
fn transport(pki: &Pki) -> Transport {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&pki.ca).unwrap();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        // The blob client's ranged downloads need the bytes as stored.
        .no_gzip()
        .no_deflate()
        .build()
        .unwrap();
    Transport::new(Arc::new(client))
}

fn store(fixture: &Fixture, azurite: &Azurite) -> Arc<BlobCheckpointStore> {
    BlobCheckpointStore::new(fixture.client(azurite, "checkpoints", STORAGE))
}

fn checkpoint(partition: &str, offset: &str, sequence_number: i64) -> Checkpoint {
    Checkpoint {
        fully_qualified_namespace: NAMESPACE.into(),
        event_hub_name: HUB.into(),
        consumer_group: GROUP.into(),
        partition_id: partition.into(),
        offset: Some(offset.into()),
        sequence_number: Some(sequence_number),
    }
}

fn claim(partition: &str, owner: &str, previous: Option<&Ownership>) -> Ownership {
    Ownership {
        fully_qualified_namespace: NAMESPACE.into(),
        event_hub_name: HUB.into(),
        consumer_group: GROUP.into(),
        partition_id: partition.into(),
        owner_id: Some(owner.into()),
        etag: previous.and_then(|p| p.etag.clone()),
        last_modified_time: None,
    }
}

async fn checkpoints_by_partition(store: &BlobCheckpointStore) -> BTreeMap<String, (String, i64)> {
    store
        .list_checkpoints(NAMESPACE, HUB, GROUP)
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            (
                c.partition_id,
                (c.offset.unwrap_or_default(), c.sequence_number.unwrap()),
            )
        })
        .collect()
}

async fn owners_by_partition(store: &BlobCheckpointStore) -> BTreeMap<String, Ownership> {
    store
        .list_ownerships(NAMESPACE, HUB, GROUP)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.partition_id.clone(), o))
        .collect()
}

#[tokio::test]
async fn checkpoints_and_ownership_claims_are_kept_across_a_restart_of_azurite_and_of_the_store() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let azurite = fixture.start();
    fixture.created(&azurite, "checkpoints").await;
    let checkpoints = store(&fixture, &azurite);
    assert!(checkpoints_by_partition(&checkpoints).await.is_empty());

    // The first checkpoint creates the blob, the next one overwrites it.
    checkpoints
        .update_checkpoint(checkpoint("0", "4096", 41))
        .await
        .unwrap();
    checkpoints
        .update_checkpoint(checkpoint("0", "8192", 99))
        .await
        .unwrap();
    checkpoints
        .update_checkpoint(checkpoint("1", "512", 7))
        .await
        .unwrap();

    // Ownership is optimistic concurrency on the blob's ETag: a first claim creates it, a claim without
    // the current ETag loses, a renewal with it wins and changes it, a stale ETag loses.
    let first = checkpoints
        .claim_ownership(&[
            claim("0", "instance-a", None),
            claim("1", "instance-a", None),
        ])
        .await
        .unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().all(|o| o.etag.is_some()));
    let race = checkpoints
        .claim_ownership(&[claim("0", "instance-b", None)])
        .await
        .unwrap();
    assert!(race.is_empty(), "a claim without the ETag won: {race:?}");
    let renewed = checkpoints
        .claim_ownership(&[claim("0", "instance-a", Some(&first[0]))])
        .await
        .unwrap();
    assert_eq!(renewed.len(), 1);
    assert_ne!(renewed[0].etag, first[0].etag);
    let stale = checkpoints
        .claim_ownership(&[claim("0", "instance-b", Some(&first[0]))])
        .await
        .unwrap();
    assert!(stale.is_empty(), "a stale ETag won: {stale:?}");
    // Taking over (as the load balancer does with an expired claim) needs the current ETag.
    let taken = checkpoints
        .claim_ownership(&[claim("0", "instance-b", Some(&renewed[0]))])
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    // A header ETag is quoted, a listed one is not (as in Azure): compared without the quotes.
    let etag = |o: &Ownership| {
        o.etag
            .as_ref()
            .map(|e| e.to_string().trim_matches('"').to_string())
    };
    let expected_owners = BTreeMap::from([
        ("0".to_string(), ("instance-b".to_string(), etag(&taken[0]))),
        ("1".to_string(), ("instance-a".to_string(), etag(&first[1]))),
    ]);
    drop(checkpoints);

    // Restart the emulator on the same data, and read through a new store, as a restarted process would.
    azurite.stop();
    let azurite = fixture.start();
    let reopened = store(&fixture, &azurite);
    assert_eq!(
        checkpoints_by_partition(&reopened).await,
        BTreeMap::from([
            ("0".to_string(), ("8192".to_string(), 99)),
            ("1".to_string(), ("512".to_string(), 7)),
        ])
    );
    let listed = owners_by_partition(&reopened).await;
    let owners: BTreeMap<String, (String, Option<String>)> = listed
        .iter()
        .map(|(partition, o)| {
            (
                partition.clone(),
                (o.owner_id.clone().unwrap_or_default(), etag(o)),
            )
        })
        .collect();
    assert_eq!(owners, expected_owners);
    // The load balancer renews with the ETag it listed: that must still win, and only once.
    let renewed = reopened
        .claim_ownership(&[claim("1", "instance-a", Some(&listed["1"]))])
        .await
        .unwrap();
    assert_eq!(renewed.len(), 1, "a renewal with the listed ETag lost");
    let replayed = reopened
        .claim_ownership(&[claim("1", "instance-b", Some(&listed["1"]))])
        .await
        .unwrap();
    assert!(
        replayed.is_empty(),
        "the listed ETag won twice: {replayed:?}"
    );
    azurite.stop();
}

/// A token Azurite refuses (wrong audience) is an error from the store, not an empty listing that would
/// make a processor start every partition from its beginning.
#[tokio::test]
async fn a_refused_token_is_an_error_not_an_empty_store() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let azurite = fixture.start();
    fixture.created(&azurite, "checkpoints").await;
    let wrong_audience = EmulatorCredential {
        audience: "https://vault.azure.net",
    };
    let refused = BlobCheckpointStore::new(fixture.client(&azurite, "checkpoints", wrong_audience));
    let error = refused
        .list_checkpoints(NAMESPACE, HUB, GROUP)
        .await
        .unwrap_err();
    assert_eq!(
        error.http_status(),
        Some(azure_core::http::StatusCode::Forbidden),
        "{error}"
    );
    azurite.stop();
}

/// The drain core refusing a batch for good parks it through the real failover container: one blob per
/// batch, named by its sequence numbers, holding failover records `replay` reads; parking again overwrites.
#[tokio::test]
async fn refused_batches_are_parked_in_the_failover_container_as_failover_records() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let azurite = fixture.start();
    let failover = fixture.created(&azurite, "audit-failover").await;
    let sink = BlobSink(failover);

    let rx = Arc::new(Receiver::start(crate::drain::tests::KEY, "t").await);
    rx.set_always(Some(quota()));
    let (batches, events) = batches();
    let mut source = MemorySource::new(&rx, batches);
    let stats = drain_until_done(&rx, &mut source, &sink, &DrainMetrics::new())
        .await
        .unwrap();
    assert_eq!((stats.parked_batches, stats.checkpoints), (2, 2));
    assert_eq!(source.checkpoints, vec![102, 104]);

    let mut records = Vec::new();
    for name in ["drain/p3/101-102.ndjson", "drain/p3/103-104.ndjson"] {
        let text = sink
            .0
            .blob_client(name)
            .download(None)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .body
            .collect_string()
            .await
            .unwrap();
        for line in text.lines() {
            records.push(kaf_envelope::failover::FailoverRecord::parse_line(line).unwrap());
        }
    }
    assert_eq!(records.len(), events);
    assert!(records.iter().all(|r| r.class == "quota"));

    // A batch parked twice (a crash between parking and the checkpoint) is one blob, not two copies.
    crate::drain::FailoverSink::park(&sink, "drain/p3/101-102.ndjson", "replaced\n")
        .await
        .unwrap();
    let again = sink
        .0
        .blob_client("drain/p3/101-102.ndjson")
        .download(None)
        .await
        .unwrap()
        .body
        .collect_string()
        .await
        .unwrap();
    assert_eq!(again, "replaced\n");
    azurite.stop();
}
