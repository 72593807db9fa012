//! Reading what the overviews and the schedule need from git and AD in one run.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use tracing::warn;

use super::delivery::{Recipient, recipients};
use super::{Overview, build};
use crate::authorization::{POLICY_FILE, parse_policy};
use crate::calendar::{Calendar, ClosingDays};
use crate::config::Config;
use crate::directory::Directory;
use crate::source::{GitSource, StateStore};
use crate::sync::{self, SyncError, SyncOptions};

/// A failure to read what the overview needs.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The repository, its history or AD could not be read.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The repository's policy file could not be read or parsed.
    #[error(
        "failed to read the closing days from {POLICY_FILE} at commit {commit}: {message}; a \
         reviewer must fix the file"
    )]
    Policy { commit: String, message: String },
}

/// The overviews of every supplier and the working-day calendar, read at one moment.
pub struct Collected {
    pub overviews: Vec<Overview>,
    /// Recipient of each supplier's mail, by supplier id.
    pub recipients: BTreeMap<String, Recipient>,
    /// Danish holidays plus the closing days of `policy.yaml` at the head and of the
    /// configuration.
    pub calendar: Calendar,
}

/// Fetches the repository, reads AD, plans without applying, and builds every supplier's
/// overview as of `now`.
pub async fn collect<D: Directory>(
    config: &Config,
    source: &GitSource,
    state: &StateStore,
    directory: &D,
    now: DateTime<Utc>,
) -> Result<Collected, ReportError> {
    let options = SyncOptions::default();
    let prepared = sync::prepare(config, source, state, directory, now, &options).await?;
    let today = now.with_timezone(&config.time_zone).date_naive();
    let overviews = build(
        &prepared.desired,
        &prepared.snapshot,
        &prepared.plan,
        config.time_zone,
        config.language,
        today,
        &prepared.commit.id,
    );

    let mut closing = policy_closing_days(source, prepared.head)?;
    closing
        .fixed
        .extend(config.closing_days.fixed.iter().copied());
    closing
        .dates
        .extend(config.closing_days.dates.iter().copied());
    Ok(Collected {
        overviews,
        recipients: recipients(&prepared.desired),
        calendar: Calendar::new(closing),
    })
}

/// Reads the closing days of `policy.yaml` at `commit`; a repository without the file has
/// none.
fn policy_closing_days(source: &GitSource, commit: git2::Oid) -> Result<ClosingDays, ReportError> {
    let error = |message: String| ReportError::Policy {
        commit: commit.to_string(),
        message,
    };
    let repository = source.repository();
    let tree = repository
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| error(e.message().to_owned()))?;
    let entry = match tree.get_path(Path::new(POLICY_FILE)) {
        Ok(entry) => entry,
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            warn!(%commit, "no {POLICY_FILE} at the head, so the schedule uses no closing days");
            return Ok(ClosingDays::default());
        }
        Err(e) => return Err(error(e.message().to_owned())),
    };
    let blob = repository
        .find_blob(entry.id())
        .map_err(|e| error(e.message().to_owned()))?;
    let text = std::str::from_utf8(blob.content()).map_err(|e| error(e.to_string()))?;
    let policy = parse_policy(text).map_err(error)?;
    Ok(policy.closing_days)
}
