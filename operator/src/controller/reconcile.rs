//! The reconcile functions of both resources and the error policy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, error, info, info_span, warn};

use super::requeue::{is_expiring, requeue_after};
use super::status::{
    ConditionState, EXPIRING, READY, SUSPENDED, SYNCED, apply_supplier_status, apply_user_status,
    find, merge_conditions,
};
use super::{
    ALLOW_MASS_DELETION_ANNOTATION, COMMIT_ANNOTATION, Context, ControllerError, FINALIZER,
    STANDBY_RETRY, run_while_open,
};
use crate::calendar::Calendar;
use crate::credentials::CredentialsSink;
use crate::desired::{self, DesiredState, FileError};
use crate::directory::Directory;
use crate::expiry;
use crate::model::{Account, Action, DeleteReason, UserKey};
use crate::notice;
use crate::output;
use crate::plan::{self, AccountPlan, Finding, Plan};
use crate::resources::{
    API_VERSION, Phase, Supplier, SupplierStatus, SupplierUser, SupplierUserSpec,
    SupplierUserStatus,
};
use crate::server::ReconcileResult;
use crate::sync;

/// Reconciles one `SupplierUser`: adds the finalizer, applies the user's part of the plan,
/// or deletes the account when the object is being deleted.
pub async fn reconcile_user<D: Directory>(
    user: Arc<SupplierUser>,
    ctx: Arc<Context<D>>,
) -> Result<Requeue, ControllerError> {
    if !ctx.may_write() {
        return Ok(Requeue::requeue(STANDBY_RETRY));
    }
    ctx.wait_for_stores().await?;
    let started = Instant::now();
    let object = describe_object(&*user);
    let span = info_span!("reconcile", supplier = %user.spec.supplier, user = %user.name_any());
    let api: Api<SupplierUser> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let work = finalizer(&api, FINALIZER, user, |event| async {
        match event {
            FinalizerEvent::Apply(user) => apply_user(&user, &ctx).await,
            FinalizerEvent::Cleanup(user) => cleanup_user(&user, &ctx).await,
        }
    })
    .instrument(span);
    let Some(result) = run_while_open(ctx.may_write.clone(), work).await else {
        warn!(
            object,
            "stopped the reconcile because the write gate closed"
        );
        return Ok(Requeue::requeue(STANDBY_RETRY));
    };
    let result = match result {
        Ok(requeue) => {
            ctx.record_success(&object);
            Ok(requeue)
        }
        // The reconcile's own errors pass through unwrapped, so a directory failure reads
        // as one.
        Err(FinalizerError::ApplyFailed(error) | FinalizerError::CleanupFailed(error)) => {
            Err(error)
        }
        Err(source) => Err(ControllerError::Finalizer {
            object,
            source: Box::new(source),
        }),
    };
    record_metrics(&ctx, &result, started.elapsed());
    result
}

/// Reconciles one `Supplier`: creates its OU and deletes the accounts whose object is gone.
pub async fn reconcile_supplier<D: Directory>(
    supplier: Arc<Supplier>,
    ctx: Arc<Context<D>>,
) -> Result<Requeue, ControllerError> {
    if !ctx.may_write() {
        return Ok(Requeue::requeue(STANDBY_RETRY));
    }
    ctx.wait_for_stores().await?;
    let started = Instant::now();
    let object = describe_object(&*supplier);
    let span = info_span!("reconcile", supplier = %supplier.name_any());
    let work = apply_supplier(&supplier, &ctx).instrument(span);
    let Some(result) = run_while_open(ctx.may_write.clone(), work).await else {
        warn!(
            object,
            "stopped the reconcile because the write gate closed"
        );
        return Ok(Requeue::requeue(STANDBY_RETRY));
    };
    if result.is_ok() {
        ctx.record_success(&object);
    }
    record_metrics(&ctx, &result, started.elapsed());
    result
}

/// Records a finished reconcile in the metrics, when the context has them. A reconcile cut
/// off by the write gate is not recorded.
fn record_metrics<D: Directory>(
    ctx: &Context<D>,
    result: &Result<Requeue, ControllerError>,
    duration: Duration,
) {
    let Some(metrics) = ctx.metrics() else {
        return;
    };
    match result {
        Ok(_) => {
            metrics.record_reconcile(ReconcileResult::Success, duration);
            metrics.set_last_success(Utc::now());
        }
        Err(_) => {
            metrics.record_reconcile(ReconcileResult::Failure, duration);
            metrics.record_errors(1);
        }
    }
}

/// Reads the `Supplier` named `name` from the API server. The reflector store can still
/// hold an older version than the watch event that started the reconcile, so the decision
/// to write AD or to hold back for a suspension rests on this reading.
async fn current_supplier<D: Directory>(
    ctx: &Context<D>,
    name: &str,
) -> Result<Option<Arc<Supplier>>, ControllerError> {
    let api: Api<Supplier> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    match api.get_opt(name).await {
        Ok(supplier) => Ok(supplier.map(Arc::new)),
        Err(source) => Err(ControllerError::Kubernetes {
            action: "get",
            object: format!("Supplier {}/{name}", ctx.namespace),
            source,
        }),
    }
}

