//! Tests of commit signature verification against real signed commits. Each test builds a
//! repository with the `git` command line in a temporary directory and signs with keys that
//! it generates there: SSH keys with `ssh-keygen`, OpenPGP keys with `gpg` in a throwaway
//! `GNUPGHOME`. Nothing reads the user's own keys or configuration.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use adgang::signatures::{
    KeyError, KeyRing, PublicKey, Signature, SignatureError, SignatureFormat, TimeSource,
    ValidityWindow, verify,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use git2::{Oid, Repository};
use tempfile::TempDir;

/// Committer date of every commit, so that validity windows can be placed around it.
const COMMITTER_DATE: &str = "2025-03-14T10:00:00+01:00";

fn committer_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(COMMITTER_DATE)
        .unwrap()
        .to_utc()
}

fn instant(year: i32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap()
}

/// Runs a program, feeding it `input` on standard input, and returns its standard output
/// without trailing whitespace. Panics with the standard error output when it fails.
fn run(mut command: Command, input: &[u8]) -> String {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("failed to start {description}: {error}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();

    assert!(
        output.status.success(),
        "{description} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_owned()
}

/// An SSH key pair generated with `ssh-keygen`.
struct SshKey {
    private_path: PathBuf,
    public_line: String,
}

impl SshKey {
    fn generate(directory: &Path, name: &str) -> Self {
        Self::generate_typed(directory, name, "ed25519")
    }

    /// Generates a key of an `ssh-keygen -t` type.
    fn generate_typed(directory: &Path, name: &str, key_type: &str) -> Self {
        let private_path = directory.join(name);
        let mut command = Command::new("ssh-keygen");
        command
            .args(["-q", "-t", key_type, "-N", "", "-C"])
            .arg(format!("{name}@example.org"))
            .arg("-f")
            .arg(&private_path);
        run(command, b"");

        let public_line = fs::read_to_string(private_path.with_extension("pub")).unwrap();
        Self {
            private_path,
            public_line: public_line.trim().to_owned(),
        }
    }

    fn public_key(&self) -> PublicKey {
        PublicKey::parse(&self.public_line).unwrap()
    }

    /// Returns the fingerprint as `ssh-keygen -l` prints it.
    fn fingerprint(&self) -> String {
        let mut command = Command::new("ssh-keygen");
        command
            .arg("-lf")
            .arg(self.private_path.with_extension("pub"));
        let listing = run(command, b"");
        listing.split_whitespace().nth(1).unwrap().to_owned()
    }

    /// Returns the `git -c` settings that sign with this key.
    fn git_settings(&self) -> Vec<String> {
        vec![
            "gpg.format=ssh".to_owned(),
            format!("user.signingkey={}", self.private_path.display()),
            "commit.gpgsign=true".to_owned(),
        ]
    }
}

/// An OpenPGP key in its own `GNUPGHOME`, whose gpg-agent is stopped on drop.
struct GpgKey {
    home: PathBuf,
    fingerprint: String,
    signing_fingerprint: String,
    armored: String,
}

impl GpgKey {
    /// Generates an ed25519 primary key that can sign for `<name>@example.org`, and optionally
    /// a signing subkey that then makes the signatures.
    fn generate(directory: &Path, name: &str, with_subkey: bool) -> Self {
        let user_id = format!("Test Person {name} <{name}@example.org>");
        let home = directory.join(format!("gnupg-{name}"));
        fs::create_dir_all(&home).unwrap();
        let mut permissions = fs::metadata(&home).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o700);
        fs::set_permissions(&home, permissions).unwrap();

        let unprotected = ["--batch", "--pinentry-mode", "loopback", "--passphrase", ""];
        gpg(
            &home,
            &[
                &unprotected[..],
                &["--quick-gen-key", &user_id, "ed25519", "sign", "never"],
            ]
            .concat(),
        );
        let fingerprint = fingerprints(&home)[0].clone();

        let signing_fingerprint = if with_subkey {
            let arguments = ["--quick-add-key", &fingerprint, "ed25519", "sign", "never"];
            gpg(&home, &[&unprotected[..], &arguments[..]].concat());
            fingerprints(&home)[1].clone()
        } else {
            fingerprint.clone()
        };

        let armored = gpg(&home, &["--armor", "--export", &fingerprint]);
        Self {
            home,
            fingerprint,
            signing_fingerprint,
            armored,
        }
    }

    fn public_key(&self) -> PublicKey {
        PublicKey::parse(&self.armored).unwrap()
    }

    /// Returns the `git -c` settings that sign with this key. The `!` suffix makes gpg use
    /// exactly that key or subkey.
    fn git_settings(&self) -> Vec<String> {
        vec![
            "gpg.format=openpgp".to_owned(),
            "gpg.program=gpg".to_owned(),
            format!("user.signingkey={}!", self.signing_fingerprint),
            "commit.gpgsign=true".to_owned(),
        ]
    }
}

impl Drop for GpgKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", &self.home)
            .status();
    }
}

