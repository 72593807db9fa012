//! The controller's mail schedule against a real Samba AD DC and a real SMTP server. A
//! `tower` service replaces the Kubernetes API server. It keeps the ConfigMap of the
//! sent-record as the API server does, so a write that does not carry the current
//! resourceVersion gets 409 Conflict.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adgang::controller::mail_record::{CONFIG_MAP_NAME, RECORD_KEY};
use adgang::controller::mail_schedule::{FIELD_MANAGER, MailSchedule, MailScheduleSettings};
use adgang::directory::{DirectorySettings, LdapDirectory, Secret};
use adgang::mail::{Mailer, TlsMode};
use adgang::plan::{DeletionGuard, Settings};
use adgang::schedule::ScheduleSettings;
use adgang::templates::{Language, Templates};
use chrono::{DateTime, Utc};
use chrono_tz::Europe::Copenhagen;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use support::TestDc;
use support::setup::day;
use support::smtp::{Identity, Pki, ServerMode, SmtpServer};
use tokio::sync::watch;

const NAMESPACE: &str = "adgang";
const CORE: &str = "/api/v1/namespaces/adgang/configmaps";
const CUSTOM: &str = "/apis/adgang.example.org/v1alpha1/namespaces/adgang";

/// A write of another replica, made just before the next write of the ConfigMap.
type Interloper = Box<dyn FnOnce(&mut ApiState) + Send>;

/// What the API server stores and the requests it received.
#[derive(Default)]
struct ApiState {
    suppliers: Vec<Value>,
    users: Vec<Value>,
    config_map: Option<Value>,
    last_version: u64,
    interloper: Option<Interloper>,
    /// Method and path of every request, in order.
    requests: Vec<String>,
    /// Query and body of every status patch.
    status_patches: Vec<(String, Value)>,
    conflicts: usize,
}

impl ApiState {
    fn store_record(&mut self, record: &Value) {
        self.last_version += 1;
        self.config_map = Some(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": CONFIG_MAP_NAME,
                "namespace": NAMESPACE,
                "resourceVersion": self.last_version.to_string(),
            },
            "data": {RECORD_KEY: record.to_string()},
        }));
    }

    fn record(&self) -> Value {
        let text = self.config_map.as_ref().unwrap()["data"][RECORD_KEY]
            .as_str()
            .unwrap()
            .to_owned();
        serde_json::from_str(&text).unwrap()
    }
}

#[derive(Clone, Default)]
struct ApiServer {
    state: Arc<Mutex<ApiState>>,
}

impl ApiServer {
    fn client(&self) -> Client {
        let server = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(request).await) }
        });
        Client::new(service, NAMESPACE)
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let method = parts.method;
        let record_path = format!("{CORE}/{CONFIG_MAP_NAME}");

        let mut state = self.state.lock().unwrap();
        state.requests.push(format!("{method} {path}"));
        let writes = (method == Method::POST && path == CORE)
            || (method == Method::PUT && path == record_path);
        if writes && let Some(interloper) = state.interloper.take() {
            interloper(&mut state);
        }

        if method == Method::GET && path == record_path {
            return match &state.config_map {
                Some(object) => reply(StatusCode::OK, object),
                None => failure(
                    404,
                    "NotFound",
                    "configmaps \"adgang-mail-record\" not found",
                ),
            };
        }
        if method == Method::POST && path == CORE {
            if state.config_map.is_some() {
                state.conflicts += 1;
                return failure(409, "AlreadyExists", "configmaps already exists");
            }
            let record: Value = serde_json::from_str(body["data"][RECORD_KEY].as_str().unwrap())
                .expect("the record is JSON");
            state.store_record(&record);
            return reply(StatusCode::CREATED, state.config_map.as_ref().unwrap());
        }
        if method == Method::PUT && path == record_path {
            let current = state.last_version.to_string();
            let sent = body["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if state.config_map.is_none() || sent != current {
                state.conflicts += 1;
                return failure(409, "Conflict", "the object has been modified");
            }
            let record: Value = serde_json::from_str(body["data"][RECORD_KEY].as_str().unwrap())
                .expect("the record is JSON");
            state.store_record(&record);
            return reply(StatusCode::OK, state.config_map.as_ref().unwrap());
        }
        if method == Method::GET
            && (path.ends_with("/suppliers") || path.ends_with("/supplierusers"))
        {
            let (kind, items) = if path.ends_with("/suppliers") {
                ("SupplierList", state.suppliers.clone())
            } else {
                ("SupplierUserList", state.users.clone())
            };
            let list = json!({
                "apiVersion": "adgang.example.org/v1alpha1",
                "kind": kind,
                "metadata": {"resourceVersion": "500"},
                "items": items,
            });
            return reply(StatusCode::OK, &list);
        }
        if method == Method::PATCH && path.starts_with(&format!("{CUSTOM}/suppliers/")) {
            state.status_patches.push((query, body.clone()));
            let name = path.split('/').nth_back(1).unwrap().to_owned();
            let mut object = state
                .suppliers
                .iter()
                .find(|s| s["metadata"]["name"] == name.as_str())
                .cloned()
                .unwrap_or(Value::Null);
            object["status"] = body["status"].clone();
            return reply(StatusCode::OK, &object);
        }
        failure(500, "InternalError", &format!("unexpected {method} {path}"))
    }
}

