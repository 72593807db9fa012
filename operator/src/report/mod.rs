//! The monthly overview that each supplier receives: its accounts as AD stores them, the users
//! in git that are not created yet, and what the next sync would change.
//!
//! The overview is built from the directory snapshot, not from git, so it shows the access
//! that actually exists. Git contributes three things AD does not store: the first day of
//! access (`validFrom`), the users still to be created, and the differences, which are the
//! plan's pending actions per account. [`build`] is pure; rendering is in [`csv`] and in the
//! mail templates ([`crate::templates`]).

pub mod csv;
pub mod delivery;
pub mod describe;
pub mod outbox;
pub mod run;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Serialize;

use crate::desired::DesiredState;
use crate::directory::same_dn;
use crate::expiry;
use crate::model::{Account, Action, DirectorySnapshot, UserKey};
use crate::plan::{Finding, Plan};
use crate::resources::SupplierSpec;
use crate::sync::action_name;
use crate::templates::{Language, MailAttachment, MailContent, TemplateError, Templates};

/// One supplier's overview.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Overview {
    /// The supplier's id (its folder name).
    pub supplier: String,
    /// The supplier's legal name from `supplier.yaml`.
    pub supplier_name: String,
    /// The supplier's secure mail address, to which the overview is sent.
    pub secure_mail: String,
    /// Day the overview was made, in the configured time zone.
    pub generated_on: NaiveDate,
    /// Commit of the repository that the pending users and differences were read from.
    pub commit: String,
    /// Accounts in AD that Adgang created for this supplier, by username.
    pub accounts: Vec<OverviewAccount>,
    /// Users in git that have no account yet.
    pub pending: Vec<PendingUser>,
    /// Changes the next sync makes to existing accounts, because git and AD differ.
    pub differences: Vec<Difference>,
}

/// An account as AD stores it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OverviewAccount {
    /// sAMAccountName.
    pub username: String,
    /// displayName, or given name and surname when AD has no display name.
    pub name: String,
    pub mail: Option<String>,
    pub enabled: bool,
    /// First day of access, from the user's file in git; `None` when the file is gone.
    pub valid_from: Option<NaiveDate>,
    /// Last day of access from `accountExpires`, after which AD blocks the login and the
    /// next sync deletes the account; `None` when the account never expires.
    pub last_day: Option<NaiveDate>,
    /// Names of the groups the account is a direct member of.
    pub groups: Vec<String>,
    /// The user's file name in git (`metadata.name`).
    pub file: String,
}

/// A user declared in git whose account does not exist yet, or whose file is invalid.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PendingUser {
    /// The user's file name in git (`metadata.name`).
    pub file: String,
    /// The person's name, or the file name when the file is invalid.
    pub name: String,
    /// The username the next sync creates, when the plan creates the account.
    pub username: Option<String>,
    /// `None` when the file is invalid.
    pub valid_from: Option<NaiveDate>,
    /// `None` when the file is invalid.
    pub last_day: Option<NaiveDate>,
    /// Reason that the next sync does not create the account, when it does not.
    pub blocked: Option<String>,
}

/// One pending change to an existing account.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    pub username: String,
    /// The user's file name in git (`metadata.name`).
    pub file: String,
    /// Short action name, as in `adgang plan` (`set-expiry`, `add-to-group`, `delete`, ...).
    pub action: String,
    /// Description of the change, in words for the supplier in the mail's language.
    pub detail: String,
}

