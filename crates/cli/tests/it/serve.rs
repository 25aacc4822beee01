use crate::harness::repo_root;
use base64::Engine as _;
use kaf_testkit::fixtures;
use kaf_testkit::pki::Pki;
use kaf_testkit::process::{Spawned, spawn_command};
use kaf_testkit::receiver::{Fault, Receiver};
use kaf_testkit::wait_for;
use kaf_testkit::webhook::{WebhookClient, event_list};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

const KEY: &str = "serve-test-key-SECRET-7";
const LOG_TYPE: &str = "Kubernetes Audit Logs";
const TOKEN: &str = "webhook-token-SECRET-0451";

/// `serve` as a real process, with its PKI, token file, spool and the webhook kubeconfig from
/// `templates/webhook/kubeconfig.yaml`.
pub struct Serve {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub spool: PathBuf,
    pub kubeconfig: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// `ulimit -n` for the process, when a test needs a small descriptor limit.
    fd_limit: Option<u32>,
    process: Option<Spawned>,
}

/// What a forwarding process needs to upload to `rx`: its logtypeconfig, its CA, and short backoffs.
pub fn upload_env(rx: &Receiver) -> Vec<(String, String)> {
    vec![
        ("logTypeConfig".to_string(), logtypeconfig(rx)),
        (
            "SSL_CERT_FILE".to_string(),
            rx.ca_file.display().to_string(),
        ),
        ("UPLOAD_BACKOFF_BASE_MS".to_string(), "20".to_string()),
        ("UPLOAD_BACKOFF_MAX_MS".to_string(), "100".to_string()),
    ]
}

pub fn logtypeconfig(rx: &Receiver) -> String {
    base64::engine::general_purpose::STANDARD.encode(
        json!({"apiKey": KEY, "logType": LOG_TYPE, "uploadDomain": rx.upload_domain()}).to_string(),
    )
}

