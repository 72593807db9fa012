//! Git source runs against a real git repository, with the API server replaced by a mock
//! that replays list, apply and delete replies.

use std::path::{Path, PathBuf};
use std::process::Command;

use http::Method;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::fixtures::{supplier_path, supplier_yaml, user_path, user_yaml};
use super::*;
use crate::controller::mock_api::{Exchange, MockApi, Recorded};

const NAMESPACE: &str = "adgang";
const NORD: &str = "omsorg-nord";
const BASE: &str = "/apis/adgang.example.org/v1alpha1/namespaces/adgang";
const SELECTOR: &str = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dadgang-git-source";

/// A repository, a configuration that points at it, and its state folder.
struct Fixture {
    folder: TempDir,
    config: Config,
}

impl Fixture {
    fn new() -> Self {
        let folder = tempfile::tempdir().unwrap();
        let repo = folder.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "--quiet", "--initial-branch=main"]);
        let text = format!(
            "directory:
  url: ldaps://127.0.0.1
  caFile: ca.pem
  bindDn: CN=Administrator,CN=Users,DC=adgang,DC=test
  managedBase: OU=Leverandoerer,DC=adgang,DC=test
  domainBase: DC=adgang,DC=test
  upnSuffix: adgang.test
repository:
  url: {}
stateDir: {}
credentials:
  directory: {}
signatures:
  required: false
",
            repo.display(),
            folder.path().join("state").display(),
            folder.path().join("credentials").display(),
        );
        let path = folder.path().join("config.yaml");
        let config = Config::from_str(&path, &text, Some("unused".into()), None).unwrap();
        Self { folder, config }
    }

    fn repo(&self) -> PathBuf {
        self.folder.path().join("repo")
    }

    /// Writes the files, removes the paths given with `None`, commits, and returns the
    /// commit id.
    fn commit(&self, files: &[(String, Option<String>)]) -> String {
        let repo = self.repo();
        for (path, content) in files {
            let full = repo.join(path);
            match content {
                Some(content) => {
                    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                    std::fs::write(full, content).unwrap();
                }
                None => std::fs::remove_file(full).unwrap(),
            }
        }
        git(&repo, &["add", "--all"]);
        git(&repo, &["commit", "--quiet", "--message", "Change users"]);
        git(&repo, &["rev-parse", "HEAD"])
    }
}

fn git(directory: &Path, arguments: &[&str]) -> String {
    let output = Command::new("git")
        .args(arguments)
        .current_dir(directory)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Astrid Testesen")
        .env("GIT_AUTHOR_EMAIL", "astrid.testesen@example.org")
        .env("GIT_COMMITTER_NAME", "Astrid Testesen")
        .env("GIT_COMMITTER_EMAIL", "astrid.testesen@example.org")
        .output()
        .expect("git must be installed to run these tests");
    assert!(
        output.status.success(),
        "git {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn added(path: String, content: String) -> (String, Option<String>) {
    (path, Some(content))
}

fn removed(path: String) -> (String, Option<String>) {
    (path, None)
}

fn supplier_files(users: &[&str]) -> Vec<(String, Option<String>)> {
    let mut files = vec![added(supplier_path(NORD), supplier_yaml(NORD))];
    for user in users {
        files.push(added(user_path(NORD, user), user_yaml(NORD, user)));
    }
    files
}

/// Returns object metadata as the API server returns it. With `managed`, it also has the
/// label and the source-path annotation that git source mode writes.
fn metadata(name: &str, path: &str, managed: bool) -> Value {
    let mut metadata = json!({
        "name": name,
        "namespace": NAMESPACE,
        "uid": format!("6f1c0b7e-0000-4000-8000-{:0>12}", name.len()),
        "resourceVersion": "4711",
        "generation": 1,
        "creationTimestamp": "2026-12-01T08:00:00Z",
    });
    if managed {
        metadata["labels"] = json!({ MANAGED_BY_LABEL: MANAGED_BY });
        metadata["annotations"] = json!({ SOURCE_PATH_ANNOTATION: path });
    }
    metadata
}

fn supplier_object(managed: bool) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "Supplier",
        "metadata": metadata(NORD, &supplier_path(NORD), managed),
        "spec": {
            "displayName": "omsorg-nord ApS",
            "cvr": "12345678",
            "secureMail": "sikker-post@omsorg-nord.example.org",
            "organizationalUnit": "omsorg-nord",
            "groups": ["Nexus-Brugere"],
        },
    })
}

