//! The monthly overview and the reminders in the controller: the leader runs a round of
//! [`crate::schedule::send_due`] at start and then every interval, and stops it at once when
//! it stops leading.
//!
//! The desired state comes from the `Supplier` and `SupplierUser` objects, listed through the
//! API server, not from git. The record of what was sent is the ConfigMap of
//! [`super::mail_record`], so a restart or a second replica sends no mail twice. The outcome
//! goes into each `Supplier`'s `status.mail` by server-side apply with the field manager
//! [`FIELD_MANAGER`], which owns no field that the reconcile writes.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::mail_record::ConfigMapSentRecordStore;
use crate::calendar::{Calendar, ClosingDays};
use crate::desired::{self, DesiredState};
use crate::directory::{Directory, DirectoryError};
use crate::mail::Mailer;
use crate::plan;
use crate::report;
use crate::report::delivery::{SecureMailSender, recipients};
use crate::resources::{API_VERSION, Supplier, SupplierMailStatus, SupplierUser};
use crate::schedule::{self, RoundReport, ScheduleError, ScheduleSettings};
use crate::sync;
use crate::templates::{Language, Templates};

/// Field manager of the `status.mail` writes, apart from the reconcile's `adgang-controller`.
pub const FIELD_MANAGER: &str = "adgang-mail";

/// Time between two rounds by default. Overviews and reminders are due by the day and the
/// hour, so a round per hour sends them in time.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

