//! The HTTP server on a loopback port: health, readiness, metrics and the webhook receiver,
//! driven by a minimal HTTP/1.1 client over a plain TCP stream.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use adgang::expiry::account_expires;
use adgang::model::{Account, DirectorySnapshot, UserKey};
use adgang::resources::Phase;
use adgang::server::{
    Metrics, Readiness, ReconcileResult, Server, ServerConfig, SyncTrigger, WebhookSecret,
    count_users, github_signature,
};
use chrono::{NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Copenhagen;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "test-secret-7f3a9c2e41b8d605";
const PUSH_BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"0123456789abcdef"}"#;

/// A server running on 127.0.0.1 with an ephemeral port, and the handles a caller keeps.
struct Running {
    address: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
    trigger: SyncTrigger,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Running {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.webhook_secret = Some(WebhookSecret::new(SECRET).unwrap());
    configure(&mut config);

    let metrics = Metrics::new();
    let readiness = Readiness::new();
    let trigger = SyncTrigger::new();
    let server = Server::bind(config, metrics.clone(), readiness.clone(), trigger.clone())
        .await
        .unwrap();
    let address = server.local_addr();
    assert!(address.ip().is_loopback());

    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    Running {
        address,
        metrics,
        readiness,
        trigger,
        _shutdown: shutdown,
    }
}

async fn start() -> Running {
    start_with(|_| {}).await
}

struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// Builds an HTTP/1.1 request with `Connection: close`, so the server closes the connection
/// after its reply.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        && !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");

    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends raw request bytes and reads the reply until the server closes the connection.
async fn send_raw(address: SocketAddr, bytes: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the server replied within 10 s")
        .unwrap();
    parse_reply(&raw)
}

async fn send(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    send_raw(address, &request(method, path, headers, body)).await
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8(raw.to_vec()).expect("the reply is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("the reply has a header section");
    let mut lines = head.lines();
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn github_push(address: SocketAddr, signature: Option<&str>) -> Reply {
    let mut headers = vec![
        ("X-GitHub-Event", "push"),
        ("Content-Type", "application/json"),
    ];
    if let Some(signature) = signature {
        headers.push(("X-Hub-Signature-256", signature));
    }
    send(address, "POST", "/webhooks/github", &headers, PUSH_BODY).await
}

async fn fired_within(trigger: &SyncTrigger, wait: Duration) -> bool {
    tokio::time::timeout(wait, trigger.fired()).await.is_ok()
}

/// One metric family of a Prometheus text exposition.
#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
}

/// One sample line: name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format 0.0.4, checking that every sample belongs to a family
/// declared by `# HELP` and `# TYPE` lines before it.
fn parse_exposition(text: &str) -> (BTreeMap<String, Family>, Vec<Sample>) {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut samples = Vec::new();

    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a name and a text");
            families.entry(name.to_owned()).or_default().help = Some(help.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a name and a type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "unknown type in {line:?}"
            );
            families.entry(name.to_owned()).or_default().kind = Some(kind.to_owned());
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");

        let sample = parse_sample(line);
        let family = family_of(&sample.name, &families)
            .unwrap_or_else(|| panic!("sample {line:?} has no HELP and TYPE before it"));
        assert!(families[family].help.is_some(), "{family} has no HELP");
        assert!(families[family].kind.is_some(), "{family} has no TYPE");
        samples.push(sample);
    }
    (families, samples)
}

fn family_of<'a>(name: &str, families: &'a BTreeMap<String, Family>) -> Option<&'a str> {
    if let Some((family, _)) = families.get_key_value(name) {
        return Some(family);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        let (family, info) = families.get_key_value(base)?;
        (info.kind.as_deref() == Some("histogram")).then_some(family.as_str())
    })
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("sample {line:?} has no value"));
    let name = &line[..name_end];
    assert!(
        name.chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic()
                || c == '_'
                || c == ':'
                || (i > 0 && c.is_ascii_digit())),
        "invalid metric name in {line:?}"
    );

    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after_brace) = rest.strip_prefix('{') {
        let mut chars = after_brace.char_indices().peekable();
        let mut end = None;
        loop {
            let Some(&(start, c)) = chars.peek() else {
                break;
            };
            if c == '}' {
                end = Some(start + 1);
                break;
            }
            if c == ',' {
                chars.next();
                continue;
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            assert_eq!(
                chars.next().map(|(_, c)| c),
                Some('"'),
                "label value in {line:?}"
            );
            let mut value = String::new();
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(other) => value.push(other),
                        None => panic!("unfinished escape in {line:?}"),
                    },
                    other => value.push(other),
                }
            }
            labels.insert(key, value);
        }
        let end = end.unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
        rest = &after_brace[end..];
    }

    let value = rest.trim();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("invalid value in {line:?}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// Returns the value of the one sample with this name and these labels.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == wanted)
        .collect();
    assert_eq!(matching.len(), 1, "samples {name}{labels:?}");
    matching[0].value
}

