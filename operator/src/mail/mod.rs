//! Secure mail: S/MIME signed and encrypted messages sent over SMTP with TLS.
//!
//! Every message is signed with the municipality's certificate and key, then encrypted to the
//! recipient's certificate and to the municipality's own certificate, so the municipality can
//! read what it sent. [`Mailer::send`] builds no other kind of message: no setting sends a
//! message unsigned, unencrypted, or over a connection without TLS.
//!
//! The recipient certificate is checked before each message is built (see
//! [`certificate::check_recipient`]); the municipality's certificate and key are checked when
//! the [`Mailer`] is built.

pub mod certificate;
mod smime;
mod smtp;

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use tracing::{info, warn};

use crate::directory::Secret;
use crate::server::metrics::{MailFailureKind, Metrics};

pub use certificate::CertificateProblem;

/// A file attached to an [`OutgoingMail`].
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// File name shown to the recipient, such as `oversigt-2027-01.csv`.
    pub filename: String,
    /// MIME type, such as `text/csv; charset=utf-8`.
    pub content_type: String,
    pub content: Vec<u8>,
}

/// One message to a supplier's secure mail address. Its `Debug` output leaves out the text
/// and the attachments' content, because they may contain a password.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// The supplier's secure mail address.
    pub to: String,
    /// PEM of the supplier's S/MIME certificate.
    pub recipient_certificate: String,
    /// Subject line. It travels outside the encryption, so it must hold nothing confidential.
    pub subject: String,
    /// Plain-text body, UTF-8.
    pub text: String,
    pub attachments: Vec<Attachment>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("content", &format_args!("[{} bytes]", self.content.len()))
            .finish()
    }
}

impl std::fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let attachments: Vec<&str> = self
            .attachments
            .iter()
            .map(|a| a.filename.as_str())
            .collect();
        f.debug_struct("OutgoingMail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("text", &format_args!("[{} bytes]", self.text.len()))
            .field("attachments", &attachments)
            .finish_non_exhaustive()
    }
}

/// Protection of the SMTP connection. Both modes verify the server certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, usually on port 587. A server that does not
    /// offer STARTTLS is an error.
    StartTls,
    /// TLS from the first byte (implicit TLS), usually on port 465.
    Tls,
}

/// Retries of a failed send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySettings {
    /// Attempts in all, including the first; at least 1.
    pub attempts: u32,
    /// Wait before the second attempt; each later wait doubles.
    pub initial_backoff: Duration,
    /// Upper bound of a single wait.
    pub max_backoff: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// The settings of the `mail:` section of the configuration, with paths resolved.
#[derive(Clone, Debug)]
pub struct MailSettings {
    /// SMTP server host name or IP address; the server certificate must name it.
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// PEM file of the CA certificates that the SMTP server certificate must chain to.
    pub ca_file: PathBuf,
    /// SMTP AUTH user name.
    pub username: String,
    /// SMTP AUTH password.
    pub password: Secret,
    /// Sender address (`From`), the municipality's secure mail address.
    pub from: String,
    /// PEM file of the municipality's S/MIME certificate.
    pub certificate_file: PathBuf,
    /// PEM file of the private key of `certificate_file`.
    pub key_file: PathBuf,
    /// Timeout of each SMTP command.
    pub timeout: Duration,
    pub retry: RetrySettings,
}

/// A message that was not sent, or a mailer that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A certificate or key file of the municipality could not be read.
    #[error("failed to read {file_kind} {path}: {source}")]
    ReadFile {
        file_kind: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A certificate or key file of the municipality is not valid PEM of the expected kind.
    #[error("invalid {file_kind} {path}: {message}")]
    InvalidFile {
        file_kind: &'static str,
        path: PathBuf,
        message: String,
    },
    /// The municipality's private key does not belong to its certificate.
    #[error(
        "the private key {key} does not match the certificate {certificate}; set \
         mail.keyFile to the key of mail.certificateFile"
    )]
    KeyMismatch { certificate: PathBuf, key: PathBuf },
    /// The municipality's own certificate cannot sign or receive secure mail.
    #[error("the municipality certificate {path} (mail.certificateFile) {problem}")]
    OwnCertificate {
        path: PathBuf,
        problem: CertificateProblem,
    },
    /// The municipality's certificate is issued for another address than the sender address.
    #[error(
        "the municipality certificate {path} (mail.certificateFile) is issued for [{names}], \
         not for the sender address {from} (mail.from); set mail.from to the certificate's \
         address or use a certificate issued for {from}"
    )]
    FromMismatch {
        path: PathBuf,
        from: String,
        names: String,
    },
    /// The recipient's certificate cannot be used for this message.
    #[error("the S/MIME certificate for {to} (secureMailCertificate) {problem}")]
    RecipientCertificate {
        to: String,
        problem: CertificateProblem,
    },
    /// An address is not a valid mail address.
    #[error("invalid mail address {address:?} in {field}: {message}")]
    InvalidAddress {
        field: &'static str,
        address: String,
        message: String,
    },
    /// The message could not be built, signed or encrypted.
    #[error("failed to build the message to {to}: {message}")]
    Build { to: String, message: String },
    /// The SMTP transport could not be set up, for example because the CA file is unusable.
    #[error("failed to set up the SMTP connection to {host}:{port}: {message}")]
    Transport {
        host: String,
        port: u16,
        message: String,
    },
    /// The SMTP server did not accept the message, after every attempt.
    #[error(
        "failed to send the message to {to} through {host}:{port} after {attempts} \
         attempt(s): {message}"
    )]
    Send {
        to: String,
        host: String,
        port: u16,
        attempts: u32,
        message: String,
    },
}