/// Returns true when the `Supplier` carries [`ALLOW_MASS_DELETION_ANNOTATION`] set to
/// `"true"`.
fn mass_deletion_allowed(supplier: &Supplier) -> bool {
    supplier
        .annotations()
        .get(ALLOW_MASS_DELETION_ANNOTATION)
        .is_some_and(|value| value == "true")
}

fn supplier_not_found(supplier: &str, namespace: &str) -> String {
    format!(
        "supplier {supplier:?} not found in namespace {namespace}; create that Supplier or \
         correct spec.supplier"
    )
}

fn supplier_suspended(supplier: &str) -> String {
    format!("supplier {supplier:?} is suspended (spec.suspend), so nothing is written to AD")
}

/// Retries a failed reconcile after a wait that doubles with each failure in a row.
pub fn error_policy<K, D>(object: Arc<K>, error: &ControllerError, ctx: Arc<Context<D>>) -> Requeue
where
    K: Resource<DynamicType = ()>,
    D: Directory,
{
    let name = describe_object(&*object);
    let wait = ctx.record_failure(&name);
    warn!(object = %name, error = %error, retry_seconds = wait.as_secs(), "reconcile failed; retrying");
    Requeue::requeue(wait)
}

fn describe_object<K: Resource<DynamicType = ()>>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{} {}/{}",
        K::kind(&()),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

fn supplier_path(supplier: &str) -> String {
    format!("{}/{supplier}/supplier.yaml", desired::SUPPLIERS_DIR)
}

fn user_path(supplier: &str, name: &str) -> String {
    format!("{}/{supplier}/users/{name}.yaml", desired::SUPPLIERS_DIR)
}

/// Builds the desired state of one supplier from the stores: its `Supplier` and every
/// `SupplierUser` that names it. Each object is rendered as the file the git source would
/// hold and checked by [`desired::from_files`], so both ways in share every rule.
fn build_desired<D: Directory>(ctx: &Context<D>, supplier: &Supplier) -> DesiredState {
    let name = supplier.name_any();
    let render = |kind: &str, object_name: &str, spec: serde_json::Value| {
        let object = json!({
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"name": object_name},
            "spec": spec,
        });
        serde_saphyr::to_string(&object).unwrap_or_default()
    };

    let mut files = vec![(
        supplier_path(&name),
        render("Supplier", &name, json!(supplier.spec)),
    )];
    for user in ctx.users.state() {
        if user.spec.supplier == name {
            let user_name = user.name_any();
            files.push((
                user_path(&name, &user_name),
                render("SupplierUser", &user_name, json!(user.spec)),
            ));
        }
    }

    let mut state = desired::from_files(files.iter().map(|(p, c)| (p.as_str(), c.as_bytes())));
    for supplier in state.suppliers.values_mut() {
        for user in supplier.users.values_mut() {
            user.source = format!("{}/{}", ctx.namespace, user.key.name);
        }
    }
    state
}

/// Formats a file error for a condition or event, naming the field and value.
fn describe_error(error: &FileError) -> String {
    match &error.field {
        Some(field) => format!("{field}: {}; {}", error.message, error.hint),
        None => format!("{}; {}", error.message, error.hint),
    }
}

fn now_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Publishes an event on `reference`; a failure is logged and does not fail the reconcile.
async fn publish<D: Directory>(
    ctx: &Context<D>,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, MAX_NOTE_BYTES)),
        action: reason.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        warn!(reason, error = %e, "failed to publish an event");
    }
}

/// Maximum size of an event's note, which the Events API limits to 1 kB.
const MAX_NOTE_BYTES: usize = 1024;

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut with "…".
fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// Returns the event reason of an action that succeeded.
fn action_reason(action: &Action) -> &'static str {
    match action {
        Action::CreateOrganizationalUnit { .. } => "OrganizationalUnitCreated",
        Action::Create { .. } => "Created",
        Action::SetInitialPassword { .. } => "CredentialsDelivered",
        Action::UpdateAttributes { .. } | Action::SetExpiry { .. } => "Updated",
        Action::AddToGroup { .. } | Action::RemoveFromGroup { .. } => "GroupsChanged",
        Action::Enable { .. } => "Enabled",
        Action::Disable { .. } => "Disabled",
        Action::Delete { .. } => "Deleted",
    }
}

/// Outcome of a user reconcile, turned into status.
struct UserOutcome {
    ready: ConditionState,
    synced: ConditionState,
    account: Option<Account>,
    phase: Phase,
    /// True when the spec was applied, so the object's commit annotation counts as applied.
    applied: bool,
}