fn reply(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn failure(code: u16, reason: &str, message: &str) -> Response<Body> {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    reply(StatusCode::from_u16(code).unwrap(), &status)
}

fn supplier_object(name: &str, certificate: Option<&Identity>) -> Value {
    let mut spec = json!({
        "displayName": format!("{name} ApS"),
        "cvr": "12345678",
        "secureMail": format!("sikker-post@{name}.example.org"),
        "organizationalUnit": name,
        "groups": ["Nexus-Brugere"],
    });
    if let Some(identity) = certificate {
        spec["secureMailCertificate"] = json!(identity.certificate_pem());
    }
    json!({
        "apiVersion": "adgang.example.org/v1alpha1",
        "kind": "Supplier",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": format!("uid-{name}"),
                     "generation": 1, "resourceVersion": "100"},
        "spec": spec,
    })
}

fn user_object(supplier: &str, name: &str) -> Value {
    json!({
        "apiVersion": "adgang.example.org/v1alpha1",
        "kind": "SupplierUser",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": format!("uid-{name}"),
                     "generation": 1, "resourceVersion": "200"},
        "spec": {
            "supplier": supplier,
            "givenName": "Anne",
            "surname": "Hansen",
            "validFrom": day(-10).to_string(),
            "validUntil": day(400).to_string(),
            "employment": {"start": day(-10).to_string()},
            "groups": ["Nexus-Brugere"],
        },
    })
}

/// Returns 07:30 in Copenhagen on the first working day of February 2027, when the overview
/// is due.
fn overview_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-02-01T07:30:00+01:00")
        .unwrap()
        .with_timezone(&Utc)
}

/// The pieces of one test: the DC, the SMTP server, the API server and the schedule.
struct Harness {
    _dc: TestDc,
    _work: tempfile::TempDir,
    pki: Pki,
    smtp: SmtpServer,
    api: ApiServer,
    schedule: MailSchedule<LdapDirectory>,
}

impl Harness {
    async fn start() -> Self {
        let dc = TestDc::start();
        let directory = LdapDirectory::connect(DirectorySettings {
            url: dc.url.clone(),
            ca_file: dc.ca_file.clone(),
            bind_dn: dc.bind_dn.clone(),
            bind_password: Secret::new(dc.bind_password.clone()),
            managed_base: dc.managed_base.clone(),
            domain_base: dc.base_dn.clone(),
            upn_suffix: "adgang.test".to_owned(),
            connections: 2,
            timeout: Duration::from_secs(10),
        })
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", dc.url));
        let work = tempfile::tempdir().unwrap();
        let pki = Pki::create(&work.path().join("pki"));
        let smtp = SmtpServer::start(work.path(), &pki, ServerMode::StartTls);
        let mailer = Mailer::from_config(&pki.mail_settings(smtp.port, TlsMode::StartTls)).unwrap();
        let api = ApiServer::default();
        let schedule = MailSchedule {
            client: api.client(),
            namespace: NAMESPACE.to_owned(),
            directory,
            mailer: Arc::new(mailer),
            templates: Arc::new(Templates::load(Language::Da, None).unwrap()),
            settings: MailScheduleSettings {
                schedule: ScheduleSettings::default(),
                plan: Settings {
                    managed_base: dc.managed_base.clone(),
                    upn_suffix: "adgang.test".to_owned(),
                    time_zone: Copenhagen,
                    grace_days: 0,
                    guard: DeletionGuard::default(),
                },
                language: Language::Da,
                closing_days: Default::default(),
                interval: Duration::from_millis(200),
            },
        };
        Self {
            _dc: dc,
            _work: work,
            pki,
            smtp,
            api,
            schedule,
        }
    }

