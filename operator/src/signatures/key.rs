//! Public signing keys as listed in `supplier.yaml` and in the policy: OpenSSH public key lines
//! and ASCII-armored OpenPGP public key blocks.

use std::fmt;
use std::str::FromStr;

use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::packet::PublicSubkey;
use pgp::types::KeyDetails;
use ssh_key::{Algorithm, HashAlg};

use super::SignatureFormat;
use super::error::{KeyError, KeyLabel};

const PGP_PUBLIC_KEY_ARMOR: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// Armor lines of private keys, which a careless copy could paste in place of a public key.
const PRIVATE_KEY_ARMORS: [&str; 4] = [
    "-----BEGIN PGP PRIVATE KEY BLOCK-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----",
];

/// A public key that may sign commits: an OpenSSH key or an OpenPGP certificate.
///
/// Two keys are equal when they have the same format and fingerprint, whatever their comment.
#[derive(Clone, Debug)]
pub struct PublicKey {
    material: KeyMaterial,
    fingerprint: String,
    label: String,
}

#[derive(Clone, Debug)]
pub(crate) enum KeyMaterial {
    Ssh(ssh_key::PublicKey),
    OpenPgp {
        certificate: Box<SignedPublicKey>,
        /// Subkeys whose binding signatures verify and allow signing.
        signing_subkeys: Vec<PublicSubkey>,
    },
}

impl PublicKey {
    /// Parses one OpenSSH public key line or one ASCII-armored OpenPGP public key block.
    ///
    /// An OpenPGP key is rejected if it carries a valid revocation by its primary key. Its
    /// subkeys count as signing keys only if their binding signature verifies and sets the
    /// signing flag.
    ///
    /// NOTE: OpenPGP key expiration times are not evaluated. The validity window of a
    /// [`KeyRing`](super::KeyRing) entry is the control for when a key may sign.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let label = || KeyLabel {
            location: None,
            excerpt: excerpt(text),
        };

        if PRIVATE_KEY_ARMORS
            .iter()
            .any(|armor| text.starts_with(armor))
        {
            return Err(KeyError::PrivateKey { key: label() });
        }
        if text.starts_with(PGP_PUBLIC_KEY_ARMOR) {
            return parse_openpgp(text).map_err(|pending| pending(label()));
        }
        if looks_like_openssh(text) {
            return parse_ssh(text).map_err(|pending| pending(label()));
        }
        Err(KeyError::UnknownFormat { key: label() })
    }

    /// Returns the signature format that this key verifies.
    pub fn format(&self) -> SignatureFormat {
        match self.material {
            KeyMaterial::Ssh(_) => SignatureFormat::Ssh,
            KeyMaterial::OpenPgp { .. } => SignatureFormat::OpenPgp,
        }
    }

    /// Returns the fingerprint: `SHA256:…` for SSH keys, as `ssh-keygen -l` prints it, and the
    /// primary key fingerprint in upper-case hexadecimal for OpenPGP keys, as gpg prints it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Returns the human-readable label: the SSH key comment or the first OpenPGP user ID,
    /// which may be empty.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn material(&self) -> &KeyMaterial {
        &self.material
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.format() == other.format() && self.fingerprint == other.fingerprint
    }
}

impl Eq for PublicKey {}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        Self::parse(text)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} key {}", self.format(), self.fingerprint)?;
        if !self.label.is_empty() {
            write!(f, " ({})", self.label)?;
        }
        Ok(())
    }
}

/// Parses the `signingKeys` list of one owner, naming the failing entry as
/// `signingKeys[<index>] of <owner>` with the index counted from 0.
pub fn parse_signing_keys(owner: &str, keys: &[String]) -> Result<Vec<PublicKey>, KeyError> {
    keys.iter()
        .enumerate()
        .map(|(index, text)| {
            PublicKey::parse(text)
                .map_err(|error| error.at(format!("signingKeys[{index}] of {owner}")))
        })
        .collect()
}

/// An error constructor that still needs the key label.
type PendingKeyError = Box<dyn FnOnce(KeyLabel) -> KeyError>;

