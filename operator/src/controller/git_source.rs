//! Git source mode: the git repository becomes `Supplier` and `SupplierUser` objects in the
//! controller's namespace, so that the controller reconciles them into AD.
//!
//! Each run fetches and checks the repository exactly as `adgang sync` does
//! ([`sync::verify`]: rewritten history refused, commit signatures checked, files parsed).
//! It then server-side applies every object with the field manager [`FIELD_MANAGER`], the
//! label [`MANAGED_BY_LABEL`]` = `[`MANAGED_BY`] and annotations naming the commit and the
//! file, and deletes labelled objects whose file is gone. [`decide`] makes those choices
//! without I/O; this file only lists, applies and deletes.
//!
//! The last commit that was fully applied to the cluster is recorded in its own state
//! folder, so the history check of the next run compares against it.

mod decide;
#[cfg(test)]
mod fixtures;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::authorization::CommitProblem;
use crate::config::Config;
use crate::desired::FileError;
use crate::resources::{API_VERSION, Supplier, SupplierUser};
use crate::server::SyncTrigger;
use crate::source::{GitSource, SourceError, StateStore};
use crate::sync::{self, CommitSummary, SyncError, SyncOptions, Verified};

pub use decide::{
    ClusterObject, Decision, DecisionInput, DesiredObject, DesiredSpec, KeepReason, Kept,
    ObjectKind, ObjectRef, decide,
};

/// Field manager of git source mode's server-side apply requests.
pub const FIELD_MANAGER: &str = "adgang-git-source";
/// Label that marks an object as created from the repository. Only such objects are pruned.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "adgang-git-source";
pub use super::COMMIT_ANNOTATION;
/// Annotation with the path of an object's file in the repository.
pub const SOURCE_PATH_ANNOTATION: &str = "adgang.example.org/source-path";

