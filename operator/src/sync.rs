//! One reconcile of the git repository into AD: fetch, check history, parse, snapshot, plan,
//! apply, record.
//!
//! The last applied commit is recorded only when every action succeeded, so the history
//! check always compares against a commit whose state AD fully holds. Failed actions need no
//! bookkeeping of their own: the next run plans again from what AD then holds.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use serde::Serialize;
use tracing::{Instrument, error, info, info_span, warn};

use crate::authorization::{self, AuthorizationError, CommitProblem};
use crate::calendar::{Calendar, ClosingDays};
use crate::config::Config;
use crate::credentials::{Credentials, CredentialsSink, generate_password};
use crate::desired::{self, DesiredState};
use crate::directory::{Directory, DirectoryError};
use crate::model::{Action, DirectorySnapshot, UserKey};
use crate::notice;
use crate::plan::{self, AccountPlan, Plan};
use crate::resources::SupplierUserSpec;
use crate::source::{GitSource, SourceError, StateStore};

/// Choices an operator makes for one run.
#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    /// A head commit the operator accepts although it does not descend from the last applied one.
    pub accept_rewritten_history: Option<String>,
    /// Suppliers for which the mass-deletion guard is lifted.
    pub allow_mass_deletion: Vec<String>,
}

/// A reconcile that could not start or could not read what it needs.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The repository, its history or the state file.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The directory could not be read.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The commit history could not be checked.
    #[error(transparent)]
    Authorization(#[from] AuthorizationError),
    /// A commit that changed the policy or files outside any supplier's folder is not
    /// authorised, so no supplier's state can be trusted.
    #[error(
        "nothing was applied, because commits that only a reviewer may make are not signed by \
         one:\n{}\nremove these commits from the branch (a reviewer rewrites it), then run \
         adgang sync --accept-rewritten-history <new head>",
        .problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
    )]
    Unauthorised { problems: Vec<CommitProblem> },
}

/// The commit a run read.
#[derive(Clone, Debug, Serialize)]
pub struct CommitSummary {
    pub id: String,
    pub summary: String,
}

/// One action that failed.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<UserKey>,
    pub dn: String,
    pub action: String,
    pub error: String,
}

/// Plan and outcome of one run.
#[derive(Clone, Debug, Serialize)]
pub struct SyncReport {
    pub commit: CommitSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<String>,
    pub plan: Plan,
    pub file_errors: Vec<desired::FileError>,
    /// Commits whose signatures do not allow their changes; their suppliers stay as last applied.
    pub unauthorised: Vec<CommitProblem>,
    /// Changes applied although they reached the branch after their notice deadline. A
    /// reviewer's merge accepts them, so they are applied and only recorded here.
    pub late_merges: Vec<String>,
    /// Actions that succeeded, when the run applied the plan.
    pub applied: usize,
    pub failures: Vec<Failure>,
    /// True when the head was recorded as the last applied commit.
    pub recorded: bool,
}

impl SyncReport {
    /// Returns true when something declared was not applied: a failed action, an invalid
    /// file, or a finding that blocks a change.
    pub fn has_problems(&self) -> bool {
        !self.failures.is_empty()
            || !self.file_errors.is_empty()
            || !self.unauthorised.is_empty()
            || self.plan.findings.iter().any(|f| {
                use plan::Finding::*;
                matches!(
                    f,
                    UserFrozen { .. }
                        | SupplierFrozen { .. }
                        | UsernameChangeRejected { .. }
                        | UsernameTaken { .. }
                        | GroupNotFound { .. }
                        | DuplicateLink { .. }
                        | MassDeletionBlocked { .. }
                )
            })
    }
}

/// Everything read before planning, kept so the plan can be shown or applied.
pub struct Prepared {
    pub head: git2::Oid,
    pub commit: CommitSummary,
    pub last_applied: Option<git2::Oid>,
    pub desired: DesiredState,
    pub unauthorised: Vec<CommitProblem>,
    pub late_merges: Vec<String>,
    pub plan: Plan,
    /// Snapshot of AD that the plan was made from.
    pub snapshot: DirectorySnapshot,
}

/// Reads the desired state at a commit.
pub fn desired_at(source: &GitSource, commit: git2::Oid) -> Result<DesiredState, SourceError> {
    Ok(read_at(source, commit)?.0)
}

