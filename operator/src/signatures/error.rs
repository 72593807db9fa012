//! Errors from parsing signing keys and from verifying commit signatures.

use std::fmt;

use git2::Oid;

use super::{SignatureFormat, SigningTime, ValidityWindow};

/// Description of a signing key string for error messages: its place in a list and an excerpt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyLabel {
    /// Position in a list, such as `signingKeys[1] of jdoe`, when the key came from one.
    pub location: Option<String>,
    /// Start and end of the key string, enough to recognise it without printing all of it.
    pub excerpt: String,
}

impl fmt::Display for KeyLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location} (`{}`)", self.excerpt),
            None => write!(f, "`{}`", self.excerpt),
        }
    }
}

/// Errors from parsing a public signing key string.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The string is neither an OpenSSH public key line nor an OpenPGP public key block.
    #[error(
        "signing key {key} is in an unknown format; expected an OpenSSH public key line such as \
         `ssh-ed25519 AAAA… name@example.org` (the contents of a `.pub` file) or an \
         ASCII-armored block starting with `-----BEGIN PGP PUBLIC KEY BLOCK-----`"
    )]
    UnknownFormat {
        /// The key string.
        key: KeyLabel,
    },

    /// The string is a private key, which must never be listed.
    #[error(
        "signing key {key} is a private key; list only the public key (the `.pub` file or the \
         output of `gpg --armor --export`), and replace this key because its secret is exposed"
    )]
    PrivateKey {
        /// The key string.
        key: KeyLabel,
    },

    /// The string looks like an OpenSSH public key but does not decode.
    #[error(
        "signing key {key} is not a valid OpenSSH public key: {source}; expected one line \
         `<type> <base64> [comment]`, as in a `.pub` file"
    )]
    InvalidSsh {
        /// The key string.
        key: KeyLabel,
        /// The decoding error from `ssh-key`.
        source: ssh_key::Error,
    },

    /// The OpenSSH key uses an algorithm that cannot verify commit signatures here.
    #[error(
        "signing key {key} uses the SSH algorithm {algorithm}, which Adgang does not verify; \
         use an ed25519, ecdsa-sha2-nistp256/384/521 or rsa key"
    )]
    UnsupportedSshAlgorithm {
        /// The key string.
        key: KeyLabel,
        /// The key's algorithm name, such as `ssh-dss`.
        algorithm: String,
    },

    /// The string looks like an OpenPGP public key block but does not parse.
    #[error(
        "signing key {key} is not a valid OpenPGP public key block: {source}; expected the \
         complete output of `gpg --armor --export <fingerprint>`"
    )]
    InvalidOpenPgp {
        /// The key string.
        key: KeyLabel,
        /// The parse error from `pgp`.
        source: Box<pgp::errors::Error>,
    },

    /// The OpenPGP block holds more than one certificate, so it cannot name one signer key.
    #[error(
        "signing key {key} contains {count} OpenPGP keys; list each key as its own entry, \
         exported with `gpg --armor --export <fingerprint>`"
    )]
    MultipleOpenPgpKeys {
        /// The key string.
        key: KeyLabel,
        /// Number of certificates found in the block.
        count: usize,
    },

    /// The OpenPGP key carries a valid revocation signature from its own primary key.
    #[error(
        "signing key {key} (OpenPGP {fingerprint}) is revoked by its owner; remove it from \
         the list and add the owner's new key"
    )]
    RevokedOpenPgp {
        /// The key string.
        key: KeyLabel,
        /// Fingerprint of the revoked primary key, in upper-case hexadecimal.
        fingerprint: String,
    },
}

impl KeyError {
    /// Returns the error with its key label placed in a list, such as `signingKeys[1] of jdoe`.
    pub(crate) fn at(mut self, location: String) -> Self {
        let key = match &mut self {
            Self::UnknownFormat { key }
            | Self::PrivateKey { key }
            | Self::InvalidSsh { key, .. }
            | Self::UnsupportedSshAlgorithm { key, .. }
            | Self::InvalidOpenPgp { key, .. }
            | Self::MultipleOpenPgpKeys { key, .. }
            | Self::RevokedOpenPgp { key, .. } => key,
        };
        key.location = Some(location);
        self
    }

    /// Returns the label of the key string that failed to parse.
    pub fn key(&self) -> &KeyLabel {
        match self {
            Self::UnknownFormat { key }
            | Self::PrivateKey { key }
            | Self::InvalidSsh { key, .. }
            | Self::UnsupportedSshAlgorithm { key, .. }
            | Self::InvalidOpenPgp { key, .. }
            | Self::MultipleOpenPgpKeys { key, .. }
            | Self::RevokedOpenPgp { key, .. } => key,
        }
    }
}

