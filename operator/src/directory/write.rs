//! Writing: applying plan actions, setting passwords, and the guard in front of every write.
//!
//! The guard re-reads the target in the same call, just before the write, so that an account
//! that is not Adgang's is never changed, even when it appeared after the snapshot.

use std::collections::HashSet;

use ldap3::{LdapResult, Mod, Scope};

use super::read::{ACCOUNT_DISABLE, first_value, parse_user_account_control};
use super::{DirectoryError, Dn, LdapDirectory, Secret, escape_filter_value};
use crate::model::{
    Action, CREDENTIALS_ATTRIBUTE, CREDENTIALS_DELIVERED, CREDENTIALS_PENDING, LINK_ATTRIBUTE,
    MANAGED_ATTRIBUTES, UserKey,
};

/// LDAP result codes that the writes treat specially.
mod rc {
    pub const SUCCESS: u32 = 0;
    pub const NO_SUCH_ATTRIBUTE: u32 = 16;
    pub const CONSTRAINT_VIOLATION: u32 = 19;
    pub const ATTRIBUTE_OR_VALUE_EXISTS: u32 = 20;
    pub const NO_SUCH_OBJECT: u32 = 32;
    pub const UNWILLING_TO_PERFORM: u32 = 53;
    pub const ENTRY_ALREADY_EXISTS: u32 = 68;
}

/// userAccountControl of a normal account (0x200) that is disabled (0x2).
const NORMAL_ACCOUNT_DISABLED: u32 = 0x202;

/// An account that passed the guard, as the server holds it now.
struct GuardedAccount {
    /// The DN as AD returns it.
    dn: String,
    user_account_control: u32,
}

impl LdapDirectory {
    /// Applies one action; see [`super::Directory::apply`].
    pub async fn apply(&self, action: &Action) -> Result<(), DirectoryError> {
        match action {
            Action::CreateOrganizationalUnit { supplier, dn } => {
                self.create_organizational_unit(supplier, dn).await
            }
            Action::Create {
                key,
                dn,
                username,
                attributes,
                account_expires,
            } => {
                let request = CreateRequest {
                    key,
                    dn,
                    username,
                    attributes,
                    account_expires: *account_expires,
                };
                self.create_account(request).await
            }
            Action::SetInitialPassword { dn, .. } => Err(DirectoryError::UnsupportedAction {
                action: "SetInitialPassword",
                dn: dn.clone(),
            }),
            Action::UpdateAttributes { key, dn, changes } => {
                let mut mods = Vec::with_capacity(changes.len());
                for change in changes {
                    let attribute = managed_attribute(dn, &change.attribute)?;
                    let values = match change.to.as_deref() {
                        Some(value) if !value.is_empty() => HashSet::from([value.into()]),
                        // Replace with no values removes the attribute, and succeeds when
                        // it is already absent.
                        _ => HashSet::new(),
                    };
                    mods.push(Mod::Replace(attribute.into(), values));
                }
                self.modify_account(key, dn, "update attributes", mods)
                    .await
            }
            Action::SetExpiry { key, dn, to, .. } => {
                let mods = vec![replace("accountExpires", to.to_string())];
                self.modify_account(key, dn, "set accountExpires", mods)
                    .await
            }
            Action::AddToGroup { key, dn, group_dn } => {
                self.change_membership(key, dn, group_dn, Membership::Add)
                    .await
            }
            Action::RemoveFromGroup { key, dn, group_dn } => {
                self.change_membership(key, dn, group_dn, Membership::Remove)
                    .await
            }
            Action::Enable { key, dn } => self.set_enabled(key, dn, true).await,
            Action::Disable { key, dn } => self.set_enabled(key, dn, false).await,
            Action::Delete { key, dn, reason } => self.delete_account(key, dn, *reason).await,
        }
    }

