//! The reconcile functions of both resources and the error policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info_span, warn};

use super::{
    ALLOW_MASS_DELETION_ANNOTATION, Context, ControllerError, FINALIZER, STANDBY_RETRY,
    run_while_open,
};
use crate::desired::{self, DesiredState, FileError};
use crate::directory::Directory;
use crate::model::Action;
use crate::resources::{API_VERSION, Supplier, SupplierUser};
use crate::server::ReconcileResult;

mod supplier;
mod user;

use supplier::apply_supplier;
use user::{apply_user, cleanup_user};

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
