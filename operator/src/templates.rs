//! Mail templates: the credentials mail, the monthly overview and the extension reminder, in
//! Danish (the default) or English, rendered with minijinja.
//!
//! Each template is a text file whose first line is `Subject: ...` and whose remaining lines
//! are the body. S/MIME encrypts the body and the attachments but not the subject. So the
//! subject line may use only the supplier, the month's dates and counts such as
//! `{{ accounts | length }}`. The subject line and the body compile as two templates, so no
//! whitespace control in the body (`{{-`, `{%-`) can join a body line to the subject, and a
//! rendered subject with a line break is rejected. A subject that still shows a name, a username or a password
//! from the sample data is rejected too. The built-in templates are compiled into the binary from
//! `operator/templates/<language>/`. A municipality can override any of them by putting a
//! file of the same name (`credentials.txt`, `overview.txt`, `reminder.txt`) in the folder
//! that `templates.folder` names. [`Templates::load`] compiles every template and renders it
//! once with invented sample data. An edited template with a syntax error, an unknown filter,
//! a misspelt variable or no subject line therefore fails at start-up with its file and line,
//! not when the first mail is due.
//!
//! Templates get two filters: `date` writes a date as `dd-mm-yyyy` in Danish and
//! `yyyy-mm-dd` in English, and `month` writes the month and year of a date ("januar 2027",
//! "January 2027"). Undefined variables are errors.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

use crate::reminders::{ReminderAccount, ReminderMail};
use crate::report::{Difference, Overview, OverviewAccount, PendingUser};

/// Prefix of the first line of every template.
pub const SUBJECT_PREFIX: &str = "Subject:";

/// Language of the mails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Danish.
    #[default]
    Da,
    /// English.
    En,
}

impl Language {
    /// Both languages, Danish first.
    pub const ALL: [Language; 2] = [Language::Da, Language::En];

    /// Returns the ISO 639-1 code, as written in the configuration.
    pub fn code(self) -> &'static str {
        match self {
            Language::Da => "da",
            Language::En => "en",
        }
    }

    /// Writes a date in the language's short form.
    pub fn format_date(self, date: NaiveDate) -> String {
        match self {
            Language::Da => date.format("%d-%m-%Y").to_string(),
            Language::En => date.format("%Y-%m-%d").to_string(),
        }
    }

    /// Writes the month and year of a date, such as "januar 2027" or "January 2027".
    pub fn format_month(self, date: NaiveDate) -> String {
        let index = date.month0() as usize;
        let name = match self {
            Language::Da => DANISH_MONTHS[index],
            Language::En => ENGLISH_MONTHS[index],
        };
        format!("{name} {}", date.year())
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

const DANISH_MONTHS: [&str; 12] = [
    "januar",
    "februar",
    "marts",
    "april",
    "maj",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "december",
];

const ENGLISH_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The mails that have a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailKind {
    /// A new account's username and initial password.
    Credentials,
    /// The monthly overview of a supplier's accounts.
    Overview,
    /// The reminder that accounts' access ends soon.
    Reminder,
}

impl MailKind {
    /// Every kind, in the order they are loaded.
    pub const ALL: [MailKind; 3] = [
        MailKind::Credentials,
        MailKind::Overview,
        MailKind::Reminder,
    ];

    /// Returns the template's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            MailKind::Credentials => "credentials.txt",
            MailKind::Overview => "overview.txt",
            MailKind::Reminder => "reminder.txt",
        }
    }

    /// Returns the name under which the template's subject line is compiled.
    fn subject_template_name(self) -> &'static str {
        match self {
            MailKind::Credentials => "credentials.txt:subject",
            MailKind::Overview => "overview.txt:subject",
            MailKind::Reminder => "reminder.txt:subject",
        }
    }

    fn builtin(self, language: Language) -> &'static str {
        match (language, self) {
            (Language::Da, MailKind::Credentials) => {
                include_str!("../templates/da/credentials.txt")
            }
            (Language::Da, MailKind::Overview) => include_str!("../templates/da/overview.txt"),
            (Language::Da, MailKind::Reminder) => include_str!("../templates/da/reminder.txt"),
            (Language::En, MailKind::Credentials) => {
                include_str!("../templates/en/credentials.txt")
            }
            (Language::En, MailKind::Overview) => include_str!("../templates/en/overview.txt"),
            (Language::En, MailKind::Reminder) => include_str!("../templates/en/reminder.txt"),
        }
    }
}

