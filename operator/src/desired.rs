//! The desired state: the repository's files parsed and checked into suppliers and users.
//!
//! Parsing never fails as a whole. Each file that cannot be read, parsed or validated becomes
//! a [`FileError`], and the plan leaves the user (or the whole supplier, for a broken
//! `supplier.yaml`) exactly as AD holds it. A broken file is never read as "user removed":
//! the user's identity comes from the file's path, which is known even when its content is
//! not.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::UserKey;
use crate::resources::{API_VERSION, SupplierSpec, SupplierUserSpec};
use crate::username;

/// Folder of the repository that contains the suppliers.
pub const SUPPLIERS_DIR: &str = "suppliers";

/// A problem with one file, with enough detail for its author to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileError {
    /// Path of the file inside the repository.
    pub path: String,
    /// Line of the problem, when known (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Field concerned, as a dotted path (`spec.validUntil`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong, naming the value.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}; {}", self.message, self.hint)
    }
}

impl FileError {
    fn new(path: &str, field: Option<&str>, message: String, hint: &str) -> Self {
        Self {
            path: path.to_owned(),
            line: None,
            field: field.map(str::to_owned),
            message,
            hint: hint.to_owned(),
        }
    }
}

/// A file as it is stored in the repository or received from the API server.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ObjectFile<S> {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: S,
}

/// The part of `metadata` that a file may carry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectMeta {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    namespace: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
}

/// A supplier user as declared.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DesiredUser {
    pub key: UserKey,
    /// Path of the file in the repository, or `namespace/name` for a custom resource.
    pub source: String,
    pub spec: SupplierUserSpec,
}

/// A supplier and its users as declared.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DesiredSupplier {
    /// The supplier's spec; `None` when its `supplier.yaml` is missing or invalid, which
    /// freezes all of its users.
    pub spec: Option<SupplierSpec>,
    /// Valid users by name.
    pub users: BTreeMap<String, DesiredUser>,
    /// Users whose file is invalid, by name: AD keeps them as they are.
    pub frozen_users: BTreeSet<String>,
}

/// Everything declared, plus the problems found on the way.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DesiredState {
    pub suppliers: BTreeMap<String, DesiredSupplier>,
    pub errors: Vec<FileError>,
}

impl DesiredState {
    /// Returns every group name that any supplier allows, lower case.
    pub fn managed_groups(&self) -> BTreeSet<String> {
        self.suppliers
            .values()
            .filter_map(|s| s.spec.as_ref())
            .flat_map(|spec| spec.groups.iter().map(|g| g.to_lowercase()))
            .collect()
    }

    /// Returns every valid user, in key order.
    pub fn users(&self) -> impl Iterator<Item = &DesiredUser> {
        self.suppliers.values().flat_map(|s| s.users.values())
    }
}

/// Parses the files of a repository (paths relative to its root) into the desired state.
pub fn from_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> DesiredState {
    let mut state = DesiredState::default();
    let mut user_files = Vec::new();

    for (path, content) in files {
        match classify(path) {
            Ok(FileKind::Supplier { supplier }) => {
                let entry = state.suppliers.entry(supplier.to_owned()).or_default();
                let parsed = parse_supplier(path, supplier, content)
                    .and_then(|spec| check_signing_keys(path, &spec).map(|()| spec));
                match parsed {
                    Ok(spec) => entry.spec = Some(spec),
                    Err(error) => state.errors.push(error),
                }
            }
            Ok(FileKind::User { supplier, name }) => {
                user_files.push((path, supplier, name, content))
            }
            Ok(FileKind::Other) => {}
            Err(error) => state.errors.push(error),
        }
    }

    for (path, supplier, name, content) in user_files {
        let entry = state.suppliers.entry(supplier.to_owned()).or_default();
        let result = parse_user(path, supplier, name, content).and_then(|spec| {
            check_user_against_supplier(path, &spec, entry.spec.as_ref()).map(|()| spec)
        });
        match result {
            Ok(spec) => {
                let key = UserKey::new(supplier, name);
                let user = DesiredUser {
                    key,
                    source: path.to_owned(),
                    spec,
                };
                entry.users.insert(name.to_owned(), user);
            }
            Err(error) => {
                entry.frozen_users.insert(name.to_owned());
                state.errors.push(error);
            }
        }
    }

    for (name, supplier) in &state.suppliers {
        if supplier.spec.is_none() && !state.errors.iter().any(|e| is_supplier_file(&e.path, name))
        {
            state.errors.push(FileError::new(
                &format!("{SUPPLIERS_DIR}/{name}/supplier.yaml"),
                None,
                format!("supplier folder {name:?} has users but no supplier.yaml"),
                "add the supplier's supplier.yaml (written by the municipality); until then \
                 its users are left as they are in AD",
            ));
        }
    }

    reject_duplicate_usernames(&mut state);
    state
}

