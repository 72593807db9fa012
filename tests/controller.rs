//! The controller's reconcile functions against a real Samba AD DC, with the Kubernetes API
//! server replaced by a scripted `tower` service (see `support/api_server.rs`).
//!
//! Each test calls `reconcile_user` or `reconcile_supplier` directly with a context whose
//! reflector stores the test fills, and then checks AD, the status patches and the events.

mod support;

use std::sync::Arc;
use std::time::Duration;

use adgang::controller::{
    self, COMMIT_ANNOTATION, Context, ControllerConfig, ControllerError, Controllers, FINALIZER,
    error_policy, reconcile_supplier, reconcile_user,
};
use adgang::credentials::{Delivery, FileSink};
use adgang::directory::{DirectorySettings, LdapDirectory, Secret};
use adgang::plan::{DeletionGuard, Settings};
use adgang::resources::{Supplier, SupplierUser};
use chrono::{Duration as Days, Utc};
use chrono_tz::Europe::Copenhagen;
use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};
use support::TestDc;
use support::api_server::{ApiServer, LiveApiServer, finalizer_patch, status_patch};
use support::setup::{day, is_enabled};
use tokio::sync::watch;

const NAMESPACE: &str = "adgang";
const SUPPLIER: &str = "omsorg-nord";
const OU: &str = "Omsorg Nord";
const RESYNC: Duration = Duration::from_secs(600);

/// The pieces of one test: the DC, the scripted API server, the stores' writers and the
/// context.
struct Harness {
    dc: TestDc,
    api: ApiServer,
    users: Writer<SupplierUser>,
    suppliers: Writer<Supplier>,
    ctx: Arc<Context<LdapDirectory>>,
    _credentials: tempfile::TempDir,
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

        let api = ApiServer::new();
        let (user_store, mut users) = reflector::store();
        let (supplier_store, mut suppliers) = reflector::store();
        // An empty initial list, as a reflector reports it, makes both stores ready; the
        // tests then add objects as watch events.
        for event in [watcher::Event::Init, watcher::Event::InitDone] {
            users.apply_watcher_event(&event);
        }
        for event in [watcher::Event::Init, watcher::Event::InitDone] {
            suppliers.apply_watcher_event(&event);
        }
        let credentials = tempfile::tempdir().unwrap();

        let config = ControllerConfig {
            plan: Settings {
                managed_base: dc.managed_base.clone(),
                upn_suffix: "adgang.test".to_owned(),
                time_zone: Copenhagen,
                grace_days: 0,
                guard: DeletionGuard::default(),
            },
            resync_interval: RESYNC,
            connections: 2,
        };
        let (_gate, may_write) = watch::channel(true);
        let ctx = Arc::new(Context::new(
            api.client(),
            NAMESPACE,
            directory,
            Delivery::Sink(Arc::new(FileSink::new(credentials.path()))),
            config,
            user_store,
            supplier_store,
            may_write,
        ));
        Self {
            dc,
            api,
            users,
            suppliers,
            ctx,
            _credentials: credentials,
        }
    }

    fn put_user(&mut self, object: &Value) -> Arc<SupplierUser> {
        let user: SupplierUser = serde_json::from_value(object.clone()).unwrap();
        self.users
            .apply_watcher_event(&watcher::Event::Apply(user.clone()));
        Arc::new(user)
    }

    /// Puts the supplier in the store and on the API server.
    fn put_supplier(&mut self, object: &Value) -> Arc<Supplier> {
        let supplier: Supplier = serde_json::from_value(object.clone()).unwrap();
        self.suppliers
            .apply_watcher_event(&watcher::Event::Apply(supplier.clone()));
        self.api.put_object("suppliers", object);
        Arc::new(supplier)
    }

    /// Creates the accounts of `objects` through the Supplier and user reconciles.
    async fn create_accounts(&mut self, objects: &[Value]) -> Vec<Arc<SupplierUser>> {
        self.put_supplier(&supplier_object(false));
        let users: Vec<Arc<SupplierUser>> = objects.iter().map(|o| self.put_user(o)).collect();
        create_organizational_unit(self).await;
        for (object, user) in objects.iter().zip(&users) {
            self.api
                .expect([status_patch("status", "supplierusers", object)]);
            reconcile_user(user.clone(), self.ctx.clone())
                .await
                .unwrap();
            self.api.finish();
            self.api.clear();
        }
        users
    }

    /// Returns the accounts under the managed base with their usernames.
    fn usernames(&self) -> Vec<String> {
        self.dc
            .ldapsearch(
                &self.dc.managed_base,
                "(&(objectClass=user)(objectCategory=person))",
                &["sAMAccountName"],
            )
            .iter()
            .filter_map(|e| e.first("sAMAccountName").map(str::to_owned))
            .collect()
    }

    fn account(&self, username: &str) -> Option<support::Entry> {
        self.dc
            .ldapsearch(
                &self.dc.managed_base,
                &format!("(sAMAccountName={username})"),
                &["userAccountControl", "memberOf", "adminDescription"],
            )
            .into_iter()
            .next()
    }
}

/// Returns a `Supplier` as the API server returns it.
fn supplier_object(suspend: bool) -> Value {
    json!({
        "apiVersion": "adgang.example.org/v1alpha1",
        "kind": "Supplier",
        "metadata": {
            "name": SUPPLIER, "namespace": NAMESPACE, "uid": "uid-supplier",
            "generation": 1, "resourceVersion": "100",
            "creationTimestamp": "2026-01-05T09:00:00Z"
        },
        "spec": {
            "displayName": "Omsorg Nord ApS",
            "cvr": "12345678",
            "secureMail": "sikker-post@omsorg-nord.example.org",
            "organizationalUnit": OU,
            "groups": ["Nexus-Brugere"],
            "suspend": suspend
        }
    })
}