/// Reads the desired state at a commit and the paths of the files under `suppliers/`.
fn read_at(
    source: &GitSource,
    commit: git2::Oid,
) -> Result<(DesiredState, BTreeSet<String>), SourceError> {
    let files = source.read_files(commit, &format!("{}/", desired::SUPPLIERS_DIR))?;
    let desired = desired::from_files(
        files
            .iter()
            .map(|f| (f.path.as_str(), f.content.as_slice())),
    );
    let paths = files.into_iter().map(|f| f.path).collect();
    Ok((desired, paths))
}

/// The desired state at the fetched head, after the history and signature checks.
pub struct Verified {
    pub head: git2::Oid,
    pub commit: CommitSummary,
    /// Day the head was committed, in the configured time zone.
    pub merged_on: NaiveDate,
    pub last_applied: Option<git2::Oid>,
    /// The desired state at the head, with each blocked supplier as last applied.
    pub desired: DesiredState,
    /// The desired state at the last applied commit, when that differs from the head.
    pub last_state: Option<DesiredState>,
    /// Paths of the files under `suppliers/` at the head, including files that failed to
    /// parse.
    pub paths: BTreeSet<String>,
    /// Commits whose signatures do not allow their changes.
    pub unauthorised: Vec<CommitProblem>,
    /// Suppliers changed by such commits, which stay as last applied.
    pub blocked_suppliers: BTreeSet<String>,
    pub closing_days: ClosingDays,
}

/// Fetches the branch, rejects rewritten history unless the operator accepted the head,
/// reads the desired state and checks who signed each new commit.
pub fn verify(
    config: &Config,
    source: &GitSource,
    state: &StateStore,
    options: &SyncOptions,
) -> Result<Verified, SyncError> {
    let head = source.fetch()?;
    let last_applied = state.last_applied(&config.repository)?;
    let accepted = match &options.accept_rewritten_history {
        Some(text) => Some(source.resolve_commit(text)?),
        None => None,
    };
    source.verify_head(last_applied, head, accepted)?;

    let info = source.commit_info(head)?;
    let commit = CommitSummary {
        id: head.to_string(),
        summary: info.summary.clone(),
    };
    let (mut desired, paths) = read_at(source, head)?;
    let last_state = match last_applied {
        Some(commit) if commit != head => Some(desired_at(source, commit)?),
        _ => None,
    };

    // Suppliers changed by commits their signers may not make stay as last applied.
    let mut unauthorised = Vec::new();
    let mut blocked_suppliers = BTreeSet::new();
    let mut closing_days = ClosingDays::default();
    if config.require_signatures {
        let verdict = authorization::check_range(source.repository(), last_applied, head)?;
        if verdict.blocked_all {
            return Err(SyncError::Unauthorised {
                problems: verdict.problems,
            });
        }
        for supplier in &verdict.blocked_suppliers {
            let kept = last_state
                .as_ref()
                .and_then(|s| s.suppliers.get(supplier))
                .cloned();
            warn!(
                supplier,
                "keeping the supplier as last applied: unauthorised commits"
            );
            desired
                .suppliers
                .insert(supplier.clone(), kept.unwrap_or_default());
        }
        unauthorised = verdict.problems;
        blocked_suppliers = verdict.blocked_suppliers;
        closing_days = verdict.head_policy.unwrap_or_default().closing_days;
    }
    let merged_on = info
        .committed_at
        .with_timezone(&config.time_zone)
        .date_naive();

    Ok(Verified {
        head,
        commit,
        merged_on,
        last_applied,
        desired,
        last_state,
        paths,
        unauthorised,
        blocked_suppliers,
        closing_days,
    })
}