async fn scrape(address: SocketAddr) -> (BTreeMap<String, Family>, Vec<Sample>) {
    let reply = send(address, "GET", "/metrics", &[], b"").await;
    assert_eq!(reply.status, 200);
    parse_exposition(&reply.body)
}

#[tokio::test]
async fn healthz_ok() {
    let server = start().await;

    let reply = send(server.address, "GET", "/healthz", &[], b"").await;

    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn readyz_follows_checks() {
    let server = start().await;
    let directory_up = Arc::new(AtomicBool::new(false));
    let flag = directory_up.clone();
    server.readiness.register("directory", move || {
        let up = flag.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(())
            } else {
                Err("connection refused".into())
            }
        }
    });
    server.readiness.register("api-server", || async { Ok(()) });

    let down = send(server.address, "GET", "/readyz", &[], b"").await;
    directory_up.store(true, Ordering::SeqCst);
    let up = send(server.address, "GET", "/readyz", &[], b"").await;

    assert_eq!(down.status, 503);
    assert!(down.body.contains("directory"), "{}", down.body);
    assert!(!down.body.contains("api-server"), "{}", down.body);
    assert!(!down.body.contains("connection refused"), "{}", down.body);
    assert_eq!(up.status, 200);
}

#[tokio::test]
async fn readyz_slow_check_fails() {
    let server = start_with(|c| c.readiness_timeout = Duration::from_millis(100)).await;
    server.readiness.register("directory", || async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(())
    });

    let reply = send(server.address, "GET", "/readyz", &[], b"").await;

    assert_eq!(reply.status, 503);
}

#[tokio::test]
async fn metrics_parse_with_values() {
    let server = start().await;
    let metrics = &server.metrics;
    metrics.set_users("omsorg-nord", Phase::Active, 4);
    metrics.set_users("omsorg-nord", Phase::Pending, 1);
    metrics.set_users_ending_soon("omsorg-nord", 2);
    metrics.record_reconcile(ReconcileResult::Success, Duration::from_millis(300));
    metrics.record_reconcile(ReconcileResult::Success, Duration::from_secs(2));
    metrics.record_reconcile(ReconcileResult::Failure, Duration::from_secs(40));
    metrics.record_errors(3);
    metrics.record_drift(2);
    metrics.set_last_applied("4f01d16a");
    metrics.set_last_success(Utc.with_ymd_and_hms(2027, 1, 4, 6, 0, 0).unwrap());

    let reply = send(server.address, "GET", "/metrics", &[], b"").await;
    let (families, samples) = parse_exposition(&reply.body);

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let expected_types = [
        ("adgang_users", "gauge"),
        ("adgang_users_access_ending_soon", "gauge"),
        ("adgang_reconcile_total", "counter"),
        ("adgang_reconcile_errors_total", "counter"),
        ("adgang_reconcile_duration_seconds", "histogram"),
        ("adgang_drift_corrected_total", "counter"),
        ("adgang_last_successful_sync_timestamp_seconds", "gauge"),
        ("adgang_last_applied_commit_info", "gauge"),
        ("adgang_webhook_requests_total", "counter"),
    ];
    for (name, kind) in expected_types {
        let family = families
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(family.kind.as_deref(), Some(kind), "TYPE of {name}");
        assert!(
            family.help.as_ref().is_some_and(|h| h.len() > 20),
            "HELP of {name}"
        );
    }

    let users = [("supplier", "omsorg-nord"), ("phase", "Active")];
    assert_eq!(value(&samples, "adgang_users", &users), 4.0);
    let pending = [("supplier", "omsorg-nord"), ("phase", "Pending")];
    assert_eq!(value(&samples, "adgang_users", &pending), 1.0);
    let supplier = [("supplier", "omsorg-nord")];
    assert_eq!(
        value(&samples, "adgang_users_access_ending_soon", &supplier),
        2.0
    );
    let success = [("result", "success")];
    assert_eq!(value(&samples, "adgang_reconcile_total", &success), 2.0);
    let failure = [("result", "failure")];
    assert_eq!(value(&samples, "adgang_reconcile_total", &failure), 1.0);
    assert_eq!(value(&samples, "adgang_reconcile_errors_total", &[]), 3.0);
    assert_eq!(value(&samples, "adgang_drift_corrected_total", &[]), 2.0);
    assert_eq!(
        value(&samples, "adgang_reconcile_duration_seconds_count", &[]),
        3.0
    );
    assert_eq!(
        value(&samples, "adgang_reconcile_duration_seconds_sum", &[]),
        42.3
    );
    let le_one = [("le", "1")];
    assert_eq!(
        value(
            &samples,
            "adgang_reconcile_duration_seconds_bucket",
            &le_one
        ),
        1.0
    );
    let le_inf = [("le", "+Inf")];
    assert_eq!(
        value(
            &samples,
            "adgang_reconcile_duration_seconds_bucket",
            &le_inf
        ),
        3.0
    );
    let commit = [("commit", "4f01d16a")];
    assert_eq!(
        value(&samples, "adgang_last_applied_commit_info", &commit),
        1.0
    );
    let last_success = value(
        &samples,
        "adgang_last_successful_sync_timestamp_seconds",
        &[],
    );
    assert_eq!(last_success, 1_799_042_400.0);
}

