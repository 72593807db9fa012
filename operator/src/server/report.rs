//! Metrics from the report of one `adgang sync` run, so that `sync --interval` and the tests
//! derive them the same way.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;

use super::metrics::{Metrics, ReconcileResult};
use crate::model::UserKey;
use crate::sync::SyncReport;

impl Metrics {
    /// Records a run that returned a report. The run counts as a success when every planned
    /// action succeeded; invalid files and unauthorised commits are reported to people, not
    /// counted as reconcile errors.
    ///
    /// NOTE: the report carries the plan, which lists only accounts with actions, and neither
    /// the desired state nor the AD snapshot. So this sets no `adgang_users` or
    /// `adgang_users_access_ending_soon` series; a caller with that state uses
    /// [`Metrics::set_users`] and [`Metrics::set_users_ending_soon`].
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
