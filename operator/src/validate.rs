//! The pull-request check: schema, notice rules, CPR numbers and commit signatures for the
//! commits between a base and a head, without contacting AD.
//!
//! Every problem names the file and line where it can be fixed, what is wrong and what to do.
//! The report also summarises what the merge will do in AD, per supplier.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::PathBuf;

use chrono::NaiveDate;
use git2::{Oid, Repository};
use serde::Serialize;

use crate::authorization::{self, AuthorizationError};
use crate::calendar::Calendar;
use crate::desired::{self, DesiredState, SUPPLIERS_DIR};
use crate::notice::{self, Change};

/// Revisions and date of one check.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// The repository (a work tree or a bare repository).
    pub repo: PathBuf,
    /// Base revision; when absent, the merge base of `head` and `main_branch`.
    pub base: Option<String>,
    /// Head revision, the pull request's tip.
    pub head: String,
    /// Branch that pull requests merge into.
    pub main_branch: String,
    /// Submission date, in Europe/Copenhagen.
    pub today: NaiveDate,
}

/// A check that could not run: a usage error, reported with exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The repository could not be opened.
    #[error("failed to open repository {path}: {source}")]
    Open { path: String, source: git2::Error },
    /// A revision does not exist.
    #[error(
        "{what} {revision:?} does not exist in the repository; check the name, and in a shallow \
         clone fetch the full history (`git fetch --unshallow`, or fetch-depth: 0 in CI)"
    )]
    UnknownRevision {
        what: &'static str,
        revision: String,
    },
    /// No base was given and none could be found.
    #[error(
        "no merge base of {head} and branch {branch}: pass --base, or fetch {branch} \
         (`git fetch origin {branch}`)"
    )]
    NoMergeBase { head: String, branch: String },
    /// Reading the history failed.
    #[error(transparent)]
    Authorization(#[from] AuthorizationError),
    /// Reading a commit's files failed.
    #[error("failed to read the files of commit {commit}: {message}")]
    Read { commit: String, message: String },
}

/// One problem, located where the author can fix it.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// Kind of rule: `schema`, `notice`, `certificate` or `signature`.
    pub rule: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    pub hint: String,
}

/// Effect of the merge on one supplier's accounts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SupplierSummary {
    pub created: Vec<String>,
    pub extended: Vec<String>,
    pub deleted: Vec<String>,
    pub changed: Vec<String>,
}

/// The verdict on a pull request.
#[derive(Clone, Debug, Serialize)]
pub struct ValidateReport {
    pub base: String,
    pub head: String,
    pub today: NaiveDate,
    pub commits: usize,
    pub problems: Vec<Problem>,
    pub plan: BTreeMap<String, SupplierSummary>,
}

