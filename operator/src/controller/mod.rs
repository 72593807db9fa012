//! `adgang controller`: the Kubernetes controller for `Supplier` and `SupplierUser` objects.
//!
//! The controller is a thin layer over the same code as `adgang sync`. For each object it
//! builds the desired state of the object's supplier from the reflector stores
//! ([`desired::from_files`](crate::desired::from_files) checks it), reads AD
//! ([`sync::read_snapshot`](crate::sync::read_snapshot)), computes [`plan::plan`](crate::plan::plan)
//! and applies part of it with [`sync::apply_plan`](crate::sync::apply_plan):
//!
//! - a `SupplierUser` reconcile applies only the actions of that user;
//! - a `Supplier` reconcile creates the supplier's OU and deletes accounts whose object is
//!   gone, under the plan's mass-deletion guard. A user that waits for its OU requests this
//!   reconcile ([`Context::request_supplier_reconcile`]).
//!
//! No reconcile plans before both reflector stores have finished their initial list
//! ([`Context::wait_for_stores`]). A finalizer ([`FINALIZER`]) on each `SupplierUser`
//! deletes its account before the object goes, under the same mass-deletion guard, which
//! [`ALLOW_MASS_DELETION_ANNOTATION`] on the `Supplier` lifts. Status is written by server-side apply with the field manager [`FIELD_MANAGER`], and
//! only when it differs from what the object holds. Watch events pass [`reconcile_trigger`],
//! which ignores status-only changes, so a status write never starts another reconcile.
//!
//! [`run`] takes a `may_write` gate. While it is false, reconciles write nothing (neither AD
//! nor the API server), so a leader election can hold a standby replica back. A reconcile in
//! progress stops at its next `.await` when the gate closes ([`run_while_open`]).
//!
//! [`leader`] elects one replica with a `coordination.k8s.io/v1` Lease and provides that
//! gate. [`git_source`] turns the git repository into `Supplier` and `SupplierUser` objects
//! with server-side apply and prunes the ones whose file is gone. [`readiness`] adds the API
//! server to the checks behind `/readyz`, and [`gauges`] sets the user gauges from AD.

pub mod gauges;
pub mod git_source;
pub mod leader;
pub mod mail_record;
pub mod mail_schedule;
#[cfg(test)]
mod mock_api;
pub mod readiness;
mod reconcile;
pub mod requeue;
pub mod status;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::credentials::Delivery;
use crate::directory::{Directory, DirectoryError};
use crate::plan;
use crate::resources::{Supplier, SupplierUser};
use crate::server::Metrics;

pub use reconcile::{error_policy, reconcile_supplier, reconcile_user};

/// Finalizer on `SupplierUser` objects: the AD account is deleted before the object goes.
pub const FINALIZER: &str = "adgang.example.org/ad-account";

/// Field manager of the controller's status writes and of the reporter of its events.
pub const FIELD_MANAGER: &str = "adgang-controller";

/// Annotation that the git source sets on the objects it applies: the commit they came from.
pub const COMMIT_ANNOTATION: &str = "adgang.example.org/commit";

/// Annotation on a `Supplier` that lifts the mass-deletion guard for its accounts while its
/// value is `"true"`, both for the finalizer and for the deletion of accounts without object.
pub const ALLOW_MASS_DELETION_ANNOTATION: &str = "adgang.example.org/allow-mass-deletion";

/// Namespace watched when neither the configuration nor the pod names one.
pub const DEFAULT_NAMESPACE: &str = "adgang";

/// File that contains the pod's namespace, mounted by Kubernetes in every pod.
pub const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Wait before a reconcile that found the write gate closed tries again.
pub const STANDBY_RETRY: Duration = Duration::from_secs(15);

/// Time between two checks whether the reflector stores have finished their initial list.
const STORE_READY_POLL: Duration = Duration::from_millis(100);

/// First wait after a failed reconcile; it doubles with each failure in a row.
pub const BACKOFF_START: Duration = Duration::from_secs(5);

