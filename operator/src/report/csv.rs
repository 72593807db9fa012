//! The overview as a CSV file that Danish Excel opens correctly on a double click.
//!
//! Danish Excel reads a CSV file with the list separator of the Danish locale, which is the
//! semicolon, and reads it as UTF-8 only when the file starts with a byte order mark. Dates
//! are written `dd-mm-yyyy`, the Danish short date, so Excel reads them as dates. Rows end in
//! CRLF, and a field is quoted only when it contains a semicolon, a quote or a line break.
//!
//! A field that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading
//! apostrophe, because Excel would otherwise run it as a formula (CSV injection). Names and
//! mail addresses come from files that suppliers write.

use chrono::NaiveDate;

use super::Overview;
use crate::templates::Language;

/// UTF-8 byte order mark, which makes Excel read the file as UTF-8.
pub const BOM: &str = "\u{feff}";

/// Renders one supplier's overview: a header row, then one row per account in AD, then one
/// row per user not created yet.
pub fn render(overview: &Overview, language: Language) -> String {
    let labels = Labels::for_language(language);
    let mut writer = ::csv::WriterBuilder::new()
        .delimiter(b';')
        .terminator(::csv::Terminator::CRLF)
        .quote_style(::csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());

    write_row(&mut writer, &labels.header);
    for account in &overview.accounts {
        let status = if account.enabled {
            labels.enabled
        } else {
            labels.disabled
        };
        let changes: Vec<String> = overview
            .differences
            .iter()
            .filter(|d| d.file == account.file)
            .map(|d| d.detail.clone())
            .collect();
        write_row(
            &mut writer,
            &[
                account.username.as_str(),
                &account.name,
                account.mail.as_deref().unwrap_or(""),
                status,
                &date(account.valid_from),
                &date(account.last_day),
                &account.groups.join(", "),
                &changes.join(" | "),
                &account.file,
            ],
        );
    }
    for user in &overview.pending {
        let status = match &user.blocked {
            Some(_) => labels.blocked,
            None => labels.pending,
        };
        write_row(
            &mut writer,
            &[
                user.username.as_deref().unwrap_or(""),
                &user.name,
                "",
                status,
                &date(user.valid_from),
                &date(user.last_day),
                "",
                user.blocked.as_deref().unwrap_or(""),
                &user.file,
            ],
        );
    }

    let bytes = writer
        .into_inner()
        .expect("writing to a Vec<u8> does not fail");
    let body = String::from_utf8(bytes).expect("every field is a Rust string");
    format!("{BOM}{body}")
}

fn write_row<S: AsRef<str>>(writer: &mut ::csv::Writer<Vec<u8>>, fields: &[S]) {
    let fields = fields.iter().map(|f| neutralise_formula(f.as_ref()));
    writer
        .write_record(fields)
        .expect("writing to a Vec<u8> does not fail");
}

/// Prefixes an apostrophe to a field that Excel would run as a formula.
fn neutralise_formula(field: &str) -> String {
    if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{field}")
    } else {
        field.to_owned()
    }
}

fn date(day: Option<NaiveDate>) -> String {
    day.map(|d| d.format("%d-%m-%Y").to_string())
        .unwrap_or_default()
}

/// Column names and status words of one language.
struct Labels {
    header: [&'static str; 9],
    enabled: &'static str,
    disabled: &'static str,
    pending: &'static str,
    blocked: &'static str,
}

impl Labels {
    fn for_language(language: Language) -> Self {
        match language {
            Language::Da => Labels {
                header: [
                    "Brugernavn",
                    "Navn",
                    "E-mail",
                    "Status",
                    "Gyldig fra",
                    "Sidste dag med adgang",
                    "Grupper",
                    "Ændringer ved næste synkronisering",
                    "Fil",
                ],
                enabled: "aktiv",
                disabled: "deaktiveret",
                pending: "ikke oprettet endnu",
                blocked: "oprettes ikke",
            },
            Language::En => Labels {
                header: [
                    "Username",
                    "Name",
                    "Mail",
                    "Status",
                    "Valid from",
                    "Last day of access",
                    "Groups",
                    "Changes at the next sync",
                    "File",
                ],
                enabled: "enabled",
                disabled: "disabled",
                pending: "not created yet",
                blocked: "not created",
            },
        }
    }
}