impl ValidateReport {
    /// Returns true when the pull request may be merged.
    pub fn is_acceptable(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs every check on the commits between base and head.
pub fn validate(options: &ValidateOptions) -> Result<ValidateReport, ValidateError> {
    let repo = Repository::open(&options.repo).map_err(|source| ValidateError::Open {
        path: options.repo.display().to_string(),
        source,
    })?;
    let head = resolve(&repo, "head", &options.head)?;
    let base = match &options.base {
        Some(base) => resolve(&repo, "base", base)?,
        None => merge_base(&repo, head, &options.main_branch)?,
    };

    let verdict = authorization::check_range(&repo, Some(base), head)?;
    let calendar = Calendar::new(verdict.head_policy.clone().unwrap_or_default().closing_days);

    let base_files = read_files(&repo, base)?;
    let head_files = read_files(&repo, head)?;
    let changed: BTreeSet<String> = base_files
        .iter()
        .chain(&head_files)
        .filter(|(path, _)| base_files.get(*path) != head_files.get(*path))
        .map(|(path, _)| path.clone())
        .collect();

    // Only the changed files and every supplier.yaml need parsing: unchanged user files were
    // checked when they changed, and parsing all of them dominates the time in a large
    // repository.
    let relevant = |files: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        files
            .iter()
            .filter(|(path, _)| changed.contains(*path) || path.ends_with("/supplier.yaml"))
            .map(|(path, text)| (path.clone(), text.clone()))
            .collect()
    };
    let base_state = parse(&relevant(&base_files));
    let head_state = parse(&relevant(&head_files));

    let mut problems = Vec::new();
    problems.extend(usernames_taken_by_unchanged(
        &head_state,
        &head_files,
        &changed,
    ));
    for error in head_state
        .errors
        .iter()
        .filter(|e| changed.contains(&e.path))
    {
        problems.push(Problem {
            rule: "schema",
            path: Some(error.path.clone()),
            line: error.line.or_else(|| {
                let text = head_files.get(&error.path)?;
                field_line(text, error.field.as_deref()?)
            }),
            field: error.field.clone(),
            message: error.message.clone(),
            hint: error.hint.clone(),
        });
    }

    let mut plan: BTreeMap<String, SupplierSummary> = BTreeMap::new();
    for path in &changed {
        let Some((supplier, name)) = user_path(path) else {
            continue;
        };
        let old = base_state
            .suppliers
            .get(supplier)
            .and_then(|s| s.users.get(name))
            .map(|u| &u.spec);
        let new = head_state
            .suppliers
            .get(supplier)
            .and_then(|s| s.users.get(name))
            .map(|u| &u.spec);
        let invalid_now = head_files.contains_key(path) && new.is_none();
        let Some(change) = notice::classify(old, new).filter(|_| !invalid_now) else {
            continue;
        };

        let summary = plan.entry(supplier.to_owned()).or_default();
        match change {
            Change::Create { .. } => summary.created.push(name.to_owned()),
            Change::Delete { .. } => summary.deleted.push(name.to_owned()),
            Change::Update { old, new } if new.last_day() < old.last_day() => {
                summary
                    .deleted
                    .push(format!("{name} (access ends {})", new.last_day()));
            }
            Change::Update { old, new } if new.valid_until > old.valid_until => {
                summary
                    .extended
                    .push(format!("{name} (to {})", new.valid_until));
            }
            Change::Update { .. } => summary.changed.push(name.to_owned()),
        }

        let Some(supplier_spec) = head_state
            .suppliers
            .get(supplier)
            .and_then(|s| s.spec.as_ref())
        else {
            continue;
        };
        for violation in notice::check(change, supplier_spec, &calendar, options.today) {
            problems.push(Problem {
                rule: "notice",
                path: Some(path.clone()),
                line: head_files
                    .get(path)
                    .and_then(|text| field_line(text, violation.field)),
                field: Some(violation.field.to_owned()),
                message: violation.message,
                hint: violation.hint,
            });
        }
    }

    problems.extend(certificate_problems(
        &head_state,
        &head_files,
        &changed,
        options.today,
    ));

    for problem in verdict.problems {
        problems.push(Problem {
            rule: "signature",
            path: problem.path.clone(),
            line: None,
            field: None,
            message: problem.to_string(),
            hint: "sign each commit with a key listed for you (`git commit -S`); rewrite the \
                   branch's commits that are unsigned or signed by someone else"
                .to_owned(),
        });
    }

    Ok(ValidateReport {
        base: base.to_string(),
        head: head.to_string(),
        today: options.today,
        commits: verdict.commits,
        problems,
        plan,
    })
}

/// Checks the secure mail certificate of each changed `supplier.yaml` as sending a mail at
/// the end of `today` (23:59:59 UTC) would, so that a reviewer does not merge a certificate
/// that cannot be used. The end of the day accepts a certificate issued earlier today. Unchanged suppliers are not checked, so an expiring certificate does not fail
/// unrelated pull requests.
fn certificate_problems(
    head_state: &DesiredState,
    head_files: &BTreeMap<String, String>,
    changed: &BTreeSet<String>,
    today: NaiveDate,
) -> Vec<Problem> {
    const FIELD: &str = "spec.secureMailCertificate";
    let end_of_day = today
        .and_hms_opt(23, 59, 59)
        .expect("23:59:59 is a valid time")
        .and_utc();
    let mut problems = Vec::new();
    for (name, supplier) in &head_state.suppliers {
        let path = format!("{}/{name}/supplier.yaml", crate::desired::SUPPLIERS_DIR);
        if !changed.contains(&path) {
            continue;
        }
        let Some(spec) = &supplier.spec else { continue };
        let Some(pem) = &spec.secure_mail_certificate else {
            continue;
        };
        let Err(problem) =
            crate::mail::certificate::check_recipient(pem, &spec.secure_mail, end_of_day)
        else {
            continue;
        };
        problems.push(Problem {
            rule: "certificate",
            line: head_files
                .get(&path)
                .and_then(|text| field_line(text, FIELD)),
            path: Some(path),
            field: Some(FIELD.to_owned()),
            message: format!("the S/MIME certificate for {} {problem}", spec.secure_mail),
            hint: "ask the supplier for a certificate of its secureMail address that is valid, \
                   permits encryption and lists emailProtection"
                .to_owned(),
        });
    }
    problems
}

/// Reports a username requested by a changed file that an unchanged file already requests.
/// Unchanged files are scanned for their `username:` line instead of parsed, because they
/// passed the check when they changed.
fn usernames_taken_by_unchanged(
    head_state: &DesiredState,
    head_files: &BTreeMap<String, String>,
    changed: &BTreeSet<String>,
) -> Vec<Problem> {
    let requested: BTreeMap<String, &desired::DesiredUser> = head_state
        .users()
        .filter_map(|user| Some((user.spec.username.as_ref()?.to_lowercase(), user)))
        .collect();
    if requested.is_empty() {
        return Vec::new();
    }

    let mut problems = Vec::new();
    for (path, text) in head_files {
        if changed.contains(path) || user_path(path).is_none() {
            continue;
        }
        let Some(value) = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("username:"))
        else {
            continue;
        };
        let username = value.trim().trim_matches(['"', '\'']).to_lowercase();
        if let Some(user) = requested.get(&username) {
            problems.push(Problem {
                rule: "schema",
                path: Some(user.source.clone()),
                line: head_files
                    .get(&user.source)
                    .and_then(|t| field_line(t, "spec.username")),
                field: Some("spec.username".to_owned()),
                message: format!("username {username:?} is also requested by {path}"),
                hint: "give each user a username of their own, or leave username out".to_owned(),
            });
        }
    }
    problems
}

