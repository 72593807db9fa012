//! The repository itself: opening or cloning it, fetching the branch, reading a commit's
//! tree and checking that a new head descends from the last applied commit.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use git2::{ObjectType, Oid, Reference, Repository, Tree};
use tracing::{debug, info, warn};

use super::cache::{REMOTE_NAME, fetch_branch, open_or_clone_cache};
use super::error::SourceError;
use super::names::{cache_directory_name, is_remote_url, redact_url};

/// File mode of a symbolic link in a git tree.
const SYMLINK_MODE: i32 = 0o120000;

/// Location and branch of the repository that declares the desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositorySettings {
    /// Local path of a repository (bare or not) or URL of a remote (`file://`, `https://`,
    /// `ssh://` or `user@host:path`).
    pub url: String,
    /// Branch whose head is applied, without the `refs/heads/` prefix.
    pub branch: String,
    /// Directory that contains the bare clones of remote URLs. Unused for a local path.
    pub cache_dir: PathBuf,
}

/// A file of a commit's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoFile {
    /// Path from the root of the repository, with `/` separators.
    pub path: String,
    /// Content of the blob, unchanged.
    pub content: Vec<u8>,
}

/// Metadata of a commit, for logs, status and reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    pub id: Oid,
    /// First line of the commit message, or an empty string if the message has none.
    pub summary: String,
    /// Author as `Name <email>`.
    pub author: String,
    /// Committer time.
    pub committed_at: DateTime<Utc>,
}

/// Whether the repository is used in place or is a cache clone of a remote.
enum Origin {
    /// A local repository opened in place, never written to.
    Local,
    /// A bare clone in the cache directory, updated by fetching from the remote.
    Cache { path: PathBuf },
}

/// The git repository that declares the desired state, reduced to one branch.
///
/// All methods block on disk and, for a remote, network I/O, so async callers should run
/// them with `tokio::task::spawn_blocking`. `git2::Repository` is `Send` but not `Sync`.
pub struct GitSource {
    repository: Repository,
    origin: Origin,
    /// The configured URL with its user information removed, for messages and logs.
    display_url: String,
    branch: String,
}

impl GitSource {
    /// Opens a local repository in place, or clones a remote URL into the cache directory.
    ///
    /// A local path may name a bare repository or the work tree of a non-bare one, and
    /// parent directories are not searched. A remote URL is cloned bare into
    /// `cache_dir/<name derived from the URL>` on first use, with only the configured
    /// branch, and the clone is reused afterwards. The clone is made in a temporary
    /// directory and renamed into place, so an interrupted clone leaves no partial cache.
    pub fn open(settings: &RepositorySettings) -> Result<Self, SourceError> {
        let display_url = redact_url(&settings.url);
        validate_branch_name(&display_url, &settings.branch)?;

        let (repository, origin) = if is_remote_url(&settings.url) {
            let path = settings.cache_dir.join(cache_directory_name(&settings.url));
            let repository = open_or_clone_cache(settings, &display_url, &path)?;
            (repository, Origin::Cache { path })
        } else {
            let path = Path::new(&settings.url);
            let flags = git2::RepositoryOpenFlags::NO_SEARCH;
            let repository = Repository::open_ext(path, flags, std::iter::empty::<&str>())
                .map_err(|source| SourceError::RepositoryNotFound {
                    path: path.to_owned(),
                    source,
                })?;
            (repository, Origin::Local)
        };

        Ok(Self {
            repository,
            origin,
            display_url,
            branch: settings.branch.clone(),
        })
    }

    /// Fetches the branch from the remote and returns its head commit.
    ///
    /// For a local path nothing is fetched, and the head of the local branch is returned.
    /// A branch that the remote no longer advertises is reported as
    /// [`SourceError::BranchMissing`], even if an older fetch left a remote-tracking branch.
    pub fn fetch(&self) -> Result<Oid, SourceError> {
        if let Origin::Cache { .. } = self.origin {
            fetch_branch(&self.repository, &self.display_url, &self.branch)?;
        }

        let head = self.branch_head()?;
        debug!(url = %self.display_url, branch = %self.branch, %head, "resolved branch head");
        Ok(head)
    }

    /// Reads every file under the directory `prefix` from the commit's tree, sorted by path.
    ///
    /// The files come from the object database, so neither the work tree nor the index of
    /// a non-bare repository affects them. `prefix` is a directory path such as
    /// `suppliers/` (trailing and leading slashes are ignored), and an empty prefix reads
    /// the whole tree. A missing directory is an error rather than an empty list, so that a
    /// renamed directory is not read as a desired state without any accounts.
    /// Symbolic links and submodules are skipped with a warning.
    pub fn read_files(&self, commit: Oid, prefix: &str) -> Result<Vec<RepoFile>, SourceError> {
        let root = self.commit_tree(commit)?;
        let prefix = prefix.trim_matches('/');

        let directory = if prefix.is_empty() {
            root
        } else {
            self.subtree(&root, commit, prefix)?
        };

        let mut files = Vec::new();
        self.collect_files(&directory, commit, prefix, &mut files)?;
        files.sort_by(|left, right| left.path.cmp(&right.path));
        Ok(files)
    }

