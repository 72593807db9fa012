//! Conditions and status writes.
//!
//! Conditions follow the Kubernetes convention: `type`, `status` ("True", "False" or
//! "Unknown"), a PascalCase `reason`, a `message` for people, the `observedGeneration` they
//! describe, and a `lastTransitionTime` that changes only when `status` changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde_json::json;

use super::{ControllerError, FIELD_MANAGER};
use crate::resources::{API_VERSION, SupplierStatus, SupplierUserStatus};

/// Condition type: the AD account (or the supplier's OU) matches the spec.
pub const READY: &str = "Ready";
/// Condition type: the last reconcile applied the spec to AD without errors.
pub const SYNCED: &str = "Synced";
/// Condition type: the last day of access is within 14 days.
pub const EXPIRING: &str = "Expiring";
/// Condition type: the supplier is suspended, so nothing of it is written to AD.
pub const SUSPENDED: &str = "Suspended";

/// The state of one condition, before its transition time is decided.
#[derive(Clone, Debug, PartialEq)]
pub struct ConditionState {
    pub type_: &'static str,
    pub status: bool,
    /// PascalCase reason, such as `DirectoryUnavailable`.
    pub reason: &'static str,
    pub message: String,
}

impl ConditionState {
    /// Creates a condition that is true.
    pub fn yes(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: true,
            reason,
            message: message.into(),
        }
    }

    /// Creates a condition that is false.
    pub fn no(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: false,
            reason,
            message: message.into(),
        }
    }
}

/// Builds the conditions of `states`, keeping the `lastTransitionTime` of each condition in
/// `previous` whose status is unchanged, and setting `now` on the others. Conditions of
/// `previous` whose type is not in `states` are kept as they are.
pub fn merge_conditions(
    previous: &[Condition],
    states: &[ConditionState],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut conditions: Vec<Condition> = previous
        .iter()
        .filter(|c| !states.iter().any(|s| s.type_ == c.type_))
        .cloned()
        .collect();
    for state in states {
        let status = if state.status { "True" } else { "False" };
        let old = previous.iter().find(|c| c.type_ == state.type_);
        let last_transition_time = match old {
            Some(old) if old.status == status => old.last_transition_time.clone(),
            _ => now.clone(),
        };
        conditions.push(Condition {
            type_: state.type_.to_owned(),
            status: status.to_owned(),
            reason: state.reason.to_owned(),
            message: state.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    conditions
}

/// Returns the condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Writes `status` by server-side apply, unless the object's status already equals it.
/// Returns true when it wrote.
async fn apply_status<K, S>(
    api: &Api<K>,
    object: &K,
    current: Option<&S>,
    status: &S,
) -> Result<bool, ControllerError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    let name = object.meta().name.clone().unwrap_or_default();
    let patch = json!({
        "apiVersion": API_VERSION,
        "kind": K::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&name, &params, &Patch::Apply(&patch))
        .await
        .map_err(|source| ControllerError::Kubernetes {
            action: "patch the status of",
            object: format!("{} {}", K::kind(&()), name),
            source,
        })?;
    Ok(true)
}

/// Writes the status of a `SupplierUser` when it changed.
pub async fn apply_user_status(
    api: &Api<crate::resources::SupplierUser>,
    object: &crate::resources::SupplierUser,
    status: &SupplierUserStatus,
) -> Result<bool, ControllerError> {
    apply_status(api, object, object.status.as_ref(), status).await
}

/// Writes the status of a `Supplier` when it changed.
pub async fn apply_supplier_status(
    api: &Api<crate::resources::Supplier>,
    object: &crate::resources::Supplier,
    status: &SupplierStatus,
) -> Result<bool, ControllerError> {
    let current = supplier_status_owned(object.status.as_ref(), status);
    apply_status(api, object, current.as_ref(), status).await
}

/// Returns the part of the current `Supplier` status that the reconcile writes: the `mail`
/// field belongs to the mail schedule's field manager, so it is taken from `written` and
/// does not count as a change.
fn supplier_status_owned(
    current: Option<&SupplierStatus>,
    written: &SupplierStatus,
) -> Option<SupplierStatus> {
    current.map(|current| SupplierStatus {
        mail: written.mail.clone(),
        ..current.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supplier_mail_status_not_a_change() {
        let written = SupplierStatus {
            observed_generation: Some(3),
            accounts: Some(2),
            ..SupplierStatus::default()
        };
        let mut current = written.clone();
        current.mail = Some(Default::default());

        let owned = supplier_status_owned(Some(&current), &written);
        assert_eq!(owned.as_ref(), Some(&written));

        current.accounts = Some(3);
        let owned = supplier_status_owned(Some(&current), &written);
        assert_ne!(owned.as_ref(), Some(&written));
        assert_eq!(supplier_status_owned(None, &written), None);
    }
    use k8s_openapi::jiff::Timestamp;

    fn time(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let first = merge_conditions(
            &[],
            &[ConditionState::yes(READY, "Reconciled", "up to date")],
            Some(1),
            &time(100),
        );
        assert_eq!(first[0].last_transition_time, time(100));

        let same = merge_conditions(
            &first,
            &[ConditionState::yes(READY, "Reconciled", "still up to date")],
            Some(2),
            &time(200),
        );
        assert_eq!(same[0].last_transition_time, time(100));
        assert_eq!(same[0].message, "still up to date");
        assert_eq!(same[0].observed_generation, Some(2));

        let flipped = merge_conditions(
            &same,
            &[ConditionState::no(READY, "DirectoryUnavailable", "down")],
            Some(2),
            &time(300),
        );
        assert_eq!(flipped[0].last_transition_time, time(300));
        assert_eq!(flipped[0].status, "False");
    }

    #[test]
    fn other_conditions_kept() {
        let first = merge_conditions(
            &[],
            &[
                ConditionState::yes(READY, "Reconciled", ""),
                ConditionState::no(EXPIRING, "NotExpiring", ""),
            ],
            Some(1),
            &time(100),
        );
        let next = merge_conditions(
            &first,
            &[ConditionState::no(READY, "InvalidSpec", "bad")],
            Some(1),
            &time(200),
        );
        let types: Vec<&str> = next.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [EXPIRING, READY]);
    }
}
