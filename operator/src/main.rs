//! The `adgang` command line.
//!
//! Exit codes: 0 when everything was applied (or, for `plan`, planned), 1 when something could
//! not be applied or read (the output lists what), 2 for usage and configuration errors.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use tracing::{error, info, warn};

use adgang::config::{Config, ConfigError, CredentialsDelivery};
use adgang::controller::mail_schedule::{self, MailSchedule, MailScheduleSettings};
use adgang::controller::{
    self, leader,
    leader::{LeaderElector, LeaderSettings},
};
use adgang::credentials::{self, CredentialsSink, Delivery, FileSink, MailSink};
use adgang::directory::LdapDirectory;
use adgang::mail::Mailer;
use adgang::model::Action;
use adgang::output;
use adgang::server::{
    self, Metrics, Readiness, Server, ServerConfig, SyncTrigger, UserCounts, WebhookSecret,
};
use adgang::source::{GitSource, StateStore};
use adgang::sync::{self, SyncOptions, SyncReport};
use adgang::templates::Templates;
use adgang::validate;

mod report_command;

#[derive(Parser)]
#[command(
    name = "adgang",
    version,
    about = "Reconciles supplier staff's AD accounts from a git repository"
)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ADGANG_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(clap::Args)]
struct Common {
    /// Configuration file (YAML).
    #[arg(
        long,
        short,
        env = "ADGANG_CONFIG",
        default_value = "/etc/adgang/config.yaml"
    )]
    config: PathBuf,

    /// Output format of the plan or report on standard output.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,

    /// Lifts the mass-deletion guard for this supplier for this run (repeatable).
    #[arg(long, value_name = "SUPPLIER")]
    allow_mass_deletion: Vec<String>,

    /// Accepts this head commit although it does not descend from the last applied commit.
    /// Check the branch's history first: a rewrite can undo reviewed changes.
    #[arg(long, value_name = "COMMIT")]
    accept_rewritten_history: Option<String>,
}

