//! The differences and the reasons a user is not created, in words for the supplier and in
//! the mail's language.
//!
//! `adgang plan` describes the same actions for operators, with DNs and attribute names. A
//! supplier needs to know what changes for a person, not how AD stores it.

use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::expiry;
use crate::model::{Action, DeleteReason};
use crate::plan::Finding;
use crate::templates::Language;

/// Describes a pending action on an existing account, such as "sidste dag ændres fra
/// 30-06-2027 til 30-09-2027".
pub fn action(action: &Action, zone: Tz, language: Language) -> String {
    let da = language == Language::Da;
    let date = |filetime: Option<i64>| match filetime
        .and_then(|f| expiry::last_day_from_account_expires(f, zone))
    {
        Some(day) => language.format_date(day),
        None => if da { "ingen" } else { "none" }.to_owned(),
    };
    match action {
        Action::CreateOrganizationalUnit { .. } | Action::Create { .. } => {
            if da { "oprettes" } else { "created" }.to_owned()
        }
        Action::SetInitialPassword { .. } => if da {
            "får en ny midlertidig adgangskode"
        } else {
            "gets a new initial password"
        }
        .to_owned(),
        Action::UpdateAttributes { changes, .. } => {
            let parts: Vec<String> = changes
                .iter()
                .map(|c| {
                    format!(
                        "{} \"{}\" → \"{}\"",
                        attribute_name(&c.attribute, language),
                        c.from.as_deref().unwrap_or(""),
                        c.to.as_deref().unwrap_or("")
                    )
                })
                .collect();
            let verb = if da { "rettes" } else { "corrected" };
            format!("{verb}: {}", parts.join(", "))
        }
        Action::SetExpiry { from, to, .. } => {
            let (from, to) = (date(*from), date(Some(*to)));
            if da {
                format!("sidste dag ændres fra {from} til {to}")
            } else {
                format!("last day changes from {from} to {to}")
            }
        }
        Action::AddToGroup { group_dn, .. } => {
            let group = group_name(group_dn);
            if da {
                format!("tilføjes gruppen {group}")
            } else {
                format!("added to group {group}")
            }
        }
        Action::RemoveFromGroup { group_dn, .. } => {
            let group = group_name(group_dn);
            if da {
                format!("fjernes fra gruppen {group}")
            } else {
                format!("removed from group {group}")
            }
        }
        Action::Enable { .. } => if da { "aktiveres" } else { "enabled" }.to_owned(),
        Action::Disable { .. } => if da { "deaktiveres" } else { "disabled" }.to_owned(),
        Action::Delete { reason, .. } => match (reason, da) {
            (DeleteReason::FileRemoved, true) => "slettes, fordi filen er fjernet",
            (DeleteReason::FileRemoved, false) => "deleted, because its file was removed",
            (DeleteReason::Expired, true) => "slettes, fordi den sidste dag er passeret",
            (DeleteReason::Expired, false) => "deleted, because its last day has passed",
            (DeleteReason::EmploymentEnded, true) => "slettes, fordi ansættelsen er ophørt",
            (DeleteReason::EmploymentEnded, false) => "deleted, because the employment ended",
        }
        .to_owned(),
    }
}

/// Describes why a user's account is not created, from the plan's finding.
pub fn blocked(finding: &Finding, language: Language) -> String {
    let da = language == Language::Da;
    let date = |day: &NaiveDate| language.format_date(*day);
    match finding {
        Finding::UserFrozen { .. } => if da {
            "filen er ugyldig; se kontrollen på jeres pull request"
        } else {
            "the file is invalid; see the check on your pull request"
        }
        .to_owned(),
        Finding::UsernameTaken { requested, .. } => {
            if da {
                format!("brugernavnet {requested} er optaget; vælg et andet i filen")
            } else {
                format!("the username {requested} is taken; choose another in the file")
            }
        }
        Finding::GroupNotFound { group, .. } => {
            if da {
                format!("gruppen {group} findes ikke i AD; kommunen retter det")
            } else {
                format!("group {group} does not exist in AD; the municipality corrects it")
            }
        }
        Finding::NotCreatedAlreadyExpired { last_day, .. } => {
            if da {
                format!("den sidste dag ({}) er passeret", date(last_day))
            } else {
                format!("its last day ({}) has passed", date(last_day))
            }
        }
        Finding::SupplierFrozen { .. } => if da {
            "jeres supplier.yaml er ugyldig; kommunen retter den"
        } else {
            "your supplier.yaml is invalid; the municipality corrects it"
        }
        .to_owned(),
        Finding::SupplierSuspended { .. } => if da {
            "kommunen har sat jeres brugere i bero"
        } else {
            "the municipality has suspended your users"
        }
        .to_owned(),
        Finding::MassDeletionBlocked { .. } => if da {
            "ændringerne venter på kommunen, fordi de ville slette mange af jeres brugere"
        } else {
            "the changes wait for the municipality, because they would delete many of your users"
        }
        .to_owned(),
        Finding::UnmanagedObject { .. }
        | Finding::UnmanagedGroupMembership { .. }
        | Finding::UsernameChangeRejected { .. }
        | Finding::DuplicateLink { .. }
        | Finding::WrongOrganizationalUnit { .. } => if da {
            "kommunen undersøger kontoen"
        } else {
            "the municipality is looking into the account"
        }
        .to_owned(),
    }
}

fn attribute_name(attribute: &str, language: Language) -> &str {
    let da = language == Language::Da;
    match attribute {
        "givenName" if da => "fornavn",
        "givenName" => "given name",
        "sn" if da => "efternavn",
        "sn" => "surname",
        "displayName" if da => "visningsnavn",
        "displayName" => "display name",
        "mail" => "mail",
        "employeeNumber" if da => "medarbejdernummer",
        "employeeNumber" => "staff number",
        other => other,
    }
}

fn group_name(dn: &str) -> &str {
    dn.split(',')
        .next()
        .and_then(|rdn| rdn.split_once('='))
        .map(|(_, value)| value)
        .unwrap_or(dn)
}