impl UserOutcome {
    /// Creates the outcome of a reconcile that wrote nothing to AD, with the same `reason`
    /// on both conditions.
    fn blocked(reason: &'static str, message: String, previous: Option<Phase>) -> Self {
        Self {
            ready: ConditionState::no(READY, reason, message.clone()),
            synced: ConditionState::no(SYNCED, reason, message),
            account: None,
            phase: previous.unwrap_or(Phase::Pending),
            applied: false,
        }
    }
}

/// Writes the status of a user from an outcome, adding the `Expiring` condition.
async fn write_user_status<D: Directory>(
    ctx: &Context<D>,
    user: &SupplierUser,
    outcome: UserOutcome,
    today: NaiveDate,
) -> Result<(), ControllerError> {
    let api: Api<SupplierUser> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let previous = user.status.clone().unwrap_or_default();
    let zone = ctx.config.plan.time_zone;
    let last_day = user.spec.last_day();
    let expiring = if is_expiring(last_day, today) {
        ConditionState::yes(
            EXPIRING,
            "AccessEndsSoon",
            format!("the last day of access is {last_day}"),
        )
    } else {
        ConditionState::no(
            EXPIRING,
            "AccessNotEndingSoon",
            format!("the last day of access is {last_day}"),
        )
    };
    let conditions = merge_conditions(
        &previous.conditions,
        &[outcome.ready, outcome.synced, expiring],
        user.meta().generation,
        &now_time(),
    );

    // Without a fresh reading of the account, the status keeps its previous values.
    let (username, distinguished_name, object_guid, expires) = match &outcome.account {
        Some(account) => (
            Some(account.username.clone()),
            Some(account.dn.clone()),
            Some(account.object_guid.clone()),
            account
                .account_expires
                .and_then(|f| expiry::last_day_from_account_expires(f, zone)),
        ),
        None if outcome.phase == Phase::Deleted => (previous.username.clone(), None, None, None),
        None => (
            previous.username.clone(),
            previous.distinguished_name.clone(),
            previous.object_guid.clone(),
            previous.expires,
        ),
    };
    let commit = user.annotations().get(COMMIT_ANNOTATION).cloned();
    let status = SupplierUserStatus {
        observed_generation: user.meta().generation,
        phase: Some(outcome.phase),
        username,
        distinguished_name,
        object_guid,
        expires,
        last_applied_commit: if outcome.applied {
            commit
        } else {
            previous.last_applied_commit.clone()
        },
        conditions,
    };
    apply_user_status(&api, user, &status).await?;
    Ok(())
}

/// Returns true when the `Ready` condition already carries this message, so the problem is
/// not new and needs no second event.
fn already_reported(status: Option<&SupplierUserStatus>, message: &str) -> bool {
    status
        .and_then(|s| find(&s.conditions, READY))
        .is_some_and(|c| c.message == message)
}

