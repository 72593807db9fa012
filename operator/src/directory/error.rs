//! Errors of the directory edge, each naming the server, DN or file involved and what to check.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use ldap3::{LdapError, LdapResult};

use crate::model::{LINK_ATTRIBUTE, UserKey};

/// Everything that can go wrong talking to Active Directory.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The configured URL is not an LDAPS or StartTLS URL with a host.
    #[error(
        "invalid directory URL {url:?}: {reason}; use ldaps://HOST[:PORT], \
         or ldap://HOST[:PORT] for StartTLS"
    )]
    InvalidUrl { url: String, reason: String },

    /// The CA file cannot be read.
    #[error("failed to read the CA file {}: {source}; check the path and its permissions", path.display())]
    CaFileUnreadable { path: PathBuf, source: io::Error },

    /// The CA file contains no usable certificate.
    #[error(
        "invalid CA file {}: {reason}; it must contain the PEM certificate \
         (BEGIN CERTIFICATE) of the CA that issued the server certificate",
        path.display()
    )]
    InvalidCaFile { path: PathBuf, reason: String },

    /// No TCP connection could be opened to the server.
    #[error(
        "failed to connect to the directory server at {url}: {source}; \
         check the address, the port and any firewall in between"
    )]
    Unreachable { url: String, source: io::Error },

    /// The TLS handshake failed, usually because the CA file does not match the server.
    #[error(
        "TLS handshake with {url} failed: {source}; check that the server certificate is \
         issued by a CA in {} and names the host of the URL",
        ca_file.display()
    )]
    Tls {
        url: String,
        ca_file: PathBuf,
        source: rustls::Error,
    },

    /// The server rejected the bind DN and password (LDAP result 49).
    #[error(
        "the directory server at {url} rejected the bind as {bind_dn}: {reason}; \
         check the password file or environment variable that holds the bind password"
    )]
    InvalidCredentials {
        url: String,
        bind_dn: String,
        /// The reason that AD encodes as `data NNN` in the diagnostic message.
        reason: &'static str,
    },

    /// The bind failed for a reason other than invalid credentials.
    #[error("bind as {bind_dn} to {url} failed: {result}")]
    BindFailed {
        url: String,
        bind_dn: String,
        result: Box<LdapResult>,
    },

    /// The server did not respond within the configured timeout.
    #[error(
        "{operation} at {url} timed out after {} s; check that the server is up and not \
         overloaded, or raise the timeout",
        timeout.as_secs_f64()
    )]
    Timeout {
        url: String,
        operation: String,
        timeout: Duration,
    },

    /// The connection failed or closed during an operation.
    #[error("{operation} at {url} failed: {source}")]
    Connection {
        url: String,
        operation: String,
        source: Box<LdapError>,
    },

    /// The server returned an error result for an operation.
    #[error("{operation} of {dn} failed: {result}")]
    Operation {
        operation: String,
        dn: String,
        result: Box<LdapResult>,
    },

    /// An add failed because the DN or the sAMAccountName is already taken (LDAP result 68).
    #[error(
        "failed to create {dn}: an object with this DN or the username {username:?} already \
         exists in the domain; pick another name or remove the existing object"
    )]
    AlreadyExists { dn: String, username: String },

    /// The object to change does not exist.
    #[error("{dn} not found in the directory")]
    NotFound { dn: String },

    /// The managed base configured does not exist.
    #[error(
        "the managed base {dn} does not exist in the directory; create the OU or correct the \
         managed base setting"
    )]
    ManagedBaseMissing { dn: String },

    /// The DN of a write is not below the managed base.
    #[error(
        "rejected the change to {dn}: it is not below the managed base {managed_base}, \
         and Adgang writes nothing outside it"
    )]
    OutsideManagedBase { dn: String, managed_base: String },

    /// The object to change was not created by Adgang.
    #[error(
        "rejected the change to {dn}: its {LINK_ATTRIBUTE} is {found:?}, not an Adgang link, \
         and Adgang changes only the objects it created"
    )]
    NotAdgangObject { dn: String, found: Option<String> },

    /// The object to change was created by Adgang for another user.
    #[error("rejected the change to {dn}: it is linked to {found}, not to {expected}")]
    LinkMismatch {
        dn: String,
        expected: UserKey,
        found: UserKey,
    },

    /// The object to change is not of the expected kind.
    #[error("rejected the change to {dn}: it is not {expected}")]
    WrongObjectClass { dn: String, expected: &'static str },

    /// An attribute change names an attribute that Adgang does not own.
    #[error(
        "rejected the change of {attribute} on {dn}: Adgang changes only the attributes \
         givenName, sn, displayName, mail, employeeNumber and userPrincipalName"
    )]
    UnmanagedAttribute { dn: String, attribute: String },

    /// The domain's password policy rejected a new password (LDAP result 19).
    #[error(
        "the password policy of the domain rejected the new password for {dn}: {text}; \
         check the minimum length, complexity and history rules"
    )]
    PasswordRejected { dn: String, text: String },

    /// A DN could not be parsed.
    #[error("invalid DN {dn:?}: {reason}")]
    InvalidDn { dn: String, reason: String },

    /// An attribute returned by the server has a value Adgang cannot read.
    #[error("invalid {attribute} on {dn}: {value:?}")]
    InvalidAttribute {
        dn: String,
        attribute: &'static str,
        value: String,
    },

    /// The action is not a single directory write.
    #[error(
        "{action} on {dn} is not a single directory write: call set_password and then \
         mark_credentials_delivered (this is a bug in the caller)"
    )]
    UnsupportedAction { action: &'static str, dn: String },
}

impl DirectoryError {
    /// Maps an error of the LDAP library during an operation at `url`.
    pub(crate) fn from_ldap(
        url: &str,
        operation: &str,
        timeout: Duration,
        source: LdapError,
    ) -> Self {
        match source {
            LdapError::Timeout { .. } => DirectoryError::Timeout {
                url: url.to_owned(),
                operation: operation.to_owned(),
                timeout,
            },
            source => DirectoryError::Connection {
                url: url.to_owned(),
                operation: operation.to_owned(),
                source: Box::new(source),
            },
        }
    }
}

/// Reads the reason code that AD puts into the text of a result 49, such as `data 52e`.
pub(crate) fn bind_failure_reason(text: &str) -> &'static str {
    let code = text
        .split(", ")
        .find_map(|part| part.strip_prefix("data "))
        .map(|code| code.trim().to_ascii_lowercase());

    match code.as_deref() {
        Some("52e") => "invalid DN or password",
        Some("525") => "no such user",
        Some("530") => "logon not permitted at this time",
        Some("531") => "logon not permitted from this workstation",
        Some("532") => "password expired",
        Some("533") => "account disabled",
        Some("701") => "account expired",
        Some("773") => "password must be changed before the first logon",
        Some("775") => "account locked out",
        _ => "invalid credentials",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_failure_reason_reads_ad_data_code() {
        let cases = [
            (
                "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, \
                 data 52e, v1db1",
                "invalid DN or password",
            ),
            (
                "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, \
                 data 773, v1db1",
                "password must be changed before the first logon",
            ),
            ("", "invalid credentials"),
            ("something else entirely", "invalid credentials"),
        ];

        for (text, expected) in cases {
            assert_eq!(bind_failure_reason(text), expected, "text: {text}");
        }
    }
}
