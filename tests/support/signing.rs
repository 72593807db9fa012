//! Keys generated for one test and git repositories whose commits they sign, for tests that
//! need real SSH- and OpenPGP-signed commits. SSH keys come from `ssh-keygen`, OpenPGP keys
//! from `gpg` in a throwaway `GNUPGHOME`. Nothing reads the user's own keys or git
//! configuration.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// Runs a program, feeding it `input` on standard input, and returns its standard output
/// without trailing whitespace. Panics with the standard error output when it fails.
pub fn run(mut command: Command, input: &[u8]) -> String {
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

/// An ed25519 SSH key pair generated with `ssh-keygen`, without a passphrase.
pub struct SshKey {
    pub private_path: PathBuf,
    /// The public key as one OpenSSH line, as in the `.pub` file.
    pub public_line: String,
}

impl SshKey {
    pub fn generate(directory: &Path, name: &str) -> Self {
        let private_path = directory.join(name);
        let mut command = Command::new("ssh-keygen");
        command
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("{name}@example.org"))
            .arg("-f")
            .arg(&private_path);
        run(command, b"");

        let public_line = fs::read_to_string(public_path(&private_path)).unwrap();
        Self {
            private_path,
            public_line: public_line.trim().to_owned(),
        }
    }

    /// Returns the fingerprint as `ssh-keygen -l` prints it (`SHA256:…`).
    pub fn fingerprint(&self) -> String {
        let mut command = Command::new("ssh-keygen");
        command.arg("-lf").arg(public_path(&self.private_path));
        let listing = run(command, b"");
        listing.split_whitespace().nth(1).unwrap().to_owned()
    }

    /// Returns the `git -c` settings that sign commits with this key.
    pub fn git_settings(&self) -> Vec<String> {
        vec![
            "gpg.format=ssh".to_owned(),
            format!("user.signingkey={}", self.private_path.display()),
            "commit.gpgsign=true".to_owned(),
        ]
    }
}

/// Returns the path of the `.pub` file that `ssh-keygen` writes next to a private key.
/// `with_extension` would cut a name such as `ida.rasmussen` at its dot.
fn public_path(private_path: &Path) -> PathBuf {
    let mut path = private_path.as_os_str().to_owned();
    path.push(".pub");
    PathBuf::from(path)
}

/// An ed25519 OpenPGP key in its own `GNUPGHOME`, whose gpg-agent is stopped on drop.
pub struct GpgKey {
    pub home: PathBuf,
    pub fingerprint: String,
    /// The public key as `gpg --armor --export` prints it.
    pub armored: String,
}

impl GpgKey {
    /// Generates a primary key that can sign, for the user ID `<name>@example.org`.
    pub fn generate(directory: &Path, name: &str) -> Self {
        let user_id = format!("Test Person {name} <{name}@example.org>");
        let home = directory.join(format!("gnupg-{name}"));
        fs::create_dir_all(&home).unwrap();
        let mut permissions = fs::metadata(&home).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o700);
        fs::set_permissions(&home, permissions).unwrap();

        gpg(
            &home,
            &[
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                &user_id,
                "ed25519",
                "sign",
                "never",
            ],
        );
        let listing = gpg(&home, &["--with-colons", "--list-keys"]);
        let fingerprint = listing
            .lines()
            .find(|line| line.starts_with("fpr:"))
            .and_then(|line| line.split(':').nth(9))
            .expect("gpg lists the new key's fingerprint")
            .to_owned();
        let armored = gpg(&home, &["--armor", "--export", &fingerprint]);
        Self {
            home,
            fingerprint,
            armored,
        }
    }

    /// Returns the `git -c` settings that sign commits with this key. The `!` suffix makes
    /// gpg use exactly that key. Git must run with `GNUPGHOME` set to [`GpgKey::home`].
    pub fn git_settings(&self) -> Vec<String> {
        vec![
            "gpg.format=openpgp".to_owned(),
            "gpg.program=gpg".to_owned(),
            format!("user.signingkey={}!", self.fingerprint),
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

/// A git repository with branch `main` in a temporary directory, driven by the `git`
/// command line with a fixed identity and no user or system configuration.
pub struct SigningRepo {
    directory: TempDir,
    pub path: PathBuf,
    gnupg_home: Option<PathBuf>,
}

impl SigningRepo {
    pub fn new() -> Self {
        let directory = TempDir::new().unwrap();
        let path = directory.path().join("repository");
        fs::create_dir_all(&path).unwrap();
        let repo = Self {
            directory,
            path,
            gnupg_home: None,
        };
        repo.git(&[], &["init", "--quiet", "--initial-branch=main"]);
        repo
    }

    /// Returns a directory for keys, outside the work tree.
    pub fn key_directory(&self) -> &Path {
        self.directory.path()
    }

    /// Makes git use this key's `GNUPGHOME`, so that it can sign with the key.
    pub fn use_gnupg_home(&mut self, key: &GpgKey) {
        self.gnupg_home = Some(key.home.clone());
    }

    /// Runs `git -c <setting>… <arguments>` in the work tree and returns its output.
    pub fn git(&self, settings: &[String], arguments: &[&str]) -> String {
        self.git_with_input(settings, arguments, b"")
    }

    pub fn git_with_input(&self, settings: &[String], arguments: &[&str], input: &[u8]) -> String {
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
            .env("GIT_COMMITTER_NAME", "Astrid Testesen")
            .env("GIT_COMMITTER_EMAIL", "astrid.testesen@example.org");
        match &self.gnupg_home {
            Some(home) => command.env("GNUPGHOME", home),
            None => command.env_remove("GNUPGHOME"),
        };
        run(command, input)
    }

    pub fn write(&self, path: &str, content: &str) {
        let path = self.path.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    /// Commits everything in the work tree with the given signing settings (none for an
    /// unsigned commit) and returns the commit id.
    pub fn commit(&self, settings: &[String], message: &str) -> String {
        self.git(&[], &["add", "--all"]);
        self.git(settings, &["commit", "--quiet", "--message", message]);
        self.rev_parse("HEAD")
    }

    pub fn rev_parse(&self, revision: &str) -> String {
        self.git(&[], &["rev-parse", revision])
    }

    /// Returns the raw commit object.
    pub fn commit_object(&self, commit: &str) -> String {
        self.git(&[], &["cat-file", "commit", commit]) + "\n"
    }

    /// Writes a commit object as is, without signing it, and returns its id.
    pub fn write_commit_object(&self, object: &str) -> String {
        let arguments = ["hash-object", "-t", "commit", "-w", "--stdin"];
        self.git_with_input(&[], &arguments, object.as_bytes())
    }
}