/// A git source run that could not start or could not read what it needs.
#[derive(Debug, thiserror::Error)]
pub enum GitSourceError {
    /// Fetching the repository, the history check or the signature check failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The objects in the namespace could not be listed.
    #[error(
        "failed to list {kind} objects in namespace {namespace}: {source}; check that the CRDs \
         are installed and that the controller's Role allows list"
    )]
    List {
        kind: &'static str,
        namespace: String,
        source: kube::Error,
    },
    /// The last applied commit could not be recorded.
    #[error(transparent)]
    Record(#[from] SourceError),
    /// The blocking git work panicked or was cancelled.
    #[error("the git source task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One apply or delete request that failed.
#[derive(Clone, Debug, Serialize)]
pub struct ApiFailure {
    pub object: ObjectRef,
    /// `apply` or `prune`.
    pub action: &'static str,
    pub error: String,
}

/// Outcome of one git source run.
#[derive(Clone, Debug, Serialize)]
pub struct GitSourceReport {
    pub commit: CommitSummary,
    pub applied: Vec<ObjectRef>,
    pub pruned: Vec<ObjectRef>,
    /// Labelled objects whose file is gone or invalid but that stay, with the reason.
    pub kept: Vec<Kept>,
    /// SupplierUser names that files of several suppliers declare, with those files.
    pub name_conflicts: BTreeMap<String, Vec<String>>,
    pub file_errors: Vec<FileError>,
    pub unauthorised: Vec<CommitProblem>,
    pub failures: Vec<ApiFailure>,
    /// True when the head was recorded as the last commit applied to the cluster.
    pub recorded: bool,
}

impl GitSourceReport {
    /// Returns true when something in the repository did not reach the cluster as declared.
    pub fn has_problems(&self) -> bool {
        !self.kept.is_empty()
            || !self.name_conflicts.is_empty()
            || !self.file_errors.is_empty()
            || !self.unauthorised.is_empty()
            || !self.failures.is_empty()
    }
}

/// Returns the state folder of git source mode, apart from `sync`'s record of the commit
/// applied to AD.
pub fn state_dir(config: &Config) -> PathBuf {
    config.state_dir.join("git-source")
}

/// Fetches and checks the repository, applies its objects to `namespace` and prunes the
/// labelled objects whose file is gone.
pub async fn run(
    config: &Config,
    client: &Client,
    namespace: &str,
    options: &SyncOptions,
) -> Result<GitSourceReport, GitSourceError> {
    let state = StateStore::new(&state_dir(config));
    let suppliers: Api<Supplier> = Api::namespaced(client.clone(), namespace);
    let users: Api<SupplierUser> = Api::namespaced(client.clone(), namespace);
    let mut existing = list_managed(&suppliers, namespace, |s: &Supplier| {
        s.metadata.name.clone().unwrap_or_default()
    })
    .await?;
    existing.extend(
        list_managed(&users, namespace, |u: &SupplierUser| {
            u.spec.supplier.clone()
        })
        .await?,
    );
    seed_state(&state, config, &existing)?;

    let verified = {
        let config = config.clone();
        let state = state.clone();
        let options = options.clone();
        // libgit2 blocks on disk and network I/O.
        tokio::task::spawn_blocking(move || {
            let source = GitSource::open(&config.repository).map_err(SyncError::from)?;
            sync::verify(&config, &source, &state, &options)
        })
        .await??
    };
    let head = verified.head;

    let guard = config
        .plan_settings(options.allow_mass_deletion.iter().cloned())
        .guard;
    let Verified {
        commit,
        desired,
        paths,
        unauthorised,
        blocked_suppliers,
        ..
    } = verified;
    let decision = decide(&DecisionInput {
        desired: &desired,
        paths: &paths,
        blocked_suppliers: &blocked_suppliers,
        existing: &existing,
        guard: &guard,
    });

    let managed: BTreeSet<&ObjectRef> = existing
        .iter()
        .filter(|o| o.managed)
        .map(|o| &o.object)
        .collect();
    let mut failures = Vec::new();
    let mut applied = Vec::new();
    for object in &decision.apply {
        let manifest = match manifest(object, &commit.id) {
            Ok(manifest) => manifest,
            Err(error) => {
                error!(object = %object.object, %error, "failed to serialise the object");
                failures.push(ApiFailure {
                    object: object.object.clone(),
                    action: "apply",
                    error: error.to_string(),
                });
                continue;
            }
        };
        // Force only takes over fields of objects this mode already manages. An object made
        // by hand with the same name keeps its fields, and the conflict is reported.
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = managed.contains(&object.object);
        let name = &object.object.name;
        let result = match object.object.kind {
            ObjectKind::Supplier => suppliers
                .patch(name, &params, &Patch::Apply(&manifest))
                .await
                .map(drop),
            ObjectKind::SupplierUser => users
                .patch(name, &params, &Patch::Apply(&manifest))
                .await
                .map(drop),
        };
        match result {
            Ok(()) => {
                info!(object = %object.object, path = %object.source_path, commit = %commit.id, "applied");
                applied.push(object.object.clone());
            }
            Err(error) => {
                warn!(object = %object.object, %error, "failed to apply");
                failures.push(ApiFailure {
                    object: object.object.clone(),
                    action: "apply",
                    error: error.to_string(),
                });
            }
        }
    }

    let mut pruned = Vec::new();
    for object in &decision.prune {
        let params = DeleteParams {
            preconditions: object.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let name = &object.object.name;
        let result = match object.object.kind {
            ObjectKind::Supplier => suppliers.delete(name, &params).await.map(drop),
            ObjectKind::SupplierUser => users.delete(name, &params).await.map(drop),
        };
        match result {
            Ok(()) => {
                info!(object = %object.object, supplier = %object.supplier, "pruned: its file is gone");
                pruned.push(object.object.clone());
            }
            Err(kube::Error::Api(status)) if status.is_not_found() => {
                pruned.push(object.object.clone());
            }
            Err(error) => {
                warn!(object = %object.object, %error, "failed to prune");
                failures.push(ApiFailure {
                    object: object.object.clone(),
                    action: "prune",
                    error: error.to_string(),
                });
            }
        }
    }

    for kept in &decision.kept {
        warn!(object = %kept.object, supplier = %kept.supplier, reason = ?kept.reason, "kept an object whose file is gone or invalid");
    }

    // Unauthorised commits stay in the checked range until they are removed from the branch.
    let recorded = failures.is_empty() && unauthorised.is_empty();
    if recorded {
        state.record_applied(&config.repository, head)?;
    }

    Ok(GitSourceReport {
        commit,
        applied,
        pruned,
        kept: decision.kept,
        name_conflicts: decision.name_conflicts,
        file_errors: desired.errors,
        unauthorised,
        failures,
        recorded,
    })
}

/// Records the commit that the labelled objects carry as the last applied one when this
/// replica has no record, such as after the lease moved to a replica with an empty state
/// folder. Without it, the first run of a new leader could not detect rewritten history.
/// Objects that carry different commits, left by a run that failed part way, give no record.
fn seed_state(
    state: &StateStore,
    config: &Config,
    existing: &[ClusterObject],
) -> Result<(), GitSourceError> {
    if state.last_applied(&config.repository)?.is_some() {
        return Ok(());
    }
    let commits: BTreeSet<&str> = existing
        .iter()
        .filter(|o| o.managed)
        .filter_map(|o| o.commit.as_deref())
        .collect();
    let Some(&commit) = commits.first() else {
        return Ok(());
    };
    if commits.len() > 1 {
        warn!(commits = ?commits, "no record of the last applied commit, and the labelled objects carry several, so this run cannot detect rewritten history");
        return Ok(());
    }
    match git2::Oid::from_str(commit) {
        Ok(oid) => {
            state.record_applied(&config.repository, oid)?;
            info!(%commit, "took the last applied commit from the labelled objects");
        }
        Err(error) => {
            warn!(%commit, %error, "invalid commit annotation on the labelled objects, so this run cannot detect rewritten history");
        }
    }
    Ok(())
}

/// Runs git source mode until `stop` completes: at once, then after each `interval` and at
/// each `trigger`, but only while `leading` is true. Losing the lease cancels a run in
/// progress, so a replica that does not lead sends no write.
#[allow(clippy::too_many_arguments)]
pub async fn run_loop(
    config: Config,
    client: Client,
    namespace: String,
    options: SyncOptions,
    trigger: SyncTrigger,
    mut leading: watch::Receiver<bool>,
    interval: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    info!(%namespace, interval_seconds = interval.as_secs(), "starting git source mode");
    loop {
        let is_leader = *leading.borrow_and_update();
        if !is_leader {
            tokio::select! {
                () = &mut stop => return,
                changed = leading.wait_for(|l| *l) => if changed.is_err() { return },
            }
        }

        let started = Instant::now();
        tokio::select! {
            () = &mut stop => return,
            _ = leading.wait_for(|l| !*l) => {
                warn!("cancelled the git source run because the lease was lost");
                continue;
            }
            result = run(&config, &client, &namespace, &options) => {
                log_run(&result, started.elapsed());
            }
        }

        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(interval) => {}
            () = trigger.fired() => info!("running git source mode now: a push webhook arrived"),
            _ = leading.wait_for(|l| !*l) => {}
        }
    }
}

/// Logs the outcome of one run, each problem once.
fn log_run(result: &Result<GitSourceReport, GitSourceError>, duration: Duration) {
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            error!(%error, "git source run failed, so nothing was applied");
            return;
        }
    };
    for file_error in &report.file_errors {
        warn!(path = %file_error.path, error = %file_error, "invalid file, so its object is kept as it is");
    }
    for problem in &report.unauthorised {
        warn!(commit = %problem.commit, error = %problem.message, "unauthorised commit, so its supplier is kept as it is");
    }
    for (name, paths) in &report.name_conflicts {
        warn!(name, paths = ?paths, "several suppliers declare this SupplierUser name, so none is applied");
    }
    info!(
        commit = %report.commit.id,
        applied = report.applied.len(),
        pruned = report.pruned.len(),
        kept = report.kept.len(),
        failed = report.failures.len(),
        recorded = report.recorded,
        seconds = duration.as_secs_f64(),
        "git source run finished"
    );
}

