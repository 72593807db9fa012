//! The keys allowed to sign commits, each with its owner and an optional validity window.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use git2::{Oid, Repository};
use serde::{Deserialize, Serialize};

use super::commit::{Signature, SignatureFormat};
use super::error::{KeyError, SignatureError};
use super::key::{PublicKey, parse_signing_keys};
use super::verify::verify;
use crate::resources::ContactPerson;

/// The period in which a key may sign: `from` inclusive, `until` exclusive, and an absent
/// bound leaves that side open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidityWindow {
    /// First instant at which the key may sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// First instant at which the key may no longer sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl ValidityWindow {
    /// Tells whether the window contains the instant.
    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        let started = self.from.is_none_or(|from| from <= instant);
        let ended = self.until.is_some_and(|until| until <= instant);
        started && !ended
    }
}

/// Reads as the end of "valid only …", such as `from 2025-01-01T00:00:00Z until …`.
impl fmt::Display for ValidityWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = |instant: DateTime<Utc>| instant.to_rfc3339_opts(SecondsFormat::Secs, true);
        match (self.from, self.until) {
            (Some(from), Some(until)) => write!(f, "from {} until {}", format(from), format(until)),
            (Some(from), None) => write!(f, "from {}", format(from)),
            (None, Some(until)) => write!(f, "until {}", format(until)),
            (None, None) => f.write_str("at any time"),
        }
    }
}

/// Origin of the time checked against a validity window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSource {
    /// The creation time inside an OpenPGP signature.
    SignatureCreation,
    /// The committer time of the commit, for SSH signatures, which carry no time.
    CommitterTime,
}

/// The time at which a commit counts as signed, for validity windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigningTime {
    /// The instant.
    pub at: DateTime<Utc>,
    /// Origin of the instant.
    pub source: TimeSource,
}

impl fmt::Display for SigningTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.at.to_rfc3339_opts(SecondsFormat::Secs, true);
        match self.source {
            TimeSource::SignatureCreation => write!(f, "{at} (OpenPGP signature creation time)"),
            TimeSource::CommitterTime => write!(f, "{at} (committer time)"),
        }
    }
}

/// One key allowed to sign, with its owner.
#[derive(Clone, Debug)]
pub struct KeyRingEntry {
    /// Person the key belongs to: a contact person's username or a reviewer's name.
    pub owner: String,
    /// The public key.
    pub key: PublicKey,
    /// Period in which the key may sign, or `None` for any time.
    pub valid: Option<ValidityWindow>,
}

/// The person and key behind a verified commit signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// Owner of the key ring entry that accepted the signature.
    pub owner: String,
    /// Fingerprint of the key, as [`PublicKey::fingerprint`] returns it.
    pub fingerprint: String,
    /// Format of the signature.
    pub format: SignatureFormat,
    /// The time checked against the entry's validity window.
    pub signed_at: SigningTime,
}

/// The keys allowed to sign commits, in the order they were added.
///
/// One key may appear under several owners or with several windows. A signature is accepted
/// by the first entry, in insertion order, whose key verifies it and whose window contains
/// the signing time.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    entries: Vec<KeyRingEntry>,
}

impl KeyRing {
    /// Creates an empty key ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a key ring from the contact persons of a supplier, with each person's username
    /// as owner and no validity window.
    pub fn from_contact_persons(persons: &[ContactPerson]) -> Result<Self, KeyError> {
        let mut ring = Self::new();
        for person in persons {
            ring.add_keys(&person.username, &person.signing_keys, None)?;
        }
        Ok(ring)
    }

    /// Adds one key.
    pub fn push(
        &mut self,
        owner: impl Into<String>,
        key: PublicKey,
        valid: Option<ValidityWindow>,
    ) {
        self.entries.push(KeyRingEntry {
            owner: owner.into(),
            key,
            valid,
        });
    }

    /// Parses and adds an owner's `signingKeys` list, all with the same window. Nothing is
    /// added when one of the keys is invalid.
    pub fn add_keys(
        &mut self,
        owner: &str,
        keys: &[String],
        valid: Option<ValidityWindow>,
    ) -> Result<(), KeyError> {
        for key in parse_signing_keys(owner, keys)? {
            self.push(owner, key, valid);
        }
        Ok(())
    }

