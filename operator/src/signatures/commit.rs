//! The signature of one commit, as git stores it in the commit's `gpgsig` header.

use std::fmt;

use chrono::{DateTime, Utc};
use git2::{ErrorCode, Oid, Repository};

use super::error::SignatureError;

const SSH_ARMOR: &str = "-----BEGIN SSH SIGNATURE-----";
const PGP_ARMOR: &str = "-----BEGIN PGP SIGNATURE-----";

/// Format of a commit signature, as git's `gpg.format` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureFormat {
    /// An SSHSIG signature made by `ssh-keygen -Y sign` (`gpg.format=ssh`).
    Ssh,
    /// An OpenPGP detached signature (`gpg.format=openpgp`, the default).
    OpenPgp,
}

impl fmt::Display for SignatureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ssh => "SSH",
            Self::OpenPgp => "OpenPGP",
        })
    }
}

/// The signature of a commit together with the bytes it signs.
#[derive(Clone, Debug)]
pub struct Signature {
    commit: Oid,
    format: SignatureFormat,
    armor: String,
    signed_data: Vec<u8>,
    committer_time: DateTime<Utc>,
}

impl Signature {
    /// Reads the signature of a commit, merge commits included.
    ///
    /// Fails with [`SignatureError::Unsigned`] when the commit has no signature and with
    /// [`SignatureError::UnknownFormat`] when it is neither SSH nor OpenPGP.
    pub fn from_commit(repo: &Repository, commit: Oid) -> Result<Self, SignatureError> {
        let git_error = |source| SignatureError::Git { commit, source };

        let committed = repo
            .find_commit(commit)
            .map_err(git_error)?
            .committer()
            .when();
        let committer_time =
            DateTime::from_timestamp(committed.seconds(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC);

        let (armor, signed_data) = match repo.extract_signature(&commit, None) {
            Ok(parts) => parts,
            Err(error) if error.code() == ErrorCode::NotFound => {
                return Err(SignatureError::Unsigned { commit });
            }
            Err(error) => return Err(git_error(error)),
        };
        let armor = String::from_utf8_lossy(&armor).into_owned();

        let Some(format) = classify(&armor) else {
            return Err(SignatureError::UnknownFormat {
                commit,
                first_line: first_line(&armor),
            });
        };

        Ok(Self {
            commit,
            format,
            armor,
            signed_data: signed_data.to_vec(),
            committer_time,
        })
    }

    /// Returns the id of the signed commit.
    pub fn commit(&self) -> Oid {
        self.commit
    }

    /// Returns the signature format.
    pub fn format(&self) -> SignatureFormat {
        self.format
    }

    /// Returns the ASCII-armored signature as stored in the `gpgsig` header.
    pub fn armor(&self) -> &str {
        &self.armor
    }

    /// Returns the signed bytes: the commit object without its `gpgsig` header.
    pub fn signed_data(&self) -> &[u8] {
        &self.signed_data
    }

    /// Returns the committer time, which the committer sets freely.
    pub fn committer_time(&self) -> DateTime<Utc> {
        self.committer_time
    }
}

/// Returns the format of an ASCII-armored signature, or `None` when the armor is unknown.
pub(crate) fn classify(armor: &str) -> Option<SignatureFormat> {
    let armor = armor.trim_start();
    if armor.starts_with(SSH_ARMOR) {
        Some(SignatureFormat::Ssh)
    } else if armor.starts_with(PGP_ARMOR) {
        Some(SignatureFormat::OpenPgp)
    } else {
        None
    }
}

/// Returns the first line of a signature, cut to 80 characters for error messages.
fn first_line(armor: &str) -> String {
    let line = armor.trim_start().lines().next().unwrap_or_default();
    line.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_ssh_armor() {
        let armor = "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n";

        assert_eq!(classify(armor), Some(SignatureFormat::Ssh));
    }

    #[test]
    fn classify_pgp_armor() {
        let armor = "-----BEGIN PGP SIGNATURE-----\n\niHUEABYK\n-----END PGP SIGNATURE-----\n";

        assert_eq!(classify(armor), Some(SignatureFormat::OpenPgp));
    }

    #[test]
    fn classify_rejects_other_armors() {
        let cases = [
            "-----BEGIN SIGNED MESSAGE-----\nMIAGCSqG\n-----END SIGNED MESSAGE-----\n",
            "-----BEGIN PGP MESSAGE-----\n",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
            "",
            "U1NIU0lH",
        ];
        for armor in cases {
            assert_eq!(classify(armor), None, "{armor:?}");
        }
    }

    #[test]
    fn first_line_is_cut_to_80_characters() {
        let armor = format!("{}\nsecond", "x".repeat(100));

        assert_eq!(first_line(&armor), "x".repeat(80));
    }
}