/// Returns a `SupplierUser` whose access started 10 days ago and ends in 100 days, submitted in
/// time 40 days ago, with the finalizer in place.
fn user_object(name: &str, given: &str, surname: &str) -> Value {
    let created = (Utc::now() - Days::days(40))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    json!({
        "apiVersion": "adgang.example.org/v1alpha1",
        "kind": "SupplierUser",
        "metadata": {
            "name": name, "namespace": NAMESPACE, "uid": format!("uid-{name}"),
            "generation": 1, "resourceVersion": "200",
            "creationTimestamp": created,
            "finalizers": [FINALIZER]
        },
        "spec": {
            "supplier": SUPPLIER,
            "givenName": given,
            "surname": surname,
            "mail": format!("{name}@omsorg-nord.example.org"),
            "validFrom": day(-10).to_string(),
            "validUntil": day(100).to_string(),
            "employment": {"start": day(-10).to_string()},
            "groups": ["Nexus-Brugere"],
            "confidentialityDeclaration": {
                "received": day(-45).to_string(),
                "reference": "J-2026-0042"
            }
        }
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap_or_else(|| panic!("status has no conditions: {status}"))
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("status has no {type_} condition: {status}"))
}

/// Creates the supplier's OU through the Supplier reconcile. The plan creates an OU only for
/// a user who needs an account, so the users must be in the store first.
async fn create_organizational_unit(h: &mut Harness) {
    let supplier = supplier_object(false);
    let object = h.put_supplier(&supplier);
    h.api
        .expect([status_patch("supplier status", "suppliers", &supplier)]);
    let action = reconcile_supplier(object, h.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(RESYNC));
    h.api.finish();
    let status = &h.api.body_of("supplier status")["status"];
    assert_eq!(condition(status, "Ready")["status"], "True", "{status}");
    assert_eq!(condition(status, "Suspended")["status"], "False");
    assert_eq!(status["accounts"], 0);
    assert_eq!(h.api.event_reasons(), ["OrganizationalUnitCreated"]);
    h.api.clear();
}

#[tokio::test]
async fn create_sets_status_and_events() {
    let mut h = Harness::start().await;
    h.put_supplier(&supplier_object(false));

    // Without the finalizer, the first reconcile only adds it.
    let mut bare = user_object("anne-hansen", "Anne", "Hansen");
    bare["metadata"]["finalizers"] = json!([]);
    let with_finalizer = user_object("anne-hansen", "Anne", "Hansen");
    let object = h.put_user(&bare);
    h.api.expect([finalizer_patch(
        "add finalizer",
        "supplierusers",
        &with_finalizer,
    )]);
    let action = reconcile_user(object, h.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    h.api.finish();
    let patch = h.api.body_of("add finalizer").to_string();
    assert!(patch.contains(FINALIZER), "{patch}");
    assert!(
        h.usernames().is_empty(),
        "adding the finalizer must not write AD"
    );
    h.api.clear();

    // With the finalizer, the user waits for its supplier's OU and requests the Supplier
    // reconcile that creates it.
    let object = h.put_user(&with_finalizer);
    h.api
        .expect([status_patch("waiting", "supplierusers", &with_finalizer)]);
    let action = reconcile_user(object.clone(), h.ctx.clone()).await.unwrap();
    h.api.finish();
    assert_eq!(action, Action::requeue(controller::BACKOFF_START));
    let status = &h.api.body_of("waiting")["status"];
    assert_eq!(
        condition(status, "Ready")["reason"],
        "OrganizationalUnitMissing"
    );
    assert!(h.usernames().is_empty(), "nothing is created before the OU");
    let mut requests = h.ctx.take_supplier_requests().unwrap();
    let request = requests.try_recv().expect("a Supplier reconcile requested");
    assert_eq!(request.name, SUPPLIER);
    h.api.clear();
    create_organizational_unit(&mut h).await;

    // Then the account is created and enabled.
    h.api.expect([status_patch(
        "user status",
        "supplierusers",
        &with_finalizer,
    )]);
    let action = reconcile_user(object, h.ctx.clone()).await.unwrap();
    h.api.finish();
    assert_eq!(action, Action::requeue(RESYNC));

    let anne = h.account("anne.hansen").expect("anne.hansen created");
    assert!(is_enabled(&anne));
    assert!(
        anne.get("memberOf")
            .iter()
            .any(|g| g.starts_with("CN=Nexus-Brugere")),
        "{anne:?}"
    );
    assert_eq!(
        anne.first("adminDescription"),
        Some("adgang:v1:omsorg-nord/anne-hansen")
    );

    let patch = h.api.body_of("user status");
    let requests = h.api.requests();
    let (_, request) = requests.iter().find(|(n, _)| *n == "user status").unwrap();
    assert!(
        request.query.contains("fieldManager=adgang-controller"),
        "{}",
        request.query
    );
    assert_eq!(patch["apiVersion"], "adgang.example.org/v1alpha1");
    assert_eq!(patch["kind"], "SupplierUser");
    let status = &patch["status"];
    assert_eq!(status["phase"], "Active", "{status}");
    assert_eq!(status["username"], "anne.hansen");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["expires"], day(100).to_string());
    assert!(
        status["distinguishedName"]
            .as_str()
            .unwrap()
            .starts_with("CN=anne.hansen,OU=Omsorg Nord,"),
        "{status}"
    );
    assert_eq!(status["objectGuid"].as_str().unwrap().len(), 36, "{status}");
    let ready = condition(status, "Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "Reconciled");
    assert_eq!(ready["observedGeneration"], 1);
    assert_eq!(condition(status, "Synced")["reason"], "Applied");
    assert_eq!(condition(status, "Expiring")["status"], "False");
    assert_eq!(
        h.api.event_reasons(),
        [
            "Created",
            "CredentialsDelivered",
            "GroupsChanged",
            "Enabled"
        ]
    );
    for event in h.api.events() {
        assert_eq!(event["regarding"]["name"], "anne-hansen");
        assert_eq!(event["reportingController"], "adgang-controller");
    }

    // No password in the status or the events.
    let credentials = std::fs::read_dir(h._credentials.path().join(SUPPLIER))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(credentials).unwrap();
    let password = text
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.contains("assword")))
        .map(|(_, v)| v.trim().to_owned())
        .expect("the credentials file holds a password");
    assert!(password.len() >= 20, "{text}");
    let written = format!("{patch}{:?}", h.api.events());
    assert!(
        !written.contains(&password),
        "a password reached the API server"
    );
}