/// A template that cannot be loaded or rendered, naming its file.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template folder or a file in it could not be read.
    #[error("failed to read mail template {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The template folder contains a file that is not a template name.
    #[error(
        "unknown mail template {path}: expected credentials.txt, overview.txt or reminder.txt; \
         rename or remove the file"
    )]
    UnknownFile { path: PathBuf },
    /// The template is not valid minijinja syntax.
    #[error("invalid mail template {file}{}: {message}", line_suffix(*.line))]
    Syntax {
        file: String,
        line: Option<usize>,
        message: String,
    },
    /// Rendering failed, for example on an unknown variable or filter.
    #[error("failed to render mail template {file}{}: {message}", line_suffix(*.line))]
    Render {
        file: String,
        line: Option<usize>,
        message: String,
    },
    /// The subject names a person or an account, although it is sent unencrypted.
    #[error(
        "invalid mail template {file}: the subject contains {found:?} from the sample data, but \
         the subject travels unencrypted outside S/MIME, so it must name no person, username \
         or password; move it to the body"
    )]
    ConfidentialSubject { file: String, found: String },
    /// The subject line uses a variable that may name a person, an account or a password.
    #[error(
        "invalid mail template {file}: the subject line uses the variable {variable:?}, but the \
         subject travels unencrypted outside S/MIME, so it may only use {allowed}; move \
         {variable:?} to the body"
    )]
    SubjectVariable {
        file: String,
        variable: String,
        allowed: String,
    },
    /// The subject line contains a `{% ... %}` statement or is not a complete template.
    #[error(
        "invalid mail template {file}: the subject line must be one complete line of text and \
         `{{{{ ... }}}}` expressions without `{{% ... %}}` statements ({message}); simplify \
         the subject line"
    )]
    SubjectSyntax { file: String, message: String },
    /// The rendered subject contains a line break, which would end the `Subject` header.
    #[error(
        "invalid mail subject from template {file}: the rendered subject contains a line \
         break, but the subject must be one line; remove line breaks from the subject line's \
         string literals and from the values it uses, such as the supplier name"
    )]
    SubjectLineBreak { file: String },
    /// The credentials template does not show the password, so the new account is unusable.
    #[error(
        "invalid mail template {file}: the credentials mail must contain the initial \
         password; add `{{{{ password }}}}` to the body"
    )]
    MissingPassword { file: String },
    /// The first non-blank line does not start with `Subject:`, or the subject renders empty.
    #[error(
        "invalid mail template {file}: the first line must start with \"{SUBJECT_PREFIX}\" and \
         hold the subject, such as \"{SUBJECT_PREFIX} Månedsoversigt\""
    )]
    MissingSubject { file: String },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

/// A rendered mail, before it is encrypted and sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RenderedMail {
    pub subject: String,
    /// The body, with `\n` line ends.
    pub text: String,
}

/// A file attached to a mail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MailAttachment {
    pub filename: String,
    /// MIME type, such as `text/csv; charset=utf-8`.
    pub content_type: String,
    pub content: Vec<u8>,
}

/// Everything a mail carries apart from its recipient: subject, body and attachments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MailContent {
    pub subject: String,
    /// The body, with `\n` line ends.
    pub text: String,
    pub attachments: Vec<MailAttachment>,
}

impl From<RenderedMail> for MailContent {
    fn from(rendered: RenderedMail) -> Self {
        Self {
            subject: rendered.subject,
            text: rendered.text,
            attachments: Vec::new(),
        }
    }
}

/// Content of the credentials mail for one new account.
#[derive(Clone, Serialize)]
pub struct CredentialsMail {
    pub supplier_name: String,
    /// Names of the supplier's contact persons, whom the mail is for.
    pub attention: Vec<String>,
    /// The person's display name.
    pub name: String,
    pub username: String,
    /// The initial password, which must be changed at first logon.
    pub password: String,
    pub valid_from: NaiveDate,
    pub last_day: NaiveDate,
}

