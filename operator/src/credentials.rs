//! Initial passwords: generating them and delivering them to the supplier.
//!
//! A password exists in memory, in AD, and in the one place a [`CredentialsSink`] delivers
//! it. [`MailSink`] sends it in an S/MIME signed and encrypted mail to the supplier's secure
//! mail address. [`FileSink`] writes it to an owner-only file in a folder outside the
//! repository. The file sink is meant for installations without secure mail, because anyone
//! with read access to that folder as the same user can read every new password.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use futures::future::BoxFuture;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::desired::DesiredState;
use crate::directory::Secret;
use crate::mail::{MailError, Mailer, OutgoingMail};
use crate::model::UserKey;
use crate::resources::SupplierSpec;
use crate::signatures::KeyRing;
use crate::templates::{CredentialsMail, TemplateError, Templates};

/// Length of generated passwords, in characters.
pub const PASSWORD_LENGTH: usize = 20;

const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
const SYMBOLS: &[u8] = b"-_.:!#%+=";

/// Generates a random password that meets AD's complexity rule: characters of at least three
/// of the four classes, here all four. Look-alike characters (l, I, O, 0, 1) are left out
/// because the contact person passes the password on by hand.
pub fn generate_password() -> Secret {
    let mut rng = rand::rng();
    let classes = [LOWER, UPPER, DIGITS, SYMBOLS];
    let all: Vec<u8> = classes.concat();

    let mut bytes: Vec<u8> = classes
        .iter()
        .map(|class| class[rng.random_range(0..class.len())])
        .collect();
    while bytes.len() < PASSWORD_LENGTH {
        bytes.push(all[rng.random_range(0..all.len())]);
    }
    bytes.shuffle(&mut rng);
    Secret::new(String::from_utf8(bytes).expect("the alphabet is ASCII"))
}

/// New credentials for one account.
pub struct Credentials<'a> {
    pub key: &'a UserKey,
    pub username: &'a str,
    pub display_name: &'a str,
    pub password: &'a Secret,
}

/// Failure to deliver credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Writing the credentials file failed.
    #[error(
        "failed to write credentials for {username} to {path}: {source}; check that the credentials folder exists and is writable"
    )]
    Write {
        username: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The supplier's `supplier.yaml` is missing or invalid, so there is no address to mail.
    #[error("no credentials mail for {username}: supplier {supplier} has no valid supplier.yaml")]
    UnknownSupplier { supplier: String, username: String },
    /// The supplier has no S/MIME certificate to encrypt to.
    #[error(
        "no credentials mail for {username}: supplier {supplier} has no \
         spec.secureMailCertificate in suppliers/{supplier}/supplier.yaml; add the PEM of the \
         S/MIME certificate of {address}"
    )]
    MissingCertificate {
        supplier: String,
        username: String,
        address: String,
    },
    /// The user's file is not in the desired state this run read, so the mail has no period.
    #[error(
        "no credentials mail for {username}: the file of {key} is not in this run's desired state"
    )]
    UnknownUser { key: UserKey, username: String },
    /// The mail text could not be rendered.
    #[error("no credentials mail for {username} of supplier {supplier}: {source}")]
    Template {
        supplier: String,
        username: String,
        source: TemplateError,
    },
    /// The mail was not sent.
    #[error("no credentials mail for {username} of supplier {supplier}: {source}")]
    Mail {
        supplier: String,
        username: String,
        source: Box<MailError>,
    },
}

/// Delivers new credentials to the supplier. The account is marked delivered (and may be
/// enabled) only after the future of `deliver` returns `Ok`.
pub trait CredentialsSink: Send + Sync {
    /// Checks what can be checked before the password is set in AD, such as the recipient's
    /// certificate and the mail text, so that a delivery bound to fail resets no password.
    /// The default checks nothing.
    fn check(&self, credentials: &Credentials<'_>) -> Result<(), CredentialsError> {
        let _ = credentials;
        Ok(())
    }

    /// Delivers the credentials; the future completes only when they are stored, or accepted
    /// by the SMTP server.
    fn deliver<'a>(
        &'a self,
        credentials: &'a Credentials<'a>,
    ) -> BoxFuture<'a, Result<(), CredentialsError>>;
}

/// The way new credentials reach suppliers, chosen once at start. A long-running process
/// such as the controller keeps this and makes a sink for each reconcile, because a mail
/// sink reads the suppliers' addresses and certificates from the desired state of that run.
#[derive(Clone)]
pub enum Delivery {
    /// A sink that needs nothing from the desired state, such as [`FileSink`].
    Sink(Arc<dyn CredentialsSink>),
    /// Secure mail through [`MailSink`].
    Mail {
        mailer: Arc<Mailer>,
        templates: Arc<Templates>,
    },
}

impl Delivery {
    /// Returns the sink for one reconcile over `desired`.
    pub fn sink_for(&self, desired: &DesiredState) -> Arc<dyn CredentialsSink> {
        match self {
            Self::Sink(sink) => sink.clone(),
            Self::Mail { mailer, templates } => {
                Arc::new(MailSink::new(mailer.clone(), templates.clone(), desired))
            }
        }
    }
}

