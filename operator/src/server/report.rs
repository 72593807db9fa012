//! Metrics from the report of one `adgang sync` run, so that `sync --interval` and the tests
//! derive them the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Days, Utc};
use chrono_tz::Tz;

use super::metrics::{Metrics, ReconcileResult};
use crate::expiry::{from_filetime, last_day_from_account_expires};
use crate::model::{DirectorySnapshot, UserKey};
use crate::resources::Phase;
use crate::sync::SyncReport;

/// Days ahead in which an ending access counts for `adgang_users_access_ending_soon`.
pub const ENDING_SOON_DAYS: u64 = 14;

/// One supplier's accounts by phase, as read from AD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserCounts {
    /// Disabled accounts whose access has not ended: before `validFrom`, or not yet enabled.
    pub pending: i64,
    /// Enabled accounts whose access has not ended.
    pub active: i64,
    /// Accounts whose `accountExpires` has passed and that are not deleted yet.
    pub expired: i64,
    /// Accounts that have not expired and whose last day of access is within the next
    /// [`ENDING_SOON_DAYS`] days, today included.
    pub ending_soon: i64,
}

/// Counts the accounts that Adgang created (those with a link) by supplier and phase, at
/// `now`, with calendar days in `zone`. Deleted accounts are not in AD, so they are not
/// counted.
pub fn count_users(
    snapshot: &DirectorySnapshot,
    now: DateTime<Utc>,
    zone: Tz,
) -> BTreeMap<String, UserCounts> {
    let today = now.with_timezone(&zone).date_naive();
    let horizon = today
        .checked_add_days(Days::new(ENDING_SOON_DAYS))
        .unwrap_or(today);
    let mut counts: BTreeMap<String, UserCounts> = BTreeMap::new();

    for account in &snapshot.accounts {
        let Some(link) = &account.link else { continue };
        let entry = counts.entry(link.supplier.clone()).or_default();
        let expires = account.account_expires.and_then(from_filetime);
        if expires.is_some_and(|instant| instant <= now) {
            entry.expired += 1;
            continue;
        }
        if account.enabled {
            entry.active += 1;
        } else {
            entry.pending += 1;
        }
        let last_day = account
            .account_expires
            .and_then(|filetime| last_day_from_account_expires(filetime, zone));
        if last_day.is_some_and(|day| today <= day && day <= horizon) {
            entry.ending_soon += 1;
        }
    }
    counts
}

impl Metrics {
    /// Records a run that returned a report. The run counts as a success when every planned
    /// action succeeded; invalid files and unauthorised commits are reported to people, not
    /// counted as reconcile errors.
    ///
    /// The report carries only the plan, so the caller sets `adgang_users` and
    /// `adgang_users_access_ending_soon` from an AD snapshot with [`Metrics::set_user_counts`].
    pub fn record_sync(&self, report: &SyncReport, duration: Duration) {
        let result = if report.failures.is_empty() {
            ReconcileResult::Success
        } else {
            ReconcileResult::Failure
        };
        self.record_reconcile(result, duration);
        self.record_errors(report.failures.len() as u64);

        // An account's drift counts as corrected only when none of its actions failed.
        let failed: BTreeSet<&UserKey> = report
            .failures
            .iter()
            .filter_map(|f| f.key.as_ref())
            .collect();
        let corrected = report
            .plan
            .accounts
            .iter()
            .filter(|a| a.drift && !failed.contains(&a.key))
            .count();
        self.record_drift(corrected as u64);

        if report.recorded {
            self.set_last_applied(&report.commit.id);
        } else if let Some(last_applied) = &report.last_applied {
            self.set_last_applied(last_applied);
        }
        if result == ReconcileResult::Success {
            self.set_last_success(Utc::now());
        }
    }