#[tokio::test]
async fn transition_time_stable_on_second_reconcile() {
    let mut h = Harness::start().await;
    let mut object = user_object("bo-jensen", "Bo", "Jensen");
    let user = h.put_user(&object);
    create_organizational_unit(&mut h).await;
    h.api
        .expect([status_patch("first status", "supplierusers", &object)]);
    reconcile_user(user, h.ctx.clone()).await.unwrap();
    h.api.finish();
    let first = h.api.body_of("first status")["status"].clone();
    h.api.clear();

    // The same object, now carrying the status just written: AD already matches.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    object["status"] = first.clone();
    let user = h.put_user(&object);
    h.api
        .expect([status_patch("second status", "supplierusers", &object)]);
    reconcile_user(user, h.ctx.clone()).await.unwrap();
    h.api.finish();
    let second = h.api.body_of("second status")["status"].clone();
    assert!(h.api.events().is_empty(), "nothing changed, so no event");
    for type_ in ["Ready", "Expiring"] {
        assert_eq!(
            condition(&second, type_)["lastTransitionTime"],
            condition(&first, type_)["lastTransitionTime"],
            "{type_}"
        );
    }
    assert_eq!(condition(&second, "Synced")["reason"], "UpToDate");
    assert_eq!(
        condition(&second, "Synced")["lastTransitionTime"],
        condition(&first, "Synced")["lastTransitionTime"]
    );
    h.api.clear();

    // A third reconcile finds the status unchanged and writes nothing.
    object["status"] = second;
    let user = h.put_user(&object);
    reconcile_user(user, h.ctx.clone()).await.unwrap();
    h.api.finish();
    assert!(h.api.requests().is_empty());
}

#[tokio::test]
async fn finalizer_deletes_account_then_releases() {
    let mut h = Harness::start().await;
    let object = user_object("carl-nielsen", "Carl", "Nielsen");
    let user = h.put_user(&object);
    create_organizational_unit(&mut h).await;
    h.api
        .expect([status_patch("status", "supplierusers", &object)]);
    reconcile_user(user, h.ctx.clone()).await.unwrap();
    h.api.finish();
    assert!(h.account("carl.nielsen").is_some());
    h.api.clear();

    // kubectl delete: the API server sets deletionTimestamp and bumps the generation.
    let mut deleting = object.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-12-04T10:00:00Z");
    deleting["metadata"]["generation"] = json!(2);
    let mut released = deleting.clone();
    released["metadata"]["finalizers"] = json!([]);
    let user = h.put_user(&deleting);
    h.api.expect([finalizer_patch(
        "remove finalizer",
        "supplierusers",
        &released,
    )]);
    let action = reconcile_user(user.clone(), h.ctx.clone()).await.unwrap();
    h.api.finish();
    assert_eq!(action, Action::await_change());
    assert!(h.account("carl.nielsen").is_none(), "account deleted");
    assert_eq!(h.api.event_reasons(), ["Deleted"]);
    let patch = h.api.body_of("remove finalizer").to_string();
    assert!(patch.contains("remove"), "{patch}");
    h.api.clear();

    // The account is already gone (deleted above or by hand): the object is released at
    // once, without an AD write or an event.
    h.api.expect([finalizer_patch(
        "remove finalizer again",
        "supplierusers",
        &released,
    )]);
    let action = reconcile_user(user, h.ctx.clone()).await.unwrap();
    h.api.finish();
    assert_eq!(action, Action::await_change());
    assert!(h.api.events().is_empty());
}

#[tokio::test]
async fn suspended_supplier_writes_nothing() {
    let mut h = Harness::start().await;
    let supplier = supplier_object(true);
    let supplier_ref = h.put_supplier(&supplier);
    let object = user_object("dorte-madsen", "Dorte", "Madsen");
    let user = h.put_user(&object);

    h.api.expect([
        status_patch("user status", "supplierusers", &object),
        status_patch("supplier status", "suppliers", &supplier),
    ]);
    let action = reconcile_user(user, h.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(RESYNC));
    let action = reconcile_supplier(supplier_ref, h.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(RESYNC));
    h.api.finish();

    let status = &h.api.body_of("user status")["status"];
    let ready = condition(status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "SupplierSuspended");
    let status = &h.api.body_of("supplier status")["status"];
    assert_eq!(condition(status, "Suspended")["status"], "True");
    assert_eq!(condition(status, "Ready")["reason"], "Suspended");

    let ous = h.dc.ldapsearch(
        &h.dc.managed_base,
        "(objectClass=organizationalUnit)",
        &["ou"],
    );
    assert!(
        ous.iter().all(|e| e.first("ou") != Some(OU)),
        "no OU is created for a suspended supplier"
    );
    assert!(h.usernames().is_empty(), "no account is created");
    h.api.clear();

    // Deleting a user of a suspended supplier releases the object without an AD write.
    let mut deleting = object.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-12-04T10:00:00Z");
    deleting["metadata"]["generation"] = json!(2);
    let mut released = deleting.clone();
    released["metadata"]["finalizers"] = json!([]);
    let user = h.put_user(&deleting);
    h.api.expect([finalizer_patch(
        "remove finalizer",
        "supplierusers",
        &released,
    )]);
    let action = reconcile_user(user, h.ctx.clone()).await.unwrap();
    h.api.finish();
    assert_eq!(action, Action::await_change());
    assert_eq!(h.api.event_reasons(), ["DeletionDeferred"]);
}