fn user_object(name: &str, managed: bool) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "SupplierUser",
        "metadata": metadata(name, &user_path(NORD, name), managed),
        "spec": {
            "supplier": NORD,
            "givenName": "Testa",
            "surname": "Testesen",
            "validFrom": "2027-01-04",
            "validUntil": "2027-06-30",
            "employment": { "start": "2027-01-04" },
            "groups": ["Nexus-Brugere"],
        },
        "status": { "phase": "Active", "username": "testa.testesen" },
    })
}

/// Returns `object` with the commit annotation that git source mode writes.
fn applied_from(mut object: Value, commit: &str) -> Value {
    object["metadata"]["annotations"][COMMIT_ANNOTATION] = json!(commit);
    object
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": format!("{kind}List"),
        "metadata": { "resourceVersion": "4712" },
        "items": items,
    })
}

fn list_suppliers(items: Vec<Value>) -> Exchange {
    Exchange::new(
        Method::GET,
        &format!("{BASE}/suppliers"),
        200,
        list("Supplier", items),
    )
}

fn list_users(items: Vec<Value>) -> Exchange {
    Exchange::new(
        Method::GET,
        &format!("{BASE}/supplierusers"),
        200,
        list("SupplierUser", items),
    )
}

fn apply_supplier() -> Exchange {
    Exchange::new(
        Method::PATCH,
        &format!("{BASE}/suppliers/{NORD}"),
        200,
        supplier_object(true),
    )
}

fn apply_user(name: &str) -> Exchange {
    Exchange::new(
        Method::PATCH,
        &format!("{BASE}/supplierusers/{name}"),
        200,
        user_object(name, true),
    )
}

fn delete_user(name: &str) -> Exchange {
    let mut deleted = user_object(name, true);
    deleted["metadata"]["deletionTimestamp"] = json!("2026-12-04T19:00:00Z");
    Exchange::new(
        Method::DELETE,
        &format!("{BASE}/supplierusers/{name}"),
        200,
        deleted,
    )
}

fn deletes(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == Method::DELETE)
        .map(|r| r.uri.clone())
        .collect()
}

async fn run_with(fixture: &Fixture, script: Vec<Exchange>) -> (GitSourceReport, MockApi) {
    let (client, mock) = MockApi::start(NAMESPACE, script);
    let report = run(&fixture.config, &client, NAMESPACE, &SyncOptions::default())
        .await
        .unwrap();
    (report, mock)
}

