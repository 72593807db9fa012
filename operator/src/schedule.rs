//! When the monthly overview and the reminders go, and the record of what was sent.
//!
//! The overview goes on the first working day of each month (Danish calendar with the
//! municipality's closing days) once the configured hour has been reached in the configured
//! time zone, once per supplier and month. A process that was not running at that hour sends
//! it at its next round in the same month. Reminders are checked in the same round
//! ([`crate::reminders`]).
//!
//! What was sent is kept in a [`SentRecord`] behind the [`SentRecordStore`] trait. The file
//! store ([`FileSentRecordStore`]) keeps it as `sent.json` in the state directory, next to
//! the last applied commit, and replaces it atomically after each mail. A round holds an
//! exclusive lock on `sent.lock`, so two processes sharing the state directory never send
//! the same mail twice. The controller runs the round on the leader only and keeps the
//! record in a ConfigMap (`crate::controller::mail_record`), because its state directory does
//! not survive a restart. A round reads the record again before each mail, so a mail that
//! another process recorded meanwhile is not sent twice.
//!
//! A mail is recorded only after the server accepted it, so a crash between the two sends it
//! again at the next round: a mail can go twice in that case, but is never lost.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tracing::{error, info};

use crate::calendar::{Calendar, CalendarError};
use crate::reminders::{self, ReminderMail};
use crate::report::{self, Overview};
use crate::templates::{MailContent, Templates};

/// File name of the sent-record in the state directory.
pub const SENT_RECORD_FILE: &str = "sent.json";
/// File name of the lock held while a round sends, in the state directory.
pub const SENT_LOCK_FILE: &str = "sent.lock";
/// Hour (0 to 23, local time) from which the overview goes, by default.
pub const DEFAULT_OVERVIEW_HOUR: u32 = 7;

/// A failure to read or write the sent-record, or to plan a round.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The sent-record or its lock file could not be read or written.
    #[error("failed to {operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The sent-record is not valid JSON of the expected shape.
    #[error(
        "invalid sent-record {path}: {message}; fix or remove the file (without it, this \
         month's overviews go again)"
    )]
    Corrupt { path: PathBuf, message: String },
    /// Another process holds the lock, so it is sending now.
    #[error("another adgang process is sending mail: {path} is locked; this round is skipped")]
    Busy { path: PathBuf },
    /// A request to the Kubernetes API server for the record failed.
    #[error("failed to {operation} the sent-record in {object}: {message}")]
    Api {
        operation: &'static str,
        object: String,
        message: String,
    },
    /// The record in a ConfigMap is not valid JSON of the expected shape.
    #[error(
        "invalid sent-record in {object}, key {key}: {message}; fix or delete the ConfigMap \
         (without it, this month's overviews go again)"
    )]
    InvalidConfigMap {
        object: String,
        key: &'static str,
        message: String,
    },
    /// A date is outside the working-day calendar.
    #[error(transparent)]
    Calendar(#[from] CalendarError),
}

/// Record of sent mail: the month of each supplier's last overview and the period of each
/// account's last reminder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SentRecord {
    /// By supplier id, the first day of the month whose overview was sent last.
    #[serde(default)]
    pub overviews: BTreeMap<String, NaiveDate>,
    /// By `supplier/file`, the last day of access that the last reminder was sent for.
    #[serde(default)]
    pub reminders: BTreeMap<String, NaiveDate>,
}

impl SentRecord {
    /// Returns true when the overview of the month that starts on `month` was sent.
    pub fn overview_sent(&self, supplier: &str, month: NaiveDate) -> bool {
        self.overviews
            .get(supplier)
            .is_some_and(|sent| *sent >= month)
    }

    /// Returns true when the account was reminded for the period that ends on `last_day`.
    pub fn reminded(&self, supplier: &str, file: &str, last_day: NaiveDate) -> bool {
        self.reminders.get(&reminder_key(supplier, file)) == Some(&last_day)
    }