/// Each rejected input: (object name, change to the spec, annotation, expected reason,
/// texts the message must contain).
#[tokio::test]
async fn invalid_input_rejected_with_event() {
    let mut h = Harness::start().await;
    h.put_supplier(&supplier_object(false));

    let tomorrow = day(1).to_string();
    let cases: [(&str, Value, &str, &[&str]); 4] = [
        (
            "unknown-group",
            json!({"groups": ["Domain Admins"]}),
            "InvalidSpec",
            &["spec.groups", "Domain Admins"],
        ),
        (
            "dates-reversed",
            json!({"validUntil": day(-20).to_string()}),
            "InvalidSpec",
            &["spec.validUntil", &day(-20).to_string()],
        ),
        (
            "late-creation",
            json!({"validFrom": tomorrow, "employment": {"start": tomorrow}}),
            "LateSubmission",
            &["spec.validFrom", &tomorrow],
        ),
        (
            "other-supplier",
            json!({"supplier": "hjemmepleje-syd"}),
            "SupplierNotFound",
            &["hjemmepleje-syd", "spec.supplier"],
        ),
    ];

    for (name, change, reason, texts) in cases {
        let mut object = user_object(name, "Eva", "Holm");
        for (field, value) in change.as_object().unwrap() {
            object["spec"][field] = value.clone();
        }
        if name == "late-creation" {
            object["metadata"]["creationTimestamp"] =
                json!(Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        let user = h.put_user(&object);
        h.api
            .expect([status_patch("status", "supplierusers", &object)]);
        let action = reconcile_user(user, h.ctx.clone()).await.unwrap();
        h.api.finish();
        assert_eq!(action, Action::requeue(RESYNC), "{name}");

        let status = &h.api.body_of("status")["status"];
        let ready = condition(status, "Ready");
        assert_eq!(ready["status"], "False", "{name}");
        assert_eq!(ready["reason"], reason, "{name}");
        let message = ready["message"].as_str().unwrap();
        for text in texts {
            assert!(message.contains(text), "{name}: {message:?} lacks {text:?}");
        }
        assert_eq!(h.api.event_reasons(), [reason], "{name}");
        let events = h.api.events();
        assert_eq!(events[0]["type"], "Warning", "{name}");
        assert_eq!(events[0]["note"], message, "{name}");
        assert!(h.usernames().is_empty(), "{name}: AD must stay untouched");
        h.api.clear();
    }

    // The same object from the git source was accepted by a reviewer's merge, so a late
    // creation is applied.
    let mut object = user_object("late-from-git", "Ida", "Krogh");
    object["spec"]["validFrom"] = json!(tomorrow);
    object["spec"]["employment"]["start"] = json!(tomorrow);
    object["metadata"]["annotations"] = json!({COMMIT_ANNOTATION: "0123456789abcdef"});
    let user = h.put_user(&object);
    create_organizational_unit(&mut h).await;
    h.api
        .expect([status_patch("status", "supplierusers", &object)]);
    reconcile_user(user, h.ctx.clone()).await.unwrap();
    h.api.finish();
    let status = &h.api.body_of("status")["status"];
    assert_eq!(status["phase"], "Pending", "{status}");
    assert_eq!(status["lastAppliedCommit"], "0123456789abcdef");
    let ida = h.account("ida.krogh").expect("ida.krogh created");
    assert!(!is_enabled(&ida), "disabled until validFrom");
}

#[tokio::test]
async fn directory_down_backs_off() {
    let mut h = Harness::start().await;
    let object = user_object("frida-lund", "Frida", "Lund");
    let user = h.put_user(&object);
    create_organizational_unit(&mut h).await;
    h.dc.stop();

    h.api
        .expect([status_patch("status", "supplierusers", &object)]);
    let error = reconcile_user(user.clone(), h.ctx.clone())
        .await
        .expect_err("AD is down");
    h.api.finish();
    let text = error.to_string();
    assert!(text.contains("directory"), "{text}");
    let status = &h.api.body_of("status")["status"];
    let ready = condition(status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "DirectoryUnavailable");
    assert_eq!(
        condition(status, "Synced")["reason"],
        "DirectoryUnavailable"
    );

    let waits: Vec<Action> = (0..3)
        .map(|_| error_policy(user.clone(), &error, h.ctx.clone()))
        .collect();
    assert_eq!(
        waits,
        [
            Action::requeue(Duration::from_secs(5)),
            Action::requeue(Duration::from_secs(10)),
            Action::requeue(Duration::from_secs(20)),
        ]
    );
    assert!(matches!(error, ControllerError::Directory(_)), "{error:?}");
}

/// A status write changes neither the generation, the finalizers nor the commit annotation,
/// so the trigger predicate drops its watch event. A spec change, a new finalizer and a new
/// commit pass.
#[tokio::test]
async fn status_write_starts_no_reconcile() {
    let base = user_object("gustav-berg", "Gustav", "Berg");
    let mut status_written = base.clone();
    status_written["metadata"]["resourceVersion"] = json!("201");
    status_written["status"] = json!({"phase": "Active"});
    let mut without_finalizer = base.clone();
    without_finalizer["metadata"]["finalizers"] = json!([]);
    let mut spec_changed = status_written.clone();
    spec_changed["metadata"]["generation"] = json!(2);
    spec_changed["spec"]["surname"] = json!("Bergholt");
    let mut second_status = spec_changed.clone();
    second_status["status"] = json!({"phase": "Active", "observedGeneration": 2});
    let mut new_commit = second_status.clone();
    new_commit["metadata"]["annotations"] = json!({COMMIT_ANNOTATION: "fedcba9876543210"});
    let mut guard_lifted = new_commit.clone();
    guard_lifted["metadata"]["annotations"] = json!({
        COMMIT_ANNOTATION: "fedcba9876543210",
        controller::ALLOW_MASS_DELETION_ANNOTATION: "true",
    });

    let objects: Vec<SupplierUser> = [
        &without_finalizer,
        &base,
        &status_written,
        &spec_changed,
        &second_status,
        &new_commit,
        &guard_lifted,
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v.clone()).unwrap())
    .collect();
    let events = futures::stream::iter(objects.into_iter().map(Ok::<_, watcher::Error>));
    let passed: Vec<SupplierUser> = events
        .predicate_filter(controller::reconcile_trigger, Default::default())
        .map(Result::unwrap)
        .collect()
        .await;
    let seen: Vec<(Option<i64>, usize, usize)> = passed
        .iter()
        .map(|u| {
            (
                u.metadata.generation,
                u.metadata.finalizers.as_ref().map_or(0, Vec::len),
                u.metadata.annotations.as_ref().map_or(0, |a| a.len()),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some(1), 0, 0),
            (Some(1), 1, 0),
            (Some(2), 1, 0),
            (Some(2), 1, 1),
            (Some(2), 1, 2)
        ]
    );
}

/// Accounts whose object is gone (its finalizer removed by hand, or deleted while the
/// controller could not run) are removed by the Supplier reconcile, under the mass-deletion
/// guard.
#[tokio::test]
async fn supplier_removes_orphans_under_guard() {
    let mut h = Harness::start().await;
    h.put_supplier(&supplier_object(false));
    let people = [
        ("hanne-dahl", "Hanne", "Dahl"),
        ("ib-frost", "Ib", "Frost"),
        ("jens-kock", "Jens", "Kock"),
        ("karen-lind", "Karen", "Lind"),
    ];
    let objects: Vec<Value> = people
        .iter()
        .map(|(name, given, surname)| user_object(name, given, surname))
        .collect();
    let users: Vec<Arc<SupplierUser>> = objects.iter().map(|o| h.put_user(o)).collect();
    create_organizational_unit(&mut h).await;
    for (object, user) in objects.iter().zip(&users) {
        h.api
            .expect([status_patch("status", "supplierusers", object)]);
        reconcile_user(user.clone(), h.ctx.clone()).await.unwrap();
        h.api.finish();
        h.api.clear();
    }
    assert_eq!(h.usernames().len(), 4);

    // All four objects gone at once: more than three deletions and more than a quarter of
    // the supplier's accounts, so the guard blocks them.
    for user in &users {
        h.users
            .apply_watcher_event(&watcher::Event::Delete((**user).clone()));
    }
    let supplier = supplier_object(false);
    let supplier_ref = h.put_supplier(&supplier);
    h.api
        .expect([status_patch("blocked", "suppliers", &supplier)]);
    reconcile_supplier(supplier_ref.clone(), h.ctx.clone())
        .await
        .unwrap();
    h.api.finish();
    let status = &h.api.body_of("blocked")["status"];
    let ready = condition(status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "MassDeletionBlocked");
    assert_eq!(status["accounts"], 4);
    assert_eq!(h.api.event_reasons(), ["MassDeletionBlocked"]);
    assert_eq!(h.usernames().len(), 4, "the guard keeps every account");
    h.api.clear();

    // Three objects back: one account is left without its object and is deleted.
    for user in &users[..3] {
        h.users
            .apply_watcher_event(&watcher::Event::Apply((**user).clone()));
    }
    h.api
        .expect([status_patch("removed", "suppliers", &supplier)]);
    reconcile_supplier(supplier_ref, h.ctx.clone())
        .await
        .unwrap();
    h.api.finish();
    let status = &h.api.body_of("removed")["status"];
    assert_eq!(condition(status, "Ready")["status"], "True", "{status}");
    assert_eq!(status["accounts"], 3);
    assert_eq!(h.api.event_reasons(), ["Deleted"]);
    let note = h.api.events()[0]["note"].as_str().unwrap().to_owned();
    assert!(note.contains("omsorg-nord/karen-lind"), "{note}");
    let mut left = h.usernames();
    left.sort();
    assert_eq!(left, ["hanne.dahl", "ib.frost", "jens.kock"]);
}

/// The running controllers: the reflectors list both resources, the Supplier reconcile
/// creates the OU that the waiting user requested, and the user's account is created.
#[tokio::test]
async fn running_controller_creates_account() {
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
    .unwrap();

    let api = LiveApiServer::default();
    api.serve("suppliers", "Supplier", vec![supplier_object(false)]);
    api.serve(
        "supplierusers",
        "SupplierUser",
        vec![user_object("lone-moeller", "Lone", "Møller")],
    );
    let credentials = tempfile::tempdir().unwrap();
    let config = ControllerConfig {
        plan: Settings {
            managed_base: dc.managed_base.clone(),
            upn_suffix: "adgang.test".to_owned(),
            time_zone: Copenhagen,
            grace_days: 0,
            guard: DeletionGuard::default(),
        },
        resync_interval: RESYNC,
        connections: 2,
    };
    let (_gate, may_write) = watch::channel(true);
    let controllers = Controllers::new(
        api.client(),
        NAMESPACE,
        directory,
        Delivery::Sink(Arc::new(FileSink::new(credentials.path()))),
        config,
        may_write,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controllers.run(async {
        let _ = stopped.await;
    }));

    // The user waits for the OU (5 s), so the account appears within a few reconciles. It
    // is created disabled and enabled by a later action of the same reconcile.
    let mut found = Vec::new();
    for _ in 0..60 {
        found = dc.ldapsearch(
            &dc.managed_base,
            "(adminDescription=adgang:v1:omsorg-nord/lone-moeller)",
            &["userAccountControl"],
        );
        if found.first().is_some_and(is_enabled) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the controller stops on shutdown")
        .unwrap();

    let received = api.received();
    let requests: Vec<String> = received
        .iter()
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect();
    assert_eq!(found.len(), 1, "lone-moeller has no account: {requests:#?}");
    assert!(is_enabled(&found[0]));
    let status_patches: Vec<&str> = received
        .iter()
        .filter(|r| r.method == http::Method::PATCH && r.path.ends_with("/status"))
        .map(|r| r.path.as_str())
        .collect();
    assert!(
        status_patches
            .iter()
            .any(|p| p.ends_with("/supplierusers/lone-moeller/status")),
        "{status_patches:?}"
    );
    assert!(
        status_patches
            .iter()
            .any(|p| p.ends_with("/suppliers/omsorg-nord/status")),
        "{status_patches:?}"
    );
}

/// The `Expiring` condition within 14 days of the last day, and the deletion of an account
/// whose last day has passed.
#[tokio::test]
async fn expiring_then_expired_deleted() {
    let mut h = Harness::start().await;
    let mut object = user_object("mads-winther", "Mads", "Winther");
    object["spec"]["validUntil"] = json!(day(5).to_string());
    object["metadata"]["annotations"] = json!({COMMIT_ANNOTATION: "1111111111111111"});
    let user = h.put_user(&object);
    h.put_supplier(&supplier_object(false));
    create_organizational_unit(&mut h).await;

    h.api
        .expect([status_patch("expiring", "supplierusers", &object)]);
    let action = reconcile_user(user, h.ctx.clone()).await.unwrap();
    h.api.finish();
    let status = h.api.body_of("expiring")["status"].clone();
    let expiring = condition(&status, "Expiring");
    assert_eq!(expiring["status"], "True", "{status}");
    assert_eq!(expiring["reason"], "AccessEndsSoon");
    assert!(
        expiring["message"]
            .as_str()
            .unwrap()
            .contains(&day(5).to_string())
    );
    assert_eq!(status["phase"], "Active");
    assert_eq!(action, Action::requeue(RESYNC));
    assert!(h.account("mads.winther").is_some());
    h.api.clear();

    // The git source shortens the access so the last day was yesterday.
    object["spec"]["validUntil"] = json!(day(-1).to_string());
    object["metadata"]["generation"] = json!(2);
    object["metadata"]["annotations"] = json!({COMMIT_ANNOTATION: "2222222222222222"});
    object["status"] = status;
    let user = h.put_user(&object);
    h.api
        .expect([status_patch("expired", "supplierusers", &object)]);
    let action = reconcile_user(user, h.ctx.clone()).await.unwrap();
    h.api.finish();
    assert_eq!(action, Action::requeue(RESYNC), "no boundary is left");
    let status = h.api.body_of("expired")["status"].clone();
    assert_eq!(status["phase"], "Deleted", "{status}");
    assert_eq!(status["lastAppliedCommit"], "2222222222222222");
    assert_eq!(status["observedGeneration"], 2);
    assert!(status.get("distinguishedName").is_none(), "{status}");
    assert_eq!(condition(&status, "Expiring")["status"], "False");
    assert_eq!(h.api.event_reasons(), ["Deleted"]);
    assert!(h.account("mads.winther").is_none(), "account deleted");
}

/// Connects to the DC as the controller does.
async fn connect_directory(dc: &TestDc) -> LdapDirectory {
    LdapDirectory::connect(DirectorySettings {
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
    .unwrap_or_else(|e| panic!("connect to {}: {e}", dc.url))
}

/// Runs both controllers against `api` until `done` returns true or `limit` passes, then
/// stops them.
async fn run_controllers(
    dc: &TestDc,
    api: &LiveApiServer,
    credentials: &std::path::Path,
    limit: Duration,
    done: impl Fn() -> bool,
) {
    let config = ControllerConfig {
        plan: Settings {
            managed_base: dc.managed_base.clone(),
            upn_suffix: "adgang.test".to_owned(),
            time_zone: Copenhagen,
            grace_days: 0,
            guard: DeletionGuard::default(),
        },
        resync_interval: RESYNC,
        connections: 2,
    };
    let (_gate, may_write) = watch::channel(true);
    let controllers = Controllers::new(
        api.client(),
        NAMESPACE,
        connect_directory(dc).await,
        Delivery::Sink(Arc::new(FileSink::new(credentials))),
        config,
        may_write,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controllers.run(async {
        let _ = stopped.await;
    }));
    let started = std::time::Instant::now();
    while started.elapsed() < limit && !done() {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the controller stops on shutdown")
        .unwrap();
}

/// Returns `username objectGUID` of each managed account, sorted.
fn accounts_with_guids(dc: &TestDc) -> Vec<String> {
    let mut accounts: Vec<String> = dc
        .ldapsearch(
            &dc.managed_base,
            "(&(objectClass=user)(adminDescription=adgang:v1:*))",
            &["sAMAccountName", "objectGUID"],
        )
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.first("sAMAccountName").unwrap_or_default(),
                e.first("objectGUID").unwrap_or_default()
            )
        })
        .collect();
    accounts.sort();
    accounts
}

/// Returns the value of `attribute` of the account `username`.
fn attribute_of(h: &Harness, username: &str, attribute: &str) -> Option<String> {
    h.dc.ldapsearch(
        &h.dc.managed_base,
        &format!("(sAMAccountName={username})"),
        &[attribute],
    )
    .first()
    .and_then(|e| e.first(attribute).map(str::to_owned))
}

/// At a restart, the Supplier reconcile must not plan before the SupplierUser list has
/// arrived: an empty store would make every account look like one without its object.
#[tokio::test]
async fn restart_waits_for_user_list() {
    let dc = TestDc::start();
    let credentials = tempfile::tempdir().unwrap();
    let users = vec![
        user_object("lone-moeller", "Lone", "Møller"),
        user_object("ole-dam", "Ole", "Dam"),
    ];

    let first = LiveApiServer::default();
    first.serve("suppliers", "Supplier", vec![supplier_object(false)]);
    first.serve("supplierusers", "SupplierUser", users.clone());
    run_controllers(
        &dc,
        &first,
        credentials.path(),
        Duration::from_secs(60),
        || accounts_with_guids(&dc).len() == 2,
    )
    .await;
    let before = accounts_with_guids(&dc);
    assert_eq!(before.len(), 2, "setup: accounts not created: {before:?}");

    // The restart: the same objects, but the SupplierUser list takes 5 s to arrive.
    let restarted = LiveApiServer::default();
    restarted.serve("suppliers", "Supplier", vec![supplier_object(false)]);
    restarted.serve_slowly(
        "supplierusers",
        "SupplierUser",
        users,
        Duration::from_secs(5),
    );
    run_controllers(
        &dc,
        &restarted,
        credentials.path(),
        Duration::from_secs(10),
        || false,
    )
    .await;

    let after = accounts_with_guids(&dc);
    assert_eq!(
        after, before,
        "accounts were deleted or replaced at restart"
    );
    let supplier_status_written = restarted.received().iter().any(|r| {
        r.method == http::Method::PATCH && r.path.ends_with("/suppliers/omsorg-nord/status")
    });
    assert!(
        supplier_status_written,
        "the Supplier reconcile did not run after the list"
    );
}

/// Reconciles do not start before both stores have finished their initial list.
#[tokio::test]
async fn reconcile_waits_for_initial_list() {
    let mut h = Harness::start().await;
    let (user_store, mut user_writer) = reflector::store::<SupplierUser>();
    let (supplier_store, _supplier_writer) = reflector::store::<Supplier>();
    let ctx = Arc::new(Context::new(
        h.api.client(),
        NAMESPACE,
        connect_directory(&h.dc).await,
        Delivery::Sink(Arc::new(FileSink::new(h._credentials.path()))),
        h.ctx.config.clone(),
        user_store,
        supplier_store,
        watch::channel(true).1,
    ));
    let supplier = h.put_supplier(&supplier_object(false));

    // Only the user store is ready, so the Supplier reconcile waits without a request to
    // AD or the API server.
    for event in [watcher::Event::Init, watcher::Event::InitDone] {
        user_writer.apply_watcher_event(&event);
    }
    let waiting = tokio::time::timeout(
        Duration::from_secs(2),
        reconcile_supplier(supplier, ctx.clone()),
    )
    .await;
    assert!(
        waiting.is_err(),
        "the reconcile ran before the supplier list"
    );
    h.api.finish();
    assert!(h.api.events().is_empty());
    assert!(h.api.gets().is_empty());
}

/// Deleting many objects of one supplier at once (`kubectl delete supplieruser --all`, a
/// deleted namespace or CRD) keeps their accounts until an annotation on the Supplier lifts
/// the guard.
#[tokio::test]
async fn finalizer_guards_mass_deletion() {
    let mut h = Harness::start().await;
    let people = [
        ("hanne-dahl", "Hanne", "Dahl"),
        ("ib-frost", "Ib", "Frost"),
        ("jens-kock", "Jens", "Kock"),
        ("karen-lind", "Karen", "Lind"),
    ];
    let objects: Vec<Value> = people
        .iter()
        .map(|(name, given, surname)| user_object(name, given, surname))
        .collect();
    h.create_accounts(&objects).await;
    assert_eq!(h.usernames().len(), 4);

    // All four objects are being deleted: the first keeps its account and its finalizer.
    let deleting: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut object = object.clone();
            object["metadata"]["deletionTimestamp"] = json!("2026-12-04T10:00:00Z");
            object["metadata"]["generation"] = json!(2);
            object
        })
        .collect();
    let users: Vec<Arc<SupplierUser>> = deleting.iter().map(|o| h.put_user(o)).collect();
    h.api
        .expect([status_patch("blocked", "supplierusers", &deleting[0])]);
    let error = reconcile_user(users[0].clone(), h.ctx.clone())
        .await
        .expect_err("the guard keeps the account");
    h.api.finish();
    assert!(
        matches!(error, ControllerError::MassDeletionBlocked { .. }),
        "{error:?}"
    );
    assert_eq!(h.usernames().len(), 4, "the guard keeps every account");
    let status = &h.api.body_of("blocked")["status"];
    let ready = condition(status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "MassDeletionBlocked");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("adgang.example.org/allow-mass-deletion"),
        "{message}"
    );
    assert_eq!(h.api.event_reasons(), ["MassDeletionBlocked"]);
    let wait = error_policy(users[0].clone(), &error, h.ctx.clone());
    assert_eq!(wait, Action::requeue(controller::BACKOFF_START));
    h.api.clear();

    // The annotation on the Supplier lifts the guard: the account goes and the object is
    // released.
    let mut allowed = supplier_object(false);
    allowed["metadata"]["annotations"] =
        json!({controller::ALLOW_MASS_DELETION_ANNOTATION: "true"});
    h.put_supplier(&allowed);
    let mut released = deleting[0].clone();
    released["metadata"]["finalizers"] = json!([]);
    h.api.expect([finalizer_patch(
        "remove finalizer",
        "supplierusers",
        &released,
    )]);
    let action = reconcile_user(users[0].clone(), h.ctx.clone())
        .await
        .unwrap();
    h.api.finish();
    assert_eq!(action, Action::await_change());
    assert!(h.account("hanne.dahl").is_none(), "account deleted");
    assert_eq!(h.api.event_reasons(), ["Deleted"]);
    h.api.clear();

    // Without the annotation, an object whose account is already gone is still released at
    // once, while the other three stay guarded.
    h.put_supplier(&supplier_object(false));
    h.api.expect([finalizer_patch(
        "release without account",
        "supplierusers",
        &released,
    )]);
    let action = reconcile_user(users[0].clone(), h.ctx.clone())
        .await
        .unwrap();
    h.api.finish();
    assert_eq!(action, Action::await_change());
    assert!(h.api.events().is_empty());
    assert_eq!(h.usernames().len(), 3);
}