/// Maximum wait after failed reconciles.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// A reconcile that could not finish; the controller retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// AD could not be read or written.
    #[error("failed to reach the directory: {0}")]
    Directory(#[from] DirectoryError),
    /// A request to the Kubernetes API server failed.
    #[error("failed to {action} {object}: {source}")]
    Kubernetes {
        /// The attempted operation, such as "patch the status of".
        action: &'static str,
        /// `Kind namespace/name` of the object.
        object: String,
        source: kube::Error,
    },
    /// The finalizer helper could not add or remove the finalizer.
    #[error("finalizer {FINALIZER} on {object}: {source}")]
    Finalizer {
        /// `SupplierUser namespace/name`.
        object: String,
        source: Box<kube::runtime::finalizer::Error<ControllerError>>,
    },
    /// An AD write of the plan failed. The status and an event name the action and DN.
    #[error("{object}: {message}")]
    ActionFailed {
        /// `Kind namespace/name` of the object.
        object: String,
        message: String,
    },
    /// The finalizer kept an account because too many objects of its supplier are being
    /// deleted at once. The status and an event name the annotation that lifts the guard.
    #[error("{object}: {message}")]
    MassDeletionBlocked {
        /// `SupplierUser namespace/name`.
        object: String,
        message: String,
    },
    /// A reflector stopped before its store finished the initial list, so the controller is
    /// shutting down.
    #[error("the {kind} reflector stopped before its initial list finished")]
    StoreNotReady {
        /// The kind of the store's objects.
        kind: &'static str,
    },
}

/// Settings of the controller, taken from the configuration file.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Settings of the plan (managed base, time zone, grace days, mass-deletion guard).
    pub plan: plan::Settings,
    /// Time between two reconciles of an unchanged object.
    pub resync_interval: Duration,
    /// Maximum number of accounts a `Supplier` reconcile writes at once.
    pub connections: usize,
}

impl ControllerConfig {
    /// Builds the controller's settings from the configuration file. The mass-deletion guard
    /// is lifted for the suppliers in `allow_mass_deletion`, both for accounts whose object
    /// is gone and for objects deleted at once.
    pub fn from_config(config: &crate::config::Config, allow_mass_deletion: &[String]) -> Self {
        Self {
            plan: config.plan_settings(allow_mass_deletion.iter().cloned()),
            resync_interval: config.controller.resync_interval,
            connections: config.directory.connections,
        }
    }
}

/// Everything a reconcile needs, shared by all reconciles.
pub struct Context<D> {
    /// Client for the API server.
    pub client: Client,
    /// The namespace whose objects are reconciled.
    pub namespace: String,
    /// Active Directory.
    pub directory: D,
    /// Delivery of the initial passwords of new accounts.
    pub delivery: Delivery,
    pub config: ControllerConfig,
    /// Every `SupplierUser` of the namespace, kept current by a reflector.
    pub users: Store<SupplierUser>,
    /// Every `Supplier` of the namespace, kept current by a reflector.
    pub suppliers: Store<Supplier>,
    /// Publishes Kubernetes events on the reconciled objects.
    pub recorder: Recorder,
    /// Gate that allows writes to AD and the API server while it holds true.
    pub may_write: watch::Receiver<bool>,
    /// Failed reconciles in a row per object (`Kind namespace/name`), for the backoff of
    /// [`error_policy`]. Entries of objects gone from the stores are removed.
    failures: Mutex<HashMap<String, u32>>,
    /// Metrics that the reconciles record, once [`Context::set_metrics`] has set them.
    metrics: OnceLock<Metrics>,
    /// Requests for a `Supplier` reconcile, sent when a user waits for its supplier's OU.
    supplier_requests: mpsc::UnboundedSender<ObjectRef<Supplier>>,
    /// The receiving end, until [`Controllers::run`] or a test takes it.
    supplier_requests_receiver: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<Supplier>>>>,
}

