//! The `SupplierUser` reconcile: apply the user's part of the plan, write its status, and
//! delete its account when the object is deleted.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use tracing::{error, info, warn};

use crate::calendar::Calendar;
use crate::controller::requeue::{is_expiring, requeue_after};
use crate::controller::status::{
    ConditionState, EXPIRING, READY, SYNCED, apply_user_status, find, merge_conditions,
};
use crate::controller::{
    ALLOW_MASS_DELETION_ANNOTATION, COMMIT_ANNOTATION, Context, ControllerError, FINALIZER,
};
use crate::credentials::CredentialsSink;
use crate::directory::Directory;
use crate::expiry;
use crate::model::{Account, Action, DeleteReason, UserKey};
use crate::notice;
use crate::output;
use crate::plan::{self, AccountPlan, Finding, Plan};
use crate::resources::{Phase, SupplierUser, SupplierUserSpec, SupplierUserStatus};
use crate::sync;

use super::{
    action_reason, build_desired, current_supplier, describe_error, describe_object,
    mass_deletion_allowed, now_time, publish, supplier_not_found, supplier_path,
    supplier_suspended, user_path,
};

/// Outcome of a user reconcile, turned into status.
pub(super) struct UserOutcome {
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
pub(super) async fn write_user_status<D: Directory>(
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
pub(super) fn already_reported(status: Option<&SupplierUserStatus>, message: &str) -> bool {
    status
        .and_then(|s| find(&s.conditions, READY))
        .is_some_and(|c| c.message == message)
}

pub(super) async fn apply_user<D: Directory>(
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
pub(super) async fn cleanup_user<D: Directory>(
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

/// Returns an error when more `SupplierUser` objects of the user's supplier are being
/// deleted (a deletion timestamp and the finalizer) than the mass-deletion guard allows
/// for the supplier's accounts, after writing a condition and an event on `user`.
///
/// NOTE: objects whose deletion the watch has not yet delivered are not counted, so the
/// first deletions of a large batch can pass while the rest arrives. Up to the guard's
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
         the Supplier, or, when the Supplier is gone, restart the controller with \
         --allow-mass-deletion {}",
        key.supplier,
        guard.min_count,
        guard.max_share * 100.0,
        key.supplier
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