/// A user waiting for the OU of a supplier whose reconcile failed waits as long as the
/// supplier's backoff and requests no extra Supplier reconcile.
#[tokio::test]
async fn waiting_user_follows_supplier_backoff() {
    let mut h = Harness::start().await;
    let supplier = h.put_supplier(&supplier_object(false));
    let object = user_object("nina-bak", "Nina", "Bak");
    let user = h.put_user(&object);
    let mut requests = h.ctx.take_supplier_requests().unwrap();

    // Two failed Supplier reconciles in a row: the retry after the second comes in 10 s,
    // and the next backoff is 20 s.
    let error = ControllerError::ActionFailed {
        object: "Supplier adgang/omsorg-nord".to_owned(),
        message: "failed to create the OU".to_owned(),
    };
    error_policy(supplier.clone(), &error, h.ctx.clone());
    error_policy(supplier, &error, h.ctx.clone());

    h.api
        .expect([status_patch("waiting", "supplierusers", &object)]);
    let action = reconcile_user(user, h.ctx.clone()).await.unwrap();
    h.api.finish();
    assert_eq!(action, Action::requeue(Duration::from_secs(20)));
    let status = &h.api.body_of("waiting")["status"];
    assert_eq!(
        condition(status, "Ready")["reason"],
        "OrganizationalUnitMissing"
    );
    assert!(
        requests.try_recv().is_err(),
        "the supplier's own retry is already scheduled"
    );
}

