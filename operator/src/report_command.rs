//! `adgang report`, and the sending round that `sync --interval` runs after each sync.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use tracing::{error, info, warn};

use adgang::config::Config;
use adgang::directory::LdapDirectory;
use adgang::report::outbox::OutboxSender;
use adgang::report::run::{Collected, collect};
use adgang::report::{self, Overview, csv};
use adgang::schedule::{self, FileSentRecordStore, MailSender, Round, ScheduleError};
use adgang::source::{GitSource, StateStore};
use adgang::templates::Templates;

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
    let sender = if args.print {
        None
    } else {
        match choose_sender(&config, args.outbox.as_deref()) {
            Ok(sender) => Some(sender),
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
    let overviews = match select(collected.overviews, &args.supplier) {
        Ok(overviews) => overviews,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };

    match sender {
        None => print(&overviews, &templates, args.output),
        Some(sender) => send(&overviews, &templates, &sender).await,
    }
}

/// Runs one round of the schedule: sends the overviews and reminders that are due. Errors
/// are logged, because the sync loop goes on regardless.
pub async fn run_schedule_round(config_path: &Path) {
    let (config, templates) = match load(config_path) {
        Ok(loaded) => loaded,
        Err(e) => {
            error!(error = format!("{e:#}"), "skipping the mail schedule");
            return;
        }
    };
    let Ok(sender) = choose_sender(&config, None) else {
        tracing::debug!("no mail delivery configured; the mail schedule does not run");
        return;
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
        now: Utc::now(),
        settings: &config.schedule,
        calendar: &collected.calendar,
        templates: &templates,
        overviews: &collected.overviews,
    };
    let store = FileSentRecordStore::new(&config.state_dir);
    match schedule::send_due(&round, &store, &sender).await {
        Ok(report) => info!(
            overviews = report.overviews.len(),
            reminders = report.reminders.len(),
            failures = report.failures.len(),
            "mail schedule round done"
        ),
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

/// Returns where mails go: the outbox folder given on the command line or in the
/// configuration.
// TODO: send by SMTP with S/MIME once the mailer exists; until then only an outbox folder
// delivers mail.
fn choose_sender(config: &Config, outbox: Option<&Path>) -> Result<OutboxSender, String> {
    let folder: Option<PathBuf> = outbox
        .map(Path::to_path_buf)
        .or_else(|| config.outbox_dir.clone());
    match folder {
        Some(folder) => Ok(OutboxSender::new(folder)),
        None => Err(format!(
            "no mail delivery is configured: set schedule.outbox in {}, pass --outbox FOLDER, \
             or use --print to show the overviews",
            config.path.display()
        )),
    }
}

fn select(overviews: Vec<Overview>, wanted: &[String]) -> Result<Vec<Overview>, String> {
    if wanted.is_empty() {
        return Ok(overviews);
    }
    let known: Vec<&str> = overviews.iter().map(|o| o.supplier.as_str()).collect();
    if let Some(unknown) = wanted.iter().find(|w| !known.contains(&w.as_str())) {
        return Err(format!(
            "--supplier {unknown}: no supplier with a valid supplier.yaml has that id; known: {}",
            known.join(", ")
        ));
    }
    Ok(overviews
        .into_iter()
        .filter(|o| wanted.contains(&o.supplier))
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
