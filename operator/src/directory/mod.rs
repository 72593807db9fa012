//! Active Directory over LDAPS: reading a snapshot of the managed base and applying actions.
//!
//! [`LdapDirectory`] is the one implementation of [`Directory`], the trait the sync layer is
//! generic over. It connects with TLS only (LDAPS, or StartTLS on an `ldap://` URL), trusts
//! only the configured CA file, and keeps a small pool of bound connections so that writes
//! for independent users run concurrently.
//!
//! Every write is guarded in the same call that performs it: the target must lie below the
//! managed base and, unless it is being created, must carry an Adgang link in
//! [`LINK_ATTRIBUTE`](crate::model::LINK_ATTRIBUTE). An account that a person created by hand
//! in the managed base is therefore read but never changed.

mod dn;
mod error;
mod pool;
mod read;
mod secret;
mod write;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::{Action, DirectorySnapshot};

pub use dn::{Dn, escape_dn_value, escape_filter_value, same_dn};
pub use error::DirectoryError;
pub use secret::Secret;

use pool::Pool;

/// Connection settings for the domain controller and the parts of the tree Adgang uses.
#[derive(Clone, Debug)]
pub struct DirectorySettings {
    /// `ldaps://HOST[:PORT]`, or `ldap://HOST[:PORT]` to use StartTLS.
    pub url: String,
    /// PEM file with the CA certificates to trust; the system roots are not used.
    pub ca_file: PathBuf,
    /// DN of the service account that Adgang binds as.
    pub bind_dn: String,
    pub bind_password: Secret,
    /// The OU below which Adgang creates and changes accounts.
    pub managed_base: String,
    /// The naming context of the domain, such as `DC=adgang,DC=test`, searched for groups and
    /// for usernames already taken.
    pub domain_base: String,
    /// Suffix of the userPrincipalName when an action carries none, such as `adgang.test`.
    pub upn_suffix: String,
    /// Maximum number of LDAP connections open at once.
    pub connections: usize,
    /// Time limit for opening a connection and for each LDAP operation.
    pub timeout: Duration,
}

impl DirectorySettings {
    /// Default pool size.
    pub const DEFAULT_CONNECTIONS: usize = 4;
    /// Default time limit for a connection attempt or an operation.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
}

/// The directory operations that the sync layer uses.
pub trait Directory: Send + Sync {
    /// Reads every user under the managed base, the groups named in `group_names`, which of
    /// `username_candidates` are taken in the domain, and the OUs directly under the base.
    fn snapshot(
        &self,
        group_names: &BTreeSet<String>,
        username_candidates: &BTreeSet<String>,
    ) -> impl Future<Output = Result<DirectorySnapshot, DirectoryError>> + Send;

    /// Returns which of `candidates` are sAMAccountNames in use anywhere in the domain, in
    /// lower case; the comparison ignores case, as AD does.
    fn taken_usernames(
        &self,
        candidates: &BTreeSet<String>,
    ) -> impl Future<Output = Result<BTreeSet<String>, DirectoryError>> + Send;

    /// Applies one action; [`Action::SetInitialPassword`] is rejected, because it takes
    /// [`Directory::set_password`] and [`Directory::mark_credentials_delivered`].
    fn apply(&self, action: &Action) -> impl Future<Output = Result<(), DirectoryError>> + Send;

    /// Sets the password of an Adgang account and requires a change at next logon.
    fn set_password(
        &self,
        dn: &str,
        password: &Secret,
    ) -> impl Future<Output = Result<(), DirectoryError>> + Send;

    /// Records on an Adgang account that its initial password has been delivered.
    fn mark_credentials_delivered(
        &self,
        dn: &str,
    ) -> impl Future<Output = Result<(), DirectoryError>> + Send;

    /// Checks that the server responds and the managed base exists, for readiness.
    fn check(&self) -> impl Future<Output = Result<(), DirectoryError>> + Send;
}

/// Active Directory reached over LDAPS with a pool of bound connections.
pub struct LdapDirectory {
    pool: Pool,
    managed_base: String,
    managed_base_dn: Dn,
    domain_base: String,
    domain_base_dn: Dn,
    upn_suffix: String,
}

impl LdapDirectory {
    /// Checks the settings, loads the CA file, and opens and binds the first connection, so
    /// that a wrong address, certificate or password shows up here.
    pub async fn connect(settings: DirectorySettings) -> Result<Self, DirectoryError> {
        let managed_base_dn = Dn::parse(&settings.managed_base)?;
        let domain_base_dn = Dn::parse(&settings.domain_base)?;
        if !managed_base_dn.is_below(&domain_base_dn) {
            return Err(DirectoryError::InvalidDn {
                dn: settings.managed_base.clone(),
                reason: format!(
                    "the managed base is not below the domain base {}",
                    settings.domain_base
                ),
            });
        }

        let pool = Pool::new(&settings)?;
        drop(pool.get().await?);
        tracing::info!(url = %settings.url, bind_dn = %settings.bind_dn, "connected to the directory");

        Ok(Self {
            pool,
            managed_base: settings.managed_base,
            managed_base_dn,
            domain_base: settings.domain_base,
            domain_base_dn,
            upn_suffix: settings.upn_suffix,
        })
    }

    /// Returns the managed base as configured.
    pub fn managed_base(&self) -> &str {
        &self.managed_base
    }
}

impl Directory for LdapDirectory {
    async fn snapshot(
        &self,
        group_names: &BTreeSet<String>,
        username_candidates: &BTreeSet<String>,
    ) -> Result<DirectorySnapshot, DirectoryError> {
        LdapDirectory::snapshot(self, group_names, username_candidates).await
    }

    async fn taken_usernames(
        &self,
        candidates: &BTreeSet<String>,
    ) -> Result<BTreeSet<String>, DirectoryError> {
        LdapDirectory::taken_usernames(self, candidates).await
    }

    async fn apply(&self, action: &Action) -> Result<(), DirectoryError> {
        LdapDirectory::apply(self, action).await
    }

    async fn set_password(&self, dn: &str, password: &Secret) -> Result<(), DirectoryError> {
        LdapDirectory::set_password(self, dn, password).await
    }

    async fn mark_credentials_delivered(&self, dn: &str) -> Result<(), DirectoryError> {
        LdapDirectory::mark_credentials_delivered(self, dn).await
    }

    async fn check(&self) -> Result<(), DirectoryError> {
        LdapDirectory::check(self).await
    }
}