/// Errors from reading and verifying the signature of one commit.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// libgit2 could not read the commit or its signature.
    #[error("failed to read the signature of commit {commit}: {source}")]
    Git {
        /// The commit.
        commit: Oid,
        /// The error from libgit2.
        source: git2::Error,
    },

    /// The commit has no `gpgsig` header.
    #[error(
        "commit {commit} is not signed; sign it with `git commit -S` using an SSH or OpenPGP \
         key that is listed for you, then push it again"
    )]
    Unsigned {
        /// The commit.
        commit: Oid,
    },

    /// The signature is neither SSH nor OpenPGP, for example an X.509 signature from gpgsm.
    #[error(
        "commit {commit} has a signature in an unsupported format (first line `{first_line}`); \
         Adgang verifies SSH signatures (`gpg.format=ssh`) and OpenPGP signatures \
         (`gpg.format=openpgp`), so sign the commit again with one of those"
    )]
    UnknownFormat {
        /// The commit.
        commit: Oid,
        /// First line of the signature, at most 80 characters.
        first_line: String,
    },

    /// The SSH signature armor or its SSHSIG content does not decode.
    #[error("commit {commit} has a malformed SSH signature: {source}")]
    MalformedSsh {
        /// The commit.
        commit: Oid,
        /// The decoding error from `ssh-key`.
        source: ssh_key::Error,
    },

    /// The OpenPGP signature armor or packet does not parse.
    #[error("commit {commit} has a malformed OpenPGP signature: {source}")]
    MalformedOpenPgp {
        /// The commit.
        commit: Oid,
        /// The parse error from `pgp`.
        source: Box<pgp::errors::Error>,
    },

    /// The SSH signature was made for another purpose than signing git objects.
    #[error(
        "commit {commit} has an SSH signature for the namespace `{namespace}`, not `git`; \
         sign the commit with `git commit -S` so that git sets the namespace"
    )]
    WrongNamespace {
        /// The commit.
        commit: Oid,
        /// The namespace in the signature.
        namespace: String,
    },

    /// The OpenPGP signature is not a signature over data, for example a key certification.
    #[error(
        "commit {commit} has an OpenPGP signature of type {signature_type}, not a binary or \
         text document signature; sign the commit again with `git commit -S`"
    )]
    UnsupportedSignatureType {
        /// The commit.
        commit: Oid,
        /// The signature type as `pgp` names it.
        signature_type: String,
    },

    /// No candidate key matches the key that made the signature.
    #[error(
        "commit {commit} is signed with the {format} key {issuer}, which is not among the \
         {candidates} keys allowed to sign it; add the key to the signer's signing keys or sign \
         the commit again with a listed key"
    )]
    UnknownKey {
        /// The commit.
        commit: Oid,
        /// Format of the signature.
        format: SignatureFormat,
        /// Fingerprint or key ID that the signature names, or a note that it names none.
        issuer: String,
        /// Number of candidate keys that were tried.
        candidates: usize,
    },

    /// The key matches but the signature does not verify over the commit.
    #[error(
        "commit {commit} has a bad {format} signature from key {fingerprint}: {reason}; the \
         commit was changed after signing or the signature belongs to another commit, so do \
         not trust this commit"
    )]
    BadSignature {
        /// The commit.
        commit: Oid,
        /// Format of the signature.
        format: SignatureFormat,
        /// Fingerprint of the matching key.
        fingerprint: String,
        /// The verification error, as the signature library reports it.
        reason: String,
    },

    /// The signature verifies, but every key ring entry for the key excludes the signing time.
    #[error(
        "commit {commit} is signed by {owner} with key {fingerprint}, which is valid only \
         {window}, but the commit was signed at {signed_at}; sign it again with a key that is \
         valid now or ask the municipality to extend the key's validity"
    )]
    OutsideValidity {
        /// The commit.
        commit: Oid,
        /// Owner of the first key ring entry for the key.
        owner: String,
        /// Fingerprint of the key.
        fingerprint: String,
        /// Validity window of that entry.
        window: ValidityWindow,
        /// The time checked against the window, and where it came from.
        signed_at: SigningTime,
    },
}

impl SignatureError {
    /// Returns the commit that the error is about.
    pub fn commit(&self) -> Oid {
        match self {
            Self::Git { commit, .. }
            | Self::Unsigned { commit }
            | Self::UnknownFormat { commit, .. }
            | Self::MalformedSsh { commit, .. }
            | Self::MalformedOpenPgp { commit, .. }
            | Self::WrongNamespace { commit, .. }
            | Self::UnsupportedSignatureType { commit, .. }
            | Self::UnknownKey { commit, .. }
            | Self::BadSignature { commit, .. }
            | Self::OutsideValidity { commit, .. } => *commit,
        }
    }
}