    /// Sets the password of an Adgang account and sets pwdLastSet to 0, so that the user
    /// must change it at next logon.
    pub async fn set_password(&self, dn: &str, password: &Secret) -> Result<(), DirectoryError> {
        let mut ldap = self.pool.get().await?;
        let account = self.guard_existing(&mut ldap, dn, None).await?;

        // AD takes unicodePwd as the password in double quotes, encoded as UTF-16LE.
        let quoted = format!("\"{}\"", password.expose());
        let encoded: Vec<u8> = quoted.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mods = vec![
            Mod::Replace(b"unicodePwd".to_vec(), HashSet::from([encoded])),
            Mod::Replace(b"pwdLastSet".to_vec(), HashSet::from([b"0".to_vec()])),
        ];

        tracing::debug!(dn = %account.dn, "set password");
        let operation = "set password";
        let result = ldap
            .with_timeout(self.pool.timeout)
            .modify(&account.dn, mods)
            .await
            .map_err(|source| self.pool.error(operation, source))?;
        match result.rc {
            rc::SUCCESS => Ok(()),
            rc::CONSTRAINT_VIOLATION => Err(DirectoryError::PasswordRejected {
                dn: account.dn,
                text: result.text,
            }),
            _ => Err(operation_error(operation, &account.dn, result)),
        }
    }

    /// Sets the credential state of an Adgang account to delivered.
    pub async fn mark_credentials_delivered(&self, dn: &str) -> Result<(), DirectoryError> {
        let mut ldap = self.pool.get().await?;
        let account = self.guard_existing(&mut ldap, dn, None).await?;

        let mods = vec![replace(
            CREDENTIALS_ATTRIBUTE,
            CREDENTIALS_DELIVERED.to_owned(),
        )];
        self.modify(&mut ldap, "mark credentials delivered", &account.dn, mods)
            .await
    }

    async fn create_organizational_unit(
        &self,
        supplier: &str,
        dn: &str,
    ) -> Result<(), DirectoryError> {
        self.guard_below_managed_base(dn)?;
        let mut ldap = self.pool.get().await?;

        tracing::debug!(dn, supplier, "add organizational unit");
        let attributes = vec![(
            "objectClass".to_owned(),
            HashSet::from(["organizationalUnit".to_owned()]),
        )];
        let operation = "create organizational unit";
        let result = ldap
            .with_timeout(self.pool.timeout)
            .add(dn, attributes)
            .await
            .map_err(|source| self.pool.error(operation, source))?;
        match result.rc {
            rc::SUCCESS => Ok(()),
            rc::ENTRY_ALREADY_EXISTS => {
                tracing::debug!(dn, "organizational unit already exists");
                Ok(())
            }
            _ => Err(operation_error(operation, dn, result)),
        }
    }

    async fn create_account(&self, request: CreateRequest<'_>) -> Result<(), DirectoryError> {
        let CreateRequest {
            key,
            dn,
            username,
            attributes,
            account_expires,
        } = request;
        self.guard_below_managed_base(dn)?;

        let mut entry: Vec<(String, HashSet<String>)> = vec![
            ("objectClass".into(), HashSet::from(["user".into()])),
            (
                "sAMAccountName".into(),
                HashSet::from([username.to_owned()]),
            ),
            (LINK_ATTRIBUTE.into(), HashSet::from([key.to_link()])),
            (
                CREDENTIALS_ATTRIBUTE.into(),
                HashSet::from([CREDENTIALS_PENDING.into()]),
            ),
            (
                "accountExpires".into(),
                HashSet::from([account_expires.to_string()]),
            ),
            (
                "userAccountControl".into(),
                HashSet::from([NORMAL_ACCOUNT_DISABLED.to_string()]),
            ),
        ];
        for (name, value) in attributes {
            let name = managed_attribute(dn, name)?;
            if !value.is_empty() {
                entry.push((name.to_owned(), HashSet::from([value.clone()])));
            }
        }
        let has_principal_name = entry
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("userPrincipalName"));
        if !has_principal_name {
            let principal_name = format!("{username}@{}", self.upn_suffix);
            entry.push(("userPrincipalName".into(), HashSet::from([principal_name])));
        }