fn parse_ssh(text: &str) -> Result<PublicKey, PendingKeyError> {
    let key = ssh_key::PublicKey::from_openssh(text).map_err(|source| -> PendingKeyError {
        Box::new(|key| KeyError::InvalidSsh { key, source })
    })?;

    let algorithm = key.algorithm();
    let supported = matches!(
        algorithm,
        Algorithm::Ed25519
            | Algorithm::Ecdsa { .. }
            | Algorithm::Rsa { .. }
            | Algorithm::SkEd25519
            | Algorithm::SkEcdsaSha2NistP256
    );
    if !supported {
        let algorithm = algorithm.to_string();
        return Err(Box::new(|key| KeyError::UnsupportedSshAlgorithm {
            key,
            algorithm,
        }));
    }

    Ok(PublicKey {
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        label: key.comment().to_owned(),
        material: KeyMaterial::Ssh(key),
    })
}

fn parse_openpgp(text: &str) -> Result<PublicKey, PendingKeyError> {
    let invalid = |source: pgp::errors::Error| -> PendingKeyError {
        Box::new(|key| KeyError::InvalidOpenPgp {
            key,
            source: Box::new(source),
        })
    };

    let (certificates, _headers) = SignedPublicKey::from_string_many(text).map_err(invalid)?;
    let mut certificates = certificates
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let certificate = match certificates.len() {
        1 => certificates.remove(0),
        count => {
            return Err(Box::new(move |key| KeyError::MultipleOpenPgpKeys {
                key,
                count,
            }));
        }
    };

    let primary = &certificate.primary_key;
    let fingerprint = format!("{:X}", primary.fingerprint());

    let revoked = certificate
        .details
        .revocation_signatures
        .iter()
        .any(|revocation| revocation.verify_key(primary).is_ok());
    if revoked {
        return Err(Box::new(|key| KeyError::RevokedOpenPgp {
            key,
            fingerprint,
        }));
    }

    let signing_subkeys = certificate
        .public_subkeys
        .iter()
        .filter(|subkey| subkey.verify_bindings(primary).is_ok())
        .filter(|subkey| {
            subkey
                .signatures
                .iter()
                .any(|binding| binding.key_flags().sign())
        })
        .map(|subkey| subkey.key.clone())
        .collect();

    let label = certificate
        .details
        .users
        .first()
        .map(|user| String::from_utf8_lossy(user.id.id()).into_owned())
        .unwrap_or_default();

    Ok(PublicKey {
        fingerprint,
        label,
        material: KeyMaterial::OpenPgp {
            certificate: Box::new(certificate),
            signing_subkeys,
        },
    })
}

/// Tells whether the text starts with an OpenSSH key type. Lines with `authorized_keys`
/// options in front of the type are not recognised.
fn looks_like_openssh(text: &str) -> bool {
    let algorithm = text.split_whitespace().next().unwrap_or_default();
    algorithm.starts_with("ssh-")
        || algorithm.starts_with("ecdsa-")
        || algorithm.starts_with("sk-ssh-")
        || algorithm.starts_with("sk-ecdsa-")
}

