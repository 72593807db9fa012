//! The SMTP side: the TLS-only transport, the outer message and retries.

use lettre::message::header::{ContentDisposition, ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tracing::warn;

use super::{MailError, MailSettings, OutgoingMail, RetrySettings, TlsMode};

const ENVELOPED_CONTENT_TYPE: &str =
    "application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"";

/// An SMTP transport that always uses TLS, verified against the configured CA file only.
pub(super) struct Transport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    host: String,
    port: u16,
}

impl Transport {
    pub(super) fn new(settings: &MailSettings) -> Result<Self, MailError> {
        let error = |message: String| MailError::Transport {
            host: settings.host.clone(),
            port: settings.port,
            message,
        };
        let ca = std::fs::read(&settings.ca_file).map_err(|e| {
            error(format!(
                "failed to read mail.smtp.caFile {}: {e}",
                settings.ca_file.display()
            ))
        })?;
        let ca = Certificate::from_pem(&ca).map_err(|e| {
            error(format!(
                "mail.smtp.caFile {} is not a PEM certificate: {e}",
                settings.ca_file.display()
            ))
        })?;
        // Only the configured CA is trusted: no system or bundled roots.
        let parameters = TlsParameters::builder(settings.host.clone())
            .certificate_store(CertificateStore::None)
            .add_root_certificate(ca)
            .build_rustls()
            .map_err(|e| error(error_chain(&e)))?;

        let builder = match settings.tls {
            TlsMode::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
                    .map_err(|e| error(error_chain(&e)))?
                    .tls(Tls::Required(parameters))
            }
            TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host)
                .map_err(|e| error(error_chain(&e)))?
                .tls(Tls::Wrapper(parameters)),
        };
        let inner = builder
            .port(settings.port)
            .credentials(Credentials::new(
                settings.username.clone(),
                settings.password.expose().to_owned(),
            ))
            .timeout(Some(settings.timeout))
            .build();
        Ok(Self {
            inner,
            host: settings.host.clone(),
            port: settings.port,
        })
    }

    /// Sends `message`, retrying transient failures (connection errors, timeouts, 4xx replies)
    /// with exponential backoff. Permanent failures are not retried: see [`is_permanent`].
    pub(super) async fn send_with_retry(
        &self,
        message: &Message,
        to: &str,
        retry: &RetrySettings,
    ) -> Result<(), MailError> {
        let attempts = retry.attempts.max(1);
        let mut backoff = retry.initial_backoff;
        let mut attempt = 1;
        loop {
            let error = match self.inner.send(message.clone()).await {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            let message = error_chain(&error);
            if is_permanent(&error) || attempt >= attempts {
                return Err(MailError::Send {
                    to: to.to_owned(),
                    host: self.host.clone(),
                    port: self.port,
                    attempts: attempt,
                    message,
                });
            }
            warn!(
                to,
                attempt,
                attempts,
                retry_in_ms = backoff.as_millis() as u64,
                error = %message,
                "sending mail failed; retrying"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(retry.max_backoff);
            attempt += 1;
        }
    }
}

/// Tells whether a send failure would fail again unchanged. These are a 5xx reply such as a
/// rejected login, a server that offers no STARTTLS or no usable AUTH mechanism, which lettre
/// reports as client errors, and a failed TLS handshake such as an untrusted certificate.
fn is_permanent(error: &lettre::transport::smtp::Error) -> bool {
    error.is_permanent() || error.is_client() || error.is_tls() || has_rustls_error(error)
}

/// Tells whether a rustls error is in the chain. lettre reports a failed handshake as a
/// connection error whose cause is an `io::Error` wrapping the `rustls::Error`, and
/// `io::Error::source` skips that wrapped error, so each `io::Error` is opened with `get_ref`.
fn has_rustls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(cause) = current {
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        let wrapped = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        if wrapped.is_some_and(|inner| has_rustls_error(inner)) {
            return true;
        }
        current = cause.source();
    }
    false
}

/// Parses a mail address, naming `field` when it is invalid.
pub(super) fn parse_address(field: &'static str, address: &str) -> Result<Address, MailError> {
    address
        .trim()
        .parse::<Address>()
        .map_err(|e| MailError::InvalidAddress {
            field,
            address: address.to_owned(),
            message: e.to_string(),
        })
}

/// Builds the message that goes over the wire: the headers and the EnvelopedData, base64.
pub(super) fn outer_message(
    from: &str,
    to: &Address,
    mail: &OutgoingMail,
    enveloped_der: Vec<u8>,
) -> Result<Message, MailError> {
    let build_error = |message: String| MailError::Build {
        to: mail.to.clone(),
        message,
    };
    let from = parse_address("mail.from", from)?;
    let body = Body::new_with_encoding(enveloped_der, ContentTransferEncoding::Base64)
        .map_err(|_| build_error("failed to encode the message as base64".to_owned()))?;
    let content_type = ContentType::parse(ENVELOPED_CONTENT_TYPE)
        .map_err(|e| build_error(format!("invalid content type: {e}")))?;
    let part = SinglePart::builder()
        .header(content_type)
        .header(ContentDisposition::attachment("smime.p7m"))
        .body(body);
    // The domain of the sender keeps the Message-ID unique without the host name.
    let message_id = format!(
        "<{}@{}>",
        hex::encode(rand::random::<[u8; 16]>()),
        from.domain()
    );
    Message::builder()
        .message_id(Some(message_id))
        .from(Mailbox::new(None, from))
        .to(Mailbox::new(None, to.clone()))
        .subject(mail.subject.clone())
        .singlepart(part)
        .map_err(|e| build_error(e.to_string()))
}

/// Joins an error and its sources, because lettre's own message omits the cause.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