        let mut ldap = self.pool.get().await?;
        tracing::debug!(dn, %key, username, "add user");
        let operation = "create account";
        let result = ldap
            .with_timeout(self.pool.timeout)
            .add(dn, entry)
            .await
            .map_err(|source| self.pool.error(operation, source))?;
        match result.rc {
            rc::SUCCESS => Ok(()),
            rc::ENTRY_ALREADY_EXISTS => Err(DirectoryError::AlreadyExists {
                dn: dn.to_owned(),
                username: username.to_owned(),
            }),
            _ => Err(operation_error(operation, dn, result)),
        }
    }

    async fn modify_account(
        &self,
        key: &UserKey,
        dn: &str,
        operation: &str,
        mods: Vec<Mod<Vec<u8>>>,
    ) -> Result<(), DirectoryError> {
        let mut ldap = self.pool.get().await?;
        let account = self.guard_existing(&mut ldap, dn, Some(key)).await?;
        self.modify(&mut ldap, operation, &account.dn, mods).await
    }

    async fn set_enabled(
        &self,
        key: &UserKey,
        dn: &str,
        enabled: bool,
    ) -> Result<(), DirectoryError> {
        let mut ldap = self.pool.get().await?;
        let account = self.guard_existing(&mut ldap, dn, Some(key)).await?;

        // Only the disable flag changes; other flags such as "password never expires" stay.
        let current = account.user_account_control;
        let expected = if enabled {
            current & !ACCOUNT_DISABLE
        } else {
            current | ACCOUNT_DISABLE
        };
        if expected == current {
            tracing::debug!(dn = %account.dn, enabled, "account already in the requested state");
            return Ok(());
        }

        let operation = if enabled {
            "enable account"
        } else {
            "disable account"
        };
        let mods = vec![replace("userAccountControl", expected.to_string())];
        self.modify(&mut ldap, operation, &account.dn, mods).await
    }

    async fn change_membership(
        &self,
        key: &UserKey,
        dn: &str,
        group_dn: &str,
        change: Membership,
    ) -> Result<(), DirectoryError> {
        let mut ldap = self.pool.get().await?;
        let account = self.guard_existing(&mut ldap, dn, Some(key)).await?;
        self.guard_group(&mut ldap, group_dn).await?;

        let member = HashSet::from([account.dn.clone().into_bytes()]);
        let (operation, mods) = match change {
            Membership::Add => (
                "add group member",
                vec![Mod::Add(b"member".to_vec(), member)],
            ),
            Membership::Remove => (
                "remove group member",
                vec![Mod::Delete(b"member".to_vec(), member)],
            ),
        };

        tracing::debug!(dn = group_dn, member = %account.dn, operation, "modify group");
        let result = ldap
            .with_timeout(self.pool.timeout)
            .modify(group_dn, mods)
            .await
            .map_err(|source| self.pool.error(operation, source))?;

        // Samba 4.17 returns 68 for a member already present and 53 for one already absent,
        // where RFC 4511 specifies 20 and 16.
        let done = match (change, result.rc) {
            (_, rc::SUCCESS) => true,
            (Membership::Add, rc::ENTRY_ALREADY_EXISTS | rc::ATTRIBUTE_OR_VALUE_EXISTS) => true,
            (Membership::Remove, rc::NO_SUCH_ATTRIBUTE) => true,
            // 53 also covers other rejections, so check that the member is really gone.
            (Membership::Remove, rc::UNWILLING_TO_PERFORM) => {
                !self.is_member(&mut ldap, group_dn, &account.dn).await?
            }
            _ => false,
        };
        if done {
            Ok(())
        } else {
            Err(operation_error(operation, group_dn, result))
        }
    }

    async fn delete_account(
        &self,
        key: &UserKey,
        dn: &str,
        reason: crate::model::DeleteReason,
    ) -> Result<(), DirectoryError> {
        let mut ldap = self.pool.get().await?;
        let Some(account) = self.guard(&mut ldap, dn, Some(key)).await? else {
            tracing::debug!(dn, "account already deleted");
            return Ok(());
        };

        tracing::debug!(dn = %account.dn, ?reason, "delete");
        let operation = "delete account";
        let result = ldap
            .with_timeout(self.pool.timeout)
            .delete(&account.dn)
            .await
            .map_err(|source| self.pool.error(operation, source))?;
        match result.rc {
            rc::SUCCESS | rc::NO_SUCH_OBJECT => Ok(()),
            _ => Err(operation_error(operation, &account.dn, result)),
        }
    }

    /// Sends one modify request and expects success.
    async fn modify(
        &self,
        ldap: &mut ldap3::Ldap,
        operation: &str,
        dn: &str,
        mods: Vec<Mod<Vec<u8>>>,
    ) -> Result<(), DirectoryError> {
        tracing::debug!(dn, operation, "modify");
        let result = ldap
            .with_timeout(self.pool.timeout)
            .modify(dn, mods)
            .await
            .map_err(|source| self.pool.error(operation, source))?;
        match result.rc {
            rc::SUCCESS => Ok(()),
            rc::NO_SUCH_OBJECT => Err(DirectoryError::NotFound { dn: dn.to_owned() }),
            _ => Err(operation_error(operation, dn, result)),
        }
    }

    /// Rejects a DN that is not strictly below the managed base.
    fn guard_below_managed_base(&self, dn: &str) -> Result<(), DirectoryError> {
        if Dn::parse(dn)?.is_below(&self.managed_base_dn) {
            Ok(())
        } else {
            Err(DirectoryError::OutsideManagedBase {
                dn: dn.to_owned(),
                managed_base: self.managed_base.clone(),
            })
        }
    }

    /// Like [`Self::guard`], but a missing account is [`DirectoryError::NotFound`].
    async fn guard_existing(
        &self,
        ldap: &mut ldap3::Ldap,
        dn: &str,
        key: Option<&UserKey>,
    ) -> Result<GuardedAccount, DirectoryError> {
        self.guard(ldap, dn, key)
            .await?
            .ok_or_else(|| DirectoryError::NotFound { dn: dn.to_owned() })
    }

    /// Reads the account at `dn` and checks that Adgang may change it: below the managed
    /// base, a user and not a computer, and linked to `key` (or to any Adgang user when `key`
    /// is `None`). Returns `None` when no object has that DN.
    async fn guard(
        &self,
        ldap: &mut ldap3::Ldap,
        dn: &str,
        key: Option<&UserKey>,
    ) -> Result<Option<GuardedAccount>, DirectoryError> {
        self.guard_below_managed_base(dn)?;

        let attributes = vec![LINK_ATTRIBUTE, "objectClass", "userAccountControl"];
        let Some(entry) = self.read_entry(ldap, dn, attributes).await? else {
            return Ok(None);
        };

        let is_user = has_value(&entry, "objectClass", "user");
        let is_computer = has_value(&entry, "objectClass", "computer");
        if !is_user || is_computer {
            return Err(DirectoryError::WrongObjectClass {
                dn: entry.dn,
                expected: "a user account",
            });
        }

        let link_value = first_value(&entry, LINK_ATTRIBUTE);
        let Some(found) = link_value.and_then(UserKey::from_link) else {
            return Err(DirectoryError::NotAdgangObject {
                dn: entry.dn.clone(),
                found: link_value.map(str::to_owned),
            });
        };
        if let Some(expected) = key
            && *expected != found
        {
            return Err(DirectoryError::LinkMismatch {
                dn: entry.dn,
                expected: expected.clone(),
                found,
            });
        }

        let control = first_value(&entry, "userAccountControl").unwrap_or_default();
        let user_account_control = parse_user_account_control(control).ok_or_else(|| {
            DirectoryError::InvalidAttribute {
                dn: entry.dn.clone(),
                attribute: "userAccountControl",
                value: control.to_owned(),
            }
        })?;

        Ok(Some(GuardedAccount {
            dn: entry.dn,
            user_account_control,
        }))
    }

    /// Checks that `group_dn` is a group in the domain.
    async fn guard_group(
        &self,
        ldap: &mut ldap3::Ldap,
        group_dn: &str,
    ) -> Result<(), DirectoryError> {
        let parsed = Dn::parse(group_dn)?;
        if !parsed.is_below(&self.domain_base_dn) {
            return Err(DirectoryError::InvalidDn {
                dn: group_dn.to_owned(),
                reason: format!(
                    "the group is not below the domain base {}",
                    self.domain_base
                ),
            });
        }

        let entry = self.read_entry(ldap, group_dn, vec!["objectClass"]).await?;
        match entry {
            None => Err(DirectoryError::NotFound {
                dn: group_dn.to_owned(),
            }),
            Some(entry) if has_value(&entry, "objectClass", "group") => Ok(()),
            Some(entry) => Err(DirectoryError::WrongObjectClass {
                dn: entry.dn,
                expected: "a group",
            }),
        }
    }

    /// Returns true when the group at `group_dn` lists `member_dn` in `member`.
    async fn is_member(
        &self,
        ldap: &mut ldap3::Ldap,
        group_dn: &str,
        member_dn: &str,
    ) -> Result<bool, DirectoryError> {
        let filter = format!("(member={})", escape_filter_value(member_dn));
        let operation = "read group membership";
        let result = ldap
            .with_timeout(self.pool.timeout)
            .search(group_dn, Scope::Base, &filter, vec!["1.1"])
            .await
            .map_err(|source| self.pool.error(operation, source))?;
        Ok(!result.0.is_empty())
    }

    /// Reads one entry by DN on the connection the write will use; `None` when it is absent.
    async fn read_entry(
        &self,
        ldap: &mut ldap3::Ldap,
        dn: &str,
        attributes: Vec<&str>,
    ) -> Result<Option<ldap3::SearchEntry>, DirectoryError> {
        let operation = "read entry";
        tracing::debug!(dn, "read entry");
        let ldap3::SearchResult(entries, result) = ldap
            .with_timeout(self.pool.timeout)
            .search(dn, Scope::Base, "(objectClass=*)", attributes)
            .await
            .map_err(|source| self.pool.error(operation, source))?;
        match result.rc {
            rc::SUCCESS => Ok(entries
                .into_iter()
                .next()
                .map(ldap3::SearchEntry::construct)),
            rc::NO_SUCH_OBJECT => Ok(None),
            _ => Err(operation_error(operation, dn, result)),
        }
    }
}