    /// Records that the overview of the month that starts on `month` was sent.
    pub fn record_overview(&mut self, supplier: &str, month: NaiveDate) {
        self.overviews.insert(supplier.to_owned(), month);
    }

    /// Records that every account in `mail` was reminded for its current last day.
    pub fn record_reminder(&mut self, mail: &ReminderMail) {
        for account in &mail.accounts {
            let key = reminder_key(&mail.supplier, &account.file);
            self.reminders.insert(key, account.last_day);
        }
    }
}

impl SentRecord {
    /// Adds what `other` records, keeping the later date where both record a supplier or an
    /// account, so that the merge of two processes' records loses neither's mails.
    pub fn merge(&mut self, other: &SentRecord) {
        for (supplier, month) in &other.overviews {
            let entry = self.overviews.entry(supplier.clone()).or_insert(*month);
            *entry = (*entry).max(*month);
        }
        for (key, last_day) in &other.reminders {
            let entry = self.reminders.entry(key.clone()).or_insert(*last_day);
            *entry = (*entry).max(*last_day);
        }
    }
}

fn reminder_key(supplier: &str, file: &str) -> String {
    format!("{supplier}/{file}")
}

/// The right to send, held until dropped.
pub struct SendLock {
    _guard: Box<dyn Send>,
}

impl SendLock {
    /// Wraps whatever keeps the lock, such as an open locked file or a lease handle.
    pub fn new(guard: impl Send + 'static) -> Self {
        Self {
            _guard: Box::new(guard),
        }
    }
}

/// Storage of the [`SentRecord`]. The methods are asynchronous because a store may keep the
/// record on a server, such as in a Kubernetes ConfigMap.
pub trait SentRecordStore: Send + Sync {
    /// Takes the exclusive right to send, or fails with [`ScheduleError::Busy`].
    fn lock(&self) -> BoxFuture<'_, Result<SendLock, ScheduleError>>;
    /// Reads the record; an absent record is an empty one.
    fn load(&self) -> BoxFuture<'_, Result<SentRecord, ScheduleError>>;
    /// Stores `record`. A store that finds a newer record written by another process keeps
    /// both, so what either of them sent stays recorded.
    fn save<'a>(&'a self, record: &'a SentRecord) -> BoxFuture<'a, Result<(), ScheduleError>>;
}

/// The sent-record as `sent.json` in the state directory, locked through `sent.lock`.
#[derive(Clone, Debug)]
pub struct FileSentRecordStore {
    state_dir: PathBuf,
}

impl FileSentRecordStore {
    /// Creates a store in `state_dir`, which is created on the first lock or write.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            state_dir: state_dir.to_owned(),
        }
    }

    /// Returns the path of the record file.
    pub fn path(&self) -> PathBuf {
        self.state_dir.join(SENT_RECORD_FILE)
    }

    fn create_dir(&self) -> Result<(), ScheduleError> {
        fs::create_dir_all(&self.state_dir).map_err(|source| ScheduleError::Io {
            operation: "create state directory",
            path: self.state_dir.clone(),
            source,
        })
    }
}

impl SentRecordStore for FileSentRecordStore {
    fn lock(&self) -> BoxFuture<'_, Result<SendLock, ScheduleError>> {
        Box::pin(std::future::ready(self.lock_file()))
    }

    fn load(&self) -> BoxFuture<'_, Result<SentRecord, ScheduleError>> {
        Box::pin(std::future::ready(self.read()))
    }

    fn save<'a>(&'a self, record: &'a SentRecord) -> BoxFuture<'a, Result<(), ScheduleError>> {
        Box::pin(std::future::ready(self.write(record)))
    }
}