fn gpg(home: &Path, arguments: &[&str]) -> String {
    let mut command = Command::new("gpg");
    command
        .args(["--quiet", "--no-tty"])
        .args(arguments)
        .env("GNUPGHOME", home);
    run(command, b"")
}

/// Returns the fingerprints of the primary key and subkeys in `home`, in listing order.
fn fingerprints(home: &Path) -> Vec<String> {
    gpg(home, &["--with-colons", "--list-keys"])
        .lines()
        .filter(|line| line.starts_with("fpr:"))
        .map(|line| line.split(':').nth(9).unwrap().to_owned())
        .collect()
}

/// A repository with branch `main`, a fixed identity and no user configuration.
struct TestRepository {
    directory: TempDir,
    path: PathBuf,
    gnupg_home: Option<PathBuf>,
}

impl TestRepository {
    fn new() -> Self {
        let directory = TempDir::new().unwrap();
        let path = directory.path().join("repository");
        fs::create_dir_all(&path).unwrap();
        let repository = Self {
            directory,
            path,
            gnupg_home: None,
        };
        repository.git(&[], &["init", "--quiet", "--initial-branch=main"]);
        repository
    }

    /// Returns a directory for keys, outside the work tree.
    fn key_directory(&self) -> &Path {
        self.directory.path()
    }

    fn use_gnupg_home(&mut self, key: &GpgKey) {
        self.gnupg_home = Some(key.home.clone());
    }

    /// Runs `git -c <setting>… <arguments>` in the work tree.
    fn git(&self, settings: &[String], arguments: &[&str]) -> String {
        self.git_with_input(settings, arguments, b"")
    }

    fn git_with_input(&self, settings: &[String], arguments: &[&str], input: &[u8]) -> String {
        let mut command = Command::new("git");
        for setting in settings {
            command.arg("-c").arg(setting);
        }
        command
            .args(arguments)
            .current_dir(&self.path)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Astrid Testesen")
            .env("GIT_AUTHOR_EMAIL", "astrid.testesen@example.org")
            .env("GIT_AUTHOR_DATE", COMMITTER_DATE)
            .env("GIT_COMMITTER_NAME", "Astrid Testesen")
            .env("GIT_COMMITTER_EMAIL", "astrid.testesen@example.org")
            .env("GIT_COMMITTER_DATE", COMMITTER_DATE);
        if let Some(home) = &self.gnupg_home {
            command.env("GNUPGHOME", home);
        }
        run(command, input)
    }

    /// Writes a file, commits it with the given signing settings and returns the commit id.
    fn commit(&self, settings: &[String], file: &str, message: &str) -> Oid {
        fs::write(self.path.join(file), format!("{message}\n")).unwrap();
        self.git(&[], &["add", file]);
        self.git(settings, &["commit", "--quiet", "--message", message]);
        self.head()
    }

    fn head(&self) -> Oid {
        Oid::from_str(&self.git(&[], &["rev-parse", "HEAD"])).unwrap()
    }

    /// Returns the raw commit object.
    fn commit_object(&self, commit: Oid) -> String {
        self.git(&[], &["cat-file", "commit", &commit.to_string()]) + "\n"
    }