/// Fetches, checks history, reads the desired state and AD, and computes the plan.
pub async fn prepare<D: Directory>(
    config: &Config,
    source: &GitSource,
    state: &StateStore,
    directory: &D,
    now: DateTime<Utc>,
    options: &SyncOptions,
) -> Result<Prepared, SyncError> {
    let Verified {
        head,
        commit,
        merged_on,
        last_applied,
        desired,
        last_state,
        unauthorised,
        closing_days,
        ..
    } = verify(config, source, state, options)?;
    let late_merges = match &last_state {
        Some(last) => late_changes(last, &desired, &Calendar::new(closing_days), merged_on),
        None => Vec::new(),
    };

    // The specs as last applied tell drift (a hand edit in AD) from an edited file.
    let previous = match (&last_state, last_applied) {
        (Some(state), _) => Some(specs_by_key(state)),
        (None, Some(_)) => Some(specs_by_key(&desired)),
        (None, None) => None,
    };

    let snapshot = read_snapshot(directory, &desired).await?;

    let settings = config.plan_settings(options.allow_mass_deletion.iter().cloned());
    let plan = plan::plan(&desired, &snapshot, previous.as_ref(), now, &settings);
    Ok(Prepared {
        head,
        commit,
        last_applied,
        desired,
        unauthorised,
        late_merges,
        plan,
        snapshot,
    })
}

/// Reads what the plan needs from AD: the managed base, the groups that `desired` allows,
/// and which usernames that its new users may get are taken. The usernames are read only
/// when some user has no account yet.
pub async fn read_snapshot<D: Directory>(
    directory: &D,
    desired: &DesiredState,
) -> Result<DirectorySnapshot, DirectoryError> {
    let groups = desired.managed_groups();
    let mut snapshot = directory.snapshot(&groups, &BTreeSet::new()).await?;
    let linked: BTreeSet<UserKey> = snapshot
        .accounts
        .iter()
        .filter_map(|a| a.link.clone())
        .collect();
    let candidates = plan::username_candidates(desired, &linked);
    if !candidates.is_empty() {
        snapshot.taken_usernames = directory.taken_usernames(&candidates).await?;
    }
    Ok(snapshot)
}

/// Describes each change between two states that missed its notice deadline, judged on the
/// day the head was committed.
fn late_changes(
    last: &DesiredState,
    desired: &DesiredState,
    calendar: &Calendar,
    merged_on: NaiveDate,
) -> Vec<String> {
    let mut late = Vec::new();
    for (name, supplier) in &desired.suppliers {
        let Some(spec) = &supplier.spec else { continue };
        let before = last.suppliers.get(name);
        for user in supplier.users.values() {
            let old = before
                .and_then(|s| s.users.get(&user.key.name))
                .map(|u| &u.spec);
            if old == Some(&user.spec) {
                continue;
            }
            let Some(change) = notice::classify(old, Some(&user.spec)) else {
                continue;
            };
            for violation in notice::check(change, spec, calendar, merged_on) {
                if violation.kind == notice::ViolationKind::LateSubmission {
                    late.push(format!(
                        "{}: merged {merged_on}: {}",
                        user.key, violation.message
                    ));
                }
            }
        }
    }
    late
}

fn specs_by_key(state: &DesiredState) -> BTreeMap<UserKey, SupplierUserSpec> {
    state
        .users()
        .map(|u| (u.key.clone(), u.spec.clone()))
        .collect()
}

/// Applies a prepared plan and records the head when everything succeeded.
pub async fn apply<D: Directory>(
    config: &Config,
    state: &StateStore,
    directory: &D,
    sink: &dyn CredentialsSink,
    prepared: Prepared,
) -> Result<SyncReport, SyncError> {
    let Prepared {
        head,
        commit,
        last_applied,
        desired,
        unauthorised,
        late_merges,
        plan,
        ..
    } = prepared;
    let (applied, failures) =
        apply_plan(directory, sink, &plan, config.directory.connections).await;

    // Unauthorised commits stay in the checked range until they are removed from the branch.
    let recorded = failures.is_empty() && unauthorised.is_empty();
    if recorded {
        state.record_applied(&config.repository, head)?;
    } else {
        warn!(failures = failures.len(), commit = %head, "not recording the commit as applied");
    }

    Ok(SyncReport {
        commit,
        last_applied: last_applied.map(|c| c.to_string()),
        plan,
        file_errors: desired.errors,
        unauthorised,
        late_merges,
        applied,
        failures,
        recorded,
    })
}