    /// Checks that `head` descends from `last_applied`, or equals it.
    ///
    /// A missing `last_applied` (the first sync) passes. Otherwise the error is
    /// [`SourceError::HistoryRewritten`] when `head` is not a descendant,
    /// [`SourceError::LastAppliedUnknown`] when the repository lacks `last_applied`, and
    /// [`SourceError::ShallowRepository`] when either of those may be caused by missing
    /// history in a shallow clone.
    pub fn check_fast_forward(
        &self,
        last_applied: Option<Oid>,
        head: Oid,
    ) -> Result<(), SourceError> {
        let Some(last_applied) = last_applied else {
            return Ok(());
        };
        if last_applied == head {
            return Ok(());
        }

        self.find_commit(head)?;

        let shallow = self.repository.is_shallow();
        let known = self.repository.find_commit(last_applied).is_ok();
        let descendant = known
            && self
                .repository
                .graph_descendant_of(head, last_applied)
                .map_err(|source| SourceError::ReadFailed {
                    url: self.display_url.clone(),
                    object: format!("the history between {last_applied} and {head}"),
                    source,
                })?;

        if descendant {
            return Ok(());
        }

        let url = self.display_url.clone();
        let branch = self.branch.clone();
        if shallow {
            Err(SourceError::ShallowRepository {
                url,
                branch,
                last_applied,
                head,
            })
        } else if known {
            Err(SourceError::HistoryRewritten {
                url,
                branch,
                last_applied,
                head,
            })
        } else {
            Err(SourceError::LastAppliedUnknown {
                url,
                branch,
                last_applied,
                head,
            })
        }
    }

    /// Decides whether `head` may be applied, honouring an operator's explicit override.
    ///
    /// `accepted` is the commit named by `adgang sync --accept-rewritten-history`. It lets
    /// a head that fails [`check_fast_forward`](Self::check_fast_forward) pass only when
    /// it equals `head` exactly. Any other accepted commit gives
    /// [`SourceError::AcceptedHeadMismatch`], because the branch has moved since the
    /// operator checked it. A head that passes the check needs no override.
    pub fn verify_head(
        &self,
        last_applied: Option<Oid>,
        head: Oid,
        accepted: Option<Oid>,
    ) -> Result<(), SourceError> {
        let Err(error) = self.check_fast_forward(last_applied, head) else {
            if let Some(accepted) = accepted {
                info!(
                    url = %self.display_url, branch = %self.branch, %head, %accepted,
                    "head descends from the last applied commit, so the override is unused"
                );
            }
            return Ok(());
        };

        let last_applied = match &error {
            SourceError::HistoryRewritten { last_applied, .. }
            | SourceError::LastAppliedUnknown { last_applied, .. }
            | SourceError::ShallowRepository { last_applied, .. } => *last_applied,
            _ => return Err(error),
        };
        let Some(accepted) = accepted else {
            return Err(error);
        };

        if accepted != head {
            return Err(SourceError::AcceptedHeadMismatch {
                url: self.display_url.clone(),
                branch: self.branch.clone(),
                last_applied,
                head,
                accepted,
            });
        }

        warn!(
            url = %self.display_url, branch = %self.branch, %last_applied, %head,
            error = &error as &dyn std::error::Error,
            "applying a head that is not verified to descend from the last applied commit, \
             because the operator accepted it"
        );
        Ok(())
    }

    /// Reads the id, summary, author and committer time of a commit.
    pub fn commit_info(&self, commit: Oid) -> Result<CommitInfo, SourceError> {
        let found = self.find_commit(commit)?;
        let author = found.author();
        let seconds = found.committer().when().seconds();

        Ok(CommitInfo {
            id: commit,
            summary: String::from_utf8_lossy(found.summary_bytes().unwrap_or_default())
                .into_owned(),
            author: format!(
                "{} <{}>",
                String::from_utf8_lossy(author.name_bytes()),
                String::from_utf8_lossy(author.email_bytes())
            ),
            committed_at: DateTime::from_timestamp(seconds, 0).unwrap_or_default(),
        })
    }

    /// Resolves a full or abbreviated commit id, as typed by an operator, to a commit.
    ///
    /// Only hexadecimal ids are accepted, so a branch or tag name is not mistaken for the
    /// commit that the operator checked.
    pub fn resolve_commit(&self, text: &str) -> Result<Oid, SourceError> {
        let not_found = |source| SourceError::CommitNotFound {
            url: self.display_url.clone(),
            commit: text.to_owned(),
            source,
        };

        if text.len() < 4 || !text.chars().all(|character| character.is_ascii_hexdigit()) {
            let message = "expected a commit id of at least 4 hexadecimal digits";
            return Err(not_found(git2::Error::from_str(message)));
        }

        let object = self.repository.revparse_single(text).map_err(not_found)?;
        let commit = object.peel_to_commit().map_err(not_found)?;
        Ok(commit.id())
    }