fn resolve(repo: &Repository, what: &'static str, revision: &str) -> Result<Oid, ValidateError> {
    repo.revparse_single(revision)
        .and_then(|object| object.peel_to_commit())
        .map(|commit| commit.id())
        .map_err(|_| ValidateError::UnknownRevision {
            what,
            revision: revision.to_owned(),
        })
}

fn merge_base(repo: &Repository, head: Oid, branch: &str) -> Result<Oid, ValidateError> {
    let candidates = [
        format!("refs/heads/{branch}"),
        format!("refs/remotes/origin/{branch}"),
    ];
    for reference in candidates {
        if let Ok(target) = repo
            .revparse_single(&reference)
            .and_then(|o| o.peel_to_commit())
        {
            return repo
                .merge_base(head, target.id())
                .map_err(|_| ValidateError::NoMergeBase {
                    head: head.to_string(),
                    branch: branch.to_owned(),
                });
        }
    }
    Err(ValidateError::NoMergeBase {
        head: head.to_string(),
        branch: branch.to_owned(),
    })
}

/// Reads the text files under `suppliers/` at a commit, by path.
fn read_files(repo: &Repository, commit: Oid) -> Result<BTreeMap<String, String>, ValidateError> {
    let error = |e: git2::Error| ValidateError::Read {
        commit: commit.to_string(),
        message: e.message().to_owned(),
    };
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(error)?;
    let mut files = BTreeMap::new();
    let Ok(entry) = tree.get_path(std::path::Path::new(SUPPLIERS_DIR)) else {
        return Ok(files);
    };
    let folder = repo.find_tree(entry.id()).map_err(error)?;
    let mut failure = None;
    folder
        .walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            if entry.kind() != Some(git2::ObjectType::Blob) {
                return git2::TreeWalkResult::Ok;
            }
            let path = format!("{SUPPLIERS_DIR}/{root}{}", entry.name().unwrap_or(""));
            match repo.find_blob(entry.id()) {
                Ok(blob) => {
                    files.insert(path, String::from_utf8_lossy(blob.content()).into_owned());
                }
                Err(e) => failure = Some(e),
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(error)?;
    match failure {
        Some(e) => Err(error(e)),
        None => Ok(files),
    }
}

fn parse(files: &BTreeMap<String, String>) -> DesiredState {
    desired::from_files(files.iter().map(|(p, c)| (p.as_str(), c.as_bytes())))
}

fn user_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix(SUPPLIERS_DIR)?.strip_prefix('/')?;
    let (supplier, file) = rest.split_once("/users/")?;
    let name = file.strip_suffix(".yaml")?;
    (!name.contains('/')).then_some((supplier, name))
}