/// A round that could not run.
#[derive(Debug, thiserror::Error)]
pub enum MailScheduleError {
    /// Listing the objects or writing a status failed.
    #[error("failed to {action} {object}: {source}")]
    Kubernetes {
        action: &'static str,
        object: String,
        source: kube::Error,
    },
    /// AD could not be read for the overviews.
    #[error("failed to read AD for the overviews: {0}")]
    Directory(#[from] DirectoryError),
    /// The record of sent mail could not be read or written, or a date is outside the
    /// calendar.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// The settings of the mail schedule, taken from the configuration.
#[derive(Clone, Debug)]
pub struct MailScheduleSettings {
    pub schedule: ScheduleSettings,
    pub plan: plan::Settings,
    pub language: Language,
    /// Closing days of the configuration.
    pub closing_days: ClosingDays,
    /// Time between two rounds.
    pub interval: Duration,
}

/// Everything a round needs, set up once when the controller starts.
pub struct MailSchedule<D> {
    pub client: Client,
    pub namespace: String,
    pub directory: D,
    pub mailer: Arc<Mailer>,
    pub templates: Arc<Templates>,
    pub settings: MailScheduleSettings,
}

impl<D: Directory> MailSchedule<D> {
    /// Runs a round at once and then every interval while `leading` is true, until `stop`
    /// completes. A round in progress stops at its next `.await` when `leading` turns
    /// false, so a replica that lost the lease sends nothing more.
    pub async fn run(&self, mut leading: watch::Receiver<bool>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if *leading.borrow_and_update() {
                let mut watch = leading.clone();
                let lost = async move {
                    let _ = watch.wait_for(|leads| !*leads).await;
                };
                tokio::select! {
                    () = &mut stop => return,
                    () = lost => warn!("stopped leading; the mail round stops"),
                    result = self.run_round(Utc::now()) => match result {
                        Ok(report) => info!(
                            overviews = report.overviews.len(),
                            reminders = report.reminders.len(),
                            failures = report.failures.len(),
                            "mail schedule round done"
                        ),
                        Err(e) => error!(error = %e, "the mail schedule round failed"),
                    },
                }
            }

            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(self.settings.interval) => {}
                changed = leading.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Lists the objects, reads AD, sends the mails due at `now` and writes each supplier's
    /// `status.mail`.
    pub async fn run_round(&self, now: DateTime<Utc>) -> Result<RoundReport, MailScheduleError> {
        let suppliers_api: Api<Supplier> = Api::namespaced(self.client.clone(), &self.namespace);
        let users_api: Api<SupplierUser> = Api::namespaced(self.client.clone(), &self.namespace);
        let list_error = |object: &str| {
            let object = format!("{object} in namespace {}", self.namespace);
            move |source| MailScheduleError::Kubernetes {
                action: "list",
                object,
                source,
            }
        };
        let suppliers = suppliers_api
            .list(&ListParams::default())
            .await
            .map_err(list_error("Suppliers"))?
            .items;
        let users = users_api
            .list(&ListParams::default())
            .await
            .map_err(list_error("SupplierUsers"))?
            .items;

        let desired = desired_from_objects(&suppliers, &users);
        let snapshot = sync::read_snapshot(&self.directory, &desired).await?;
        let plan = plan::plan(&desired, &snapshot, None, now, &self.settings.plan);
        let zone = self.settings.schedule.time_zone;
        let overviews = report::build(
            &desired,
            &snapshot,
            &plan,
            zone,
            self.settings.language,
            now.with_timezone(&zone).date_naive(),
            // NOTE: objects carry no commit, so the overview names the namespace instead.
            &format!("namespace {}", self.namespace),
        );
        // NOTE: the closing days of policy.yaml live in git, which the controller does not
        // read here, so only the configuration's closing days count.
        let calendar = Calendar::new(self.settings.closing_days.clone());
        let round = schedule::Round {
            now,
            settings: &self.settings.schedule,
            calendar: &calendar,
            templates: &self.templates,
            overviews: &overviews,
        };
        let store = ConfigMapSentRecordStore::new(self.client.clone(), &self.namespace);
        let sender = SecureMailSender::new(self.mailer.clone(), recipients(&desired));
        let report = schedule::send_due(&round, &store, &sender).await?;

        let month = schedule::overview_month_due(now, &self.settings.schedule, &calendar)
            .map_err(ScheduleError::from)?;
        for supplier in &suppliers {
            let Some(status) = mail_status(supplier, &report, month, now) else {
                continue;
            };
            let name = supplier.name_any();
            let patch = json!({
                "apiVersion": API_VERSION,
                "kind": "Supplier",
                "status": {"mail": status},
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            suppliers_api
                .patch_status(&name, &params, &Patch::Apply(&patch))
                .await
                .map_err(|source| MailScheduleError::Kubernetes {
                    action: "patch the mail status of",
                    object: format!("Supplier {name}"),
                    source,
                })?;
        }
        Ok(report)
    }
}

/// Returns the new `status.mail` of `supplier` after a round, or `None` when the round sent
/// it nothing and nothing failed, so its status stays as it is.
fn mail_status(
    supplier: &Supplier,
    report: &RoundReport,
    month: Option<chrono::NaiveDate>,
    now: DateTime<Utc>,
) -> Option<SupplierMailStatus> {
    let name = supplier.name_any();
    let previous = supplier
        .status
        .as_ref()
        .and_then(|s| s.mail.clone())
        .unwrap_or_default();
    let sent_overview = report.overviews.contains(&name);
    let sent_reminder = report.reminders.iter().any(|(s, _)| *s == name);
    let failures: Vec<String> = report
        .failures
        .iter()
        .filter(|f| f.supplier == name)
        .map(|f| format!("{}: {}", f.mail, f.error))
        .collect();
    if !sent_overview && !sent_reminder && failures.is_empty() {
        return None;
    }

    let mut status = SupplierMailStatus {
        last_overview: previous.last_overview,
        last_error: None,
        last_error_time: None,
    };
    if sent_overview {
        status.last_overview = month.map(|m| m.format("%Y-%m").to_string());
    }
    if !failures.is_empty() {
        status.last_error = Some(failures.join("; "));
        status.last_error_time = Some(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    Some(status)
}

/// Builds the desired state from the listed objects. Each object is rendered as the file the
/// git source would hold and checked by [`desired::from_files`], so both ways in share every
/// rule.
pub fn desired_from_objects(suppliers: &[Supplier], users: &[SupplierUser]) -> DesiredState {
    let render = |kind: &str, name: &str, spec: serde_json::Value| {
        let object = json!({
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        });
        serde_saphyr::to_string(&object).unwrap_or_default()
    };
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for supplier in suppliers {
        let name = supplier.name_any();
        let path = format!("{}/{name}/supplier.yaml", desired::SUPPLIERS_DIR);
        files.insert(path, render("Supplier", &name, json!(supplier.spec)));
    }
    for user in users {
        let name = user.name_any();
        let path = format!(
            "{}/{}/users/{name}.yaml",
            desired::SUPPLIERS_DIR,
            user.spec.supplier
        );
        files.insert(path, render("SupplierUser", &name, json!(user.spec)));
    }
    desired::from_files(files.iter().map(|(p, c)| (p.as_str(), c.as_bytes())))
}