    /// Returns the directory of the cache clone, or `None` for a local repository.
    pub fn cache_path(&self) -> Option<&Path> {
        match &self.origin {
            Origin::Local => None,
            Origin::Cache { path } => Some(path),
        }
    }

    /// Returns the underlying repository.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// Returns the reference that holds the branch head: the local branch of a local
    /// repository, or the remote-tracking branch of a cache clone.
    fn branch_reference_name(&self) -> String {
        match self.origin {
            Origin::Local => format!("refs/heads/{}", self.branch),
            Origin::Cache { .. } => format!("refs/remotes/{REMOTE_NAME}/{}", self.branch),
        }
    }

    fn branch_head(&self) -> Result<Oid, SourceError> {
        let reference = self
            .repository
            .find_reference(&self.branch_reference_name())
            .map_err(|_| self.branch_missing())?;

        let commit = reference
            .peel_to_commit()
            .map_err(|source| SourceError::ReadFailed {
                url: self.display_url.clone(),
                object: format!("the head of branch {:?}", self.branch),
                source,
            })?;
        Ok(commit.id())
    }

    fn branch_missing(&self) -> SourceError {
        SourceError::BranchMissing {
            url: self.display_url.clone(),
            branch: self.branch.clone(),
        }
    }

    fn find_commit(&self, commit: Oid) -> Result<git2::Commit<'_>, SourceError> {
        self.repository
            .find_commit(commit)
            .map_err(|source| SourceError::CommitNotFound {
                url: self.display_url.clone(),
                commit: commit.to_string(),
                source,
            })
    }

    fn commit_tree(&self, commit: Oid) -> Result<Tree<'_>, SourceError> {
        self.find_commit(commit)?
            .tree()
            .map_err(|source| SourceError::ReadFailed {
                url: self.display_url.clone(),
                object: format!("the tree of commit {commit}"),
                source,
            })
    }

    fn subtree(&self, root: &Tree<'_>, commit: Oid, prefix: &str) -> Result<Tree<'_>, SourceError> {
        let missing = || SourceError::DirectoryMissing {
            url: self.display_url.clone(),
            commit,
            prefix: prefix.to_owned(),
        };

        let entry = root.get_path(Path::new(prefix)).map_err(|_| missing())?;
        if entry.kind() != Some(ObjectType::Tree) {
            return Err(missing());
        }

        self.repository
            .find_tree(entry.id())
            .map_err(|source| SourceError::ReadFailed {
                url: self.display_url.clone(),
                object: format!("directory {prefix:?} at commit {commit}"),
                source,
            })
    }

    /// Appends the files of `tree` and its subdirectories to `files`, with paths starting
    /// at `directory_path`.
    fn collect_files(
        &self,
        tree: &Tree<'_>,
        commit: Oid,
        directory_path: &str,
        files: &mut Vec<RepoFile>,
    ) -> Result<(), SourceError> {
        for entry in tree.iter() {
            let name = String::from_utf8_lossy(entry.name_bytes());
            let path = if directory_path.is_empty() {
                name.to_string()
            } else {
                format!("{directory_path}/{name}")
            };

            if entry.name().is_err() {
                return Err(SourceError::NonUtf8Path {
                    url: self.display_url.clone(),
                    commit,
                    path,
                });
            }

            let read_failed = |source| SourceError::ReadFailed {
                url: self.display_url.clone(),
                object: format!("{path:?} at commit {commit}"),
                source,
            };

            match entry.kind() {
                Some(ObjectType::Tree) => {
                    let subtree = self.repository.find_tree(entry.id()).map_err(read_failed)?;
                    self.collect_files(&subtree, commit, &path, files)?;
                }
                Some(ObjectType::Blob) if entry.filemode() == SYMLINK_MODE => {
                    warn!(url = %self.display_url, %commit, %path, "skipping symbolic link");
                }
                Some(ObjectType::Blob) => {
                    let blob = self.repository.find_blob(entry.id()).map_err(read_failed)?;
                    files.push(RepoFile {
                        path,
                        content: blob.content().to_vec(),
                    });
                }
                _ => {
                    warn!(url = %self.display_url, %commit, %path, "skipping submodule");
                }
            }
        }

        Ok(())
    }
}

fn validate_branch_name(display_url: &str, branch: &str) -> Result<(), SourceError> {
    let invalid = |source| SourceError::InvalidBranchName {
        url: display_url.to_owned(),
        branch: branch.to_owned(),
        source,
    };

    // The branch becomes part of a fetch refspec, where a leading `+`, a `*` pattern or a
    // `:` would change its meaning, so these are rejected explicitly.
    if branch.starts_with('+') || branch.contains('*') || branch.contains(':') {
        let message = "a branch name must not start with '+' or contain '*' or ':'";
        return Err(invalid(git2::Error::from_str(message)));
    }

    match Reference::is_valid_name(&format!("refs/heads/{branch}")) {
        true => Ok(()),
        false => Err(invalid(git2::Error::from_str(
            "not a valid git reference name",
        ))),
    }
}