/// The store can still hold a supplier from before it was suspended or resumed, so the
/// user reconcile decides on the Supplier that the API server returns.
#[tokio::test]
async fn user_reads_current_supplier() {
    let mut h = Harness::start().await;
    let object = user_object("otto-sand", "Otto", "Sand");
    h.create_accounts(std::slice::from_ref(&object)).await;
    let expires = attribute_of(&h, "otto.sand", "accountExpires");

    // Suspended on the API server but not yet in the store: AD is not written.
    let mut changed = object.clone();
    changed["metadata"]["generation"] = json!(2);
    changed["spec"]["validUntil"] = json!(day(90).to_string());
    let user = h.put_user(&changed);
    h.api.put_object("suppliers", &supplier_object(true));
    h.api
        .expect([status_patch("suspended", "supplierusers", &changed)]);
    reconcile_user(user.clone(), h.ctx.clone()).await.unwrap();
    h.api.finish();
    let status = &h.api.body_of("suspended")["status"];
    assert_eq!(condition(status, "Ready")["reason"], "SupplierSuspended");
    assert_eq!(
        attribute_of(&h, "otto.sand", "accountExpires"),
        expires,
        "AD was written for a suspended supplier"
    );
    h.api.clear();

    // Resumed on the API server while the store still holds the suspended supplier: the
    // change is applied at once.
    let suspended: Supplier = serde_json::from_value(supplier_object(true)).unwrap();
    h.suppliers
        .apply_watcher_event(&watcher::Event::Apply(suspended));
    h.api.put_object("suppliers", &supplier_object(false));
    h.api
        .expect([status_patch("resumed", "supplierusers", &changed)]);
    reconcile_user(user, h.ctx.clone()).await.unwrap();
    h.api.finish();
    let status = &h.api.body_of("resumed")["status"];
    assert_eq!(
        condition(status, "Ready")["reason"],
        "Reconciled",
        "{status}"
    );
    assert_eq!(status["expires"], day(90).to_string());
    assert_ne!(attribute_of(&h, "otto.sand", "accountExpires"), expires);
}