/// Returns an account that Adgang created for `supplier`, whose last day of access is
/// `last_day`.
fn linked_account(supplier: &str, name: &str, enabled: bool, last_day: NaiveDate) -> Account {
    Account {
        dn: format!("CN={name},OU={supplier},OU=Leverandoerer,DC=adgang,DC=test"),
        username: name.to_owned(),
        link: Some(UserKey::new(supplier, name)),
        account_expires: Some(account_expires(last_day, Copenhagen)),
        enabled,
        ..Account::default()
    }
}

#[tokio::test]
async fn user_gauges_from_snapshot() {
    let server = start().await;
    // Noon in Copenhagen on Monday 4 January 2027.
    let now = Utc.with_ymd_and_hms(2027, 1, 4, 11, 0, 0).unwrap();
    let day = |d: u32| NaiveDate::from_ymd_opt(2027, 1, d).unwrap();
    let snapshot = DirectorySnapshot {
        accounts: vec![
            linked_account("omsorg-nord", "anne-hansen", true, day(4)),
            linked_account("omsorg-nord", "bo-berg", true, day(18)),
            linked_account("omsorg-nord", "carl-dahl", true, day(19)),
            linked_account("omsorg-nord", "dorte-eg", false, day(28)),
            linked_account("omsorg-nord", "erik-falk", false, day(3)),
            linked_account("pleje-syd", "freja-gran", true, day(30)),
            Account {
                username: "made.by.hand".to_owned(),
                enabled: true,
                ..Account::default()
            },
        ],
        ..DirectorySnapshot::default()
    };
    // A supplier from an earlier run that has no accounts any more.
    server.metrics.set_users("nedlagt-aps", Phase::Active, 3);

    server
        .metrics
        .set_user_counts(&count_users(&snapshot, now, Copenhagen));
    let (_, samples) = scrape(server.address).await;

    let nord = |phase| [("supplier", "omsorg-nord"), ("phase", phase)];
    assert_eq!(value(&samples, "adgang_users", &nord("Active")), 3.0);
    assert_eq!(value(&samples, "adgang_users", &nord("Pending")), 1.0);
    assert_eq!(value(&samples, "adgang_users", &nord("Expired")), 1.0);
    let syd = [("supplier", "pleje-syd"), ("phase", "Active")];
    assert_eq!(value(&samples, "adgang_users", &syd), 1.0);
    // Last days 4 and 18 January are within 14 days of 4 January, but 19 January is not.
    let ending = [("supplier", "omsorg-nord")];
    assert_eq!(
        value(&samples, "adgang_users_access_ending_soon", &ending),
        2.0
    );
    let ending_syd = [("supplier", "pleje-syd")];
    assert_eq!(
        value(&samples, "adgang_users_access_ending_soon", &ending_syd),
        0.0
    );
    assert!(
        !samples
            .iter()
            .any(|s| s.labels.get("supplier").is_some_and(|v| v == "nedlagt-aps")),
        "a supplier without accounts is removed"
    );
}