    /// Adds a supplier with a certificate and one user, and returns the certificate.
    fn add_supplier(&self, name: &str) -> Identity {
        let identity = self
            .pki
            .issue(name, &format!("sikker-post@{name}.example.org"), "valid");
        let mut state = self.api.state.lock().unwrap();
        state.suppliers.push(supplier_object(name, Some(&identity)));
        state.users.push(user_object(name, &format!("{name}-anne")));
        identity
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ApiState> {
        self.api.state.lock().unwrap()
    }
}

#[tokio::test]
async fn round_records_in_config_map() {
    let harness = Harness::start().await;
    harness.add_supplier("omsorg-nord");

    let first = harness.schedule.run_round(overview_time()).await.unwrap();

    assert_eq!(first.overviews, ["omsorg-nord"]);
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    assert_eq!(harness.smtp.messages().len(), 1);
    {
        let state = harness.state();
        assert!(
            state.requests.contains(&format!("POST {CORE}")),
            "{:?}",
            state.requests
        );
        assert_eq!(state.record()["overviews"]["omsorg-nord"], "2027-02-01");
        assert_eq!(state.status_patches.len(), 1);
        let (query, body) = &state.status_patches[0];
        assert!(
            query.contains(&format!("fieldManager={FIELD_MANAGER}")),
            "{query}"
        );
        assert_eq!(body["status"]["mail"]["lastOverview"], "2027-02");
        assert!(body["status"]["mail"].get("lastError").is_none(), "{body}");
        assert!(body["status"].get("conditions").is_none(), "{body}");
    }

    let second = harness.schedule.run_round(overview_time()).await.unwrap();

    assert!(second.overviews.is_empty(), "{second:?}");
    assert_eq!(harness.smtp.messages().len(), 1, "sent twice");
    assert_eq!(harness.state().status_patches.len(), 1);
}

#[tokio::test]
async fn conflict_sends_no_second_mail() {
    let harness = Harness::start().await;
    harness.add_supplier("omsorg-nord");
    harness.add_supplier("pleje-syd");
    {
        let mut state = harness.state();
        state.store_record(&json!({}));
        // Another replica sends both overviews while this one sends omsorg-nord's, and
        // writes its record first.
        state.interloper = Some(Box::new(|state: &mut ApiState| {
            state.store_record(&json!({
                "overviews": {"omsorg-nord": "2027-02-01", "pleje-syd": "2027-02-01"}
            }));
        }));
    }

    let report = harness.schedule.run_round(overview_time()).await.unwrap();

    assert_eq!(report.overviews, ["omsorg-nord"]);
    assert_eq!(harness.smtp.messages().len(), 1, "pleje-syd sent twice");
    let state = harness.state();
    assert_eq!(state.conflicts, 1);
    assert_eq!(state.record()["overviews"]["omsorg-nord"], "2027-02-01");
    assert_eq!(state.record()["overviews"]["pleje-syd"], "2027-02-01");
}

#[tokio::test]
async fn mail_error_in_supplier_status() {
    let harness = Harness::start().await;
    harness
        .state()
        .suppliers
        .push(supplier_object("omsorg-nord", None));

    let report = harness.schedule.run_round(overview_time()).await.unwrap();

    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert!(harness.smtp.messages().is_empty());
    let state = harness.state();
    assert_eq!(state.status_patches.len(), 1);
    let mail = &state.status_patches[0].1["status"]["mail"];
    let error = mail["lastError"].as_str().unwrap();
    assert!(error.starts_with("overview: "), "{error}");
    assert!(error.contains("spec.secureMailCertificate"), "{error}");
    let time = mail["lastErrorTime"].as_str().unwrap();
    assert!(DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    assert!(mail.get("lastOverview").is_none(), "{mail}");
}

#[tokio::test]
async fn non_leader_sends_nothing() {
    let harness = Arc::new(Harness::start().await);
    harness.add_supplier("omsorg-nord");
    let (lead, leading) = watch::channel(false);
    let (stop, stopped) = watch::channel(false);
    let runner = harness.clone();
    let task = tokio::spawn(async move {
        let mut stopped = stopped;
        runner
            .schedule
            .run(leading, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
    });

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        harness.state().requests.is_empty(),
        "a non-leader read the API"
    );
    assert!(harness.smtp.messages().is_empty());

    // The round uses the real clock here, so whether an overview is due depends on the day.
    // The leader's round shows up as requests to the API server either way.
    lead.send(true).unwrap();
    let mut waited = Duration::ZERO;
    while harness.state().requests.is_empty() && waited < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert!(
        !harness.state().requests.is_empty(),
        "the leader ran no round"
    );

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the schedule stops when told")
        .unwrap();
}
