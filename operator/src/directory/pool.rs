//! TLS setup, bind, and a bounded pool of bound LDAP connections.
//!
//! Each connection is driven by its own task. A semaphore bounds how many are in use, so
//! writes for independent users run concurrently on separate connections. A connection that
//! the server closed (idle timeout, restart) is dropped and replaced on the next checkout.

use std::fs::File;
use std::io::{self, BufReader};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{DirectoryError, DirectorySettings, Secret, error::bind_failure_reason};

/// LDAP result code for invalid credentials.
const INVALID_CREDENTIALS: u32 = 49;

/// Bound connections to one server, at most `connections` of them at a time.
pub(crate) struct Pool {
    pub(crate) url: String,
    starttls: bool,
    bind_dn: String,
    bind_password: Secret,
    ca_file: std::path::PathBuf,
    pub(crate) timeout: Duration,
    tls_config: Arc<ClientConfig>,
    permits: Semaphore,
    idle: Mutex<Vec<Ldap>>,
}

impl Pool {
    /// Checks the settings and loads the CA file; opens no connection yet.
    pub(crate) fn new(settings: &DirectorySettings) -> Result<Self, DirectoryError> {
        let starttls = parse_scheme(&settings.url)?;
        let tls_config = client_config(&settings.ca_file)?;
        let connections = settings.connections.max(1);

        Ok(Self {
            url: settings.url.clone(),
            starttls,
            bind_dn: settings.bind_dn.clone(),
            bind_password: settings.bind_password.clone(),
            ca_file: settings.ca_file.clone(),
            timeout: settings.timeout,
            tls_config,
            permits: Semaphore::new(connections),
            idle: Mutex::new(Vec::with_capacity(connections)),
        })
    }

    /// Takes an idle connection, or opens and binds a new one, waiting while all are in use.
    pub(crate) async fn get(&self) -> Result<PooledConnection<'_>, DirectoryError> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the pool never closes its semaphore");

        let reusable = loop {
            let candidate = self.idle.lock().expect("idle list lock poisoned").pop();
            match candidate {
                Some(mut ldap) => {
                    if !ldap.is_closed() {
                        break Some(ldap);
                    }
                    tracing::debug!(url = %self.url, "dropping an LDAP connection the server closed");
                }
                None => break None,
            }
        };
        let ldap = match reusable {
            Some(ldap) => ldap,
            None => self.open().await?,
        };

        Ok(PooledConnection {
            pool: self,
            ldap: Some(ldap),
            _permit: permit,
        })
    }

    /// Maps an error of the LDAP library during `operation`.
    pub(crate) fn error(&self, operation: &str, source: LdapError) -> DirectoryError {
        DirectoryError::from_ldap(&self.url, operation, self.timeout, source)
    }

    /// Opens a TLS connection, starts its driver task and binds.
    async fn open(&self) -> Result<Ldap, DirectoryError> {
        let settings = LdapConnSettings::new()
            .set_config(self.tls_config.clone())
            .set_starttls(self.starttls)
            .set_conn_timeout(self.timeout);

        tracing::debug!(url = %self.url, starttls = self.starttls, "opening LDAP connection");
        let (connection, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|source| self.connect_error(source))?;

        let url = self.url.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.drive().await {
                tracing::warn!(%url, %error, "LDAP connection closed with an error");
            }
        });

        tracing::debug!(url = %self.url, dn = %self.bind_dn, "simple bind");
        let result = ldap
            .with_timeout(self.timeout)
            .simple_bind(&self.bind_dn, self.bind_password.expose())
            .await
            .map_err(|source| self.connect_error(source))?;

        match result.rc {
            0 => Ok(ldap),
            INVALID_CREDENTIALS => Err(DirectoryError::InvalidCredentials {
                url: self.url.clone(),
                bind_dn: self.bind_dn.clone(),
                reason: bind_failure_reason(&result.text),
            }),
            _ => Err(DirectoryError::BindFailed {
                url: self.url.clone(),
                bind_dn: self.bind_dn.clone(),
                result: Box::new(result),
            }),
        }
    }

    /// Sorts an error while connecting into unreachable, TLS failure, timeout or other.
    fn connect_error(&self, source: LdapError) -> DirectoryError {
        let LdapError::Io { source } = source else {
            return self.error("connect", source);
        };

        let tls_error = source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned();
        if let Some(tls_error) = tls_error {
            return DirectoryError::Tls {
                url: self.url.clone(),
                ca_file: self.ca_file.clone(),
                source: tls_error,
            };
        }

        match source.kind() {
            io::ErrorKind::TimedOut => DirectoryError::Timeout {
                url: self.url.clone(),
                operation: "connect".to_owned(),
                timeout: self.timeout,
            },
            _ => DirectoryError::Unreachable {
                url: self.url.clone(),
                source,
            },
        }
    }
}