/// Lists the objects of one kind that carry the managed-by label.
async fn list_managed<K>(
    api: &Api<K>,
    namespace: &str,
    supplier_of: impl Fn(&K) -> String,
) -> Result<Vec<ClusterObject>, GitSourceError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let kind = match K::kind(&()).as_ref() {
        "Supplier" => ObjectKind::Supplier,
        _ => ObjectKind::SupplierUser,
    };
    let params = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let list = api
        .list(&params)
        .await
        .map_err(|source| GitSourceError::List {
            kind: kind.as_str(),
            namespace: namespace.to_owned(),
            source,
        })?;

    Ok(list
        .items
        .iter()
        .map(|item| {
            let meta = item.meta();
            let label = meta.labels.as_ref().and_then(|l| l.get(MANAGED_BY_LABEL));
            ClusterObject {
                object: ObjectRef::new(kind, meta.name.clone().unwrap_or_default()),
                uid: meta.uid.clone(),
                supplier: supplier_of(item),
                managed: label.map(String::as_str) == Some(MANAGED_BY),
                source_path: meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SOURCE_PATH_ANNOTATION))
                    .cloned(),
                commit: meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(COMMIT_ANNOTATION))
                    .cloned(),
            }
        })
        .collect())
}

/// Returns the apply configuration of one object: the fields this mode owns.
fn manifest(object: &DesiredObject, commit: &str) -> Result<Value, serde_json::Error> {
    let spec = match &object.spec {
        DesiredSpec::Supplier(spec) => serde_json::to_value(spec)?,
        DesiredSpec::SupplierUser(spec) => serde_json::to_value(spec)?,
    };
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": object.object.kind.as_str(),
        "metadata": {
            "name": object.object.name,
            "labels": { MANAGED_BY_LABEL: MANAGED_BY },
            "annotations": {
                COMMIT_ANNOTATION: commit,
                SOURCE_PATH_ANNOTATION: object.source_path,
            },
        },
        "spec": spec,
    }))
}

#[cfg(test)]
mod tests;