impl<D: Directory> Context<D> {
    /// Creates a context. The stores must be fed by reflectors on the same namespace.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        namespace: impl Into<String>,
        directory: D,
        delivery: Delivery,
        config: ControllerConfig,
        users: Store<SupplierUser>,
        suppliers: Store<Supplier>,
        may_write: watch::Receiver<bool>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let (sender, receiver) = mpsc::unbounded();
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            namespace: namespace.into(),
            directory,
            delivery,
            config,
            users,
            suppliers,
            may_write,
            failures: Mutex::new(HashMap::new()),
            metrics: OnceLock::new(),
            supplier_requests: sender,
            supplier_requests_receiver: Mutex::new(Some(receiver)),
        }
    }

    /// Sets the metrics that reconciles record; a second call changes nothing.
    pub fn set_metrics(&self, metrics: Metrics) {
        let _ = self.metrics.set(metrics);
    }

    /// Returns the metrics set by [`Context::set_metrics`].
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.get()
    }

    /// Waits until both reflector stores have finished their initial list. Before that a
    /// store can lack objects that exist, and a plan made from it would delete their
    /// accounts.
    pub async fn wait_for_stores(&self) -> Result<(), ControllerError> {
        // `Store::wait_until_ready` of kube-runtime 5.0 wakes only the task that polled it
        // last, so concurrent reconciles could wait forever. Each one checks without waiting
        // and sleeps between checks instead.
        loop {
            let users = self.users.wait_until_ready().now_or_never();
            let suppliers = self.suppliers.wait_until_ready().now_or_never();
            match (users, suppliers) {
                (Some(Err(_)), _) => {
                    return Err(ControllerError::StoreNotReady {
                        kind: "SupplierUser",
                    });
                }
                (_, Some(Err(_))) => {
                    return Err(ControllerError::StoreNotReady { kind: "Supplier" });
                }
                (Some(Ok(())), Some(Ok(()))) => return Ok(()),
                _ => tokio::time::sleep(STORE_READY_POLL).await,
            }
        }
    }

    /// Requests a reconcile of `supplier`, such as when a user waits for its OU. A supplier
    /// whose last reconcile failed is left to the retry that [`error_policy`] scheduled, so
    /// waiting users do not bypass its backoff.
    pub fn request_supplier_reconcile(&self, supplier: &str) {
        if self.failure_count(&supplier_object_name(&self.namespace, supplier)) > 0 {
            return;
        }
        let reference = ObjectRef::new(supplier).within(&self.namespace);
        // The receiver lives as long as the controller runs, so a failed send means that
        // the controller is stopping and the request no longer matters.
        let _ = self.supplier_requests.unbounded_send(reference);
    }

    /// Takes the stream of requested `Supplier` reconciles; `None` after the first call.
    pub fn take_supplier_requests(&self) -> Option<mpsc::UnboundedReceiver<ObjectRef<Supplier>>> {
        self.supplier_requests_receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Returns true while the gate allows writes.
    pub fn may_write(&self) -> bool {
        *self.may_write.borrow()
    }

    /// Counts one more failure of `object` and returns the wait before its next attempt:
    /// [`BACKOFF_START`], doubled per failure in a row, at most [`BACKOFF_MAX`].
    pub fn record_failure(&self, object: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        self.forget_deleted(&mut failures);
        let count = failures.entry(object.to_owned()).or_insert(0);
        let wait = backoff(*count);
        *count += 1;
        wait
    }

    /// Forgets the failures of `object` after a reconcile that finished, and those of
    /// objects that are gone from the stores.
    pub fn record_success(&self, object: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(object);
        self.forget_deleted(&mut failures);
    }

    /// Returns the failed reconciles in a row of `object` (`Kind namespace/name`).
    pub fn failure_count(&self, object: &str) -> u32 {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.get(object).copied().unwrap_or(0)
    }

    /// Returns the wait before a user that waits for the OU of `supplier` checks again: the
    /// next backoff of the supplier's reconcile, [`BACKOFF_START`] while it has not failed.
    pub fn supplier_backoff(&self, supplier: &str) -> Duration {
        backoff(self.failure_count(&supplier_object_name(&self.namespace, supplier)))
    }

    /// Removes the failure counts of objects that no store contains any more. A deleted
    /// object is never reconciled again, so nothing else would remove its count.
    fn forget_deleted(&self, failures: &mut HashMap<String, u32>) {
        if failures.is_empty() {
            return;
        }
        failures.retain(|object, _| {
            let Some((kind, path)) = object.split_once(' ') else {
                return false;
            };
            let Some((namespace, name)) = path.split_once('/') else {
                return false;
            };
            match kind {
                "SupplierUser" => self
                    .users
                    .get(&ObjectRef::new(name).within(namespace))
                    .is_some(),
                "Supplier" => self
                    .suppliers
                    .get(&ObjectRef::new(name).within(namespace))
                    .is_some(),
                _ => false,
            }
        });
    }
}