#[derive(clap::Args)]
struct ValidateArgs {
    /// The repository to check.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Base commit of the pull request [default: merge base of HEAD and the main branch].
    #[arg(long)]
    base: Option<String>,
    /// Head commit of the pull request.
    #[arg(long, default_value = "HEAD")]
    head: String,
    /// Branch that pull requests merge into.
    #[arg(long, default_value = "main")]
    main_branch: String,
    /// Submission date (YYYY-MM-DD) [default: today in Europe/Copenhagen].
    #[arg(long)]
    today: Option<chrono::NaiveDate>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    format: ValidateFormat,
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// Configuration file (YAML).
    #[arg(
        long,
        short,
        env = "ADGANG_CONFIG",
        default_value = "/etc/adgang/config.yaml"
    )]
    config: PathBuf,

    /// Applies the repository's files as Supplier and SupplierUser objects and deletes the
    /// labelled objects whose file is gone (git source mode). controller.gitSource in the
    /// configuration turns it on as well.
    #[arg(long)]
    git_source: bool,

    /// Address of the HTTP server for /metrics, /healthz, /readyz and push webhooks. The
    /// webhook secret comes from ADGANG_WEBHOOK_SECRET or the file named by
    /// ADGANG_WEBHOOK_SECRET_FILE. Without one, the webhooks are disabled.
    #[arg(long, value_name = "ADDRESS", default_value = server::DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// Lifts the mass-deletion guard for this supplier (repeatable): in git source mode, for
    /// accounts whose object is gone, and for objects deleted at once.
    #[arg(long, value_name = "SUPPLIER")]
    allow_mass_deletion: Vec<String>,

    /// Accepts this head commit in git source mode although it does not descend from the
    /// last applied commit. Check the branch's history first.
    #[arg(long, value_name = "COMMIT")]
    accept_rewritten_history: Option<String>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Configuration file (YAML).
    #[arg(
        long,
        short,
        env = "ADGANG_CONFIG",
        default_value = "/etc/adgang/config.yaml"
    )]
    config: PathBuf,
    /// Prints the overviews on standard output instead of sending them.
    #[arg(long)]
    print: bool,
    /// Format of --print: the mail text, the CSV attachment, or JSON.
    #[arg(long, short, value_enum, default_value_t = ReportFormat::Text, requires = "print")]
    output: ReportFormat,
    /// Only this supplier, by its folder name (repeatable) [default: every supplier].
    #[arg(long, value_name = "ID")]
    supplier: Vec<String>,
    /// Writes the mails to this folder instead of sending them [default: schedule.outbox].
    #[arg(long, value_name = "FOLDER", conflicts_with = "print")]
    outbox: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ValidateFormat {
    Text,
    Github,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Shows what a sync would change now, without writing anything.
    Plan(Common),
    /// Applies the repository to AD, once or on an interval.
    Sync {
        #[command(flatten)]
        common: Common,
        /// Repeats the sync every this many seconds instead of once.
        #[arg(long, value_name = "SECONDS")]
        interval: Option<u64>,
        /// Address of the HTTP server for /metrics, /healthz, /readyz and push webhooks, with
        /// --interval. The webhook secret comes from ADGANG_WEBHOOK_SECRET or the file named
        /// by ADGANG_WEBHOOK_SECRET_FILE; without one, the webhooks are disabled.
        #[arg(
            long,
            value_name = "ADDRESS",
            default_value = server::DEFAULT_LISTEN,
            requires = "interval"
        )]
        listen: SocketAddr,
    },
    /// Checks a pull request: schema, notice rules and commit signatures, without AD.
    Validate(ValidateArgs),
    /// Runs the Kubernetes controller for the Supplier and SupplierUser objects of one
    /// namespace (controller.namespace in the configuration, else the pod's namespace).
    Controller(ControllerArgs),
    /// Sends each supplier the overview of its accounts in AD now, or prints it with --print.
    Report(ReportArgs),
    /// Prints the CustomResourceDefinitions of Supplier and SupplierUser.
    Crd {
        /// Writes one file per CRD into this folder instead of printing them.
        #[arg(long, value_name = "FOLDER")]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli.command))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ADGANG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Crd { dir: None } => {
            print!("{}", adgang::resources::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Crd { dir: Some(dir) } => {
            for (name, yaml) in adgang::resources::crd_files() {
                let path = dir.join(name);
                if let Err(e) = std::fs::write(&path, yaml) {
                    eprintln!("error: failed to write {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Command::Plan(common) => run_once(&common, false, None).await,
        Command::Controller(args) => match run_controller(&args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e:#}");
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Validate(args) => run_validate(&args),
        Command::Report(args) => report_command::run(&args).await,
        Command::Sync {
            common,
            interval: None,
            ..
        } => run_once(&common, true, None).await,
        Command::Sync {
            common,
            interval: Some(seconds),
            listen,
        } => {
            if seconds == 0 {
                eprintln!("error: --interval must be at least 1 second");
                return ExitCode::from(2);
            }
            if let Err(e) = report_command::check_templates(&common.config) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            let (metrics, trigger, _) = match start_server(listen, &common.config).await {
                Ok(started) => started,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let mut schedule_gate = report_command::ScheduleGate::default();
            loop {
                let code = run_once(&common, true, Some(&metrics)).await;
                if code == ExitCode::from(2) {
                    return code;
                }
                report_command::run_schedule_round(
                    &common.config,
                    &mut schedule_gate,
                    Some(&metrics),
                )
                .await;
                info!(seconds, "waiting for the next sync");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
                    () = trigger.fired() => info!("syncing now: a push webhook arrived"),
                    _ = tokio::signal::ctrl_c() => {
                        info!("stopping on interrupt");
                        return ExitCode::SUCCESS;
                    }
                }
            }
        }
    }
}

/// Runs one plan or sync and prints its report. With `metrics`, also records the run there.
async fn run_once(common: &Common, apply: bool, metrics: Option<&Metrics>) -> ExitCode {
    let config = match Config::load(&common.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(e, ConfigError::Read { .. }) {
                eprintln!(
                    "hint: pass --config FILE or set ADGANG_CONFIG (see examples/config.yaml)"
                );
            }
            return ExitCode::from(2);
        }
    };

    // The mailer checks the municipality's certificate and key before anything is applied.
    let mailer = match (&config.mail, apply) {
        (Some(settings), true) => match Mailer::from_config(settings) {
            Ok(mailer) => {
                let mailer = match metrics {
                    Some(metrics) => mailer.with_metrics(metrics.clone()),
                    None => mailer,
                };
                Some(Arc::new(mailer))
            }
            Err(e) => {
                eprintln!(
                    "error: invalid mail settings in {}: {e}",
                    config.path.display()
                );
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    // The templates are checked before anything is applied, like the mailer.
    let mail = match mailer {
        Some(mailer) => match Templates::load(config.language, config.templates_dir.as_deref()) {
            Ok(templates) => Some((mailer, Arc::new(templates))),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };

    let started = Instant::now();
    let result = reconcile(&config, common, apply, mail, metrics.is_some()).await;
    match (metrics, &result) {
        (Some(metrics), Ok((report, counts))) => {
            metrics.record_sync(report, started.elapsed());
            if let Some(counts) = counts {
                metrics.set_user_counts(counts);
            }
        }
        (Some(metrics), Err(_)) => metrics.record_failed_sync(started.elapsed()),
        (None, _) => {}
    }

    match result {
        Ok((report, _)) => {
            match common.output {
                Output::Table => {
                    print!("{}", output::render_text(&report, config.time_zone, apply))
                }
                Output::Json => match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => error!(error = %e, "failed to render the report as JSON"),
                },
            }
            if report.has_problems() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Starts the HTTP server of `sync --interval` and `controller` in the background with a
/// readiness check of the directory, and returns the metrics it serves, the trigger that push
/// webhooks fire, and the readiness checks, to which the caller may add.
async fn start_server(
    listen: SocketAddr,
    config_path: &Path,
) -> anyhow::Result<(Metrics, SyncTrigger, Readiness)> {
    let mut config = ServerConfig::new(listen);
    config.webhook_secret = WebhookSecret::from_env()?;

    // The check connects on its first run with the settings of that moment, then reuses the
    // connection pool, which reopens connections that the server closed.
    let readiness = Readiness::new();
    let config_path = config_path.to_owned();
    let directory = Arc::new(tokio::sync::OnceCell::<LdapDirectory>::new());
    readiness.register("directory", move || {
        let config_path = config_path.clone();
        let directory = directory.clone();
        async move {
            let connect = || async {
                let config = Config::load(&config_path)?;
                Ok::<_, server::CheckError>(LdapDirectory::connect(config.directory).await?)
            };
            directory.get_or_try_init(connect).await?.check().await?;
            Ok(())
        }
    });

    let metrics = Metrics::new();
    let trigger = SyncTrigger::new();
    let server = Server::bind(config, metrics.clone(), readiness.clone(), trigger.clone()).await?;
    tokio::spawn(server.serve(std::future::pending()));
    Ok((metrics, trigger, readiness))
}

/// Runs one plan or sync. With `count_users`, also returns the accounts by supplier and phase
/// as read from AD after the run.
async fn reconcile(
    config: &Config,
    common: &Common,
    apply: bool,
    mail: Option<(Arc<Mailer>, Arc<Templates>)>,
    count_users: bool,
) -> anyhow::Result<(SyncReport, Option<BTreeMap<String, UserCounts>>)> {
    let source = GitSource::open(&config.repository)?;
    let state = StateStore::new(&config.state_dir);
    let directory = LdapDirectory::connect(config.directory.clone()).await?;
    let options = SyncOptions {
        accept_rewritten_history: common.accept_rewritten_history.clone(),
        allow_mass_deletion: common.allow_mass_deletion.clone(),
    };

    let mut prepared = sync::prepare(config, &source, &state, &directory, Utc::now(), &options)
        .await
        .context("failed to prepare the sync")?;
    if !apply {
        return Ok((
            SyncReport {
                commit: prepared.commit,
                last_applied: prepared.last_applied.map(|c| c.to_string()),
                plan: prepared.plan,
                file_errors: prepared.desired.errors,
                unauthorised: prepared.unauthorised,
                late_merges: prepared.late_merges,
                applied: 0,
                failures: Vec::new(),
                recorded: false,
            },
            None,
        ));
    }

    let sink: Box<dyn CredentialsSink> = match (&config.credentials, mail) {
        (CredentialsDelivery::File { directory }, _) => Box::new(FileSink::new(directory)),
        (CredentialsDelivery::Mail, Some((mailer, templates))) => {
            let new_users: Vec<_> = prepared
                .plan
                .accounts
                .iter()
                .filter(|account| {
                    account
                        .actions
                        .iter()
                        .any(|action| matches!(action, Action::SetInitialPassword { .. }))
                })
                .map(|account| account.key.clone())
                .collect();
            let submitters = credentials::find_submitters(
                source.repository(),
                prepared.head,
                &prepared.desired,
                &new_users,
            );
            Box::new(
                MailSink::new(mailer, templates, &prepared.desired).with_submitters(submitters),
            )
        }
        (CredentialsDelivery::Mail, None) => {
            anyhow::bail!("credentials.delivery is mail, but the mailer was not set up")
        }
    };
    let before = std::mem::take(&mut prepared.snapshot);
    let report = sync::apply(config, &state, &directory, sink.as_ref(), prepared).await?;
    if !count_users {
        return Ok((report, None));
    }

    // After changes, AD is read again so that the gauges show what the run left.
    let after = if report.applied == 0 {
        Some(before)
    } else {
        match directory.snapshot(&BTreeSet::new(), &BTreeSet::new()).await {
            Ok(snapshot) => Some(snapshot),
            Err(e) => {
                warn!(error = %e, "failed to read AD for the user gauges, so they keep their values");
                None
            }
        }
    };
    let counts = after.map(|s| server::count_users(&s, Utc::now(), config.time_zone));
    Ok((report, counts))
}

/// Runs `adgang controller` until SIGINT or SIGTERM: the HTTP server, the leader election,
/// the reconcile loop, the user gauges and, when enabled, git source mode. Only the leader
/// writes, and on shutdown the leader releases the lease.
async fn run_controller(args: &ControllerArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let namespace = controller::watched_namespace(config.controller.namespace.as_deref());
    let identity = leader::holder_identity()?;
    let client = kube::Client::try_default()
        .await
        .context("failed to configure the Kubernetes client (in-cluster or kubeconfig)")?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopping = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });

    let (metrics, trigger, readiness) = start_server(args.listen, &args.config).await?;
    controller::readiness::register_api_server_check(&readiness, client.clone());

    let settings = LeaderSettings::new(&identity);
    let (leading, election) = LeaderElector::new(client.clone(), settings).spawn(stopping());
    info!(%namespace, %identity, "starting the controller");

    if config.controller.git_source || args.git_source {
        let options = SyncOptions {
            accept_rewritten_history: args.accept_rewritten_history.clone(),
            allow_mass_deletion: args.allow_mass_deletion.clone(),
        };
        tokio::spawn(controller::git_source::run_loop(
            config.clone(),
            client.clone(),
            namespace.clone(),
            options,
            trigger,
            leading.clone(),
            config.controller.git_source_interval,
            stopping(),
        ));
    }

    // One mailer serves the credentials and the schedule, checked before anything runs.
    let mail = controller_mail(&config, &metrics)?;
    let delivery = controller_delivery(&config, mail.as_ref())?;
    // The overview and the reminders run on the leader only, next to the reconcile.
    if let Some(schedule) = controller_mail_schedule(&config, &client, &namespace, mail).await? {
        let leading = leading.clone();
        let stop = stopping();
        tokio::spawn(async move { schedule.run(leading, stop).await });
    }

    let reconcile_metrics = metrics.clone();
    let gauge_directory = LdapDirectory::connect(config.directory.clone()).await?;
    tokio::spawn(controller::gauges::run_user_gauges(
        gauge_directory,
        metrics,
        config.controller.resync_interval,
        config.time_zone,
        leading.clone(),
        stopping(),
    ));

    let directory = LdapDirectory::connect(config.directory.clone()).await?;
    let controllers = controller::Controllers::new(
        client,
        &namespace,
        directory,
        delivery,
        controller::ControllerConfig::from_config(&config, &args.allow_mass_deletion),
        leading,
    );
    controllers.context.set_metrics(reconcile_metrics);
    controllers.run(stopping()).await;

    // The election releases the lease when the stop is signalled.
    election.await.context("the leader election task failed")?;
    Ok(())
}

/// Sets up the monthly overview and the reminders for the controller, checking the mail
/// settings and templates at start. Returns `None` when the configuration has no `mail:`
/// section, because the controller sends these mails only by secure mail.
async fn controller_mail_schedule(
    config: &Config,
    client: &kube::Client,
    namespace: &str,
    mail: Option<ControllerMail>,
) -> anyhow::Result<Option<MailSchedule<LdapDirectory>>> {
    let Some((mailer, templates)) = mail else {
        info!("no mail: section, so the controller sends no overviews or reminders");
        return Ok(None);
    };
    let directory = LdapDirectory::connect(config.directory.clone()).await?;
    Ok(Some(MailSchedule {
        client: client.clone(),
        namespace: namespace.to_owned(),
        directory,
        mailer,
        templates,
        settings: MailScheduleSettings {
            schedule: config.schedule.clone(),
            plan: config.plan_settings(Vec::<String>::new()),
            language: config.language,
            closing_days: config.closing_days.clone(),
            interval: mail_schedule::DEFAULT_INTERVAL,
        },
    }))
}

/// The controller's mailer and mail templates.
type ControllerMail = (Arc<Mailer>, Arc<Templates>);

/// Builds the controller's mailer and loads the templates when the configuration has a
/// `mail:` section, checking the municipality's certificate and key and every template.
fn controller_mail(config: &Config, metrics: &Metrics) -> anyhow::Result<Option<ControllerMail>> {
    let Some(settings) = &config.mail else {
        return Ok(None);
    };
    let mailer = Mailer::from_config(settings)
        .with_context(|| format!("invalid mail settings in {}", config.path.display()))?
        .with_metrics(metrics.clone());
    let templates = Templates::load(config.language, config.templates_dir.as_deref())?;
    Ok(Some((Arc::new(mailer), Arc::new(templates))))
}

/// Chooses the delivery of initial passwords for the controller.
fn controller_delivery(config: &Config, mail: Option<&ControllerMail>) -> anyhow::Result<Delivery> {
    match &config.credentials {
        CredentialsDelivery::File { directory } => {
            Ok(Delivery::Sink(Arc::new(FileSink::new(directory))))
        }
        CredentialsDelivery::Mail => {
            let (mailer, templates) = mail.with_context(|| {
                format!(
                    "credentials.delivery is mail in {}, but it has no mail: section",
                    config.path.display()
                )
            })?;
            Ok(Delivery::Mail {
                mailer: mailer.clone(),
                templates: templates.clone(),
            })
        }
    }
}

/// Completes on SIGINT or SIGTERM, the signal Kubernetes sends to stop a pod.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(e) => {
            error!(error = %e, "failed to listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn run_validate(args: &ValidateArgs) -> ExitCode {
    let today = args.today.unwrap_or_else(|| {
        Utc::now()
            .with_timezone(&chrono_tz::Europe::Copenhagen)
            .date_naive()
    });
    let options = validate::ValidateOptions {
        repo: args.repo.clone(),
        base: args.base.clone(),
        head: args.head.clone(),
        main_branch: args.main_branch.clone(),
        today,
    };
    let report = match validate::validate(&options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match args.format {
        ValidateFormat::Text => print!("{}", validate::render_text(&report)),
        ValidateFormat::Github => print!("{}", validate::render_github(&report)),
        ValidateFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: failed to render the report as JSON: {e}");
                return ExitCode::from(1);
            }
        },
    }
    if report.is_acceptable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