/// A connection taken from the pool; it goes back when dropped, unless the server closed it.
pub(crate) struct PooledConnection<'a> {
    pool: &'a Pool,
    ldap: Option<Ldap>,
    _permit: SemaphorePermit<'a>,
}

impl PooledConnection<'_> {
    /// Drops the connection instead of returning it, for when a reply is left half read.
    pub(crate) fn discard(&mut self) {
        self.ldap = None;
    }
}

impl Deref for PooledConnection<'_> {
    type Target = Ldap;

    fn deref(&self) -> &Ldap {
        self.ldap.as_ref().expect("present until drop")
    }
}

impl DerefMut for PooledConnection<'_> {
    fn deref_mut(&mut self) -> &mut Ldap {
        self.ldap.as_mut().expect("present until drop")
    }
}

impl Drop for PooledConnection<'_> {
    fn drop(&mut self) {
        if let Some(mut ldap) = self.ldap.take()
            && !ldap.is_closed()
        {
            self.pool
                .idle
                .lock()
                .expect("idle list lock poisoned")
                .push(ldap);
        }
    }
}

/// Checks that `url` is an `ldaps://` or `ldap://` URL with a host; returns true for StartTLS.
fn parse_scheme(url: &str) -> Result<bool, DirectoryError> {
    let invalid = |reason: &str| DirectoryError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };

    let (starttls, rest) = if let Some(rest) = url.strip_prefix("ldaps://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("ldap://") {
        (true, rest)
    } else {
        return Err(invalid("the scheme is not ldaps:// or ldap://"));
    };

    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(invalid("the URL has no host"));
    }
    if rest.len() > authority.len() + 1 {
        return Err(invalid(
            "the URL has a path, but Adgang takes the base DNs from settings",
        ));
    }
    Ok(starttls)
}

/// Builds a TLS client configuration that trusts only the certificates in `ca_file`.
fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>, DirectoryError> {
    let unreadable = |source| DirectoryError::CaFileUnreadable {
        path: ca_file.to_owned(),
        source,
    };
    let invalid = |reason: String| DirectoryError::InvalidCaFile {
        path: ca_file.to_owned(),
        reason,
    };

    let file = File::open(ca_file).map_err(unreadable)?;
    let certificates = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)?;
    if certificates.is_empty() {
        return Err(invalid("no PEM certificate found".to_owned()));
    }

    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|error| invalid(format!("a certificate is not usable as a CA: {error}")))?;
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid(format!("no TLS version is available: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_scheme_accepts_tls_urls() {
        let cases = [
            ("ldaps://127.0.0.1", false),
            ("ldaps://dc.example.org:636", false),
            ("ldaps://dc.example.org/", false),
            ("ldap://dc.example.org", true),
            ("ldaps://[::1]:636", false),
        ];

        for (url, starttls) in cases {
            assert_eq!(parse_scheme(url).unwrap(), starttls, "{url}");
        }
    }

    #[test]
    fn parse_scheme_rejects_other_urls() {
        let cases = [
            "dc.example.org",
            "ldapi:///run/ldapi",
            "https://dc.example.org",
            "ldaps://",
            "ldaps://:636",
            "ldaps://dc.example.org/DC=example,DC=org",
        ];

        for url in cases {
            assert!(parse_scheme(url).is_err(), "{url}");
        }
    }

    #[test]
    fn client_config_rejects_missing_and_empty_ca_files() {
        let folder = tempfile::tempdir().unwrap();
        let missing = folder.path().join("missing.pem");
        let empty = folder.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();

        let missing_error = client_config(&missing).unwrap_err();
        let empty_error = client_config(&empty).unwrap_err();

        assert!(matches!(
            missing_error,
            DirectoryError::CaFileUnreadable { .. }
        ));
        assert!(missing_error.to_string().contains("missing.pem"));
        assert!(matches!(empty_error, DirectoryError::InvalidCaFile { .. }));
        assert!(empty_error.to_string().contains("empty.pem"));
    }
}
