//! Errors of the git source and the state store.

use std::io;
use std::path::PathBuf;

use git2::Oid;

/// Failure to open, fetch or read the repository, to check the history of the branch, or to
/// read or write the last applied commit.
///
/// The `url` fields have their user information removed, so a token in an https URL is not
/// shown. A libgit2 message in `source` is passed through unchanged.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The local path does not contain a git repository.
    #[error(
        "no git repository found at {path}: {source}. \
         Check the repository path in the configuration"
    )]
    RepositoryNotFound {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },

    /// The branch name is not a valid git reference name.
    #[error(
        "invalid branch name {branch:?} for repository {url}: {source}. \
         Configure a branch name such as \"main\""
    )]
    InvalidBranchName {
        url: String,
        branch: String,
        #[source]
        source: git2::Error,
    },

    /// The branch does not exist in the repository, or the remote no longer advertises it.
    #[error(
        "branch {branch:?} not found in repository {url}. \
         Check the branch name in the configuration and that the branch was pushed"
    )]
    BranchMissing { url: String, branch: String },

    /// The cache directory could not be created or prepared.
    #[error(
        "failed to prepare the cache directory {path} for repository {url}: {source}. \
         Check that the directory is writable"
    )]
    CacheDirectory {
        url: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The cache directory of a remote exists but is not a usable bare clone of it.
    #[error(
        "the cached clone {path} of repository {url} is damaged: {reason}. \
         Delete the directory, and the next run clones the repository again"
    )]
    CacheDamaged {
        url: String,
        path: PathBuf,
        reason: String,
    },

    /// The first clone of a remote into the cache failed.
    #[error(
        "failed to clone repository {url} into {path}: {source}. \
         Check the URL, that the remote is reachable, and its credentials"
    )]
    CloneFailed {
        url: String,
        path: PathBuf,
        #[source]
        source: git2::Error,
    },

    /// Fetching the branch from the remote failed.
    #[error(
        "failed to fetch branch {branch:?} from repository {url}: {source}. \
         Check that the remote is reachable and its credentials"
    )]
    FetchFailed {
        url: String,
        branch: String,
        #[source]
        source: git2::Error,
    },

    /// The commit does not exist in the repository, or the object is not a commit.
    #[error(
        "commit {commit} not found in repository {url}: {source}. \
         Fetch the branch again, or check the commit id"
    )]
    CommitNotFound {
        url: String,
        commit: String,
        #[source]
        source: git2::Error,
    },

    /// The directory to read does not exist in the commit's tree.
    #[error(
        "directory {prefix:?} not found at commit {commit} of repository {url}. \
         Check the directory in the configuration and that the commit contains it"
    )]
    DirectoryMissing {
        url: String,
        commit: Oid,
        prefix: String,
    },

    /// A file or directory name in the commit's tree is not valid UTF-8.
    #[error(
        "path {path:?} at commit {commit} of repository {url} is not valid UTF-8. \
         Rename the file in the repository"
    )]
    NonUtf8Path {
        url: String,
        commit: Oid,
        path: String,
    },

    /// Reading an object of the repository failed.
    #[error("failed to read {object} from repository {url}: {source}")]
    ReadFailed {
        url: String,
        object: String,
        #[source]
        source: git2::Error,
    },

    /// The new head does not descend from the last applied commit.
    #[error(
        "the new head {head} of branch {branch:?} in repository {url} is not a descendant \
         of the last applied commit {last_applied}, so the history was rewritten or \
         force-pushed. Nothing was applied. Check the branch, then run \
         `adgang sync --accept-rewritten-history {head}` to apply the new head"
    )]
    HistoryRewritten {
        url: String,
        branch: String,
        last_applied: Oid,
        head: Oid,
    },

    /// The last applied commit is not in the repository, so the new head cannot be checked.
    #[error(
        "the last applied commit {last_applied} of branch {branch:?} is not in repository \
         {url}, so Adgang cannot check that the new head {head} descends from it. The history \
         was probably rewritten, or the repository was replaced. Nothing was applied. Check \
         the branch, then run `adgang sync --accept-rewritten-history {head}` to apply the \
         new head"
    )]
    LastAppliedUnknown {
        url: String,
        branch: String,
        last_applied: Oid,
        head: Oid,
    },

    /// The repository is shallow and lacks the commits needed to check the history.
    #[error(
        "repository {url} is a shallow clone and lacks the history needed to check that the \
         new head {head} of branch {branch:?} descends from the last applied commit \
         {last_applied}. Nothing was applied. Fetch the full history with \
         `git fetch --unshallow`, or check the branch and run \
         `adgang sync --accept-rewritten-history {head}`"
    )]
    ShallowRepository {
        url: String,
        branch: String,
        last_applied: Oid,
        head: Oid,
    },

    /// The operator accepted a rewritten history for a commit that is not the current head.
    #[error(
        "--accept-rewritten-history names commit {accepted}, but the head of branch \
         {branch:?} in repository {url} is now {head}, which is not a descendant of the last \
         applied commit {last_applied}. Nothing was applied. Check the branch again, then \
         run `adgang sync --accept-rewritten-history {head}`"
    )]
    AcceptedHeadMismatch {
        url: String,
        branch: String,
        last_applied: Oid,
        head: Oid,
        accepted: Oid,
    },

    /// The state file exists but cannot be parsed, or belongs to another repository.
    #[error(
        "state file {path} is invalid: {reason}. Fix the file, or delete it. Without the \
         file, the next sync applies the current head without checking that it descends from \
         the last applied commit"
    )]
    StateCorrupt { path: PathBuf, reason: String },

    /// Reading or writing the state file or its directory failed.
    #[error("failed to {operation} {path}: {source}. Check the state directory's permissions")]
    StateIo {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
