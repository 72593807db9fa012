//! A real SMTP server for tests (aiosmtpd through `scripts/smtp-server`) and the certificates
//! that secure mail needs (made with the `openssl` command line through `scripts/smime-certs`).
//!
//! The server listens on 127.0.0.1 only, requires AUTH, and in its default mode requires
//! STARTTLS with a certificate from the test CA. Each accepted message is stored byte for byte
//! in a maildir, and each EHLO, AUTH and MAIL command is logged with the TLS state.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use adgang::directory::Secret;
use adgang::mail::{MailSettings, RetrySettings, TlsMode};

/// The municipality's secure mail address in the tests.
pub const MUNICIPALITY_ADDRESS: &str = "sikkermail@kommune.example.org";
/// SMTP AUTH user of the test server.
pub const SMTP_USER: &str = "adgang";
/// SMTP AUTH password of the test server.
pub const SMTP_PASSWORD: &str = "Smtp-Test-Password-1";

/// A certificate and its private key, as PEM files.
#[derive(Clone, Debug)]
pub struct Identity {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl Identity {
    /// Returns the certificate PEM text.
    pub fn certificate_pem(&self) -> String {
        std::fs::read_to_string(&self.certificate).unwrap()
    }
}

/// A test CA and certificates issued by it, in one folder.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_file: PathBuf,
    /// TLS certificate of the SMTP server, for localhost and 127.0.0.1.
    pub server: Identity,
    /// S/MIME certificate of the municipality.
    pub municipality: Identity,
}

impl Pki {
    /// Makes a CA, the SMTP server certificate and the municipality's certificate in `dir`.
    pub fn create(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        run_certs(&["ca".as_ref(), dir.as_os_str()]);
        run_certs(&["server".as_ref(), dir.as_os_str(), "smtp".as_ref()]);
        let municipality = Self::issue_in(dir, "municipality", MUNICIPALITY_ADDRESS, "valid");
        Self {
            dir: dir.to_owned(),
            ca_file: dir.join("ca.pem"),
            server: Identity {
                certificate: dir.join("smtp.pem"),
                key: dir.join("smtp.key"),
            },
            municipality,
        }
    }

    /// Issues an S/MIME certificate for `address`. `kind` is valid, expired, wrong-eku,
    /// no-encipherment or ec (see `scripts/smime-certs`).
    pub fn issue(&self, name: &str, address: &str, kind: &str) -> Identity {
        Self::issue_in(&self.dir, name, address, kind)
    }

    fn issue_in(dir: &Path, name: &str, address: &str, kind: &str) -> Identity {
        run_certs(&[
            "smime".as_ref(),
            dir.as_os_str(),
            name.as_ref(),
            address.as_ref(),
            kind.as_ref(),
        ]);
        Identity {
            certificate: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// Returns mail settings for a server on `port`, with fast retries for tests.
    pub fn mail_settings(&self, port: u16, tls: TlsMode) -> MailSettings {
        MailSettings {
            host: "127.0.0.1".to_owned(),
            port,
            tls,
            ca_file: self.ca_file.clone(),
            username: SMTP_USER.to_owned(),
            password: Secret::new(SMTP_PASSWORD),
            from: MUNICIPALITY_ADDRESS.to_owned(),
            certificate_file: self.municipality.certificate.clone(),
            key_file: self.municipality.key.clone(),
            timeout: Duration::from_secs(10),
            retry: RetrySettings {
                attempts: 2,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(200),
            },
        }
    }
}

/// How the test server protects connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMode {
    /// STARTTLS required before AUTH and MAIL.
    StartTls,
    /// Implicit TLS from the first byte.
    Tls,
    /// No TLS offered; AUTH accepted in plain text.
    Plain,
}

impl ServerMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::StartTls => "starttls",
            Self::Tls => "tls",
            Self::Plain => "plain",
        }
    }
}

/// A running aiosmtpd server, stopped on drop.
pub struct SmtpServer {
    child: Option<Child>,
    pub port: u16,
    pub maildir: PathBuf,
}

impl SmtpServer {
    /// Starts a server on a free port of 127.0.0.1.
    pub fn start(dir: &Path, pki: &Pki, mode: ServerMode) -> Self {
        Self::start_on(dir, pki, mode, free_port(), 0.0)
    }

    /// Starts a server on `port` that waits `delay_seconds` after storing each message before
    /// it accepts the message.
    pub fn start_on(
        dir: &Path,
        pki: &Pki,
        mode: ServerMode,
        port: u16,
        delay_seconds: f64,
    ) -> Self {
        let maildir = dir.join(format!("maildir-{port}"));
        std::fs::create_dir_all(&maildir).unwrap();
        let password_file = dir.join("smtp-password");
        std::fs::write(&password_file, format!("{SMTP_PASSWORD}\n")).unwrap();

        let mut child = Command::new(script("smtp-server"))
            .arg("run")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--cert")
            .arg(&pki.server.certificate)
            .arg("--key")
            .arg(&pki.server.key)
            .arg("--maildir")
            .arg(&maildir)
            .args(["--user", SMTP_USER])
            .arg("--password-file")
            .arg(&password_file)
            .args(["--mode", mode.as_str()])
            .args(["--delay", &delay_seconds.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("failed to run scripts/smtp-server");

        // The server prints one line once it accepts connections, or exits on error.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("ready"),
            "the SMTP server did not start: {line:?}, exit {:?}",
            child.try_wait()
        );
        Self {
            child: Some(child),
            port,
            maildir,
        }
    }

    /// Returns the stored messages, oldest first.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.maildir.join("new"))
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        paths.sort();
        paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    /// Returns the command log: one `EHLO`, `AUTH` or `MAIL` line with `tls=True|False` each.
    pub fn commands(&self) -> String {
        std::fs::read_to_string(self.maildir.join("commands.log")).unwrap_or_default()
    }

    /// Stops the server; the maildir stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            for _ in 0..50 {
                if child.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Returns a port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Decrypts an S/MIME message with `openssl cms -decrypt` and returns the inner entity.
pub fn decrypt(message: &[u8], recipient: &Identity) -> Result<Vec<u8>, String> {
    let mut command = Command::new("openssl");
    command
        .args(["cms", "-decrypt", "-binary", "-recip"])
        .arg(&recipient.certificate)
        .arg("-inkey")
        .arg(&recipient.key);
    run_with_input(command, message)
}

/// Verifies a signed S/MIME entity against `ca_file` with `openssl cms -verify` and returns
/// the signed content.
pub fn verify(signed: &[u8], ca_file: &Path) -> Result<Vec<u8>, String> {
    let mut command = Command::new("openssl");
    command
        .args(["cms", "-verify", "-binary", "-CAfile"])
        .arg(ca_file);
    run_with_input(command, signed)
}

fn run_with_input(mut command: Command, input: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

fn run_certs(args: &[&std::ffi::OsStr]) {
    let output = Command::new(script("smime-certs"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/smime-certs {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
