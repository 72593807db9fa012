//! The metrics that Adgang exposes on `/metrics`, in the Prometheus text format 0.0.4.
//!
//! [`Metrics`] owns a `prometheus-client` registry with the `adgang_` prefix. It is cheap to
//! clone: every clone updates the same series, so the sync loop, the webhook receiver and a
//! future controller share one instance.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::resources::Phase;

/// The `Content-Type` of the encoded metrics.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the reconcile duration buckets, in seconds. A reconcile fetches the
/// repository and pages through the managed OU, so it takes from under a second to minutes.
const RECONCILE_DURATION_BUCKETS: [f64; 11] = [
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Outcome of one reconcile, the `result` label of `adgang_reconcile_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReconcileResult {
    /// The run read the repository and AD and every planned action succeeded.
    Success,
    /// The run could not start or read what it needs, or an action failed.
    Failure,
}

impl ReconcileResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

impl EncodeLabelValue for ReconcileResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// Sender of a webhook request, the `source` label of `adgang_webhook_requests_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum WebhookSource {
    GitHub,
    GitLab,
}

impl WebhookSource {
    /// Returns the label value: `github` or `gitlab`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
        }
    }
}

impl EncodeLabelValue for WebhookSource {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// Outcome of a webhook request, the `result` label of `adgang_webhook_requests_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum WebhookResult {
    /// An authenticated push event, which triggered a sync.
    Accepted,
    /// An authenticated event other than a push, such as GitHub's `ping`; no sync.
    Ignored,
    /// A missing or wrong signature or token, a body over the limit, or a body not received
    /// in time.
    Rejected,
}

impl WebhookResult {
    /// Returns the label value: `accepted`, `ignored` or `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Ignored => "ignored",
            Self::Rejected => "rejected",
        }
    }
}

impl EncodeLabelValue for WebhookResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// Cause of an unsent secure mail, the `kind` label of `adgang_mail_failures_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum MailFailureKind {
    /// The recipient's address or S/MIME certificate is missing or unusable.
    Recipient,
    /// The message could not be built, signed or encrypted.
    Build,
    /// The SMTP server could not be reached or did not accept the message.
    Smtp,
}

impl MailFailureKind {
    /// Returns the label value: `recipient`, `build` or `smtp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recipient => "recipient",
            Self::Build => "build",
            Self::Smtp => "smtp",
        }
    }
}