fn is_supplier_file(path: &str, supplier: &str) -> bool {
    path == format!("{SUPPLIERS_DIR}/{supplier}/supplier.yaml")
}

enum FileKind<'a> {
    Supplier { supplier: &'a str },
    User { supplier: &'a str, name: &'a str },
    Other,
}

fn classify(path: &str) -> Result<FileKind<'_>, FileError> {
    let Some(rest) = path
        .strip_prefix(SUPPLIERS_DIR)
        .and_then(|p| p.strip_prefix('/'))
    else {
        return Ok(FileKind::Other);
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let file_name = parts.last().copied().unwrap_or("");

    // Documentation next to the data is allowed; only YAML is data.
    if file_name.ends_with(".md") || file_name == ".gitkeep" {
        return Ok(FileKind::Other);
    }

    let misplaced = |what: &str| {
        FileError::new(
            path,
            None,
            format!("{what} is not where Adgang reads files"),
            "put the supplier in suppliers/<supplier>/supplier.yaml and each user in \
             suppliers/<supplier>/users/<name>.yaml",
        )
    };

    match parts.as_slice() {
        [supplier, "supplier.yaml"] => {
            check_object_name(path, "supplier folder", supplier)?;
            Ok(FileKind::Supplier { supplier })
        }
        [supplier, "users", file] => {
            check_object_name(path, "supplier folder", supplier)?;
            let Some(name) = file.strip_suffix(".yaml") else {
                let hint = if file.ends_with(".yml") {
                    "rename it to .yaml"
                } else {
                    ""
                };
                return Err(FileError::new(
                    path,
                    None,
                    format!("{file:?} is not a .yaml file, so it is not read as a user"),
                    if hint.is_empty() {
                        "user files end in .yaml"
                    } else {
                        hint
                    },
                ));
            };
            check_object_name(path, "file name", name)?;
            Ok(FileKind::User { supplier, name })
        }
        _ => Err(misplaced(&format!("file {path:?}"))),
    }
}

/// Checks a name against Kubernetes' rules for object names (RFC 1123 subdomain, at most 63
/// characters here so it also fits a label value).
fn check_object_name(path: &str, what: &str, name: &str) -> Result<(), FileError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if valid {
        Ok(())
    } else {
        Err(FileError::new(
            path,
            None,
            format!("{what} {name:?} is not a valid object name"),
            "use at most 63 lower-case letters a-z, digits, '-' and '.', starting and ending \
             with a letter or digit (write æ, ø, å as ae, oe, aa)",
        ))
    }
}