/// The fields of [`Action::Create`].
struct CreateRequest<'a> {
    key: &'a UserKey,
    dn: &'a str,
    username: &'a str,
    attributes: &'a std::collections::BTreeMap<String, String>,
    account_expires: i64,
}

#[derive(Clone, Copy, Debug)]
enum Membership {
    Add,
    Remove,
}

/// Returns the canonical spelling of `attribute` when Adgang owns it.
fn managed_attribute(dn: &str, attribute: &str) -> Result<&'static str, DirectoryError> {
    MANAGED_ATTRIBUTES
        .into_iter()
        .find(|name| name.eq_ignore_ascii_case(attribute))
        .ok_or_else(|| DirectoryError::UnmanagedAttribute {
            dn: dn.to_owned(),
            attribute: attribute.to_owned(),
        })
}

fn replace(attribute: &str, value: String) -> Mod<Vec<u8>> {
    Mod::Replace(
        attribute.as_bytes().to_vec(),
        HashSet::from([value.into_bytes()]),
    )
}

fn has_value(entry: &ldap3::SearchEntry, attribute: &str, expected: &str) -> bool {
    entry
        .attrs
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .flat_map(|(_, values)| values)
        .any(|value| value.eq_ignore_ascii_case(expected))
}

fn operation_error(operation: &str, dn: &str, result: LdapResult) -> DirectoryError {
    DirectoryError::Operation {
        operation: operation.to_owned(),
        dn: dn.to_owned(),
        result: Box::new(result),
    }
}