/// The template with its placeholders filled in, written next to the PKI.
pub fn kubeconfig(dir: &Path, url: &str, ca: &Path, token: &str) -> PathBuf {
    let template =
        std::fs::read_to_string(repo_root().join("templates/webhook/kubeconfig.yaml")).unwrap();
    let text = template
        .replace("${FORWARDER_URL}", url)
        .replace("${FORWARDER_CA_FILE}", &ca.display().to_string())
        .replace("${WEBHOOK_TOKEN}", token);
    assert!(
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .all(|l| !l.contains("${")),
        "every placeholder replaced"
    );
    let path = dir.join("webhook-kubeconfig.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Serve {
    pub async fn start(rx: &Receiver, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path(), "forwarder");
        let token_file = dir.path().join("tokens");
        std::fs::write(&token_file, format!("# current\n{TOKEN}\n")).unwrap();
        let port = kaf_testkit::free_port();
        let spool = dir.path().join("spool");
        let kubeconfig = kubeconfig(
            dir.path(),
            &format!("https://127.0.0.1:{port}/audit"),
            &pki.ca,
            TOKEN,
        );
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-cert",
            &pki.server_cert.display().to_string(),
            "--tls-key",
            &pki.server_key.display().to_string(),
            "--token-file",
            &token_file.display().to_string(),
            "--client-ca",
            &pki.ca.display().to_string(),
            "--client-name",
            "kube-apiserver",
            "--spool-dir",
            &spool.display().to_string(),
            "--retry-after-secs",
            "1",
            "--deadline-secs",
            "3",
            "--cluster",
            "onprem-1",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut env = upload_env(rx);
        env.push(("RUST_LOG".to_string(), "info".to_string()));
        let mut serve = Self {
            dir,
            pki,
            spool,
            kubeconfig,
            args,
            env,
            fd_limit: None,
            process: None,
        };
        serve.restart().await;
        serve
    }

    /// [`Serve::start`] under `ulimit -n fd_limit`.
    pub async fn start_with_fd_limit(rx: &Receiver, extra: &[&str], fd_limit: u32) -> Self {
        let mut serve = Self::start(rx, extra).await;
        serve.kill9().await;
        serve.fd_limit = Some(fd_limit);
        serve.restart().await;
        serve
    }

    /// (Re)start the process and wait until it listens.
    pub async fn restart(&mut self) {
        let binary = Path::new(env!("CARGO_BIN_EXE_kube-audit-forwarder"));
        let process = match self.fd_limit {
            None => spawn_command(binary, &self.args, &self.env),
            Some(limit) => {
                let mut args = vec![
                    "-c".to_string(),
                    format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
                    binary.display().to_string(),
                ];
                args.extend(self.args.iter().cloned());
                spawn_command(Path::new("/bin/sh"), &args, &self.env)
            }
        };
        wait_for(Duration::from_secs(10), "serve to listen", || {
            process.output().contains("listening on").then_some(())
        })
        .await;
        self.process = Some(process);
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill9(&mut self) {
        let mut process = self.process.take().expect("running");
        process.child.start_kill().unwrap();
        process.child.wait().await.unwrap();
    }

    pub fn output(&self) -> String {
        self.process
            .as_ref()
            .map(Spawned::output)
            .unwrap_or_default()
    }

    pub fn client(&self) -> WebhookClient {
        WebhookClient::from_kubeconfig(&self.kubeconfig)
    }

    pub fn spooled_segments(&self) -> usize {
        std::fs::read_dir(&self.spool)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("seg-")
            })
            .count()
    }

    pub async fn metric(&self, line_prefix: &str) -> f64 {
        let (status, text) = self.client().get("/metrics").await.unwrap();
        assert_eq!(status, 200);
        text.lines()
            .find_map(|l| {
                l.strip_prefix(line_prefix)
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }
}

/// Records by `(auditid, stage)`, with how often each arrived.
pub fn counts(records: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        let key = (
            r["auditid"].as_str().unwrap_or_default().to_string(),
            r["stage"].as_str().unwrap_or_default().to_string(),
        );
        *counts.entry(key).or_default() += 1;
    }
    counts
}