async fn apply_user<D: Directory>(
    user: &SupplierUser,
    ctx: &Context<D>,
) -> Result<Requeue, ControllerError> {
    let name = user.name_any();
    let key = UserKey::new(&user.spec.supplier, &name);
    let now = Utc::now();
    let zone = ctx.config.plan.time_zone;
    let today = now.with_timezone(&zone).date_naive();
    let reference = user.object_ref(&());
    let resync = ctx.config.resync_interval;
    let previous_phase = user.status.as_ref().and_then(|s| s.phase);
    let requeue = Requeue::requeue(requeue_after(
        &user.spec,
        now,
        zone,
        ctx.config.plan.grace_days,
        resync,
    ));

    // A rejection changes nothing in AD. The status and one event record the reason.
    let event_target = &reference;
    let reject = |reason: &'static str, message: String| async move {
        if !already_reported(user.status.as_ref(), &message) {
            warn!(reason, message = %message, "not applied");
            publish(
                ctx,
                event_target,
                EventType::Warning,
                reason,
                message.clone(),
            )
            .await;
        }
        let outcome = UserOutcome::blocked(reason, message, previous_phase);
        write_user_status(ctx, user, outcome, today).await
    };

    // A store that lags behind can still hold a supplier that has since been created or
    // resumed, so a GET confirms a missing or suspended supplier before the user waits.
    let supplier_ref = ObjectRef::new(&user.spec.supplier).within(&ctx.namespace);
    let mut confirmed = false;
    let supplier = match ctx.suppliers.get(&supplier_ref) {
        Some(supplier) if !supplier.spec.suspend => Some(supplier),
        _ => {
            confirmed = true;
            current_supplier(ctx, &user.spec.supplier).await?
        }
    };
    let Some(supplier) = supplier else {
        let message = supplier_not_found(&user.spec.supplier, &ctx.namespace);
        reject("SupplierNotFound", message).await?;
        return Ok(Requeue::requeue(resync));
    };
    if supplier.spec.suspend {
        reject("SupplierSuspended", supplier_suspended(&user.spec.supplier)).await?;
        return Ok(Requeue::requeue(resync));
    }

    let desired = build_desired(ctx, &supplier);
    let own_path = user_path(&user.spec.supplier, &name);
    let supplier_file = supplier_path(&user.spec.supplier);
    if let Some(error) = desired.errors.iter().find(|e| e.path == own_path) {
        reject("InvalidSpec", describe_error(error)).await?;
        return Ok(Requeue::requeue(resync));
    }
    if let Some(error) = desired.errors.iter().find(|e| e.path == supplier_file) {
        let message = format!(
            "supplier {:?} is invalid, so its users are left as they are: {}",
            user.spec.supplier,
            describe_error(error)
        );
        reject("SupplierInvalid", message).await?;
        return Ok(Requeue::requeue(resync));
    }

    let snapshot = match sync::read_snapshot(&ctx.directory, &desired).await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            let message = format!("failed to read AD: {e}");
            error!(error = %e, "failed to read the directory");
            let outcome = UserOutcome::blocked("DirectoryUnavailable", message, previous_phase);
            write_user_status(ctx, user, outcome, today).await?;
            return Err(e.into());
        }
    };
    let existing = linked_account(&snapshot.accounts, &key).cloned();

    // Objects from the git source were accepted by a reviewer's merge, as in `adgang sync`.
    // An object applied by other means is held to the rules for a new account.
    // NOTE: the notice rules for an extension are not checked here, because the spec that
    // was last accepted is not stored.
    let from_git = user.annotations().contains_key(COMMIT_ANNOTATION);
    if existing.is_none() && !from_git {
        let submitted = submission_date(user, now).with_timezone(&zone).date_naive();
        let change = notice::Change::Create { new: &user.spec };
        // NOTE: only public holidays count as closed days here. The closing days of the
        // git source's policy file are not known to the controller.
        let violations = notice::check(change, &supplier.spec, &Calendar::danish(), submitted);
        if let Some(first) = violations.first() {
            let reason = match first.kind {
                notice::ViolationKind::LateSubmission => "LateSubmission",
                notice::ViolationKind::GroupNotAllowed => "GroupNotAllowed",
                _ => "SubmissionRejected",
            };
            let messages: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
            reject(reason, messages.join("; ")).await?;
            return Ok(Requeue::requeue(resync));
        }
    }

    // When the status reports this generation as synced, the spec is the one last applied,
    // so a difference in AD was made by hand and its correction counts as drift.
    let synced = user.status.as_ref().is_some_and(|s| {
        s.observed_generation.is_some()
            && s.observed_generation == user.meta().generation
            && find(&s.conditions, SYNCED).is_some_and(|c| c.status == "True")
    });
    let applied_specs: Option<BTreeMap<UserKey, SupplierUserSpec>> = synced.then(|| {
        desired
            .users()
            .filter(|u| u.key == key)
            .map(|u| (u.key.clone(), u.spec.clone()))
            .collect()
    });
    let plan = plan::plan(
        &desired,
        &snapshot,
        applied_specs.as_ref(),
        now,
        &ctx.config.plan,
    );
    let findings: Vec<&Finding> = plan
        .findings
        .iter()
        .filter(|f| concerns_user(f, &key))
        .collect();
    if let Some(finding) = findings.iter().find(|f| blocks_user(f)) {
        let reason = finding_reason(finding);
        reject(reason, output::describe_finding(finding)).await?;
        return Ok(Requeue::requeue(resync));
    }

    let ou_missing = plan.organizational_units.iter().any(|a| {
        matches!(a, Action::CreateOrganizationalUnit { supplier, .. } if *supplier == key.supplier)
    });
    let account_plan = plan.accounts.into_iter().find(|a| a.key == key);
    if ou_missing && account_plan.is_some() {
        let message = format!(
            "waiting for the Supplier reconcile to create the organisational unit of {:?}",
            key.supplier
        );
        ctx.request_supplier_reconcile(&key.supplier);
        let outcome = UserOutcome::blocked("OrganizationalUnitMissing", message, previous_phase);
        write_user_status(ctx, user, outcome, today).await?;
        // The wait follows the supplier's backoff, so a supplier whose OU cannot be created
        // is not retried every few seconds by its waiting users.
        return Ok(Requeue::requeue(ctx.supplier_backoff(&key.supplier)));
    }

    // The supplier may have been suspended or deleted since the store's version.
    let writes = account_plan.as_ref().is_some_and(|p| !p.actions.is_empty());
    if writes && !confirmed {
        match current_supplier(ctx, &key.supplier).await? {
            None => {
                let message = supplier_not_found(&key.supplier, &ctx.namespace);
                reject("SupplierNotFound", message).await?;
                return Ok(Requeue::requeue(resync));
            }
            Some(current) if current.spec.suspend => {
                reject("SupplierSuspended", supplier_suspended(&key.supplier)).await?;
                return Ok(Requeue::requeue(resync));
            }
            Some(_) => {}
        }
    }

    let (applied, failure) = match &account_plan {
        Some(account_plan) => {
            let sink = ctx.delivery.sink_for(&desired);
            apply_account(ctx, &*sink, &reference, account_plan).await
        }
        None => (0, None),
    };
    // Drift is a change made by hand in AD that the plan put back; it counts once all of
    // the account's actions succeeded.
    if failure.is_none()
        && account_plan.as_ref().is_some_and(|p| p.drift)
        && let Some(metrics) = ctx.metrics()
    {
        metrics.record_drift(1);
    }
    let deleted = account_plan.as_ref().is_some_and(|p| {
        p.actions[..applied]
            .iter()
            .any(|a| matches!(a, Action::Delete { .. }))
    });

    // A fresh reading gives the objectGUID of a new account and the state after the writes.
    let account = if applied > 0 && !deleted {
        let after = ctx
            .directory
            .snapshot(&BTreeSet::new(), &BTreeSet::new())
            .await?;
        linked_account(&after.accounts, &key).cloned()
    } else if deleted {
        None
    } else {
        existing
    };

    let phase = phase_of(
        &user.spec,
        account.as_ref(),
        deleted,
        previous_phase,
        now,
        zone,
    );
    let outcome = match failure {
        Some(message) => UserOutcome {
            ready: ConditionState::no(READY, "ApplyFailed", message.clone()),
            synced: ConditionState::no(SYNCED, "ApplyFailed", message.clone()),
            account,
            phase,
            applied: false,
        },
        None => {
            let synced = if applied == 0 {
                ConditionState::yes(SYNCED, "UpToDate", "AD already matched the spec")
            } else {
                ConditionState::yes(SYNCED, "Applied", format!("applied {applied} changes"))
            };
            UserOutcome {
                ready: ConditionState::yes(READY, "Reconciled", describe_phase(phase, &user.spec)),
                synced,
                account,
                phase,
                applied: true,
            }
        }
    };
    let failed = !outcome.applied;
    let failure_message = outcome.synced.message.clone();
    write_user_status(ctx, user, outcome, today).await?;
    if failed {
        return Err(ControllerError::ActionFailed {
            object: describe_object(user),
            message: failure_message,
        });
    }
    Ok(requeue)
}

