//! Tests of the git source and the state store against real repositories, which each test
//! builds with the `git` command line in a temporary directory. Remotes are `file://` URLs
//! of those repositories, so no test touches the network.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use adgang::source::{GitSource, RepositorySettings, SourceError, StateStore};
use git2::Oid;
use tempfile::TempDir;

/// Runs `git` in `directory` with a fixed identity and without the user's configuration,
/// and returns its standard output without trailing whitespace.
fn git(directory: &Path, arguments: &[&str]) -> String {
    let output = Command::new("git")
        .args(arguments)
        .current_dir(directory)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Astrid Testesen")
        .env("GIT_AUTHOR_EMAIL", "astrid.testesen@example.org")
        .env("GIT_AUTHOR_DATE", "2025-03-14T09:26:53+01:00")
        .env("GIT_COMMITTER_NAME", "Bo Prøvesen")
        .env("GIT_COMMITTER_EMAIL", "bo.provesen@example.org")
        .env("GIT_COMMITTER_DATE", "2025-03-14T10:00:00+01:00")
        .output()
        .expect("git must be installed to run these tests");

    assert!(
        output.status.success(),
        "git {arguments:?} failed in {}: {}",
        directory.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_owned()
}

/// Creates a non-bare repository with branch `main` at `path`.
fn init_repository(path: &Path) {
    fs::create_dir_all(path).unwrap();
    git(path, &["init", "--quiet", "--initial-branch=main"]);
}

/// Writes files into the work tree, commits them all and returns the commit id.
fn commit_files(repository: &Path, files: &[(&str, &str)], message: &str) -> Oid {
    for (path, content) in files {
        let full_path = repository.join(path);
        fs::create_dir_all(full_path.parent().unwrap()).unwrap();
        fs::write(full_path, content).unwrap();
    }

    git(repository, &["add", "--all"]);
    git(repository, &["commit", "--quiet", "--message", message]);
    head_of(repository)
}

fn head_of(repository: &Path) -> Oid {
    Oid::from_str(&git(repository, &["rev-parse", "HEAD"])).unwrap()
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn settings(url: &str, branch: &str, cache_dir: &Path) -> RepositorySettings {
    RepositorySettings {
        url: url.to_owned(),
        branch: branch.to_owned(),
        cache_dir: cache_dir.to_owned(),
    }
}

/// Returns the paths and contents of files read at `commit` under `prefix`.
fn read(source: &GitSource, commit: Oid, prefix: &str) -> Vec<(String, String)> {
    source
        .read_files(commit, prefix)
        .unwrap()
        .into_iter()
        .map(|file| (file.path, String::from_utf8(file.content).unwrap()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(path, content)| (path.to_string(), content.to_string()))
        .collect()
}

/// A temporary directory with an upstream repository and a cache directory.
struct Fixture {
    _root: TempDir,
    upstream: PathBuf,
    cache: PathBuf,
    state: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let upstream = root.path().join("upstream");
        let cache = root.path().join("cache");
        let state = root.path().join("state");
        init_repository(&upstream);

        Self {
            upstream,
            cache,
            state,
            _root: root,
        }
    }

    fn local_settings(&self) -> RepositorySettings {
        settings(self.upstream.to_str().unwrap(), "main", &self.cache)
    }

    fn remote_settings(&self) -> RepositorySettings {
        settings(&file_url(&self.upstream), "main", &self.cache)
    }
}

#[test]
fn open_local_non_bare_repository() {
    let fixture = Fixture::new();
    let commit = commit_files(
        &fixture.upstream,
        &[("suppliers/acme.yaml", "a: 1\n")],
        "Add acme",
    );

    let source = GitSource::open(&fixture.local_settings()).unwrap();

    assert_eq!(source.fetch().unwrap(), commit);
    assert_eq!(source.cache_path(), None);
    assert!(
        !fixture.cache.exists(),
        "a local repository must not be cloned"
    );
    assert_eq!(
        read(&source, commit, "suppliers/"),
        pairs(&[("suppliers/acme.yaml", "a: 1\n")])
    );
}

#[test]
fn open_local_bare_repository() {
    let fixture = Fixture::new();
    let commit = commit_files(
        &fixture.upstream,
        &[("suppliers/acme.yaml", "a: 1\n")],
        "Add acme",
    );
    let bare = fixture.cache.parent().unwrap().join("bare.git");
    git(
        fixture.upstream.parent().unwrap(),
        &[
            "clone",
            "--quiet",
            "--bare",
            "upstream",
            bare.to_str().unwrap(),
        ],
    );

    let source =
        GitSource::open(&settings(bare.to_str().unwrap(), "main", &fixture.cache)).unwrap();

    assert!(source.repository().is_bare());
    assert_eq!(source.fetch().unwrap(), commit);
    assert_eq!(
        read(&source, commit, "suppliers"),
        pairs(&[("suppliers/acme.yaml", "a: 1\n")])
    );
}

#[test]
fn open_missing_local_repository() {
    let fixture = Fixture::new();
    let missing = fixture.upstream.join("no-such-repository");
    fs::create_dir_all(&missing).unwrap();

    let error = GitSource::open(&settings(missing.to_str().unwrap(), "main", &fixture.cache))
        .err()
        .expect("opening a directory without a repository must fail");

    // The parent `upstream` is a repository, so this also checks that parents are not searched.
    assert!(
        matches!(error, SourceError::RepositoryNotFound { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(missing.to_str().unwrap()),
        "{error}"
    );
}

#[test]
fn clone_file_url_and_fetch_new_commit() {
    let fixture = Fixture::new();
    let first = commit_files(
        &fixture.upstream,
        &[("suppliers/acme.yaml", "a: 1\n")],
        "Add acme",
    );

    let source = GitSource::open(&fixture.remote_settings()).unwrap();
    let cache_path = source.cache_path().unwrap().to_owned();

    assert!(
        cache_path.starts_with(&fixture.cache),
        "{}",
        cache_path.display()
    );
    assert!(source.repository().is_bare());
    assert_eq!(source.fetch().unwrap(), first);

    let second = commit_files(
        &fixture.upstream,
        &[("suppliers/beta.yaml", "b: 2\n")],
        "Add beta",
    );

    assert_eq!(source.fetch().unwrap(), second);
    assert_eq!(
        read(&source, second, "suppliers/"),
        pairs(&[
            ("suppliers/acme.yaml", "a: 1\n"),
            ("suppliers/beta.yaml", "b: 2\n")
        ])
    );
    assert_eq!(
        read(&source, first, "suppliers/"),
        pairs(&[("suppliers/acme.yaml", "a: 1\n")])
    );
}

#[test]
fn cache_clone_reused_after_reopen() {
    let fixture = Fixture::new();
    let commit = commit_files(
        &fixture.upstream,
        &[("suppliers/acme.yaml", "a: 1\n")],
        "Add acme",
    );
    let first_path = GitSource::open(&fixture.remote_settings())
        .unwrap()
        .cache_path()
        .unwrap()
        .to_owned();

    // Without the upstream, only the existing clone can satisfy the open.
    fs::remove_dir_all(&fixture.upstream).unwrap();
    let reopened = GitSource::open(&fixture.remote_settings()).unwrap();

    assert_eq!(reopened.cache_path().unwrap(), first_path);
    assert_eq!(read(&reopened, commit, "").len(), 1);

    let error = reopened.fetch().unwrap_err();
    assert!(
        matches!(error, SourceError::FetchFailed { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&file_url(&fixture.upstream)),
        "{error}"
    );
}

#[test]
fn failed_clone_leaves_no_cache() {
    let fixture = Fixture::new();
    let missing = fixture.upstream.with_file_name("missing-upstream");

    let error = GitSource::open(&settings(&file_url(&missing), "main", &fixture.cache))
        .err()
        .expect("cloning a missing remote must fail");

    assert!(
        matches!(error, SourceError::CloneFailed { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("missing-upstream"), "{error}");
    let leftovers: Vec<_> = fs::read_dir(&fixture.cache).unwrap().collect();
    assert!(leftovers.is_empty(), "cache contains {leftovers:?}");
}

#[test]
fn read_older_commit_ignores_work_tree() {
    let fixture = Fixture::new();
    let repository = &fixture.upstream;
    let first = commit_files(
        repository,
        &[("suppliers/acme.yaml", "version: 1\n")],
        "First",
    );
    let second = commit_files(
        repository,
        &[
            ("suppliers/acme.yaml", "version: 2\n"),
            ("suppliers/beta.yaml", "b\n"),
        ],
        "Second",
    );

    // Dirty the work tree: a modified tracked file, a staged file and an untracked file.
    fs::write(repository.join("suppliers/acme.yaml"), "dirty\n").unwrap();
    fs::write(repository.join("suppliers/staged.yaml"), "staged\n").unwrap();
    git(repository, &["add", "suppliers/staged.yaml"]);
    fs::write(repository.join("suppliers/untracked.yaml"), "untracked\n").unwrap();

    let source = GitSource::open(&fixture.local_settings()).unwrap();

    assert_eq!(
        read(&source, first, "suppliers/"),
        pairs(&[("suppliers/acme.yaml", "version: 1\n")])
    );
    assert_eq!(
        read(&source, second, "suppliers/"),
        pairs(&[
            ("suppliers/acme.yaml", "version: 2\n"),
            ("suppliers/beta.yaml", "b\n")
        ])
    );

    // Reading must leave the work tree, the index and HEAD as they were.
    assert_eq!(
        fs::read_to_string(repository.join("suppliers/acme.yaml")).unwrap(),
        "dirty\n"
    );
    assert_eq!(head_of(repository), second);
    assert_eq!(
        git(repository, &["status", "--porcelain"]),
        " M suppliers/acme.yaml\nA  suppliers/staged.yaml\n?? suppliers/untracked.yaml"
    );
}

#[test]
fn read_files_prefix_and_order() {
    let fixture = Fixture::new();
    let commit = commit_files(
        &fixture.upstream,
        &[
            ("suppliers/zeta/users.yaml", "z\n"),
            ("suppliers/acme/users.yaml", "a\n"),
            ("suppliers/acme.yaml", "top\n"),
            ("suppliers-old/acme.yaml", "old\n"),
            ("README.md", "readme\n"),
        ],
        "Add suppliers",
    );
    let source = GitSource::open(&fixture.local_settings()).unwrap();
    let expected = pairs(&[
        ("suppliers/acme.yaml", "top\n"),
        ("suppliers/acme/users.yaml", "a\n"),
        ("suppliers/zeta/users.yaml", "z\n"),
    ]);

    assert_eq!(read(&source, commit, "suppliers/"), expected);
    assert_eq!(read(&source, commit, "suppliers"), expected);
    assert_eq!(read(&source, commit, "/suppliers/"), expected);
    assert_eq!(
        read(&source, commit, "suppliers/acme"),
        pairs(&[("suppliers/acme/users.yaml", "a\n")])
    );
    assert_eq!(read(&source, commit, "").len(), 5);
}

#[test]
fn read_files_missing_directory() {
    let fixture = Fixture::new();
    let commit = commit_files(
        &fixture.upstream,
        &[("README.md", "readme\n")],
        "Add readme",
    );
    let source = GitSource::open(&fixture.local_settings()).unwrap();

    for prefix in ["suppliers/", "README.md"] {
        let error = source.read_files(commit, prefix).unwrap_err();

        assert!(
            matches!(error, SourceError::DirectoryMissing { .. }),
            "{prefix}: {error:?}"
        );
        assert!(error.to_string().contains(&commit.to_string()), "{error}");
    }
}

#[test]
fn read_files_skips_symbolic_links() {
    let fixture = Fixture::new();
    commit_files(
        &fixture.upstream,
        &[("suppliers/acme.yaml", "a\n")],
        "Add acme",
    );
    std::os::unix::fs::symlink(
        "/etc/hostname",
        fixture.upstream.join("suppliers/link.yaml"),
    )
    .unwrap();
    let commit = commit_files(&fixture.upstream, &[], "Add link");
    let source = GitSource::open(&fixture.local_settings()).unwrap();

    assert_eq!(
        read(&source, commit, "suppliers"),
        pairs(&[("suppliers/acme.yaml", "a\n")])
    );
}

#[test]
fn read_files_unknown_commit() {
    let fixture = Fixture::new();
    commit_files(
        &fixture.upstream,
        &[("README.md", "readme\n")],
        "Add readme",
    );
    let source = GitSource::open(&fixture.local_settings()).unwrap();
    let unknown = Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap();

    let error = source.read_files(unknown, "").unwrap_err();

    assert!(
        matches!(error, SourceError::CommitNotFound { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&unknown.to_string()), "{error}");
}

#[test]
fn branch_missing_local() {
    let fixture = Fixture::new();
    commit_files(
        &fixture.upstream,
        &[("README.md", "readme\n")],
        "Add readme",
    );
    let mut local = fixture.local_settings();
    local.branch = "production".to_owned();

    let error = GitSource::open(&local).unwrap().fetch().unwrap_err();

    assert!(
        matches!(error, SourceError::BranchMissing { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("\"production\""), "{error}");
}

#[test]
fn branch_missing_remote() {
    let fixture = Fixture::new();
    commit_files(
        &fixture.upstream,
        &[("README.md", "readme\n")],
        "Add readme",
    );
    let mut remote = fixture.remote_settings();
    remote.branch = "production".to_owned();

    let error = GitSource::open(&remote)
        .err()
        .expect("a missing branch must fail");

    assert!(
        matches!(error, SourceError::BranchMissing { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("\"production\""), "{error}");
    assert!(
        error.to_string().contains(&file_url(&fixture.upstream)),
        "{error}"
    );
}

#[test]
fn branch_deleted_on_remote() {
    let fixture = Fixture::new();
    commit_files(
        &fixture.upstream,
        &[("README.md", "readme\n")],
        "Add readme",
    );
    git(&fixture.upstream, &["branch", "release"]);
    let mut remote = fixture.remote_settings();
    remote.branch = "release".to_owned();
    let source = GitSource::open(&remote).unwrap();
    source.fetch().unwrap();

    git(&fixture.upstream, &["branch", "--delete", "release"]);
    let error = source.fetch().unwrap_err();

    assert!(
        matches!(error, SourceError::BranchMissing { .. }),
        "{error:?}"
    );
}

#[test]
fn invalid_branch_names_rejected() {
    let fixture = Fixture::new();
    commit_files(
        &fixture.upstream,
        &[("README.md", "readme\n")],
        "Add readme",
    );

    for branch in ["", "main..x", "+main", "ma*in", "main:other", "-main lock"] {
        let mut remote = fixture.remote_settings();
        remote.branch = branch.to_owned();

        let error = GitSource::open(&remote)
            .err()
            .expect("an invalid branch must fail");

        assert!(
            matches!(error, SourceError::InvalidBranchName { .. }),
            "branch {branch:?}: {error:?}"
        );
    }
}

#[test]
fn fast_forward_accepted() {
    let fixture = Fixture::new();
    let first = commit_files(&fixture.upstream, &[("a.yaml", "1\n")], "First");
    let second = commit_files(&fixture.upstream, &[("a.yaml", "2\n")], "Second");
    let third = commit_files(&fixture.upstream, &[("a.yaml", "3\n")], "Third");
    let source = GitSource::open(&fixture.remote_settings()).unwrap();
    let head = source.fetch().unwrap();

    assert_eq!(head, third);
    assert!(source.check_fast_forward(None, head).is_ok());
    assert!(source.check_fast_forward(Some(head), head).is_ok());
    assert!(source.check_fast_forward(Some(second), head).is_ok());
    assert!(source.check_fast_forward(Some(first), head).is_ok());
    assert!(source.verify_head(Some(first), head, None).is_ok());
}

/// Builds an upstream with `base` and `applied`, fetches it, then replaces `applied` with
/// `rewritten` by a force-push style reset. Returns the source and the three commits.
fn rewritten_history(fixture: &Fixture) -> (GitSource, Oid, Oid, Oid) {
    let base = commit_files(&fixture.upstream, &[("a.yaml", "1\n")], "Base");
    let applied = commit_files(&fixture.upstream, &[("a.yaml", "2\n")], "Applied");
    let source = GitSource::open(&fixture.remote_settings()).unwrap();
    assert_eq!(source.fetch().unwrap(), applied);

    git(
        &fixture.upstream,
        &["reset", "--quiet", "--hard", &base.to_string()],
    );
    let rewritten = commit_files(&fixture.upstream, &[("a.yaml", "rewritten\n")], "Rewritten");
    assert_eq!(source.fetch().unwrap(), rewritten);

    (source, base, applied, rewritten)
}

#[test]
fn force_push_rejected() {
    let fixture = Fixture::new();
    let (source, _, applied, rewritten) = rewritten_history(&fixture);

    let error = source
        .check_fast_forward(Some(applied), rewritten)
        .unwrap_err();
    let message = error.to_string();

    assert!(
        matches!(error, SourceError::HistoryRewritten { .. }),
        "{error:?}"
    );
    assert!(message.contains(&applied.to_string()), "{message}");
    assert!(message.contains(&rewritten.to_string()), "{message}");
    assert!(message.contains("Nothing was applied"), "{message}");
    assert!(
        message.contains(&format!(
            "adgang sync --accept-rewritten-history {rewritten}"
        )),
        "{message}"
    );
}

#[test]
fn override_accepts_only_named_head() {
    let fixture = Fixture::new();
    let (source, base, applied, rewritten) = rewritten_history(&fixture);

    let rejected = source
        .verify_head(Some(applied), rewritten, None)
        .unwrap_err();
    assert!(
        matches!(rejected, SourceError::HistoryRewritten { .. }),
        "{rejected:?}"
    );

    for wrong in [base, applied] {
        let error = source
            .verify_head(Some(applied), rewritten, Some(wrong))
            .unwrap_err();

        assert!(
            matches!(error, SourceError::AcceptedHeadMismatch { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(&wrong.to_string()), "{error}");
        assert!(
            error.to_string().contains(&rewritten.to_string()),
            "{error}"
        );
    }

    assert!(
        source
            .verify_head(Some(applied), rewritten, Some(rewritten))
            .is_ok()
    );
}

#[test]
fn override_unused_for_fast_forward() {
    let fixture = Fixture::new();
    let first = commit_files(&fixture.upstream, &[("a.yaml", "1\n")], "First");
    let second = commit_files(&fixture.upstream, &[("a.yaml", "2\n")], "Second");
    let source = GitSource::open(&fixture.local_settings()).unwrap();

    assert!(source.verify_head(Some(first), second, Some(first)).is_ok());
}

#[test]
fn unknown_last_applied_commit() {
    let fixture = Fixture::new();
    let head = commit_files(&fixture.upstream, &[("a.yaml", "1\n")], "First");
    let source = GitSource::open(&fixture.local_settings()).unwrap();
    let unknown = Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap();

    let error = source.check_fast_forward(Some(unknown), head).unwrap_err();
    let message = error.to_string();

    assert!(
        matches!(error, SourceError::LastAppliedUnknown { .. }),
        "{error:?}"
    );
    assert!(
        message.contains(&format!("{unknown} of branch \"main\" is not in")),
        "{message}"
    );
    assert!(message.contains(&head.to_string()), "{message}");
    assert!(source.verify_head(Some(unknown), head, Some(head)).is_ok());
}

#[test]
fn shallow_clone_lacks_history() {
    let fixture = Fixture::new();
    let first = commit_files(&fixture.upstream, &[("a.yaml", "1\n")], "First");
    let second = commit_files(&fixture.upstream, &[("a.yaml", "2\n")], "Second");
    let shallow = fixture.upstream.with_file_name("shallow");
    git(
        fixture.upstream.parent().unwrap(),
        &[
            "clone",
            "--quiet",
            "--depth",
            "1",
            &file_url(&fixture.upstream),
            "shallow",
        ],
    );

    let source =
        GitSource::open(&settings(shallow.to_str().unwrap(), "main", &fixture.cache)).unwrap();
    let error = source.check_fast_forward(Some(first), second).unwrap_err();

    assert!(source.repository().is_shallow());
    assert!(
        matches!(error, SourceError::ShallowRepository { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("--unshallow"), "{error}");
}

#[test]
fn commit_info_fields() {
    let fixture = Fixture::new();
    let commit = commit_files(
        &fixture.upstream,
        &[("a.yaml", "1\n")],
        "Add supplier Acme\n\nWith a body that is not part of the summary.",
    );
    let source = GitSource::open(&fixture.local_settings()).unwrap();

    let info = source.commit_info(commit).unwrap();

    assert_eq!(info.id, commit);
    assert_eq!(info.summary, "Add supplier Acme");
    assert_eq!(info.author, "Astrid Testesen <astrid.testesen@example.org>");
    assert_eq!(info.committed_at.to_rfc3339(), "2025-03-14T09:00:00+00:00");
}

#[test]
fn resolve_abbreviated_commit() {
    let fixture = Fixture::new();
    let commit = commit_files(&fixture.upstream, &[("a.yaml", "1\n")], "First");
    let source = GitSource::open(&fixture.local_settings()).unwrap();

    assert_eq!(source.resolve_commit(&commit.to_string()).unwrap(), commit);
    assert_eq!(
        source.resolve_commit(&commit.to_string()[..10]).unwrap(),
        commit
    );

    for text in ["main", "HEAD", "abc", "0000000000"] {
        let error = source.resolve_commit(text).unwrap_err();

        assert!(
            matches!(error, SourceError::CommitNotFound { .. }),
            "{text}: {error:?}"
        );
    }
}

#[test]
fn state_survives_new_store() {
    let fixture = Fixture::new();
    let main = fixture.remote_settings();
    let mut release = fixture.remote_settings();
    release.branch = "release".to_owned();
    let commit = Oid::from_str("89abcdef0123456789abcdef0123456789abcdef").unwrap();

    assert_eq!(
        StateStore::new(&fixture.state).last_applied(&main).unwrap(),
        None
    );
    StateStore::new(&fixture.state)
        .record_applied(&main, commit)
        .unwrap();

    let store = StateStore::new(&fixture.state);
    assert_eq!(store.last_applied(&main).unwrap(), Some(commit));
    assert_eq!(store.last_applied(&release).unwrap(), None);

    let names: Vec<_> = fs::read_dir(&fixture.state)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "state directory contains {names:?}");
}

#[test]
fn state_file_is_readable_json() {
    let fixture = Fixture::new();
    let main = fixture.remote_settings();
    let commit = Oid::from_str("89abcdef0123456789abcdef0123456789abcdef").unwrap();
    let store = StateStore::new(&fixture.state);
    store.record_applied(&main, commit).unwrap();

    let text = fs::read_to_string(store.state_file(&main)).unwrap();
    let record: serde_json::Value = serde_json::from_str(&text).unwrap();

    assert_eq!(record["url"], main.url.as_str());
    assert_eq!(record["branch"], "main");
    assert_eq!(record["commit"], commit.to_string().as_str());
    assert!(record["recorded_at"].is_string(), "{text}");
}

#[test]
fn state_key_ignores_url_token() {
    let fixture = Fixture::new();
    let with_token = settings(
        "https://first-token@git.example.org/it/accounts.git",
        "main",
        &fixture.cache,
    );
    let rotated = settings(
        "https://second-token@git.example.org/it/accounts.git",
        "main",
        &fixture.cache,
    );
    let commit = Oid::from_str("89abcdef0123456789abcdef0123456789abcdef").unwrap();
    let store = StateStore::new(&fixture.state);

    store.record_applied(&with_token, commit).unwrap();

    assert_eq!(store.last_applied(&rotated).unwrap(), Some(commit));
    let text = fs::read_to_string(store.state_file(&with_token)).unwrap();
    assert!(!text.contains("token"), "{text}");
}

#[test]
fn state_reset_forgets_commit() {
    let fixture = Fixture::new();
    let main = fixture.remote_settings();
    let commit = Oid::from_str("89abcdef0123456789abcdef0123456789abcdef").unwrap();
    let store = StateStore::new(&fixture.state);

    store.reset(&main).unwrap();
    store.record_applied(&main, commit).unwrap();
    store.reset(&main).unwrap();

    assert_eq!(store.last_applied(&main).unwrap(), None);
}

#[test]
fn state_replaced_on_record() {
    let fixture = Fixture::new();
    let main = fixture.remote_settings();
    let first = Oid::from_str("89abcdef0123456789abcdef0123456789abcdef").unwrap();
    let second = Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap();
    let store = StateStore::new(&fixture.state);

    store.record_applied(&main, first).unwrap();
    store.record_applied(&main, second).unwrap();

    assert_eq!(store.last_applied(&main).unwrap(), Some(second));
}

#[test]
fn corrupt_state_file() {
    let fixture = Fixture::new();
    let main = fixture.remote_settings();
    let store = StateStore::new(&fixture.state);
    let path = store.state_file(&main);
    fs::create_dir_all(&fixture.state).unwrap();
    let valid_commit = "89abcdef0123456789abcdef0123456789abcdef";
    let record = |url: &str, branch: &str, commit: &str| {
        format!(
            r#"{{"url": "{url}", "branch": "{branch}", "commit": "{commit}", "recorded_at": "2025-03-14T09:00:00Z"}}"#
        )
    };

    let cases = [
        ("truncated", "{\"url\": \"".to_owned()),
        ("not JSON", "commit = 89abcdef".to_owned()),
        ("short commit", record(&main.url, "main", "89abcdef")),
        ("other branch", record(&main.url, "release", valid_commit)),
        (
            "other URL",
            record("file:///elsewhere", "main", valid_commit),
        ),
    ];

    for (case, content) in cases {
        fs::write(&path, content).unwrap();

        let error = store.last_applied(&main).unwrap_err();
        let message = error.to_string();

        assert!(
            matches!(error, SourceError::StateCorrupt { .. }),
            "{case}: {error:?}"
        );
        assert!(
            message.contains(path.to_str().unwrap()),
            "{case}: {message}"
        );
        assert!(message.contains("delete it"), "{case}: {message}");
    }

    fs::write(&path, record(&main.url, "main", valid_commit)).unwrap();
    assert_eq!(
        store.last_applied(&main).unwrap(),
        Some(Oid::from_str(valid_commit).unwrap())
    );
}