fn parse_object<S: DeserializeOwned>(
    path: &str,
    kind: &str,
    content: &[u8],
) -> Result<ObjectFile<S>, FileError> {
    let text = std::str::from_utf8(content).map_err(|e| {
        FileError::new(
            path,
            None,
            format!("file is not valid UTF-8 ({e})"),
            "save the file as UTF-8",
        )
    })?;

    // Checked before parsing, so a CPR number in a comment or a broken file is caught too.
    if let Some(found) = crate::cpr::find(text).first() {
        let mut error = FileError::new(
            path,
            None,
            found.to_string(),
            "remove it from the file, and from every commit of the branch before it is merged",
        );
        error.line = Some(found.line);
        return Err(error);
    }

    let object: ObjectFile<S> = serde_saphyr::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line() as usize);
        // Quoting the line names the field and the value, which the parser's message may not.
        let source_line = line
            .and_then(|n| text.lines().nth(n.saturating_sub(1)))
            .map(str::trim)
            .filter(|l| !l.is_empty());
        let at = match source_line {
            Some(source_line) => format!(" ({source_line:?})"),
            None => String::new(),
        };
        let mut error = FileError::new(
            path,
            None,
            format!(
                "invalid YAML for a {kind}{at}: {}",
                e.without_snippet().render().trim()
            ),
            &format!("fix the YAML so it matches the {kind} schema (see crds/ or `adgang crd`)"),
        );
        error.line = line;
        error.field = source_line
            .and_then(|l| l.split_once(':'))
            .map(|(key, _)| key.trim_start_matches("- ").trim().to_owned())
            .filter(|key| !key.is_empty() && !key.contains(' '));
        error
    })?;

    if object.api_version != API_VERSION {
        return Err(FileError::new(
            path,
            Some("apiVersion"),
            format!("apiVersion is {:?}", object.api_version),
            &format!("set apiVersion: {API_VERSION}"),
        ));
    }
    if object.kind != kind {
        return Err(FileError::new(
            path,
            Some("kind"),
            format!("kind is {:?} but this path holds a {kind}", object.kind),
            &format!("set kind: {kind}, or move the file"),
        ));
    }
    Ok(object)
}

fn parse_supplier(path: &str, supplier: &str, content: &[u8]) -> Result<SupplierSpec, FileError> {
    let object: ObjectFile<SupplierSpec> = parse_object(path, "Supplier", content)?;
    if object.metadata.name != supplier {
        return Err(FileError::new(
            path,
            Some("metadata.name"),
            format!(
                "metadata.name is {:?} but the folder is {supplier:?}",
                object.metadata.name
            ),
            &format!("set metadata.name: {supplier}, the name of the supplier's folder"),
        ));
    }

    let spec = object.spec;
    let mut seen = BTreeSet::new();
    for group in &spec.groups {
        if !seen.insert(group.to_lowercase()) {
            return Err(FileError::new(
                path,
                Some("spec.groups"),
                format!("group {group:?} is listed twice"),
                "list each group once",
            ));
        }
    }
    if !is_cvr(&spec.cvr) {
        return Err(FileError::new(
            path,
            Some("spec.cvr"),
            format!("CVR number {:?} is not eight digits", spec.cvr),
            "write the supplier's CVR number as eight digits",
        ));
    }
    check_ou_name(path, &spec.organizational_unit)?;
    Ok(spec)
}

/// Parses and checks one `supplier.yaml` on its own, as the signature check reads it from
/// earlier commits.
pub fn parse_supplier_text(
    path: &str,
    supplier: &str,
    text: &str,
) -> Result<SupplierSpec, FileError> {
    parse_supplier(path, supplier, text.as_bytes())
}

/// Checks that every contact person's signing keys parse, so a malformed key is caught in
/// review instead of when that person first signs.
fn check_signing_keys(path: &str, spec: &SupplierSpec) -> Result<(), FileError> {
    for (index, person) in spec.contact_persons.iter().enumerate() {
        let keys = crate::signatures::parse_signing_keys(&person.username, &person.signing_keys);
        if let Err(error) = keys {
            return Err(FileError::new(
                path,
                Some(&format!("spec.contactPersons[{index}].signingKeys")),
                error.to_string(),
                "paste the person's public key as one OpenSSH line (ssh-ed25519 AAAA…) or one \
                 ASCII-armoured OpenPGP public key block",
            ));
        }
    }
    Ok(())
}

fn is_cvr(value: &str) -> bool {
    value.len() == 8 && value.bytes().all(|b| b.is_ascii_digit())
}