/// Applies one account's actions and publishes an event for each that succeeded and for the
/// one that failed. Returns the count applied and the failure's message.
async fn apply_account<D: Directory>(
    ctx: &Context<D>,
    sink: &dyn CredentialsSink,
    reference: &ObjectReference,
    account_plan: &AccountPlan,
) -> (usize, Option<String>) {
    let single = Plan {
        organizational_units: Vec::new(),
        accounts: vec![account_plan.clone()],
        findings: Vec::new(),
    };
    let (applied, failures) = sync::apply_plan(&ctx.directory, sink, &single, 1).await;
    let zone = ctx.config.plan.time_zone;
    for action in &account_plan.actions[..applied] {
        let note = format!(
            "{}: {}",
            account_plan.username,
            output::describe(action, zone)
        );
        publish(
            ctx,
            reference,
            EventType::Normal,
            action_reason(action),
            note,
        )
        .await;
    }
    let failure = failures
        .into_iter()
        .next()
        .map(|f| format!("failed to {} {}: {}", f.action, f.dn, f.error));
    if let Some(message) = &failure {
        publish(
            ctx,
            reference,
            EventType::Warning,
            "ApplyFailed",
            message.clone(),
        )
        .await;
    }
    (applied, failure)
}

fn linked_account<'a>(accounts: &'a [Account], key: &UserKey) -> Option<&'a Account> {
    let mut linked = accounts.iter().filter(|a| a.link.as_ref() == Some(key));
    let first = linked.next()?;
    // Two accounts with one link are a finding of the plan; neither is reported here.
    linked.next().is_none().then_some(first)
}

/// Returns the instant the object was submitted: its creation time.
fn submission_date(user: &SupplierUser, now: DateTime<Utc>) -> DateTime<Utc> {
    user.meta()
        .creation_timestamp
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
        .unwrap_or(now)
}

fn concerns_user(finding: &Finding, key: &UserKey) -> bool {
    match finding {
        Finding::UserFrozen { key: k, .. }
        | Finding::UsernameChangeRejected { key: k, .. }
        | Finding::UsernameTaken { key: k, .. }
        | Finding::GroupNotFound { key: k, .. }
        | Finding::DuplicateLink { key: k, .. }
        | Finding::WrongOrganizationalUnit { key: k, .. }
        | Finding::NotCreatedAlreadyExpired { key: k, .. }
        | Finding::UnmanagedGroupMembership { key: k, .. } => k == key,
        Finding::MassDeletionBlocked { supplier, .. } => *supplier == key.supplier,
        Finding::SupplierFrozen { .. }
        | Finding::SupplierSuspended { .. }
        | Finding::UnmanagedObject { .. } => false,
    }
}