/// Shortens a key string to its first line, keeping the start and end of a long line so that
/// a reader can match it against the file.
pub(crate) fn excerpt(text: &str) -> String {
    const KEEP: usize = 24;

    let first_line = text.lines().next().unwrap_or_default().trim();
    let chars: Vec<char> = first_line.chars().collect();
    if chars.len() <= 2 * KEEP + 1 {
        return first_line.to_owned();
    }
    let head: String = chars[..KEEP].iter().collect();
    let tail: String = chars[chars.len() - KEEP..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway ed25519 key generated with `ssh-keygen -t ed25519` for these tests.
    const ED25519: &str = "ssh-ed25519 \
        AAAAC3NzaC1lZDI1NTE5AAAAIHdahIxSA11sgufpvq+r7PSFDaYKoOptij7gMz34kYDl jdoe@example.org";

    #[test]
    fn ssh_key_parses_with_comment() {
        let key = PublicKey::parse(ED25519).unwrap();

        assert_eq!(key.format(), SignatureFormat::Ssh);
        assert_eq!(key.label(), "jdoe@example.org");
        assert_eq!(
            key.fingerprint(),
            "SHA256:QS4vl80JgNKMFMJHyxJVRGZ0EP8uZN2F6IyiPu4pkkU"
        );
    }

    #[test]
    fn ssh_keys_equal_regardless_of_comment() {
        let with_comment = PublicKey::parse(ED25519).unwrap();
        let without_comment = ED25519.rsplit_once(' ').unwrap().0;
        let without_comment = PublicKey::parse(without_comment).unwrap();

        assert_eq!(with_comment, without_comment);
    }

    #[test]
    fn ssh_key_with_broken_base64_names_entry() {
        let broken = ED25519.replace("AAAAC3Nz", "AAAAC3!!");
        let keys = vec![ED25519.to_owned(), broken];

        let error = parse_signing_keys("jdoe", &keys).unwrap_err();

        assert!(matches!(error, KeyError::InvalidSsh { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("signingKeys[1] of jdoe"), "{message}");
        assert!(message.contains("jdoe@example.org"), "{message}");
        assert!(message.contains("`<type> <base64> [comment]`"), "{message}");
    }

    #[test]
    fn unknown_key_format_names_both_formats() {
        let error = PublicKey::parse("not a key").unwrap_err();

        assert!(matches!(error, KeyError::UnknownFormat { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("`not a key`"), "{message}");
        assert!(message.contains("OpenSSH public key line"), "{message}");
        assert!(message.contains("BEGIN PGP PUBLIC KEY BLOCK"), "{message}");
    }

    #[test]
    fn private_keys_are_rejected() {
        for armor in PRIVATE_KEY_ARMORS {
            let text = format!("{armor}\nAAAA\n");

            let error = PublicKey::parse(&text).unwrap_err();

            assert!(
                matches!(error, KeyError::PrivateKey { .. }),
                "{armor}: {error:?}"
            );
        }
    }

    #[test]
    fn ssh_dss_key_is_unsupported() {
        // A throwaway DSA key from `ssh-keygen -t dsa`, which OpenSSH 9.2 still generates.
        let dss = concat!(
            "ssh-dss ",
            "AAAAB3NzaC1kc3MAAACBAKWyure6o9yk351lLEwURxPgMkW8diRrPH3gB6r1RqgqrXwTFqaz",
            "vOt7Ox8nW4AnRFaZaffsr8/nPcIgwln1XHrkJF5WOUCCgJzoW0gxWBpqazFvWgsFgp9xOX3v",
            "wn0ttiW6qF1AkxtKxgqAI9TGAN+Zu4Ml650uAjYuuuansJCPAAAAFQDpN0UpmIRF8c1gaECH",
            "LFSaDPRHOwAAAIBwe3AuHPNum1ad6SbWBNGowvjY5vSj7daCFpmFnR6t0I9TybWfGhOCWZNz",
            "nDtE+afxE5jgjszJ6ijzIdaF5sms0E9TeS7hMjRLfoX0WWW5FGfz7B1F2AzfmgjM34mZFnJd",
            "drnU7A7gL3QxrBbK5t4X0bj6t+6cvQ6z8dkfhUVJqgAAAIBGzTigIsH83/m1ggeQevWs937p",
            "AL+RtKfkspxC2SNIUM0VD2vFRNtqlrW8ShuxL7CkZ/fJs7VKFaxJXACB3zS60N1WB5JWhKUe",
            "nROGAtuzdbwc3b7vCCKgSabhmh9pkgylWxn8u3ABfMfrxDI7i0qZ378nsBuxeevxvqt52Npx",
            "yQ==",
            " old@example.org",
        );

        let error = PublicKey::parse(dss).unwrap_err();

        assert!(
            matches!(error, KeyError::UnsupportedSshAlgorithm { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("ssh-dss"), "{error}");
    }

    #[test]
    fn truncated_openpgp_block_is_invalid() {
        let text =
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n-----END PGP PUBLIC KEY BLOCK-----\n";

        let error = PublicKey::parse(text).unwrap_err();

        assert!(
            matches!(error, KeyError::InvalidOpenPgp { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("gpg --armor --export"),
            "{error}"
        );
    }

    #[test]
    fn excerpt_keeps_start_and_end() {
        let shortened = excerpt(ED25519);

        assert!(
            shortened.starts_with("ssh-ed25519 AAAAC3NzaC1l"),
            "{shortened}"
        );
        assert!(shortened.ends_with("YDl jdoe@example.org"), "{shortened}");
        assert!(shortened.contains('…'), "{shortened}");
    }

    #[test]
    fn excerpt_keeps_short_text_whole() {
        assert_eq!(excerpt("  short key \nsecond line"), "short key");
    }
}