impl fmt::Debug for CredentialsMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsMail")
            .field("supplier_name", &self.supplier_name)
            .field("attention", &self.attention)
            .field("name", &self.name)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("valid_from", &self.valid_from)
            .field("last_day", &self.last_day)
            .finish()
    }
}

/// The compiled templates of one language, with any overrides applied.
pub struct Templates {
    /// Two templates per mail: the subject line and the body.
    environment: Environment<'static>,
    language: Language,
    /// One per [`MailKind`].
    origins: Vec<Origin>,
}

/// Source file of a template and the file lines above its two parts, for error messages.
#[derive(Debug)]
struct Origin {
    kind: MailKind,
    /// A path or "built-in da/overview.txt".
    file: String,
    lines_before_subject: usize,
    lines_before_body: usize,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("language", &self.language)
            .field("origins", &self.origins)
            .finish()
    }
}

impl Templates {
    /// Loads the built-in templates of `language`, overridden by the files in `folder`, and
    /// checks each by rendering it with sample data.
    pub fn load(language: Language, folder: Option<&Path>) -> Result<Self, TemplateError> {
        let mut sources: Vec<(MailKind, String, String)> = MailKind::ALL
            .iter()
            .map(|&kind| {
                let origin = format!("built-in {}/{}", language.code(), kind.file_name());
                (kind, origin, kind.builtin(language).to_owned())
            })
            .collect();
        if let Some(folder) = folder {
            read_overrides(folder, &mut sources)?;
        }

        let mut environment = new_environment(language);
        let mut origins = Vec::new();
        for (kind, file, source) in sources {
            let split = subject::split_source(&file, &source)?;
            subject::check_subject_line(kind, &file, &split.subject)?;
            let syntax_error = |lines_before: usize| {
                let file = file.clone();
                move |e: minijinja::Error| TemplateError::Syntax {
                    file,
                    line: e.line().map(|line| line + lines_before),
                    message: error_message(&e),
                }
            };
            environment
                .add_template_owned(kind.subject_template_name(), split.subject)
                .map_err(syntax_error(split.lines_before_subject))?;
            environment
                .add_template_owned(kind.file_name(), split.body)
                .map_err(syntax_error(split.lines_before_body))?;
            origins.push(Origin {
                kind,
                file,
                lines_before_subject: split.lines_before_subject,
                lines_before_body: split.lines_before_body,
            });
        }

        let templates = Templates {
            environment,
            language,
            origins,
        };
        templates.check_with_samples()?;
        Ok(templates)
    }

    /// Returns the language the templates were loaded for.
    pub fn language(&self) -> Language {
        self.language
    }

    /// Renders the credentials mail.
    pub fn credentials(&self, mail: &CredentialsMail) -> Result<RenderedMail, TemplateError> {
        self.render(MailKind::Credentials, Value::from_serialize(mail))
    }

    /// Renders a supplier's monthly overview as the mail text.
    pub fn overview(&self, overview: &Overview) -> Result<RenderedMail, TemplateError> {
        self.render(MailKind::Overview, Value::from_serialize(overview))
    }

    /// Renders the reminder of accounts whose access ends soon.
    pub fn reminder(&self, reminder: &ReminderMail) -> Result<RenderedMail, TemplateError> {
        self.render(MailKind::Reminder, Value::from_serialize(reminder))
    }

    fn origin(&self, kind: MailKind) -> &Origin {
        self.origins
            .iter()
            .find(|origin| origin.kind == kind)
            .expect("Templates::load adds an origin for every MailKind")
    }