/// Finds the line of a dotted field path (`spec.employment.end`) in a YAML text, by walking
/// the keys in order; 1-based.
pub fn field_line(text: &str, field: &str) -> Option<usize> {
    let mut start = 0;
    let mut found = None;
    let lines: Vec<&str> = text.lines().collect();
    for key in field.split('.') {
        let needle = format!("{key}:");
        let offset = lines[start..].iter().position(|l| {
            let trimmed = l.trim_start().trim_start_matches("- ");
            trimmed.starts_with(&needle)
        })?;
        start += offset;
        found = Some(start + 1);
        start += 1;
    }
    found
}

/// Renders the report as text for people.
pub fn render_text(report: &ValidateReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Checked {} commit(s) from {} to {}, submitted {}.",
        report.commits,
        &report.base[..12.min(report.base.len())],
        &report.head[..12.min(report.head.len())],
        report.today
    );
    if report.problems.is_empty() {
        out.push_str("\nNo problems: the pull request may be merged.\n");
    } else {
        let _ = writeln!(out, "\n{} problem(s):", report.problems.len());
        for problem in &report.problems {
            let location = match (&problem.path, problem.line) {
                (Some(path), Some(line)) => format!("{path}:{line}: "),
                (Some(path), None) => format!("{path}: "),
                _ => String::new(),
            };
            let field = problem
                .field
                .as_deref()
                .map(|f| format!("{f}: "))
                .unwrap_or_default();
            let _ = writeln!(out, "  {location}{field}{}", problem.message);
            let _ = writeln!(out, "    fix: {}", problem.hint);
        }
    }
    out.push_str("\nWhat the merge will do in AD:\n");
    if report.plan.is_empty() {
        out.push_str("  nothing\n");
    }
    for (supplier, summary) in &report.plan {
        let _ = writeln!(out, "  {supplier}:");
        for (label, names) in [
            ("create", &summary.created),
            ("extend", &summary.extended),
            ("delete or shorten", &summary.deleted),
            ("change", &summary.changed),
        ] {
            if !names.is_empty() {
                let _ = writeln!(out, "    {label}: {}", names.join(", "));
            }
        }
    }
    out
}

/// Renders the problems as GitHub Actions workflow commands, which annotate the file and line.
pub fn render_github(report: &ValidateReport) -> String {
    let mut out = String::new();
    for problem in &report.problems {
        let mut properties = Vec::new();
        if let Some(path) = &problem.path {
            properties.push(format!("file={}", escape_property(path)));
        }
        if let Some(line) = problem.line {
            properties.push(format!("line={line}"));
        }
        properties.push(format!(
            "title={}",
            escape_property(&format!("adgang {}", problem.rule))
        ));
        let message = format!("{} Fix: {}", problem.message, problem.hint);
        let _ = writeln!(
            out,
            "::error {}::{}",
            properties.join(","),
            escape_data(&message)
        );
    }
    let _ = writeln!(
        out,
        "::notice title=adgang plan::{}",
        escape_data(
            &render_text(report)
                .lines()
                .skip_while(|l| !l.starts_with("What"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    );
    out
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_line_walks_nested_keys() {
        let text = "metadata:\n  name: x\nspec:\n  validFrom: 2027-01-01\n  employment:\n    start: 2027-01-01\n    end: 2027-02-01\n";
        assert_eq!(field_line(text, "spec.validFrom"), Some(4));
        assert_eq!(field_line(text, "spec.employment.end"), Some(7));
        assert_eq!(field_line(text, "spec.username"), None);
    }

    #[test]
    fn github_escaping() {
        assert_eq!(escape_data("a%b\nc"), "a%25b%0Ac");
        assert_eq!(escape_property("a:b,c"), "a%3Ab%2Cc");
    }

    #[test]
    fn user_paths_recognised() {
        assert_eq!(
            user_path("suppliers/s/users/anne.yaml"),
            Some(("s", "anne"))
        );
        assert_eq!(user_path("suppliers/s/supplier.yaml"), None);
        assert_eq!(user_path("policy.yaml"), None);
    }
}
