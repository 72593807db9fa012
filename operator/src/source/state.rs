//! The state store: the last applied commit per repository URL and branch, one small JSON
//! file each in the state directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use git2::Oid;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::error::SourceError;
use super::git::RepositorySettings;
use super::names::{redact_url, state_file_name};

/// Number of hexadecimal digits of a SHA-1 commit id.
const COMMIT_ID_LENGTH: usize = 40;

/// Content of a state file.
#[derive(Debug, Serialize, Deserialize)]
struct AppliedCommitRecord {
    /// Repository URL without user information, as a check that the file belongs to it.
    url: String,
    branch: String,
    /// Full hexadecimal id of the last applied commit.
    commit: String,
    /// Time at which the commit was recorded, for operators reading the file.
    recorded_at: DateTime<Utc>,
}

/// Store of the last applied commit of each repository URL and branch.
///
/// The key is the configured URL without its user information, plus the branch. A changed
/// URL or branch therefore starts without a last applied commit, and its first head is
/// applied without the history check.
#[derive(Clone, Debug)]
pub struct StateStore {
    state_dir: PathBuf,
}

impl StateStore {
    /// Creates a store in `state_dir`. The directory is created on the first write.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            state_dir: state_dir.to_owned(),
        }
    }

    /// Returns the path of the state file of the repository and branch in `settings`.
    pub fn state_file(&self, settings: &RepositorySettings) -> PathBuf {
        self.state_dir
            .join(state_file_name(&settings.url, &settings.branch))
    }

    /// Reads the last applied commit, or `None` if none was recorded yet.
    pub fn last_applied(&self, settings: &RepositorySettings) -> Result<Option<Oid>, SourceError> {
        let path = self.state_file(settings);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                let reason = format!("it is not valid UTF-8: {error}");
                return Err(SourceError::StateCorrupt { path, reason });
            }
            Err(source) => {
                return Err(SourceError::StateIo {
                    operation: "read state file",
                    path,
                    source,
                });
            }
        };

        let corrupt = |reason: String| SourceError::StateCorrupt {
            path: path.clone(),
            reason,
        };

        let record: AppliedCommitRecord = serde_json::from_str(&text)
            .map_err(|error| corrupt(format!("it is not a valid state record: {error}")))?;

        let expected_url = redact_url(&settings.url);
        if record.url != expected_url || record.branch != settings.branch {
            return Err(corrupt(format!(
                "it records branch {:?} of {}, but belongs to branch {:?} of {}",
                record.branch, record.url, settings.branch, expected_url
            )));
        }

        let commit = parse_commit_id(&record.commit).ok_or_else(|| {
            corrupt(format!(
                "commit {:?} is not a {COMMIT_ID_LENGTH}-digit hexadecimal commit id",
                record.commit
            ))
        })?;
        Ok(Some(commit))
    }

    /// Records `commit` as the last applied commit, replacing the file atomically.
    ///
    /// The record is written to a temporary file in the state directory, which is flushed
    /// to disk and then renamed over the state file, and the directory is flushed last. A
    /// crash at any point leaves either the old or the new record, never a partial one.
    pub fn record_applied(
        &self,
        settings: &RepositorySettings,
        commit: Oid,
    ) -> Result<(), SourceError> {
        let path = self.state_file(settings);
        let record = AppliedCommitRecord {
            url: redact_url(&settings.url),
            branch: settings.branch.clone(),
            commit: commit.to_string(),
            recorded_at: Utc::now(),
        };

        let mut text =
            serde_json::to_string_pretty(&record).map_err(|error| SourceError::StateCorrupt {
                path: path.clone(),
                reason: format!("the record cannot be serialised: {error}"),
            })?;
        text.push('\n');

        fs::create_dir_all(&self.state_dir).map_err(|source| SourceError::StateIo {
            operation: "create state directory",
            path: self.state_dir.clone(),
            source,
        })?;

        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        let temporary = self
            .state_dir
            .join(format!(".{file_name}.{}.tmp", std::process::id()));

        if let Err(error) = write_and_sync(&temporary, text.as_bytes()) {
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }

        if let Err(source) = fs::rename(&temporary, &path) {
            let _ = fs::remove_file(&temporary);
            return Err(SourceError::StateIo {
                operation: "replace state file",
                path,
                source,
            });
        }
        sync_directory(&self.state_dir)?;

        info!(url = %record.url, branch = %record.branch, %commit, "recorded last applied commit");
        Ok(())
    }

    /// Forgets the last applied commit, so the next head is applied without the history
    /// check. Forgetting a commit that was never recorded succeeds.
    pub fn reset(&self, settings: &RepositorySettings) -> Result<(), SourceError> {
        let path = self.state_file(settings);

        match fs::remove_file(&path) {
            Ok(()) => sync_directory(&self.state_dir)?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(SourceError::StateIo {
                    operation: "delete state file",
                    path,
                    source,
                });
            }
        }

        info!(
            url = %redact_url(&settings.url), branch = %settings.branch, path = %path.display(),
            "forgot last applied commit"
        );
        Ok(())
    }
}

/// Parses a full SHA-1 commit id. `Oid::from_str` would accept and zero-pad a shorter one.
fn parse_commit_id(text: &str) -> Option<Oid> {
    let valid = text.len() == COMMIT_ID_LENGTH && text.chars().all(|c| c.is_ascii_hexdigit());
    if !valid {
        return None;
    }
    Oid::from_str(text).ok()
}

fn write_and_sync(path: &Path, content: &[u8]) -> Result<(), SourceError> {
    let io_error = |operation, source| SourceError::StateIo {
        operation,
        path: path.to_owned(),
        source,
    };

    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|source| io_error("create temporary state file", source))?;

    file.write_all(content)
        .map_err(|source| io_error("write temporary state file", source))?;
    file.sync_all()
        .map_err(|source| io_error("flush temporary state file", source))
}

/// Flushes a directory, so that a rename or removal in it survives a crash.
fn sync_directory(path: &Path) -> Result<(), SourceError> {
    let io_error = |source| SourceError::StateIo {
        operation: "flush state directory",
        path: path.to_owned(),
        source,
    };

    File::open(path)
        .map_err(io_error)?
        .sync_all()
        .map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_commit_id_requires_full_length() {
        let full = "0123456789abcdef0123456789abcdef01234567";

        assert_eq!(
            parse_commit_id(full).map(|oid| oid.to_string()),
            Some(full.to_owned())
        );
        assert_eq!(parse_commit_id("0123456"), None);
        assert_eq!(parse_commit_id(&format!("{full}0")), None);
        assert_eq!(
            parse_commit_id("g123456789abcdef0123456789abcdef01234567"),
            None
        );
    }
}
