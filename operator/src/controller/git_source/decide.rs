//! The decision of git source mode, a pure function: which repository objects to apply and
//! which labelled cluster objects to prune, with the same safety rules as `adgang sync`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::desired::{DesiredState, SUPPLIERS_DIR};
use crate::plan::DeletionGuard;
use crate::resources::{SupplierSpec, SupplierUserSpec};

/// Kind of a custom resource that git source mode manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ObjectKind {
    Supplier,
    SupplierUser,
}

impl ObjectKind {
    /// Returns the kind as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Supplier => "Supplier",
            Self::SupplierUser => "SupplierUser",
        }
    }
}

/// Kind and name of an object in the controller's namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: ObjectKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// An existing object of a managed kind, as listed from the API server.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterObject {
    pub object: ObjectRef,
    pub uid: Option<String>,
    /// The supplier's name: `metadata.name` of a Supplier, `spec.supplier` of a SupplierUser.
    pub supplier: String,
    /// True when the object carries git source mode's `managed-by` label.
    pub managed: bool,
    /// Value of the source-path annotation.
    pub source_path: Option<String>,
    /// Value of the commit annotation: the commit the object was last applied from.
    pub commit: Option<String>,
}

/// The spec of an object to apply.
#[derive(Clone, Debug, PartialEq)]
pub enum DesiredSpec {
    Supplier(SupplierSpec),
    SupplierUser(SupplierUserSpec),
}

/// An object to server-side apply, from one repository file.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    pub object: ObjectRef,
    pub source_path: String,
    pub spec: DesiredSpec,
}

/// Reason that a labelled object whose file is not applied stays in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum KeepReason {
    /// The file is still in the repository but failed to parse or validate.
    InvalidFile { path: String },
    /// The supplier's `supplier.yaml` is missing or invalid, which freezes the supplier.
    SupplierFrozen,
    /// Commits that their signers may not make changed the supplier, which freezes it.
    Unauthorised,
    /// Pruning would remove more of the supplier's users than the mass-deletion guard allows.
    MassDeletionBlocked { deletions: usize, users: usize },
    /// Files of several suppliers declare a SupplierUser of this name, and an object name is
    /// unique in a namespace.
    NameConflict { paths: Vec<String> },
}

/// A labelled object left as it is, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub object: ObjectRef,
    pub supplier: String,
    #[serde(flatten)]
    pub reason: KeepReason,
}

/// Objects that one git source run applies, prunes and keeps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub apply: Vec<DesiredObject>,
    /// Labelled objects whose file is gone, in deletion order: users before suppliers.
    pub prune: Vec<ClusterObject>,
    pub kept: Vec<Kept>,
    /// Files not applied because another supplier's file declares the same SupplierUser name.
    pub name_conflicts: BTreeMap<String, Vec<String>>,
}

/// Inputs of [`decide`].
pub struct DecisionInput<'a> {
    /// The desired state at the head, after the signature check.
    pub desired: &'a DesiredState,
    /// Paths of every file under `suppliers/` at the head, including invalid ones.
    pub paths: &'a BTreeSet<String>,
    /// Suppliers that unauthorised commits changed.
    pub blocked_suppliers: &'a BTreeSet<String>,
    /// Objects of both kinds in the namespace.
    pub existing: &'a [ClusterObject],
    pub guard: &'a DeletionGuard,
}