fn keys(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["auditID"].as_str().unwrap().to_string(),
                e["stage"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn acknowledged_batches_are_delivered_once_even_when_the_apiserver_resends_them() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let serve = Serve::start(&rx, &[]).await;
    let client = serve.client();
    let events = fixtures::events(&fixtures::audit2rbac_demo());
    for batch in events.chunks(10) {
        assert!(client.send_batch(batch).await.acknowledged);
    }
    // A retried batch (the apiserver did not see our 200) and a gzip'd one.
    assert!(client.send_batch(&events[..10]).await.acknowledged);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&event_list(&events[30..])).unwrap();
    let (status, _, _) = client.post_raw(gz.finish().unwrap(), true).await.unwrap();
    assert_eq!(status, 200);

    let expected = fixtures::distinct(&events);
    wait_for(Duration::from_secs(20), "every event delivered", || {
        (rx.records().len() >= expected).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(5), "spool emptied", || {
        (serve.spooled_segments() == 0).then_some(())
    })
    .await;
    let got = counts(&rx.records());
    assert_eq!(got.len(), expected);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    assert!(got.contains_key(&keys(&events[..1])[0]));
    assert_eq!(rx.violations(), Vec::<String>::new());
    let record = &rx.records()[0];
    assert_eq!(record["s247agentuid"], "onprem-1");
    assert_eq!(record["logstream"], "webhook");
    assert_eq!(
        serve.metric("kaf_events_duplicate_total ").await,
        17.0,
        "10 resent + 7 gzip'd repeats"
    );
    assert_eq!(
        serve.metric("kaf_records_delivered_total ").await,
        expected as f64
    );
    let output = serve.output();
    assert!(!output.contains(KEY) && !output.contains(TOKEN), "{output}");
}

#[tokio::test]
async fn only_the_token_or_an_allowed_client_certificate_gets_in() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let serve = Serve::start(&rx, &[]).await;
    let client = serve.client();
    let body = event_list(&fixtures::events(&fixtures::audit2rbac_demo())[..2]);

    let (status, _, text) = client
        .with_token(None)
        .post_raw(body.clone(), false)
        .await
        .unwrap();
    assert_eq!(
        (status, text.contains("\"reason\":\"Unauthorized\"")),
        (401, true),
        "{text}"
    );
    let guess = "guessed-token-SECRET-9";
    assert_eq!(
        client
            .with_token(Some(guess))
            .post_raw(body.clone(), false)
            .await
            .unwrap()
            .0,
        401
    );

    // The kubeconfig's client-certificate form, with the apiserver's name and with a kubelet's.
    let apiserver = serve.pki.client("kube-apiserver");
    let kubelet = serve.pki.client("system:node:worker-1");
    let with_cert = |cert: &kaf_testkit::pki::ClientCert, name: &str| {
        let text = std::fs::read_to_string(&serve.kubeconfig).unwrap().replace(
            &format!("token: {TOKEN}"),
            &format!(
                "client-certificate: {}\n      client-key: {}",
                cert.cert.display(),
                cert.key.display()
            ),
        );
        let path = serve.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        WebhookClient::from_kubeconfig(&path)
    };
    assert_eq!(
        with_cert(&apiserver, "a.yaml")
            .post_raw(body.clone(), false)
            .await
            .unwrap()
            .0,
        200
    );
    let (status, _, text) = with_cert(&kubelet, "k.yaml")
        .post_raw(body.clone(), false)
        .await
        .unwrap();
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("system:node:worker-1"), "{text}");
    // A certificate from another CA fails the handshake.
    let other = Pki::generate(&serve.dir.path().join("other"), "other");
    let stranger = other.client("kube-apiserver");
    assert!(
        with_cert(&stranger, "s.yaml")
            .post_raw(body.clone(), false)
            .await
            .is_err()
    );

    assert_eq!(client.post_raw(body, false).await.unwrap().0, 200);
    assert_eq!(
        client.with_token(None).get("/healthz").await.unwrap(),
        (200, "ok\n".to_string())
    );
    assert_eq!(
        serve
            .metric("kaf_webhook_requests_total{code=\"401\"} ")
            .await,
        2.0
    );
    assert_eq!(
        serve
            .metric("kaf_webhook_requests_total{code=\"403\"} ")
            .await,
        1.0
    );
    assert_eq!(
        serve
            .metric("kaf_webhook_requests_total{code=\"200\"} ")
            .await,
        2.0
    );
    let output = serve.output();
    assert!(output.contains("bearer token not accepted"), "{output}");
    assert!(
        !output.contains(guess) && !output.contains(TOKEN) && !output.contains(KEY),
        "{output}"
    );
}