#[tokio::test]
async fn removed_file_pruned() {
    let fixture = Fixture::new();
    let first = fixture.commit(&supplier_files(&["anne-hansen", "bo-berg"]));
    let head = fixture.commit(&[removed(user_path(NORD, "bo-berg"))]);

    // The objects come from the first commit, which this replica has no record of, so the
    // run takes it from their annotations and checks that the head descends from it.
    let (report, mock) = run_with(
        &fixture,
        vec![
            list_suppliers(vec![applied_from(supplier_object(true), &first)]),
            list_users(vec![
                applied_from(user_object("anne-hansen", true), &first),
                applied_from(user_object("bo-berg", true), &first),
            ]),
            apply_supplier(),
            apply_user("anne-hansen"),
            delete_user("bo-berg"),
        ],
    )
    .await;

    mock.assert_done();
    let requests = mock.requests();
    assert!(requests[0].uri.contains(SELECTOR), "{}", requests[0].uri);
    assert!(requests[1].uri.contains(SELECTOR), "{}", requests[1].uri);

    let apply = &requests[3];
    assert!(
        apply.uri.contains("fieldManager=adgang-git-source"),
        "{}",
        apply.uri
    );
    assert!(apply.uri.contains("force=true"), "{}", apply.uri);
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    let metadata = &apply.body["metadata"];
    assert_eq!(metadata["labels"][MANAGED_BY_LABEL], MANAGED_BY);
    assert_eq!(metadata["annotations"][COMMIT_ANNOTATION], head.as_str());
    assert_eq!(
        metadata["annotations"][SOURCE_PATH_ANNOTATION],
        user_path(NORD, "anne-hansen")
    );
    assert_eq!(apply.body["spec"]["supplier"], NORD);

    let delete = &requests[4];
    assert_eq!(
        delete.body["preconditions"]["uid"],
        user_object("bo-berg", true)["metadata"]["uid"]
    );
    assert_eq!(
        report.pruned,
        [ObjectRef::new(ObjectKind::SupplierUser, "bo-berg")]
    );
    assert!(report.recorded);
    assert!(!report.has_problems());
}

#[tokio::test]
async fn hand_made_object_not_pruned() {
    let fixture = Fixture::new();
    fixture.commit(&supplier_files(&[]));

    // The list carries an object without the label, as if the label selector had been
    // ignored: the label check in the decision must still keep it.
    let (report, mock) = run_with(
        &fixture,
        vec![
            list_suppliers(vec![]),
            list_users(vec![user_object("carl-dahl", false)]),
            apply_supplier(),
        ],
    )
    .await;

    mock.assert_done();
    assert!(deletes(&mock.requests()).is_empty());
    assert!(report.pruned.is_empty());
    // A new object is created without force, so it never takes fields from kubectl.
    let apply = &mock.requests()[2].uri;
    assert!(!apply.contains("force=true"), "{apply}");
}

#[tokio::test]
async fn parse_error_prunes_nothing() {
    let fixture = Fixture::new();
    fixture.commit(&supplier_files(&["anne-hansen", "bo-berg"]));
    let broken =
        user_yaml(NORD, "bo-berg").replace("validUntil: 2027-06-30", "validUntil: 2027-02-30");
    fixture.commit(&[added(user_path(NORD, "bo-berg"), broken)]);

    let (report, mock) = run_with(
        &fixture,
        vec![
            list_suppliers(vec![supplier_object(true)]),
            list_users(vec![
                user_object("anne-hansen", true),
                user_object("bo-berg", true),
            ]),
            apply_supplier(),
            apply_user("anne-hansen"),
        ],
    )
    .await;

    mock.assert_done();
    assert!(deletes(&mock.requests()).is_empty());
    assert_eq!(report.file_errors.len(), 1, "{:?}", report.file_errors);
    assert_eq!(report.file_errors[0].path, user_path(NORD, "bo-berg"));
    assert_eq!(
        report.kept[0].reason,
        KeepReason::InvalidFile {
            path: user_path(NORD, "bo-berg")
        }
    );
    assert!(report.has_problems());
}

#[tokio::test]
async fn guard_blocks_mass_prune() {
    let fixture = Fixture::new();
    let users = ["a-one", "a-two", "a-three", "a-four", "a-five"];
    fixture.commit(&supplier_files(&users));
    fixture.commit(
        &users[1..]
            .iter()
            .map(|u| removed(user_path(NORD, u)))
            .collect::<Vec<_>>(),
    );

    let (report, mock) = run_with(
        &fixture,
        vec![
            list_suppliers(vec![supplier_object(true)]),
            list_users(users.iter().map(|u| user_object(u, true)).collect()),
            apply_supplier(),
            apply_user("a-one"),
        ],
    )
    .await;

    mock.assert_done();
    assert!(deletes(&mock.requests()).is_empty());
    assert_eq!(report.kept.len(), 4);
    assert!(report.kept.iter().all(|k| k.reason
        == KeepReason::MassDeletionBlocked {
            deletions: 4,
            users: 5
        }));
}

