//! Reminders that accounts' access ends soon, so the supplier can submit an extension in time.
//!
//! An extension must be submitted by its deadline: [`notice::NOTICE_WORKING_DAYS`] working days
//! before the last day of access, not counting that day ([`notice::deadline`]). A reminder is
//! due from a configured number of working days before that deadline (default
//! [`DEFAULT_WORKING_DAYS`]) up to and including the deadline itself. After the deadline an
//! extension can no longer be in time, so no reminder goes. Each supplier gets one mail that
//! lists all its accounts that are due, and each account is reminded once per period: the
//! sent-record keeps the last day it was reminded for, so a new `validUntil` starts a new
//! period with a new reminder.
//!
//! [`due`] is pure; sending and recording are in [`crate::schedule`].

use chrono::NaiveDate;
use serde::Serialize;

use crate::calendar::{Calendar, CalendarError};
use crate::notice;
use crate::report::Overview;
use crate::schedule::SentRecord;

/// Working days before the extension deadline at which the reminder goes by default.
pub const DEFAULT_WORKING_DAYS: u32 = 10;

/// The reminder mail to one supplier.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReminderMail {
    /// The supplier's id (its folder name).
    pub supplier: String,
    /// The supplier's legal name.
    pub supplier_name: String,
    /// Day the reminder is made, in the configured time zone.
    pub sent_on: NaiveDate,
    /// The accounts whose access ends, by last day and username.
    pub accounts: Vec<ReminderAccount>,
}

/// One account in a reminder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReminderAccount {
    pub username: String,
    /// The user's file name in git (`metadata.name`).
    pub file: String,
    pub name: String,
    /// Last day of access, as AD stores it.
    pub last_day: NaiveDate,
    /// Last day on which an extension is in time.
    pub deadline: NaiveDate,
}

/// Returns the reminders due on `today`, at most one per supplier, leaving out accounts that
/// `sent` records as reminded for their current last day.
///
/// An account whose expiry the next sync changes (a pending `set-expiry` or `delete`
/// difference) is left out, because its last day in AD is about to change.
pub fn due(
    overviews: &[Overview],
    calendar: &Calendar,
    working_days: u32,
    today: NaiveDate,
    sent: &SentRecord,
) -> Result<Vec<ReminderMail>, CalendarError> {
    let mut mails = Vec::new();
    for overview in overviews {
        let mut accounts = Vec::new();
        for account in &overview.accounts {
            let Some(last_day) = account.last_day else {
                continue;
            };
            let changing = overview.differences.iter().any(|d| {
                d.file == account.file && matches!(d.action.as_str(), "set-expiry" | "delete")
            });
            if changing || sent.reminded(&overview.supplier, &account.file, last_day) {
                continue;
            }

            let deadline = notice::deadline(calendar, last_day)?;
            let first_day = calendar.working_days_before(deadline, working_days)?;
            if today < first_day || today > deadline {
                continue;
            }
            accounts.push(ReminderAccount {
                username: account.username.clone(),
                file: account.file.clone(),
                name: account.name.clone(),
                last_day,
                deadline,
            });
        }
        if accounts.is_empty() {
            continue;
        }
        accounts.sort_by(|a, b| (a.last_day, &a.username).cmp(&(b.last_day, &b.username)));
        mails.push(ReminderMail {
            supplier: overview.supplier.clone(),
            supplier_name: overview.supplier_name.clone(),
            sent_on: today,
            accounts,
        });
    }
    Ok(mails)
}

#[cfg(test)]
mod tests;