/// Sends each account's credentials by S/MIME mail to its supplier's secure mail address.
///
/// The mail is for the attention of the contact person who submitted the user (see
/// [`find_submitters`]), or of all the supplier's contact persons when that person is not
/// known.
pub struct MailSink {
    mailer: Arc<Mailer>,
    templates: Arc<Templates>,
    suppliers: BTreeMap<String, SupplierSpec>,
    /// First and last day of access of each user, for the mail text.
    periods: BTreeMap<UserKey, (NaiveDate, NaiveDate)>,
    submitters: BTreeMap<UserKey, String>,
}

impl MailSink {
    /// Creates a sink that mails the suppliers of `desired`, as read for this run, with the
    /// `credentials` template of `templates`.
    pub fn new(mailer: Arc<Mailer>, templates: Arc<Templates>, desired: &DesiredState) -> Self {
        let suppliers = desired
            .suppliers
            .iter()
            .filter_map(|(name, supplier)| Some((name.clone(), supplier.spec.clone()?)))
            .collect();
        let periods = desired
            .users()
            .map(|user| {
                (
                    user.key.clone(),
                    (user.spec.valid_from, user.spec.last_day()),
                )
            })
            .collect();
        Self {
            mailer,
            templates,
            suppliers,
            periods,
            submitters: BTreeMap::new(),
        }
    }

    /// Addresses each user's mail to the contact person named in `submitters`.
    pub fn with_submitters(mut self, submitters: BTreeMap<UserKey, String>) -> Self {
        self.submitters = submitters;
        self
    }

    /// Renders the credentials mail for `credentials`, without sending it.
    pub fn compose(&self, credentials: &Credentials<'_>) -> Result<OutgoingMail, CredentialsError> {
        let supplier = &credentials.key.supplier;
        let username = credentials.username.to_owned();
        let spec =
            self.suppliers
                .get(supplier)
                .ok_or_else(|| CredentialsError::UnknownSupplier {
                    supplier: supplier.clone(),
                    username: username.clone(),
                })?;
        let certificate = spec
            .secure_mail_certificate
            .as_deref()
            .filter(|pem| !pem.trim().is_empty())
            .ok_or_else(|| CredentialsError::MissingCertificate {
                supplier: supplier.clone(),
                username: username.clone(),
                address: spec.secure_mail.clone(),
            })?;
        let attention: Vec<String> = match self.submitters.get(credentials.key) {
            Some(name) => vec![name.clone()],
            None => spec
                .contact_persons
                .iter()
                .map(|c| c.name.clone())
                .collect(),
        };
        let (valid_from, last_day) =
            *self
                .periods
                .get(credentials.key)
                .ok_or_else(|| CredentialsError::UnknownUser {
                    key: credentials.key.clone(),
                    username: username.clone(),
                })?;
        let rendered = self
            .templates
            .credentials(&CredentialsMail {
                supplier_name: spec.display_name.clone(),
                attention,
                name: credentials.display_name.to_owned(),
                username: username.clone(),
                password: credentials.password.expose().to_owned(),
                valid_from,
                last_day,
            })
            .map_err(|source| CredentialsError::Template {
                supplier: supplier.clone(),
                username: username.clone(),
                source,
            })?;
        Ok(OutgoingMail {
            to: spec.secure_mail.clone(),
            recipient_certificate: certificate.to_owned(),
            subject: rendered.subject,
            text: rendered.text,
            attachments: Vec::new(),
        })
    }
}

impl CredentialsSink for MailSink {
    fn check(&self, credentials: &Credentials<'_>) -> Result<(), CredentialsError> {
        let mail = self.compose(credentials)?;
        self.mailer
            .check_recipient(&mail)
            .map_err(|source| CredentialsError::Mail {
                supplier: credentials.key.supplier.clone(),
                username: credentials.username.to_owned(),
                source: Box::new(source),
            })
    }

    fn deliver<'a>(
        &'a self,
        credentials: &'a Credentials<'a>,
    ) -> BoxFuture<'a, Result<(), CredentialsError>> {
        Box::pin(async move {
            let mail = self.compose(credentials)?;
            self.mailer
                .send(&mail)
                .await
                .map_err(|source| CredentialsError::Mail {
                    supplier: credentials.key.supplier.clone(),
                    username: credentials.username.to_owned(),
                    source: Box::new(source),
                })
        })
    }
}