/// Returns true for a finding that stops the user's changes.
fn blocks_user(finding: &Finding) -> bool {
    matches!(
        finding,
        Finding::UsernameChangeRejected { .. }
            | Finding::UsernameTaken { .. }
            | Finding::DuplicateLink { .. }
            | Finding::MassDeletionBlocked { .. }
            | Finding::GroupNotFound { .. }
    )
}

fn finding_reason(finding: &Finding) -> &'static str {
    match finding {
        Finding::UsernameChangeRejected { .. } => "UsernameChangeRejected",
        Finding::UsernameTaken { .. } => "UsernameTaken",
        Finding::DuplicateLink { .. } => "DuplicateLink",
        Finding::MassDeletionBlocked { .. } => "MassDeletionBlocked",
        Finding::GroupNotFound { .. } => "GroupNotFound",
        _ => "Blocked",
    }
}

/// Returns the phase of a user from its account, as AD contains it after the reconcile.
fn phase_of(
    spec: &SupplierUserSpec,
    account: Option<&Account>,
    deleted_now: bool,
    previous: Option<Phase>,
    now: DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> Phase {
    if deleted_now {
        return Phase::Deleted;
    }
    if now >= expiry::end_of_access(spec.last_day(), zone) {
        return match (account, previous) {
            (Some(_), _) => Phase::Expired,
            (None, Some(Phase::Active | Phase::Expired | Phase::Deleted)) => Phase::Deleted,
            (None, _) => Phase::Expired,
        };
    }
    match account {
        Some(account) if account.enabled => Phase::Active,
        _ => Phase::Pending,
    }
}

fn describe_phase(phase: Phase, spec: &SupplierUserSpec) -> String {
    match phase {
        Phase::Pending => format!(
            "the account is disabled until the first day of access, {}",
            spec.valid_from
        ),
        Phase::Active => format!(
            "the account is enabled until the end of {}",
            spec.last_day()
        ),
        Phase::Expired => format!("access ended after {}", spec.last_day()),
        Phase::Deleted => "the account was deleted".to_owned(),
    }
}

/// Deletes the account of a `SupplierUser` whose object is being deleted. Releases the
/// object at once when the account is already gone, when two accounts carry its link (a
/// person must choose), or when its supplier is suspended (the supplier's reconcile deletes
/// the account once it is resumed).
///
/// Keeps the finalizer, and returns [`ControllerError::MassDeletionBlocked`] so that the
/// deletion is retried with backoff, while more objects of the supplier are being deleted
/// than the mass-deletion guard allows and the supplier lacks
/// [`ALLOW_MASS_DELETION_ANNOTATION`].
async fn cleanup_user<D: Directory>(
    user: &SupplierUser,
    ctx: &Context<D>,
) -> Result<Requeue, ControllerError> {
    let key = UserKey::new(&user.spec.supplier, user.name_any());
    let reference = user.object_ref(&());
    let supplier_ref = ObjectRef::new(&user.spec.supplier).within(&ctx.namespace);
    let deferred = |supplier: &str| {
        let note = format!(
            "supplier {supplier:?} is suspended, so the account stays in AD until the \
             supplier is resumed and its reconcile deletes it"
        );
        let reference = &reference;
        async move {
            publish(ctx, reference, EventType::Warning, "DeletionDeferred", note).await;
            Ok(Requeue::await_change())
        }
    };

    // The store can lag behind, so a GET confirms the suspension that it shows.
    let mut supplier = ctx.suppliers.get(&supplier_ref);
    let mut confirmed = false;
    if supplier.as_ref().is_some_and(|s| s.spec.suspend) {
        supplier = current_supplier(ctx, &key.supplier).await?;
        confirmed = true;
        if supplier.as_ref().is_some_and(|s| s.spec.suspend) {
            return deferred(&key.supplier).await;
        }
    }

    let snapshot = ctx
        .directory
        .snapshot(&BTreeSet::new(), &BTreeSet::new())
        .await?;
    let linked: Vec<&Account> = snapshot
        .accounts
        .iter()
        .filter(|a| a.link.as_ref() == Some(&key))
        .collect();
    match linked.as_slice() {
        [] => {
            info!(user = %key, "no account to delete; releasing the object");
        }
        [account] => {
            if !confirmed {
                supplier = current_supplier(ctx, &key.supplier).await?;
                if supplier.as_ref().is_some_and(|s| s.spec.suspend) {
                    return deferred(&key.supplier).await;
                }
            }
            let allowed = supplier.as_deref().is_some_and(mass_deletion_allowed);
            if !allowed {
                check_deletion_guard(ctx, user, &key, &snapshot.accounts).await?;
            }
            let action = Action::Delete {
                key: key.clone(),
                dn: account.dn.clone(),
                reason: DeleteReason::FileRemoved,
            };
            ctx.directory.apply(&action).await?;
            info!(user = %key, dn = %account.dn, "deleted the account of a deleted object");
            let note = format!("{}: deleted {}", account.username, account.dn);
            publish(ctx, &reference, EventType::Normal, "Deleted", note).await;
        }
        many => {
            let dns: Vec<&str> = many.iter().map(|a| a.dn.as_str()).collect();
            let note = format!(
                "{} accounts carry the link of {key} ({}), so none was deleted; delete the \
                 wrong ones by hand",
                many.len(),
                dns.join("; ")
            );
            publish(ctx, &reference, EventType::Warning, "DuplicateLink", note).await;
        }
    }
    Ok(Requeue::await_change())
}

async fn apply_supplier<D: Directory>(
    supplier: &Supplier,
    ctx: &Context<D>,
) -> Result<Requeue, ControllerError> {
    let name = supplier.name_any();
    let api: Api<Supplier> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let reference = supplier.object_ref(&());
    let resync = Requeue::requeue(ctx.config.resync_interval);
    let previous = supplier.status.clone().unwrap_or_default();
    let write = |ready: ConditionState, suspended: ConditionState, accounts: Option<u32>| {
        let status = SupplierStatus {
            observed_generation: supplier.meta().generation,
            accounts,
            conditions: merge_conditions(
                &previous.conditions,
                &[ready, suspended],
                supplier.meta().generation,
                &now_time(),
            ),
            mail: None,
        };
        let api = api.clone();
        async move { apply_supplier_status(&api, supplier, &status).await }
    };
    let not_suspended = ConditionState::no(SUSPENDED, "NotSuspended", "spec.suspend is false");

    if supplier.spec.suspend {
        let message = "spec.suspend is true, so nothing of this supplier is written to AD";
        write(
            ConditionState::no(READY, "Suspended", message),
            ConditionState::yes(SUSPENDED, "SuspendedBySpec", message),
            previous.accounts,
        )
        .await?;
        return Ok(resync);
    }

    let desired = build_desired(ctx, supplier);
    if let Some(error) = desired
        .errors
        .iter()
        .find(|e| e.path == supplier_path(&name))
    {
        let message = describe_error(error);
        let known = find(&previous.conditions, READY).is_some_and(|c| c.message == message);
        if !known {
            publish(
                ctx,
                &reference,
                EventType::Warning,
                "InvalidSpec",
                message.clone(),
            )
            .await;
        }
        write(
            ConditionState::no(READY, "InvalidSpec", message),
            not_suspended,
            previous.accounts,
        )
        .await?;
        return Ok(resync);
    }

    let snapshot = match sync::read_snapshot(&ctx.directory, &desired).await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            let message = format!("failed to read AD: {e}");
            write(
                ConditionState::no(READY, "DirectoryUnavailable", message),
                not_suspended,
                previous.accounts,
            )
            .await?;
            return Err(e.into());
        }
    };
    let mut settings = ctx.config.plan.clone();
    if mass_deletion_allowed(supplier) {
        settings.guard.overridden.insert(name.clone());
    }
    let plan = plan::plan(&desired, &snapshot, None, Utc::now(), &settings);
    let blocked = plan
        .findings
        .iter()
        .find(|f| matches!(f, Finding::MassDeletionBlocked { supplier, .. } if *supplier == name));

    let supplier_part = Plan {
        organizational_units: plan
            .organizational_units
            .iter()
            .filter(|a| {
                matches!(a, Action::CreateOrganizationalUnit { supplier, .. } if *supplier == name)
            })
            .cloned()
            .collect(),
        accounts: plan
            .accounts
            .iter()
            .filter(|a| a.key.supplier == name && is_removal(a))
            .cloned()
            .collect(),
        findings: Vec::new(),
    };
    let sink = ctx.delivery.sink_for(&desired);
    let (_, failures) = sync::apply_plan(
        &ctx.directory,
        &*sink,
        &supplier_part,
        ctx.config.connections,
    )
    .await;
    let zone = ctx.config.plan.time_zone;
    let mut deleted = 0;
    for action in supplier_part.actions() {
        if failures.iter().any(|f| f.dn == action.dn()) {
            continue;
        }
        if matches!(action, Action::Delete { .. }) {
            deleted += 1;
        }
        let note = match action.key() {
            Some(key) => format!("{key}: {}", output::describe(action, zone)),
            None => output::describe(action, zone),
        };
        publish(
            ctx,
            &reference,
            EventType::Normal,
            action_reason(action),
            note,
        )
        .await;
    }
    // A failure that the Ready condition already reports gets no second round of events,
    // so a supplier that keeps failing does not publish one per retry.
    let repeated = failures.first().is_some_and(|failure| {
        let message = format!(
            "failed to {} {}: {}",
            failure.action, failure.dn, failure.error
        );
        find(&previous.conditions, READY).is_some_and(|c| c.message == message)
    });
    for failure in failures.iter().filter(|_| !repeated) {
        let message = format!(
            "failed to {} {}: {}",
            failure.action, failure.dn, failure.error
        );
        publish(ctx, &reference, EventType::Warning, "ApplyFailed", message).await;
    }

    let linked = snapshot
        .accounts
        .iter()
        .filter(|a| a.link.as_ref().is_some_and(|k| k.supplier == name))
        .count();
    let accounts = u32::try_from(linked.saturating_sub(deleted)).ok();
    let ready = match (blocked, failures.first()) {
        (Some(finding), _) => {
            let message = format!(
                "{}; in the controller, set the annotation {ALLOW_MASS_DELETION_ANNOTATION}: \
                 \"true\" on the Supplier instead",
                output::describe_finding(finding)
            );
            let known = find(&previous.conditions, READY).is_some_and(|c| c.message == message);
            if !known {
                publish(
                    ctx,
                    &reference,
                    EventType::Warning,
                    "MassDeletionBlocked",
                    message.clone(),
                )
                .await;
            }
            ConditionState::no(READY, "MassDeletionBlocked", message)
        }
        (None, Some(failure)) => ConditionState::no(
            READY,
            "ApplyFailed",
            format!(
                "failed to {} {}: {}",
                failure.action, failure.dn, failure.error
            ),
        ),
        (None, None) => ConditionState::yes(
            READY,
            "Reconciled",
            "no OU is missing for a user, and no account is left without its object",
        ),
    };
    write(ready, not_suspended, accounts).await?;
    if let Some(failure) = failures.first() {
        return Err(ControllerError::ActionFailed {
            object: describe_object(supplier),
            message: format!(
                "failed to {} {}: {}",
                failure.action, failure.dn, failure.error
            ),
        });
    }
    Ok(resync)
}

