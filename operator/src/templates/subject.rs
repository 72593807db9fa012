//! Splitting a template's subject line from its body, and the check that the subject names no
//! person, because S/MIME encrypts the body but not the `Subject` header.

use super::{Language, MailKind, SUBJECT_PREFIX, TemplateError, error_message, new_environment};

/// A template file split into its subject line and its body. The two compile as separate
/// templates. So whitespace control such as `{{-` at the start of the body or `-}}` at the
/// end of the subject line cannot remove the line break between them.
pub(super) struct SplitSource {
    /// The text after `Subject:` on the subject line, without the line end.
    pub subject: String,
    /// The lines after the subject line.
    pub body: String,
    /// Blank lines of the file above the subject line.
    pub lines_before_subject: usize,
    /// Lines of the file above the body, so body line `n` is file line
    /// `n + lines_before_body`.
    pub lines_before_body: usize,
}

/// Splits `source` after its first non-blank line, which must start with `Subject:`.
pub(super) fn split_source(origin: &str, source: &str) -> Result<SplitSource, TemplateError> {
    let trimmed = source.trim_start_matches(['\n', '\r']);
    let lines_before_subject = source[..source.len() - trimmed.len()].matches('\n').count();
    let (line, body) = trimmed.split_once('\n').unwrap_or((trimmed, ""));
    let line = line.strip_suffix('\r').unwrap_or(line);
    let Some(subject) = line.strip_prefix(SUBJECT_PREFIX) else {
        return Err(TemplateError::MissingSubject {
            file: origin.to_owned(),
        });
    };
    Ok(SplitSource {
        subject: subject.to_owned(),
        body: body.to_owned(),
        lines_before_subject,
        lines_before_body: lines_before_subject + 1,
    })
}

/// Variables that a subject line may use as they are: they name the supplier or a date.
const SUBJECT_VARIABLES: [&str; 4] = ["supplier", "supplier_name", "generated_on", "sent_on"];

/// Lists that a subject line may use only through `| length`, as a count.
const SUBJECT_COUNTS: [&str; 4] = ["accounts", "pending", "differences", "attention"];

/// Checks a subject line, the text after `Subject:`, by structure: the subject travels
/// unencrypted, so it may use only [`SUBJECT_VARIABLES`] and counts of [`SUBJECT_COUNTS`].
/// Rendering the sample data cannot prove this, because an expression such as
/// `pending[0].name` or `password[:10]` shows no sample value in full.
pub(super) fn check_subject_line(
    kind: MailKind,
    origin: &str,
    line: &str,
) -> Result<(), TemplateError> {
    let syntax_error = |message: String| TemplateError::SubjectSyntax {
        file: origin.to_owned(),
        message,
    };
    if line.contains("{%") {
        return Err(syntax_error("found `{%`".to_owned()));
    }

    let expression = replace_counts(line);
    let mut environment = new_environment(Language::Da);
    environment
        .add_template_owned(kind.file_name(), expression.clone())
        .map_err(|e| syntax_error(error_message(&e)))?;
    let template = environment
        .get_template(kind.file_name())
        .map_err(|e| syntax_error(error_message(&e)))?;
    // minijinja 2.24's `undeclared_variables` skips the value of a slice such as
    // `password[:10]`, so a lexical scan of the expressions adds the names it misses.
    let mut variables: Vec<String> = template.undeclared_variables(false).into_iter().collect();
    variables.extend(expression_names(&expression));
    variables.sort();
    variables.dedup();
    match variables
        .into_iter()
        .find(|variable| !SUBJECT_VARIABLES.contains(&variable.as_str()))
    {
        Some(variable) => Err(TemplateError::SubjectVariable {
            file: origin.to_owned(),
            variable,
            allowed: format!(
                "{} and the counts {}",
                SUBJECT_VARIABLES.join(", "),
                SUBJECT_COUNTS
                    .map(|name| format!("`{name} | length`"))
                    .join(", ")
            ),
        }),
        None => Ok(()),
    }
}

/// Returns the names that the `{{ ... }}` expressions in `line` look up as variables: every
/// identifier outside string literals that is no keyword, attribute, filter or test name.
fn expression_names(line: &str) -> Vec<String> {
    const KEYWORDS: [&str; 13] = [
        "and", "or", "not", "if", "else", "in", "is", "true", "false", "none", "True", "False",
        "None",
    ];
    let mut names = Vec::new();
    for block in line.split("{{").skip(1) {
        let expression = block.split("}}").next().unwrap_or("");
        let characters: Vec<char> = expression.chars().collect();
        let mut quote: Option<char> = None;
        let mut previous_token = String::new();
        let mut before_previous = String::new();
        let mut index = 0;
        while index < characters.len() {
            let c = characters[index];
            if let Some(open) = quote {
                if c == '\\' {
                    index += 1;
                } else if c == open {
                    quote = None;
                }
                index += 1;
                continue;
            }
            if c == '"' || c == '\'' {
                quote = Some(c);
                before_previous = std::mem::replace(&mut previous_token, c.to_string());
                index += 1;
                continue;
            }
            if c.is_alphanumeric() || c == '_' {
                let start = index;
                while index < characters.len()
                    && (characters[index].is_alphanumeric() || characters[index] == '_')
                {
                    index += 1;
                }
                let word: String = characters[start..index].iter().collect();
                let is_test =
                    previous_token == "is" || (previous_token == "not" && before_previous == "is");
                let is_name = !c.is_ascii_digit()
                    && !KEYWORDS.contains(&word.as_str())
                    && !matches!(previous_token.as_str(), "." | "|")
                    && !is_test;
                if is_name {
                    names.push(word.clone());
                }
                before_previous = std::mem::replace(&mut previous_token, word);
                continue;
            }
            if !c.is_whitespace() {
                before_previous = std::mem::replace(&mut previous_token, c.to_string());
            }
            index += 1;
        }
    }
    names
}

/// Replaces each `NAME | length` whose NAME is a whole variable of [`SUBJECT_COUNTS`] by the
/// literal `0`, so that only the other uses of those lists remain for the variable check.
fn replace_counts(line: &str) -> String {
    let mut output = String::with_capacity(line.len());
    let mut rest = line;
    'scan: while let Some(bar) = rest.find('|') {
        let (before, after) = rest.split_at(bar);
        let filter = after[1..].trim_start();
        let is_length = filter.starts_with("length")
            && !filter["length".len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_');
        if is_length {
            let operand = before.trim_end();
            for name in SUBJECT_COUNTS {
                let Some(prefix) = operand.strip_suffix(name) else {
                    continue;
                };
                // The list must be the whole operand, not `x.accounts` or `foo_accounts`.
                let whole = !prefix.ends_with(|c: char| {
                    c.is_alphanumeric() || matches!(c, '_' | '.' | ']' | ')' | '\'' | '"')
                });
                if whole {
                    output.push_str(prefix);
                    output.push('0');
                    let consumed = after.len() - filter.len() + "length".len();
                    rest = &after[consumed..];
                    continue 'scan;
                }
            }
        }
        output.push_str(before);
        output.push('|');
        rest = &after[1..];
    }
    output.push_str(rest);
    output
}