/// Finds, for each of `users`, the name of the contact person whose signed commit added the
/// user's file, walking the history back from `head`.
///
/// A user is left out when the commit that added the file is not signed by one of the
/// supplier's contact persons as listed at `head` (a reviewer's commit, a key since removed),
/// or when git fails. A file added on a branch is attributed to the branch's commit, not to
/// the merge commit, because a merge adds a file only when no parent has it.
pub fn find_submitters(
    repo: &git2::Repository,
    head: git2::Oid,
    desired: &DesiredState,
    users: &[UserKey],
) -> BTreeMap<UserKey, String> {
    let mut pending: Vec<(UserKey, String)> = users
        .iter()
        .map(|key| {
            let path = format!(
                "{}/{}/users/{}.yaml",
                crate::desired::SUPPLIERS_DIR,
                key.supplier,
                key.name
            );
            (key.clone(), path)
        })
        .collect();
    let mut adding_commits = Vec::new();
    if let Err(e) = find_adding_commits(repo, head, &mut pending, &mut adding_commits) {
        tracing::warn!(error = %e, "failed to find the commits that added users; mailing all contact persons");
    }

    let mut submitters = BTreeMap::new();
    for (key, commit) in adding_commits {
        let Some(spec) = desired
            .suppliers
            .get(&key.supplier)
            .and_then(|s| s.spec.as_ref())
        else {
            continue;
        };
        let Ok(ring) = KeyRing::from_contact_persons(&spec.contact_persons) else {
            continue;
        };
        let Ok(signer) = ring.verify_commit(repo, commit) else {
            continue;
        };
        if let Some(person) = spec
            .contact_persons
            .iter()
            .find(|person| person.username == signer.owner)
        {
            submitters.insert(key, person.name.clone());
        }
    }
    submitters
}

/// Moves each entry of `pending` whose adding commit is found to `found`.
fn find_adding_commits(
    repo: &git2::Repository,
    head: git2::Oid,
    pending: &mut Vec<(UserKey, String)>,
    found: &mut Vec<(UserKey, git2::Oid)>,
) -> Result<(), git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
    walk.push(head)?;
    for oid in walk {
        if pending.is_empty() {
            break;
        }
        let commit = repo.find_commit(oid?)?;
        let tree = commit.tree()?;
        let parent_trees = commit
            .parents()
            .map(|parent| parent.tree())
            .collect::<Result<Vec<_>, _>>()?;
        let has = |tree: &git2::Tree<'_>, path: &str| tree.get_path(Path::new(path)).is_ok();
        pending.retain(|(key, path)| {
            let added = has(&tree, path) && !parent_trees.iter().any(|parent| has(parent, path));
            if added {
                found.push((key.clone(), commit.id()));
            }
            !added
        });
    }
    Ok(())
}

/// Writes each account's credentials to `<folder>/<supplier>/<username>.txt` with mode 0600.
pub struct FileSink {
    folder: PathBuf,
}

impl FileSink {
    pub fn new(folder: impl Into<PathBuf>) -> Self {
        Self {
            folder: folder.into(),
        }
    }

    /// Returns the file that contains an account's credentials.
    pub fn path_for(&self, supplier: &str, username: &str) -> PathBuf {
        self.folder.join(supplier).join(format!("{username}.txt"))
    }
}

impl CredentialsSink for FileSink {
    fn deliver<'a>(
        &'a self,
        credentials: &'a Credentials<'a>,
    ) -> BoxFuture<'a, Result<(), CredentialsError>> {
        Box::pin(async move { self.write(credentials) })
    }
}

impl FileSink {
    fn write(&self, credentials: &Credentials<'_>) -> Result<(), CredentialsError> {
        let path = self.path_for(&credentials.key.supplier, credentials.username);
        let error = |source| CredentialsError::Write {
            username: credentials.username.to_owned(),
            path: path.clone(),
            source,
        };
        let folder = path.parent().expect("the path has a supplier folder");
        create_private_dir(folder).map_err(error)?;

        let text = format!(
            "Supplier: {}\nName: {}\nUsername: {}\nInitial password: {}\n\
             The password must be changed at first logon.\n",
            credentials.key.supplier,
            credentials.display_name,
            credentials.username,
            credentials.password.expose()
        );
        write_private_file(&path, text.as_bytes()).map_err(error)
    }
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Writes a file readable by its owner only, replacing any earlier one at once (temp file,
/// fsync, rename), so a reader never sees half a password.
fn write_private_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temp = path.with_extension("txt.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(content)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn password_has_every_class() {
        for _ in 0..200 {
            let password = generate_password();
            let text = password.expose();
            assert_eq!(text.len(), PASSWORD_LENGTH);
            for class in [LOWER, UPPER, DIGITS, SYMBOLS] {
                assert!(text.bytes().any(|b| class.contains(&b)), "{text}");
            }
        }
    }

    #[test]
    fn passwords_differ() {
        assert_ne!(generate_password().expose(), generate_password().expose());
    }

    #[test]
    fn file_sink_writes_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path().join("credentials"));
        let key = UserKey::new("omsorg-nord", "anne-hansen");
        let password = Secret::new("Xy7-secret-value".to_owned());
        let credentials = Credentials {
            key: &key,
            username: "anne.hansen",
            display_name: "Anne Hansen",
            password: &password,
        };
        futures::executor::block_on(sink.deliver(&credentials)).unwrap();

        let path = sink.path_for("omsorg-nord", "anne.hansen");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("Xy7-secret-value"));
        assert!(text.contains("anne.hansen"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let folder_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(folder_mode, 0o700);
    }
}