#[tokio::test]
async fn github_valid_push_triggers() {
    let server = start().await;
    let secret = WebhookSecret::new(SECRET).unwrap();
    let signature = github_signature(&secret, PUSH_BODY);

    let reply = github_push(server.address, Some(&signature)).await;

    assert_eq!(reply.status, 202);
    assert!(fired_within(&server.trigger, Duration::from_secs(5)).await);
    let (_, samples) = scrape(server.address).await;
    let accepted = [("source", "github"), ("result", "accepted")];
    assert_eq!(
        value(&samples, "adgang_webhook_requests_total", &accepted),
        1.0
    );
}

#[tokio::test]
async fn github_wrong_signature_rejected() {
    let server = start().await;
    let wrong_secret = WebhookSecret::new("not-the-secret").unwrap();
    let signature = github_signature(&wrong_secret, PUSH_BODY);

    let reply = github_push(server.address, Some(&signature)).await;

    assert_eq!(reply.status, 401);
    assert!(!reply.body.contains(SECRET), "{}", reply.body);
    assert!(!reply.body.contains(&signature[7..]), "{}", reply.body);
    assert!(!reply.headers.values().any(|v| v.contains(SECRET)));
    assert!(!fired_within(&server.trigger, Duration::from_millis(200)).await);
    let (_, samples) = scrape(server.address).await;
    let rejected = [("source", "github"), ("result", "rejected")];
    assert_eq!(
        value(&samples, "adgang_webhook_requests_total", &rejected),
        1.0
    );
}

#[tokio::test]
async fn github_signature_of_other_body_rejected() {
    let server = start().await;
    let secret = WebhookSecret::new(SECRET).unwrap();
    let signature = github_signature(&secret, b"{\"ref\":\"refs/heads/other\"}");

    let reply = github_push(server.address, Some(&signature)).await;

    assert_eq!(reply.status, 401);
    assert!(!fired_within(&server.trigger, Duration::from_millis(200)).await);
}

#[tokio::test]
async fn github_missing_signature_rejected() {
    let server = start().await;

    let first = github_push(server.address, None).await;
    let second = github_push(server.address, None).await;

    assert_eq!(first.status, 401);
    assert_eq!(second.status, 401);
    assert!(!first.body.contains(SECRET), "{}", first.body);
    assert!(!fired_within(&server.trigger, Duration::from_millis(200)).await);
    let (_, samples) = scrape(server.address).await;
    let rejected = [("source", "github"), ("result", "rejected")];
    assert_eq!(
        value(&samples, "adgang_webhook_requests_total", &rejected),
        2.0
    );
}

#[tokio::test]
async fn github_ping_ignored() {
    let server = start().await;
    let secret = WebhookSecret::new(SECRET).unwrap();
    let body = br#"{"zen":"Design for failure."}"#;
    let signature = github_signature(&secret, body);
    let headers = [
        ("X-GitHub-Event", "ping"),
        ("X-Hub-Signature-256", &signature),
    ];

    let reply = send(server.address, "POST", "/webhooks/github", &headers, body).await;

    assert_eq!(reply.status, 200);
    assert!(!fired_within(&server.trigger, Duration::from_millis(200)).await);
    let (_, samples) = scrape(server.address).await;
    let ignored = [("source", "github"), ("result", "ignored")];
    assert_eq!(
        value(&samples, "adgang_webhook_requests_total", &ignored),
        1.0
    );
}

#[tokio::test]
async fn gitlab_token_correct_triggers() {
    let server = start().await;
    let headers = [("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", SECRET)];

    let reply = send(
        server.address,
        "POST",
        "/webhooks/gitlab",
        &headers,
        PUSH_BODY,
    )
    .await;

    assert_eq!(reply.status, 202);
    assert!(fired_within(&server.trigger, Duration::from_secs(5)).await);
    let (_, samples) = scrape(server.address).await;
    let accepted = [("source", "gitlab"), ("result", "accepted")];
    assert_eq!(
        value(&samples, "adgang_webhook_requests_total", &accepted),
        1.0
    );
}