/// Builds the overview of every supplier that has a valid `supplier.yaml`, sorted by id.
///
/// `snapshot` and `plan` must come from the same run as `desired`, such as from
/// [`crate::sync::prepare`]. Accounts are assigned to a supplier by their Adgang link, so an
/// object that Adgang did not create is in no overview. Differences and reasons are written
/// in `language`.
pub fn build(
    desired: &DesiredState,
    snapshot: &DirectorySnapshot,
    plan: &Plan,
    zone: Tz,
    language: Language,
    today: NaiveDate,
    commit: &str,
) -> Vec<Overview> {
    let mut accounts_by_supplier: BTreeMap<&str, Vec<&Account>> = BTreeMap::new();
    for account in &snapshot.accounts {
        if let Some(link) = &account.link {
            accounts_by_supplier
                .entry(link.supplier.as_str())
                .or_default()
                .push(account);
        }
    }

    let mut overviews = Vec::new();
    for (id, supplier) in &desired.suppliers {
        let Some(spec) = &supplier.spec else { continue };
        let accounts = accounts_by_supplier.remove(id.as_str()).unwrap_or_default();

        let mut rows: Vec<OverviewAccount> = accounts
            .iter()
            .map(|account| account_row(account, desired, snapshot, spec, zone))
            .collect();
        rows.sort_by(|a, b| a.username.cmp(&b.username));

        let existing: Vec<&UserKey> = accounts.iter().filter_map(|a| a.link.as_ref()).collect();
        let mut pending: Vec<PendingUser> = supplier
            .users
            .values()
            .filter(|user| !existing.contains(&&user.key))
            .map(|user| PendingUser {
                file: user.key.name.clone(),
                name: format!("{} {}", user.spec.given_name, user.spec.surname),
                username: planned_username(plan, &user.key),
                valid_from: Some(user.spec.valid_from),
                last_day: Some(user.spec.last_day()),
                blocked: blocked_reason(plan, &user.key, language),
            })
            .collect();
        // A user whose file is invalid has no spec, so the row shows the file and its error.
        for name in &supplier.frozen_users {
            let key = UserKey::new(id, name);
            if existing.contains(&&key) {
                continue;
            }
            pending.push(invalid_user(desired, id, name, language));
        }

        overviews.push(Overview {
            supplier: id.clone(),
            supplier_name: spec.display_name.clone(),
            secure_mail: spec.secure_mail.clone(),
            generated_on: today,
            commit: commit.to_owned(),
            accounts: rows,
            pending,
            differences: differences(plan, id, &existing, zone, language),
        });
    }
    overviews
}

fn account_row(
    account: &Account,
    desired: &DesiredState,
    snapshot: &DirectorySnapshot,
    spec: &SupplierSpec,
    zone: Tz,
) -> OverviewAccount {
    let link = account
        .link
        .as_ref()
        .expect("only linked accounts are listed");
    let user = desired
        .suppliers
        .get(&link.supplier)
        .and_then(|s| s.users.get(&link.name));
    let attribute = |name: &str| account.attributes.get(name).cloned();
    let name = attribute("displayName").unwrap_or_else(|| {
        let given = attribute("givenName").unwrap_or_default();
        let surname = attribute("sn").unwrap_or_default();
        format!("{given} {surname}").trim().to_owned()
    });

    OverviewAccount {
        username: account.username.clone(),
        name,
        mail: attribute("mail"),
        enabled: account.enabled,
        valid_from: user.map(|u| u.spec.valid_from),
        last_day: account
            .account_expires
            .and_then(|filetime| expiry::last_day_from_account_expires(filetime, zone)),
        groups: group_names(&account.member_of, snapshot, spec),
        file: link.name.clone(),
    }
}

/// Names the groups in `member_of`: a group the supplier may use by its name as written in
/// `supplier.yaml`, any other group by the value of its first RDN.
fn group_names(
    member_of: &std::collections::BTreeSet<String>,
    snapshot: &DirectorySnapshot,
    spec: &SupplierSpec,
) -> Vec<String> {
    let mut names: Vec<String> = member_of
        .iter()
        .map(|dn| {
            let allowed = spec.groups.iter().find(|name| {
                snapshot
                    .groups
                    .get(&name.to_lowercase())
                    .is_some_and(|group_dn| same_dn(group_dn, dn))
            });
            match allowed {
                Some(name) => name.clone(),
                None => first_rdn_value(dn).to_owned(),
            }
        })
        .collect();
    names.sort();
    names
}

