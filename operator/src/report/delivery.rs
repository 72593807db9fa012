//! Delivery of the overview and reminder mails by S/MIME to each supplier's secure mail
//! address, through the [`Mailer`].

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::desired::DesiredState;
use crate::mail::{Attachment, Mailer, OutgoingMail};
use crate::schedule::MailSender;
use crate::templates::MailContent;

/// A supplier's secure mail address and the S/MIME certificate to encrypt to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    /// PEM of `spec.secureMailCertificate`; `None` when the supplier has none.
    pub certificate: Option<String>,
}

/// Returns the recipient of every supplier with a valid `supplier.yaml`, by supplier id.
pub fn recipients(desired: &DesiredState) -> BTreeMap<String, Recipient> {
    desired
        .suppliers
        .iter()
        .filter_map(|(id, supplier)| {
            let spec = supplier.spec.as_ref()?;
            let certificate = spec
                .secure_mail_certificate
                .clone()
                .filter(|pem| !pem.trim().is_empty());
            let recipient = Recipient {
                address: spec.secure_mail.clone(),
                certificate,
            };
            Some((id.clone(), recipient))
        })
        .collect()
}

/// Sends mails to suppliers by S/MIME: signed by the municipality, encrypted to the
/// supplier's certificate.
pub struct SecureMailSender {
    mailer: Arc<Mailer>,
    recipients: BTreeMap<String, Recipient>,
}

impl SecureMailSender {
    /// Creates a sender for the suppliers in `recipients`.
    pub fn new(mailer: Arc<Mailer>, recipients: BTreeMap<String, Recipient>) -> Self {
        Self { mailer, recipients }
    }

    /// Builds the message to `supplier`, or explains why it has no usable recipient.
    pub fn compose(&self, supplier: &str, content: &MailContent) -> Result<OutgoingMail, String> {
        let recipient = self.recipients.get(supplier).ok_or_else(|| {
            format!("supplier {supplier} has no valid supplier.yaml, so it has no mail address")
        })?;
        let certificate = recipient.certificate.clone().ok_or_else(|| {
            format!(
                "supplier {supplier} has no spec.secureMailCertificate in \
                 suppliers/{supplier}/supplier.yaml; add the PEM of the S/MIME certificate of {}",
                recipient.address
            )
        })?;
        Ok(OutgoingMail {
            to: recipient.address.clone(),
            recipient_certificate: certificate,
            subject: content.subject.clone(),
            text: content.text.clone(),
            attachments: content
                .attachments
                .iter()
                .map(|a| Attachment {
                    filename: a.filename.clone(),
                    content_type: a.content_type.clone(),
                    content: a.content.clone(),
                })
                .collect(),
        })
    }
}

impl MailSender for SecureMailSender {
    async fn send(&self, supplier: &str, content: &MailContent) -> Result<(), String> {
        let mail = self.compose(supplier, content)?;
        self.mailer.send(&mail).await.map_err(|e| e.to_string())
    }
}
