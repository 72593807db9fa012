//! The configuration file: one YAML file for the directory, the repository, the managed
//! base, the safety thresholds and the time zone.
//!
//! Secrets never sit in the file itself. The bind password comes from
//! `ADGANG_BIND_PASSWORD`, or from the file named by `ADGANG_BIND_PASSWORD_FILE` or by
//! `directory.bindPasswordFile`, in that order. The SMTP password comes from
//! `ADGANG_SMTP_PASSWORD`, `ADGANG_SMTP_PASSWORD_FILE` or `mail.smtp.passwordFile` alike. Relative paths are read relative to the
//! folder of the configuration file, so an example folder can be moved as a whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;

use crate::calendar::ClosingDays;
use crate::directory::{DirectorySettings, Secret};
use crate::mail::{MailSettings, RetrySettings, TlsMode};
use crate::plan::{DeletionGuard, Settings as PlanSettings};
use crate::reminders;
use crate::schedule::{self, ScheduleSettings};
use crate::source::RepositorySettings;
use crate::templates::Language;

/// Largest `schedule.reminderWorkingDays`: about three months of working days.
const MAX_REMINDER_WORKING_DAYS: u32 = 60;

/// Environment variable that contains the bind password itself.
pub const BIND_PASSWORD_ENV: &str = "ADGANG_BIND_PASSWORD";
/// Environment variable that names a file containing the bind password.
pub const BIND_PASSWORD_FILE_ENV: &str = "ADGANG_BIND_PASSWORD_FILE";
/// Environment variable that contains the SMTP password itself.
pub const SMTP_PASSWORD_ENV: &str = "ADGANG_SMTP_PASSWORD";
/// Environment variable that names a file containing the SMTP password.
pub const SMTP_PASSWORD_FILE_ENV: &str = "ADGANG_SMTP_PASSWORD_FILE";

/// Secrets taken from the environment, each `None` when its variable is unset.
#[derive(Clone, Debug, Default)]
pub struct SecretEnv {
    /// Value of `ADGANG_BIND_PASSWORD`.
    pub bind_password: Option<String>,
    /// Value of `ADGANG_BIND_PASSWORD_FILE`.
    pub bind_password_file: Option<PathBuf>,
    /// Value of `ADGANG_SMTP_PASSWORD`.
    pub smtp_password: Option<String>,
    /// Value of `ADGANG_SMTP_PASSWORD_FILE`.
    pub smtp_password_file: Option<PathBuf>,
}

impl SecretEnv {
    /// Reads the four variables from the process environment.
    pub fn from_process() -> Self {
        Self {
            bind_password: std::env::var(BIND_PASSWORD_ENV).ok(),
            bind_password_file: std::env::var_os(BIND_PASSWORD_FILE_ENV).map(PathBuf::from),
            smtp_password: std::env::var(SMTP_PASSWORD_ENV).ok(),
            smtp_password_file: std::env::var_os(SMTP_PASSWORD_FILE_ENV).map(PathBuf::from),
        }
    }
}

/// A configuration that cannot be used, naming the file, the setting and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid YAML for the configuration schema.
    #[error("invalid configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A setting has a value that cannot work.
    #[error("invalid setting {setting} in {path}: {message}")]
    Invalid {
        path: PathBuf,
        setting: &'static str,
        message: String,
    },
    /// No bind password was given.
    #[error(
        "no bind password: set {BIND_PASSWORD_ENV}, or {BIND_PASSWORD_FILE_ENV} or \
         directory.bindPasswordFile in {path} to a file that holds it"
    )]
    MissingBindPassword { path: PathBuf },
    /// The bind password file could not be read.
    #[error("failed to read the bind password file {file}: {source}")]
    BindPasswordFile {
        file: PathBuf,
        source: std::io::Error,
    },
    /// No SMTP password was given although a `mail:` section is configured.
    #[error(
        "no SMTP password: set {SMTP_PASSWORD_ENV}, or {SMTP_PASSWORD_FILE_ENV} or \
         mail.smtp.passwordFile in {path} to a file that holds it"
    )]
    MissingSmtpPassword { path: PathBuf },
    /// The SMTP password file could not be read.
    #[error("failed to read the SMTP password file {file}: {source}")]
    SmtpPasswordFile {
        file: PathBuf,
        source: std::io::Error,
    },
}

/// The configuration file as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    directory: RawDirectory,
    repository: RawRepository,
    state_dir: PathBuf,
    #[serde(default = "default_time_zone")]
    time_zone: String,
    #[serde(default)]
    safety: RawSafety,
    #[serde(default)]
    grace_days: u32,
    #[serde(default)]
    credentials: Option<RawCredentials>,
    #[serde(default)]
    mail: Option<RawMail>,
    #[serde(default)]
    signatures: RawSignatures,
    #[serde(default)]
    controller: RawController,
    #[serde(default)]
    templates: RawTemplates,
    #[serde(default)]
    schedule: RawSchedule,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTemplates {
    #[serde(default)]
    language: Language,
    #[serde(default)]
    folder: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawController {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default = "default_resync_seconds")]
    resync_seconds: u64,
    #[serde(default)]
    git_source: bool,
    #[serde(default = "default_git_source_interval_seconds")]
    git_source_interval_seconds: u64,
}