fn first_rdn_value(dn: &str) -> &str {
    dn.split(',')
        .next()
        .and_then(|rdn| rdn.split_once('='))
        .map(|(_, value)| value)
        .unwrap_or(dn)
}

fn planned_username(plan: &Plan, key: &UserKey) -> Option<String> {
    plan.accounts
        .iter()
        .find(|a| &a.key == key && a.actions.iter().any(|x| matches!(x, Action::Create { .. })))
        .map(|a| a.username.clone())
}

/// Describes why the plan does not create the account of `key`, from its findings.
/// Builds the row of a user whose file is invalid, naming the file's first error.
fn invalid_user(
    desired: &DesiredState,
    supplier: &str,
    name: &str,
    language: Language,
) -> PendingUser {
    let path = format!(
        "{}/{supplier}/users/{name}.yaml",
        crate::desired::SUPPLIERS_DIR
    );
    let error = desired.errors.iter().find(|error| error.path == path);
    let detail = match error {
        Some(error) => match &error.field {
            Some(field) => format!("{path}: {field}: {}", error.message),
            None => format!("{path}: {}", error.message),
        },
        None => path.clone(),
    };
    let blocked = match language {
        Language::Da => format!("filen er ugyldig ({detail}); se kontrollen på jeres pull request"),
        Language::En => {
            format!("the file is invalid ({detail}); see the check on your pull request")
        }
    };
    PendingUser {
        file: name.to_owned(),
        name: name.to_owned(),
        username: None,
        valid_from: None,
        last_day: None,
        blocked: Some(blocked),
    }
}

fn blocked_reason(plan: &Plan, key: &UserKey, language: Language) -> Option<String> {
    if planned_username(plan, key).is_some() {
        return None;
    }
    let finding = plan.findings.iter().find(|finding| match finding {
        Finding::UserFrozen { key: k, .. }
        | Finding::UsernameTaken { key: k, .. }
        | Finding::GroupNotFound { key: k, .. }
        | Finding::NotCreatedAlreadyExpired { key: k, .. } => k == key,
        Finding::SupplierFrozen { supplier }
        | Finding::SupplierSuspended { supplier }
        | Finding::MassDeletionBlocked { supplier, .. } => supplier == &key.supplier,
        _ => false,
    })?;
    Some(describe::blocked(finding, language))
}

fn differences(
    plan: &Plan,
    supplier: &str,
    existing: &[&UserKey],
    zone: Tz,
    language: Language,
) -> Vec<Difference> {
    let mut found = Vec::new();
    for account in plan.accounts.iter().filter(|a| a.key.supplier == supplier) {
        if !existing.contains(&&account.key) {
            continue;
        }
        for action in &account.actions {
            found.push(Difference {
                username: account.username.clone(),
                file: account.key.name.clone(),
                action: action_name(action).to_owned(),
                detail: describe::action(action, zone, language),
            });
        }
    }
    found
}

/// Renders a supplier's overview mail: the text from the `overview` template and the CSV as
/// an attachment named `<supplier>-<yyyy-mm>.csv`.
pub fn overview_mail(
    templates: &Templates,
    overview: &Overview,
) -> Result<MailContent, TemplateError> {
    let rendered = templates.overview(overview)?;
    let filename = format!(
        "{}-{}.csv",
        overview.supplier,
        overview.generated_on.format("%Y-%m")
    );
    let csv = csv::render(overview, templates.language());
    Ok(MailContent {
        subject: rendered.subject,
        text: rendered.text,
        attachments: vec![MailAttachment {
            filename,
            content_type: "text/csv; charset=utf-8".to_owned(),
            content: csv.into_bytes(),
        }],
    })
}

#[cfg(test)]
mod tests;