/// Returns an error when more `SupplierUser` objects of the user's supplier are being
/// deleted (a deletion timestamp and the finalizer) than the mass-deletion guard allows
/// for the supplier's accounts, after writing a condition and an event on `user`.
///
/// NOTE: objects whose deletion the watch has not yet delivered are not counted, so the
/// first deletions of a large batch can pass while the rest arrives; up to the guard's
/// minimum count always pass.
async fn check_deletion_guard<D: Directory>(
    ctx: &Context<D>,
    user: &SupplierUser,
    key: &UserKey,
    accounts: &[Account],
) -> Result<(), ControllerError> {
    let deleting = ctx
        .users
        .state()
        .iter()
        .filter(|u| u.spec.supplier == key.supplier)
        .filter(|u| u.meta().deletion_timestamp.is_some())
        .filter(|u| u.finalizers().iter().any(|f| f == FINALIZER))
        .count();
    let linked = accounts
        .iter()
        .filter(|a| a.link.as_ref().is_some_and(|k| k.supplier == key.supplier))
        .count();
    let guard = &ctx.config.plan.guard;
    if !guard.blocks(&key.supplier, deleting, linked) {
        return Ok(());
    }

    let message = format!(
        "{deleting} SupplierUser objects of supplier {:?} are being deleted at once, more \
         than {} and more than {:.0} % of its {linked} accounts, so the account is kept; if \
         that is intended, set the annotation {ALLOW_MASS_DELETION_ANNOTATION}: \"true\" on \
         the Supplier",
        key.supplier,
        guard.min_count,
        guard.max_share * 100.0
    );
    if !already_reported(user.status.as_ref(), &message) {
        warn!(user = %key, deleting, accounts = linked, "mass-deletion guard kept the account");
        let reference = user.object_ref(&());
        publish(
            ctx,
            &reference,
            EventType::Warning,
            "MassDeletionBlocked",
            message.clone(),
        )
        .await;
    }
    let previous_phase = user.status.as_ref().and_then(|s| s.phase);
    let today = Utc::now()
        .with_timezone(&ctx.config.plan.time_zone)
        .date_naive();
    let outcome = UserOutcome::blocked("MassDeletionBlocked", message.clone(), previous_phase);
    write_user_status(ctx, user, outcome, today).await?;
    Err(ControllerError::MassDeletionBlocked {
        object: describe_object(user),
        message,
    })
}

/// Returns true for the deletion of an account whose object is gone.
fn is_removal(account_plan: &AccountPlan) -> bool {
    matches!(
        account_plan.actions.as_slice(),
        [Action::Delete {
            reason: DeleteReason::FileRemoved,
            ..
        }]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_short_text() {
        assert_eq!(truncate("kort".to_owned(), 10), "kort");
    }

    #[test]
    fn truncate_cuts_on_character_boundary() {
        // "ø" takes two bytes, so a cut at an odd byte must step back.
        let text = "ø".repeat(600);
        let cut = truncate(text, MAX_NOTE_BYTES);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'ø'));
    }
}