#[tokio::test]
async fn gitlab_token_incorrect_rejected() {
    let server = start().await;
    let wrong = format!("{SECRET}x");
    let cases: [&[(&str, &str)]; 2] = [
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", &wrong)],
        &[("X-Gitlab-Event", "Push Hook")],
    ];

    for headers in cases {
        let reply = send(
            server.address,
            "POST",
            "/webhooks/gitlab",
            headers,
            PUSH_BODY,
        )
        .await;
        assert_eq!(reply.status, 401, "headers {headers:?}");
        assert!(!reply.body.contains(SECRET), "{}", reply.body);
    }

    assert!(!fired_within(&server.trigger, Duration::from_millis(200)).await);
    let (_, samples) = scrape(server.address).await;
    let rejected = [("source", "gitlab"), ("result", "rejected")];
    assert_eq!(
        value(&samples, "adgang_webhook_requests_total", &rejected),
        2.0
    );
}

#[tokio::test]
async fn declared_oversize_body_rejected() {
    let server = start().await;
    let length = (1024 * 1024 + 1).to_string();
    let headers = [
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", SECRET),
        ("Content-Length", length.as_str()),
    ];

    // Only the headers are sent: the server rejects on the declared length alone.
    let reply = send(server.address, "POST", "/webhooks/gitlab", &headers, b"").await;

    assert_eq!(reply.status, 413);
    assert!(!fired_within(&server.trigger, Duration::from_millis(200)).await);
    let (_, samples) = scrape(server.address).await;
    let rejected = [("source", "gitlab"), ("result", "rejected")];
    assert_eq!(
        value(&samples, "adgang_webhook_requests_total", &rejected),
        1.0
    );
}

#[tokio::test]
async fn chunked_oversize_body_rejected() {
    let server = start_with(|c| c.max_body_bytes = 16).await;
    let headers = [
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", SECRET),
        ("Transfer-Encoding", "chunked"),
    ];
    let body = b"11\r\n{\"ref\":\"refs/x\"}\r\n0\r\n\r\n";
    assert_eq!(0x11, 17);

    let reply = send(server.address, "POST", "/webhooks/gitlab", &headers, body).await;

    assert_eq!(reply.status, 413);
    assert!(!fired_within(&server.trigger, Duration::from_millis(200)).await);
}

#[tokio::test]
async fn slow_body_times_out() {
    let server = start_with(|c| c.body_read_timeout = Duration::from_millis(200)).await;
    let headers = [
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", SECRET),
        ("Content-Length", "100"),
    ];

    let reply = send(server.address, "POST", "/webhooks/gitlab", &headers, b"{}").await;

    assert_eq!(reply.status, 408);
    assert!(!fired_within(&server.trigger, Duration::from_millis(200)).await);
}

#[tokio::test]
async fn webhooks_without_secret_disabled() {
    let server = start_with(|c| c.webhook_secret = None).await;
    let headers = [("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "")];

    let reply = send(
        server.address,
        "POST",
        "/webhooks/gitlab",
        &headers,
        PUSH_BODY,
    )
    .await;

    assert_eq!(reply.status, 404);
    assert!(!fired_within(&server.trigger, Duration::from_millis(200)).await);
}

#[tokio::test]
async fn wrong_method_and_path() {
    let server = start().await;

    let get_webhook = send(server.address, "GET", "/webhooks/github", &[], b"").await;
    let post_metrics = send(server.address, "POST", "/metrics", &[], b"").await;
    let unknown = send(server.address, "GET", "/webhooks", &[], b"").await;

    assert_eq!(get_webhook.status, 405);
    assert_eq!(get_webhook.headers["allow"], "POST");
    assert_eq!(post_metrics.status, 405);
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn pushes_coalesce_into_one_sync() {
    let server = start().await;
    let headers = [("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", SECRET)];

    for _ in 0..3 {
        let reply = send(
            server.address,
            "POST",
            "/webhooks/gitlab",
            &headers,
            PUSH_BODY,
        )
        .await;
        assert_eq!(reply.status, 202);
    }

    assert!(fired_within(&server.trigger, Duration::from_secs(5)).await);
    assert!(!fired_within(&server.trigger, Duration::from_millis(200)).await);
}
