//! The git source: fetching the repository, reading a commit's tree, and remembering the last applied commit.
//!
//! [`GitSource`] opens a local repository in place, or keeps a bare clone of a remote URL
//! in a cache directory and fetches the configured branch into it. Files are read from a
//! commit's tree in the object database, never from a work tree, so uncommitted edits in a
//! local checkout cannot reach Active Directory.
//!
//! # History check
//!
//! Each applied commit is recorded. A new head must descend from the last applied commit,
//! so that a rewritten or force-pushed branch cannot silently undo reviewed changes. When it
//! does not, [`GitSource::check_fast_forward`] returns an error and nothing is applied.
//! An operator who has checked the branch overrides this with
//! `adgang sync --accept-rewritten-history <COMMIT>`, which [`GitSource::verify_head`]
//! honours only for exactly that head.
//!
//! # Where the last applied commit is stored
//!
//! [`StateStore`] writes one small JSON file per repository URL and branch (the URL, the
//! branch, the commit and the time it was recorded) into the configured state directory.
//! It is stored there for these reasons:
//!
//! - The directory is local, next to the clone cache, so reading it needs no network.
//! - With a persistent volume, the file survives restarts and rescheduling of the pod.
//! - The repository cannot contain it, because Adgang only reads from git and never pushes.
//! - Active Directory cannot contain it, because Adgang must not modify objects it did not
//!   create.
//!
//! Without a persistent volume the file is lost on restart. The first sync afterwards then
//! applies the current head without the history check, as on a first run.

mod cache;
mod error;
mod git;
mod names;
mod state;

pub use error::SourceError;
pub use git::{CommitInfo, GitSource, RepoFile, RepositorySettings};
pub use state::StateStore;