fn check_ou_name(path: &str, ou: &str) -> Result<(), FileError> {
    if ou.trim().is_empty() || ou.chars().any(char::is_control) || ou.chars().count() > 64 {
        return Err(FileError::new(
            path,
            Some("spec.organizationalUnit"),
            format!("organisational unit name {ou:?} is empty, too long or has control characters"),
            "name the supplier's OU in at most 64 printable characters",
        ));
    }
    Ok(())
}

fn parse_user(
    path: &str,
    supplier: &str,
    name: &str,
    content: &[u8],
) -> Result<SupplierUserSpec, FileError> {
    let object: ObjectFile<SupplierUserSpec> = parse_object(path, "SupplierUser", content)?;
    if object.metadata.name != name {
        return Err(FileError::new(
            path,
            Some("metadata.name"),
            format!(
                "metadata.name is {:?} but the file is {name}.yaml",
                object.metadata.name
            ),
            &format!("set metadata.name: {name}, or rename the file to match"),
        ));
    }

    let spec = object.spec;
    check_user(&spec)
        .map_err(|(field, message, hint)| FileError::new(path, Some(field), message, &hint))?;

    if spec.supplier != supplier {
        return Err(FileError::new(
            path,
            Some("spec.supplier"),
            format!(
                "spec.supplier is {:?} but the file is in the folder of {supplier:?}",
                spec.supplier
            ),
            &format!(
                "move the file to suppliers/{}/users/, or set spec.supplier: {supplier}",
                spec.supplier
            ),
        ));
    }
    Ok(spec)
}