/// Returns the wait after `failures` failed reconciles in a row: [`BACKOFF_START`] doubled
/// per failure, at most [`BACKOFF_MAX`].
fn backoff(failures: u32) -> Duration {
    BACKOFF_START
        .saturating_mul(1 << failures.min(16))
        .min(BACKOFF_MAX)
}

/// Returns the name under which the failures of a `Supplier` are counted.
fn supplier_object_name(namespace: &str, supplier: &str) -> String {
    format!("Supplier {namespace}/{supplier}")
}

/// Runs `work` until it completes or `gate` turns false, and returns `None` in the second
/// case. The work is then dropped at its next `.await`, so a replica that lost the lease
/// sends no further request. Reconciles are idempotent, so the next leader completes what
/// was cut off. A gate whose sender is gone keeps its last value.
pub async fn run_while_open<F: Future>(
    mut gate: watch::Receiver<bool>,
    work: F,
) -> Option<F::Output> {
    let closed = async move {
        if gate.wait_for(|open| !*open).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        output = work => Some(output),
        () = closed => None,
    }
}

/// Returns the namespace to watch: the configured one, else the pod's own, else
/// [`DEFAULT_NAMESPACE`].
pub fn watched_namespace(configured: Option<&str>) -> String {
    if let Some(namespace) = configured {
        return namespace.to_owned();
    }
    match std::fs::read_to_string(POD_NAMESPACE_FILE) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
        _ => DEFAULT_NAMESPACE.to_owned(),
    }
}

/// Returns the value that decides whether a watch event starts a reconcile: the object's
/// generation, finalizers, [`COMMIT_ANNOTATION`] and [`ALLOW_MASS_DELETION_ANNOTATION`]. A
/// status write changes none of them, so it starts no reconcile. A spec change and the
/// start of a deletion (both a new generation), the finalizer that [`reconcile_user`] adds,
/// a new commit from the git source and lifting the mass-deletion guard each start one.
pub fn reconcile_trigger<K: kube::Resource>(object: &K) -> Option<u64> {
    let meta = object.meta();
    let mut hasher = DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    for annotation in [COMMIT_ANNOTATION, ALLOW_MASS_DELETION_ANNOTATION] {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(annotation))
            .hash(&mut hasher);
    }
    Some(hasher.finish())
}

/// Reflectors and controllers of both resources, wired to a context but not yet running.
pub struct Controllers<D> {
    /// The shared context, for callers that register readiness checks or metrics on it.
    pub context: Arc<Context<D>>,
    users: Controller<SupplierUser>,
    suppliers: Controller<Supplier>,
}

