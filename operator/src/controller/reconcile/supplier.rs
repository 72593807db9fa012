//! The `Supplier` reconcile: create the supplier's OU and delete the accounts whose object
//! is gone.

use chrono::Utc;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use crate::controller::status::{
    ConditionState, READY, SUSPENDED, apply_supplier_status, find, merge_conditions,
};
use crate::controller::{ALLOW_MASS_DELETION_ANNOTATION, Context, ControllerError};
use crate::directory::Directory;
use crate::model::{Action, DeleteReason};
use crate::output;
use crate::plan::{self, AccountPlan, Finding, Plan};
use crate::resources::{Supplier, SupplierStatus};
use crate::sync;

use super::{
    action_reason, build_desired, describe_error, describe_object, mass_deletion_allowed, now_time,
    publish, supplier_path,
};

pub(super) async fn apply_supplier<D: Directory>(
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