    /// Returns the entries in insertion order.
    pub fn entries(&self) -> &[KeyRingEntry] {
        &self.entries
    }

    /// Reads and verifies the signature of a commit, and returns who signed it.
    pub fn verify_commit(&self, repo: &Repository, commit: Oid) -> Result<Signer, SignatureError> {
        let signature = Signature::from_commit(repo, commit)?;
        self.verify_signature(&signature)
    }

    /// Verifies a signature read with [`Signature::from_commit`], and returns who signed it.
    ///
    /// The signing time checked against validity windows is the OpenPGP signature creation
    /// time when there is one, else the committer time.
    ///
    /// NOTE: the signer chooses both times, so a window's `until` only stops a signer who does
    /// not backdate. To retire a key for good, remove it from the ring.
    pub fn verify_signature(&self, signature: &Signature) -> Result<Signer, SignatureError> {
        let verified = verify(signature, self.entries.iter().map(|entry| &entry.key))?;

        let signed_at = match verified.signed_at {
            Some(at) => SigningTime {
                at,
                source: TimeSource::SignatureCreation,
            },
            None => SigningTime {
                at: signature.committer_time(),
                source: TimeSource::CommitterTime,
            },
        };

        let key = &self.entries[verified.key_index].key;
        let same_key = self.entries.iter().filter(|entry| entry.key == *key);
        let mut first_rejected = None;
        for entry in same_key {
            match entry.valid {
                Some(window) if !window.contains(signed_at.at) => {
                    first_rejected.get_or_insert((entry, window));
                }
                _ => {
                    tracing::debug!(
                        commit = %signature.commit(),
                        owner = %entry.owner,
                        fingerprint = %verified.key_fingerprint,
                        "verified commit signature"
                    );
                    return Ok(Signer {
                        owner: entry.owner.clone(),
                        fingerprint: verified.key_fingerprint,
                        format: verified.format,
                        signed_at,
                    });
                }
            }
        }

        // The verifying entry itself has the key, so at least one entry was rejected.
        let (entry, window) = first_rejected.expect("the verifying entry matches its own key");
        Err(SignatureError::OutsideValidity {
            commit: signature.commit(),
            owner: entry.owner.clone(),
            fingerprint: verified.key_fingerprint,
            window,
            signed_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn instant(year: i32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn window_bounds_are_half_open() {
        let window = ValidityWindow {
            from: Some(instant(2025)),
            until: Some(instant(2026)),
        };

        assert!(!window.contains(instant(2025) - chrono::Duration::seconds(1)));
        assert!(window.contains(instant(2025)));
        assert!(window.contains(instant(2026) - chrono::Duration::seconds(1)));
        assert!(!window.contains(instant(2026)));
    }

    #[test]
    fn window_without_bounds_contains_everything() {
        let window = ValidityWindow::default();

        assert!(window.contains(instant(1970)));
        assert!(window.contains(instant(2100)));
    }

    #[test]
    fn window_display_names_present_bounds() {
        let both = ValidityWindow {
            from: Some(instant(2025)),
            until: Some(instant(2026)),
        };
        let from = ValidityWindow {
            from: Some(instant(2025)),
            until: None,
        };
        let until = ValidityWindow {
            from: None,
            until: Some(instant(2026)),
        };

        assert_eq!(
            both.to_string(),
            "from 2025-01-01T00:00:00Z until 2026-01-01T00:00:00Z"
        );
        assert_eq!(from.to_string(), "from 2025-01-01T00:00:00Z");
        assert_eq!(until.to_string(), "until 2026-01-01T00:00:00Z");
    }

    #[test]
    fn window_deserialises_from_camel_case() {
        let window: ValidityWindow =
            serde_json::from_str(r#"{"from": "2025-01-01T00:00:00Z"}"#).unwrap();

        assert_eq!(window.from, Some(instant(2025)));
        assert_eq!(window.until, None);
    }

    #[test]
    fn contact_person_with_bad_key_names_username() {
        let persons = [ContactPerson {
            name: "Jane Doe".to_owned(),
            username: "jdoe".to_owned(),
            signing_keys: vec!["ssh-ed25519 AAAA jdoe@example.org".to_owned()],
        }];

        let error = KeyRing::from_contact_persons(&persons).unwrap_err();

        assert!(
            error.to_string().contains("signingKeys[0] of jdoe"),
            "{error}"
        );
    }
}
