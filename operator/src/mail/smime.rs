//! Building, signing and encrypting the S/MIME entity with OpenSSL's CMS functions.
//!
//! The layers, from the inside out: a `multipart/mixed` entity with the text and the
//! attachments, in canonical form (CRLF line endings); CMS SignedData with that entity as
//! its content (opaque signing, `smime-type=signed-data`), carrying the signer certificate;
//! CMS EnvelopedData with AES-256-CBC, readable with the recipient's key or the municipality's
//! (`smime-type=enveloped-data`).

use std::path::Path;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment as MimeAttachment, Body, MultiPart, SinglePart};
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::X509;

use super::certificate::first_reason;
use super::{MailError, OutgoingMail};

/// Length of a base64 line: MIME allows at most 76 characters.
const BASE64_LINE: usize = 76;

pub(super) fn read_certificate(path: &Path) -> Result<X509, MailError> {
    let pem = std::fs::read(path).map_err(|source| MailError::ReadFile {
        file_kind: "certificate (mail.certificateFile)",
        path: path.to_owned(),
        source,
    })?;
    X509::from_pem(&pem).map_err(|e| MailError::InvalidFile {
        file_kind: "certificate (mail.certificateFile)",
        path: path.to_owned(),
        message: format!("not a PEM certificate: {}", first_reason(&e)),
    })
}

pub(super) fn read_key(path: &Path) -> Result<PKey<Private>, MailError> {
    let pem = std::fs::read(path).map_err(|source| MailError::ReadFile {
        file_kind: "private key (mail.keyFile)",
        path: path.to_owned(),
        source,
    })?;
    PKey::private_key_from_pem(&pem).map_err(|e| MailError::InvalidFile {
        file_kind: "private key (mail.keyFile)",
        path: path.to_owned(),
        message: format!("not an unencrypted PEM private key: {}", first_reason(&e)),
    })
}

/// Builds the `multipart/mixed` entity of the text and attachments, with CRLF line endings.
pub(super) fn build_entity(mail: &OutgoingMail) -> Result<Vec<u8>, MailError> {
    let build_error = |message: String| MailError::Build {
        to: mail.to.clone(),
        message,
    };
    let mut multipart = MultiPart::mixed().singlepart(SinglePart::plain(to_crlf(&mail.text)));
    for attachment in &mail.attachments {
        let content_type = ContentType::parse(&attachment.content_type).map_err(|e| {
            build_error(format!(
                "attachment {}: invalid content type {:?}: {e}",
                attachment.filename, attachment.content_type
            ))
        })?;
        // Base64 keeps the attachment's bytes exact, because the canonical form of a text
        // part would otherwise turn its LF line endings into CRLF.
        let body =
            Body::new_with_encoding(attachment.content.clone(), ContentTransferEncoding::Base64)
                .map_err(|_| {
                    build_error(format!("attachment {}: base64 failed", attachment.filename))
                })?;
        multipart = multipart
            .singlepart(MimeAttachment::new(attachment.filename.clone()).body(body, content_type));
    }
    Ok(canonical_line_endings(&multipart.formatted()))
}

/// Signs `entity` (opaque SignedData) and returns the `application/pkcs7-mime` entity.
pub(super) fn sign(
    entity: &[u8],
    certificate: &X509,
    key: &PKey<Private>,
    to: &str,
) -> Result<Vec<u8>, MailError> {
    let cms = CmsContentInfo::sign(
        Some(certificate),
        Some(key),
        None,
        Some(entity),
        CMSOptions::BINARY,
    )
    .and_then(|cms| cms.to_der())
    .map_err(|e| MailError::Build {
        to: to.to_owned(),
        message: format!("failed to sign: {}", first_reason(&e)),
    })?;
    Ok(pkcs7_entity("signed-data", &cms))
}

/// Encrypts `entity` to every certificate in `recipients` and returns the DER EnvelopedData.
pub(super) fn encrypt(entity: &[u8], recipients: &[&X509], to: &str) -> Result<Vec<u8>, MailError> {
    let error = |e: openssl::error::ErrorStack| MailError::Build {
        to: to.to_owned(),
        message: format!("failed to encrypt: {}", first_reason(&e)),
    };
    let mut stack = Stack::new().map_err(error)?;
    for certificate in recipients {
        stack.push((*certificate).clone()).map_err(error)?;
    }
    CmsContentInfo::encrypt(&stack, entity, Cipher::aes_256_cbc(), CMSOptions::BINARY)
        .and_then(|cms| cms.to_der())
        .map_err(error)
}

/// Wraps DER CMS in an `application/pkcs7-mime` MIME entity, base64 encoded.
fn pkcs7_entity(smime_type: &str, der: &[u8]) -> Vec<u8> {
    let mut entity = format!(
        "Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"smime.p7m\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n"
    );
    entity.push_str(&base64_lines(der));
    entity.into_bytes()
}

/// Encodes `bytes` as base64 in lines of 76 characters, each ended by CRLF.
pub(super) fn base64_lines(bytes: &[u8]) -> String {
    let encoded = openssl::base64::encode_block(bytes);
    let mut text = String::with_capacity(encoded.len() + encoded.len() / BASE64_LINE * 2 + 2);
    for line in encoded.as_bytes().chunks(BASE64_LINE) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push_str("\r\n");
    }
    text
}

fn to_crlf(text: &str) -> String {
    String::from_utf8(canonical_line_endings(text.as_bytes())).expect("only ASCII bytes are added")
}

/// Replaces every bare LF (and bare CR) with CRLF, the canonical form that a signature covers.
fn canonical_line_endings(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 40);
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\r' if bytes.get(index + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                index += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            byte => out.push(byte),
        }
        index += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_become_crlf() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"a\nb", b"a\r\nb"),
            (b"a\r\nb\r\n", b"a\r\nb\r\n"),
            (b"a\rb", b"a\r\nb"),
            (b"\n\n", b"\r\n\r\n"),
        ];
        for (input, expected) in cases {
            assert_eq!(canonical_line_endings(input), expected, "{input:?}");
        }
    }

    #[test]
    fn entity_has_only_crlf_line_endings() {
        let mail = OutgoingMail {
            to: "sikker@omsorg-nord.example.org".to_owned(),
            recipient_certificate: String::new(),
            subject: "Test".to_owned(),
            text: "Første linje\nAnden linje\n".to_owned(),
            attachments: vec![super::super::Attachment {
                filename: "liste.csv".to_owned(),
                content_type: "text/csv; charset=utf-8".to_owned(),
                content: b"a;b\n1;2\n".to_vec(),
            }],
        };
        let entity = build_entity(&mail).unwrap();
        for (index, byte) in entity.iter().enumerate() {
            if *byte == b'\n' {
                assert_eq!(entity[index - 1], b'\r', "bare LF at byte {index}");
            }
        }
        let text = String::from_utf8_lossy(&entity);
        assert!(text.contains("multipart/mixed"), "{text}");
        assert!(text.contains("liste.csv"), "{text}");
    }

    #[test]
    fn base64_lines_are_76_wide() {
        let text = base64_lines(&[7u8; 200]);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0].len(), 76);
        assert_eq!(lines.last(), Some(&""));
    }
}