#[tokio::test]
async fn rewritten_history_refused() {
    let fixture = Fixture::new();
    fixture.commit(&supplier_files(&["anne-hansen"]));
    let (first, mock) = run_with(
        &fixture,
        vec![
            list_suppliers(vec![]),
            list_users(vec![]),
            apply_supplier(),
            apply_user("anne-hansen"),
        ],
    )
    .await;
    mock.assert_done();
    assert!(first.recorded);

    // A new root commit on main replaces the recorded one, as a force-push would.
    let repo = fixture.repo();
    git(&repo, &["checkout", "--quiet", "--orphan", "rewritten"]);
    fixture.commit(&[removed(user_path(NORD, "anne-hansen"))]);
    git(&repo, &["branch", "--quiet", "-M", "rewritten", "main"]);

    let (client, mock) =
        MockApi::start(NAMESPACE, vec![list_suppliers(vec![]), list_users(vec![])]);
    let error = run(&fixture.config, &client, NAMESPACE, &SyncOptions::default())
        .await
        .unwrap_err();

    assert!(
        matches!(
            error,
            GitSourceError::Sync(SyncError::Source(SourceError::HistoryRewritten { .. }))
        ),
        "{error}"
    );
    mock.assert_done();
    assert_eq!(
        mock.requests().len(),
        2,
        "no write after a rejected history"
    );
}

#[tokio::test]
async fn new_leader_rejects_rewritten_history() {
    let fixture = Fixture::new();
    let applied = fixture.commit(&supplier_files(&["anne-hansen"]));
    let repo = fixture.repo();
    git(&repo, &["checkout", "--quiet", "--orphan", "rewritten"]);
    fixture.commit(&[removed(user_path(NORD, "anne-hansen"))]);
    git(&repo, &["branch", "--quiet", "-M", "rewritten", "main"]);

    // This replica's state folder is empty, as on a new leader, and the objects carry the
    // commit that the previous leader applied.
    let (client, mock) = MockApi::start(
        NAMESPACE,
        vec![
            list_suppliers(vec![applied_from(supplier_object(true), &applied)]),
            list_users(vec![applied_from(
                user_object("anne-hansen", true),
                &applied,
            )]),
        ],
    );
    let error = run(&fixture.config, &client, NAMESPACE, &SyncOptions::default())
        .await
        .unwrap_err();

    assert!(
        matches!(
            error,
            GitSourceError::Sync(SyncError::Source(SourceError::HistoryRewritten { .. }))
        ),
        "{error}"
    );
    mock.assert_done();
    assert_eq!(
        mock.requests().len(),
        2,
        "no write after a rejected history"
    );
}

#[tokio::test]
async fn standby_sends_nothing_until_leading() {
    let fixture = Fixture::new();
    fixture.commit(&supplier_files(&[]));
    let (client, mock) = MockApi::start(
        NAMESPACE,
        vec![list_suppliers(vec![]), list_users(vec![]), apply_supplier()],
    );
    let (lead, leading) = tokio::sync::watch::channel(false);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_loop(
        fixture.config.clone(),
        client,
        NAMESPACE.to_owned(),
        SyncOptions::default(),
        SyncTrigger::new(),
        leading,
        Duration::from_secs(3600),
        async {
            let _ = stopped.await;
        },
    ));

    tokio::time::sleep(Duration::from_millis(300)).await;
    let while_standby = mock.requests().len();
    lead.send(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mock.requests().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    task.await.unwrap();

    assert_eq!(while_standby, 0, "a standby replica sends no request");
    mock.assert_done();
}