impl EncodeLabelValue for MailFailureKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailFailureLabels {
    kind: MailFailureKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UserLabels {
    supplier: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SupplierLabels {
    supplier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    result: ReconcileResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabels {
    commit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    source: WebhookSource,
    result: WebhookResult,
}

/// The metrics of one Adgang process and the registry that encodes them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    users: Family<UserLabels, Gauge>,
    users_ending_soon: Family<SupplierLabels, Gauge>,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_errors: Counter,
    reconcile_duration: Histogram,
    drift_corrected: Counter,
    last_success: Gauge,
    last_applied_commit: Family<CommitLabels, Gauge>,
    webhook_requests: Family<WebhookLabels, Counter>,
    mail_sent: Counter,
    mail_failures: Family<MailFailureLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates the metrics and registers them. The reconcile and webhook counters start at 0
    /// for every label value, so that a rate over them exists before the first event.
    pub fn new() -> Self {
        let users = Family::<UserLabels, Gauge>::default();
        let users_ending_soon = Family::<SupplierLabels, Gauge>::default();
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_errors = Counter::default();
        let reconcile_duration = Histogram::new(RECONCILE_DURATION_BUCKETS);
        let drift_corrected = Counter::default();
        let last_success = Gauge::default();
        let last_applied_commit = Family::<CommitLabels, Gauge>::default();
        let webhook_requests = Family::<WebhookLabels, Counter>::default();
        let mail_sent = Counter::default();
        let mail_failures = Family::<MailFailureLabels, Counter>::default();

        // Registering clones is how prometheus-client works: a metric is a handle to shared
        // atomics, so the registry encodes what the fields below update.
        let mut registry = Registry::with_prefix("adgang");
        registry.register(
            "users",
            "Supplier users by supplier and lifecycle phase (Pending, Active, Expired, Deleted)",
            users.clone(),
        );
        registry.register(
            "users_access_ending_soon",
            "Supplier users whose last day of access is within the next 14 days, by supplier",
            users_ending_soon.clone(),
        );
        registry.register(
            "reconcile",
            "Reconciles run, by result: success when every planned action succeeded",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Errors during reconciles: each failed action, and each run that could not read \
             the repository or AD",
            reconcile_errors.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of a reconcile, from fetching the repository to the last applied action",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        registry.register(
            "drift_corrected",
            "Accounts whose changes made by hand in AD a reconcile put back",
            drift_corrected.clone(),
        );
        registry.register(
            "last_successful_sync_timestamp_seconds",
            "Unix time in seconds at which the last successful reconcile finished, 0 before one",
            last_success.clone(),
        );
        registry.register(
            "last_applied_commit_info",
            "Git commit last recorded as fully applied to AD, in the commit label; the value is 1",
            last_applied_commit.clone(),
        );
        registry.register(
            "webhook_requests",
            "Webhook requests by source (github, gitlab) and result (accepted, ignored, rejected)",
            webhook_requests.clone(),
        );
        registry.register(
            "mail_sent",
            "Secure mails that the SMTP server accepted",
            mail_sent.clone(),
        );
        registry.register(
            "mail_failures",
            "Secure mails not sent, by kind: recipient (address or certificate), build \
             (signing or encryption) or smtp (after every retry)",
            mail_failures.clone(),
        );

        for result in [ReconcileResult::Success, ReconcileResult::Failure] {
            drop(reconciles.get_or_create(&ReconcileLabels { result }));
        }
        for source in [WebhookSource::GitHub, WebhookSource::GitLab] {
            for result in [
                WebhookResult::Accepted,
                WebhookResult::Ignored,
                WebhookResult::Rejected,
            ] {
                drop(webhook_requests.get_or_create(&WebhookLabels { source, result }));
            }
        }
        for kind in [
            MailFailureKind::Recipient,
            MailFailureKind::Build,
            MailFailureKind::Smtp,
        ] {
            drop(mail_failures.get_or_create(&MailFailureLabels { kind }));
        }

        Self {
            registry: Arc::new(registry),
            users,
            users_ending_soon,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            drift_corrected,
            last_success,
            last_applied_commit,
            webhook_requests,
            mail_sent,
            mail_failures,
        }
    }

    /// Counts one secure mail that the SMTP server accepted.
    pub fn record_mail_sent(&self) {
        self.mail_sent.inc();
    }

    /// Counts one secure mail that was not sent.
    pub fn record_mail_failure(&self, kind: MailFailureKind) {
        self.mail_failures
            .get_or_create(&MailFailureLabels { kind })
            .inc();
    }

    /// Counts one reconcile and observes its duration.
    pub fn record_reconcile(&self, result: ReconcileResult, duration: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels { result })
            .inc();
        self.reconcile_duration.observe(duration.as_secs_f64());
    }

    /// Adds `count` errors: failed actions, or 1 for a run that could not start.
    pub fn record_errors(&self, count: u64) {
        self.reconcile_errors.inc_by(count);
    }

    /// Adds `accounts` accounts whose drift a reconcile corrected.
    pub fn record_drift(&self, accounts: u64) {
        self.drift_corrected.inc_by(accounts);
    }

    /// Sets the number of users of `supplier` in `phase`.
    pub fn set_users(&self, supplier: &str, phase: Phase, count: i64) {
        let labels = UserLabels {
            supplier: supplier.to_owned(),
            phase: phase_label(phase),
        };
        self.users.get_or_create(&labels).set(count);
    }

    /// Sets the number of users of `supplier` whose access ends within 14 days.
    pub fn set_users_ending_soon(&self, supplier: &str, count: i64) {
        let labels = SupplierLabels {
            supplier: supplier.to_owned(),
        };
        self.users_ending_soon.get_or_create(&labels).set(count);
    }

    /// Removes every series of `adgang_users` and `adgang_users_access_ending_soon`. Call it
    /// before setting a complete new set of counts, so that a removed supplier disappears. A
    /// scrape between the two steps returns a partial set.
    pub fn clear_users(&self) {
        self.users.clear();
        self.users_ending_soon.clear();
    }

    /// Sets the last applied commit, replacing the previous one.
    pub fn set_last_applied(&self, commit: &str) {
        let labels = CommitLabels {
            commit: commit.to_owned(),
        };
        if self.last_applied_commit.get(&labels).is_some() {
            return;
        }
        self.last_applied_commit.clear();
        self.last_applied_commit.get_or_create(&labels).set(1);
    }

    /// Sets the time at which the last successful reconcile finished.
    pub fn set_last_success(&self, time: DateTime<Utc>) {
        self.last_success.set(time.timestamp());
    }

    /// Counts one webhook request.
    pub fn record_webhook(&self, source: WebhookSource, result: WebhookResult) {
        self.webhook_requests
            .get_or_create(&WebhookLabels { source, result })
            .inc();
    }

    /// Encodes every metric in the Prometheus text format 0.0.4.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, so an error here is a bug.
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            tracing::error!(%error, "failed to encode the metrics; this is a bug");
        }
        text
    }
}

fn phase_label(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Pending",
        Phase::Active => "Active",
        Phase::Expired => "Expired",
        Phase::Deleted => "Deleted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_start_at_zero() {
        let text = Metrics::new().encode();

        assert!(
            text.contains("adgang_reconcile_total{result=\"success\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("adgang_reconcile_total{result=\"failure\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "adgang_webhook_requests_total{source=\"gitlab\",result=\"rejected\"} 0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn last_applied_commit_replaced() {
        let metrics = Metrics::new();

        metrics.set_last_applied("aaaa");
        metrics.set_last_applied("bbbb");
        let text = metrics.encode();

        assert!(!text.contains("commit=\"aaaa\""), "{text}");
        assert!(
            text.contains("adgang_last_applied_commit_info{commit=\"bbbb\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn clones_share_series() {
        let metrics = Metrics::new();
        let clone = metrics.clone();

        clone.record_drift(3);

        assert!(
            metrics
                .encode()
                .contains("adgang_drift_corrected_total 3\n")
        );
    }

    #[test]
    fn cleared_users_removed() {
        let metrics = Metrics::new();
        metrics.set_users("omsorg-nord", Phase::Active, 4);
        metrics.set_users_ending_soon("omsorg-nord", 1);

        metrics.clear_users();
        let text = metrics.encode();

        assert!(!text.contains("omsorg-nord"), "{text}");
    }
}