    /// Writes a commit object as is, without signing it, and returns its id.
    fn write_commit_object(&self, object: &str) -> Oid {
        let arguments = ["hash-object", "-t", "commit", "-w", "--stdin"];
        Oid::from_str(&self.git_with_input(&[], &arguments, object.as_bytes())).unwrap()
    }

    fn open(&self) -> Repository {
        Repository::open(&self.path).unwrap()
    }
}

/// Inserts a `gpgsig` header after the committer line of an unsigned commit object.
fn with_gpgsig(object: &str, signature: &str) -> String {
    let header = signature
        .trim_end()
        .lines()
        .enumerate()
        .map(|(index, line)| match index {
            0 => format!("gpgsig {line}\n"),
            _ => format!(" {line}\n"),
        })
        .collect::<String>();

    let (headers, message) = object.split_once("\n\n").unwrap();
    format!("{headers}\n{header}\n{message}")
}

fn ring_of(entries: &[(&str, PublicKey, Option<ValidityWindow>)]) -> KeyRing {
    let mut ring = KeyRing::new();
    for (owner, key, valid) in entries {
        ring.push(*owner, key.clone(), *valid);
    }
    ring
}

#[test]
fn ssh_commit_verifies_with_signer_key() {
    let repository = TestRepository::new();
    let alice = SshKey::generate(repository.key_directory(), "alice");
    let bob = SshKey::generate(repository.key_directory(), "bob");
    let commit = repository.commit(&alice.git_settings(), "a.txt", "Add a");
    let ring = ring_of(&[
        ("bob", bob.public_key(), None),
        ("alice", alice.public_key(), None),
    ]);

    let signer = ring.verify_commit(&repository.open(), commit).unwrap();

    assert_eq!(signer.owner, "alice");
    assert_eq!(signer.fingerprint, alice.fingerprint());
    assert_eq!(signer.format, SignatureFormat::Ssh);
    assert_eq!(signer.signed_at.source, TimeSource::CommitterTime);
    assert_eq!(signer.signed_at.at, committer_time());
}

#[test]
fn ssh_rsa_and_ecdsa_commits_verify() {
    let repository = TestRepository::new();
    for key_type in ["rsa", "ecdsa"] {
        let key = SshKey::generate_typed(repository.key_directory(), key_type, key_type);
        let commit = repository.commit(&key.git_settings(), "a.txt", key_type);
        let ring = ring_of(&[(key_type, key.public_key(), None)]);

        let signer = ring.verify_commit(&repository.open(), commit).unwrap();

        assert_eq!(signer.owner, key_type);
        assert_eq!(signer.fingerprint, key.fingerprint());
    }
}

#[test]
fn verify_returns_candidate_index() {
    let repository = TestRepository::new();
    let alice = SshKey::generate(repository.key_directory(), "alice");
    let bob = SshKey::generate(repository.key_directory(), "bob");
    let commit = repository.commit(&alice.git_settings(), "a.txt", "Add a");
    let signature = Signature::from_commit(&repository.open(), commit).unwrap();
    let candidates = [bob.public_key(), alice.public_key()];

    let verified = verify(&signature, &candidates).unwrap();

    assert_eq!(verified.key_index, 1);
    assert_eq!(verified.key_fingerprint, alice.fingerprint());
    assert_eq!(verified.format, SignatureFormat::Ssh);
    assert_eq!(verified.signed_at, None);
}