impl FileSentRecordStore {
    fn lock_file(&self) -> Result<SendLock, ScheduleError> {
        self.create_dir()?;
        let path = self.state_dir.join(SENT_LOCK_FILE);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| ScheduleError::Io {
                operation: "open lock file",
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(SendLock::new(file)),
            Err(fs::TryLockError::WouldBlock) => Err(ScheduleError::Busy { path }),
            Err(fs::TryLockError::Error(source)) => Err(ScheduleError::Io {
                operation: "lock",
                path,
                source,
            }),
        }
    }

    fn read(&self) -> Result<SentRecord, ScheduleError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SentRecord::default()),
            Err(source) => {
                return Err(ScheduleError::Io {
                    operation: "read sent-record",
                    path,
                    source,
                });
            }
        };
        serde_json::from_str(&text).map_err(|e| ScheduleError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    fn write(&self, record: &SentRecord) -> Result<(), ScheduleError> {
        self.create_dir()?;
        let path = self.path();
        let mut text = serde_json::to_string_pretty(record).expect("the record serialises");
        text.push('\n');
        write_atomically(&self.state_dir, &path, text.as_bytes())
    }
}

/// Writes `content` to a temporary file in `dir`, flushes it, renames it over `path` and
/// flushes `dir`, so a crash leaves the old or the new content, never a mix.
fn write_atomically(dir: &Path, path: &Path, content: &[u8]) -> Result<(), ScheduleError> {
    let io_error = |operation, path: &Path, source| ScheduleError::Io {
        operation,
        path: path.to_owned(),
        source,
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));

    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(content)?;
            file.sync_all()
        });
    if let Err(source) = written {
        let _ = fs::remove_file(&temporary);
        return Err(io_error("write", &temporary, source));
    }
    if let Err(source) = fs::rename(&temporary, path) {
        let _ = fs::remove_file(&temporary);
        return Err(io_error("replace", path, source));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error("flush directory", dir, source))
}

/// When the overview and the reminders go.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleSettings {
    /// Local hour (0 to 23) on the first working day from which the overview goes.
    pub overview_hour: u32,
    /// Working days before an extension deadline from which the reminder goes.
    pub reminder_working_days: u32,
    /// Zone of the hour and of the dates.
    pub time_zone: Tz,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            overview_hour: DEFAULT_OVERVIEW_HOUR,
            reminder_working_days: reminders::DEFAULT_WORKING_DAYS,
            time_zone: chrono_tz::Europe::Copenhagen,
        }
    }
}

/// Returns the first day of the month whose overview is due at `now`, or `None` before the
/// first working day of the current month at the configured hour.
pub fn overview_month_due(
    now: DateTime<Utc>,
    settings: &ScheduleSettings,
    calendar: &Calendar,
) -> Result<Option<NaiveDate>, CalendarError> {
    let local = now.with_timezone(&settings.time_zone);
    let today = local.date_naive();
    let first_working_day = calendar.first_working_day_of_month(today.year(), today.month())?;
    let due = today > first_working_day
        || (today == first_working_day && local.hour() >= settings.overview_hour);
    Ok(due.then(|| today.with_day(1).expect("every month has a first day")))
}

/// Returns the suppliers, of `suppliers`, whose overview is due at `now` and not yet sent,
/// with the first day of the month it is for.
pub fn overviews_due<'a>(
    now: DateTime<Utc>,
    settings: &ScheduleSettings,
    calendar: &Calendar,
    suppliers: impl IntoIterator<Item = &'a str>,
    sent: &SentRecord,
) -> Result<Vec<(String, NaiveDate)>, CalendarError> {
    let Some(month) = overview_month_due(now, settings, calendar)? else {
        return Ok(Vec::new());
    };
    Ok(suppliers
        .into_iter()
        .filter(|supplier| !sent.overview_sent(supplier, month))
        .map(|supplier| (supplier.to_owned(), month))
        .collect())
}