impl<D: Directory + 'static> Controllers<D> {
    /// Sets up the watches of `namespace`. Nothing runs until [`Controllers::run`].
    pub fn new(
        client: Client,
        namespace: &str,
        directory: D,
        delivery: Delivery,
        config: ControllerConfig,
        may_write: watch::Receiver<bool>,
    ) -> Self {
        let user_api: Api<SupplierUser> = Api::namespaced(client.clone(), namespace);
        let supplier_api: Api<Supplier> = Api::namespaced(client.clone(), namespace);
        let watch_config = watcher::Config::default();

        let (user_store, user_writer) = reflector::store();
        let user_stream = watcher(user_api, watch_config.clone())
            .default_backoff()
            .reflect(user_writer)
            .applied_objects()
            .predicate_filter(reconcile_trigger, Default::default());

        let (supplier_store, supplier_writer) = reflector::store();
        let supplier_stream = watcher(supplier_api.clone(), watch_config.clone())
            .default_backoff()
            .reflect(supplier_writer)
            .applied_objects()
            .predicate_filter(reconcile_trigger, Default::default());

        // A second watch of the suppliers starts the reconcile of their users when a
        // supplier's spec changes, for example when it is suspended or resumed.
        let supplier_changes = watcher(supplier_api, watch_config)
            .default_backoff()
            .applied_objects()
            .predicate_filter(reconcile_trigger, Default::default());
        let users_of = user_store.clone();
        let users = Controller::for_stream(user_stream, user_store.clone()).watches_stream(
            supplier_changes,
            move |supplier: Supplier| {
                let name = supplier.name_any();
                users_of
                    .state()
                    .into_iter()
                    .filter(|user| user.spec.supplier == name)
                    .map(|user| ObjectRef::from_obj(&*user))
                    .collect::<Vec<_>>()
            },
        );
        let suppliers = Controller::for_stream(supplier_stream, supplier_store.clone());

        let context = Arc::new(Context::new(
            client,
            namespace,
            directory,
            delivery,
            config,
            user_store,
            supplier_store,
            may_write,
        ));
        Self {
            context,
            users,
            suppliers,
        }
    }

    /// Runs both controllers until `shutdown` completes, then lets running reconciles finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
        let (stop, stopped) = watch::channel(false);
        let wait = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let users = self
            .users
            .graceful_shutdown_on(wait(stopped.clone()))
            .run(reconcile_user, error_policy, self.context.clone())
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => tracing::debug!(object = %object, "reconciled"),
                    Err(error) => warn!(error = %error, "SupplierUser reconcile failed"),
                }
            });
        let mut suppliers = self.suppliers;
        if let Some(requests) = self.context.take_supplier_requests() {
            suppliers = suppliers.reconcile_on(requests);
        }
        let suppliers = suppliers
            .graceful_shutdown_on(wait(stopped))
            .run(reconcile_supplier, error_policy, self.context.clone())
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => tracing::debug!(object = %object, "reconciled"),
                    Err(error) => warn!(error = %error, "Supplier reconcile failed"),
                }
            });
        tokio::spawn(async move {
            shutdown.await;
            info!("stopping the controller");
            let _ = stop.send(true);
        });
        futures::join!(users, suppliers);
        info!("controller stopped");
    }
}

#[cfg(test)]
mod gate_tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn closed_gate_stops_work() {
        let (gate, may_write) = watch::channel(true);
        let work = tokio::spawn(run_while_open(may_write, std::future::pending::<()>()));

        tokio::time::sleep(Duration::from_millis(20)).await;
        gate.send(false).unwrap();
        let output = tokio::time::timeout(Duration::from_secs(5), work).await;

        assert_eq!(output.unwrap().unwrap(), None);
    }

    #[tokio::test]
    async fn open_gate_lets_work_finish() {
        let (_gate, may_write) = watch::channel(true);

        let output = run_while_open(may_write, async { 7 }).await;

        assert_eq!(output, Some(7));
    }

    #[tokio::test]
    async fn dropped_sender_keeps_gate_open() {
        let (gate, may_write) = watch::channel(true);
        drop(gate);

        let output = run_while_open(may_write, async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            "done"
        })
        .await;

        assert_eq!(output, Some("done"));
    }
}