impl Default for RawController {
    fn default() -> Self {
        Self {
            namespace: None,
            resync_seconds: default_resync_seconds(),
            git_source: false,
            git_source_interval_seconds: default_git_source_interval_seconds(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSchedule {
    #[serde(default = "default_overview_hour")]
    overview_hour: u32,
    #[serde(default = "default_reminder_working_days")]
    reminder_working_days: u32,
    #[serde(default)]
    closing_days: ClosingDays,
    #[serde(default)]
    outbox: Option<PathBuf>,
}

impl Default for RawSchedule {
    fn default() -> Self {
        Self {
            overview_hour: default_overview_hour(),
            reminder_working_days: default_reminder_working_days(),
            closing_days: ClosingDays::default(),
            outbox: None,
        }
    }
}

fn default_overview_hour() -> u32 {
    schedule::DEFAULT_OVERVIEW_HOUR
}

fn default_reminder_working_days() -> u32 {
    reminders::DEFAULT_WORKING_DAYS
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSignatures {
    #[serde(default = "default_true")]
    required: bool,
}

impl Default for RawSignatures {
    fn default() -> Self {
        Self { required: true }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDirectory {
    url: String,
    ca_file: PathBuf,
    bind_dn: String,
    #[serde(default)]
    bind_password_file: Option<PathBuf>,
    managed_base: String,
    domain_base: String,
    upn_suffix: String,
    #[serde(default = "default_connections")]
    connections: usize,
    #[serde(default = "default_timeout_seconds")]
    timeout_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRepository {
    url: String,
    #[serde(default = "default_branch")]
    branch: String,
    #[serde(default)]
    cache_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSafety {
    #[serde(default = "default_max_deletion_share")]
    max_deletion_share: f64,
    #[serde(default = "default_min_deletion_count")]
    min_deletion_count: usize,
}

impl Default for RawSafety {
    fn default() -> Self {
        Self {
            max_deletion_share: default_max_deletion_share(),
            min_deletion_count: default_min_deletion_count(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCredentials {
    #[serde(default)]
    delivery: Option<RawDelivery>,
    #[serde(default)]
    directory: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawDelivery {
    Mail,
    File,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMail {
    smtp: RawSmtp,
    from: String,
    certificate_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    retry: RawRetry,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSmtp {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default = "default_smtp_tls")]
    tls: RawTls,
    ca_file: PathBuf,
    username: String,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default = "default_timeout_seconds")]
    timeout_seconds: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawTls {
    Starttls,
    Tls,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRetry {
    #[serde(default = "default_retry_attempts")]
    attempts: u32,
    #[serde(default = "default_initial_backoff_seconds")]
    initial_backoff_seconds: f64,
    #[serde(default = "default_max_backoff_seconds")]
    max_backoff_seconds: f64,
}

impl Default for RawRetry {
    fn default() -> Self {
        Self {
            attempts: default_retry_attempts(),
            initial_backoff_seconds: default_initial_backoff_seconds(),
            max_backoff_seconds: default_max_backoff_seconds(),
        }
    }
}

fn default_smtp_tls() -> RawTls {
    RawTls::Starttls
}
fn default_retry_attempts() -> u32 {
    RetrySettings::default().attempts
}
fn default_initial_backoff_seconds() -> f64 {
    RetrySettings::default().initial_backoff.as_secs_f64()
}
fn default_max_backoff_seconds() -> f64 {
    RetrySettings::default().max_backoff.as_secs_f64()
}

fn default_time_zone() -> String {
    "Europe/Copenhagen".to_owned()
}
fn default_connections() -> usize {
    4
}
fn default_timeout_seconds() -> u64 {
    30
}
fn default_git_source_interval_seconds() -> u64 {
    ControllerSettings::DEFAULT_GIT_SOURCE_INTERVAL.as_secs()
}
fn default_resync_seconds() -> u64 {
    ControllerSettings::DEFAULT_RESYNC.as_secs()
}
fn default_branch() -> String {
    "main".to_owned()
}
fn default_max_deletion_share() -> f64 {
    0.25
}
fn default_min_deletion_count() -> usize {
    3
}

/// The configuration, checked and with paths resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub directory: DirectorySettings,
    pub repository: RepositorySettings,
    /// Folder in which the last applied commit is recorded.
    pub state_dir: PathBuf,
    pub time_zone: Tz,
    pub grace_days: u32,
    pub max_deletion_share: f64,
    pub min_deletion_count: usize,
    /// Delivery of new accounts' initial passwords.
    pub credentials: CredentialsDelivery,
    /// The `mail:` section, when present.
    pub mail: Option<MailSettings>,
    /// Whether every commit must be signed by someone allowed to make its changes.
    pub require_signatures: bool,
    pub controller: ControllerSettings,
    /// Language of the mails.
    pub language: Language,
    /// Folder of municipality-edited templates that override the built-in ones.
    pub templates_dir: Option<PathBuf>,
    /// When the overview and the reminders go.
    pub schedule: ScheduleSettings,
    /// Closing days added to those of the repository's `policy.yaml` for the schedule.
    pub closing_days: ClosingDays,
    /// Folder that mails are written to instead of being sent.
    pub outbox_dir: Option<PathBuf>,
}

/// Settings of `adgang controller`.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerSettings {
    /// Namespace whose `Supplier` and `SupplierUser` objects are reconciled; `None` means the
    /// namespace the pod runs in.
    pub namespace: Option<String>,
    /// Time between two reconciles of an unchanged object, which finds changes made by hand
    /// in AD.
    pub resync_interval: Duration,
    /// Whether the controller applies the repository's files as objects (git source mode).
    pub git_source: bool,
    /// Time between two fetches of the repository in git source mode. A push webhook starts
    /// one at once.
    pub git_source_interval: Duration,
}

impl ControllerSettings {
    /// Default resync interval: ten minutes.
    pub const DEFAULT_RESYNC: Duration = Duration::from_secs(600);
    /// Default interval of git source mode: one minute.
    pub const DEFAULT_GIT_SOURCE_INTERVAL: Duration = Duration::from_secs(60);
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            namespace: None,
            resync_interval: Self::DEFAULT_RESYNC,
            git_source: false,
            git_source_interval: Self::DEFAULT_GIT_SOURCE_INTERVAL,
        }
    }
}

/// The delivery of new accounts' initial passwords.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialsDelivery {
    /// S/MIME mail to the supplier's secure mail address, with the `mail:` settings. The
    /// default when the configuration has a `mail:` section.
    Mail,
    /// One owner-only file per account in this folder (`credentials.delivery: file`). The
    /// default without a `mail:` section.
    File { directory: PathBuf },
}

impl Config {
    /// Reads and checks the configuration file, taking secrets from the environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_str_with_env(path, &text, SecretEnv::from_process())
    }

    /// Returns the folder of the file credentials sink, when delivery is by file.
    pub fn credentials_dir(&self) -> Option<&Path> {
        match &self.credentials {
            CredentialsDelivery::File { directory } => Some(directory),
            CredentialsDelivery::Mail => None,
        }
    }

    /// Parses and checks configuration text with only the bind password variables set; see
    /// [`Config::from_str_with_env`].
    pub fn from_str(
        path: &Path,
        text: &str,
        bind_password_env: Option<String>,
        bind_password_file_env: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let env = SecretEnv {
            bind_password: bind_password_env,
            bind_password_file: bind_password_file_env,
            ..SecretEnv::default()
        };
        Self::from_str_with_env(path, text, env)
    }

    /// Parses and checks configuration text; `path` names the file in messages and anchors
    /// relative paths.
    pub fn from_str_with_env(path: &Path, text: &str, env: SecretEnv) -> Result<Self, ConfigError> {
        let SecretEnv {
            bind_password: bind_password_env,
            bind_password_file: bind_password_file_env,
            smtp_password: smtp_password_env,
            smtp_password_file: smtp_password_file_env,
        } = env;
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let folder = config_folder(path);
        let folder = folder.as_path();
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                folder.join(p)
            }
        };
        let invalid = |setting: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            setting,
            message,
        };

        let time_zone: Tz = raw.time_zone.parse().map_err(|_| {
            invalid(
                "timeZone",
                format!(
                    "{:?} is not an IANA time zone name such as Europe/Copenhagen",
                    raw.time_zone
                ),
            )
        })?;

        if !(raw.directory.url.starts_with("ldaps://") || raw.directory.url.starts_with("ldap://"))
        {
            return Err(invalid(
                "directory.url",
                format!("{:?} is not an ldaps:// or ldap:// URL", raw.directory.url),
            ));
        }
        if raw.directory.connections == 0 || raw.directory.connections > 64 {
            return Err(invalid(
                "directory.connections",
                format!("{} is outside 1 to 64", raw.directory.connections),
            ));
        }
        if !(0.0..=1.0).contains(&raw.safety.max_deletion_share) {
            return Err(invalid(
                "safety.maxDeletionShare",
                format!(
                    "{} is not a share between 0.0 and 1.0",
                    raw.safety.max_deletion_share
                ),
            ));
        }
        if raw.schedule.overview_hour > 23 {
            return Err(invalid(
                "schedule.overviewHour",
                format!("{} is not an hour from 0 to 23", raw.schedule.overview_hour),
            ));
        }
        if !(1..=MAX_REMINDER_WORKING_DAYS).contains(&raw.schedule.reminder_working_days) {
            return Err(invalid(
                "schedule.reminderWorkingDays",
                format!(
                    "{} is outside 1 to {MAX_REMINDER_WORKING_DAYS} working days",
                    raw.schedule.reminder_working_days
                ),
            ));
        }
        let managed_base = raw.directory.managed_base.trim().to_owned();
        let domain_base = raw.directory.domain_base.trim().to_owned();
        if !managed_base
            .to_lowercase()
            .ends_with(&domain_base.to_lowercase())
        {
            return Err(invalid(
                "directory.managedBase",
                format!("{managed_base:?} is not inside directory.domainBase {domain_base:?}"),
            ));
        }

        if raw.controller.resync_seconds == 0 {
            return Err(invalid(
                "controller.resyncSeconds",
                "0 is not a resync interval; use a number of seconds such as 600".to_owned(),
            ));
        }
        if raw.controller.git_source_interval_seconds == 0 {
            return Err(invalid(
                "controller.gitSourceIntervalSeconds",
                "0 is not an interval; use a number of seconds such as 60".to_owned(),
            ));
        }
        let controller_namespace = raw.controller.namespace.map(|n| n.trim().to_owned());
        if controller_namespace.as_deref() == Some("") {
            return Err(invalid(
                "controller.namespace",
                "the namespace is empty; name one, or leave the setting out to use the \
                 pod's namespace"
                    .to_owned(),
            ));
        }

        let bind_password = match (
            bind_password_env,
            bind_password_file_env,
            raw.directory.bind_password_file,
        ) {
            (Some(password), _, _) => Secret::new(password),
            (None, Some(file), _) => read_password_file(&file, bind_password_error)?,
            (None, None, Some(file)) => read_password_file(&resolve(&file), bind_password_error)?,
            (None, None, None) => {
                return Err(ConfigError::MissingBindPassword {
                    path: path.to_owned(),
                });
            }
        };

        let state_dir = resolve(&raw.state_dir);
        let repository = RepositorySettings {
            url: resolve_repository_url(&raw.repository.url, folder),
            branch: raw.repository.branch,
            cache_dir: raw
                .repository
                .cache_dir
                .map(|p| resolve(&p))
                .unwrap_or_else(|| state_dir.join("cache")),
        };
        let mail = match raw.mail {
            Some(mail) => Some(mail_settings(
                path,
                mail,
                &resolve,
                smtp_password_env,
                smtp_password_file_env,
            )?),
            None => None,
        };
        let credentials = credentials_delivery(raw.credentials, mail.is_some(), &resolve)
            .map_err(|(setting, message)| invalid(setting, message))?;
        if let CredentialsDelivery::File { directory } = &credentials
            && Path::new(&repository.url).is_dir()
            && directory.starts_with(&repository.url)
        {
            return Err(invalid(
                "credentials.directory",
                format!(
                    "{} is inside the repository {}, where a password could be committed",
                    directory.display(),
                    repository.url
                ),
            ));
        }

        Ok(Self {
            path: path.to_owned(),
            directory: DirectorySettings {
                url: raw.directory.url,
                ca_file: resolve(&raw.directory.ca_file),
                bind_dn: raw.directory.bind_dn,
                bind_password,
                managed_base,
                domain_base,
                upn_suffix: raw.directory.upn_suffix,
                connections: raw.directory.connections,
                timeout: Duration::from_secs(raw.directory.timeout_seconds),
            },
            repository,
            state_dir,
            time_zone,
            grace_days: raw.grace_days,
            max_deletion_share: raw.safety.max_deletion_share,
            min_deletion_count: raw.safety.min_deletion_count,
            credentials,
            mail,
            require_signatures: raw.signatures.required,
            controller: ControllerSettings {
                namespace: controller_namespace,
                resync_interval: Duration::from_secs(raw.controller.resync_seconds),
                git_source: raw.controller.git_source,
                git_source_interval: Duration::from_secs(
                    raw.controller.git_source_interval_seconds,
                ),
            },
            language: raw.templates.language,
            templates_dir: raw.templates.folder.map(|p| resolve(&p)),
            schedule: ScheduleSettings {
                overview_hour: raw.schedule.overview_hour,
                reminder_working_days: raw.schedule.reminder_working_days,
                time_zone,
            },
            closing_days: raw.schedule.closing_days,
            outbox_dir: raw.schedule.outbox.map(|p| resolve(&p)),
        })
    }

    /// Returns the settings of the plan, with the mass-deletion guard lifted for `overridden`.
    pub fn plan_settings(&self, overridden: impl IntoIterator<Item = String>) -> PlanSettings {
        PlanSettings {
            managed_base: self.directory.managed_base.clone(),
            upn_suffix: self.directory.upn_suffix.clone(),
            time_zone: self.time_zone,
            grace_days: self.grace_days,
            guard: DeletionGuard {
                max_share: self.max_deletion_share,
                min_count: self.min_deletion_count,
                overridden: overridden.into_iter().collect(),
            },
        }
    }
}

/// Returns the folder of the configuration file as an absolute path without symbolic links.
/// Relative paths in the file resolve against it, and so does the repository path, which
/// names the record of the last applied commit. Neither may depend on how the file was named
/// on the command line (`config.yaml`, `./config.yaml` or its absolute path).
fn config_folder(path: &Path) -> PathBuf {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::canonicalize(folder)
        .or_else(|_| std::path::absolute(folder))
        .unwrap_or_else(|_| folder.to_owned())
}

/// Resolves a local repository path against the configuration folder, without symbolic links
/// or `..` when the path exists; URLs stay as they are.
fn resolve_repository_url(url: &str, folder: &Path) -> String {
    if url.contains("://") || url.starts_with("git@") {
        return url.to_owned();
    }
    let path = folder.join(url);
    std::fs::canonicalize(&path)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Chooses the credentials delivery: `credentials.delivery` when set, otherwise mail when
/// there is a `mail:` section and a file folder when there is not.
fn credentials_delivery(
    raw: Option<RawCredentials>,
    has_mail: bool,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<CredentialsDelivery, (&'static str, String)> {
    let (delivery, directory) = match raw {
        Some(raw) => (raw.delivery, raw.directory),
        None => (None, None),
    };
    let delivery = delivery.unwrap_or(if has_mail {
        RawDelivery::Mail
    } else {
        RawDelivery::File
    });
    match (delivery, directory) {
        (RawDelivery::Mail, _) if !has_mail => Err((
            "credentials.delivery",
            "is mail, but there is no mail: section; add one or set delivery: file".to_owned(),
        )),
        (RawDelivery::Mail, Some(directory)) => Err((
            "credentials.directory",
            format!(
                "{} is set, but delivery is mail; remove it, or set credentials.delivery: file \
                 to write passwords to files",
                directory.display()
            ),
        )),
        (RawDelivery::Mail, None) => Ok(CredentialsDelivery::Mail),
        (RawDelivery::File, Some(directory)) => Ok(CredentialsDelivery::File {
            directory: resolve(&directory),
        }),
        (RawDelivery::File, None) => Err((
            "credentials.directory",
            "is missing; set it to a folder outside the repository, or add a mail: section \
             to deliver passwords by secure mail"
                .to_owned(),
        )),
    }
}

/// Checks the `mail:` section and resolves its paths and its password.
fn mail_settings(
    path: &Path,
    raw: RawMail,
    resolve: &dyn Fn(&Path) -> PathBuf,
    password_env: Option<String>,
    password_file_env: Option<PathBuf>,
) -> Result<MailSettings, ConfigError> {
    let invalid = |setting: &'static str, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        setting,
        message,
    };
    let host = raw.smtp.host.trim().to_owned();
    let is_ip_address = host.parse::<std::net::IpAddr>().is_ok();
    let is_host_name = !host.is_empty() && !host.contains(['/', ':', ' ', '@']);
    if !is_ip_address && !is_host_name {
        return Err(invalid(
            "mail.smtp.host",
            format!("{:?} is not a host name or IP address", raw.smtp.host),
        ));
    }

    let tls = match raw.smtp.tls {
        RawTls::Starttls => TlsMode::StartTls,
        RawTls::Tls => TlsMode::Tls,
    };
    let port = raw.smtp.port.unwrap_or(match tls {
        TlsMode::StartTls => 587,
        TlsMode::Tls => 465,
    });
    if port == 0 {
        return Err(invalid("mail.smtp.port", "0 is not a port".to_owned()));
    }
    if raw.smtp.username.trim().is_empty() {
        return Err(invalid(
            "mail.smtp.username",
            "is empty; set the SMTP AUTH user name".to_owned(),
        ));
    }
    if raw.from.parse::<lettre::Address>().is_err() {
        return Err(invalid(
            "mail.from",
            format!("{:?} is not a mail address", raw.from),
        ));
    }
    if raw.retry.attempts == 0 || raw.retry.attempts > 20 {
        return Err(invalid(
            "mail.retry.attempts",
            format!("{} is outside 1 to 20", raw.retry.attempts),
        ));
    }

    let initial_backoff = backoff(raw.retry.initial_backoff_seconds).ok_or_else(|| {
        invalid(
            "mail.retry.initialBackoffSeconds",
            out_of_range(raw.retry.initial_backoff_seconds),
        )
    })?;
    let max_backoff = backoff(raw.retry.max_backoff_seconds).ok_or_else(|| {
        invalid(
            "mail.retry.maxBackoffSeconds",
            out_of_range(raw.retry.max_backoff_seconds),
        )
    })?;
    if raw.smtp.timeout_seconds == 0 {
        return Err(invalid(
            "mail.smtp.timeoutSeconds",
            "0 is not a timeout; set a number of seconds".to_owned(),
        ));
    }

    let smtp_password_error =
        |file: PathBuf, source| ConfigError::SmtpPasswordFile { file, source };
    let password = match (password_env, password_file_env, raw.smtp.password_file) {
        (Some(password), _, _) => Secret::new(password),
        (None, Some(file), _) => read_password_file(&file, smtp_password_error)?,
        (None, None, Some(file)) => read_password_file(&resolve(&file), smtp_password_error)?,
        (None, None, None) => {
            return Err(ConfigError::MissingSmtpPassword {
                path: path.to_owned(),
            });
        }
    };

    Ok(MailSettings {
        host,
        port,
        tls,
        ca_file: resolve(&raw.smtp.ca_file),
        username: raw.smtp.username,
        password,
        from: raw.from,
        certificate_file: resolve(&raw.certificate_file),
        key_file: resolve(&raw.key_file),
        timeout: Duration::from_secs(raw.smtp.timeout_seconds),
        retry: RetrySettings {
            attempts: raw.retry.attempts,
            initial_backoff,
            max_backoff,
        },
    })
}

/// Converts a backoff in seconds, accepting 0 to one hour.
fn backoff(seconds: f64) -> Option<Duration> {
    (0.0..=3600.0)
        .contains(&seconds)
        .then(|| Duration::from_secs_f64(seconds))
}

fn out_of_range(seconds: f64) -> String {
    format!("{seconds} is outside 0 to 3600 seconds")
}

fn bind_password_error(file: PathBuf, source: std::io::Error) -> ConfigError {
    ConfigError::BindPasswordFile { file, source }
}

fn read_password_file(
    file: &Path,
    error: impl Fn(PathBuf, std::io::Error) -> ConfigError,
) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| error(file.to_owned(), source))?;
    // A trailing newline is how editors and `echo` end the file; it is never part of a password.
    Ok(Secret::new(text.trim_end_matches(['\n', '\r']).to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "
directory:
  url: ldaps://127.0.0.1
  caFile: tls/ca.pem
  bindDn: CN=Administrator,CN=Users,DC=adgang,DC=test
  managedBase: OU=Leverandører,DC=adgang,DC=test
  domainBase: DC=adgang,DC=test
  upnSuffix: adgang.test
repository:
  url: repo
stateDir: /var/lib/adgang
credentials:
  directory: /var/lib/adgang/credentials
";

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_str(
            Path::new("/etc/adgang/config.yaml"),
            text,
            Some("pw".into()),
            None,
        )
    }

    #[test]
    fn defaults_and_relative_paths() {
        let config = load(EXAMPLE).unwrap();
        assert_eq!(
            config.directory.ca_file,
            Path::new("/etc/adgang/tls/ca.pem")
        );
        assert_eq!(config.repository.url, "/etc/adgang/repo");
        assert_eq!(config.repository.branch, "main");
        assert_eq!(
            config.repository.cache_dir,
            Path::new("/var/lib/adgang/cache")
        );
        assert_eq!(config.time_zone, chrono_tz::Europe::Copenhagen);
        assert_eq!(config.max_deletion_share, 0.25);
        assert_eq!(config.min_deletion_count, 3);
        assert_eq!(config.directory.connections, 4);
        assert_eq!(config.directory.bind_password.expose(), "pw");
        assert_eq!(config.controller, ControllerSettings::default());
    }

    /// The record of the last applied commit is named after the repository path, so every
    /// spelling of the configuration path must give the same path, or the history check
    /// would start afresh.
    #[test]
    fn repository_path_same_for_every_config_spelling() {
        let work = tempfile::tempdir().unwrap();
        let folder = work.path().join("etc");
        std::fs::create_dir_all(folder.join("repo")).unwrap();
        std::os::unix::fs::symlink(&folder, work.path().join("link")).unwrap();
        let expected = std::fs::canonicalize(folder.join("repo")).unwrap();

        let spellings = [
            folder.join("config.yaml"),
            folder.join(".").join("config.yaml"),
            folder.join("..").join("etc").join("config.yaml"),
            work.path().join("link").join("config.yaml"),
        ];
        for path in spellings {
            let config = Config::from_str(&path, EXAMPLE, Some("pw".into()), None).unwrap();
            assert_eq!(
                Path::new(&config.repository.url),
                expected,
                "config path {}",
                path.display()
            );
        }
    }

    #[test]
    fn controller_section_read() {
        let config = load(&format!(
            "{EXAMPLE}controller:\n  namespace: leverandoerer\n  resyncSeconds: 120\n"
        ))
        .unwrap();
        assert_eq!(
            config.controller.namespace.as_deref(),
            Some("leverandoerer")
        );
        assert_eq!(config.controller.resync_interval, Duration::from_secs(120));
        assert!(!config.controller.git_source);
    }

    #[test]
    fn git_source_settings_read() {
        let config = load(&format!(
            "{EXAMPLE}controller:\n  gitSource: true\n  gitSourceIntervalSeconds: 30\n"
        ))
        .unwrap();

        assert!(config.controller.git_source);
        assert_eq!(
            config.controller.git_source_interval,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn zero_git_source_interval_rejected() {
        let error = load(&format!(
            "{EXAMPLE}controller:\n  gitSourceIntervalSeconds: 0\n"
        ))
        .unwrap_err()
        .to_string();

        assert!(
            error.contains("controller.gitSourceIntervalSeconds"),
            "{error}"
        );
    }

    #[test]
    fn zero_resync_interval_rejected() {
        let error = load(&format!("{EXAMPLE}controller:\n  resyncSeconds: 0\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("controller.resyncSeconds"), "{error}");
    }

    #[test]
    fn unknown_setting_rejected() {
        let error = load(&format!("{EXAMPLE}colour: blue\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/etc/adgang/config.yaml"), "{error}");
        assert!(error.contains("colour"), "{error}");
    }

    #[test]
    fn missing_setting_named() {
        let text = EXAMPLE.replace("  upnSuffix: adgang.test\n", "");
        let error = load(&text).unwrap_err().to_string();
        assert!(error.contains("upnSuffix"), "{error}");
    }

    #[test]
    fn missing_password_explained() {
        let error = Config::from_str(Path::new("c.yaml"), EXAMPLE, None, None).unwrap_err();
        assert!(matches!(error, ConfigError::MissingBindPassword { .. }));
        assert!(error.to_string().contains(BIND_PASSWORD_ENV));
    }

    #[test]
    fn password_file_trailing_newline_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "hemmelig\n").unwrap();
        let config = Config::from_str(Path::new("c.yaml"), EXAMPLE, None, Some(file)).unwrap();
        assert_eq!(config.directory.bind_password.expose(), "hemmelig");
    }

    const MAIL: &str = "mail:
  smtp:
    host: smtp.kommune.example.org
    caFile: tls/smtp-ca.pem
    username: adgang
  from: sikkermail@kommune.example.org
  certificateFile: smime/kommune.pem
  keyFile: smime/kommune.key
";

    fn load_mail(text: &str, smtp_password: Option<&str>) -> Result<Config, ConfigError> {
        let env = SecretEnv {
            bind_password: Some("pw".into()),
            smtp_password: smtp_password.map(str::to_owned),
            ..SecretEnv::default()
        };
        Config::from_str_with_env(Path::new("/etc/adgang/config.yaml"), text, env)
    }

    fn without_credentials() -> String {
        EXAMPLE.replace(
            "credentials:\n  directory: /var/lib/adgang/credentials\n",
            "",
        )
    }

    #[test]
    fn mail_section_defaults() {
        let config = load_mail(&format!("{}{MAIL}", without_credentials()), Some("s")).unwrap();
        assert_eq!(config.credentials, CredentialsDelivery::Mail);
        let mail = config.mail.unwrap();
        assert_eq!(mail.port, 587);
        assert_eq!(mail.tls, TlsMode::StartTls);
        assert_eq!(mail.ca_file, Path::new("/etc/adgang/tls/smtp-ca.pem"));
        assert_eq!(mail.key_file, Path::new("/etc/adgang/smime/kommune.key"));
        assert_eq!(mail.password.expose(), "s");
        assert_eq!(mail.retry, RetrySettings::default());
    }

    #[test]
    fn implicit_tls_defaults_to_465() {
        let text = format!("{}{}", without_credentials(), MAIL)
            .replace("    username:", "    tls: tls\n    username:");
        let mail = load_mail(&text, Some("s")).unwrap().mail.unwrap();
        assert_eq!(mail.tls, TlsMode::Tls);
        assert_eq!(mail.port, 465);
    }

    #[test]
    fn file_delivery_is_explicit_with_mail() {
        let text = format!(
            "{}{MAIL}credentials:\n  delivery: file\n  directory: /var/lib/adgang/credentials\n",
            without_credentials()
        );
        let config = load_mail(&text, Some("s")).unwrap();
        assert_eq!(
            config.credentials_dir(),
            Some(Path::new("/var/lib/adgang/credentials"))
        );
        assert!(config.mail.is_some());
    }

    #[test]
    fn file_delivery_without_mail_section() {
        let config = load(EXAMPLE).unwrap();
        assert!(config.mail.is_none());
        assert_eq!(
            config.credentials_dir(),
            Some(Path::new("/var/lib/adgang/credentials"))
        );
    }

    #[test]
    fn smtp_password_sources() {
        let text = format!("{}{MAIL}", without_credentials());
        let error = load_mail(&text, None).unwrap_err().to_string();
        assert!(error.contains(SMTP_PASSWORD_ENV), "{error}");
        assert!(error.contains("mail.smtp.passwordFile"), "{error}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("smtp");
        std::fs::write(&file, "fra-fil\n").unwrap();
        let env = SecretEnv {
            bind_password: Some("pw".into()),
            smtp_password_file: Some(file),
            ..SecretEnv::default()
        };
        let config = Config::from_str_with_env(Path::new("c.yaml"), &text, env).unwrap();
        assert_eq!(config.mail.unwrap().password.expose(), "fra-fil");
    }

    #[test]
    fn mail_problems_named() {
        let base = format!("{}{MAIL}", without_credentials());
        let cases = [
            (
                base.replace("from: sikkermail@", "from: sikkermail-"),
                "mail.from",
            ),
            (
                base.replace("host: smtp.kommune.example.org", "host: \"smtp://x\""),
                "mail.smtp.host",
            ),
            (
                format!("{base}  retry:\n    attempts: 0\n"),
                "mail.retry.attempts",
            ),
            (
                format!("{base}  retry:\n    initialBackoffSeconds: -1\n"),
                "mail.retry.initialBackoffSeconds",
            ),
            (base.replace("    username: adgang\n", ""), "username"),
            (
                base.replace("  keyFile: smime/kommune.key\n", ""),
                "keyFile",
            ),
            (format!("{EXAMPLE}{MAIL}"), "credentials.directory"),
            (
                format!("{}credentials:\n  delivery: mail\n", without_credentials()),
                "credentials.delivery",
            ),
            (
                format!("{}credentials:\n  delivery: file\n", without_credentials()),
                "credentials.directory",
            ),
        ];
        for (text, setting) in cases {
            let error = load_mail(&text, Some("s")).unwrap_err().to_string();
            assert!(error.contains(setting), "{setting}: {error}");
        }
    }

    #[test]
    fn bad_values_named() {
        let cases = [
            ("timeZone: Mars/Olympus\n", "timeZone"),
            (
                "safety:\n  maxDeletionShare: 2\n",
                "safety.maxDeletionShare",
            ),
            ("schedule:\n  overviewHour: 24\n", "schedule.overviewHour"),
            (
                "schedule:\n  reminderWorkingDays: 0\n",
                "schedule.reminderWorkingDays",
            ),
            ("templates:\n  language: de\n", "de"),
        ];
        for (extra, setting) in cases {
            let error = load(&format!("{EXAMPLE}{extra}")).unwrap_err().to_string();
            assert!(error.contains(setting), "{setting}: {error}");
        }
        let error = load(&EXAMPLE.replace("ldaps://127.0.0.1", "http://127.0.0.1")).unwrap_err();
        assert!(error.to_string().contains("directory.url"), "{error}");
        let error = load(&EXAMPLE.replace("DC=adgang,DC=test\n  upn", "DC=other,DC=test\n  upn"))
            .unwrap_err();
        assert!(
            error.to_string().contains("directory.managedBase"),
            "{error}"
        );
    }

    #[test]
    fn schedule_and_templates_defaults() {
        let config = load(EXAMPLE).unwrap();
        assert_eq!(config.language, Language::Da);
        assert_eq!(config.templates_dir, None);
        assert_eq!(config.schedule.overview_hour, 7);
        assert_eq!(config.schedule.reminder_working_days, 10);
        assert_eq!(config.schedule.time_zone, chrono_tz::Europe::Copenhagen);
        assert_eq!(config.closing_days, ClosingDays::default());
        assert_eq!(config.outbox_dir, None);
    }

    #[test]
    fn schedule_and_templates_read() {
        let extra = "templates:
  language: en
  folder: skabeloner
schedule:
  overviewHour: 9
  reminderWorkingDays: 15
  closingDays:
    fixed: [\"06-05\"]
    dates: [2027-05-07]
  outbox: /var/lib/adgang/outbox
";
        let config = load(&format!("{EXAMPLE}{extra}")).unwrap();
        assert_eq!(config.language, Language::En);
        assert_eq!(
            config.templates_dir.as_deref(),
            Some(Path::new("/etc/adgang/skabeloner"))
        );
        assert_eq!(config.schedule.overview_hour, 9);
        assert_eq!(config.schedule.reminder_working_days, 15);
        let may_7 = chrono::NaiveDate::from_ymd_opt(2027, 5, 7).unwrap();
        assert!(config.closing_days.contains(may_7));
        let june_5 = chrono::NaiveDate::from_ymd_opt(2030, 6, 5).unwrap();
        assert!(config.closing_days.contains(june_5));
        assert_eq!(
            config.outbox_dir.as_deref(),
            Some(Path::new("/var/lib/adgang/outbox"))
        );
    }
}