    fn render(&self, kind: MailKind, context: Value) -> Result<RenderedMail, TemplateError> {
        let origin = self.origin(kind);
        let subject = self.render_part(
            origin,
            kind.subject_template_name(),
            origin.lines_before_subject,
            &context,
        )?;
        if subject.contains(['\n', '\r']) {
            return Err(TemplateError::SubjectLineBreak {
                file: origin.file.clone(),
            });
        }
        let subject = subject.trim().to_owned();
        if subject.is_empty() {
            return Err(TemplateError::MissingSubject {
                file: origin.file.clone(),
            });
        }

        let body =
            self.render_part(origin, kind.file_name(), origin.lines_before_body, &context)?;
        let mut text = body.trim_matches(['\n', '\r']).to_owned();
        text.push('\n');
        Ok(RenderedMail { subject, text })
    }

    /// Renders the subject or body template `name`, whose first line is line
    /// `lines_before + 1` of the file.
    fn render_part(
        &self,
        origin: &Origin,
        name: &str,
        lines_before: usize,
        context: &Value,
    ) -> Result<String, TemplateError> {
        let render_error = |e: minijinja::Error, expression: String| TemplateError::Render {
            file: origin.file.clone(),
            line: e.line().map(|line| line + lines_before),
            message: format!("{}{expression}", error_message(&e)),
        };
        let template = self
            .environment
            .get_template(name)
            .map_err(|e| render_error(e, String::new()))?;
        template.render(context).map_err(|e| {
            // Name the expression that failed, such as `a.usernme`, which minijinja's message
            // for an undefined value leaves out.
            let expression = e
                .range()
                .and_then(|range| template.source().get(range))
                .map(|text| format!(" in `{text}`"))
                .unwrap_or_default();
            render_error(e, expression)
        })
    }

    /// Renders each template once with invented data, so that errors that only show when
    /// rendering (an unknown variable or filter, a missing subject line) fail at load.
    fn check_with_samples(&self) -> Result<(), TemplateError> {
        let credentials = sample_credentials();
        let overview = sample_overview();
        let reminder = sample_reminder();
        let rendered = [
            (MailKind::Credentials, self.credentials(&credentials)?),
            (MailKind::Overview, self.overview(&overview)?),
            (MailKind::Reminder, self.reminder(&reminder)?),
        ];

        if !rendered[0].1.text.contains(&credentials.password) {
            return Err(TemplateError::MissingPassword {
                file: self.origin(MailKind::Credentials).file.clone(),
            });
        }

        let mut confidential = vec![credentials.name, credentials.username, credentials.password];
        for account in &overview.accounts {
            confidential.push(account.name.clone());
            confidential.push(account.username.clone());
        }
        for (kind, mail) in rendered {
            let subject = mail.subject.to_lowercase();
            if let Some(found) = confidential
                .iter()
                .find(|value| subject.contains(&value.to_lowercase()))
            {
                return Err(TemplateError::ConfidentialSubject {
                    file: self.origin(kind).file.clone(),
                    found: found.clone(),
                });
            }
        }
        Ok(())
    }
}

fn new_environment(language: Language) -> Environment<'static> {
    let mut environment = Environment::new();
    environment.set_auto_escape_callback(|_| AutoEscape::None);
    environment.set_undefined_behavior(UndefinedBehavior::Strict);
    environment.set_trim_blocks(true);
    environment.set_lstrip_blocks(true);
    environment.set_keep_trailing_newline(true);
    environment.add_filter("date", move |value: Value| {
        format_date_value(language, &value)
    });
    environment.add_filter("month", move |value: Value| {
        parse_date_value(&value).map(|date| language.format_month(date))
    });
    environment
}

/// Formats a date value (`YYYY-MM-DD`, as dates serialise) in `language`; none gives "-".
fn format_date_value(language: Language, value: &Value) -> Result<String, minijinja::Error> {
    if value.is_none() {
        return Ok("-".to_owned());
    }
    parse_date_value(value).map(|date| language.format_date(date))
}

fn parse_date_value(value: &Value) -> Result<NaiveDate, minijinja::Error> {
    let invalid = || {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("{value} is not a date written YYYY-MM-DD"),
        )
    };
    let text = value.as_str().ok_or_else(invalid)?;
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| invalid())
}

