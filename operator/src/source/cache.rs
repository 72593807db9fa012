//! The cache of remote repositories: one bare clone per URL, and fetching a branch into it.

use std::fs;
use std::io;
use std::path::Path;

use git2::{AutotagOption, FetchOptions, Repository};
use tracing::{debug, info, warn};

use super::error::SourceError;
use super::git::RepositorySettings;
use super::names::redact_url;

/// Name of the remote in a cache clone.
pub(crate) const REMOTE_NAME: &str = "origin";

/// Opens the cache clone at `path`, or clones the remote there if it does not exist yet.
pub(crate) fn open_or_clone_cache(
    settings: &RepositorySettings,
    display_url: &str,
    path: &Path,
) -> Result<Repository, SourceError> {
    if path.exists() {
        return open_cache(settings, display_url, path);
    }

    let cache_error = |source| SourceError::CacheDirectory {
        url: display_url.to_owned(),
        path: settings.cache_dir.clone(),
        source,
    };
    fs::create_dir_all(&settings.cache_dir).map_err(cache_error)?;

    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = settings
        .cache_dir
        .join(format!(".clone-{file_name}-{}", std::process::id()));
    remove_directory_if_present(&temporary).map_err(cache_error)?;

    info!(url = %display_url, path = %path.display(), "cloning repository into the cache");
    if let Err(error) = clone_bare(settings, display_url, &temporary) {
        if let Err(cleanup) = remove_directory_if_present(&temporary) {
            warn!(path = %temporary.display(), error = %cleanup, "failed to remove partial clone");
        }
        return Err(error);
    }

    if let Err(error) = fs::rename(&temporary, path) {
        remove_directory_if_present(&temporary).map_err(cache_error)?;
        // Another process may have renamed its own clone into place first, and that clone
        // is then opened instead.
        if !path.exists() {
            return Err(cache_error(error));
        }
    }
    info!(url = %display_url, path = %path.display(), "cloned repository into the cache");

    open_cache(settings, display_url, path)
}

/// Creates a bare repository at `path` with the remote and fetches the branch into it.
fn clone_bare(
    settings: &RepositorySettings,
    display_url: &str,
    path: &Path,
) -> Result<(), SourceError> {
    let clone_failed = |source| SourceError::CloneFailed {
        url: display_url.to_owned(),
        path: path.to_owned(),
        source,
    };

    let repository = Repository::init_bare(path).map_err(clone_failed)?;
    repository
        .remote(REMOTE_NAME, &settings.url)
        .map_err(clone_failed)?;

    // The first fetch is the clone, so its failure is reported as one. A missing branch
    // keeps its own error.
    fetch_branch(&repository, display_url, &settings.branch).map_err(|error| match error {
        SourceError::FetchFailed { source, .. } => clone_failed(source),
        other => other,
    })
}

fn open_cache(
    settings: &RepositorySettings,
    display_url: &str,
    path: &Path,
) -> Result<Repository, SourceError> {
    let damaged = |reason: String| SourceError::CacheDamaged {
        url: display_url.to_owned(),
        path: path.to_owned(),
        reason,
    };

    let repository =
        Repository::open_bare(path).map_err(|error| damaged(format!("cannot open it: {error}")))?;

    let remote_url = repository
        .find_remote(REMOTE_NAME)
        .map_err(|error| damaged(format!("remote {REMOTE_NAME:?} is missing: {error}")))?
        .url()
        .map(str::to_owned)
        .map_err(|error| damaged(format!("its remote URL cannot be read: {error}")))?;

    // The directory name contains the URL without user information, so a changed token
    // reaches the same clone, and the stored URL is updated to the configured one.
    match remote_url {
        stored if stored == settings.url => {}
        stored if redact_url(&stored) == display_url => {
            repository
                .remote_set_url(REMOTE_NAME, &settings.url)
                .map_err(|error| damaged(format!("cannot update the remote URL: {error}")))?;
        }
        stored => {
            return Err(damaged(format!(
                "it is a clone of {}, not of the configured URL",
                redact_url(&stored)
            )));
        }
    }

    Ok(repository)
}

/// Fetches `branch` into `refs/remotes/origin/<branch>`, allowing non-fast-forward updates.
///
/// The remote-tracking branch follows a force-push, because [`GitSource::check_fast_forward`]
/// rather than the fetch decides whether a rewritten history is applied. Objects of the old
/// history stay in the clone, since libgit2 does not prune unreachable objects, so the
/// check can still tell a rewrite from an unknown commit.
pub(crate) fn fetch_branch(
    repository: &Repository,
    display_url: &str,
    branch: &str,
) -> Result<(), SourceError> {
    let fetch_failed = |source| SourceError::FetchFailed {
        url: display_url.to_owned(),
        branch: branch.to_owned(),
        source,
    };

    let mut remote = repository.find_remote(REMOTE_NAME).map_err(fetch_failed)?;
    let refspec = format!("+refs/heads/{branch}:refs/remotes/{REMOTE_NAME}/{branch}");

    let mut options = FetchOptions::new();
    options.download_tags(AutotagOption::None);
    // NOTE: no credentials callback is set, so an https or ssh remote that requires
    // authentication fails with libgit2's authentication error. Only unauthenticated
    // remotes, `file://` URLs and local paths work.

    debug!(url = %display_url, %branch, "fetching branch");
    remote
        .fetch(&[refspec.as_str()], Some(&mut options), None)
        .map_err(fetch_failed)?;

    let branch_reference = format!("refs/heads/{branch}");
    let advertised = remote
        .list()
        .map_err(fetch_failed)?
        .iter()
        .any(|head| head.name() == branch_reference);

    if !advertised {
        return Err(SourceError::BranchMissing {
            url: display_url.to_owned(),
            branch: branch.to_owned(),
        });
    }

    let stats = remote.stats();
    debug!(
        url = %display_url, %branch,
        received_objects = stats.received_objects(), received_bytes = stats.received_bytes(),
        "fetched branch"
    );
    Ok(())
}

fn remove_directory_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
