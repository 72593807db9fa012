//! Human-readable rendering of plans and sync reports.
//!
//! The JSON form is the serde form of [`SyncReport`]; this module only writes the text form,
//! one block per supplier, so a reviewer can read what a sync will do before it does it.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono_tz::Tz;

use crate::expiry;
use crate::model::{Action, DeleteReason};
use crate::plan::{AccountPlan, Finding};
use crate::sync::{Failure, SyncReport, action_name};

/// Renders a report as text. `applied` is false for `adgang plan`, which changes nothing.
pub fn render_text(report: &SyncReport, zone: Tz, applied: bool) -> String {
    let mut out = String::new();
    let short = &report.commit.id[..report.commit.id.len().min(12)];
    let _ = writeln!(out, "Commit {short} {:?}", report.commit.summary);
    match &report.last_applied {
        Some(last) if *last == report.commit.id => {
            let _ = writeln!(out, "Last applied: the same commit");
        }
        Some(last) => {
            let _ = writeln!(out, "Last applied: {}", &last[..last.len().min(12)]);
        }
        None => {
            let _ = writeln!(out, "Last applied: none (first run)");
        }
    }
    out.push('\n');

    if report.plan.is_empty() {
        out.push_str("No changes: AD matches the repository.\n");
    }
    for action in &report.plan.organizational_units {
        let _ = writeln!(out, "create organisational unit {}", action.dn());
    }

    let mut by_supplier: BTreeMap<&str, Vec<&AccountPlan>> = BTreeMap::new();
    for account in report
        .plan
        .accounts
        .iter()
        .filter(|a| !a.actions.is_empty())
    {
        by_supplier
            .entry(&account.key.supplier)
            .or_default()
            .push(account);
    }
    for (supplier, accounts) in by_supplier {
        let _ = writeln!(out, "Supplier {supplier}:");
        for account in accounts {
            let steps: Vec<String> = account.actions.iter().map(|a| describe(a, zone)).collect();
            let drift = if account.drift {
                " (puts back a change made in AD)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:<24} {:<20} {}{drift}",
                account.key.name,
                account.username,
                steps.join(", ")
            );
        }
    }

    if !report.file_errors.is_empty() {
        let _ = writeln!(
            out,
            "\nInvalid files (their users are left as they are in AD):"
        );
        for error in &report.file_errors {
            let _ = writeln!(out, "  {error}");
        }
    }
    if !report.late_merges.is_empty() {
        let _ = writeln!(out, "\nApplied although merged after the notice deadline:");
        for line in &report.late_merges {
            let _ = writeln!(out, "  {line}");
        }
    }
    if !report.unauthorised.is_empty() {
        let _ = writeln!(
            out,
            "\nUnauthorised commits (their suppliers stay as last applied):"
        );
        for problem in &report.unauthorised {
            let _ = writeln!(out, "  {problem}");
        }
    }
    if !report.plan.findings.is_empty() {
        let _ = writeln!(out, "\nFindings:");
        for finding in &report.plan.findings {
            let _ = writeln!(out, "  {}", describe_finding(finding));
        }
    }
    if !report.failures.is_empty() {
        let _ = writeln!(out, "\nFailed (the next run tries again):");
        for failure in &report.failures {
            let who = failure
                .key
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {who} {} {}: {}",
                failure.action, failure.dn, failure.error
            );
        }
    }

    let counts = count_actions(report, applied);
    let verb = if applied { "Applied" } else { "Planned" };
    let _ = writeln!(
        out,
        "\n{verb}: {} created, {} updated, {} deleted, {} enabled, {} disabled{}",
        counts.created,
        counts.updated,
        counts.deleted,
        counts.enabled,
        counts.disabled,
        if applied {
            format!(
                "; {} actions succeeded, {} failed",
                report.applied,
                report.failures.len()
            )
        } else {
            String::new()
        }
    );
    out
}

#[derive(Default)]
struct Counts {
    created: usize,
    updated: usize,
    deleted: usize,
    enabled: usize,
    disabled: usize,
}

/// Counts the planned actions, or with `applied` only those that succeeded, so that an account
/// whose credentials mail failed is not counted as enabled.
fn count_actions(report: &SyncReport, applied: bool) -> Counts {
    let mut counts = Counts::default();
    for account in &report.plan.accounts {
        let actions = if applied {
            applied_actions(account, &report.failures)
        } else {
            &account.actions[..]
        };
        let mut updated = false;
        for action in actions {
            match action {
                Action::Create { .. } => counts.created += 1,
                Action::Delete { .. } => counts.deleted += 1,
                Action::Enable { .. } => counts.enabled += 1,
                Action::Disable { .. } => counts.disabled += 1,
                Action::UpdateAttributes { .. }
                | Action::SetExpiry { .. }
                | Action::AddToGroup { .. }
                | Action::RemoveFromGroup { .. } => updated = true,
                Action::SetInitialPassword { .. } | Action::CreateOrganizationalUnit { .. } => {}
            }
        }
        let created = actions.iter().any(|a| matches!(a, Action::Create { .. }));
        if updated && !created {
            counts.updated += 1;
        }
    }
    counts
}