#[test]
fn ssh_commit_by_other_person_fails() {
    let repository = TestRepository::new();
    let alice = SshKey::generate(repository.key_directory(), "alice");
    let bob = SshKey::generate(repository.key_directory(), "bob");
    let commit = repository.commit(&alice.git_settings(), "a.txt", "Add a");
    let ring = ring_of(&[("bob", bob.public_key(), None)]);

    let error = ring.verify_commit(&repository.open(), commit).unwrap_err();

    assert!(
        matches!(error, SignatureError::UnknownKey { candidates: 1, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&commit.to_string()), "{message}");
    assert!(message.contains(&alice.fingerprint()), "{message}");
}

#[test]
fn unsigned_commit_is_reported() {
    let repository = TestRepository::new();
    let alice = SshKey::generate(repository.key_directory(), "alice");
    let commit = repository.commit(&[], "a.txt", "Add a");
    let ring = ring_of(&[("alice", alice.public_key(), None)]);

    let error = ring.verify_commit(&repository.open(), commit).unwrap_err();

    assert!(
        matches!(error, SignatureError::Unsigned { .. }),
        "{error:?}"
    );
    assert_eq!(error.commit(), commit);
    assert!(error.to_string().contains("git commit -S"), "{error}");
}

#[test]
fn missing_commit_is_git_error() {
    let repository = TestRepository::new();
    let missing = Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap();

    let error = Signature::from_commit(&repository.open(), missing).unwrap_err();

    assert!(matches!(error, SignatureError::Git { .. }), "{error:?}");
}

#[test]
fn tampered_ssh_commit_has_bad_signature() {
    let repository = TestRepository::new();
    let alice = SshKey::generate(repository.key_directory(), "alice");
    let commit = repository.commit(&alice.git_settings(), "a.txt", "Give jdoe access");
    let object = repository.commit_object(commit);
    let tampered =
        repository.write_commit_object(&object.replace("Give jdoe access", "Give mallory access"));
    let ring = ring_of(&[("alice", alice.public_key(), None)]);

    let error = ring
        .verify_commit(&repository.open(), tampered)
        .unwrap_err();

    assert_ne!(tampered, commit);
    assert!(
        matches!(error, SignatureError::BadSignature { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&tampered.to_string()), "{message}");
    assert!(message.contains(&alice.fingerprint()), "{message}");
}

#[test]
fn ssh_signature_for_other_namespace_fails() {
    let repository = TestRepository::new();
    let alice = SshKey::generate(repository.key_directory(), "alice");
    let unsigned = repository.commit(&[], "a.txt", "Add a");
    let object = repository.commit_object(unsigned);
    let mut command = Command::new("ssh-keygen");
    command
        .args(["-q", "-Y", "sign", "-n", "file", "-f"])
        .arg(&alice.private_path);
    let file_signature = run(command, object.as_bytes());
    let commit = repository.write_commit_object(&with_gpgsig(&object, &file_signature));
    let ring = ring_of(&[("alice", alice.public_key(), None)]);

    let error = ring.verify_commit(&repository.open(), commit).unwrap_err();

    assert!(
        matches!(&error, SignatureError::WrongNamespace { namespace, .. } if namespace == "file"),
        "{error:?}"
    );
}

#[test]
fn unknown_signature_format_is_reported() {
    let repository = TestRepository::new();
    let alice = SshKey::generate(repository.key_directory(), "alice");
    let unsigned = repository.commit(&[], "a.txt", "Add a");
    let x509 = "-----BEGIN SIGNED MESSAGE-----\n\
                MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAKCA\n\
                -----END SIGNED MESSAGE-----\n";
    let object = with_gpgsig(&repository.commit_object(unsigned), x509);
    let commit = repository.write_commit_object(&object);
    let ring = ring_of(&[("alice", alice.public_key(), None)]);

    let error = ring.verify_commit(&repository.open(), commit).unwrap_err();

    assert!(
        matches!(error, SignatureError::UnknownFormat { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&commit.to_string()), "{message}");
    assert!(
        message.contains("-----BEGIN SIGNED MESSAGE-----"),
        "{message}"
    );
    assert!(message.contains("gpg.format=ssh"), "{message}");
    assert!(message.contains("gpg.format=openpgp"), "{message}");
}

#[test]
fn signed_merge_commit_verifies() {
    let repository = TestRepository::new();
    let alice = SshKey::generate(repository.key_directory(), "alice");
    let settings = alice.git_settings();
    repository.commit(&settings, "base.txt", "Add base");
    repository.git(&[], &["switch", "--quiet", "--create", "topic"]);
    repository.commit(&settings, "topic.txt", "Add topic");
    repository.git(&[], &["switch", "--quiet", "main"]);
    repository.commit(&settings, "main.txt", "Add main");
    repository.git(
        &settings,
        &[
            "merge",
            "--quiet",
            "--no-ff",
            "--message",
            "Merge topic",
            "topic",
        ],
    );
    let merge = repository.head();
    let ring = ring_of(&[("alice", alice.public_key(), None)]);

    let git_repository = repository.open();
    let signer = ring.verify_commit(&git_repository, merge).unwrap();

    assert_eq!(git_repository.find_commit(merge).unwrap().parent_count(), 2);
    assert_eq!(signer.owner, "alice");
}

#[test]
fn openpgp_commit_verifies() {
    let mut repository = TestRepository::new();
    let alice = SshKey::generate(repository.key_directory(), "alice");
    let gpg_key = GpgKey::generate(repository.key_directory(), "tperson", false);
    repository.use_gnupg_home(&gpg_key);
    let before = Utc::now() - Duration::seconds(5);
    let commit = repository.commit(&gpg_key.git_settings(), "a.txt", "Add a");
    let ring = ring_of(&[
        ("alice", alice.public_key(), None),
        ("tperson", gpg_key.public_key(), None),
    ]);

    let signer = ring.verify_commit(&repository.open(), commit).unwrap();

    assert_eq!(signer.owner, "tperson");
    assert_eq!(signer.fingerprint, gpg_key.fingerprint);
    assert_eq!(signer.format, SignatureFormat::OpenPgp);
    assert_eq!(signer.signed_at.source, TimeSource::SignatureCreation);
    assert!(signer.signed_at.at >= before, "{}", signer.signed_at);
}

#[test]
fn openpgp_subkey_signature_names_primary() {
    let mut repository = TestRepository::new();
    let gpg_key = GpgKey::generate(repository.key_directory(), "tperson", true);
    repository.use_gnupg_home(&gpg_key);
    let commit = repository.commit(&gpg_key.git_settings(), "a.txt", "Add a");
    let ring = ring_of(&[("tperson", gpg_key.public_key(), None)]);

    let signer = ring.verify_commit(&repository.open(), commit).unwrap();

    assert_ne!(gpg_key.signing_fingerprint, gpg_key.fingerprint);
    assert_eq!(signer.fingerprint, gpg_key.fingerprint);
}

#[test]
fn openpgp_commit_by_other_key_fails() {
    let mut repository = TestRepository::new();
    let signing = GpgKey::generate(repository.key_directory(), "tperson", false);
    let other = GpgKey::generate(repository.key_directory(), "operson", true);
    repository.use_gnupg_home(&signing);
    let commit = repository.commit(&signing.git_settings(), "a.txt", "Add a");
    let ring = ring_of(&[("operson", other.public_key(), None)]);

    let error = ring.verify_commit(&repository.open(), commit).unwrap_err();

    assert!(
        matches!(error, SignatureError::UnknownKey { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&signing.fingerprint), "{error}");
}

#[test]
fn tampered_openpgp_commit_has_bad_signature() {
    let mut repository = TestRepository::new();
    let gpg_key = GpgKey::generate(repository.key_directory(), "tperson", false);
    repository.use_gnupg_home(&gpg_key);
    let commit = repository.commit(&gpg_key.git_settings(), "a.txt", "Give jdoe access");
    let object = repository.commit_object(commit);
    let tampered =
        repository.write_commit_object(&object.replace("Give jdoe access", "Give mallory access"));
    let ring = ring_of(&[("tperson", gpg_key.public_key(), None)]);

    let error = ring
        .verify_commit(&repository.open(), tampered)
        .unwrap_err();

    assert!(
        matches!(error, SignatureError::BadSignature { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&gpg_key.fingerprint), "{error}");
}

#[test]
fn openpgp_key_parses_user_id() {
    let directory = TempDir::new().unwrap();
    let gpg_key = GpgKey::generate(directory.path(), "tperson", false);

    let key = gpg_key.public_key();

    assert_eq!(key.format(), SignatureFormat::OpenPgp);
    assert_eq!(key.fingerprint(), gpg_key.fingerprint);
    assert_eq!(key.label(), "Test Person tperson <tperson@example.org>");
}

#[test]
fn key_outside_window_is_rejected() {
    let repository = TestRepository::new();
    let alice = SshKey::generate(repository.key_directory(), "alice");
    let commit = repository.commit(&alice.git_settings(), "a.txt", "Add a");
    let expired = ValidityWindow {
        from: Some(instant(2020)),
        until: Some(instant(2025)),
    };
    let ring = ring_of(&[("alice", alice.public_key(), Some(expired))]);

    let error = ring.verify_commit(&repository.open(), commit).unwrap_err();

    assert!(
        matches!(error, SignatureError::OutsideValidity { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    let expected = format!(
        "signed by alice with key {}, which is valid only from 2020-01-01T00:00:00Z until \
         2025-01-01T00:00:00Z",
        alice.fingerprint()
    );
    assert!(message.contains(&expected), "{message}");
    assert!(
        message.contains("2025-03-14T09:00:00Z (committer time)"),
        "{message}"
    );
}

#[test]
fn key_inside_window_is_accepted() {
    let repository = TestRepository::new();
    let alice = SshKey::generate(repository.key_directory(), "alice");
    let commit = repository.commit(&alice.git_settings(), "a.txt", "Add a");
    let current = ValidityWindow {
        from: Some(instant(2025)),
        until: Some(instant(2026)),
    };
    let ring = ring_of(&[("alice", alice.public_key(), Some(current))]);

    let signer = ring.verify_commit(&repository.open(), commit).unwrap();

    assert_eq!(signer.owner, "alice");
}

#[test]
fn later_entry_with_valid_window_accepts() {
    let repository = TestRepository::new();
    let alice = SshKey::generate(repository.key_directory(), "alice");
    let commit = repository.commit(&alice.git_settings(), "a.txt", "Add a");
    let expired = ValidityWindow {
        from: None,
        until: Some(instant(2025)),
    };
    let ring = ring_of(&[
        ("alice-old-role", alice.public_key(), Some(expired)),
        ("alice", alice.public_key(), None),
    ]);

    let signer = ring.verify_commit(&repository.open(), commit).unwrap();

    assert_eq!(signer.owner, "alice");
}

#[test]
fn openpgp_window_uses_creation_time() {
    let mut repository = TestRepository::new();
    let gpg_key = GpgKey::generate(repository.key_directory(), "tperson", false);
    repository.use_gnupg_home(&gpg_key);
    let commit = repository.commit(&gpg_key.git_settings(), "a.txt", "Add a");
    // The window contains the fixed committer time but ends before gpg created the signature.
    let window = ValidityWindow {
        from: Some(committer_time() - Duration::days(1)),
        until: Some(Utc::now() - Duration::hours(1)),
    };
    let ring = ring_of(&[("tperson", gpg_key.public_key(), Some(window))]);

    let error = ring.verify_commit(&repository.open(), commit).unwrap_err();

    assert!(
        matches!(error, SignatureError::OutsideValidity { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("(OpenPGP signature creation time)"),
        "{error}"
    );
}

#[test]
fn malformed_key_string_names_entry() {
    let directory = TempDir::new().unwrap();
    let alice = SshKey::generate(directory.path(), "alice");
    let truncated = alice.public_line.replacen("AAAA", "AAAB", 1);
    let keys = vec![alice.public_line.clone(), truncated];
    let mut ring = KeyRing::new();

    let error = ring.add_keys("alice", &keys, None).unwrap_err();

    assert!(matches!(error, KeyError::InvalidSsh { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("signingKeys[1] of alice"), "{message}");
    assert!(message.contains("alice@example.org"), "{message}");
    assert!(message.contains("OpenSSH public key"), "{message}");
    assert!(
        ring.entries().is_empty(),
        "no key is added when one entry is invalid"
    );
}