#[tokio::test]
async fn bad_bodies_are_refused_by_name_and_good_items_still_pass() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let serve = Serve::start(&rx, &[]).await;
    let client = serve.client();
    let (status, _, text) = client
        .post_raw(b"{\"items\": [".to_vec(), false)
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(text.contains("line 1 column 11"), "{text}");
    let (status, _, text) = client
        .post_raw(br#"{"kind":"Event","auditID":"x"}"#.to_vec(), false)
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(text.contains("`kind`"), "{text}");
    let (status, _, _) = client.post_raw(b"not gzip".to_vec(), true).await.unwrap();
    assert_eq!(status, 400);

    // One bad item among good ones: the good ones are delivered, the bad one counted.
    let good = fixtures::events(&fixtures::audit2rbac_demo())[..3].to_vec();
    let mut items = good.clone();
    items.insert(1, json!("not an event"));
    assert!(client.send_batch(&items).await.acknowledged);
    wait_for(Duration::from_secs(20), "good items delivered", || {
        (rx.records().len() == 3).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(5), "group completed", || {
        (serve.spooled_segments() == 0).then_some(())
    })
    .await;
    assert_eq!(serve.metric("kaf_events_rejected_total ").await, 1.0);
    assert_eq!(
        serve
            .metric("kaf_webhook_requests_total{code=\"400\"} ")
            .await,
        3.0
    );
}

#[tokio::test]
async fn a_full_spool_answers_429_and_nothing_is_lost_when_the_upload_recovers() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.set_always(Some(Fault::Status(503)));
    let serve = Serve::start(&rx, &["--spool-max-bytes", "20000"]).await;
    let mut client = serve.client();
    client.retry.retry_after_scale = 0.2;
    client.retry.attempts = 200;
    let events = fixtures::numbered_events(120);
    let senders: Vec<_> = events
        .chunks(20)
        .map(|batch| {
            let (client, batch) = (client.clone(), batch.to_vec());
            tokio::spawn(async move { client.send_batch(&batch).await })
        })
        .collect();
    wait_for(Duration::from_secs(20), "a 429 and failing uploads", || {
        (serve.output().contains("spool full") && rx.attempts().len() >= 2).then_some(())
    })
    .await;
    rx.set_always(None);
    let mut saw_429 = false;
    for sender in senders {
        let outcome = sender.await.unwrap();
        assert!(outcome.acknowledged, "{outcome:?}");
        if outcome.statuses.contains(&429) {
            saw_429 = true;
            assert!(outcome.retry_after.iter().all(|r| r == "1"), "{outcome:?}");
        }
    }
    assert!(saw_429);
    wait_for(Duration::from_secs(30), "all delivered", || {
        (rx.records().len() >= 120).then_some(())
    })
    .await;
    let got = counts(&rx.records());
    assert_eq!(got.len(), 120);
    assert!(got.values().all(|&n| n == 1));
    assert!(
        rx.attempts().len() > rx.accepted().len(),
        "uploads failed while the spool filled"
    );
}

/// Kill -9 at two moments chosen by the test, not by timing: while an upload is in flight (the receiver
/// holds its answer) and a webhook request is half sent; then again with undelivered events in the spool.
#[tokio::test]
async fn kill_9_during_ingest_loses_no_acknowledged_event_and_duplicates_none() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    // The first upload is accepted but its answer held back: serve is killed before it hears of it.
    rx.push_faults([Fault::SlowAccept(Duration::from_secs(30))]);
    let mut serve = Serve::start(&rx, &[]).await;
    let client = serve.client();
    let events = fixtures::numbered_events(1500);
    let batches: Vec<&[Value]> = events.chunks(50).collect();
    let mut acknowledged = Vec::new();
    for batch in &batches[..10] {
        assert!(client.send_batch(batch).await.acknowledged);
        acknowledged.extend(keys(batch));
    }
    wait_for(Duration::from_secs(20), "an upload in flight", || {
        (!rx.attempts().is_empty()).then_some(())
    })
    .await;
    // A request cut off mid-body by the kill: never acknowledged, so the client resends it.
    let half_sent = half_send(&serve, &event_list(batches[10])).await;
    serve.kill9().await;
    drop(half_sent);
    serve.restart().await;
    for batch in &batches[10..20] {
        assert!(client.send_batch(batch).await.acknowledged);
        acknowledged.extend(keys(batch));
    }
    // Second kill, with the upload refusing: acknowledged events wait in the spool.
    rx.set_always(Some(Fault::Status(503)));
    for batch in &batches[20..] {
        assert!(client.send_batch(batch).await.acknowledged);
        acknowledged.extend(keys(batch));
    }
    wait_for(Duration::from_secs(20), "a refused upload", || {
        rx.attempts().len().gt(&3).then_some(())
    })
    .await;
    assert!(serve.spooled_segments() > 0);
    serve.kill9().await;
    rx.set_always(None);
    serve.restart().await;

    wait_for(
        Duration::from_secs(60),
        "every acknowledged event delivered",
        || {
            let got = counts(&rx.records());
            acknowledged
                .iter()
                .all(|k| got.contains_key(k))
                .then_some(())
        },
    )
    .await;
    wait_for(Duration::from_secs(10), "spool emptied", || {
        (serve.spooled_segments() == 0).then_some(())
    })
    .await;
    let got = counts(&rx.records());
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(got.len(), 1500);
    // The held upload was resent after the restart under the same upload-id (the receiver kept it once).
    let attempts = rx.attempts();
    assert!(
        attempts[1..].contains(&attempts[0]),
        "the in-flight group resent with its id"
    );
    assert_eq!(rx.violations(), Vec::<String>::new());
}

