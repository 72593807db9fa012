//! A complete installation for end-to-end tests: a real DC, a real git repository, a
//! configuration file, and the `adgang` binary run as an operator would run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{Days, NaiveDate, Utc};
use chrono_tz::Europe::Copenhagen;

use super::dc::{Entry, TestDc};

/// Today in Europe/Copenhagen, the day the binary plans against.
pub fn today() -> NaiveDate {
    Utc::now().with_timezone(&Copenhagen).date_naive()
}

/// Returns today moved by `days` (negative for the past).
pub fn day(days: i64) -> NaiveDate {
    let today = today();
    if days >= 0 {
        today.checked_add_days(Days::new(days as u64)).unwrap()
    } else {
        today
            .checked_sub_days(Days::new(days.unsigned_abs()))
            .unwrap()
    }
}

/// A git repository with a work tree, driven by the `git` command line.
pub struct TestRepo {
    pub dir: PathBuf,
}

impl TestRepo {
    pub fn init(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let repo = Self {
            dir: dir.to_owned(),
        };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo
    }

    /// Runs git in the repository and returns its standard output; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=Test Reviewer",
                "-c",
                "user.email=reviewer@example.org",
            ])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    pub fn write(&self, path: &str, content: &str) {
        let path = self.dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.dir.join(path)).unwrap();
    }

    /// Commits everything in the work tree and returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// The supplier files used by the end-to-end tests.
pub fn supplier_yaml(name: &str, ou: &str) -> String {
    format!(
        "apiVersion: adgang.example.org/v1alpha1
kind: Supplier
metadata:
  name: {name}
spec:
  displayName: {ou} ApS
  cvr: \"12345678\"
  secureMail: sikker-post@{name}.example.org
  organizationalUnit: \"{ou}\"
  groups: [Nexus-Brugere, Nexus-Hjemmepleje]
"
    )
}

/// A user file: `from` and `until` are the first and last day of access.
pub fn user_yaml(
    supplier: &str,
    name: &str,
    given: &str,
    surname: &str,
    from: NaiveDate,
    until: NaiveDate,
    extra: &str,
) -> String {
    format!(
        "apiVersion: adgang.example.org/v1alpha1
kind: SupplierUser
metadata:
  name: {name}
spec:
  supplier: {supplier}
  givenName: \"{given}\"
  surname: \"{surname}\"
  validFrom: {from}
  validUntil: {until}
  employment:
    start: {from}
{extra}"
    )
}

/// The result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Both streams, for assertion messages.
    pub fn all(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A DC, a repository, a work folder and a configuration that ties them together.
pub struct Setup {
    pub dc: TestDc,
    pub repo: TestRepo,
    pub work: tempfile::TempDir,
    pub config: PathBuf,
    /// Whether sync requires signed commits (`signatures: required`).
    pub signatures_required: bool,
}

impl Setup {
    /// Starts a setup whose sync does not check commit signatures.
    pub fn new() -> Self {
        Self::start(false)
    }

    /// Starts a setup whose sync checks commit signatures, as the default configuration does.
    pub fn new_signed() -> Self {
        Self::start(true)
    }

    fn start(signatures_required: bool) -> Self {
        let dc = TestDc::start();
        let work = tempfile::tempdir().unwrap();
        let repo = TestRepo::init(&work.path().join("repo"));
        let config = work.path().join("config.yaml");
        std::fs::write(&config, config_yaml(&dc, signatures_required, "")).unwrap();
        std::fs::write(work.path().join("bind-password"), &dc.bind_password).unwrap();
        Self {
            dc,
            repo,
            work,
            config,
            signatures_required,
        }
    }

    /// Rewrites the configuration with extra top-level settings appended.
    pub fn configure(&self, extra: &str) {
        let yaml = config_yaml(&self.dc, self.signatures_required, extra);
        std::fs::write(&self.config, yaml).unwrap();
    }

    /// Rewrites the configuration to deliver credentials by mail, with `mail` as its `mail:`
    /// section.
    pub fn configure_mail(&self, mail: &str) {
        let yaml = config_yaml(&self.dc, self.signatures_required, mail)
            .replace("credentials:\n  directory: credentials\n", "");
        std::fs::write(&self.config, yaml).unwrap();
    }

    /// Runs the adgang binary with the configuration and returns its result.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().unwrap();
        Run::from(output)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_adgang"));
        command
            .args(args)
            .env("ADGANG_CONFIG", &self.config)
            .env_remove("ADGANG_BIND_PASSWORD")
            .env_remove("ADGANG_BIND_PASSWORD_FILE")
            .env_remove("ADGANG_SMTP_PASSWORD")
            .env_remove("ADGANG_SMTP_PASSWORD_FILE")
            .env("ADGANG_LOG", "info");
        command
    }

    /// Runs `adgang sync` and asserts it succeeded.
    pub fn sync_ok(&self) -> Run {
        let run = self.run(&["sync"]);
        assert_eq!(run.code, 0, "sync failed:\n{}", run.all());
        run
    }

    pub fn credentials_dir(&self) -> PathBuf {
        self.work.path().join("credentials")
    }

    /// Returns the accounts under the managed base, read with ldapsearch.
    pub fn accounts(&self) -> Vec<Entry> {
        self.dc.ldapsearch(
            &self.dc.managed_base,
            "(objectClass=user)",
            &[
                "sAMAccountName",
                "givenName",
                "sn",
                "displayName",
                "mail",
                "userAccountControl",
                "accountExpires",
                "memberOf",
                "adminDescription",
                "adminDisplayName",
                "objectGUID",
                "pwdLastSet",
            ],
        )
    }

    /// Returns the account with this sAMAccountName, if any.
    pub fn account(&self, username: &str) -> Option<Entry> {
        self.accounts()
            .into_iter()
            .find(|e| e.first("sAMAccountName") == Some(username))
    }
}

fn config_yaml(dc: &TestDc, signatures_required: bool, extra: &str) -> String {
    format!(
        "directory:
  url: {url}
  caFile: {ca}
  bindDn: {bind_dn}
  bindPasswordFile: bind-password
  managedBase: {managed_base}
  domainBase: {base}
  upnSuffix: adgang.test
  connections: 4
  timeoutSeconds: 10
repository:
  url: repo
  branch: main
stateDir: state
credentials:
  directory: credentials
# Only Setup::new_signed checks signatures; tests/authorization.rs covers signed commits.
signatures:
  required: {signatures_required}
{extra}",
        url = dc.url,
        ca = dc.ca_file.display(),
        bind_dn = dc.bind_dn,
        managed_base = dc.managed_base,
        base = dc.base_dn,
    )
}

/// True when userAccountControl has the "disabled" bit clear.
pub fn is_enabled(entry: &Entry) -> bool {
    let uac: u32 = entry.first("userAccountControl").unwrap().parse().unwrap();
    uac & 2 == 0
}