/// Applies the plan: OUs first, then each account's actions in order, accounts concurrently.
/// Returns the count of actions that succeeded and the failures. A failed action stops the
/// rest of that account's actions, so an account is never enabled after a failed step.
pub async fn apply_plan<D: Directory>(
    directory: &D,
    sink: &dyn CredentialsSink,
    plan: &Plan,
    concurrency: usize,
) -> (usize, Vec<Failure>) {
    let mut applied = 0;
    let mut failures = Vec::new();
    let mut failed_suppliers = BTreeSet::new();

    for action in &plan.organizational_units {
        match directory.apply(action).await {
            Ok(()) => {
                info!(dn = action.dn(), "created organisational unit");
                applied += 1;
            }
            Err(e) => {
                if let Action::CreateOrganizationalUnit { supplier, .. } = action {
                    failed_suppliers.insert(supplier.clone());
                }
                failures.push(failure(action, &e.to_string()));
            }
        }
    }

    // The futures are built before the stream: with the closure inside the stream, the
    // compiler cannot show that the future is `Send`, which the controller's runtime needs.
    let tasks: Vec<_> = plan
        .accounts
        .iter()
        .map(|account| {
            let skip = failed_suppliers.contains(&account.key.supplier);
            let span =
                info_span!("account", supplier = %account.key.supplier, user = %account.key.name);
            async move {
                if skip {
                    return (0, vec![skipped(account)]);
                }
                apply_account(directory, sink, account).await
            }
            .instrument(span)
        })
        .collect();
    let results = futures::stream::iter(tasks)
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;

    for (count, account_failures) in results {
        applied += count;
        failures.extend(account_failures);
    }
    (applied, failures)
}

fn skipped(account: &AccountPlan) -> Failure {
    Failure {
        key: Some(account.key.clone()),
        dn: account
            .actions
            .first()
            .map(|a| a.dn().to_owned())
            .unwrap_or_default(),
        action: "all".to_owned(),
        error: "skipped because the supplier's organisational unit could not be created".to_owned(),
    }
}

async fn apply_account<D: Directory>(
    directory: &D,
    sink: &dyn CredentialsSink,
    account: &AccountPlan,
) -> (usize, Vec<Failure>) {
    let mut applied = 0;
    for action in &account.actions {
        let result = match action {
            Action::SetInitialPassword {
                key,
                dn,
                username,
                display_name,
            } => set_initial_password(directory, sink, key, dn, username, display_name).await,
            _ => directory.apply(action).await.map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => {
                info!(
                    action = action_name(action),
                    dn = action.dn(),
                    drift = account.drift,
                    "applied"
                );
                applied += 1;
            }
            Err(message) => {
                error!(action = action_name(action), dn = action.dn(), error = %message, "action failed; skipping the rest of this account");
                return (applied, vec![failure(action, &message)]);
            }
        }
    }
    (applied, Vec::new())
}

/// Checks that the password can be delivered, sets a new random password, delivers it, and
/// only then marks it delivered. A failed check changes nothing in AD. A failure at a later
/// step leaves the account marked pending, so the next run sets a new password.
async fn set_initial_password<D: Directory>(
    directory: &D,
    sink: &dyn CredentialsSink,
    key: &UserKey,
    dn: &str,
    username: &str,
    display_name: &str,
) -> Result<(), String> {
    let password = generate_password();
    let credentials = Credentials {
        key,
        username,
        display_name,
        password: &password,
    };
    sink.check(&credentials).map_err(|e| e.to_string())?;
    directory
        .set_password(dn, &password)
        .await
        .map_err(|e| e.to_string())?;
    sink.deliver(&credentials)
        .await
        .map_err(|e| e.to_string())?;
    directory
        .mark_credentials_delivered(dn)
        .await
        .map_err(|e| e.to_string())
}

fn failure(action: &Action, message: &str) -> Failure {
    Failure {
        key: action.key().cloned(),
        dn: action.dn().to_owned(),
        action: action_name(action).to_owned(),
        error: message.to_owned(),
    }
}

/// Returns the short name of an action, as used in logs and output.
pub fn action_name(action: &Action) -> &'static str {
    match action {
        Action::CreateOrganizationalUnit { .. } => "create-ou",
        Action::Create { .. } => "create",
        Action::SetInitialPassword { .. } => "set-password",
        Action::UpdateAttributes { .. } => "update-attributes",
        Action::SetExpiry { .. } => "set-expiry",
        Action::AddToGroup { .. } => "add-to-group",
        Action::RemoveFromGroup { .. } => "remove-from-group",
        Action::Enable { .. } => "enable",
        Action::Disable { .. } => "disable",
        Action::Delete { .. } => "delete",
    }
}