    /// Replaces every series of `adgang_users` and `adgang_users_access_ending_soon` with
    /// `counts`, so that a supplier without accounts disappears.
    pub fn set_user_counts(&self, counts: &BTreeMap<String, UserCounts>) {
        self.clear_users();
        for (supplier, count) in counts {
            self.set_users(supplier, Phase::Pending, count.pending);
            self.set_users(supplier, Phase::Active, count.active);
            self.set_users(supplier, Phase::Expired, count.expired);
            self.set_users_ending_soon(supplier, count.ending_soon);
        }
    }

    /// Records a run that failed before it produced a report, for example because the
    /// repository or AD could not be read.
    pub fn record_failed_sync(&self, duration: Duration) {
        self.record_reconcile(ReconcileResult::Failure, duration);
        self.record_errors(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Action;
    use crate::plan::{AccountPlan, Plan};
    use crate::sync::{CommitSummary, Failure};

    fn account(name: &str, drift: bool) -> AccountPlan {
        let key = UserKey::new("omsorg-nord", name);
        AccountPlan {
            key: key.clone(),
            username: name.to_owned(),
            actions: vec![Action::Enable {
                key,
                dn: format!("CN={name},OU=Omsorg Nord,OU=Suppliers,DC=adgang,DC=test"),
            }],
            drift,
        }
    }

    fn report(accounts: Vec<AccountPlan>, failures: Vec<Failure>, recorded: bool) -> SyncReport {
        SyncReport {
            commit: CommitSummary {
                id: "head1234".to_owned(),
                summary: "Add Anne Hansen".to_owned(),
            },
            last_applied: Some("prev5678".to_owned()),
            plan: Plan {
                accounts,
                ..Plan::default()
            },
            file_errors: Vec::new(),
            unauthorised: Vec::new(),
            late_merges: Vec::new(),
            applied: 0,
            failures,
            recorded,
        }
    }

    fn failure(name: &str) -> Failure {
        Failure {
            key: Some(UserKey::new("omsorg-nord", name)),
            dn: String::new(),
            action: "enable".to_owned(),
            error: "insufficient access rights".to_owned(),
        }
    }

    #[test]
    fn successful_run_recorded() {
        let metrics = Metrics::new();
        let accounts = vec![account("anne-hansen", true), account("bo-jensen", false)];

        metrics.record_sync(&report(accounts, Vec::new(), true), Duration::from_secs(1));
        let text = metrics.encode();

        assert!(
            text.contains("adgang_reconcile_total{result=\"success\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("adgang_drift_corrected_total 1\n"), "{text}");
        assert!(text.contains("adgang_last_applied_commit_info{commit=\"head1234\"} 1\n"));
        assert!(
            !text.contains("adgang_last_successful_sync_timestamp_seconds 0\n"),
            "{text}"
        );
    }

    #[test]
    fn failed_action_not_counted_as_corrected() {
        let metrics = Metrics::new();
        let accounts = vec![account("anne-hansen", true), account("bo-jensen", true)];
        let failures = vec![failure("anne-hansen")];

        metrics.record_sync(&report(accounts, failures, false), Duration::from_secs(1));
        let text = metrics.encode();

        assert!(
            text.contains("adgang_reconcile_total{result=\"failure\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("adgang_reconcile_errors_total 1\n"), "{text}");
        assert!(text.contains("adgang_drift_corrected_total 1\n"), "{text}");
        assert!(text.contains("adgang_last_applied_commit_info{commit=\"prev5678\"} 1\n"));
        assert!(
            text.contains("adgang_last_successful_sync_timestamp_seconds 0\n"),
            "{text}"
        );
    }

    #[test]
    fn run_without_report_is_failure() {
        let metrics = Metrics::new();

        metrics.record_failed_sync(Duration::from_secs(3));
        let text = metrics.encode();

        assert!(
            text.contains("adgang_reconcile_total{result=\"failure\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("adgang_reconcile_errors_total 1\n"), "{text}");
        assert!(
            text.contains("adgang_reconcile_duration_seconds_count 1\n"),
            "{text}"
        );
    }
}