impl MailError {
    fn failure_kind(&self) -> MailFailureKind {
        match self {
            Self::RecipientCertificate { .. } | Self::InvalidAddress { .. } => {
                MailFailureKind::Recipient
            }
            Self::Send { .. } | Self::Transport { .. } => MailFailureKind::Smtp,
            _ => MailFailureKind::Build,
        }
    }
}

/// Sends S/MIME signed and encrypted mail. Built once per run from the configuration.
pub struct Mailer {
    settings: MailSettings,
    certificate: X509,
    key: PKey<Private>,
    transport: smtp::Transport,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("host", &self.settings.host)
            .field("port", &self.settings.port)
            .field("from", &self.settings.from)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Reads the municipality's certificate and key, checks that they match and that the
    /// certificate is usable now, and sets up the SMTP transport. Connects to nothing yet.
    pub fn from_config(settings: &MailSettings) -> Result<Self, MailError> {
        let certificate = smime::read_certificate(&settings.certificate_file)?;
        let key = smime::read_key(&settings.key_file)?;
        let public = certificate
            .public_key()
            .map_err(|e| MailError::InvalidFile {
                file_kind: "certificate (mail.certificateFile)",
                path: settings.certificate_file.clone(),
                message: e.to_string(),
            })?;
        if !public.public_eq(&key) {
            return Err(MailError::KeyMismatch {
                certificate: settings.certificate_file.clone(),
                key: settings.key_file.clone(),
            });
        }
        smtp::parse_address("mail.from", &settings.from)?;
        certificate::check_own(&certificate, &settings.from, Utc::now()).map_err(|problem| {
            match problem {
                CertificateProblem::AddressMismatch { names, .. } => MailError::FromMismatch {
                    path: settings.certificate_file.clone(),
                    from: settings.from.clone(),
                    names,
                },
                problem => MailError::OwnCertificate {
                    path: settings.certificate_file.clone(),
                    problem,
                },
            }
        })?;
        let transport = smtp::Transport::new(settings)?;
        Ok(Self {
            settings: settings.clone(),
            certificate,
            key,
            transport,
            metrics: None,
        })
    }

    /// Counts sent messages and failures in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Returns the sender address.
    pub fn from_address(&self) -> &str {
        &self.settings.from
    }

    /// Checks the recipient certificate and address of `mail` without sending anything, so a
    /// caller can find a certificate problem before it changes anything.
    pub fn check_recipient(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        certificate::check_recipient(&mail.recipient_certificate, &mail.to, Utc::now()).map_err(
            |problem| MailError::RecipientCertificate {
                to: mail.to.clone(),
                problem,
            },
        )?;
        smtp::parse_address("to", &mail.to)?;
        Ok(())
    }

    /// Checks the recipient certificate, signs and encrypts the message, and sends it,
    /// retrying with backoff. Returns `Ok` only once the SMTP server accepted the message.
    pub async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let result = self.try_send(mail).await;
        if let Some(metrics) = &self.metrics {
            match &result {
                Ok(()) => metrics.record_mail_sent(),
                Err(e) => metrics.record_mail_failure(e.failure_kind()),
            }
        }
        match &result {
            Ok(()) => info!(to = %mail.to, "sent secure mail"),
            Err(e) => warn!(to = %mail.to, error = %e, "secure mail not sent"),
        }
        result
    }

    async fn try_send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let recipient =
            certificate::check_recipient(&mail.recipient_certificate, &mail.to, Utc::now())
                .map_err(|problem| MailError::RecipientCertificate {
                    to: mail.to.clone(),
                    problem,
                })?;
        let envelope_to = smtp::parse_address("to", &mail.to)?;
        let entity = smime::build_entity(mail)?;
        let signed = smime::sign(&entity, &self.certificate, &self.key, &mail.to)?;
        let encrypted = smime::encrypt(&signed, &[&recipient, &self.certificate], &mail.to)?;
        let message = smtp::outer_message(&self.settings.from, &envelope_to, mail, encrypted)?;
        self.transport
            .send_with_retry(&message, &mail.to, &self.settings.retry)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaves_out_text() {
        let mail = OutgoingMail {
            to: "sikker-post@omsorg-nord.example.org".to_owned(),
            recipient_certificate: String::new(),
            subject: "Ny brugerkonto".to_owned(),
            text: "Midlertidig adgangskode: Xy7-secret".to_owned(),
            attachments: vec![Attachment {
                filename: "a.txt".to_owned(),
                content_type: "text/plain".to_owned(),
                content: b"Xy7-secret".to_vec(),
            }],
        };
        let debug = format!("{mail:?}");
        assert!(!debug.contains("Xy7-secret"), "{debug}");
        assert!(debug.contains("a.txt"), "{debug}");
        let attachment = format!("{:?}", mail.attachments[0]);
        assert!(!attachment.contains("Xy7"), "{attachment}");
    }
}