/// Send the headers and half of `body` as an authorised webhook POST, and keep the connection open.
async fn half_send(
    serve: &Serve,
    body: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt as _;
    let addr = serve
        .client()
        .base_url()
        .trim_start_matches("https://")
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = slow_client_connector(&serve.pki.ca)
        .connect(name, tcp)
        .await
        .unwrap();
    let head = format!(
        "POST /audit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body[..body.len() / 2]).await.unwrap();
    tls.flush().await.unwrap();
    tls
}

#[tokio::test]
async fn spooled_events_survive_a_crash_while_the_upload_is_down() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.set_always(Some(Fault::Drop));
    let mut serve = Serve::start(&rx, &[]).await;
    let events = fixtures::numbered_events(40);
    assert!(serve.client().send_batch(&events).await.acknowledged);
    wait_for(Duration::from_secs(10), "a failed delivery", || {
        serve.output().contains("kept for retry").then_some(())
    })
    .await;
    assert!(
        serve
            .metric("kaf_delivery_failures_total{class=\"transient\"} ")
            .await
            >= 1.0
    );
    assert_eq!(serve.metric("kaf_spool_events ").await, 40.0);
    serve.kill9().await;
    assert_eq!(serve.spooled_segments(), 1);
    rx.set_always(None);
    serve.restart().await;
    wait_for(Duration::from_secs(20), "delivered after restart", || {
        (rx.records().len() == 40).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(5), "spool emptied", || {
        (serve.spooled_segments() == 0).then_some(())
    })
    .await;
    // The apiserver resending the batch now (its 200 lost in the crash) changes nothing.
    assert!(serve.client().send_batch(&events).await.acknowledged);
    assert_eq!(serve.metric("kaf_events_duplicate_total ").await, 40.0);
    assert_eq!(counts(&rx.records()).len(), 40);
}

#[tokio::test]
async fn credentials_are_checked_before_a_body_is_read_and_oversize_bodies_get_413() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let serve = Serve::start(&rx, &["--max-body-bytes", "4000"]).await;
    let client = serve.client();
    let big = event_list(&fixtures::numbered_events(40));
    assert!(big.len() > 4000);
    let (status, _, _) = client
        .with_token(None)
        .post_raw(big.clone(), false)
        .await
        .unwrap();
    assert_eq!(status, 401, "refused on its headers, whatever the body");
    let (status, _, text) = client.post_raw(big.clone(), false).await.unwrap();
    assert_eq!(status, 413, "{text}");
    // The limit holds after decompression too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&big).unwrap();
    let compressed = gz.finish().unwrap();
    assert!(compressed.len() < 4000, "{}", compressed.len());
    let (status, _, _) = client.post_raw(compressed, true).await.unwrap();
    assert_eq!(status, 413);
    let small = event_list(&fixtures::numbered_events(1));
    assert_eq!(client.post_raw(small, false).await.unwrap().0, 200);
    assert_eq!(
        serve
            .metric("kaf_webhook_requests_total{code=\"413\"} ")
            .await,
        2.0
    );
}

/// An `EventList` body written out by hand, so an item can hold what `serde_json::Value` cannot (`1e999`).
fn raw_event_list(items: &[String]) -> Vec<u8> {
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    )
    .into_bytes()
}

