//! Checks of S/MIME certificates before they are used.
//!
//! A recipient certificate must be valid now, permit key encipherment (or key agreement for
//! an EC key) when it has a keyUsage extension, list emailProtection in its
//! extendedKeyUsage, and name the recipient's address as an rfc822Name in its
//! subjectAltName. The chain to a CA is not checked here: the municipality enters each
//! supplier's certificate in `supplier.yaml` after checking it, and a reviewer signs that
//! change.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use openssl::x509::X509;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

/// A problem of a certificate. The message completes a sentence that names the certificate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateProblem {
    /// The text is not a PEM certificate.
    #[error("is not a PEM certificate: {0}")]
    Unreadable(String),
    /// The validity window starts after now.
    #[error("is not valid yet: notBefore is {0}")]
    NotYetValid(DateTime<Utc>),
    /// The validity window ended before now.
    #[error("has expired: notAfter was {0}; ask the owner for a renewed certificate")]
    Expired(DateTime<Utc>),
    /// The keyUsage extension does not permit encrypting a content key to this certificate.
    #[error(
        "does not permit encryption: keyUsage lacks {0}; the certificate must be issued for \
         encryption"
    )]
    NoEncryptionKeyUsage(&'static str),
    /// The keyUsage extension does not permit signing.
    #[error("does not permit signing: keyUsage lacks digitalSignature")]
    NoSigningKeyUsage,
    /// The certificate is not issued for secure mail.
    #[error("is not issued for secure mail: extendedKeyUsage lacks emailProtection")]
    NoEmailProtection,
    /// The subjectAltName extension does not name the address.
    #[error("is not issued for {address}: its subjectAltName rfc822Name addresses are [{names}]")]
    AddressMismatch { address: String, names: String },
    /// An extension could not be decoded.
    #[error("has an invalid {extension} extension: {message}")]
    InvalidExtension {
        extension: &'static str,
        message: String,
    },
}

/// Parses a recipient certificate and checks it for encrypting mail to `address` at `now`.
pub fn check_recipient(
    pem: &str,
    address: &str,
    now: DateTime<Utc>,
) -> Result<X509, CertificateProblem> {
    let certificate = X509::from_pem(pem.trim().as_bytes())
        .map_err(|e| CertificateProblem::Unreadable(first_reason(&e)))?;
    let der = to_der(&certificate)?;
    let parsed = parse_der(&der)?;

    check_validity(&parsed, now)?;
    check_encryption_usage(&parsed)?;
    check_email_protection(&parsed)?;
    check_address(&parsed, address)?;
    Ok(certificate)
}

fn to_der(certificate: &X509) -> Result<Vec<u8>, CertificateProblem> {
    certificate
        .to_der()
        .map_err(|e| CertificateProblem::Unreadable(first_reason(&e)))
}

/// Decodes the certificate with x509-parser, which the validity and extension checks read.
fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, CertificateProblem> {
    let (_, parsed) = X509Certificate::from_der(der)
        .map_err(|e| CertificateProblem::Unreadable(e.to_string()))?;
    Ok(parsed)
}

/// Checks the municipality's own certificate: valid at `now`, usable both for signing and for
/// receiving the encrypted copy of each message, and issued for `from`, the sender address.
pub fn check_own(
    certificate: &X509,
    from: &str,
    now: DateTime<Utc>,
) -> Result<(), CertificateProblem> {
    let der = to_der(certificate)?;
    let parsed = parse_der(&der)?;

    check_validity(&parsed, now)?;
    let usage = parsed
        .key_usage()
        .map_err(|e| invalid_extension("keyUsage", e))?;
    if let Some(usage) = usage
        && !usage.value.digital_signature()
    {
        return Err(CertificateProblem::NoSigningKeyUsage);
    }
    check_encryption_usage(&parsed)?;
    check_email_protection(&parsed)?;
    // A recipient checks that the signer's certificate names the From address.
    check_address(&parsed, from)
}

fn check_validity(
    parsed: &X509Certificate<'_>,
    now: DateTime<Utc>,
) -> Result<(), CertificateProblem> {
    let not_before = to_utc(parsed.validity().not_before.timestamp());
    let not_after = to_utc(parsed.validity().not_after.timestamp());
    if now < not_before {
        return Err(CertificateProblem::NotYetValid(not_before));
    }
    if now > not_after {
        return Err(CertificateProblem::Expired(not_after));
    }
    Ok(())
}

/// Checks keyUsage for encryption. An RSA key receives the content key by key transport
/// (keyEncipherment). An EC key receives it by key agreement (keyAgreement), as for ECDH.
fn check_encryption_usage(parsed: &X509Certificate<'_>) -> Result<(), CertificateProblem> {
    let usage = parsed
        .key_usage()
        .map_err(|e| invalid_extension("keyUsage", e))?;
    let Some(usage) = usage else {
        return Ok(());
    };
    let is_ec = matches!(parsed.public_key().parsed(), Ok(PublicKey::EC(_)));
    if is_ec {
        if !usage.value.key_agreement() {
            return Err(CertificateProblem::NoEncryptionKeyUsage("keyAgreement"));
        }
    } else if !usage.value.key_encipherment() {
        return Err(CertificateProblem::NoEncryptionKeyUsage("keyEncipherment"));
    }
    Ok(())
}

fn check_email_protection(parsed: &X509Certificate<'_>) -> Result<(), CertificateProblem> {
    let usage = parsed
        .extended_key_usage()
        .map_err(|e| invalid_extension("extendedKeyUsage", e))?;
    match usage {
        Some(usage) if usage.value.email_protection => Ok(()),
        _ => Err(CertificateProblem::NoEmailProtection),
    }
}

fn check_address(parsed: &X509Certificate<'_>, address: &str) -> Result<(), CertificateProblem> {
    let names = parsed
        .subject_alternative_name()
        .map_err(|e| invalid_extension("subjectAltName", e))?;
    let addresses: Vec<&str> = names
        .map(|names| {
            names
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::RFC822Name(mail) => Some(*mail),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if addresses
        .iter()
        .any(|a| a.eq_ignore_ascii_case(address.trim()))
    {
        Ok(())
    } else {
        Err(CertificateProblem::AddressMismatch {
            address: address.to_owned(),
            names: addresses.join(", "),
        })
    }
}

fn to_utc(timestamp: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(timestamp, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn invalid_extension(extension: &'static str, error: impl fmt::Display) -> CertificateProblem {
    CertificateProblem::InvalidExtension {
        extension,
        message: error.to_string(),
    }
}

/// Returns OpenSSL's first reason string, which is shorter than the whole error stack.
pub(crate) fn first_reason(error: &openssl::error::ErrorStack) -> String {
    error
        .errors()
        .first()
        .and_then(|e| e.reason().map(str::to_owned))
        .unwrap_or_else(|| error.to_string())
}
