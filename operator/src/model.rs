//! Values shared by the plan and the directory: what AD holds for an account, and the
//! actions that change it.
//!
//! These types carry no behaviour beyond small helpers, so the plan can be computed and
//! tested without a directory, and the directory can be tested without the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

/// Prefix of the link attribute value that marks an object as created by Adgang.
pub const LINK_PREFIX: &str = "adgang:v1:";

/// Attribute holding the link from an AD object to its file (written at creation, never changed).
pub const LINK_ATTRIBUTE: &str = "adminDescription";

/// Attribute holding Adgang's credential state of an account.
pub const CREDENTIALS_ATTRIBUTE: &str = "adminDisplayName";

/// Value of [`CREDENTIALS_ATTRIBUTE`] while the initial password has not been delivered.
pub const CREDENTIALS_PENDING: &str = "adgang:credentials-pending";

/// Value of [`CREDENTIALS_ATTRIBUTE`] once the initial password has been delivered.
pub const CREDENTIALS_DELIVERED: &str = "adgang:credentials-delivered";

/// Stable identity of a supplier user: the supplier and the object's `metadata.name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct UserKey {
    pub supplier: String,
    pub name: String,
}

impl UserKey {
    pub fn new(supplier: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            supplier: supplier.into(),
            name: name.into(),
        }
    }

    /// Formats the key as the value of the link attribute.
    pub fn to_link(&self) -> String {
        format!("{LINK_PREFIX}{}/{}", self.supplier, self.name)
    }

    /// Parses a link attribute value; `None` when the value is not an Adgang link.
    pub fn from_link(value: &str) -> Option<Self> {
        let rest = value.strip_prefix(LINK_PREFIX)?;
        let (supplier, name) = rest.split_once('/')?;
        if supplier.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(Self::new(supplier, name))
    }
}

impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.supplier, self.name)
    }
}

/// Attributes that Adgang owns on an account it created, by LDAP attribute name.
pub const MANAGED_ATTRIBUTES: [&str; 6] = [
    "givenName",
    "sn",
    "displayName",
    "mail",
    "employeeNumber",
    "userPrincipalName",
];

/// One user object found under the managed base.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Account {
    pub dn: String,
    /// objectGUID in its usual text form.
    pub object_guid: String,
    /// sAMAccountName.
    pub username: String,
    /// Link to the file that created it; `None` for objects Adgang did not create.
    pub link: Option<UserKey>,
    /// Values of [`MANAGED_ATTRIBUTES`] that are present.
    pub attributes: BTreeMap<String, String>,
    /// accountExpires in FILETIME units; `None` when the account never expires.
    pub account_expires: Option<i64>,
    pub enabled: bool,
    /// True while the initial password has not been delivered.
    pub credentials_pending: bool,
    /// Distinguished names of the groups the account is a direct member of.
    pub member_of: BTreeSet<String>,
}

/// The part of the directory's content that the plan needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DirectorySnapshot {
    /// Every user object under the managed base, created by Adgang or not.
    pub accounts: Vec<Account>,
    /// Groups named by any supplier, sAMAccountName (lower case) to DN; absent when not found.
    pub groups: BTreeMap<String, String>,
    /// sAMAccountNames in use anywhere in the domain (lower case) among the candidates asked for.
    pub taken_usernames: BTreeSet<String>,
    /// Organisational units that exist directly under the managed base (DNs, as AD returns them).
    pub organizational_units: BTreeSet<String>,
}

/// Reason for deleting an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DeleteReason {
    /// The user's file is no longer on the branch.
    FileRemoved,
    /// The last day of access is past.
    Expired,
    /// The employment ended.
    EmploymentEnded,
}

/// One change to AD, for one account (or the OU of a supplier).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    /// Create the supplier's organisational unit.
    CreateOrganizationalUnit {
        supplier: String,
        dn: String,
    },
    /// Create a disabled account with its attributes, link and expiry.
    Create {
        key: UserKey,
        dn: String,
        username: String,
        attributes: BTreeMap<String, String>,
        account_expires: i64,
    },
    /// Set a new random initial password, deliver it, then mark it delivered.
    SetInitialPassword {
        key: UserKey,
        dn: String,
        username: String,
        display_name: String,
    },
    /// Replace managed attributes; `None` removes the attribute.
    UpdateAttributes {
        key: UserKey,
        dn: String,
        changes: Vec<AttributeChange>,
    },
    /// Set accountExpires.
    SetExpiry {
        key: UserKey,
        dn: String,
        from: Option<i64>,
        to: i64,
    },
    AddToGroup {
        key: UserKey,
        dn: String,
        group_dn: String,
    },
    RemoveFromGroup {
        key: UserKey,
        dn: String,
        group_dn: String,
    },
    Enable {
        key: UserKey,
        dn: String,
    },
    Disable {
        key: UserKey,
        dn: String,
    },
    Delete {
        key: UserKey,
        dn: String,
        reason: DeleteReason,
    },
}

/// A change of one managed attribute.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttributeChange {
    pub attribute: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Action {
    /// Returns the user the action concerns, or `None` for an OU.
    pub fn key(&self) -> Option<&UserKey> {
        match self {
            Action::CreateOrganizationalUnit { .. } => None,
            Action::Create { key, .. }
            | Action::SetInitialPassword { key, .. }
            | Action::UpdateAttributes { key, .. }
            | Action::SetExpiry { key, .. }
            | Action::AddToGroup { key, .. }
            | Action::RemoveFromGroup { key, .. }
            | Action::Enable { key, .. }
            | Action::Disable { key, .. }
            | Action::Delete { key, .. } => Some(key),
        }
    }

    /// Returns the DN of the object the action writes.
    pub fn dn(&self) -> &str {
        match self {
            Action::CreateOrganizationalUnit { dn, .. }
            | Action::Create { dn, .. }
            | Action::SetInitialPassword { dn, .. }
            | Action::UpdateAttributes { dn, .. }
            | Action::SetExpiry { dn, .. }
            | Action::AddToGroup { dn, .. }
            | Action::RemoveFromGroup { dn, .. }
            | Action::Enable { dn, .. }
            | Action::Disable { dn, .. }
            | Action::Delete { dn, .. } => dn,
        }
    }
}