/// The failure count of an object goes when the object leaves the store.
#[tokio::test]
async fn failure_count_removed_with_object() {
    let mut h = Harness::start().await;
    h.put_supplier(&supplier_object(false));
    let gone = h.put_user(&user_object("per-ravn", "Per", "Ravn"));
    let error = ControllerError::ActionFailed {
        object: "SupplierUser adgang/per-ravn".to_owned(),
        message: "failed to create the account".to_owned(),
    };
    error_policy(gone.clone(), &error, h.ctx.clone());
    assert_eq!(h.ctx.failure_count("SupplierUser adgang/per-ravn"), 1);

    h.users
        .apply_watcher_event(&watcher::Event::Delete((*gone).clone()));
    h.ctx.record_success("SupplierUser adgang/other");
    assert_eq!(h.ctx.failure_count("SupplierUser adgang/per-ravn"), 0);
}

/// Reconciles record their count, result, duration, errors and corrected drift.
#[tokio::test]
async fn reconciles_recorded_in_metrics() {
    let mut h = Harness::start().await;
    let metrics = adgang::server::Metrics::new();
    h.ctx.set_metrics(metrics.clone());
    let object = user_object("rita-skov", "Rita", "Skov");
    h.create_accounts(std::slice::from_ref(&object)).await;

    // One Supplier and one user reconcile so far, both successful.
    let text = metrics.encode();
    assert!(
        text.contains("adgang_reconcile_total{result=\"success\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("adgang_reconcile_duration_seconds_count 2\n"),
        "{text}"
    );
    assert!(text.contains("adgang_drift_corrected_total 0\n"), "{text}");

    // A change by hand in AD to an account whose spec was applied unchanged is drift.
    let mut synced = object.clone();
    synced["status"] = json!({
        "observedGeneration": 1,
        "phase": "Active",
        "conditions": [{
            "type": "Synced", "status": "True", "reason": "Applied", "message": "applied",
            "observedGeneration": 1, "lastTransitionTime": "2026-12-04T10:00:00Z"
        }]
    });
    let user = h.put_user(&synced);
    let dn = attribute_of(&h, "rita.skov", "distinguishedName").unwrap();
    h.dc.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: displayName\ndisplayName: R. Skov\n"
    ));
    h.api
        .expect([status_patch("drift", "supplierusers", &synced)]);
    reconcile_user(user.clone(), h.ctx.clone()).await.unwrap();
    h.api.finish();
    assert_eq!(
        attribute_of(&h, "rita.skov", "displayName").as_deref(),
        Some("Rita Skov")
    );
    let text = metrics.encode();
    assert!(text.contains("adgang_drift_corrected_total 1\n"), "{text}");
    assert!(
        text.contains("adgang_reconcile_total{result=\"success\"} 3\n"),
        "{text}"
    );
    h.api.clear();

    // A failed reconcile counts as a failure and an error.
    h.dc.stop();
    h.api
        .expect([status_patch("down", "supplierusers", &synced)]);
    reconcile_user(user, h.ctx.clone())
        .await
        .expect_err("AD is down");
    h.api.finish();
    let text = metrics.encode();
    assert!(
        text.contains("adgang_reconcile_total{result=\"failure\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("adgang_reconcile_errors_total 1\n"), "{text}");
}

/// Adds an ACE to the managed base that denies the bind account (the domain Administrator)
/// the creation of child objects, so that creating an OU fails in AD.
fn deny_create_child(dc: &TestDc) {
    let output = std::process::Command::new("samba-tool")
        .args(["dsacl", "set", "-s"])
        .arg(dc.dir.join("etc/smb.conf"))
        .arg("-H")
        .arg(dc.dir.join("private/sam.ldb"))
        .arg(format!("--objectdn={}", dc.managed_base))
        .arg("--sddl=(D;;CC;;;LA)")
        .output()
        .expect("samba-tool runs");
    assert!(
        output.status.success(),
        "samba-tool dsacl set failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A Supplier reconcile whose OU creation keeps failing publishes its `ApplyFailed` event
/// once, not once per retry.
#[tokio::test]
async fn repeated_apply_failure_one_event() {
    let mut h = Harness::start().await;
    h.put_user(&user_object("sofie-lund", "Sofie", "Lund"));
    deny_create_child(&h.dc);
    let mut supplier = supplier_object(false);
    let object = h.put_supplier(&supplier);
    h.api
        .expect([status_patch("failed", "suppliers", &supplier)]);
    let error = reconcile_supplier(object, h.ctx.clone())
        .await
        .expect_err("creating the OU is denied");
    h.api.finish();
    assert!(
        matches!(error, ControllerError::ActionFailed { .. }),
        "{error:?}"
    );
    let status = h.api.body_of("failed")["status"].clone();
    assert_eq!(condition(&status, "Ready")["reason"], "ApplyFailed");
    assert_eq!(h.api.event_reasons(), ["ApplyFailed"]);
    h.api.clear();

    // The retry fails the same way: the status already says so, so nothing is written to
    // the API server and no second event is published.
    supplier["status"] = status;
    let object = h.put_supplier(&supplier);
    reconcile_supplier(object, h.ctx.clone())
        .await
        .expect_err("creating the OU is still denied");
    h.api.finish();
    assert!(h.api.requests().is_empty());
    assert!(h.api.events().is_empty(), "{:?}", h.api.event_reasons());
}
