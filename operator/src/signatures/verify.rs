//! Cryptographic verification of one commit signature against a list of candidate keys.

use chrono::{DateTime, Utc};
use pgp::composed::{Deserializable, DetachedSignature};
use pgp::packet::SignatureType;
use pgp::types::{KeyDetails, VerifyingKey};
use ssh_key::{HashAlg, SshSig};

use super::commit::{Signature, SignatureFormat};
use super::error::SignatureError;
use super::key::{KeyMaterial, PublicKey};

/// SSHSIG namespace that git uses for commit and tag signatures.
const GIT_NAMESPACE: &str = "git";

/// A signature that verified, and the candidate key that verified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Position of the key among the candidates, counted from 0.
    pub key_index: usize,
    /// Fingerprint of the key, as [`PublicKey::fingerprint`] returns it. For an OpenPGP key
    /// this is the primary key even when a signing subkey made the signature.
    pub key_fingerprint: String,
    /// Format of the signature.
    pub format: SignatureFormat,
    /// Signature creation time, present in OpenPGP signatures only because SSHSIG has none.
    pub signed_at: Option<DateTime<Utc>>,
}

/// Verifies a commit signature against candidate keys and returns the first key that
/// verifies it.
///
/// The key is picked by what the signature names: the embedded public key of an SSHSIG, or
/// the issuer fingerprint or key ID of an OpenPGP signature. A signature that names a
/// candidate key but does not verify with it is a [`SignatureError::BadSignature`], and one
/// that names no candidate is a [`SignatureError::UnknownKey`].
pub fn verify<'k>(
    signature: &Signature,
    candidates: impl IntoIterator<Item = &'k PublicKey>,
) -> Result<Verified, SignatureError> {
    match signature.format() {
        SignatureFormat::Ssh => verify_ssh(signature, candidates),
        SignatureFormat::OpenPgp => verify_openpgp(signature, candidates),
    }
}

fn verify_ssh<'k>(
    signature: &Signature,
    candidates: impl IntoIterator<Item = &'k PublicKey>,
) -> Result<Verified, SignatureError> {
    let commit = signature.commit();
    let sshsig = SshSig::from_pem(signature.armor())
        .map_err(|source| SignatureError::MalformedSsh { commit, source })?;

    if sshsig.namespace() != GIT_NAMESPACE {
        return Err(SignatureError::WrongNamespace {
            commit,
            namespace: sshsig.namespace().to_owned(),
        });
    }

    let mut tried = 0;
    for (index, key) in candidates.into_iter().enumerate() {
        tried += 1;
        let KeyMaterial::Ssh(public_key) = key.material() else {
            continue;
        };
        if public_key.key_data() != sshsig.public_key() {
            continue;
        }

        return match public_key.verify(GIT_NAMESPACE, signature.signed_data(), &sshsig) {
            Ok(()) => Ok(Verified {
                key_index: index,
                key_fingerprint: key.fingerprint().to_owned(),
                format: SignatureFormat::Ssh,
                signed_at: None,
            }),
            Err(error) => Err(SignatureError::BadSignature {
                commit,
                format: SignatureFormat::Ssh,
                fingerprint: key.fingerprint().to_owned(),
                reason: format!("SSHSIG verification failed ({error})"),
            }),
        };
    }

    Err(SignatureError::UnknownKey {
        commit,
        format: SignatureFormat::Ssh,
        issuer: ssh_key::Fingerprint::new(HashAlg::Sha256, sshsig.public_key()).to_string(),
        candidates: tried,
    })
}

fn verify_openpgp<'k>(
    signature: &Signature,
    candidates: impl IntoIterator<Item = &'k PublicKey>,
) -> Result<Verified, SignatureError> {
    let commit = signature.commit();
    let (detached, _headers) =
        DetachedSignature::from_string(signature.armor()).map_err(|source| {
            SignatureError::MalformedOpenPgp {
                commit,
                source: Box::new(source),
            }
        })?;
    let packet = &detached.signature;

    match packet.typ() {
        Some(SignatureType::Binary | SignatureType::Text) => {}
        other => {
            return Err(SignatureError::UnsupportedSignatureType {
                commit,
                signature_type: format!("{other:?}"),
            });
        }
    }

    let names_issuer =
        !packet.issuer_fingerprint().is_empty() || !packet.issuer_key_id().is_empty();
    let signed_at = packet
        .created()
        .and_then(|created| DateTime::from_timestamp(created.as_secs().into(), 0));

    let mut tried = 0;
    for (index, key) in candidates.into_iter().enumerate() {
        tried += 1;
        let KeyMaterial::OpenPgp {
            certificate,
            signing_subkeys,
        } = key.material()
        else {
            continue;
        };

        let primary = attempt(packet, &certificate.primary_key, signature.signed_data());
        let subkeys = signing_subkeys
            .iter()
            .map(|subkey| attempt(packet, subkey, signature.signed_data()));

        for outcome in std::iter::once(primary).chain(subkeys).flatten() {
            match outcome {
                Ok(()) => {
                    return Ok(Verified {
                        key_index: index,
                        key_fingerprint: key.fingerprint().to_owned(),
                        format: SignatureFormat::OpenPgp,
                        signed_at,
                    });
                }
                // A signature without issuer subpackets is tried against every key, so a
                // failure only means that this key is not the signer.
                Err(_) if !names_issuer => {}
                Err(error) => {
                    return Err(SignatureError::BadSignature {
                        commit,
                        format: SignatureFormat::OpenPgp,
                        fingerprint: key.fingerprint().to_owned(),
                        reason: format!("OpenPGP verification failed ({error})"),
                    });
                }
            }
        }
    }

    Err(SignatureError::UnknownKey {
        commit,
        format: SignatureFormat::OpenPgp,
        issuer: openpgp_issuer(packet),
        candidates: tried,
    })
}

/// Verifies the signature with one OpenPGP key, or returns `None` when the signature names
/// another key as its issuer.
fn attempt<K: VerifyingKey + KeyDetails>(
    packet: &pgp::packet::Signature,
    key: &K,
    data: &[u8],
) -> Option<pgp::errors::Result<()>> {
    let fingerprints = packet.issuer_fingerprint();
    let key_ids = packet.issuer_key_id();

    let anonymous = fingerprints.is_empty() && key_ids.is_empty();
    let named = fingerprints
        .iter()
        .any(|&fingerprint| *fingerprint == key.fingerprint())
        || key_ids.iter().any(|&key_id| *key_id == key.legacy_key_id());
    if !anonymous && !named {
        return None;
    }
    Some(packet.verify(key, data))
}

/// Describes the issuer that an OpenPGP signature names, for error messages.
fn openpgp_issuer(packet: &pgp::packet::Signature) -> String {
    if let Some(fingerprint) = packet.issuer_fingerprint().first() {
        return format!("{fingerprint:X}");
    }
    if let Some(key_id) = packet.issuer_key_id().first() {
        return format!("with key ID {}", hex_upper(key_id.as_ref()));
    }
    "(the signature names no issuer)".to_owned()
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02X}")).collect()
}