/// Returns the account's actions that were applied. A failed action stops the rest of its
/// account, so these are the actions before the failed one, and none when the whole account
/// was skipped or the failed action cannot be found in the plan.
fn applied_actions<'a>(account: &'a AccountPlan, failures: &[Failure]) -> &'a [Action] {
    let belongs = |failure: &&Failure| match &failure.key {
        Some(key) => *key == account.key,
        None => account.actions.iter().any(|a| a.dn() == failure.dn),
    };
    let Some(failure) = failures.iter().find(belongs) else {
        return &account.actions;
    };
    let end = account
        .actions
        .iter()
        .position(|a| action_name(a) == failure.action && a.dn() == failure.dn)
        .unwrap_or(0);
    &account.actions[..end]
}

fn group_name(dn: &str) -> &str {
    dn.split(',')
        .next()
        .and_then(|rdn| rdn.split_once('='))
        .map(|(_, v)| v)
        .unwrap_or(dn)
}

fn date_of(filetime: i64, zone: Tz) -> String {
    expiry::last_day_from_account_expires(filetime, zone)
        .map(|d| d.to_string())
        .unwrap_or_else(|| "never".to_owned())
}

/// Describes one action in a few words.
pub fn describe(action: &Action, zone: Tz) -> String {
    match action {
        Action::CreateOrganizationalUnit { dn, .. } => format!("create OU {dn}"),
        Action::Create {
            account_expires, ..
        } => {
            format!(
                "create (disabled, last day {})",
                date_of(*account_expires, zone)
            )
        }
        Action::SetInitialPassword { .. } => "set initial password".to_owned(),
        Action::UpdateAttributes { changes, .. } => {
            let parts: Vec<String> = changes
                .iter()
                .map(|c| {
                    format!(
                        "{} {:?} → {:?}",
                        c.attribute,
                        c.from.as_deref().unwrap_or(""),
                        c.to.as_deref().unwrap_or("")
                    )
                })
                .collect();
            format!("update {}", parts.join("; "))
        }
        Action::SetExpiry { from, to, .. } => format!(
            "last day {} → {}",
            from.map(|f| date_of(f, zone))
                .unwrap_or_else(|| "never".to_owned()),
            date_of(*to, zone)
        ),
        Action::AddToGroup { group_dn, .. } => format!("add to {}", group_name(group_dn)),
        Action::RemoveFromGroup { group_dn, .. } => format!("remove from {}", group_name(group_dn)),
        Action::Enable { .. } => "enable".to_owned(),
        Action::Disable { .. } => "disable".to_owned(),
        Action::Delete { reason, .. } => match reason {
            DeleteReason::FileRemoved => "delete (file removed)".to_owned(),
            DeleteReason::Expired => "delete (last day of access has passed)".to_owned(),
            DeleteReason::EmploymentEnded => "delete (employment ended)".to_owned(),
        },
    }
}

/// Describes a finding as one line, with what to do where something is expected of a person.
pub fn describe_finding(finding: &Finding) -> String {
    match finding {
        Finding::UnmanagedObject { dn, username } => {
            format!("{dn} ({username}) was not created by Adgang; left alone")
        }
        Finding::UnmanagedGroupMembership { key, group_dn, .. } => {
            format!("{key}: member of {group_dn}, which no supplier may use; left alone")
        }
        Finding::UserFrozen { key, exists_in_ad } => {
            let state = if *exists_in_ad {
                "its account is left as it is"
            } else {
                "not created"
            };
            format!("{key}: the file is invalid, so {state}; fix the file (see above)")
        }
        Finding::SupplierFrozen { supplier } => format!(
            "{supplier}: supplier.yaml is missing or invalid, so all its accounts are left as they are"
        ),
        Finding::SupplierSuspended { supplier } => {
            format!("{supplier}: suspended (spec.suspend), so its accounts are left as they are")
        }
        Finding::UsernameChangeRejected {
            source,
            requested,
            existing,
            ..
        } => format!(
            "{source}: spec.username {requested:?} differs from the account's username {existing:?}; \
             a username never changes once the account exists: set username: {existing} or remove the field"
        ),
        Finding::UsernameTaken {
            source, requested, ..
        } => format!(
            "{source}: spec.username {requested:?} is already used in the domain; choose another \
             or leave the field out to have one derived"
        ),
        Finding::GroupNotFound { source, group, .. } => format!(
            "{source}: group {group:?} does not exist in AD; create it or ask the municipality to correct supplier.yaml"
        ),
        Finding::DuplicateLink { key, dns } => format!(
            "{key}: {} objects carry the same Adgang link ({}); none is changed until a person removes the extra ones",
            dns.len(),
            dns.join("; ")
        ),
        Finding::WrongOrganizationalUnit {
            key,
            dn,
            expected_parent,
        } => format!(
            "{key}: account {dn} is not in {expected_parent}; Adgang does not move accounts, move it by hand"
        ),
        Finding::NotCreatedAlreadyExpired { key, last_day } => {
            format!("{key}: not created, because its last day of access ({last_day}) has passed")
        }
        Finding::MassDeletionBlocked {
            supplier,
            deletions,
            accounts,
            max_share,
        } => format!(
            "{supplier}: stopped, because this run would delete {deletions} of its {accounts} accounts, \
             more than {:.0} %; if that is intended, run again with --allow-mass-deletion {supplier}",
            max_share * 100.0
        ),
    }
}
