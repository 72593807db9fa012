//! `adgang report`, and the sending round that `sync --interval` runs after each sync.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use tracing::{error, info, warn};

use adgang::config::Config;
use adgang::directory::LdapDirectory;
use adgang::mail::{MailError, Mailer};
use adgang::report::delivery::{Recipient, SecureMailSender};
use adgang::report::outbox::OutboxSender;
use adgang::report::run::{Collected, collect};
use adgang::report::{self, Overview, csv};
use adgang::schedule::{self, FileSentRecordStore, MailSender, Round, ScheduleError};
use adgang::server::Metrics;
use adgang::source::{GitSource, StateStore};
use adgang::templates::{MailContent, Templates};

use super::{ReportArgs, ReportFormat};

/// Loads the configuration and the mail templates, so that a broken template stops the
/// program at start.
pub fn check_templates(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    Templates::load(config.language, config.templates_dir.as_deref())?;
    Ok(())
}

/// Runs `adgang report`.
pub async fn run(args: &ReportArgs) -> ExitCode {
    let (config, templates) = match load(&args.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let delivery = if args.print {
        None
    } else {
        match Delivery::choose(&config, args.outbox.as_deref(), None) {
            Ok(delivery) => Some(delivery),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    };

    let collected = match read(&config).await {
        Ok(collected) => collected,
        Err(e) => {
            error!("{e:#}");
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    let Collected {
        overviews,
        recipients,
        ..
    } = collected;
    let overviews = match select(overviews, &args.supplier) {
        Ok(overviews) => overviews,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };

    match delivery {
        None => print(&overviews, &templates, args.output),
        Some(delivery) => send(&overviews, &templates, &delivery.sender(recipients)).await,
    }
}

/// Limits the schedule to one round per clock hour of one process, because a round reads git
/// and AD again. Overviews and reminders are due by the day and the hour, so a round per hour
/// finds them in time, and a mail that failed is tried again an hour later.
#[derive(Debug, Default)]
pub struct ScheduleGate {
    last_round: Option<(chrono::NaiveDate, u32)>,
}

/// Runs one round of the schedule, unless a round already ran this hour: sends the overviews
/// and reminders that are due. With `metrics`, the mailer counts its mails there. Errors are
/// logged, because the sync loop goes on regardless.
pub async fn run_schedule_round(
    config_path: &Path,
    gate: &mut ScheduleGate,
    metrics: Option<&Metrics>,
) {
    let (config, templates) = match load(config_path) {
        Ok(loaded) => loaded,
        Err(e) => {
            error!(error = format!("{e:#}"), "skipping the mail schedule");
            return;
        }
    };
    let now = Utc::now();
    let local = now.with_timezone(&config.schedule.time_zone);
    let hour = (local.date_naive(), chrono::Timelike::hour(&local));
    if gate.last_round == Some(hour) {
        return;
    }
    let delivery = match Delivery::choose(&config, None, metrics) {
        Ok(delivery) => delivery,
        Err(DeliveryError::NotConfigured(_)) => {
            tracing::debug!("no mail delivery configured; the mail schedule does not run");
            return;
        }
        Err(e) => {
            error!(error = %e, "skipping the mail schedule");
            return;
        }
    };
    let collected = match read(&config).await {
        Ok(collected) => collected,
        Err(e) => {
            error!(
                error = format!("{e:#}"),
                "skipping the mail schedule: failed to read git and AD"
            );
            return;
        }
    };
    let round = Round {
        now,
        settings: &config.schedule,
        calendar: &collected.calendar,
        templates: &templates,
        overviews: &collected.overviews,
    };
    let store = FileSentRecordStore::new(&config.state_dir);
    let sender = delivery.sender(collected.recipients.clone());
    match schedule::send_due(&round, &store, &sender).await {
        Ok(report) => {
            info!(
                overviews = report.overviews.len(),
                reminders = report.reminders.len(),
                failures = report.failures.len(),
                "mail schedule round done"
            );
            gate.last_round = Some(hour);
        }
        Err(e @ ScheduleError::Busy { .. }) => warn!(error = %e, "skipping the mail schedule"),
        Err(e) => error!(error = %e, "the mail schedule round failed"),
    }
}

fn load(config_path: &Path) -> anyhow::Result<(Config, Templates)> {
    let config = Config::load(config_path)?;
    let templates = Templates::load(config.language, config.templates_dir.as_deref())?;
    Ok((config, templates))
}

async fn read(config: &Config) -> anyhow::Result<Collected> {
    let source = GitSource::open(&config.repository)?;
    let state = StateStore::new(&config.state_dir);
    let directory = LdapDirectory::connect(config.directory.clone()).await?;
    collect(config, &source, &state, &directory, Utc::now())
        .await
        .context("failed to read the overviews")
}

/// Destination of the mails, chosen before anything is read.
enum Delivery {
    /// Written to a folder: `--outbox`, or `schedule.outbox` in the configuration.
    Outbox(OutboxSender),
    /// Sent by S/MIME with the `mail:` settings.
    Mail(Arc<Mailer>),
}

/// No way to deliver mail, or a `mail:` section that cannot be used.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(
        "no mail delivery is configured: add a mail: section or set schedule.outbox in {0}, \
         pass --outbox FOLDER, or use --print to show the overviews"
    )]
    NotConfigured(String),
    #[error("invalid mail settings in {path}: {source}")]
    Mail { path: String, source: MailError },
}

impl Delivery {
    /// Chooses the outbox folder given on the command line, then `schedule.outbox`, then the
    /// `mail:` section.
    fn choose(
        config: &Config,
        outbox: Option<&Path>,
        metrics: Option<&Metrics>,
    ) -> Result<Self, DeliveryError> {
        let folder: Option<PathBuf> = outbox
            .map(Path::to_path_buf)
            .or_else(|| config.outbox_dir.clone());
        if let Some(folder) = folder {
            return Ok(Self::Outbox(OutboxSender::new(folder)));
        }
        let path = config.path.display().to_string();
        let Some(settings) = &config.mail else {
            return Err(DeliveryError::NotConfigured(path));
        };
        let mut mailer =
            Mailer::from_config(settings).map_err(|source| DeliveryError::Mail { path, source })?;
        if let Some(metrics) = metrics {
            mailer = mailer.with_metrics(metrics.clone());
        }
        Ok(Self::Mail(Arc::new(mailer)))
    }

    fn sender(&self, recipients: BTreeMap<String, Recipient>) -> Sender {
        match self {
            Self::Outbox(outbox) => Sender::Outbox(outbox.clone()),
            Self::Mail(mailer) => Sender::Mail(SecureMailSender::new(mailer.clone(), recipients)),
        }
    }
}

/// The sender of a [`Delivery`], for one run's suppliers.
enum Sender {
    Outbox(OutboxSender),
    Mail(SecureMailSender),
}

impl MailSender for Sender {
    async fn send(&self, supplier: &str, content: &MailContent) -> Result<(), String> {
        match self {
            Self::Outbox(outbox) => outbox.send(supplier, content).await,
            Self::Mail(mail) => mail.send(supplier, content).await,
        }
    }
}

fn select(overviews: Vec<Overview>, requested: &[String]) -> Result<Vec<Overview>, String> {
    if requested.is_empty() {
        return Ok(overviews);
    }
    let known: Vec<&str> = overviews.iter().map(|o| o.supplier.as_str()).collect();
    if let Some(unknown) = requested.iter().find(|w| !known.contains(&w.as_str())) {
        return Err(format!(
            "--supplier {unknown}: no supplier with a valid supplier.yaml has that id; known: {}",
            known.join(", ")
        ));
    }
    Ok(overviews
        .into_iter()
        .filter(|o| requested.contains(&o.supplier))
        .collect())
}

fn print(overviews: &[Overview], templates: &Templates, format: ReportFormat) -> ExitCode {
    match format {
        ReportFormat::Json => match serde_json::to_string_pretty(overviews) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: failed to render the overviews as JSON: {e}");
                return ExitCode::from(1);
            }
        },
        ReportFormat::Csv => {
            if overviews.len() > 1 {
                eprintln!(
                    "error: --output csv prints one supplier's file: add --supplier ID (one of {})",
                    overviews
                        .iter()
                        .map(|o| o.supplier.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return ExitCode::from(2);
            }
            for overview in overviews {
                print!("{}", csv::render(overview, templates.language()));
            }
        }
        ReportFormat::Text => {
            for (index, overview) in overviews.iter().enumerate() {
                let mail = match templates.overview(overview) {
                    Ok(mail) => mail,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(1);
                    }
                };
                if index > 0 {
                    println!();
                }
                println!("To: {} ({})", overview.secure_mail, overview.supplier);
                println!("Subject: {}\n", mail.subject);
                print!("{}", mail.text);
            }
        }
    }
    ExitCode::SUCCESS
}

async fn send<S: MailSender>(
    overviews: &[Overview],
    templates: &Templates,
    sender: &S,
) -> ExitCode {
    let mut failed = 0;
    for overview in overviews {
        let result = match report::overview_mail(templates, overview) {
            Ok(content) => sender.send(&overview.supplier, &content).await,
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                info!(supplier = overview.supplier, "sent the overview");
                println!(
                    "sent the overview to {} ({})",
                    overview.supplier, overview.secure_mail
                );
            }
            Err(message) => {
                failed += 1;
                error!(supplier = overview.supplier, error = %message, "failed to send the overview");
                eprintln!(
                    "error: failed to send the overview to {}: {message}",
                    overview.supplier
                );
            }
        }
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