/// Delivery of a rendered mail to a supplier's secure mail address.
pub trait MailSender: Send + Sync {
    /// Sends `content` to the supplier `supplier`, encrypted to its certificate, and
    /// returns when the server has accepted it. The error is a message for the log.
    fn send(
        &self,
        supplier: &str,
        content: &MailContent,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// One mail that could not be sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SendFailure {
    pub supplier: String,
    /// `overview` or `reminder`.
    pub mail: &'static str,
    pub error: String,
}

/// Outcome of one round: the mails sent and the failures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RoundReport {
    /// Suppliers that were sent their overview.
    pub overviews: Vec<String>,
    /// Suppliers that were sent a reminder, with the number of accounts in it.
    pub reminders: Vec<(String, usize)>,
    pub failures: Vec<SendFailure>,
}

/// Input of one round, all read in the same run.
pub struct Round<'a> {
    pub now: DateTime<Utc>,
    pub settings: &'a ScheduleSettings,
    pub calendar: &'a Calendar,
    pub templates: &'a Templates,
    /// Every supplier's overview, as [`report::build`] made it at `now`.
    pub overviews: &'a [Overview],
}

/// Sends the overviews and reminders that are due and records each one sent.
///
/// Holds the store's lock for the whole round. A mail that fails to render or send is logged,
/// reported and left unrecorded, so the next round tries it again. The other mails of the
/// round still go.
pub async fn send_due<S: MailSender>(
    round: &Round<'_>,
    store: &dyn SentRecordStore,
    sender: &S,
) -> Result<RoundReport, ScheduleError> {
    let _lock = store.lock().await?;
    let mut record = store.load().await?;
    let mut report = RoundReport::default();

    let suppliers = round.overviews.iter().map(|o| o.supplier.as_str());
    let due = overviews_due(
        round.now,
        round.settings,
        round.calendar,
        suppliers,
        &record,
    )?;
    for (supplier, month) in due {
        let Some(overview) = round.overviews.iter().find(|o| o.supplier == supplier) else {
            continue;
        };
        // Another process may have sent it since this round started, when two replicas
        // overlap during a leader change or when a save found a newer record.
        record = store.load().await?;
        if record.overview_sent(&supplier, month) {
            continue;
        }
        // A template that fails on this supplier's data fails this mail only.
        let sent = match report::overview_mail(round.templates, overview) {
            Ok(content) => sender.send(&supplier, &content).await,
            Err(e) => Err(e.to_string()),
        };
        match sent {
            Ok(()) => {
                info!(supplier, %month, accounts = overview.accounts.len(), "sent the monthly overview");
                record.record_overview(&supplier, month);
                store.save(&record).await?;
                report.overviews.push(supplier);
            }
            Err(message) => {
                error!(supplier, error = %message, "failed to send the monthly overview");
                report.failures.push(SendFailure {
                    supplier,
                    mail: "overview",
                    error: message,
                });
            }
        }
    }

    let today = round
        .now
        .with_timezone(&round.settings.time_zone)
        .date_naive();
    let due = reminders::due(
        round.overviews,
        round.calendar,
        round.settings.reminder_working_days,
        today,
        &record,
    )?;
    for mail in due {
        record = store.load().await?;
        if mail
            .accounts
            .iter()
            .all(|a| record.reminded(&mail.supplier, &a.file, a.last_day))
        {
            continue;
        }
        let sent = match round.templates.reminder(&mail) {
            Ok(rendered) => {
                let content = MailContent::from(rendered);
                sender.send(&mail.supplier, &content).await
            }
            Err(e) => Err(e.to_string()),
        };
        match sent {
            Ok(()) => {
                info!(
                    supplier = mail.supplier,
                    accounts = mail.accounts.len(),
                    "sent a reminder"
                );
                record.record_reminder(&mail);
                store.save(&record).await?;
                report
                    .reminders
                    .push((mail.supplier.clone(), mail.accounts.len()));
            }
            Err(message) => {
                error!(supplier = mail.supplier, error = %message, "failed to send a reminder");
                report.failures.push(SendFailure {
                    supplier: mail.supplier.clone(),
                    mail: "reminder",
                    error: message,
                });
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
