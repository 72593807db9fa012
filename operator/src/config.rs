//! The configuration file: one YAML file for the directory, the repository, the managed
//! base, the safety thresholds and the time zone.
//!
//! Secrets never sit in the file itself. The bind password comes from
//! `ADGANG_BIND_PASSWORD`, or from the file named by `ADGANG_BIND_PASSWORD_FILE` or by
//! `directory.bindPasswordFile`, in that order. Relative paths are read relative to the
//! folder of the configuration file, so an example folder can be moved as a whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;

use crate::calendar::ClosingDays;
use crate::directory::{DirectorySettings, Secret};
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
    credentials: RawCredentials,
    #[serde(default)]
    signatures: RawSignatures,
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
    directory: PathBuf,
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
    /// Folder of the file credentials sink.
    pub credentials_dir: PathBuf,
    /// Whether every commit must be signed by someone allowed to make its changes.
    pub require_signatures: bool,
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

impl Config {
    /// Reads and checks the configuration file, taking secrets from the environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let bind_password_env = std::env::var(BIND_PASSWORD_ENV).ok();
        let bind_password_file_env = std::env::var_os(BIND_PASSWORD_FILE_ENV).map(PathBuf::from);
        Self::from_str(path, &text, bind_password_env, bind_password_file_env)
    }

    /// Parses and checks configuration text; `path` names the file in messages and anchors
    /// relative paths.
    pub fn from_str(
        path: &Path,
        text: &str,
        bind_password_env: Option<String>,
        bind_password_file_env: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let folder = path.parent().unwrap_or(Path::new("."));
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

        let bind_password = match (
            bind_password_env,
            bind_password_file_env,
            raw.directory.bind_password_file,
        ) {
            (Some(password), _, _) => Secret::new(password),
            (None, Some(file), _) => read_password_file(&file)?,
            (None, None, Some(file)) => read_password_file(&resolve(&file))?,
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
        let credentials_dir = resolve(&raw.credentials.directory);
        if Path::new(&repository.url).is_dir() && credentials_dir.starts_with(&repository.url) {
            return Err(invalid(
                "credentials.directory",
                format!(
                    "{} is inside the repository {}, where a password could be committed",
                    credentials_dir.display(),
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
            credentials_dir,
            require_signatures: raw.signatures.required,
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

/// Resolves a local repository path against the configuration folder; URLs stay as they are.
fn resolve_repository_url(url: &str, folder: &Path) -> String {
    if url.contains("://") || url.starts_with("git@") || Path::new(url).is_absolute() {
        url.to_owned()
    } else {
        folder.join(url).to_string_lossy().into_owned()
    }
}

fn read_password_file(file: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::BindPasswordFile {
        file: file.to_owned(),
        source,
    })?;
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
    fn mail_defaults() {
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
    fn mail_settings_read() {
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