/// Returns the error's description without the template name and line, which the
/// [`TemplateError`] variants carry themselves.
fn error_message(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

fn read_overrides(
    folder: &Path,
    sources: &mut [(MailKind, String, String)],
) -> Result<(), TemplateError> {
    let read_error = |path: &Path, source| TemplateError::Read {
        path: path.to_owned(),
        source,
    };
    let entries = std::fs::read_dir(folder).map_err(|e| read_error(folder, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(|e| read_error(folder, e))?.path());
    }
    paths.sort();

    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Editor backups and hidden files are not templates.
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let Some(slot) = sources.iter_mut().find(|(k, _, _)| k.file_name() == name) else {
            return Err(TemplateError::UnknownFile { path });
        };
        let text = std::fs::read_to_string(&path).map_err(|e| read_error(&path, e))?;
        slot.1 = path.display().to_string();
        // Windows editors such as Notepad save UTF-8 with a byte order mark, which would
        // otherwise hide the subject line.
        slot.2 = match text.strip_prefix('\u{feff}') {
            Some(stripped) => stripped.to_owned(),
            None => text,
        };
    }
    Ok(())
}

fn sample_date(month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2027, month, day).expect("valid sample date")
}

fn sample_credentials() -> CredentialsMail {
    CredentialsMail {
        supplier_name: "Omsorg Nord ApS".to_owned(),
        attention: vec!["Birthe Lund".to_owned()],
        name: "Anne Hansen".to_owned(),
        username: "anne.hansen".to_owned(),
        password: "sample-password".to_owned(),
        valid_from: sample_date(1, 4),
        last_day: sample_date(6, 30),
    }
}

/// Returns an overview with one row of each kind, for the start-up check and the tests.
pub(crate) fn sample_overview() -> Overview {
    Overview {
        supplier: "omsorg-nord".to_owned(),
        supplier_name: "Omsorg Nord ApS".to_owned(),
        secure_mail: "sikkerpost@omsorg-nord.example.org".to_owned(),
        generated_on: sample_date(2, 1),
        commit: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        accounts: vec![
            OverviewAccount {
                username: "anne.hansen".to_owned(),
                name: "Anne Hansen".to_owned(),
                mail: Some("anne.hansen@omsorg-nord.example.org".to_owned()),
                enabled: true,
                valid_from: Some(sample_date(1, 4)),
                last_day: Some(sample_date(6, 30)),
                groups: vec!["Nexus-Brugere".to_owned()],
                file: "anne-hansen".to_owned(),
            },
            OverviewAccount {
                username: "ole.dam".to_owned(),
                name: "Ole Dam".to_owned(),
                mail: None,
                enabled: false,
                valid_from: None,
                last_day: None,
                groups: Vec::new(),
                file: "ole-dam".to_owned(),
            },
        ],
        pending: vec![
            PendingUser {
                file: "birthe-lund".to_owned(),
                name: "Birthe Lund".to_owned(),
                username: Some("birthe.lund".to_owned()),
                valid_from: Some(sample_date(2, 15)),
                last_day: Some(sample_date(8, 31)),
                blocked: None,
            },
            PendingUser {
                file: "jens-berg".to_owned(),
                name: "Jens Berg".to_owned(),
                username: None,
                valid_from: Some(sample_date(2, 15)),
                last_day: Some(sample_date(8, 31)),
                blocked: Some("filen er ugyldig; se kontrollen på jeres pull request".to_owned()),
            },
        ],
        differences: vec![Difference {
            username: "anne.hansen".to_owned(),
            file: "anne-hansen".to_owned(),
            action: "set-expiry".to_owned(),
            detail: "sidste dag ændres fra 30-06-2027 til 30-09-2027".to_owned(),
        }],
    }
}

fn sample_reminder() -> ReminderMail {
    ReminderMail {
        supplier: "omsorg-nord".to_owned(),
        supplier_name: "Omsorg Nord ApS".to_owned(),
        sent_on: sample_date(6, 14),
        accounts: vec![ReminderAccount {
            username: "anne.hansen".to_owned(),
            file: "anne-hansen".to_owned(),
            name: "Anne Hansen".to_owned(),
            last_day: sample_date(6, 30),
            deadline: sample_date(6, 28),
        }],
    }
}

mod subject;

#[cfg(test)]
mod tests;