/// Checks the rules of a user spec that need nothing but the spec itself. Returns the field,
/// the problem and what to do.
pub fn check_user(spec: &SupplierUserSpec) -> Result<(), (&'static str, String, String)> {
    if spec.given_name.trim().is_empty() {
        return Err((
            "spec.givenName",
            "givenName is empty".into(),
            "write the given name".into(),
        ));
    }
    if spec.surname.trim().is_empty() {
        return Err((
            "spec.surname",
            "surname is empty".into(),
            "write the surname".into(),
        ));
    }
    for (field, name, value) in [
        ("spec.givenName", "givenName", &spec.given_name),
        ("spec.surname", "surname", &spec.surname),
    ] {
        // A line break or tab would reach AD's name attributes and the mail text.
        if let Some(control) = value.chars().find(|c| c.is_control()) {
            return Err((
                field,
                format!(
                    "{name} {value:?} contains the control character U+{:04X}",
                    u32::from(control)
                ),
                format!("write {name} on one line, without tabs or line breaks"),
            ));
        }
    }
    if let Some(requested) = &spec.username {
        username::check(requested).map_err(|e| {
            (
                "spec.username",
                e.to_string(),
                "choose at most 20 characters without spaces or \" / \\ [ ] : ; | = , + * ? < > @, \
                 or leave username out to have one derived from the name"
                    .to_owned(),
            )
        })?;
    }
    if spec.valid_until < spec.valid_from {
        return Err((
            "spec.validUntil",
            format!(
                "validUntil {} is before validFrom {}",
                spec.valid_until, spec.valid_from
            ),
            "set validUntil on or after validFrom (validUntil is the last day of access)".into(),
        ));
    }
    if spec.valid_from < spec.employment.start {
        return Err((
            "spec.validFrom",
            format!(
                "validFrom {} is before the employment starts ({})",
                spec.valid_from, spec.employment.start
            ),
            "access cannot start before the employment: set validFrom on or after employment.start"
                .into(),
        ));
    }
    if let Some(end) = spec.employment.end
        && end < spec.employment.start
    {
        return Err((
            "spec.employment.end",
            format!(
                "employment.end {end} is before employment.start {}",
                spec.employment.start
            ),
            "correct the employment dates".into(),
        ));
    }
    if let Some(mail) = &spec.mail
        && !looks_like_mail(mail)
    {
        return Err((
            "spec.mail",
            format!("mail {mail:?} is not a mail address"),
            "write the work mail address as name@domain".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for group in &spec.groups {
        if !seen.insert(group.to_lowercase()) {
            return Err((
                "spec.groups",
                format!("group {group:?} is listed twice"),
                "list each group once".into(),
            ));
        }
    }
    Ok(())
}

fn looks_like_mail(value: &str) -> bool {
    match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

fn check_user_against_supplier(
    path: &str,
    spec: &SupplierUserSpec,
    supplier: Option<&SupplierSpec>,
) -> Result<(), FileError> {
    let Some(supplier) = supplier else {
        // The supplier's own error freezes this user; nothing more to say here.
        return Ok(());
    };
    let allowed: BTreeSet<String> = supplier.groups.iter().map(|g| g.to_lowercase()).collect();
    for group in &spec.groups {
        if !allowed.contains(&group.to_lowercase()) {
            return Err(FileError::new(
                path,
                Some("spec.groups"),
                format!(
                    "group {group:?} is not one that supplier {:?} may use",
                    spec.supplier
                ),
                &format!(
                    "use only the supplier's groups ({}), or ask the municipality to allow it in supplier.yaml",
                    supplier.groups.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Freezes every user that requests a username another file also requests.
fn reject_duplicate_usernames(state: &mut DesiredState) {
    let mut by_username: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for (supplier_name, supplier) in &state.suppliers {
        for (name, user) in &supplier.users {
            if let Some(requested) = &user.spec.username {
                by_username
                    .entry(requested.to_lowercase())
                    .or_default()
                    .push((supplier_name.clone(), name.clone(), user.source.clone()));
            }
        }
    }

    for (requested, owners) in by_username.into_iter().filter(|(_, o)| o.len() > 1) {
        let paths: Vec<&str> = owners.iter().map(|(_, _, p)| p.as_str()).collect();
        for (supplier, name, path) in &owners {
            let others: Vec<&str> = paths.iter().copied().filter(|p| p != path).collect();
            state.errors.push(FileError::new(
                path,
                Some("spec.username"),
                format!(
                    "username {requested:?} is also requested by {}",
                    others.join(", ")
                ),
                "give each user a username of their own, or leave username out",
            ));
            let entry = state
                .suppliers
                .get_mut(supplier)
                .expect("supplier was just read");
            entry.users.remove(name);
            entry.frozen_users.insert(name.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUPPLIER: &str = "apiVersion: adgang.example.org/v1alpha1
kind: Supplier
metadata:
  name: omsorg-nord
spec:
  displayName: Omsorg Nord ApS
  cvr: \"12345678\"
  secureMail: sikker@omsorg-nord.example.org
  organizationalUnit: Omsorg Nord
  groups: [Nexus-Brugere]
";

    const USER: &str = "apiVersion: adgang.example.org/v1alpha1
kind: SupplierUser
metadata:
  name: anne-hansen
spec:
  supplier: omsorg-nord
  givenName: Anne
  surname: Hansen
  validFrom: 2027-01-04
  validUntil: 2027-06-30
  employment:
    start: 2027-01-04
  groups: [Nexus-Brugere]
";

    const USER_PATH: &str = "suppliers/omsorg-nord/users/anne-hansen.yaml";

    fn parse(files: &[(&str, &str)]) -> DesiredState {
        from_files(files.iter().map(|(p, c)| (*p, c.as_bytes())))
    }

    fn parse_user(content: &str) -> DesiredState {
        parse(&[
            ("suppliers/omsorg-nord/supplier.yaml", SUPPLIER),
            (USER_PATH, content),
        ])
    }

    #[test]
    fn valid_files_parse() {
        let state = parse_user(USER);
        assert!(state.errors.is_empty(), "{:?}", state.errors);
        let supplier = &state.suppliers["omsorg-nord"];
        assert!(supplier.spec.is_some());
        assert_eq!(supplier.users["anne-hansen"].spec.given_name, "Anne");
    }

    /// Each bad input freezes the user and names the file, and where it applies the field and
    /// the value.
    #[test]
    fn bad_user_files_rejected() {
        let cases: [(&str, String, Option<&str>, &str); 15] = [
            (
                "line feed in givenName",
                USER.replace("givenName: Anne", "givenName: \"Anne\\nMarie\""),
                Some("spec.givenName"),
                "U+000A",
            ),
            (
                "carriage return in surname",
                USER.replace("surname: Hansen", "surname: \"Hansen\\r\""),
                Some("spec.surname"),
                "U+000D",
            ),
            (
                "tab in surname",
                USER.replace("surname: Hansen", "surname: \"Han\\tsen\""),
                Some("spec.surname"),
                "U+0009",
            ),
            ("invalid YAML", "spec: [\n".to_owned(), None, "invalid YAML"),
            (
                "duplicate key",
                USER.replace(
                    "  surname: Hansen\n",
                    "  surname: Hansen\n  surname: Holm\n",
                ),
                None,
                "surname",
            ),
            (
                "unknown field",
                format!("{USER}  cpr: \"0101\"\n"),
                None,
                "cpr",
            ),
            (
                "missing field",
                USER.replace("  givenName: Anne\n", ""),
                None,
                "givenName",
            ),
            (
                "date that does not exist",
                USER.replace("2027-06-30", "2027-02-30"),
                None,
                "2027-02-30",
            ),
            (
                "validUntil before validFrom",
                USER.replace("2027-06-30", "2027-01-03"),
                Some("spec.validUntil"),
                "2027-01-03",
            ),
            (
                "wrong supplier",
                USER.replace("supplier: omsorg-nord", "supplier: pleje-vest"),
                Some("spec.supplier"),
                "pleje-vest",
            ),
            (
                "group not allowed",
                USER.replace("[Nexus-Brugere]", "[Domain Admins]"),
                Some("spec.groups"),
                "Domain Admins",
            ),
            (
                "username too long",
                format!("{USER}  username: abcdefghijklmnopqrstu\n"),
                Some("spec.username"),
                "abcdefghijklmnopqrstu",
            ),
            (
                "forbidden character",
                format!("{USER}  username: anne+h\n"),
                Some("spec.username"),
                "anne+h",
            ),
            (
                "name differs from file",
                USER.replace("name: anne-hansen", "name: anne"),
                Some("metadata.name"),
                "anne",
            ),
            (
                "wrong kind",
                USER.replace("kind: SupplierUser", "kind: Supplier"),
                Some("kind"),
                "Supplier",
            ),
        ];
        for (case, content, field, value) in cases {
            let state = parse_user(&content);
            assert_eq!(state.errors.len(), 1, "{case}: {:?}", state.errors);
            let error = &state.errors[0];
            assert_eq!(error.path, USER_PATH, "{case}");
            if let Some(field) = field {
                assert_eq!(error.field.as_deref(), Some(field), "{case}");
            }
            assert!(error.to_string().contains(value), "{case}: {error}");
            assert!(!error.hint.is_empty(), "{case}: no hint");

            let supplier = &state.suppliers["omsorg-nord"];
            assert!(supplier.users.is_empty(), "{case}");
            assert!(
                supplier.frozen_users.contains("anne-hansen"),
                "{case}: not frozen"
            );
        }
    }

    #[test]
    fn cpr_number_rejected_without_echo() {
        let content = USER.replace(
            "  givenName: Anne\n",
            "  # 010190-1234\n  givenName: Anne\n",
        );
        let state = parse_user(&content);
        assert_eq!(state.errors.len(), 1, "{:?}", state.errors);
        let error = &state.errors[0];
        assert_eq!(error.line, Some(7));
        assert!(error.message.contains("CPR"), "{error}");
        assert!(
            !error.to_string().contains("010190"),
            "the number must not be echoed: {error}"
        );
        assert!(
            state.suppliers["omsorg-nord"]
                .frozen_users
                .contains("anne-hansen")
        );
    }

    #[test]
    fn yaml_error_has_line() {
        let state = parse_user(&USER.replace("  surname: Hansen\n", "  surname: [Hansen\n"));
        assert_eq!(state.errors.len(), 1, "{:?}", state.errors);
        assert!(state.errors[0].line.is_some(), "{:?}", state.errors[0]);
    }

    #[test]
    fn same_username_twice_freezes_both() {
        let other = USER.replace("anne-hansen", "anne-holm");
        let state = parse(&[
            ("suppliers/omsorg-nord/supplier.yaml", SUPPLIER),
            (USER_PATH, &format!("{USER}  username: ahansen\n")),
            (
                "suppliers/omsorg-nord/users/anne-holm.yaml",
                &format!("{other}  username: AHansen\n"),
            ),
        ]);
        assert_eq!(state.errors.len(), 2, "{:?}", state.errors);
        for error in &state.errors {
            assert_eq!(error.field.as_deref(), Some("spec.username"));
        }
        assert!(state.suppliers["omsorg-nord"].users.is_empty());
        assert_eq!(state.suppliers["omsorg-nord"].frozen_users.len(), 2);
    }

    #[test]
    fn misplaced_files_rejected() {
        let cases = [
            "suppliers/omsorg-nord/anne-hansen.yaml",
            "suppliers/omsorg-nord/users/anne-hansen.yml",
            "suppliers/Omsorg_Nord/supplier.yaml",
            "suppliers/omsorg-nord/users/sub/anne.yaml",
        ];
        for path in cases {
            let state = parse(&[(path, USER)]);
            assert_eq!(state.errors.len(), 1, "{path}: {:?}", state.errors);
            assert_eq!(state.errors[0].path, path);
        }
    }

    #[test]
    fn documentation_files_ignored() {
        let state = parse(&[
            ("suppliers/omsorg-nord/supplier.yaml", SUPPLIER),
            ("suppliers/omsorg-nord/README.md", "# Omsorg Nord"),
            ("README.md", "# Repository"),
        ]);
        assert!(state.errors.is_empty(), "{:?}", state.errors);
    }

    #[test]
    fn users_without_supplier_frozen() {
        let state = parse(&[(USER_PATH, USER)]);
        assert_eq!(state.errors.len(), 1, "{:?}", state.errors);
        assert!(
            state.errors[0].message.contains("no supplier.yaml"),
            "{:?}",
            state.errors[0]
        );
        assert!(state.suppliers["omsorg-nord"].spec.is_none());
    }

    #[test]
    fn bad_supplier_named() {
        let cases = [
            (SUPPLIER.replace("\"12345678\"", "\"1234\""), "spec.cvr"),
            (
                SUPPLIER.replace("name: omsorg-nord", "name: other"),
                "metadata.name",
            ),
            (
                SUPPLIER.replace("[Nexus-Brugere]", "[Nexus-Brugere, nexus-brugere]"),
                "spec.groups",
            ),
            (
                format!(
                    "{SUPPLIER}  contactPersons:\n    - name: Birthe Lund\n      \
                     username: birthe.lund\n      signingKeys: [\"ssh-ed25519 not-base64\"]\n"
                ),
                "spec.contactPersons[0].signingKeys",
            ),
        ];
        for (content, field) in cases {
            let state = parse(&[("suppliers/omsorg-nord/supplier.yaml", &content)]);
            assert_eq!(state.errors.len(), 1, "{field}: {:?}", state.errors);
            assert_eq!(state.errors[0].field.as_deref(), Some(field));
        }
    }

    #[test]
    fn example_repository_valid() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/repo");
        let mut files = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let relative = path
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    files.push((relative, std::fs::read(&path).unwrap()));
                }
            }
        }
        let state = from_files(files.iter().map(|(p, c)| (p.as_str(), c.as_slice())));
        assert!(state.errors.is_empty(), "{:#?}", state.errors);
        assert_eq!(state.suppliers.len(), 2);
        assert_eq!(state.users().count(), 9);
    }
}