/// Regression: one item nested past serde_json's limit, or holding `1e999`, got the whole request a 400,
/// and the apiserver (which does not retry a 400) dropped the other events of the batch, up to 400.
#[tokio::test]
async fn one_deep_or_odd_item_does_not_cost_the_rest_of_a_400_event_batch() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let serve = Serve::start(&rx, &[]).await;
    // A full apiserver batch of real events with large objects (RequestResponse, ~10 KB each).
    let mut events = fixtures::numbered_events(400);
    for e in events.iter_mut().step_by(4) {
        e["level"] = json!("RequestResponse");
        e["responseObject"] = json!({"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "big", "namespace": "default"}, "data": {"blob": "x".repeat(10_000)}});
    }
    let mut items: Vec<String> = events.iter().map(Value::to_string).collect();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    items[100] = items[100].replacen('{', &format!(r#"{{"requestObject":{{"spec":{deep}}},"#), 1);
    items[200] = items[200].replacen('{', r#"{"generation":1e999,"#, 1);
    let (status, _, text) = serve
        .client()
        .post_raw(raw_event_list(&items), false)
        .await
        .unwrap();
    assert_eq!(status, 200, "{text}");
    wait_for(Duration::from_secs(30), "every event delivered", || {
        (rx.records().len() == 400).then_some(())
    })
    .await;
    let got = counts(&rx.records());
    assert_eq!(got.len(), 400);
    for i in [100, 200] {
        let key = (
            events[i]["auditID"].as_str().unwrap().to_string(),
            events[i]["stage"].as_str().unwrap().to_string(),
        );
        assert_eq!(got.get(&key), Some(&1), "item {i} kept");
    }
    assert_eq!(rx.violations(), Vec::<String>::new());
}

/// Regression: clients that finish TLS and then send a header byte every few seconds were never
/// disconnected; 300 of them exhausted 256 descriptors and locked out `/healthz` and the apiserver.
#[tokio::test]
async fn five_hundred_slow_clients_do_not_lock_out_the_apiserver() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let serve = Serve::start_with_fd_limit(&rx, &[], 256).await;
    let addr: std::net::SocketAddr = serve
        .client()
        .base_url()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let connector = slow_client_connector(&serve.pki.ca);
    let mut slow = Vec::new();
    for _ in 0..500 {
        let connector = connector.clone();
        slow.push(tokio::spawn(async move {
            let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let Ok(Ok(mut tls)) =
                tokio::time::timeout(Duration::from_secs(30), connector.connect(name, tcp)).await
            else {
                return;
            };
            use tokio::io::AsyncWriteExt as _;
            if tls
                .write_all(b"POST /audit HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .is_err()
            {
                return;
            }
            // One byte every 5 s, forever (until the server closes the connection).
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if tls.write_all(b"a").await.is_err() {
                    return;
                }
            }
        }));
    }
    // Let them connect and settle into dripping.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let client = serve.client();
    let health = tokio::time::timeout(Duration::from_secs(5), client.get("/healthz")).await;
    assert!(
        matches!(health, Ok(Ok((200, _)))),
        "{health:?}\n{}",
        serve.output()
    );
    let events = fixtures::events(&fixtures::audit2rbac_demo());
    let posted = tokio::time::timeout(
        Duration::from_secs(5),
        client.post_raw(event_list(&events), false),
    )
    .await;
    assert!(matches!(posted, Ok(Ok((200, _, _)))), "{posted:?}");
    wait_for(Duration::from_secs(20), "the batch delivered", || {
        (rx.records().len() == events.len()).then_some(())
    })
    .await;
    assert!(serve.metric("kaf_connections_evicted_total ").await > 0.0);
    // Running short of descriptors is logged, but not in a tight loop.
    let output = serve.output();
    assert!(output.matches("accept failed").count() <= 5, "{output}");
    assert!(!output.contains("Too many open files\n".repeat(3).as_str()));
    for task in slow {
        task.abort();
    }
}

/// A TLS client trusting the test PKI's CA, for raw slow connections.
fn slow_client_connector(ca: &Path) -> tokio_rustls::TlsConnector {
    let pem = std::fs::read(ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// A slow body is cut off after `--body-timeout-secs`: the connection cannot be held open by an
/// authenticated client that never finishes its request either.
#[tokio::test]
async fn a_body_that_never_finishes_gets_408() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let serve = Serve::start(&rx, &["--body-timeout-secs", "1"]).await;
    let addr = serve
        .client()
        .base_url()
        .trim_start_matches("https://")
        .to_string();
    let connector = slow_client_connector(&serve.pki.ca);
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    tls.write_all(
        format!("POST /audit HTTP/1.1\r\nHost: x\r\nAuthorization: BEARER {TOKEN}\r\nContent-Length: 100\r\n\r\n{{\"items\"").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// Records that arrive through the webhook are tagged, and `/metrics` counts them per rule.
#[tokio::test]
async fn webhook_events_are_tagged_and_counted_per_rule_in_metrics() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let serve = Serve::start(&rx, &[]).await;
    let events = fixtures::falco_events();
    assert!(serve.client().send_batch(&events).await.acknowledged);
    let expected = fixtures::distinct(&events);
    wait_for(Duration::from_secs(20), "every event delivered", || {
        (rx.records().len() >= expected).then_some(())
    })
    .await;
    let records = rx.records();
    let mut per_rule: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        for id in r["detections"].as_array().into_iter().flatten() {
            *per_rule
                .entry(id.as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert!(per_rule.len() >= 10, "{per_rule:?}");
    // Counted once the group is delivered, which may be just after the receiver has it.
    let metric = "kaf_detections_total{rule=\"pod-exec\"} ";
    for _ in 0..100 {
        if serve.metric(metric).await > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (rule, n) in &per_rule {
        let metric = format!("kaf_detections_total{{rule=\"{rule}\"}} ");
        assert_eq!(serve.metric(&metric).await, *n as f64, "{metric}");
    }
}

/// The audit policy applies to webhook batches as it does to a replayed file: replaying the same sample
/// with the same policy is the reference for what is kept and what is dropped.
#[tokio::test]
async fn the_audit_policy_applies_to_webhook_batches_as_to_a_replay() {
    let policy = repo_root().join("templates/policies/managed-cluster.yaml");
    let policy = policy.to_str().unwrap();
    let reference = crate::harness::cli_async(
        vec![
            "replay".into(),
            "--policy".into(),
            policy.into(),
            fixtures::audit2rbac_demo().display().to_string(),
        ],
        vec![],
    )
    .await;
    assert!(reference.status.success());
    let kept = crate::harness::stdout_records(&reference);
    let dropped = crate::harness::summary(&reference)["policyDropped"]
        .as_u64()
        .unwrap();
    assert!(dropped > 0 && !kept.is_empty(), "{dropped} {}", kept.len());

    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let serve = Serve::start(&rx, &["--policy", policy]).await;
    let events = fixtures::events(&fixtures::audit2rbac_demo());
    for batch in events.chunks(50) {
        assert!(serve.client().send_batch(batch).await.acknowledged);
    }
    wait_for(
        Duration::from_secs(20),
        "every kept event delivered",
        || (rx.records().len() >= kept.len()).then_some(()),
    )
    .await;
    wait_for(Duration::from_secs(5), "spool emptied", || {
        (serve.spooled_segments() == 0).then_some(())
    })
    .await;
    let delivered = counts(&rx.records());
    assert_eq!(delivered, counts(&kept));
    // Counted as a group completes, which may be just after the receiver has it.
    let mut counted = 0.0;
    for _ in 0..100 {
        counted = serve.metric("kaf_policy_dropped_total ").await;
        if counted == dropped as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted, dropped as f64);
}