/// Decides which objects to apply and which labelled objects to prune.
///
/// An object is pruned only when it carries the `managed-by` label, its file is no longer in
/// the repository, its supplier is not frozen, and the guard allows the supplier's
/// deletions. Objects without the label, such as ones created with kubectl, are never
/// pruned.
pub fn decide(input: &DecisionInput<'_>) -> Decision {
    let mut frozen: BTreeMap<&str, KeepReason> = BTreeMap::new();
    for supplier in input.blocked_suppliers {
        frozen.insert(supplier, KeepReason::Unauthorised);
    }
    for (name, supplier) in &input.desired.suppliers {
        if supplier.spec.is_none() {
            frozen
                .entry(name.as_str())
                .or_insert(KeepReason::SupplierFrozen);
        }
    }

    let (apply, name_conflicts) = desired_objects(input.desired, &frozen);
    let applied: BTreeSet<&ObjectRef> = apply.iter().map(|d| &d.object).collect();

    let mut kept = Vec::new();
    let mut candidates: BTreeMap<&str, Vec<&ClusterObject>> = BTreeMap::new();
    for existing in input.existing {
        if !existing.managed || applied.contains(&existing.object) {
            continue;
        }
        let keep = |reason| Kept {
            object: existing.object.clone(),
            supplier: existing.supplier.clone(),
            reason,
        };
        if let Some(reason) = frozen.get(existing.supplier.as_str()) {
            kept.push(keep(reason.clone()));
            continue;
        }
        if existing.object.kind == ObjectKind::SupplierUser
            && let Some(paths) = name_conflicts.get(&existing.object.name)
        {
            kept.push(keep(KeepReason::NameConflict {
                paths: paths.clone(),
            }));
            continue;
        }
        let path = existing
            .source_path
            .clone()
            .unwrap_or_else(|| canonical_path(existing));
        if input.paths.contains(&path) {
            kept.push(keep(KeepReason::InvalidFile { path }));
            continue;
        }
        candidates
            .entry(existing.supplier.as_str())
            .or_default()
            .push(existing);
    }

    let mut prune = Vec::new();
    for (supplier, objects) in candidates {
        let deletions = objects
            .iter()
            .filter(|o| o.object.kind == ObjectKind::SupplierUser)
            .count();
        let users = input
            .existing
            .iter()
            .filter(|o| {
                o.managed && o.object.kind == ObjectKind::SupplierUser && o.supplier == supplier
            })
            .count();
        if input.guard.blocks(supplier, deletions, users) {
            for object in objects {
                kept.push(Kept {
                    object: object.object.clone(),
                    supplier: supplier.to_owned(),
                    reason: KeepReason::MassDeletionBlocked { deletions, users },
                });
            }
            continue;
        }
        prune.extend(objects.into_iter().cloned());
    }
    prune.sort_by(|a, b| {
        b.object
            .kind
            .cmp(&a.object.kind)
            .then_with(|| a.object.name.cmp(&b.object.name))
    });

    kept.sort_by(|a, b| a.object.cmp(&b.object));

    Decision {
        apply,
        prune,
        kept,
        name_conflicts,
    }
}

/// Returns the objects of every supplier that is not frozen, and the SupplierUser names that
/// files of several suppliers declare, with those files. Such names are left out.
fn desired_objects(
    desired: &DesiredState,
    frozen: &BTreeMap<&str, KeepReason>,
) -> (Vec<DesiredObject>, BTreeMap<String, Vec<String>>) {
    let mut objects = Vec::new();
    let mut users_by_name: BTreeMap<&str, Vec<DesiredObject>> = BTreeMap::new();
    for (name, supplier) in &desired.suppliers {
        let Some(spec) = &supplier.spec else { continue };
        if frozen.contains_key(name.as_str()) {
            continue;
        }
        objects.push(DesiredObject {
            object: ObjectRef::new(ObjectKind::Supplier, name),
            source_path: supplier_path(name),
            spec: DesiredSpec::Supplier(spec.clone()),
        });
        for user in supplier.users.values() {
            users_by_name
                .entry(user.key.name.as_str())
                .or_default()
                .push(DesiredObject {
                    object: ObjectRef::new(ObjectKind::SupplierUser, &user.key.name),
                    source_path: user.source.clone(),
                    spec: DesiredSpec::SupplierUser(user.spec.clone()),
                });
        }
    }

    let mut conflicts = BTreeMap::new();
    for (name, users) in users_by_name {
        if users.len() == 1 {
            objects.extend(users);
        } else {
            let paths = users.into_iter().map(|u| u.source_path).collect();
            conflicts.insert(name.to_owned(), paths);
        }
    }
    (objects, conflicts)
}

fn supplier_path(supplier: &str) -> String {
    format!("{SUPPLIERS_DIR}/{supplier}/supplier.yaml")
}

/// Returns the path that the object's file has by the repository's layout, for a labelled
/// object whose source-path annotation was removed.
fn canonical_path(object: &ClusterObject) -> String {
    match object.object.kind {
        ObjectKind::Supplier => supplier_path(&object.object.name),
        ObjectKind::SupplierUser => format!(
            "{SUPPLIERS_DIR}/{}/users/{}.yaml",
            object.supplier, object.object.name
        ),
    }
}

#[cfg(test)]
mod tests;
